"""``flask notifications digest``: run the matching-based digests now."""

from __future__ import annotations

import click

from marketplace.notifications import bp
from marketplace.services import match_alerts

DIGESTS = {
    "deadline": ("即将截止", match_alerts.deadline_digest),
    "new": ("新的匹配需求", match_alerts.new_match_digest),
}


@bp.cli.command("digest")
@click.option("--kind", type=click.Choice(["all", *DIGESTS]), default="all", show_default=True)
def digest_command(kind: str) -> None:
    """Send the deadline_soon and new_match notifications that are due (idempotent)."""
    for name, (label, run) in DIGESTS.items():
        if kind in ("all", name):
            report = run()
            click.echo(
                f"{name} ({label}): {report.needs} needs looked at, {report.notified_users} users notified, "
                f"{report.skipped} skipped"
            )

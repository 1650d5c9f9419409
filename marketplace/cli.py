"""Click commands: ``flask seed``, ``flask users ...`` (matching commands live in matching_cli)."""

from __future__ import annotations

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from marketplace.extensions import db
from marketplace.models import Organization, Role
from marketplace.services import accounts
from marketplace.services.errors import DomainError

users_cli = AppGroup("users", help="管理账号 (manage accounts).")


@click.command("seed")
def seed_command() -> None:
    """Load the demo data in seeds/ (idempotent)."""
    from marketplace.services.seeding import load_seeds

    report = load_seeds(current_app.config["SEEDS_DIR"])
    if report.changed:
        for kind, n in report.created.items():
            click.echo(f"created {n} {kind}")
    else:
        click.echo("seed data already loaded; nothing changed")
    if report.demo_accounts:
        click.echo("\nDemo accounts (demo only, never use these passwords in production):")
        for email, password, description in report.demo_accounts:
            click.echo(f"  {description:<12} {email:<32} {password}")


@users_cli.command("create")
@click.option("--email", required=True)
@click.option("--name", required=True)
@click.option("--role", type=click.Choice([r.value for r in Role]), default=Role.ORGANIZER.value)
@click.option("--organization", "org_name", help="organization name (members only)")
@click.password_option()
def create_user_command(email: str, name: str, role: str, org_name: str | None, password: str) -> None:
    """Create an admin, organizer or member account."""
    org = None
    if org_name:
        org = db.session.scalar(db.select(Organization).where(Organization.name == org_name))
        if org is None:
            raise click.ClickException(f"organization not found: {org_name}")
    try:
        user = accounts.create_user(email, password, name, role=role, organization=org)
    except DomainError as exc:
        raise click.ClickException(exc.message) from exc
    click.echo(f"created {user.role} {user.email}")


def register(app: Flask) -> None:
    app.cli.add_command(seed_command)
    app.cli.add_command(users_cli)
    from marketplace.imports.cli import lists_cli

    app.cli.add_command(lists_cli)

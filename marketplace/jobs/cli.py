"""``flask jobs consume`` runs a Huey consumer for this app's job queue; ``flask jobs list`` prints
the recent job records."""

from __future__ import annotations

import logging

import click
from flask import current_app
from flask.cli import AppGroup

from marketplace.models import JobStatus

jobs_cli = AppGroup("jobs", help="后台任务 (background jobs).")


@jobs_cli.command("consume")
@click.option("--workers", default=1, show_default=True, help="worker threads")
@click.option("--no-periodic", is_flag=True, help="do not run the periodic jobs (drain, digests)")
def consume_command(workers: int, no_periodic: bool) -> None:
    """Run the job consumer until SIGINT/SIGTERM (the app is built once, by the factory)."""
    from marketplace.jobs import get_queue

    queue = get_queue()
    if queue.huey.immediate:
        raise click.ClickException("HUEY_IMMEDIATE is on: jobs already run in the caller; no consumer needed")
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(levelname)s %(name)s: %(message)s")
    storage = current_app.config.get("REDIS_URL") and "redis" or current_app.config["HUEY_SQLITE_PATH"]
    click.echo(f"job consumer: {workers} worker(s), queue storage {storage}, jobs: {', '.join(queue.tasks)}")
    from marketplace.services import jobs as job_records

    swept = job_records.sweep_stale()  # jobs of a consumer that was killed
    if swept:
        click.echo(f"marked {len(swept)} interrupted job(s) failed: {', '.join(map(str, swept))}")
    consumer = queue.huey.create_consumer(workers=workers, periodic=not no_periodic, worker_type="thread")
    consumer.run()


@jobs_cli.command("list")
@click.option("--status", type=click.Choice([s.value for s in JobStatus]), help="only jobs in this status")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000))
def list_command(status: str | None, limit: int) -> None:
    """Print the most recent job records (newest first), with their progress."""
    from marketplace import timeutil
    from marketplace.services import jobs as job_records

    rows = job_records.recent(limit=limit, status=status)
    if not rows:
        click.echo("no jobs")
        return
    for job in rows:
        state = job_records.snapshot(job)
        progress = f"{state.done}/{state.total}" if state.total else str(state.done or "-")
        percent = f" {state.percent}%" if state.percent is not None else ""
        created = timeutil.to_local(job.created_at).strftime("%Y-%m-%d %H:%M")
        who = job.actor.email if job.actor else "-"
        click.echo(
            f"#{job.id:<5} {created}  {job.status:<9} {progress:>11}{percent:<5}  {job.kind:<28} {who}  "
            f"{job.title}" + (f" — {state.message}" if state.message else "")
        )

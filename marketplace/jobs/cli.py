"""``flask jobs consume``: run a Huey consumer for this app's job queue."""

from __future__ import annotations

import logging

import click
from flask import current_app
from flask.cli import AppGroup

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
    consumer = queue.huey.create_consumer(workers=workers, periodic=not no_periodic, worker_type="thread")
    consumer.run()

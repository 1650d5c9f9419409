"""The registered background jobs and their schedules.

Periodic schedules are Huey crontabs, evaluated in UTC; the daily digests run at
``NOTIFY_DIGEST_HOUR`` o'clock in ``DISPLAY_TIMEZONE`` (09:00 Beijing time by default).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from huey import crontab

from marketplace import timeutil
from marketplace.jobs import job
from marketplace.services import accounts, mail, match_alerts
from marketplace.services import jobs as job_records

DRAIN_OUTBOX = mail.DRAIN_JOB
DEADLINE_DIGEST = "notifications.deadline_digest"
NEW_MATCH_DIGEST = "notifications.new_match_digest"
SWEEP_STALE_JOBS = "jobs.sweep_stale"
PASSWORD_RESET = accounts.PASSWORD_RESET_JOB


def every_minute(config: dict[str, Any]):
    return crontab(minute="*")


def every_five_minutes(config: dict[str, Any]):
    return crontab(minute="*/5")


def daily_digest_time(config: dict[str, Any]):
    """``NOTIFY_DIGEST_HOUR`` local time as a UTC crontab (the display zone has no DST)."""
    hour = int(config["NOTIFY_DIGEST_HOUR"])
    offset = timeutil.display_zone().utcoffset(datetime(2000, 1, 1))
    utc_minutes = (hour * 60 - int(offset.total_seconds() // 60)) % (24 * 60)
    return crontab(minute=str(utc_minutes % 60), hour=str(utc_minutes // 60))


@job(DRAIN_OUTBOX, schedule=every_minute)
def drain_outbox() -> None:
    """Send the due emails of the outbox (also queued after each commit that wrote emails)."""
    mail.drain_outbox()


@job(DEADLINE_DIGEST, schedule=daily_digest_time)
def deadline_digest() -> None:
    match_alerts.deadline_digest()


@job(NEW_MATCH_DIGEST, schedule=daily_digest_time)
def new_match_digest() -> None:
    match_alerts.new_match_digest()


@job(SWEEP_STALE_JOBS, schedule=every_five_minutes)
def sweep_stale_jobs() -> None:
    """Mark failed the running jobs whose consumer died (no heartbeat for ``JOB_STALE_SECONDS``)."""
    job_records.sweep_stale()


@job(PASSWORD_RESET)
def send_password_reset(email: str) -> None:
    """「忘记密码」: look the address up and email a link, outside the request (no timing leak)."""
    accounts.send_password_reset(email)

"""Time rules (DESIGN.md, "Time").

Timestamps are stored in UTC. A date a user types (a deadline, an event day) is a Beijing date:
a deadline of 2026-12-31 closes at 23:59:59 Beijing time on that day. Everything that asks
"what time is it" goes through :func:`now_utc`, so tests can freeze the clock in one place.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

DEFAULT_TIMEZONE = "Asia/Shanghai"
_zone = ZoneInfo(DEFAULT_TIMEZONE)


def set_display_timezone(name: str) -> None:
    """Switch the zone in which dates are typed and times shown (``DISPLAY_TIMEZONE``)."""
    global _zone
    _zone = ZoneInfo(name)


def display_zone() -> ZoneInfo:
    return _zone


def now_utc() -> datetime:
    """The current time, timezone-aware UTC. Tests monkeypatch this function."""
    return datetime.now(UTC)


def now_naive_utc() -> datetime:
    """The current time as the naive UTC value stored in the database columns."""
    return now_utc().replace(tzinfo=None)


def local_now() -> datetime:
    return now_utc().astimezone(_zone)


def local_today() -> date:
    """Today's date in Beijing time (not the server's)."""
    return local_now().date()


def to_local(value: datetime) -> datetime:
    """A stored timestamp (naive means UTC) in the display zone."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(_zone)


def end_of_local_day(day: date) -> datetime:
    """The last instant of ``day`` in Beijing time, as aware UTC (23:59:59.999999 local)."""
    local_end = datetime.combine(day + timedelta(days=1), time.min, tzinfo=_zone) - timedelta(microseconds=1)
    return local_end.astimezone(UTC)


def start_of_local_day(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=_zone).astimezone(UTC)


def deadline_passed(deadline: date | None, now: datetime | None = None) -> bool:
    """Whether a deadline day (a Beijing date) is over. No deadline never closes."""
    if deadline is None:
        return False
    return (now or now_utc()) > end_of_local_day(deadline)


def days_left(deadline: date | None, now: datetime | None = None) -> int | None:
    """Whole Beijing days until the deadline day: 0 on the day itself, negative once past."""
    if deadline is None:
        return None
    today = (now or now_utc()).astimezone(_zone).date()
    return (deadline - today).days

"""Jinja filters and globals shared by every template."""

from __future__ import annotations

from datetime import date, datetime

from flask import Flask
from markupsafe import Markup, escape

from marketplace import timeutil
from marketplace.models import EntryStatus
from marketplace.reference import reference

STATUS_BADGES = {
    EntryStatus.DRAFT: "secondary",
    EntryStatus.SUBMITTED: "warning",
    EntryStatus.RETURNED: "danger",
    EntryStatus.APPROVED: "info",
    EntryStatus.PUBLISHED: "success",
    EntryStatus.WITHDRAWN: "dark",
}


def format_date(value: date | datetime | None, fmt: str = "%Y-%m-%d") -> str:
    """A date as typed (a Beijing date); a stored timestamp is converted to Beijing time first."""
    if isinstance(value, datetime):
        value = timeutil.to_local(value)
    return value.strftime(fmt) if value else ""


def format_datetime(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """A stored (UTC) timestamp shown in ``DISPLAY_TIMEZONE``, e.g. ``2026-12-01 20:31``."""
    return timeutil.to_local(value).strftime(fmt) if value else ""


def deadline_badge(entry) -> Markup:
    """征集中 with a countdown, 已截止 or 长期征集 for an opportunity's answer deadline."""
    if entry.deadline is None:
        return Markup('<span class="badge text-bg-success">征集中</span> '
                      '<span class="small text-muted">长期有效</span>')
    if not entry.is_open:
        return Markup('<span class="badge text-bg-secondary">已截止</span>')
    left = timeutil.days_left(entry.deadline)
    countdown = "今天截止" if left == 0 else f"还剩 {left} 天"
    urgent = " text-danger fw-semibold" if left is not None and left <= 3 else " text-muted"
    return Markup(f'<span class="badge text-bg-success">征集中</span> '
                  f'<span class="small{urgent}">{escape(countdown)}</span>')


def status_badge(status: str) -> Markup:
    color = STATUS_BADGES.get(status, "secondary")
    return Markup(f'<span class="badge text-bg-{color}">{escape(EntryStatus.label_of(status))}</span>')


def paragraphs(text: str | None) -> Markup:
    """Plain text with line breaks, escaped."""
    parts = [escape(p) for p in (text or "").splitlines() if p.strip()]
    return Markup("".join(f"<p>{p}</p>" for p in parts))


def register(app: Flask) -> None:
    app.add_template_filter(format_date, "date")
    app.add_template_filter(format_datetime, "datetime")
    app.add_template_filter(deadline_badge, "deadline_badge")
    app.add_template_filter(status_badge, "status_badge")
    app.add_template_filter(paragraphs, "paragraphs")
    app.add_template_global(reference, "reference")

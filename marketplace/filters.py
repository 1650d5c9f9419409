"""Jinja filters and globals shared by every template."""

from __future__ import annotations

from datetime import date, datetime

from flask import Flask
from markupsafe import Markup, escape

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
    return value.strftime(fmt) if value else ""


def status_badge(status: str) -> Markup:
    color = STATUS_BADGES.get(status, "secondary")
    return Markup(f'<span class="badge text-bg-{color}">{escape(EntryStatus.label_of(status))}</span>')


def paragraphs(text: str | None) -> Markup:
    """Plain text with line breaks, escaped."""
    parts = [escape(p) for p in (text or "").splitlines() if p.strip()]
    return Markup("".join(f"<p>{p}</p>" for p in parts))


def register(app: Flask) -> None:
    app.add_template_filter(format_date, "date")
    app.add_template_filter(status_badge, "status_badge")
    app.add_template_filter(paragraphs, "paragraphs")
    app.add_template_global(reference, "reference")

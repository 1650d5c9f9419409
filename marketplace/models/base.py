"""Shared column helpers."""

from __future__ import annotations

from datetime import datetime

from marketplace import timeutil


def utcnow() -> datetime:
    """Naive UTC timestamp (portable between SQLite and PostgreSQL), from the one clock that
    tests can freeze (:func:`marketplace.timeutil.now_utc`)."""
    return timeutil.now_naive_utc()

"""Shared column helpers."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """Naive UTC timestamp (portable between SQLite and PostgreSQL)."""
    return datetime.now(UTC).replace(tzinfo=None)

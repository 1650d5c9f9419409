"""The one way views read a page number from the query string."""

from __future__ import annotations

from flask import request

#: Deeper pages are clamped, so no offset can overflow the database's integer.
MAX_PAGE = 10_000


def page_arg(name: str = "page") -> int:
    """The page number in ``request.args[name]``: malformed or out-of-range values fall back to
    the nearest valid page (1 … :data:`MAX_PAGE`) instead of an error."""
    raw = (request.args.get(name) or "").strip()
    if not (raw.isascii() and raw.isdigit()):
        return 1  # empty, negative or not a number
    if len(raw) > len(str(MAX_PAGE)):
        return MAX_PAGE
    return min(max(int(raw), 1), MAX_PAGE)


def id_arg(name: str) -> int | None:
    """An optional id in ``request.args[name]``: None unless a positive database integer."""
    raw = (request.args.get(name) or "").strip()
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 10 or not 0 < int(raw) <= 2**31 - 1:
        return None
    return int(raw)

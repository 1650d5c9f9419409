"""Public portal: home, browsing, batch pages, detail pages and keyword search (no login)."""

from flask import Blueprint

bp = Blueprint("portal", __name__)

from marketplace.portal import routes  # noqa: E402,F401

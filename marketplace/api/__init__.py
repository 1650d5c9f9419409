"""Read-only JSON API (``/api/v1``): matches and free-text search over published entries."""

from flask import Blueprint

bp = Blueprint("api", __name__)

from marketplace.api import routes  # noqa: E402,F401

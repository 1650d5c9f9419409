"""活动: one blueprint for the public, firms, the needs' publishers and organizers."""

from flask import Blueprint

bp = Blueprint("events", __name__)

from marketplace.events import routes  # noqa: E402,F401

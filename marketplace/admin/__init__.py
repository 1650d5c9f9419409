"""Organizer back office: review queue, batches, organization verification, audit log."""

from flask import Blueprint

bp = Blueprint("admin", __name__)

from marketplace.admin import routes  # noqa: E402,F401

"""A member's workspace: their organization's opportunities and products and its profile."""

from flask import Blueprint

bp = Blueprint("workspace", __name__)

from marketplace.workspace import routes  # noqa: E402,F401

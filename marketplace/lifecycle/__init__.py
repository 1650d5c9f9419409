"""场景生命周期, 项目签约 and 实验室: one blueprint for the public, publishers, firms and organizers."""

from flask import Blueprint

bp = Blueprint("lifecycle", __name__)

from marketplace.lifecycle import routes  # noqa: E402,F401

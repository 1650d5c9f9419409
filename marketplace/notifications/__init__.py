"""站内通知: the list, marking read, email settings; and ``flask notifications digest``."""

from flask import Blueprint

bp = Blueprint("notifications", __name__)

from marketplace.notifications import cli, routes  # noqa: E402,F401

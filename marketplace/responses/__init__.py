"""企业答题 and 场景建设联合体: one blueprint for firms, publishers and organizers."""

from flask import Blueprint

bp = Blueprint("responses", __name__)

from marketplace.responses import routes  # noqa: E402,F401

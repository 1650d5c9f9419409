"""Matching pages: candidate products for a need, open needs for a product, organizer search."""

from flask import Blueprint

bp = Blueprint("matching", __name__)

from marketplace.matching_views import learning, routes  # noqa: E402,F401

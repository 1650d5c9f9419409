"""十百千 programme: designations, targets, the organizers' dashboard and the public 「成果」 page."""

from flask import Blueprint

bp = Blueprint("programme", __name__)

from marketplace.programme import public, routes  # noqa: E402,F401

"""The public organisation page ``/organizations/<id>`` (单位主页), open to anyone.

What it shows and hides is decided by :mod:`marketplace.services.org_profile`; this module only
renders it. Registered on the programme blueprint (its badges and signings live there)."""

from __future__ import annotations

from flask import render_template
from flask_login import current_user

from marketplace.programme import bp
from marketplace.programme.routes import PUBLIC_ENDPOINTS
from marketplace.services import org_profile

PUBLIC_ENDPOINTS.add("programme.organization")


@bp.get("/organizations/<int:id>")
def organization(id: int):
    return render_template("programme/organization.html", profile=org_profile.profile(current_user, id))

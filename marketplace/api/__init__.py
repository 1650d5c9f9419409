"""The JSON API (``/api/v1``) and its two pages (``/api/docs``, ``/api/tokens``).

* ``bp`` (``/api/v1``): read-only JSON over published entries, the rankings of an entry for its
  own organization and organizers, and the OpenAPI document (``routes.py``, ``openapi.py``,
  ``schemas.py``); bearer-token authentication and the rate-limit key in ``auth.py``.
* ``pages_bp`` (``/api``): the documentation page rendered from the OpenAPI document and the
  personal API token page (``pages.py``, ``forms.py``).
"""

from flask import Blueprint

bp = Blueprint("api", __name__)
pages_bp = Blueprint("api_pages", __name__)

from marketplace.api import auth, pages, routes  # noqa: E402,F401

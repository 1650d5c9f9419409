"""Who calls the API: a personal token (``Authorization: Bearer mkt_…``), else the browser's
session, else nobody.

A request with an ``Authorization`` header is authenticated by that header alone: a token that
authenticates nobody (unknown, revoked, expired, user deactivated) or another scheme is a 401,
even on public endpoints, so that a client learns at once that its token no longer works. A
valid token makes its user ``current_user`` for this request only (no session cookie is
written). Every endpoint is GET, so a session cookie cannot be used to change anything and the
API needs no CSRF token; a future POST under ``/api/v1`` is CSRF-protected by ``CSRFProtect``
for cookie callers like every form.

Rate limits are counted per token for valid tokens and per client address otherwise.
"""

from __future__ import annotations

from flask import g, request
from flask_limiter.util import get_remote_address

from marketplace.api import bp
from marketplace.services import api_tokens
from marketplace.services.api_tokens import TokenRejected

SCHEME = "bearer"


def bearer_token() -> str | None:
    """The raw token of the ``Authorization`` header; None without the header.

    :class:`TokenRejected` when the header is there but is not ``Bearer <token>``.
    """
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, raw = header.strip().partition(" ")
    if scheme.lower() != SCHEME or not raw.strip():
        raise TokenRejected("Authorization 头应为“Bearer <API 令牌>”")
    return raw.strip()


def rate_limit_key() -> str:
    """The rate-limit bucket of this request: its token when that is one of ours, else the
    client address (random tokens therefore share their sender's address bucket)."""
    header = request.headers.get("Authorization") or ""
    scheme, _, raw = header.strip().partition(" ")
    if scheme.lower() == SCHEME:
        token = api_tokens.find_token(raw.strip())
        if token is not None:
            return f"api-token:{token.id}"
    return f"api-ip:{get_remote_address()}"


@bp.before_request
def authenticate_bearer_token() -> None:
    raw = bearer_token()
    if raw is not None:
        # Flask-Login reads the user of this request from g._login_user.
        g._login_user = api_tokens.authenticate(raw)


@bp.after_request
def challenge(response):
    if response.status_code == 401:
        response.headers.setdefault("WWW-Authenticate", 'Bearer realm="api", charset="UTF-8"')
    return response

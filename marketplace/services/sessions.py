"""Sign-ins that the server can end: login tokens and the per-user session version.

Flask keeps the session in a signed cookie, so a copied cookie stays valid until the server
refuses it. Every login therefore creates a :class:`LoginToken` row (a random token, stored as
its SHA-256) and Flask-Login's user id becomes ``"<user id>:<session version>:<token>"``
(``User.get_id``). The same string goes into the session and, when 「记住我」 is ticked, into the
remember-me cookie. :func:`load_user` (the Flask-Login user loader) accepts it only when

* the user exists and is active,
* its ``session_version`` still matches: a password change or a deactivation bumps it and so
  signs the user out on every device,
* the token row exists, belongs to the user, is not revoked and has not expired: logging out
  revokes the token in use, so a session or remember-me cookie copied before the logout is
  refused afterwards.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from flask import current_app
from sqlalchemy import delete, select, update

from marketplace.extensions import db
from marketplace.models import LoginToken, User
from marketplace.models.base import utcnow


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def lifetime(remember: bool) -> timedelta:
    """How long a login may last on the server: the remember-me duration (30 days at most) or
    ``LOGIN_SESSION_HOURS`` for a browser session."""
    config = current_app.config
    if remember:
        return config["REMEMBER_COOKIE_DURATION"]
    return timedelta(hours=float(config["LOGIN_SESSION_HOURS"]))


def start_login(user: User, remember: bool) -> str:
    """Create the login token for a new sign-in and attach it to ``user`` (for ``get_id``).

    Expired or revoked tokens of the user are deleted at the same time. Commits.
    """
    now = utcnow()
    db.session.execute(
        delete(LoginToken).where(
            LoginToken.user_id == user.id,
            (LoginToken.expires_at < now) | LoginToken.revoked_at.is_not(None),
        )
    )
    raw = secrets.token_urlsafe(32)
    db.session.add(
        LoginToken(
            user_id=user.id,
            token_hash=hash_token(raw),
            remember=remember,
            created_at=now,
            expires_at=now + lifetime(remember),
        )
    )
    user.last_login_at = now
    db.session.commit()
    user.login_token = raw
    return raw


def parse_id(user_id: str) -> tuple[int, int, str] | None:
    """``(user id, session version, token)`` from a Flask-Login id, or None when malformed."""
    parts = (user_id or "").split(":")
    if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit() or not parts[2]:
        return None
    if len(parts[0]) > 10 or len(parts[1]) > 10 or len(parts[2]) > 100:
        return None
    return int(parts[0]), int(parts[1]), parts[2]


def load_user(user_id: str) -> User | None:
    """The Flask-Login user loader: the user if this session is still valid, else None."""
    parsed = parse_id(user_id)
    if parsed is None:
        return None
    uid, version, raw = parsed
    if uid > 2**31 - 1:
        return None
    user = db.session.get(User, uid)
    if user is None or not user.active or (user.session_version or 1) != version:
        return None
    token = db.session.scalar(
        select(LoginToken).where(LoginToken.token_hash == hash_token(raw), LoginToken.user_id == uid)
    )
    if token is None or token.revoked_at is not None or token.expires_at <= utcnow():
        return None
    user.login_token = raw
    return user


def is_remembered(user: User) -> bool:
    """Whether the user's current sign-in (``user.login_token``) is a remember-me login."""
    if not user.login_token:
        return False
    return bool(db.session.scalar(
        select(LoginToken.remember).where(
            LoginToken.token_hash == hash_token(user.login_token), LoginToken.user_id == user.id
        )
    ))


def end_login(user: User) -> None:
    """Revoke the token of the current sign-in (logout). Commits."""
    if user.login_token:
        db.session.execute(
            update(LoginToken)
            .where(LoginToken.token_hash == hash_token(user.login_token), LoginToken.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )
        db.session.commit()
    user.login_token = None


def end_all_logins(user: User) -> None:
    """Sign the user out everywhere: bump the session version and revoke every token.

    Adds to the current session without committing, so it commits with the change that caused
    it (a deactivation, a password change).
    """
    user.session_version = (user.session_version or 1) + 1
    db.session.execute(
        update(LoginToken)
        .where(LoginToken.user_id == user.id, LoginToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )

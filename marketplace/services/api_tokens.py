"""Personal API tokens (个人访问令牌): create, list, revoke, and authenticate API calls.

A token is ``mkt_`` followed by 43 random URL-safe characters. It is shown to its user once, at
creation; the database keeps only its SHA-256 and a short ``prefix`` (``mkt_`` and the next 8
characters) by which the user tells tokens apart. A call with ``Authorization: Bearer <token>``
acts with the permissions of the token's user: the API asks the same permission functions as
the pages. A revoked, expired or unknown token, or one whose user is deactivated, authenticates
nobody (the API answers 401).

An expiry is a Beijing date at most :data:`MAX_LIFETIME_DAYS` days ahead: the token works until
23:59:59 Beijing time on that day. Without one the token works until it is revoked.
``last_used_at`` is written at most once per :data:`TOUCH_INTERVAL`, so that a busy client does
not turn every read into a write.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import func, select

from marketplace import timeutil
from marketplace.extensions import db
from marketplace.models import ApiToken, User
from marketplace.models.base import utcnow
from marketplace.models.enums import LabelledEnum
from marketplace.services import audit
from marketplace.services.errors import DomainError, NotFound, ValidationFailed

TOKEN_PREFIX = "mkt_"
#: ``mkt_`` + 8 characters: enough to tell a user's tokens apart, useless to an attacker.
DISPLAY_PREFIX_LENGTH = len(TOKEN_PREFIX) + 8
MAX_TOKEN_LENGTH = 200
MAX_NAME_LENGTH = 60
MAX_LIFETIME_DAYS = 365
#: Live (not revoked, not expired) tokens one user may hold.
MAX_ACTIVE_TOKENS = 20
TOUCH_INTERVAL = timedelta(minutes=5)


class TokenState(LabelledEnum):
    ACTIVE = "active", "有效"
    EXPIRED = "expired", "已过期"
    REVOKED = "revoked", "已撤销"


class AuthenticationRequired(DomainError):
    """An API call that needs a user and has none (answered 401)."""

    status_code = 401


class TokenRejected(AuthenticationRequired):
    """A bearer token that authenticates nobody (unknown, revoked, expired, user inactive)."""


@dataclass
class IssuedToken:
    """A new token and its raw value, which exists only here and on the page that shows it."""

    token: ApiToken
    raw: str


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def state(token: ApiToken) -> TokenState:
    if token.revoked_at is not None:
        return TokenState.REVOKED
    if token.expires_at is not None and token.expires_at <= utcnow():
        return TokenState.EXPIRED
    return TokenState.ACTIVE


def can(user: User | None, action: str, token: ApiToken) -> bool:
    """May ``user`` do ``action`` ("view", "revoke") on ``token``? Only its own user, ever:
    not even an admin sees or revokes another user's tokens (deactivating the user stops them)."""
    if user is None or not getattr(user, "is_authenticated", False) or token.user_id != user.id:
        return False
    if action == "view":
        return True
    if action == "revoke":
        return token.revoked_at is None
    return False


def latest_expiry() -> date:
    """The last expiry date a token created today may have (a Beijing date)."""
    return timeutil.local_today() + timedelta(days=MAX_LIFETIME_DAYS)


def user_tokens(user: User) -> list[ApiToken]:
    """Every token of ``user``, newest first (revoked and expired ones too, marked as such)."""
    return list(
        db.session.scalars(
            select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.id.desc())
        )
    )


def _active_count(user: User) -> int:
    now = utcnow()
    return db.session.scalar(
        select(func.count(ApiToken.id)).where(
            ApiToken.user_id == user.id,
            ApiToken.revoked_at.is_(None),
            (ApiToken.expires_at.is_(None)) | (ApiToken.expires_at > now),
        )
    ) or 0


def create_token(user: User, name: str, expires_on: date | None = None) -> IssuedToken:
    """Create a token for ``user``; the returned ``raw`` value is never stored. Commits."""
    name = (name or "").strip()
    errors: dict[str, str] = {}
    if not name:
        errors["name"] = "请填写令牌名称，例如“数据对接脚本”"
    elif len(name) > MAX_NAME_LENGTH:
        errors["name"] = f"令牌名称不能超过{MAX_NAME_LENGTH}个字"
    if expires_on is not None:
        if expires_on < timeutil.local_today():
            errors["expires_on"] = "有效期不能早于今天"
        elif expires_on > latest_expiry():
            errors["expires_on"] = f"有效期最长一年（不晚于{latest_expiry().isoformat()}）"
    if not errors and _active_count(user) >= MAX_ACTIVE_TOKENS:
        errors["name"] = f"每个账号最多保留{MAX_ACTIVE_TOKENS}个有效令牌，请先撤销不再使用的令牌"
    if errors:
        raise ValidationFailed(errors)
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        user_id=user.id,
        name=name,
        token_hash=hash_token(raw),
        prefix=raw[:DISPLAY_PREFIX_LENGTH],
        created_at=utcnow(),
        expires_at=(
            timeutil.end_of_local_day(expires_on).replace(tzinfo=None) if expires_on is not None else None
        ),
    )
    db.session.add(token)
    db.session.flush()
    audit.record(user, "api_token.create", token, f"创建 API 令牌「{name}」（{token.prefix}…）")
    db.session.commit()
    return IssuedToken(token=token, raw=raw)


def get_token(user: User, token_id: int) -> ApiToken:
    """One of ``user``'s own tokens; anyone else's is :class:`NotFound` (never a 403 that
    would confirm it exists)."""
    token = db.session.get(ApiToken, token_id)
    if token is None or not can(user, "view", token):
        raise NotFound("令牌不存在")
    return token


def revoke_token(user: User, token_id: int) -> ApiToken:
    """Revoke one of ``user``'s tokens: calls with it get 401 from now on. Commits.

    Revoking a revoked token changes nothing.
    """
    token = get_token(user, token_id)
    if can(user, "revoke", token):
        token.revoked_at = utcnow()
        audit.record(user, "api_token.revoke", token, f"撤销 API 令牌「{token.name}」（{token.prefix}…）")
        db.session.commit()
    return token


def find_token(raw: str | None) -> ApiToken | None:
    """The stored token for a raw value, whatever its state (None: not a token of ours)."""
    if not raw or not raw.startswith(TOKEN_PREFIX) or len(raw) > MAX_TOKEN_LENGTH:
        return None
    return db.session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(raw)))


def authenticate(raw: str | None) -> User:
    """The user a bearer token acts for; :class:`TokenRejected` (401) when it acts for nobody.

    Marks the token as used (at most once per :data:`TOUCH_INTERVAL`; commits then).
    """
    token = find_token(raw)
    if token is None:
        raise TokenRejected("API 令牌无效，请检查 Authorization: Bearer 后的令牌")
    current = state(token)
    if current == TokenState.REVOKED:
        raise TokenRejected("API 令牌已被撤销")
    if current == TokenState.EXPIRED:
        raise TokenRejected("API 令牌已过期，请创建新的令牌")
    user = token.user
    if user is None or not user.active:
        raise TokenRejected("该令牌所属账号已停用")
    now = utcnow()
    if token.last_used_at is None or now - token.last_used_at >= TOUCH_INTERVAL:
        token.last_used_at = now
        db.session.commit()
    return user

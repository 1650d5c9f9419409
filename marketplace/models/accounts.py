"""Organizations (单位/企业/机构) and their users."""

from __future__ import annotations

from datetime import datetime

from flask_login import UserMixin
from sqlalchemy import Boolean, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship
from sqlalchemy.sql.expression import false
from werkzeug.security import check_password_hash, generate_password_hash

from marketplace.extensions import db
from marketplace.models.base import utcnow
from marketplace.models.enums import PRODUCT_OWNER_KINDS, LabelledEnum, OrgKind, Role


class Organization(db.Model):
    __tablename__ = "organization"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[str] = mapped_column(String(20), index=True)
    credit_code: Mapped[str] = mapped_column(String(18), unique=True)
    region_city: Mapped[str] = mapped_column(String(20), index=True)
    region_county: Mapped[str | None] = mapped_column(String(20))
    contact_name: Mapped[str] = mapped_column(String(50), default="")
    contact_phone: Mapped[str] = mapped_column(String(30), default="")
    contact_email: Mapped[str] = mapped_column(String(120), default="")
    address: Mapped[str] = mapped_column(String(200), default="")
    intro: Mapped[str] = mapped_column(Text, default="")
    verified: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    verified_at: Mapped[datetime | None] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    #: A member's change of name or credit code waits here for an organizer (like an entry
    #: revision): public pages, search and matching keep showing ``name`` until it is approved.
    pending_name: Mapped[str | None] = mapped_column(String(100))
    pending_credit_code: Mapped[str | None] = mapped_column(String(18))
    pending_since: Mapped[datetime | None] = mapped_column(DateTime)
    #: The uploaded 营业执照 / 统一社会信用代码证书 (image or PDF) shown to the verifying organizer.
    license_file_id: Mapped[int | None] = mapped_column(
        ForeignKey("stored_file.id", ondelete="SET NULL", use_alter=True)
    )

    users: Mapped[list[User]] = relationship(back_populates="organization")
    license_file: Mapped[StoredFile | None] = relationship(  # noqa: F821
        "StoredFile", foreign_keys=[license_file_id]
    )

    @property
    def has_pending_identity(self) -> bool:
        return self.pending_since is not None

    @property
    def display_pending_name(self) -> str:
        """The name the organization asked for (its current name when only the code changes)."""
        return self.pending_name or self.name

    @property
    def display_pending_credit_code(self) -> str:
        return self.pending_credit_code or self.credit_code

    @property
    def kind_label(self) -> str:
        return OrgKind.label_of(self.kind)

    @property
    def can_own_products(self) -> bool:
        return self.kind in PRODUCT_OWNER_KINDS

    def __repr__(self) -> str:
        return f"<Organization {self.id} {self.name}>"


class User(UserMixin, db.Model):
    __tablename__ = "user"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: Always stored lower-cased, which makes the unique constraint case-insensitive.
    email: Mapped[str] = mapped_column(String(120), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    name: Mapped[str] = mapped_column(String(50))
    phone: Mapped[str] = mapped_column(String(30), default="")
    role: Mapped[str] = mapped_column(String(20), default=Role.MEMBER)
    organization_id: Mapped[int | None] = mapped_column(ForeignKey("organization.id"), index=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime)
    #: Stored in every session and login token; bumping it signs the user out everywhere
    #: (password change, deactivation). See ``services/sessions.py``.
    session_version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    #: The organization's 管理员: its first user, who invites and removes colleagues.
    org_admin: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    organization: Mapped[Organization | None] = relationship(back_populates="users")

    #: The raw token of the login this object was loaded for (not a column): ``get_id`` puts
    #: it in the session and the remember-me cookie.
    login_token = None

    @staticmethod
    def normalize_email(email: str) -> str:
        return (email or "").strip().lower()

    def get_id(self) -> str:  # Flask-Login: "<id>:<session_version>:<login token>"
        return f"{self.id}:{self.session_version or 1}:{self.login_token or ''}"

    def set_password(self, password: str) -> None:
        """Set a new password; replacing one signs every existing session out."""
        if self.password_hash:
            self.session_version = (self.session_version or 1) + 1
        self.password_hash = generate_password_hash(password)

    def check_password(self, password: str) -> bool:
        return check_password_hash(self.password_hash, password)

    @property
    def is_active(self) -> bool:  # Flask-Login
        return self.active

    @property
    def is_staff(self) -> bool:
        """Organizers and admins review entries and manage batches."""
        return self.role in (Role.ORGANIZER, Role.ADMIN)

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN

    @property
    def role_label(self) -> str:
        return Role.label_of(self.role)

    def __repr__(self) -> str:
        return f"<User {self.id} {self.email}>"


class LoginToken(db.Model):
    """One sign-in on one browser (a session, and its remember-me cookie when asked for).

    Only the SHA-256 of the random token is stored. Logging out revokes the token in use;
    an expired or revoked token no longer loads its user, whatever cookie carries it.
    """

    __tablename__ = "login_token"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    remember: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime)

    user: Mapped[User] = relationship()

    def __repr__(self) -> str:
        return f"<LoginToken {self.id} user={self.user_id}>"


class AccountTokenPurpose(LabelledEnum):
    RESET = "reset", "重置密码"
    INVITE = "invite", "邀请同事"


class AccountToken(db.Model):
    """A single-use, expiring link sent by email: a password reset or an invitation to join an
    organization (issued by its 管理员). Only the SHA-256 of the random token is stored.

    ``used_at`` is set when the link is used; ``revoked_at`` when it is withdrawn (an invitation
    cancelled, or an older reset link superseded by a newer one).
    """

    __tablename__ = "account_token"
    __table_args__ = (Index("ix_account_token_org_purpose", "organization_id", "purpose"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    purpose: Mapped[str] = mapped_column(String(20))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    #: The account a reset link is for (None for an invitation: the account does not exist yet).
    user_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    #: Where the link was sent (always lower-cased).
    email: Mapped[str] = mapped_column(String(120))
    #: The organization an invitation is to.
    organization_id: Mapped[int | None] = mapped_column(ForeignKey("organization.id", ondelete="CASCADE"))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime)
    used_at: Mapped[datetime | None] = mapped_column(DateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime)

    user: Mapped[User | None] = relationship(foreign_keys=[user_id])
    organization: Mapped[Organization | None] = relationship()
    created_by: Mapped[User | None] = relationship(foreign_keys=[created_by_id])

    @property
    def purpose_label(self) -> str:
        return AccountTokenPurpose.label_of(self.purpose)

    def __repr__(self) -> str:
        return f"<AccountToken {self.id} {self.purpose} {self.email}>"


class ApiToken(db.Model):
    """A personal API token (个人访问令牌): the holder acts with its user's permissions.

    Shown once at creation; only its SHA-256 is stored, with a short ``prefix`` so that the user
    can tell tokens apart in their profile.
    """

    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(60))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime)

    user: Mapped[User] = relationship()

    def __repr__(self) -> str:
        return f"<ApiToken {self.id} user={self.user_id} {self.prefix}>"

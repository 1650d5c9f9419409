"""Organizations, users, registration and verification, and the account lifecycle.

* Registration: an organization with its first user, its 管理员 (``User.org_admin``).
* Passwords: change (signed in), and 「忘记密码」 through an emailed single-use link
  (:class:`AccountToken`, purpose ``reset``, ``PASSWORD_RESET_HOURS``).
* Members: the 管理员 (or staff) invites colleagues by email (purpose ``invite``,
  ``INVITATION_DAYS``), cancels invitations, removes colleagues, hands the role over.
  :func:`can` / :func:`problem` is the permission function; :data:`LINK_TRANSITIONS` and
  :data:`MEMBER_ACTIONS` are the steps as data.
* The 营业执照 / 统一社会信用代码证书 (:func:`set_license`) shown to the verifying organizer.
* Organizer accounts created by admins (:func:`create_staff_account`).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from typing import BinaryIO

from flask import current_app
from sqlalchemy import exists, func, or_, select, update
from werkzeug.security import check_password_hash, generate_password_hash

from marketplace import credit_code, jobs, timeutil
from marketplace.extensions import db
from marketplace.models import (
    AccountToken,
    AccountTokenPurpose,
    EntryStatus,
    NotificationKind,
    Opportunity,
    Organization,
    OrgKind,
    Product,
    Role,
    StoredFile,
    User,
)
from marketplace.models.base import utcnow
from marketplace.models.enums import LabelledEnum
from marketplace.passwords import password_problem
from marketplace.reference import reference
from marketplace.services import audit, index_sync, mail, notifications, sessions, uploads
from marketplace.services.errors import (
    InvalidTransition,
    NotFound,
    PermissionDenied,
    ValidationFailed,
)


@dataclass
class OrganizationData:
    name: str
    kind: str
    credit_code: str
    region_city: str
    region_county: str | None = None
    contact_name: str = ""
    contact_phone: str = ""
    contact_email: str = ""
    address: str = ""
    intro: str = ""


@dataclass
class UserData:
    email: str
    password: str
    name: str
    phone: str = ""


@dataclass
class Upload:
    """A file from a form: its stream and the name the browser sent."""

    stream: BinaryIO
    filename: str | None


#: 营业执照 / 统一社会信用代码证书: a scan or photo, or a PDF.
#: A telephone or mobile number as people write it (digits, +, -, brackets, spaces); the forms'
#: and the spreadsheet import's rule.
PHONE_PATTERN = re.compile(r"^[0-9+\-()（） ]{5,30}$")

LICENSE_POLICY = uploads.UploadPolicy(
    purpose="license", types=frozenset({"application/pdf", "image/png", "image/jpeg"})
)


def require_staff(actor: User | None) -> None:
    if actor is None or not actor.is_authenticated or not actor.is_staff:
        raise PermissionDenied("只有组织方可以执行此操作")


def _check_organization(data: OrganizationData, exclude_id: int | None = None) -> dict[str, str]:
    """Field errors of an organization's data; a name or code may not be another
    organization's current one, nor one that another organization is waiting to change to."""
    errors: dict[str, str] = {}
    if data.kind not in {k.value for k in OrgKind}:
        errors["kind"] = "单位类型无效"
    try:
        data.credit_code = credit_code.validate(data.credit_code)
    except credit_code.CreditCodeError as exc:
        errors["credit_code"] = str(exc)
    else:
        stmt = select(Organization.id).where(
            or_(
                Organization.credit_code == data.credit_code,
                Organization.pending_credit_code == data.credit_code,
            )
        )
        if exclude_id is not None:
            stmt = stmt.where(Organization.id != exclude_id)
        if db.session.scalar(stmt.limit(1)) is not None:
            errors["credit_code"] = "该统一社会信用代码已注册"
    name = (data.name or "").strip()
    if not name:
        errors["name"] = "请填写单位名称"
    else:
        stmt = select(Organization.id).where(
            or_(Organization.name == name, Organization.pending_name == name)
        )
        if exclude_id is not None:
            stmt = stmt.where(Organization.id != exclude_id)
        if db.session.scalar(stmt.limit(1)) is not None:
            errors["name"] = "该单位名称已注册"
    if not reference().is_valid_region(data.region_city, data.region_county):
        errors["region_city"] = "所在地区无效"
    return errors


def email_taken(email: str) -> bool:
    return (
        db.session.scalar(select(User.id).where(User.email == User.normalize_email(email)))
        is not None
    )


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    """A hash of a random password made like real ones (werkzeug's default method and cost)."""
    return generate_password_hash(secrets.token_urlsafe(16))


def password_error(password: str, email: str = "", name: str = "", organization: str = "",
                   code: str = "") -> str | None:
    """The Chinese reason why ``password`` is refused (see :mod:`marketplace.passwords`)."""
    return password_problem(password, email=email, name=name, organization=organization,
                            credit_code=code)


def register_organization(
    org: OrganizationData, user: UserData, license: Upload | None = None
) -> User | None:
    """Register an organization together with its first user (unverified until reviewed).

    The first user is the organization's 管理员 (``org_admin``): they invite and remove
    colleagues. ``license`` is the optional 营业执照 / 统一社会信用代码证书 (image or PDF), checked
    with the other fields and stored only when the organization is created.

    The answer never tells whether the email already has an account: when it does, nothing is
    created, the account's owner gets an email saying someone tried to register with it, and
    None is returned; the page shows the same 「注册申请已提交，请查收邮件」 either way. A new
    account gets a welcome email. Field errors about the organization or the password are
    reported as usual (``ValidationFailed``); they never depend on the email.
    """
    errors = _check_organization(org)
    problem = password_error(user.password, user.email, user.name, org.name, org.credit_code)
    if problem:
        errors["password"] = problem
    if license is not None:
        try:
            uploads.check(license.stream, license.filename, LICENSE_POLICY, field="license")
        except ValidationFailed as exc:
            errors.update(exc.errors)
    if errors:
        raise ValidationFailed(errors)
    email = User.normalize_email(user.email)
    existing = db.session.scalar(select(User).where(User.email == email))
    site = current_app.config.get("SITE_URL", "").rstrip("/")
    if existing is not None:
        generate_password_hash(user.password)  # the same work as a real registration
        mail.queue_email(
            existing.email,
            "【全景江西】有人尝试用您的邮箱注册",
            "\n".join([
                f"{existing.name}，您好：",
                "",
                f"有人刚刚在平台上用您的邮箱（{existing.email}）提交了单位注册申请。"
                "该邮箱已有账号，因此没有创建新账号。",
                f"如果是您本人，请直接登录：{site}/auth/login",
                "如果不是您本人，可以忽略本邮件；您的账号没有任何变化。",
            ]),
        )
        db.session.commit()
        return None
    organization = Organization(
        name=org.name.strip(),
        kind=org.kind,
        credit_code=org.credit_code,
        region_city=org.region_city,
        region_county=org.region_county or None,
        contact_name=org.contact_name,
        contact_phone=org.contact_phone,
        contact_email=org.contact_email,
        address=org.address,
        intro=org.intro,
        verified=False,
    )
    account = User(
        email=email,
        name=user.name.strip(),
        phone=user.phone,
        role=Role.MEMBER,
        organization=organization,
        org_admin=True,
    )
    account.set_password(user.password)
    db.session.add_all([organization, account])
    db.session.flush()
    if license is not None:
        organization.license_file = uploads.store(
            license.stream, license.filename, LICENSE_POLICY, organization.id, account, field="license"
        )
    audit.record(account, "org.register", organization, f"注册单位「{organization.name}」")
    mail.queue_email(
        account.email,
        "【全景江西】单位注册申请已提交",
        "\n".join([
            f"{account.name}，您好：",
            "",
            f"「{organization.name}」的注册申请已提交，正在等待组织方认证。",
            f"现在即可用本邮箱和注册时设置的密码登录：{site}/auth/login",
            "认证通过前不能提交审核，但可以先新建和编辑草稿。",
        ]),
    )
    _commit_with_files()
    return account


def identity_is_public(organization: Organization) -> bool:
    """Whether the organization's name is vouched for in public: it is verified, or it has
    published entries (a revoked verification leaves them published)."""
    if organization.verified:
        return True
    published = [
        exists().where(Opportunity.publisher_id == organization.id,
                       Opportunity.status == EntryStatus.PUBLISHED),
        exists().where(Product.owner_id == organization.id, Product.status == EntryStatus.PUBLISHED),
    ]
    return bool(db.session.scalar(select(or_(*published))))


def update_organization(actor: User, organization: Organization, data: OrganizationData) -> bool:
    """Members edit their own organization's profile.

    A new name or credit code of an organization whose identity is public
    (:func:`identity_is_public`) is not applied: it waits in ``pending_name`` /
    ``pending_credit_code`` for an organizer (:func:`approve_identity_change`), and until then
    every public page, the search index and the matching results keep the verified name.
    Returns True when such a change is now pending. Organizers' own edits apply at once.
    """
    if not (actor.is_staff or actor.organization_id == organization.id):
        raise PermissionDenied("只能修改本单位的信息")
    errors = _check_organization(data, exclude_id=organization.id)
    if errors:
        raise ValidationFailed(errors)
    name = data.name.strip()
    identity_changed = organization.name != name or organization.credit_code != data.credit_code
    for field in ("kind", "region_city", "contact_name", "contact_phone", "contact_email",
                  "address", "intro"):
        setattr(organization, field, getattr(data, field))
    organization.region_county = data.region_county or None
    summary = "修改单位信息"
    pending = False
    if identity_changed and not actor.is_staff and identity_is_public(organization):
        pending = True
        unchanged_request = organization.has_pending_identity and (
            organization.display_pending_name == name
            and organization.display_pending_credit_code == data.credit_code
        )
        if unchanged_request:  # the same request saved again with other profile changes
            audit.record(actor, "org.update", organization, summary)
            db.session.commit()
            return pending
        organization.pending_name = name if name != organization.name else None
        organization.pending_credit_code = (
            data.credit_code if data.credit_code != organization.credit_code else None
        )
        organization.pending_since = utcnow()
        summary += f"（申请变更为「{organization.display_pending_name}」"
        summary += f" / {organization.display_pending_credit_code}，待组织方认证）"
        notifications.notify_staff(
            NotificationKind.ORG_IDENTITY,
            f"「{organization.name}」申请变更单位名称或统一社会信用代码",
            f"申请变更为「{organization.display_pending_name}」"
            f"（{organization.display_pending_credit_code}），请在单位认证页面审核。",
            notifications.path_for("admin.organization", id=organization.id),
        )
    else:
        if identity_changed:
            index_sync.bump()  # the name is in the search and matching indexes
        organization.name = name
        organization.credit_code = data.credit_code
        organization.pending_name = organization.pending_credit_code = None
        organization.pending_since = None
    audit.record(actor, "org.update", organization, summary)
    db.session.commit()
    return pending


def approve_identity_change(actor: User, organization: Organization) -> None:
    """An organizer accepts the pending name / credit code: it becomes public (index refreshed)."""
    require_staff(actor)
    if not organization.has_pending_identity:
        raise InvalidTransition("该单位没有待审核的名称或信用代码变更")
    new_name = organization.display_pending_name
    new_code = organization.display_pending_credit_code
    clash = db.session.scalar(
        select(Organization.id).where(
            Organization.id != organization.id,
            or_(Organization.name == new_name, Organization.credit_code == new_code),
        ).limit(1)
    )
    if clash is not None:
        raise InvalidTransition("新的单位名称或统一社会信用代码已被其他单位使用，请退回该申请")
    old_name = organization.name
    organization.pending_name = organization.pending_credit_code = None
    organization.pending_since = None
    organization.name = new_name
    organization.credit_code = new_code
    if organization.verified:
        organization.verified_at = utcnow()
    index_sync.bump()
    audit.record(actor, "org.identity_approve", organization,
                 f"单位名称/信用代码变更通过：「{old_name}」→「{new_name}」（{new_code}）")
    notifications.notify_organization(
        organization.id,
        NotificationKind.ORG_IDENTITY,
        f"单位名称或统一社会信用代码变更已通过：「{new_name}」",
        "公开页面、搜索和匹配结果现在显示新的单位名称。",
        notifications.path_for("workspace.profile"),
    )
    db.session.commit()


def return_identity_change(actor: User, organization: Organization, reason: str) -> None:
    """An organizer refuses the pending name / credit code; the verified ones stay."""
    require_staff(actor)
    if not organization.has_pending_identity:
        raise InvalidTransition("该单位没有待审核的名称或信用代码变更")
    reason = (reason or "").strip()
    if not reason:
        raise ValidationFailed({"comment": "请填写退回原因"})
    asked = f"「{organization.display_pending_name}」（{organization.display_pending_credit_code}）"
    organization.pending_name = organization.pending_credit_code = None
    organization.pending_since = None
    audit.record(actor, "org.identity_return", organization, f"退回名称/信用代码变更 {asked}：{reason}")
    notifications.notify_organization(
        organization.id,
        NotificationKind.ORG_IDENTITY,
        "单位名称或统一社会信用代码变更被退回",
        f"申请变更为{asked}未通过：{reason}。公开页面继续显示「{organization.name}」。",
        notifications.path_for("workspace.profile"),
    )
    db.session.commit()


def verify_organization(actor: User, organization: Organization) -> None:
    require_staff(actor)
    if organization.verified:
        raise InvalidTransition("该单位已认证")
    organization.verified = True
    organization.verified_at = utcnow()
    audit.record(actor, "org.verify", organization, f"认证单位「{organization.name}」")
    db.session.commit()


def revoke_verification(actor: User, organization: Organization, reason: str) -> None:
    require_staff(actor)
    if not organization.verified:
        raise InvalidTransition("该单位尚未认证")
    if not (reason or "").strip():
        raise ValidationFailed({"comment": "请填写取消认证的原因"})
    organization.verified = False
    organization.verified_at = None
    audit.record(actor, "org.unverify", organization, f"取消认证：{reason.strip()}")
    db.session.commit()


def authenticate(email: str, password: str) -> User | None:
    """The active user with these credentials, or None.

    Takes the same time whether or not the email has an account: an unknown email is checked
    against a dummy hash made with the same method and cost as real ones.
    """
    user = db.session.scalar(select(User).where(User.email == User.normalize_email(email)))
    if user is None:
        check_password_hash(_dummy_hash(), password or "")
        return None
    if not user.check_password(password or "") or not user.active:
        return None
    return user


def create_user(
    email: str,
    password: str,
    name: str,
    role: str = Role.MEMBER,
    organization: Organization | None = None,
    phone: str = "",
    actor: User | None = None,
) -> User:
    """Create an account (CLI, seeds and admins).

    A member who is the first active user of their organization becomes its 管理员.
    """
    errors: dict[str, str] = {}
    if role not in {r.value for r in Role}:
        errors["role"] = "角色无效"
    if role == Role.MEMBER and organization is None:
        errors["organization"] = "单位用户必须属于一个单位"
    if email_taken(email):
        errors["email"] = "该邮箱已注册"
    problem = password_error(password, email, name, organization.name if organization else "")
    if problem:
        errors["password"] = problem
    if errors:
        raise ValidationFailed(errors)
    user = User(
        email=User.normalize_email(email),
        name=name,
        phone=phone,
        role=role,
        organization=organization if role == Role.MEMBER else None,
        org_admin=role == Role.MEMBER and not _has_admin(organization),
    )
    user.set_password(password)
    db.session.add(user)
    db.session.flush()
    audit.record(actor, "user.create", user, f"创建账号 {user.email}（{user.role_label}）")
    db.session.commit()
    return user


def set_user_active(actor: User, user: User, active: bool) -> None:
    if actor is None or not actor.is_admin:
        raise PermissionDenied("只有系统管理员可以启用或停用账号")
    if user.id == actor.id:
        raise InvalidTransition("不能停用自己的账号")
    user.active = active
    if not active:
        sessions.end_all_logins(user)  # signed out everywhere, and stays so if reactivated
    audit.record(actor, "user.activate" if active else "user.deactivate", user, user.email)
    db.session.commit()


def get_organization(org_id: int) -> Organization:
    org = db.session.get(Organization, org_id)
    if org is None:
        raise NotFound("单位不存在")
    return org


def _has_admin(organization: Organization | None) -> bool:
    if organization is None or organization.id is None:
        return False
    return db.session.scalar(
        select(User.id).where(
            User.organization_id == organization.id, User.org_admin.is_(True), User.active.is_(True)
        ).limit(1)
    ) is not None


def ensure_org_admins() -> int:
    """Give every organization without an active 管理员 one: its earliest active user.

    The data step for organizations registered before ``org_admin`` existed (seeds call it; the
    migration that added the column does the same in SQL). Returns how many users it promoted;
    does not commit.
    """
    admins = select(User.organization_id).where(User.org_admin.is_(True), User.active.is_(True))
    first_ids = db.session.scalars(
        select(func.min(User.id))
        .where(User.organization_id.is_not(None), User.active.is_(True),
               User.organization_id.not_in(admins))
        .group_by(User.organization_id)
    ).all()
    if first_ids:
        db.session.execute(
            update(User).where(User.id.in_(first_ids)).values(org_admin=True)
            .execution_options(synchronize_session=False)
        )
    return len(first_ids)


def _commit_with_files(replaced: list[StoredFile] | None = None) -> None:
    """Commit; on failure remove the bytes of files stored in this transaction. After a
    successful commit, delete the ``replaced`` files (rows, then bytes)."""
    new_names = [obj.storage_name for obj in db.session.new if isinstance(obj, StoredFile)]
    try:
        db.session.commit()
    except Exception:
        db.session.rollback()
        for name in new_names:
            uploads.remove_file(name)
        raise
    if replaced:
        uploads.delete_committed(replaced)


def _site() -> str:
    return current_app.config.get("SITE_URL", "").rstrip("/")


def _link(endpoint: str, **values) -> str:
    return _site() + notifications.path_for(endpoint, **values)


def _local_time(value) -> str:
    return f"{timeutil.to_local(value):%Y-%m-%d %H:%M}（北京时间）"


SIGNATURE = ["", "——", "全景江西 · 场景机会对接平台（本邮件由系统自动发送，请勿直接回复）"]


def _email(recipient: str, subject: str, lines: list[str]) -> None:
    mail.queue_email(recipient, mail.SUBJECT_PREFIX + subject, "\n".join([*lines, *SIGNATURE]))


# ---------------------------------------------------------------- account links (AccountToken)
#
# A link sent by email: a password reset (also "set your password" for accounts created by an
# admin) or an invitation to join an organization. The raw token exists only in the email; the
# database keeps its SHA-256. A link is used at most once: the claim is one conditional UPDATE,
# so two tabs submitting the same link cannot both succeed.

#: What a raw token looks like (``secrets.token_urlsafe(32)``); anything else is not looked up.
TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9_-]{32,64}$")


class LinkState(LabelledEnum):
    PENDING = "pending", "待使用"
    USED = "used", "已使用"
    REVOKED = "revoked", "已作废"
    EXPIRED = "expired", "已过期"


#: Who may take a step: whoever holds the emailed link, the organization's 管理员 (or staff),
#: or the system itself (a newer link supersedes an older one).
LINK_HOLDER, ORG_MANAGER, SYSTEM = "link_holder", "org_manager", "system"


@dataclass(frozen=True)
class LinkTransition:
    """One step in the life of an account link."""

    purpose: str
    action: str
    sources: frozenset[str]
    target: str
    who: str
    label: str
    done: str = ""
    style: str = "primary"
    confirm: str | None = None


LINK_TRANSITIONS: dict[tuple[str, str], LinkTransition] = {
    (t.purpose, t.action): t
    for t in (
        LinkTransition(AccountTokenPurpose.RESET, "use", frozenset({LinkState.PENDING}), LinkState.USED,
                       LINK_HOLDER, "设置新密码", "密码已重置，请用新密码登录。"),
        LinkTransition(AccountTokenPurpose.RESET, "supersede", frozenset({LinkState.PENDING}),
                       LinkState.REVOKED, SYSTEM, "作废"),
        LinkTransition(AccountTokenPurpose.INVITE, "accept", frozenset({LinkState.PENDING}), LinkState.USED,
                       LINK_HOLDER, "接受邀请", "欢迎加入！账号已创建并已登录。"),
        LinkTransition(AccountTokenPurpose.INVITE, "cancel", frozenset({LinkState.PENDING}),
                       LinkState.REVOKED, ORG_MANAGER, "取消邀请", "邀请已取消，邮件中的链接已失效。",
                       style="outline-danger", confirm="取消后邮件中的邀请链接将失效，确认取消？"),
        LinkTransition(AccountTokenPurpose.INVITE, "supersede", frozenset({LinkState.PENDING}),
                       LinkState.REVOKED, SYSTEM, "作废"),
    )
}


class InvalidLink(NotFound):
    """An account link that cannot be used: unknown or malformed (404), or used, withdrawn or
    expired (410). ``state`` says which, for the page that explains it."""

    def __init__(self, message: str, state: str | None = None, purpose: str | None = None):
        super().__init__(message)
        self.state = state
        self.purpose = purpose
        self.status_code = 404 if state is None else 410


def link_state(token: AccountToken) -> str:
    if token.used_at is not None:
        return LinkState.USED
    if token.revoked_at is not None:
        return LinkState.REVOKED
    if token.expires_at <= utcnow():
        return LinkState.EXPIRED
    return LinkState.PENDING


def _lifetime(purpose: str) -> timedelta:
    config = current_app.config
    if purpose == AccountTokenPurpose.RESET:
        return timedelta(hours=float(config["PASSWORD_RESET_HOURS"]))
    return timedelta(days=float(config["INVITATION_DAYS"]))


def _issue(purpose: str, email: str, *, user: User | None = None,
           organization: Organization | None = None, created_by: User | None = None,
           lifetime: timedelta | None = None) -> tuple[str, AccountToken]:
    """A new link (raw token, row); the row is added to the session, not committed."""
    raw = secrets.token_urlsafe(32)
    now = utcnow()
    token = AccountToken(
        purpose=purpose,
        token_hash=sessions.hash_token(raw),
        user_id=user.id if user is not None else None,
        email=User.normalize_email(email),
        organization_id=organization.id if organization is not None else None,
        created_by_id=created_by.id if created_by is not None else None,
        created_at=now,
        expires_at=now + (lifetime or _lifetime(purpose)),
    )
    db.session.add(token)
    return raw, token


def _supersede(purpose: str, *conditions) -> None:
    """Withdraw the pending links of ``purpose`` matching ``conditions`` (SYSTEM step)."""
    step = LINK_TRANSITIONS[(purpose, "supersede")]
    assert LinkState.PENDING in step.sources
    db.session.execute(
        update(AccountToken)
        .where(AccountToken.purpose == purpose, AccountToken.used_at.is_(None),
               AccountToken.revoked_at.is_(None), *conditions)
        .values(revoked_at=utcnow())
        .execution_options(synchronize_session=False)
    )


LINK_MESSAGES = {
    None: "链接无效：请确认完整复制了邮件中的链接。",
    LinkState.USED: "该链接已经使用过，每个链接只能使用一次。",
    LinkState.REVOKED: "该链接已失效（已被取消，或已有更新的链接）。",
    LinkState.EXPIRED: "该链接已过期。",
}


def find_link(raw: str, purpose: str) -> AccountToken:
    """The pending link of ``purpose`` with this raw token, or :class:`InvalidLink`."""
    if not TOKEN_PATTERN.match(raw or ""):
        raise InvalidLink(LINK_MESSAGES[None], purpose=purpose)
    token = db.session.scalar(
        select(AccountToken).where(AccountToken.token_hash == sessions.hash_token(raw),
                                   AccountToken.purpose == purpose)
    )
    if token is None:
        raise InvalidLink(LINK_MESSAGES[None], purpose=purpose)
    state = link_state(token)
    if state != LinkState.PENDING:
        raise InvalidLink(LINK_MESSAGES[state], state=state, purpose=purpose)
    return token


def _claim(token: AccountToken, action: str) -> None:
    """Take a LINK_HOLDER/ORG_MANAGER step on a pending link, atomically (single use)."""
    step = LINK_TRANSITIONS[(token.purpose, action)]
    column = "used_at" if step.target == LinkState.USED else "revoked_at"
    now = utcnow()
    claimed = db.session.execute(
        update(AccountToken)
        .where(AccountToken.id == token.id, AccountToken.used_at.is_(None),
               AccountToken.revoked_at.is_(None), AccountToken.expires_at > now)
        .values({column: now})
        .execution_options(synchronize_session=False)
    ).rowcount
    if claimed != 1:
        db.session.rollback()
        db.session.refresh(token)
        state = link_state(token)
        raise InvalidLink(LINK_MESSAGES.get(state, LINK_MESSAGES[None]), state=state, purpose=token.purpose)
    setattr(token, column, now)


# ---------------------------------------------------------------- passwords


def _password_context(user: User) -> dict[str, str]:
    organization = user.organization
    return {
        "email": user.email,
        "name": user.name,
        "organization": organization.name if organization is not None else "",
        "code": organization.credit_code if organization is not None else "",
    }


def _password_changed_email(user: User, how: str) -> None:
    _email(user.email, "您的登录密码已修改", [
        f"{user.name}，您好：",
        "",
        f"您的账号（{user.email}）的登录密码已于 {_local_time(utcnow())} {how}。",
        "所有设备上的登录都已退出，请用新密码重新登录。",
        f"如果这不是您本人的操作，请立即通过「忘记密码」重置密码：{_link('auth.forgot_password')}",
        "并联系组织方。",
    ])


def change_password(user: User, current_password: str, new_password: str) -> bool:
    """A signed-in user changes their password.

    Checks the current password and the password rule; every other sign-in (sessions and
    remember-me cookies on other devices) ends, pending reset links are withdrawn, an email
    notice goes out. The current browser stays signed in with a new login token, remembered as
    before: returns whether it was a remember-me login (for ``login_user``). Commits.
    """
    if not user.check_password(current_password or ""):
        raise ValidationFailed({"current_password": "当前密码不正确"})
    if current_password == new_password:
        raise ValidationFailed({"password": "新密码不能与当前密码相同"})
    problem = password_error(new_password, **_password_context(user))
    if problem:
        raise ValidationFailed({"password": problem})
    remember = sessions.is_remembered(user)
    user.password_hash = generate_password_hash(new_password)
    sessions.end_all_logins(user)
    _supersede(AccountTokenPurpose.RESET, AccountToken.user_id == user.id)
    audit.record(user, "user.password_change", user, "修改登录密码")
    _password_changed_email(user, "在个人账号页面修改")
    db.session.commit()
    sessions.start_login(user, remember)
    return remember


#: The background job that looks the address up and sends the link (``marketplace.jobs.tasks``).
PASSWORD_RESET_JOB = "accounts.password_reset"


def request_password_reset(email: str) -> None:
    """「忘记密码」: queue :func:`send_password_reset` for ``email``.

    The request does the same work for every address (one enqueue), so neither its answer nor
    its timing tells whether the address has an account; the lookup, the link and the email
    happen in the background job.
    """
    jobs.enqueue(PASSWORD_RESET_JOB, User.normalize_email(email)[:120])


def send_password_reset(email: str) -> None:
    """Email a single-use link valid for ``PASSWORD_RESET_HOURS`` to the active account with
    this address; nothing for an unknown or deactivated address. A new link withdraws the
    account's earlier ones. Commits."""
    user = db.session.scalar(select(User).where(User.email == User.normalize_email(email)))
    if user is None or not user.active:
        return
    _send_reset_link(user, created_by=None)
    audit.record(None, "user.reset_request", user, f"申请重置密码（{user.email}）")
    db.session.commit()


def _send_reset_link(user: User, created_by: User | None, new_account: bool = False) -> AccountToken:
    _supersede(AccountTokenPurpose.RESET, AccountToken.user_id == user.id)
    lifetime = _lifetime(AccountTokenPurpose.INVITE) if new_account else None
    raw, token = _issue(AccountTokenPurpose.RESET, user.email, user=user, created_by=created_by,
                        lifetime=lifetime)
    link = _link("auth.reset_password", token=raw)
    if new_account:
        _email(user.email, "您的平台账号已创建，请设置密码", [
            f"{user.name}，您好：",
            "",
            f"系统管理员为您创建了「{user.role_label}」账号，登录邮箱为 {user.email}。",
            "请打开下面的链接设置登录密码（链接只能使用一次）：",
            link,
            f"链接有效期至 {_local_time(token.expires_at)}；过期后可在登录页点击「忘记密码」重新获取。",
        ])
    else:
        _email(user.email, "重置登录密码", [
            f"{user.name}，您好：",
            "",
            "我们收到了重置您平台登录密码的申请。请打开下面的链接设置新密码（链接只能使用一次）：",
            link,
            f"链接有效期至 {_local_time(token.expires_at)}。",
            "如果不是您本人申请，请忽略本邮件，您的密码不会改变。",
        ])
    return token


def reset_link(raw: str) -> AccountToken:
    """The pending reset link for ``raw`` whose account is still active, else InvalidLink."""
    token = find_link(raw, AccountTokenPurpose.RESET)
    if token.user is None or not token.user.active:
        raise InvalidLink(LINK_MESSAGES[LinkState.REVOKED], state=LinkState.REVOKED,
                          purpose=token.purpose)
    return token


def reset_password(raw: str, new_password: str) -> User:
    """Set a new password through an emailed link: the link is used up, the account's other
    reset links are withdrawn and every sign-in ends. Commits."""
    token = reset_link(raw)
    user = token.user
    problem = password_error(new_password, **_password_context(user))
    if problem:
        raise ValidationFailed({"password": problem})
    _claim(token, "use")
    user.password_hash = generate_password_hash(new_password)
    sessions.end_all_logins(user)
    _supersede(AccountTokenPurpose.RESET, AccountToken.user_id == user.id, AccountToken.id != token.id)
    audit.record(user, "user.password_reset", user, "通过邮件链接重置登录密码")
    _password_changed_email(user, "通过邮件链接重置")
    db.session.commit()
    return user


# ---------------------------------------------------------------- organization members
#
# The organization's 管理员 (``User.org_admin``; its first user) invites colleagues by email,
# cancels pending invitations, removes colleagues and hands the role over. Organizers and
# admins may do the same for any organization. Every page, form and test asks :func:`can`.

VIEW_ACTIONS = frozenset({"view_members", "view_license"})


def _member_of(user: User | None, organization_id: int | None) -> bool:
    return bool(
        user is not None and user.is_authenticated and user.active
        and organization_id is not None and user.organization_id == organization_id
    )


def _is_staff(user: User | None) -> bool:
    return bool(user is not None and user.is_authenticated and user.is_staff)


def is_org_manager(user: User | None, organization_id: int | None) -> bool:
    """The organization's 管理员, or an organizer / admin."""
    return _is_staff(user) or (_member_of(user, organization_id) and bool(user.org_admin))


@dataclass(frozen=True)
class MemberAction:
    """A 管理员's action on a colleague (the template's buttons read this table)."""

    action: str
    label: str
    done: str
    style: str
    confirm: str


MEMBER_ACTIONS: dict[str, MemberAction] = {
    a.action: a
    for a in (
        MemberAction("make_admin", "移交管理员", "已将管理员权限移交给{name}。", "outline-primary",
                     "移交后对方成为本单位管理员，您将不再能邀请或移除同事。确认移交？"),
        MemberAction("remove", "移出本单位", "已将{name}移出本单位，其账号已停用并退出所有登录。",
                     "outline-danger", "移出后该同事的账号将被停用，无法再登录。确认移出？"),
    )
}


def license_upload_problem(user: User | None, organization: Organization) -> str | None:
    if _is_staff(user):
        return None
    if not _member_of(user, organization.id):
        return "只能为本单位上传证照"
    if (organization.license_file_id is not None and organization.verified
            and not organization.has_pending_identity):
        return ("单位已认证，证照已存档。如单位名称或统一社会信用代码有变更，请先在单位信息页提交变更，"
                "再上传新的证照")
    return None


def member_problem(actor: User | None, action: str, target: User) -> str | None:
    if action not in MEMBER_ACTIONS:
        return "不支持的操作"
    if not is_org_manager(actor, target.organization_id):
        return "只有本单位管理员和组织方可以管理成员"
    if target.role != Role.MEMBER or target.organization_id is None:
        return "该账号不是单位用户"
    if not target.active:
        return "该账号已停用"
    if action == "remove":
        if actor.id == target.id:
            return "不能移出自己；如需更换管理员，请先移交管理员权限"
        if target.org_admin:
            return "不能移出单位管理员；请先将管理员权限移交给其他同事"
    if action == "make_admin" and target.org_admin:
        return "该同事已是管理员"
    return None


def problem(user: User | None, action: str, obj: object) -> str | None:
    """Why ``user`` may not do ``action`` on ``obj`` (a Chinese message), or None when allowed.

    * :class:`Organization`: ``view_members``, ``view_license`` (its members, organizers,
      admins); ``invite`` (its 管理员, organizers, admins); ``upload_license``
      (:func:`license_upload_problem`).
    * :class:`User` (a colleague): every action of :data:`MEMBER_ACTIONS`.
    * :class:`AccountToken` (an invitation): ``cancel``.
    """
    if isinstance(obj, Organization):
        if action in VIEW_ACTIONS:
            ok = _member_of(user, obj.id) or _is_staff(user)
            return None if ok else "只有本单位成员和组织方可以查看"
        if action == "invite":
            return None if is_org_manager(user, obj.id) else "只有本单位管理员和组织方可以邀请同事"
        if action == "upload_license":
            return license_upload_problem(user, obj)
    elif isinstance(obj, User):
        return member_problem(user, action, obj)
    elif isinstance(obj, AccountToken):
        step = LINK_TRANSITIONS.get((obj.purpose, action))
        if step is None or step.who != ORG_MANAGER:
            return "不支持的操作"
        if not is_org_manager(user, obj.organization_id):
            return "只有本单位管理员和组织方可以取消邀请"
        if link_state(obj) not in step.sources:
            return f"该邀请{LinkState.label_of(link_state(obj))}，不能{step.label}"
        return None
    return "不支持的操作"


def can(user: User | None, action: str, obj: object) -> bool:
    """The permission function of accounts (see :func:`problem`)."""
    return problem(user, action, obj) is None


def require(user: User | None, action: str, obj: object) -> None:
    """Raise PermissionDenied (or InvalidTransition for a step the object's state refuses)."""
    reason = problem(user, action, obj)
    if reason is None:
        return
    allowed_view = isinstance(obj, Organization) and can(user, "view_members", obj)
    if isinstance(obj, User) and is_org_manager(user, obj.organization_id):
        raise InvalidTransition(reason)
    if isinstance(obj, AccountToken) and is_org_manager(user, obj.organization_id):
        raise InvalidTransition(reason)
    if action == "upload_license" and allowed_view:
        raise InvalidTransition(reason)
    raise PermissionDenied(reason)


@dataclass
class MembersView:
    """What the members page shows."""

    organization: Organization
    active: list[User]
    removed: list[User]
    invitations: list[AccountToken]


def members_view(actor: User, organization: Organization) -> MembersView:
    require(actor, "view_members", organization)
    users = db.session.scalars(
        select(User).where(User.organization_id == organization.id)
        .order_by(User.org_admin.desc(), User.id)
    ).all()
    invitations: list[AccountToken] = []
    if is_org_manager(actor, organization.id):
        invitations = list(db.session.scalars(
            select(AccountToken)
            .where(AccountToken.organization_id == organization.id,
                   AccountToken.purpose == AccountTokenPurpose.INVITE,
                   AccountToken.used_at.is_(None), AccountToken.revoked_at.is_(None),
                   AccountToken.expires_at > utcnow())
            .order_by(AccountToken.created_at.desc(), AccountToken.id.desc())
        ))
    return MembersView(
        organization=organization,
        active=[u for u in users if u.active],
        removed=[u for u in users if not u.active],
        invitations=invitations,
    )


EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def invite_colleague(actor: User, organization: Organization, email: str) -> AccountToken:
    """Email an invitation (valid ``INVITATION_DAYS``) to join ``organization``.

    The inviter learns nothing about other organizations' accounts: when the address already
    has an account elsewhere, the invitation is recorded the same way, and the email tells its
    owner that one account belongs to one organization (there is no link to follow). Inviting
    the same address again replaces the pending invitation. Commits.
    """
    require(actor, "invite", organization)
    email = User.normalize_email(email)
    if not EMAIL_PATTERN.match(email) or len(email) > 120:
        raise ValidationFailed({"email": "请输入有效的邮箱地址"})
    existing = db.session.scalar(select(User).where(User.email == email))
    if existing is not None and existing.organization_id == organization.id:
        raise ValidationFailed({"email": "该邮箱已是本单位的账号"})
    _supersede(AccountTokenPurpose.INVITE, AccountToken.organization_id == organization.id,
               AccountToken.email == email)
    raw, token = _issue(AccountTokenPurpose.INVITE, email, organization=organization, created_by=actor)
    inviter = f"{actor.name}（{organization.name}）" if actor.organization_id == organization.id else (
        f"组织方 {actor.name}")
    if existing is None:
        _email(email, f"邀请您加入「{organization.name}」", [
            "您好：",
            "",
            f"{inviter}邀请您加入平台上的「{organization.name}」，与同事一起发布和管理场景需求、产品及答题。",
            "请打开下面的链接填写姓名并设置密码，完成后即可登录（链接只能使用一次）：",
            _link("auth.accept_invitation", token=raw),
            f"链接有效期至 {_local_time(token.expires_at)}。如果您不认识邀请人，请忽略本邮件。",
        ])
    else:
        _email(email, f"邀请您加入「{organization.name}」", [
            f"{existing.name}，您好：",
            "",
            f"{inviter}邀请您加入平台上的「{organization.name}」。",
            "您的邮箱已有平台账号，而一个账号只能属于一个单位，因此无法直接接受该邀请。",
            "如需调整所属单位，请联系组织方；也可以请邀请人改用您的其他邮箱。",
        ])
    audit.record(actor, "org.invite", organization, f"邀请 {email} 加入本单位")
    db.session.commit()
    return token


def get_invitation(token_id: int) -> AccountToken:
    token = db.session.get(AccountToken, token_id)
    if token is None or token.purpose != AccountTokenPurpose.INVITE:
        raise NotFound("邀请不存在")
    return token


def cancel_invitation(actor: User, token: AccountToken) -> None:
    require(actor, "cancel", token)
    _claim(token, "cancel")
    audit.record(actor, "org.invite_cancel", token.organization, f"取消对 {token.email} 的邀请")
    db.session.commit()


def invitation_link(raw: str) -> AccountToken:
    """The pending invitation for ``raw``; an address that has meanwhile got an account
    cannot accept (InvalidLink, 409-like state ``used``)."""
    token = find_link(raw, AccountTokenPurpose.INVITE)
    if email_taken(token.email):
        raise InvalidLink(
            "该邮箱已有平台账号，不能再用它接受邀请。请直接登录；如需调整所属单位，请联系组织方。",
            state=LinkState.USED, purpose=token.purpose,
        )
    return token


def accept_invitation(raw: str, name: str, phone: str, password: str) -> User:
    """Create the invited colleague's account (a member of the inviting organization, never a
    new organization); the link is used up. Commits; the caller signs the new user in."""
    token = invitation_link(raw)
    organization = token.organization
    errors: dict[str, str] = {}
    name = (name or "").strip()
    if not name:
        errors["name"] = "请填写姓名"
    problem_text = password_error(password, token.email, name, organization.name, organization.credit_code)
    if problem_text:
        errors["password"] = problem_text
    if errors:
        raise ValidationFailed(errors)
    _claim(token, "accept")
    user = User(email=token.email, name=name, phone=(phone or "").strip(), role=Role.MEMBER,
                organization=organization, org_admin=False)
    user.password_hash = generate_password_hash(password)
    db.session.add(user)
    db.session.flush()
    audit.record(user, "org.join", organization, f"{name}（{user.email}）接受邀请加入本单位")
    inviter = token.created_by
    if inviter is not None and inviter.active:
        _email(inviter.email, f"{name} 已接受邀请加入「{organization.name}」", [
            f"{inviter.name}，您好：",
            "",
            f"{name}（{user.email}）已接受邀请，成为「{organization.name}」的成员。",
            f"成员管理：{_link('auth.members', org_id=organization.id)}",
        ])
    db.session.commit()
    return user


def remove_member(actor: User, target: User) -> None:
    """Remove a colleague: the account is deactivated (it stays in the organization's history
    and an admin can reactivate it) and every sign-in ends. Commits."""
    require(actor, "remove", target)
    target.active = False
    target.org_admin = False
    sessions.end_all_logins(target)
    organization = target.organization
    audit.record(actor, "org.member_remove", organization,
                 f"移出 {target.name}（{target.email}），账号已停用")
    _email(target.email, f"您已被移出「{organization.name}」", [
        f"{target.name}，您好：",
        "",
        f"「{organization.name}」的管理员已将您移出本单位，您的平台账号已停用。",
        "如有疑问，请联系本单位管理员或组织方。",
    ])
    db.session.commit()


def hand_over_admin(actor: User, target: User) -> None:
    """Make ``target`` the organization's 管理员; whoever held the role gives it up. Commits."""
    require(actor, "make_admin", target)
    organization = target.organization
    db.session.execute(
        update(User).where(User.organization_id == organization.id, User.id != target.id)
        .values(org_admin=False).execution_options(synchronize_session=False)
    )
    for user in organization.users:
        if user.id != target.id:
            user.org_admin = False
    target.org_admin = True
    audit.record(actor, "org.admin_handover", organization, f"管理员移交给 {target.name}（{target.email}）")
    _email(target.email, f"您已成为「{organization.name}」的管理员", [
        f"{target.name}，您好：",
        "",
        f"{actor.name} 已将「{organization.name}」的管理员权限移交给您。",
        f"您现在可以邀请和移除同事：{_link('auth.members', org_id=organization.id)}",
    ])
    db.session.commit()


# ---------------------------------------------------------------- 营业执照 / 统一社会信用代码证书


def set_license(actor: User, organization: Organization, upload: Upload) -> StoredFile:
    """Store the organization's license (image or PDF), replacing the previous one.

    Members upload it while the organization is unverified, or has a pending change of name or
    credit code (the organizer then sees the new document beside the change); staff at any
    time. Commits; the replaced file is deleted afterwards.
    """
    require(actor, "upload_license", organization)
    stored = uploads.store(upload.stream, upload.filename, LICENSE_POLICY, organization.id, actor,
                           field="license")
    old = organization.license_file
    organization.license_file = stored
    summary = f"上传证照「{stored.original_name}」" + ("（替换原证照）" if old is not None else "")
    audit.record(actor, "org.license", organization, summary)
    if organization.has_pending_identity and not actor.is_staff:
        notifications.notify_staff(
            NotificationKind.ORG_IDENTITY,
            f"「{organization.name}」为名称或信用代码变更上传了新的证照",
            f"申请变更为「{organization.display_pending_name}」"
            f"（{organization.display_pending_credit_code}），请在单位认证页面核对证照。",
            notifications.path_for("admin.organization", id=organization.id),
        )
    _commit_with_files([old] if old is not None else None)
    return stored


def license_file(actor: User, organization: Organization) -> StoredFile:
    """The license for a download, if ``actor`` may see it."""
    require(actor, "view_license", organization)
    if organization.license_file is None:
        raise NotFound("该单位尚未上传证照")
    return organization.license_file


# ---------------------------------------------------------------- staff accounts (admins only)


def create_staff_account(actor: User, email: str, name: str, phone: str = "",
                         password: str | None = None) -> User:
    """An admin creates an organizer account: with an initial password, or (``password`` None)
    with an emailed single-use link to set one (valid ``INVITATION_DAYS``). Commits."""
    if actor is None or not actor.is_authenticated or not actor.is_admin:
        raise PermissionDenied("只有系统管理员可以创建组织方账号")
    name = (name or "").strip()
    if password:
        return create_user(email, password, name, role=Role.ORGANIZER, phone=(phone or "").strip(),
                           actor=actor)
    errors: dict[str, str] = {}
    if not name:
        errors["name"] = "请填写姓名"
    if email_taken(email):
        errors["email"] = "该邮箱已注册"
    if errors:
        raise ValidationFailed(errors)
    user = User(email=User.normalize_email(email), name=name, phone=(phone or "").strip(),
                role=Role.ORGANIZER)
    user.password_hash = generate_password_hash(secrets.token_urlsafe(32))  # unknown to anyone
    db.session.add(user)
    db.session.flush()
    _send_reset_link(user, created_by=actor, new_account=True)
    audit.record(actor, "user.create", user,
                 f"创建账号 {user.email}（{user.role_label}），已发送设置密码邮件")
    db.session.commit()
    return user

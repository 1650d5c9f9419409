"""Organizations, users, registration and verification."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from functools import lru_cache

from flask import current_app
from sqlalchemy import exists, or_, select
from werkzeug.security import check_password_hash, generate_password_hash

from marketplace import credit_code
from marketplace.extensions import db
from marketplace.models import (
    EntryStatus,
    NotificationKind,
    Opportunity,
    Organization,
    OrgKind,
    Product,
    Role,
    User,
)
from marketplace.models.base import utcnow
from marketplace.passwords import password_problem
from marketplace.reference import reference
from marketplace.services import audit, index_sync, mail, notifications, sessions
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


def register_organization(org: OrganizationData, user: UserData) -> User | None:
    """Register an organization together with its first user (unverified until reviewed).

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
    )
    account.set_password(user.password)
    db.session.add_all([organization, account])
    db.session.flush()
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
    db.session.commit()
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
    """Create an account (CLI, seeds and admins)."""
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

"""Organizations, users, registration and verification."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from marketplace import credit_code
from marketplace.extensions import db
from marketplace.models import Organization, OrgKind, Role, User
from marketplace.models.base import utcnow
from marketplace.reference import reference
from marketplace.services import audit
from marketplace.services.errors import (
    InvalidTransition,
    NotFound,
    PermissionDenied,
    ValidationFailed,
)

MIN_PASSWORD_LENGTH = 8


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
    errors: dict[str, str] = {}
    if data.kind not in {k.value for k in OrgKind}:
        errors["kind"] = "单位类型无效"
    try:
        data.credit_code = credit_code.validate(data.credit_code)
    except credit_code.CreditCodeError as exc:
        errors["credit_code"] = str(exc)
    else:
        stmt = select(Organization.id).where(Organization.credit_code == data.credit_code)
        if exclude_id is not None:
            stmt = stmt.where(Organization.id != exclude_id)
        if db.session.scalar(stmt) is not None:
            errors["credit_code"] = "该统一社会信用代码已注册"
    name = (data.name or "").strip()
    if not name:
        errors["name"] = "请填写单位名称"
    else:
        stmt = select(Organization.id).where(Organization.name == name)
        if exclude_id is not None:
            stmt = stmt.where(Organization.id != exclude_id)
        if db.session.scalar(stmt) is not None:
            errors["name"] = "该单位名称已注册"
    if not reference().is_valid_region(data.region_city, data.region_county):
        errors["region_city"] = "所在地区无效"
    return errors


def email_taken(email: str) -> bool:
    return (
        db.session.scalar(select(User.id).where(User.email == User.normalize_email(email)))
        is not None
    )


def register_organization(org: OrganizationData, user: UserData) -> User:
    """Register an organization together with its first user (unverified until reviewed)."""
    errors = _check_organization(org)
    if email_taken(user.email):
        errors["email"] = "该邮箱已注册"
    if len(user.password or "") < MIN_PASSWORD_LENGTH:
        errors["password"] = f"密码至少{MIN_PASSWORD_LENGTH}位"
    if errors:
        raise ValidationFailed(errors)
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
        email=User.normalize_email(user.email),
        name=user.name.strip(),
        phone=user.phone,
        role=Role.MEMBER,
        organization=organization,
    )
    account.set_password(user.password)
    db.session.add_all([organization, account])
    db.session.flush()
    audit.record(account, "org.register", organization, f"注册单位「{organization.name}」")
    db.session.commit()
    return account


def update_organization(actor: User, organization: Organization, data: OrganizationData) -> None:
    """Members edit their own organization's profile; a changed name or code needs re-verification."""
    if not (actor.is_staff or actor.organization_id == organization.id):
        raise PermissionDenied("只能修改本单位的信息")
    errors = _check_organization(data, exclude_id=organization.id)
    if errors:
        raise ValidationFailed(errors)
    identity_changed = (
        organization.name != data.name.strip() or organization.credit_code != data.credit_code
    )
    for field in ("kind", "region_city", "contact_name", "contact_phone", "contact_email",
                  "address", "intro"):
        setattr(organization, field, getattr(data, field))
    organization.name = data.name.strip()
    organization.credit_code = data.credit_code
    organization.region_county = data.region_county or None
    summary = "修改单位信息"
    if identity_changed and organization.verified and not actor.is_staff:
        organization.verified = False
        organization.verified_at = None
        summary += "（名称或信用代码变更，需重新认证）"
    audit.record(actor, "org.update", organization, summary)
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
    """The active user with these credentials, or None."""
    user = db.session.scalar(select(User).where(User.email == User.normalize_email(email)))
    if user is None or not user.active or not user.check_password(password):
        return None
    user.last_login_at = utcnow()
    db.session.commit()
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
    if len(password or "") < MIN_PASSWORD_LENGTH:
        errors["password"] = f"密码至少{MIN_PASSWORD_LENGTH}位"
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
    audit.record(actor, "user.activate" if active else "user.deactivate", user, user.email)
    db.session.commit()


def get_organization(org_id: int) -> Organization:
    org = db.session.get(Organization, org_id)
    if org is None:
        raise NotFound("单位不存在")
    return org

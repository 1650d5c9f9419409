"""创新应用实验室 / 未来场景实验室 (labs): designation, links to needs, the public directory.

* Organizers designate an organisation (a research institute, public institution, service
  organisation or firm, verified) as a lab of either kind, with its focus fields (the 应用领域
  categories of ``seeds/taxonomy.json``), the services it offers (:class:`LabService`) and an
  intro; they edit it, deactivate and reactivate it. One lab per (organisation, kind).
* A published need in 创新研发 or 孵化试点 is linked to an active lab (by organizers or the need's
  publisher) with the service the lab gives and a private note; the same people remove a link.
* Public: ``/labs`` lists active labs (filters kind, field, city); a lab page lists its linked
  needs with titles and stages only (notes are for the need's insiders, see
  :func:`services.lifecycle.can_view_private`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import joinedload

from marketplace import timeutil
from marketplace.extensions import db
from marketplace.models import (
    EntryStatus,
    Lab,
    LabKind,
    LabLink,
    LabService,
    NotificationKind,
    Opportunity,
    Organization,
    OrgKind,
    User,
)
from marketplace.reference import reference
from marketplace.services import audit, lifecycle
from marketplace.services.errors import InvalidTransition, NotFound, PermissionDenied, ValidationFailed

#: Kinds of organisation that may be designated a lab.
LAB_ORG_KINDS = frozenset({OrgKind.RESEARCH, OrgKind.INSTITUTION, OrgKind.SERVICE, OrgKind.ENTERPRISE})
MAX_INTRO = 3000
MAX_NAME = 120


# ---------------------------------------------------------------- permissions


def can(user: User | None, action: str, obj: Any) -> bool:
    """May ``user`` do ``action`` on ``obj``?

    * ``None`` (the labs domain): ``designate``;
    * :class:`Lab`: ``view`` (anyone when active, organizers always), ``edit``, ``deactivate``,
      ``activate`` (organizers);
    * :class:`Opportunity`: ``link_lab`` (see :func:`services.lifecycle.lab_link_problem`);
    * :class:`LabLink`: ``view_private``, ``delete`` (see :mod:`services.lifecycle`).
    """
    return problem(user, action, obj) is None


def problem(user: User | None, action: str, obj: Any) -> str | None:
    staff = lifecycle.is_staff(user)
    if obj is None and action == "designate":
        return None if staff else "只有组织方可以认定实验室"
    if isinstance(obj, Lab):
        if action == "view":
            return None if obj.active or staff else "实验室不存在"
        if action in ("edit", "deactivate", "activate"):
            if not staff:
                return "只有组织方可以管理实验室"
            if action == "deactivate" and not obj.active:
                return "该实验室已停用"
            if action == "activate" and obj.active:
                return "该实验室已在运行"
            return None
    if isinstance(obj, (Opportunity, LabLink)):
        return lifecycle.problem(user, action, obj)
    return "不支持的操作"


def require(user: User | None, action: str, obj: Any) -> None:
    reason = problem(user, action, obj)
    if reason is None:
        return
    if action == "view":
        raise NotFound(reason)
    if isinstance(obj, (Opportunity, LabLink)):
        lifecycle.require(user, action, obj)
    if lifecycle.is_staff(user):
        raise InvalidTransition(reason)
    raise PermissionDenied(reason)


# ---------------------------------------------------------------- lookup


def get_lab(lab_id: int) -> Lab:
    lab = db.session.get(Lab, lab_id, options=[joinedload(Lab.organization)])
    if lab is None:
        raise NotFound("实验室不存在")
    return lab


def visible_lab(user: User | None, lab_id: int) -> Lab:
    lab = get_lab(lab_id)
    require(user, "view", lab)
    return lab


def get_link(link_id: int) -> LabLink:
    options = [joinedload(LabLink.lab), joinedload(LabLink.opportunity)]
    link = db.session.get(LabLink, link_id, options=options)
    if link is None:
        raise NotFound("实验室对接记录不存在")
    return link


@dataclass
class LabFilters:
    kind: str | None = None
    field: str | None = None
    city: str | None = None


def directory(filters: LabFilters) -> list[Lab]:
    """Active labs for the public directory. Focus fields are a JSON list, filtered in Python
    (the directory holds tens of labs, not thousands)."""
    stmt = (
        select(Lab)
        .join(Organization, Organization.id == Lab.organization_id)
        .where(Lab.active.is_(True))
        .options(joinedload(Lab.organization))
        .order_by(Lab.kind, Lab.designated_on.desc(), Lab.id)
    )
    if filters.kind:
        stmt = stmt.where(Lab.kind == filters.kind)
    if filters.city:
        stmt = stmt.where(Organization.region_city == filters.city)
    labs = list(db.session.scalars(stmt))
    if filters.field:
        labs = [lab for lab in labs if filters.field in (lab.focus_fields or [])]
    return labs


def all_labs(actor: User) -> list[Lab]:
    """Every lab, active or not (organizers' list)."""
    require(actor, "designate", None)
    return list(
        db.session.scalars(
            select(Lab).options(joinedload(Lab.organization)).order_by(Lab.active.desc(), Lab.kind, Lab.name)
        )
    )


def public_links(lab: Lab) -> list[LabLink]:
    """A lab's linked needs (published needs only), newest first."""
    return list(
        db.session.scalars(
            select(LabLink)
            .join(Opportunity, Opportunity.id == LabLink.opportunity_id)
            .where(LabLink.lab_id == lab.id, Opportunity.status == EntryStatus.PUBLISHED)
            .options(joinedload(LabLink.opportunity).joinedload(Opportunity.publisher))
            .order_by(LabLink.linked_on.desc(), LabLink.id.desc())
        )
    )


def links_for_opportunity(opportunity_id: int) -> list[LabLink]:
    return list(
        db.session.scalars(
            select(LabLink)
            .where(LabLink.opportunity_id == opportunity_id)
            .options(joinedload(LabLink.lab))
            .order_by(LabLink.linked_on, LabLink.id)
        )
    )


def lab_choices() -> list[Lab]:
    """Active labs a need may be linked to."""
    return list(db.session.scalars(select(Lab).where(Lab.active.is_(True)).order_by(Lab.kind, Lab.name)))


def organization_choices() -> list[Organization]:
    """Verified organisations that may be designated a lab."""
    return list(
        db.session.scalars(
            select(Organization)
            .where(Organization.verified.is_(True), Organization.kind.in_(LAB_ORG_KINDS))
            .order_by(Organization.kind, Organization.name)
        )
    )


# ---------------------------------------------------------------- changes


def _lab_values(data: dict[str, Any], lab: Lab | None) -> dict[str, Any]:
    errors: dict[str, str] = {}
    values: dict[str, Any] = {}
    if lab is None:
        org_id = data.get("organization_id")
        organization = db.session.get(Organization, org_id) if isinstance(org_id, int) else None
        if organization is None or not organization.verified or organization.kind not in LAB_ORG_KINDS:
            errors["organization_id"] = "请选择已认证的科研院所、事业单位、服务机构或企业"
        values["organization"] = organization
        kind = data.get("kind")
        if kind not in {k.value for k in LabKind}:
            errors["kind"] = "请选择实验室类型"
        values["kind"] = kind
        if (
            organization is not None
            and kind
            and db.session.scalar(
                select(Lab.id).where(Lab.organization_id == organization.id, Lab.kind == kind)
            )
        ):
            errors["kind"] = f"该单位已被认定为{LabKind.label_of(kind)}"
        day = data.get("designated_on")
        if not isinstance(day, date):
            errors["designated_on"] = "请填写有效的认定日期"
        elif day > timeutil.local_today():
            errors["designated_on"] = "认定日期不能晚于今天（北京时间）"
        values["designated_on"] = day
    name = (data.get("name") or "").strip()
    if "\x00" in name or not 4 <= len(name) <= MAX_NAME:
        errors["name"] = f"实验室名称应为4到{MAX_NAME}个字"
    values["name"] = name
    fields = list(dict.fromkeys(data.get("focus_fields") or []))
    if not fields:
        errors["focus_fields"] = "请至少选择一个聚焦领域"
    elif any(f not in reference().categories for f in fields):
        errors["focus_fields"] = "聚焦领域无效"
    values["focus_fields"] = fields
    services = list(dict.fromkeys(data.get("services") or []))
    if not services:
        errors["services"] = "请至少选择一项服务"
    elif any(s not in {v.value for v in LabService} for s in services):
        errors["services"] = "服务内容无效"
    values["services"] = services
    intro = (data.get("intro") or "").strip()
    if "\x00" in intro or len(intro) > MAX_INTRO:
        errors["intro"] = f"简介不能超过{MAX_INTRO}个字"
    values["intro"] = intro
    if errors:
        raise ValidationFailed(errors)
    return values


def designate(actor: User, data: dict[str, Any]) -> Lab:
    """An organizer designates an organisation as a lab."""
    require(actor, "designate", None)
    values = _lab_values(data, None)
    lab = Lab(
        organization=values["organization"],
        kind=values["kind"],
        name=values["name"],
        focus_fields=values["focus_fields"],
        services=values["services"],
        intro=values["intro"],
        designated_on=values["designated_on"],
        designated_by_id=actor.id,
        active=True,
    )
    db.session.add(lab)
    db.session.flush()
    audit.record(
        actor, "lab.designate", lab, f"认定「{lab.organization.name}」为{lab.kind_label}「{lab.name}」"
    )
    db.session.commit()
    return lab


def update(actor: User, lab: Lab, data: dict[str, Any]) -> Lab:
    require(actor, "edit", lab)
    values = _lab_values(data, lab)
    for key in ("name", "focus_fields", "services", "intro"):
        setattr(lab, key, values[key])
    audit.record(actor, "lab.update", lab, f"修改实验室「{lab.name}」")
    db.session.commit()
    return lab


def set_active(actor: User, lab: Lab, active: bool) -> Lab:
    require(actor, "activate" if active else "deactivate", lab)
    lab.active = active
    audit.record(
        actor,
        "lab.activate" if active else "lab.deactivate",
        lab,
        f"{'恢复' if active else '停用'}实验室「{lab.name}」",
    )
    db.session.commit()
    return lab


def link(actor: User, opportunity: Opportunity, data: dict[str, Any]) -> LabLink:
    """Link a need in 创新研发 or 孵化试点 to an active lab."""
    require(actor, "link_lab", opportunity)
    errors: dict[str, str] = {}
    lab_id = data.get("lab_id")
    lab = db.session.get(Lab, lab_id) if isinstance(lab_id, int) else None
    if lab is None or not lab.active:
        errors["lab_id"] = "请选择运行中的实验室"
    elif db.session.scalar(
        select(LabLink.id).where(LabLink.lab_id == lab.id, LabLink.opportunity_id == opportunity.id)
    ):
        errors["lab_id"] = "该需求已对接这个实验室"
    service = data.get("service")
    if service not in {v.value for v in LabService}:
        errors["service"] = "请选择服务内容"
    elif lab is not None and "lab_id" not in errors and service not in (lab.services or []):
        errors["service"] = f"「{lab.name}」不提供「{LabService.label_of(service)}」服务"
    note = (data.get("note") or "").strip()
    if "\x00" in note or len(note) > lifecycle.MAX_NOTE:
        errors["note"] = f"说明不能超过{lifecycle.MAX_NOTE}个字"
    day = data.get("linked_on")
    if not isinstance(day, date):
        errors["linked_on"] = "请填写有效的对接日期"
    elif day > timeutil.local_today():
        errors["linked_on"] = "对接日期不能晚于今天（北京时间）"
    elif (published := lifecycle.published_day(opportunity)) is not None and day < published:
        errors["linked_on"] = f"对接日期不能早于需求发布日期（{published:%Y-%m-%d}）"
    if errors:
        raise ValidationFailed(errors)
    row = LabLink(
        lab=lab, opportunity=opportunity, service=service, note=note, linked_on=day, created_by_id=actor.id
    )
    db.session.add(row)
    db.session.flush()
    audit.record(actor, "lab.link", opportunity, f"对接实验室「{lab.name}」（{row.service_label}）")
    recipients = {opportunity.publisher_id, lab.organization_id} | lifecycle.delivering_organization_ids(
        opportunity.id
    )
    lifecycle.notify_organizations(
        recipients,
        actor,
        NotificationKind.LAB_LINK,
        f"实验室对接：{opportunity.title}",
        f"「{opportunity.title}」已对接{lab.kind_label}「{lab.name}」，服务内容：{row.service_label}。",
        lifecycle.need_path(opportunity),
    )
    db.session.commit()
    return row


def unlink(actor: User, row: LabLink) -> None:
    require(actor, "delete", row)
    audit.record(actor, "lab.unlink", row.opportunity, f"取消对接实验室「{row.lab.name}」")
    db.session.delete(row)
    db.session.commit()

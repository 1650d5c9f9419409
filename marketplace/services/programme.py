"""The 十百千 programme: designations (示范区 / 示范项目 / 高成长性企业) and the targets.

Designation workflow, declared as data in :data:`TRANSITIONS` (the service, the templates'
buttons and the tests all read it)::

    (recommend) ──> recommended ──review──> reviewing ──approve──> approved   (已认定)
                     推荐   │       评审中      └──────reject───> rejected   (未通过)
                            └──withdraw──> withdrawn (已撤回)

Who may do what:

* **Recommend (推荐).** Organizers recommend designations of every kind. A member of a verified
  enterprise (民营企业 or 国有企业) may also recommend *its own organisation* as a 高成长性企业
  (企业自主申报), as the province's calls for high-growth firms ask firms to apply; zones and
  projects are recommended by organizers only (they speak for a region or for several parties).
* **Review, approve, reject.** Organizers only (``decided_by`` records the approving organizer;
  rejecting needs a note, which the organisations concerned see).
* **Edit and withdraw (修改 / 撤回).** While a recommendation is still 推荐 (before review), its
  recommender or an organizer may edit it (year, subject, description, evidence; the kind stays)
  or withdraw it (已撤回, a note optional). A member recommender must still belong to the
  recommended firm. A withdrawn recommendation is no longer live: the subject may be recommended
  again.

Subject rules per kind:

* zone (应用场景示范区): a name (the region or park, e.g. 「南昌高新区数字经济应用场景示范区」),
  a 设区市 and optionally a county of it; its needs are published needs located in that city (and
  county, when one is given);
* project (应用场景示范项目): a published need in 示范推广; its delivering firms (organisations with
  a selected response, the accepted members of that response's consortium, and the signing
  parties) are recorded with it;
* firm (高成长性企业): a verified 民营企业 or 国有企业.

One live (not rejected) designation per subject and kind: a rejected one may be recommended
again. Each step is audited and notifies the organisations concerned (the firm; the need's
publisher and the delivering firms; the publishers of a zone's needs).

Visibility: organizers see everything; a member sees the designations that concern its
organisation (with the decision note and the evidence); the public sees approved designations
only, through the badges and the 「成果」 page, never notes or evidence, and never a designation
of a need that is not published.

Targets (:class:`ProgrammeTarget`): per year or cumulative up to the end of a year. The Jiangxi
defaults (:data:`DEFAULT_TARGETS`): 50 zones, 300 projects and 3000 firms in total by 2025; 10
zones and 60 projects a year in the 2022 plan (2022–2025).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, BinaryIO

from sqlalchemy import and_, exists, func, or_, select, union
from sqlalchemy.orm import selectinload

from marketplace import timeutil
from marketplace.extensions import db
from marketplace.models import (
    ConsortiumMember,
    Designation,
    DesignationKind,
    DesignationOpportunity,
    DesignationOrganization,
    DesignationStatus,
    EntryStatus,
    InvitationStatus,
    NotificationKind,
    Opportunity,
    Organization,
    OrgKind,
    ProgrammeTarget,
    Response,
    ResponseStatus,
    ScenarioStage,
    SigningParty,
    StoredFile,
    User,
)
from marketplace.models.programme import Signing
from marketplace.reference import reference
from marketplace.services import audit, notifications, uploads
from marketplace.services.errors import InvalidTransition, NotFound, PermissionDenied, ValidationFailed

ORGANIZER = "organizer"
#: Organizers, or the user who recommended the designation (see :func:`is_recommender`).
RECOMMENDER = "recommender"
#: Kinds of organisation that can be a 高成长性企业.
FIRM_KINDS = frozenset({OrgKind.ENTERPRISE, OrgKind.SOE})
MIN_YEAR = 2018
MAX_NAME = 200
MAX_DESCRIPTION = 3000
MAX_NOTE = 2000
MAX_ZONE_NEEDS = 200
MAX_TARGET = 100_000
EVIDENCE_POLICY = uploads.UploadPolicy(
    purpose="designation", types=frozenset({"application/pdf", "image/png", "image/jpeg"})
)
LIVE = frozenset({DesignationStatus.RECOMMENDED, DesignationStatus.REVIEWING, DesignationStatus.APPROVED})


@dataclass(frozen=True)
class Transition:
    """One step of the designation workflow."""

    action: str
    sources: frozenset[str]
    target: str
    #: :data:`ORGANIZER` (organizers only) or :data:`RECOMMENDER` (organizers and the recommender).
    who: str
    label: str
    done: str
    style: str = "primary"
    note_required: bool = False
    confirm: str | None = None


TRANSITIONS: dict[str, Transition] = {
    t.action: t
    for t in (
        Transition("review", frozenset({DesignationStatus.RECOMMENDED}), DesignationStatus.REVIEWING,
                   ORGANIZER, "开始评审", "已进入评审。", style="outline-primary"),
        Transition("approve", frozenset({DesignationStatus.REVIEWING}), DesignationStatus.APPROVED,
                   ORGANIZER, "认定", "已认定，相关单位将收到通知，公开页面显示认定标识。", style="success",
                   confirm="确定认定吗？认定后将在公开页面显示。"),
        Transition("reject", frozenset({DesignationStatus.REVIEWING}), DesignationStatus.REJECTED,
                   ORGANIZER, "不予认定", "已标记为未通过，相关单位将收到通知。", style="outline-danger",
                   note_required=True),
        Transition("withdraw", frozenset({DesignationStatus.RECOMMENDED}), DesignationStatus.WITHDRAWN,
                   RECOMMENDER, "撤回推荐", "推荐已撤回。", style="outline-secondary",
                   confirm="确定撤回该推荐吗？撤回后不再进入评审。"),
    )
}
#: Statuses in which a recommendation may still be edited.
EDITABLE = frozenset({DesignationStatus.RECOMMENDED})

#: The Jiangxi plan: (year, kind, cumulative, target).
DEFAULT_TARGETS: tuple[tuple[int, str, bool, int], ...] = (
    (2025, DesignationKind.ZONE, True, 50),
    (2025, DesignationKind.PROJECT, True, 300),
    (2025, DesignationKind.FIRM, True, 3000),
    *((year, kind, False, n) for year in range(2022, 2026)
      for kind, n in ((DesignationKind.ZONE, 10), (DesignationKind.PROJECT, 60))),
)


# ---------------------------------------------------------------- who is who


def is_staff(user: User | None) -> bool:
    return bool(user is not None and user.is_authenticated and user.is_staff)


def _org_id(user: User | None) -> int | None:
    if user is None or not user.is_authenticated:
        return None
    return user.organization_id


def concerned_org_ids(designation: Designation) -> set[int]:
    """The organisations a designation is about (they are notified and may see it)."""
    if designation.kind == DesignationKind.FIRM:
        return {designation.organization_id} if designation.organization_id else set()
    if designation.kind == DesignationKind.PROJECT:
        ids = {row.organization_id for row in designation.organizations}
        if designation.opportunity is not None:
            ids.add(designation.opportunity.publisher_id)
        return ids
    return {row.opportunity.publisher_id for row in designation.opportunities}


def self_recommend_problem(user: User | None) -> str | None:
    """Why ``user`` may not recommend its own organisation as 高成长性企业 (None: it may)."""
    if user is None or not user.is_authenticated:
        return "请先登录"
    organization = user.organization
    if organization is None:
        return "组织方账号请在认定管理中推荐"
    if organization.kind not in FIRM_KINDS:
        return f"只有{OrgKind.ENTERPRISE.label}和{OrgKind.SOE.label}可以申报高成长性企业"
    if not organization.verified:
        return "本单位尚未通过组织方认证，暂不能申报"
    if _live_duplicate(DesignationKind.FIRM, organization_id=organization.id) is not None:
        return "本单位已有推荐中、评审中或已认定的高成长性企业记录"
    return None


def is_recommender(user: User | None, designation: Designation) -> bool:
    """``user`` recommended ``designation`` (a member only while still in the firm it recommended)."""
    if user is None or not user.is_authenticated or designation.recommended_by_id != user.id:
        return False
    if is_staff(user):
        return True
    return designation.organization_id is not None and user.organization_id == designation.organization_id


def transition_problem(user: User | None, designation: Designation, action: str) -> str | None:
    step = TRANSITIONS.get(action)
    if step is None:
        return "未知的操作"
    if not is_staff(user):
        if step.who != RECOMMENDER:
            return "只有组织方可以评审认定"
        if not is_recommender(user, designation):
            return "只有推荐人或组织方可以撤回推荐"
    if designation.status not in step.sources:
        return f"「{designation.status_label}」状态的认定不能{step.label}"
    return None


def edit_problem(user: User | None, designation: Designation) -> str | None:
    """Why ``user`` may not edit ``designation`` (None: they may)."""
    if not (is_staff(user) or is_recommender(user, designation)):
        return "只有推荐人或组织方可以修改推荐"
    if designation.status not in EDITABLE:
        return f"「{designation.status_label}」状态的认定不能修改，只有「推荐」状态可以修改"
    return None


def problem(user: User | None, action: str, obj: Any) -> str | None:
    """Why ``user`` may not do ``action`` on ``obj`` (None: they may).

    * ``Designation`` (the class): ``list`` (organizers see all, members their own), ``create``
      (organizers), ``self_recommend`` (members of a verified enterprise, for their own firm);
    * a :class:`Designation`: ``view``, ``evidence``, ``edit`` and every action of
      :data:`TRANSITIONS`;
    * ``ProgrammeTarget`` (the class): ``edit`` (organizers);
    * ``"dashboard"``: ``view`` (organizers).
    """
    if obj is Designation:
        if action == "list":
            return None if (is_staff(user) or _org_id(user)) else "请先登录"
        if action == "create":
            return None if is_staff(user) else "只有组织方可以推荐认定"
        if action == "self_recommend":
            return self_recommend_problem(user)
        return "未知的操作"
    if isinstance(obj, Designation):
        if action in ("view", "evidence"):
            if is_staff(user):
                return None
            org_id = _org_id(user)
            return None if org_id is not None and org_id in concerned_org_ids(obj) else "认定记录不存在"
        if action == "edit":
            return edit_problem(user, obj)
        return transition_problem(user, obj, action)
    if obj is ProgrammeTarget or obj == "dashboard":
        return None if is_staff(user) else "只有组织方可以查看和维护"
    return "未知的操作"


def can(user: User | None, action: str, obj: Any) -> bool:
    """The permission function of the programme domain (see :func:`problem`)."""
    return problem(user, action, obj) is None


def require(user: User | None, action: str, obj: Any) -> None:
    """Raise unless :func:`can`: NotFound for a designation the user may not see,
    InvalidTransition when an organizer's step is not allowed from the current status,
    PermissionDenied otherwise."""
    reason = problem(user, action, obj)
    if reason is None:
        return
    if isinstance(obj, Designation):
        if not can(user, "view", obj):
            raise NotFound("认定记录不存在")
        # Someone entitled to the action, refused only by the designation's status.
        entitled = is_staff(user) or (
            is_recommender(user, obj) and (action == "edit" or (
                action in TRANSITIONS and TRANSITIONS[action].who == RECOMMENDER)))
        if entitled and (action == "edit" or action in TRANSITIONS):
            raise InvalidTransition(reason)
    raise PermissionDenied(reason)


def allowed_actions(user: User | None, designation: Designation) -> list[Transition]:
    return [t for a, t in TRANSITIONS.items() if transition_problem(user, designation, a) is None]


# ---------------------------------------------------------------- reading


def get_designation(designation_id: int) -> Designation:
    found = db.session.scalar(
        select(Designation)
        .options(
            selectinload(Designation.opportunities).selectinload(DesignationOpportunity.opportunity),
            selectinload(Designation.organizations).selectinload(DesignationOrganization.organization),
        )
        .where(Designation.id == designation_id)
    )
    if found is None:
        raise NotFound("认定记录不存在")
    return found


def visible_designation(user: User | None, designation_id: int) -> Designation:
    designation = get_designation(designation_id)
    require(user, "view", designation)
    return designation


def _concerning(org_id: int):
    """SQL condition: the designation concerns organisation ``org_id``."""
    return or_(
        Designation.organization_id == org_id,
        exists().where(DesignationOrganization.designation_id == Designation.id,
                       DesignationOrganization.organization_id == org_id),
        exists().where(Opportunity.id == Designation.opportunity_id, Opportunity.publisher_id == org_id),
        exists().where(DesignationOpportunity.designation_id == Designation.id,
                       Opportunity.id == DesignationOpportunity.opportunity_id,
                       Opportunity.publisher_id == org_id),
    )


def designation_city():
    """SQL: the city of a designation (zone: its own; project: the need's; firm: the firm's)."""
    return func.coalesce(
        Designation.region_city,
        select(Opportunity.region_city).where(Opportunity.id == Designation.opportunity_id)
        .correlate(Designation).scalar_subquery(),
        select(Organization.region_city).where(Organization.id == Designation.organization_id)
        .correlate(Designation).scalar_subquery(),
    )


def list_designations(user: User | None, filters: dict[str, Any], page: int = 1, per_page: int = 30):
    """Designations ``user`` may see, newest year first, filtered by kind / year / status / city."""
    require(user, "list", Designation)
    stmt = select(Designation).options(
        selectinload(Designation.opportunity), selectinload(Designation.organization),
        selectinload(Designation.decided_by),
    )
    if not is_staff(user):
        stmt = stmt.where(_concerning(user.organization_id))
    if filters.get("kind"):
        stmt = stmt.where(Designation.kind == filters["kind"])
    if filters.get("status"):
        stmt = stmt.where(Designation.status == filters["status"])
    if filters.get("year"):
        stmt = stmt.where(Designation.year == filters["year"])
    if filters.get("city"):
        stmt = stmt.where(designation_city() == filters["city"])
    stmt = stmt.order_by(Designation.year.desc(), Designation.kind, Designation.id.desc())
    return db.paginate(stmt, page=page, per_page=per_page, error_out=False)


def status_counts() -> list[tuple[str, int]]:
    """(status label, designations) in workflow order, for the organizers' list header."""
    found = dict(db.session.execute(
        select(Designation.status, func.count()).group_by(Designation.status)).all())
    return [(status.label, found[status.value]) for status in DesignationStatus if found.get(status.value)]


# ---------------------------------------------------------------- delivering firms


def delivering_org_ids(opportunity_id: int) -> list[int]:
    """Organisations delivering a need, in one query: those with a selected response, the
    accepted members of its consortium, and the parties of the need's signings."""
    selected = select(Response.organization_id.label("org_id")).where(
        Response.opportunity_id == opportunity_id, Response.status == ResponseStatus.SELECTED)
    members = (
        select(ConsortiumMember.organization_id.label("org_id"))
        .join(Response, Response.consortium_id == ConsortiumMember.consortium_id)
        .where(Response.opportunity_id == opportunity_id, Response.status == ResponseStatus.SELECTED,
               ConsortiumMember.status == InvitationStatus.ACCEPTED)
    )
    parties = (
        select(SigningParty.organization_id.label("org_id"))
        .join(Signing, Signing.id == SigningParty.signing_id)
        .where(Signing.opportunity_id == opportunity_id)
    )
    found = union(selected, members, parties).subquery()
    return sorted(db.session.scalars(select(found.c.org_id)))


# ---------------------------------------------------------------- recommending


def _text(data: dict, key: str, label: str, hi: int, errors: dict[str, str], required: bool = False) -> str:
    value = str(data.get(key) or "").strip()
    if "\x00" in value:
        errors[key] = f"{label}包含无效字符"
    elif required and not value:
        errors[key] = f"请填写{label}"
    elif len(value) > hi:
        errors[key] = f"{label}不能超过{hi}个字"
    return value


def _year(value: Any, errors: dict[str, str]) -> int | None:
    try:
        year = int(value)
    except (TypeError, ValueError):
        errors["year"] = "请填写年度"
        return None
    latest = timeutil.local_today().year + 1
    if not MIN_YEAR <= year <= latest:
        errors["year"] = f"年度应在 {MIN_YEAR}–{latest} 之间"
        return None
    return year


def parse_need_ids(raw: str) -> list[int]:
    """「12, 15 18」 → [12, 15, 18]; anything else than numbers is a ValueError."""
    parts = [p for p in re.split(r"[\s,，、;；]+", raw or "") if p]
    ids = []
    for part in parts:
        if not part.isdigit() or len(part) > 9:
            raise ValueError(part)
        ids.append(int(part))
    return list(dict.fromkeys(ids))


def _live_duplicate(kind: str, *, opportunity_id: int | None = None, organization_id: int | None = None,
                    name: str | None = None, exclude_id: int | None = None) -> Designation | None:
    stmt = select(Designation).where(Designation.kind == kind, Designation.status.in_(LIVE))
    if exclude_id is not None:
        stmt = stmt.where(Designation.id != exclude_id)
    if opportunity_id is not None:
        stmt = stmt.where(Designation.opportunity_id == opportunity_id)
    if organization_id is not None:
        stmt = stmt.where(Designation.organization_id == organization_id)
    if name is not None:
        stmt = stmt.where(Designation.name == name)
    return db.session.scalar(stmt.limit(1))


def find_firm(value: str) -> Organization | None:
    """An organisation by exact name or 统一社会信用代码."""
    value = (value or "").strip()
    if not value:
        return None
    return db.session.scalar(
        select(Organization).where(or_(Organization.name == value, Organization.credit_code == value.upper()))
    )


def clean(data: dict, exclude_id: int | None = None) -> dict[str, Any]:
    """Check a recommendation; returns the values, or raises :class:`ValidationFailed`.

    ``data`` keys: kind, year, description; zone: name, region_city, region_county, need_ids
    (text); project: opportunity_id; firm: organization (name or credit code). ``exclude_id``:
    the designation being edited (it is not its own duplicate).
    """
    errors: dict[str, str] = {}
    kind = data.get("kind")
    if kind not in set(DesignationKind):
        raise ValidationFailed({"kind": "请选择认定类别"})
    values: dict[str, Any] = {"kind": kind, "year": _year(data.get("year"), errors),
                              "description": _text(data, "description", "推荐理由", MAX_DESCRIPTION, errors)}
    if kind == DesignationKind.ZONE:
        values["name"] = _text(data, "name", "示范区名称", MAX_NAME, errors, required=True)
        city = data.get("region_city") or ""
        county = data.get("region_county") or None
        if not reference().is_valid_region(city, county):
            errors["region_city"] = "请选择有效的设区市和县（市、区）"
        values["region_city"], values["region_county"] = city, county
        try:
            need_ids = parse_need_ids(str(data.get("need_ids") or ""))
        except ValueError as exc:
            errors["need_ids"] = f"「{str(exc)[:20]}」不是有效的需求编号"
            need_ids = []
        if len(need_ids) > MAX_ZONE_NEEDS:
            errors["need_ids"] = f"一个示范区最多关联{MAX_ZONE_NEEDS}个场景需求"
        needs = (list(db.session.scalars(select(Opportunity).where(Opportunity.id.in_(need_ids))))
                 if need_ids else [])
        by_id = {n.id: n for n in needs}
        wrong = [i for i in need_ids if i not in by_id or by_id[i].status != EntryStatus.PUBLISHED]
        if wrong and "need_ids" not in errors:
            errors["need_ids"] = f"需求 {'、'.join(map(str, wrong[:5]))} 不存在或未公开"
        elsewhere = [n.id for n in needs if n.region_city != city or (county and n.region_county != county)]
        if elsewhere and "need_ids" not in errors and "region_city" not in errors:
            errors["need_ids"] = f"需求 {'、'.join(map(str, elsewhere[:5]))} 不在该示范区所在地区"
        values["needs"] = [by_id[i] for i in need_ids if i in by_id]
        if "name" not in errors and _live_duplicate(kind, name=values["name"], exclude_id=exclude_id):
            errors["name"] = "已有同名的示范区推荐或认定记录"
    elif kind == DesignationKind.PROJECT:
        try:
            opportunity_id = int(data.get("opportunity_id") or 0)
        except (TypeError, ValueError):
            opportunity_id = 0
        need = db.session.get(Opportunity, opportunity_id) if 0 < opportunity_id < 2**31 else None
        if need is None or need.status != EntryStatus.PUBLISHED:
            errors["opportunity_id"] = "请选择已公开的场景需求"
        elif need.stage != ScenarioStage.DEMONSTRATION:
            errors["opportunity_id"] = f"该需求处于「{need.stage_label}」阶段，示范项目须处于「示范推广」阶段"
        elif _live_duplicate(kind, opportunity_id=need.id, exclude_id=exclude_id):
            errors["opportunity_id"] = "该需求已有推荐中、评审中或已认定的示范项目记录"
        values["opportunity"] = need
        values["name"] = need.title if need is not None else ""
    else:
        firm = find_firm(str(data.get("organization") or ""))
        if firm is None:
            errors["organization"] = "未找到该单位，请填写完整的单位名称或统一社会信用代码"
        elif firm.kind not in FIRM_KINDS:
            errors["organization"] = f"{firm.kind_label}不能认定为高成长性企业"
        elif not firm.verified:
            errors["organization"] = "该单位尚未通过组织方认证"
        elif _live_duplicate(kind, organization_id=firm.id, exclude_id=exclude_id):
            errors["organization"] = "该单位已有推荐中、评审中或已认定的高成长性企业记录"
        values["organization"] = firm
        values["name"] = firm.name if firm is not None else ""
    if errors:
        raise ValidationFailed(errors)
    return values


def _store_evidence(user: User, evidence: tuple[BinaryIO, str] | None, owner_org_id: int | None
                    ) -> StoredFile | None:
    if evidence is None:
        return None
    stream, filename = evidence
    return uploads.store(stream, filename, EVIDENCE_POLICY, owner_org_id, user, field="evidence")


def recommend(user: User, data: dict, evidence: tuple[BinaryIO, str] | None = None) -> Designation:
    """Record a recommendation (推荐) by an organizer, or a firm's own application; commits."""
    if not is_staff(user):
        require(user, "self_recommend", Designation)
        organization = user.organization
        data = {**data, "kind": DesignationKind.FIRM, "organization": organization.credit_code}
    else:
        require(user, "create", Designation)
    values = clean(data)
    designation = Designation(
        kind=values["kind"], year=values["year"], status=DesignationStatus.RECOMMENDED,
        name=values["name"], description=values["description"], recommended_by_id=user.id,
    )
    if values["kind"] == DesignationKind.ZONE:
        designation.region_city = values["region_city"]
        designation.region_county = values["region_county"]
        designation.opportunities = [DesignationOpportunity(opportunity_id=n.id) for n in values["needs"]]
    elif values["kind"] == DesignationKind.PROJECT:
        need = values["opportunity"]
        designation.opportunity_id = need.id
        designation.opportunity = need
        designation.organizations = [DesignationOrganization(organization_id=i)
                                     for i in delivering_org_ids(need.id)]
    else:
        designation.organization_id = values["organization"].id
        designation.organization = values["organization"]
    stored = _store_evidence(user, evidence, designation.organization_id)
    if stored is not None:
        designation.evidence_file = stored
    db.session.add(designation)
    try:
        db.session.flush()
        audit.record(user, "designation.recommend", designation,
                     f"推荐{designation.kind_label}「{designation.name}」（{designation.year}年）")
        _notify(designation, f"「{designation.name}」已被推荐为{designation.year}年{designation.kind_label}",
                exclude_org=user.organization_id)
        if not is_staff(user):
            notifications.notify_staff(
                NotificationKind.DESIGNATION, f"「{designation.name}」申报{designation.year}年高成长性企业",
                url=notifications.path_for("programme.designation", id=designation.id))
        db.session.commit()
    except Exception:
        db.session.rollback()
        if stored is not None:
            uploads.remove_file(stored)
        raise
    return designation


def form_data(designation: Designation) -> dict[str, Any]:
    """The edit form's initial values of a designation."""
    data: dict[str, Any] = {"year": designation.year, "description": designation.description}
    if designation.kind == DesignationKind.ZONE:
        data.update(name=designation.name, region_city=designation.region_city,
                    region_county=designation.region_county or "",
                    need_ids=", ".join(str(row.opportunity_id) for row in designation.opportunities))
    elif designation.kind == DesignationKind.PROJECT:
        data["opportunity_id"] = designation.opportunity_id
    elif designation.organization is not None:
        data["organization"] = designation.organization.name
    return data


def update(user: User, designation: Designation, data: dict,
           evidence: tuple[BinaryIO, str] | None = None) -> Designation:
    """Edit a recommendation still in 推荐 (its recommender or an organizer; the kind stays; a
    member's own application changes only its year, description and evidence); commits."""
    require(user, "edit", designation)
    if is_staff(user):
        data = {**data, "kind": designation.kind}
    else:
        data = {"year": data.get("year"), "description": data.get("description"),
                "kind": DesignationKind.FIRM, "organization": designation.organization.credit_code}
    values = clean(data, exclude_id=designation.id)
    changed = [label for label, old, new in (
        ("年度", designation.year, values["year"]), ("名称", designation.name, values["name"]),
        ("推荐理由", designation.description, values["description"])) if old != new]
    designation.year, designation.name = values["year"], values["name"]
    designation.description = values["description"]
    if designation.kind == DesignationKind.ZONE:
        region = (values["region_city"], values["region_county"])
        if (designation.region_city, designation.region_county) != region:
            changed.append("地区")
        designation.region_city, designation.region_county = region
        wanted = [n.id for n in values["needs"]]
        if [row.opportunity_id for row in designation.opportunities] != wanted:
            changed.append("区内场景需求")
        keep = {row.opportunity_id: row for row in designation.opportunities}
        designation.opportunities = [keep.get(i) or DesignationOpportunity(opportunity_id=i) for i in wanted]
    elif designation.kind == DesignationKind.PROJECT:
        need = values["opportunity"]
        if need.id != designation.opportunity_id:
            changed.append("场景需求")
        designation.opportunity_id, designation.opportunity = need.id, need
        firms = delivering_org_ids(need.id)
        keep_orgs = {row.organization_id: row for row in designation.organizations}
        designation.organizations = [keep_orgs.get(i) or DesignationOrganization(organization_id=i)
                                     for i in firms]
    else:
        if values["organization"].id != designation.organization_id:
            changed.append("企业")
        designation.organization_id = values["organization"].id
        designation.organization = values["organization"]
    old_file = designation.evidence_file if evidence is not None else None
    stored = _store_evidence(user, evidence, designation.organization_id)
    if stored is not None:
        designation.evidence_file = stored
        changed.append("证明材料")
    designation.updated_at = timeutil.now_naive_utc()
    try:
        db.session.flush()
        what = "、".join(changed) if changed else "无内容变化"
        audit.record(user, "designation.update", designation,
                     f"修改推荐{designation.kind_label}「{designation.name}」（{designation.year}年）：{what}")
        _notify(designation, f"{designation.year}年{designation.kind_label}推荐「{designation.name}」已修改",
                f"修改内容：{what}", exclude_org=user.organization_id)
        if not is_staff(user):
            notifications.notify_staff(
                NotificationKind.DESIGNATION, f"「{designation.name}」修改了高成长性企业申报",
                url=notifications.path_for("programme.designation", id=designation.id))
        db.session.commit()
    except Exception:
        db.session.rollback()
        if stored is not None:
            uploads.remove_file(stored)
        raise
    if old_file is not None:
        uploads.delete_committed([old_file])
    return designation


def apply(user: User, designation: Designation, action: str, note: str = "",
          evidence: tuple[BinaryIO, str] | None = None) -> Designation:
    """Perform a workflow step (see :data:`TRANSITIONS`); commits. Withdrawing keeps the
    evidence as it is (no file is taken)."""
    require(user, action, designation)
    step = TRANSITIONS[action]
    if step.target == DesignationStatus.WITHDRAWN:
        evidence = None
    note = (note or "").strip()
    if "\x00" in note:
        raise ValidationFailed({"note": "意见包含无效字符"})
    if len(note) > MAX_NOTE:
        raise ValidationFailed({"note": f"意见不能超过{MAX_NOTE}个字"})
    if step.note_required and not note:
        raise ValidationFailed({"note": "请填写不予认定的理由（相关单位可见）"})
    old_file = designation.evidence_file if evidence is not None else None
    stored = _store_evidence(user, evidence, designation.organization_id)
    if stored is not None:
        designation.evidence_file = stored
    previous = designation.status_label
    designation.status = step.target
    if step.target in (DesignationStatus.APPROVED, DesignationStatus.REJECTED):
        designation.decided_by_id = user.id
        designation.decided_at = timeutil.now_naive_utc()
        designation.decision_note = note
    try:
        summary = f"{designation.kind_label}「{designation.name}」：{previous} → {designation.status_label}"
        summary += f"；意见：{note}" if note else ""
        audit.record(user, f"designation.{action}", designation, summary)
        body = f"意见：{note}" if note and step.target != DesignationStatus.REVIEWING else ""
        _notify(designation, f"{designation.year}年{designation.kind_label}「{designation.name}」"
                f"{designation.status_label}", body,
                exclude_org=None if is_staff(user) else user.organization_id)
        if not is_staff(user):
            notifications.notify_staff(
                NotificationKind.DESIGNATION, f"「{designation.name}」{designation.status_label}"
                f"{designation.year}年{designation.kind_label}申报", body,
                url=notifications.path_for("programme.designation", id=designation.id))
        db.session.commit()
    except Exception:
        db.session.rollback()
        if stored is not None:
            uploads.remove_file(stored)
        raise
    if old_file is not None:
        uploads.delete_committed([old_file])
    return designation


def _notify(designation: Designation, title: str, body: str = "", exclude_org: int | None = None) -> None:
    url = notifications.path_for("programme.designation", id=designation.id)
    for org_id in sorted(concerned_org_ids(designation) - {exclude_org}):
        notifications.notify_organization(org_id, NotificationKind.DESIGNATION, title, body, url)


# ---------------------------------------------------------------- public badges


@dataclass(frozen=True)
class Badge:
    kind: str
    label: str
    year: int
    name: str


def _badge(d: Designation | Any) -> Badge:
    return Badge(kind=d.kind, label=DesignationKind.label_of(d.kind), year=d.year, name=d.name)


def badges_for_opportunity(opportunity_id: int) -> list[Badge]:
    """Approved designations shown on a published need's page, in one query: the project
    designation of the need, and the demonstration zones it belongs to."""
    rows = db.session.execute(
        select(Designation.kind, Designation.year, Designation.name)
        .where(
            Designation.status == DesignationStatus.APPROVED,
            or_(
                and_(Designation.kind == DesignationKind.PROJECT,
                     Designation.opportunity_id == opportunity_id),
                and_(Designation.kind == DesignationKind.ZONE,
                     exists().where(DesignationOpportunity.designation_id == Designation.id,
                                    DesignationOpportunity.opportunity_id == opportunity_id)),
            ),
        )
        .order_by(Designation.kind, Designation.year)
    )
    return [_badge(r) for r in rows]


def badges_for_organizations(org_ids: Iterable[int]) -> dict[int, list[Badge]]:
    """Approved 高成长性企业 designations per organisation, and the approved projects of published
    needs it delivers (示范项目承建单位), in one query."""
    ids = sorted({i for i in org_ids if i is not None})
    if not ids:
        return {}
    firm = (
        select(Designation.organization_id.label("org_id"), Designation.kind, Designation.year,
               Designation.name)
        .where(Designation.kind == DesignationKind.FIRM, Designation.status == DesignationStatus.APPROVED,
               Designation.organization_id.in_(ids))
    )
    project = (
        select(DesignationOrganization.organization_id.label("org_id"), Designation.kind, Designation.year,
               Designation.name)
        .join(Designation, Designation.id == DesignationOrganization.designation_id)
        .join(Opportunity, Opportunity.id == Designation.opportunity_id)
        .where(Designation.kind == DesignationKind.PROJECT, Designation.status == DesignationStatus.APPROVED,
               Opportunity.status == EntryStatus.PUBLISHED, DesignationOrganization.organization_id.in_(ids))
    )
    both = union(firm, project).subquery()
    found: dict[int, list[Badge]] = defaultdict(list)
    for row in db.session.execute(select(both).order_by(both.c.org_id, both.c.kind, both.c.year)):
        found[row.org_id].append(_badge(row))
    return dict(found)


# ---------------------------------------------------------------- targets


def targets() -> list[ProgrammeTarget]:
    return list(db.session.scalars(
        select(ProgrammeTarget).order_by(ProgrammeTarget.cumulative.desc(), ProgrammeTarget.year,
                                         ProgrammeTarget.kind)))


def clean_target(data: dict) -> dict[str, Any]:
    errors: dict[str, str] = {}
    year = _year(data.get("year"), errors)
    kind = data.get("kind")
    if kind not in set(DesignationKind):
        errors["kind"] = "请选择认定类别"
    try:
        target = int(data.get("target"))
    except (TypeError, ValueError):
        target = None
    if target is None or not 0 <= target <= MAX_TARGET:
        errors["target"] = f"目标应为 0–{MAX_TARGET} 的整数"
    if errors:
        raise ValidationFailed(errors)
    return {"year": year, "kind": kind, "cumulative": bool(data.get("cumulative")), "target": target}


def save_target(user: User, data: dict) -> ProgrammeTarget:
    """Set one target (a new one, or the existing one of that year, kind and scope); commits."""
    require(user, "edit", ProgrammeTarget)
    values = clean_target(data)
    row = db.session.scalar(select(ProgrammeTarget).where(
        ProgrammeTarget.year == values["year"], ProgrammeTarget.kind == values["kind"],
        ProgrammeTarget.cumulative.is_(values["cumulative"])))
    old = row.target if row is not None else None
    if row is None:
        row = ProgrammeTarget(year=values["year"], kind=values["kind"], cumulative=values["cumulative"])
        db.session.add(row)
    row.target = values["target"]
    row.updated_by_id = user.id
    db.session.flush()
    scope = f"截至{row.year}年累计" if row.cumulative else f"{row.year}年度"
    audit.record(user, "programme_target.save", row,
                 f"{scope}{row.kind_label}目标：{old if old is not None else '（无）'} → {row.target}")
    db.session.commit()
    return row


def delete_target(user: User, target_id: int) -> None:
    require(user, "edit", ProgrammeTarget)
    row = db.session.get(ProgrammeTarget, target_id)
    if row is None:
        raise NotFound("目标不存在")
    audit.record(user, "programme_target.delete", row,
                 f"删除{'截至' if row.cumulative else ''}{row.year}年{row.kind_label}目标 {row.target}")
    db.session.delete(row)
    db.session.commit()


def load_default_targets(user: User) -> int:
    """Add the Jiangxi defaults that are not set yet (existing targets are kept); commits.
    Returns how many were added."""
    require(user, "edit", ProgrammeTarget)
    existing = {(t.year, t.kind, t.cumulative) for t in targets()}
    added = 0
    for year, kind, cumulative, target in DEFAULT_TARGETS:
        if (year, kind.value, cumulative) in existing:
            continue
        row = ProgrammeTarget(year=year, kind=kind.value, cumulative=cumulative, target=target,
                              updated_by_id=user.id)
        db.session.add(row)
        added += 1
    if added:
        db.session.flush()
        audit.record(user, "programme_target.defaults", row, f"载入江西默认目标 {added} 项")
    db.session.commit()
    return added



def project_candidates(keep: Designation | None = None) -> list[Opportunity]:
    """Published needs in 示范推广 without a live project designation (the recommend form);
    ``keep``: the designation being edited (its own need stays a candidate)."""
    live = select(Designation.opportunity_id).where(
        Designation.kind == DesignationKind.PROJECT, Designation.status.in_(LIVE),
        Designation.opportunity_id.is_not(None))
    if keep is not None:
        live = live.where(Designation.id != keep.id)
    return list(db.session.scalars(
        select(Opportunity).options(selectinload(Opportunity.publisher))
        .where(Opportunity.status == EntryStatus.PUBLISHED, Opportunity.stage == ScenarioStage.DEMONSTRATION,
               Opportunity.id.not_in(live))
        .order_by(Opportunity.id.desc())))


def designation_years() -> list[int]:
    """Years for the filters: those with designations, and this year; newest first."""
    years = set(db.session.scalars(select(Designation.year).distinct()))
    years.add(timeutil.local_today().year)
    return sorted(years, reverse=True)

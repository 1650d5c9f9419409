"""场景生命周期 (stages) and 项目签约 (signings): rules, permissions and state changes.

Stages, declared as data in :data:`TRANSITIONS` (the service, the management page's forms and
the tests all read it)::

    机会发布 ──start_rnd──> 创新研发 ──start_pilot──> 孵化试点 ──demonstrate──> 示范推广
       │                      │                        │
       └──────────────────────┴──────terminate─────────┴──────> 终止

Who may move a need (decided here, documented in docs/workflow.md):

* organizers (and admins) take every step;
* the need's publisher takes 创新研发, 孵化试点 and 终止, but not 示范推广: a demonstration
  scenario is a provincial recognition, so only organizers declare it;
* the delivering firms see the private timeline but move nothing.

Preconditions and date rules:

* only a published need (``EntryStatus.PUBLISHED``) has a lifecycle;
* leaving 机会发布 needs a selected response (``ResponseStatus.SELECTED``); without one only an
  organizer may move the need (an organizer's decision), and then the note is required;
* 终止 always needs a note (the reason);
* each step has a Beijing date that is not in the future and not before the previous step
  (the first step: not before the publication day);
* evidence is optional: one PDF or image, stored through :mod:`services.uploads`.

Visibility: anyone sees the stage and the date of each step on the need's public page; the note,
the actor and the evidence only the publisher, the delivering firms and organizers
(``view_private``). Delivering firms (:func:`delivering_organization_ids`) are the organisations
with a selected response on the need, the accepted members of those responses' consortia, and
the parties of the need's signings.

Signings: an organizer or the publisher records one (firms or a consortium of a selected
response, products of those firms, amount in 万元, date, an optional signing/matchmaking event,
a public title and a private note). Recording one on a need still in 机会发布 moves it to
创新研发 with a :class:`StageChange` pointing at the signing. Edit and delete by the same people;
deleting a signing keeps the history (the step stays, its ``signing_id`` becomes empty).

Shortlist history: recording a signing appends a ``signed`` :class:`ShortlistDecision` for each
signing firm that is on a 对接名单 of the need: the shortlist at the signing's event when that
event has one for the need, otherwise every shortlist of the need. The decision carries the
signing's products of that firm, the actor, and the engine snapshot last recorded for the firm on
that shortlist (``{}`` when none was). Decisions are append-only, so deleting the signing, or
editing it so that a firm or shortlist no longer applies, appends ``unsigned`` (撤销签约); a firm
that joins by an edit gets ``signed``, and a change of a firm's signed products a new ``signed``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import joinedload, selectinload

from marketplace import timeutil
from marketplace.extensions import db
from marketplace.models import (
    Consortium,
    ConsortiumMember,
    DecisionAction,
    EntryStatus,
    Event,
    EventKind,
    EventStatus,
    InvitationStatus,
    LabLink,
    NotificationKind,
    Opportunity,
    Organization,
    Product,
    Response,
    ResponseStatus,
    ScenarioStage,
    Shortlist,
    ShortlistDecision,
    ShortlistEntry,
    Signing,
    SigningParty,
    SigningProduct,
    StageChange,
    StoredFile,
    User,
)
from marketplace.models.base import utcnow
from marketplace.models.enums import PRODUCT_OWNER_KINDS
from marketplace.services import audit, notifications, uploads
from marketplace.services.errors import (
    InvalidTransition,
    NotFound,
    PermissionDenied,
    ValidationFailed,
)
from marketplace.services.responses import Upload

MAX_NOTE = 2000
MAX_TITLE = 200
MAX_AMOUNT = Decimal("999999999999")
MAX_PARTIES = 20
MAX_PRODUCTS = 30
EVIDENCE_POLICY = uploads.UploadPolicy(
    purpose="stage_evidence", types=frozenset({"application/pdf", "image/png", "image/jpeg"})
)
#: Events at which a signing may take place.
SIGNING_EVENT_KINDS = frozenset({EventKind.SIGNING, EventKind.MATCHMAKING})

ORGANIZER = "organizer"
PUBLISHER = "publisher"


@dataclass(frozen=True)
class Transition:
    """One step of the scenario lifecycle."""

    action: str
    sources: frozenset[str]
    target: str
    #: Roles that may take the step: :data:`ORGANIZER` and/or :data:`PUBLISHER`.
    who: frozenset[str]
    label: str
    done: str
    style: str = "primary"
    #: The note is required (the reason), whoever takes the step.
    needs_note: bool = False
    confirm: str | None = None


TRANSITIONS: dict[str, Transition] = {
    t.action: t
    for t in (
        Transition(
            "start_rnd",
            frozenset({ScenarioStage.PUBLISHED}),
            ScenarioStage.RND,
            frozenset({ORGANIZER, PUBLISHER}),
            "进入创新研发",
            "需求已进入「创新研发」阶段。",
        ),
        Transition(
            "start_pilot",
            frozenset({ScenarioStage.RND}),
            ScenarioStage.PILOT,
            frozenset({ORGANIZER, PUBLISHER}),
            "进入孵化试点",
            "需求已进入「孵化试点」阶段。",
        ),
        Transition(
            "demonstrate",
            frozenset({ScenarioStage.PILOT}),
            ScenarioStage.DEMONSTRATION,
            frozenset({ORGANIZER}),
            "进入示范推广",
            "需求已进入「示范推广」阶段。",
            style="success",
        ),
        Transition(
            "terminate",
            frozenset({ScenarioStage.PUBLISHED, ScenarioStage.RND, ScenarioStage.PILOT}),
            ScenarioStage.TERMINATED,
            frozenset({ORGANIZER, PUBLISHER}),
            "终止",
            "场景已终止。",
            style="outline-danger",
            needs_note=True,
            confirm="确定终止该场景吗？终止后不能再推进。",
        ),
    )
}
#: The stages in order, for display (终止 is shown apart).
STAGE_ORDER = (ScenarioStage.PUBLISHED, ScenarioStage.RND, ScenarioStage.PILOT, ScenarioStage.DEMONSTRATION)
#: Stages in which a need may be linked to a lab.
LAB_STAGES = frozenset({ScenarioStage.RND, ScenarioStage.PILOT})


# ---------------------------------------------------------------- who is who


def _authenticated(user: User | None) -> bool:
    return bool(user is not None and user.is_authenticated)


def is_staff(user: User | None) -> bool:
    return bool(_authenticated(user) and user.is_staff)


def is_publisher(user: User | None, opportunity: Opportunity) -> bool:
    return bool(
        _authenticated(user)
        and user.organization_id is not None
        and user.organization_id == opportunity.publisher_id
    )


def delivering_organization_ids_by_need(opportunity_ids: Iterable[int]) -> dict[int, set[int]]:
    """The delivering firms of each need (one query per source, no N+1): organisations with a
    selected response, the accepted members of those responses' consortia, signing parties."""
    ids = list(set(opportunity_ids))
    out: dict[int, set[int]] = {i: set() for i in ids}
    if not ids:
        return out
    rows = db.session.execute(
        select(Response.opportunity_id, Response.organization_id).where(
            Response.opportunity_id.in_(ids), Response.status == ResponseStatus.SELECTED
        )
    )
    for need_id, org_id in rows:
        out[need_id].add(org_id)
    rows = db.session.execute(
        select(Response.opportunity_id, ConsortiumMember.organization_id)
        .join(ConsortiumMember, ConsortiumMember.consortium_id == Response.consortium_id)
        .where(
            Response.opportunity_id.in_(ids),
            Response.status == ResponseStatus.SELECTED,
            ConsortiumMember.status == InvitationStatus.ACCEPTED,
        )
    )
    for need_id, org_id in rows:
        out[need_id].add(org_id)
    rows = db.session.execute(
        select(Signing.opportunity_id, SigningParty.organization_id)
        .join(SigningParty, SigningParty.signing_id == Signing.id)
        .where(Signing.opportunity_id.in_(ids))
    )
    for need_id, org_id in rows:
        out[need_id].add(org_id)
    return out


def delivering_organization_ids(opportunity_id: int) -> set[int]:
    """The delivering firms of one need (see :func:`delivering_organization_ids_by_need`)."""
    return delivering_organization_ids_by_need([opportunity_id])[opportunity_id]


def delivering_organizations(opportunity: Opportunity) -> list[Organization]:
    ids = delivering_organization_ids(opportunity.id)
    if not ids:
        return []
    return list(
        db.session.scalars(select(Organization).where(Organization.id.in_(ids)).order_by(Organization.name))
    )


def is_delivering(user: User | None, opportunity: Opportunity) -> bool:
    return bool(
        _authenticated(user)
        and user.organization_id is not None
        and user.organization_id in delivering_organization_ids(opportunity.id)
    )


def has_selected_response(opportunity_id: int) -> bool:
    return (
        db.session.scalar(
            select(Response.id)
            .where(Response.opportunity_id == opportunity_id, Response.status == ResponseStatus.SELECTED)
            .limit(1)
        )
        is not None
    )


def _stage(opportunity: Opportunity) -> str:
    return opportunity.stage or ScenarioStage.PUBLISHED


# ---------------------------------------------------------------- permissions


def transition_problem(user: User | None, opportunity: Opportunity, action: str) -> str | None:
    """Why ``user`` may not take step ``action`` on ``opportunity`` now (None: they may).

    The precondition (a selected response, or an organizer's decision with a note) is checked
    on the note itself in :func:`change_stage`; here an organizer is always allowed to try."""
    step = TRANSITIONS.get(action)
    if step is None:
        return "未知的操作"
    staff, publisher = is_staff(user), is_publisher(user, opportunity)
    if not ((staff and ORGANIZER in step.who) or (publisher and PUBLISHER in step.who)):
        if PUBLISHER in step.who:
            return "只有需求发布单位和组织方可以推进场景阶段"
        return f"只有组织方可以将场景推进到「{ScenarioStage.label_of(step.target)}」"
    if opportunity.status != EntryStatus.PUBLISHED:
        return "该需求未公开发布，没有场景阶段"
    stage = _stage(opportunity)
    if stage not in step.sources:
        return f"「{ScenarioStage.label_of(stage)}」阶段的场景不能{step.label}"
    if stage == ScenarioStage.PUBLISHED and not staff and not has_selected_response(opportunity.id):
        return "该需求还没有选定的答题单位：需先选定答题，或由组织方决定推进"
    return None


def needs_decision_note(user: User | None, opportunity: Opportunity, action: str) -> bool:
    """Whether the step needs a note: 终止 always; leaving 机会发布 without a selected
    response (an organizer's decision)."""
    step = TRANSITIONS[action]
    if step.needs_note:
        return True
    return _stage(opportunity) == ScenarioStage.PUBLISHED and not has_selected_response(opportunity.id)


def can_view_private(user: User | None, opportunity: Opportunity) -> bool:
    """Notes, actors and evidence: the publisher, the delivering firms and organizers."""
    return is_staff(user) or is_publisher(user, opportunity) or is_delivering(user, opportunity)


def signing_problem(user: User | None, opportunity: Opportunity) -> str | None:
    if not (is_staff(user) or is_publisher(user, opportunity)):
        return "只有需求发布单位和组织方可以登记签约"
    if opportunity.status != EntryStatus.PUBLISHED:
        return "该需求未公开发布，不能登记签约"
    if _stage(opportunity) == ScenarioStage.TERMINATED:
        return "场景已终止，不能登记签约"
    return None


def lab_link_problem(user: User | None, opportunity: Opportunity) -> str | None:
    if not (is_staff(user) or is_publisher(user, opportunity)):
        return "只有需求发布单位和组织方可以对接实验室"
    if opportunity.status != EntryStatus.PUBLISHED:
        return "该需求未公开发布，不能对接实验室"
    if _stage(opportunity) not in LAB_STAGES:
        return "只有处于「创新研发」或「孵化试点」阶段的场景可以对接实验室"
    return None


def can(user: User | None, action: str, obj: Any) -> bool:
    """The permission function of this domain: may ``user`` do ``action`` on ``obj`` now?

    * :class:`Opportunity`: ``view_stage`` (anyone, published needs), ``view_private``,
      ``manage`` (open the management page), ``record_signing``, ``link_lab`` and every action
      of :data:`TRANSITIONS`;
    * :class:`Signing`: ``view_private``, ``edit``, ``delete``;
    * :class:`StageChange`: ``download`` (its evidence);
    * :class:`LabLink`: ``view_private``, ``delete``.
    """
    return problem(user, action, obj) is None


def problem(user: User | None, action: str, obj: Any) -> str | None:
    """Like :func:`can`, but says why not (a Chinese message), or None when allowed."""
    if isinstance(obj, Opportunity):
        if action == "view_stage":
            return None if obj.status == EntryStatus.PUBLISHED else "需求不存在或尚未公开"
        if action in ("view_private", "manage"):
            return None if can_view_private(user, obj) else "只有需求发布单位、实施单位和组织方可以查看"
        if action == "record_signing":
            return signing_problem(user, obj)
        if action == "link_lab":
            return lab_link_problem(user, obj)
        if action in TRANSITIONS:
            return transition_problem(user, obj, action)
    elif isinstance(obj, Signing):
        if action == "view_private":
            return None if can_view_private(user, obj.opportunity) else "没有权限查看签约备注"
        if action in ("edit", "delete"):
            if is_staff(user) or is_publisher(user, obj.opportunity):
                return None
            return "只有需求发布单位和组织方可以修改或删除签约"
    elif isinstance(obj, StageChange):
        if action == "download":
            return None if can_view_private(user, obj.opportunity) else "没有权限下载该证明材料"
    elif isinstance(obj, LabLink):
        if action == "view_private":
            return None if can_view_private(user, obj.opportunity) else "没有权限查看"
        if action == "delete":
            if is_staff(user) or is_publisher(user, obj.opportunity):
                return None
            return "只有需求发布单位和组织方可以取消实验室对接"
    return "不支持的操作"


def _entitled(user: User | None, action: str, obj: Any) -> bool:
    """Whether ``user`` holds the role ``action`` needs, so that a refusal is about the state."""
    if isinstance(obj, Opportunity):
        step = TRANSITIONS.get(action)
        if step is not None:
            return bool(
                (is_staff(user) and ORGANIZER in step.who)
                or (is_publisher(user, obj) and PUBLISHER in step.who)
            )
        if action in ("record_signing", "link_lab"):
            return is_staff(user) or is_publisher(user, obj)
    return False


def require(user: User | None, action: str, obj: Any) -> None:
    """Raise unless :func:`can`: NotFound for what the user may not see, InvalidTransition when
    the user holds the right role but the state forbids it, PermissionDenied otherwise."""
    reason = problem(user, action, obj)
    if reason is None:
        return
    if action in ("view_stage", "download"):
        raise NotFound(reason)
    if _entitled(user, action, obj):
        raise InvalidTransition(reason)
    raise PermissionDenied(reason)


def allowed_transitions(user: User | None, opportunity: Opportunity) -> list[Transition]:
    """The steps ``user`` may take now (the management page's forms)."""
    return [t for a, t in TRANSITIONS.items() if transition_problem(user, opportunity, a) is None]


def blocked_transitions(user: User | None, opportunity: Opportunity) -> list[tuple[Transition, str]]:
    """Steps from the current stage that ``user``'s role allows but a rule forbids now, with
    the reason (e.g. the publisher of a need without a selected response)."""
    stage = _stage(opportunity)
    out = []
    for action, step in TRANSITIONS.items():
        reason = transition_problem(user, opportunity, action)
        if reason is not None and stage in step.sources and _entitled(user, action, opportunity):
            out.append((step, reason))
    return out


# ---------------------------------------------------------------- lookup


def get_opportunity(opportunity_id: int) -> Opportunity:
    opportunity = db.session.get(Opportunity, opportunity_id, options=[joinedload(Opportunity.publisher)])
    if opportunity is None or opportunity.status != EntryStatus.PUBLISHED:
        raise NotFound("需求不存在或尚未公开")
    return opportunity


def managed_opportunity(user: User | None, opportunity_id: int) -> Opportunity:
    """The need if ``user`` may open its management page; a 404 for everyone else."""
    opportunity = get_opportunity(opportunity_id)
    if not can(user, "manage", opportunity):
        raise NotFound("需求不存在或尚未公开")
    return opportunity


def get_stage_change(stage_change_id: int) -> StageChange:
    change = db.session.get(StageChange, stage_change_id, options=[joinedload(StageChange.opportunity)])
    if change is None:
        raise NotFound("阶段记录不存在")
    return change


def evidence_file(user: User | None, stage_change_id: int) -> StoredFile:
    """The evidence of a step, for a user allowed to see it (otherwise a 404)."""
    change = get_stage_change(stage_change_id)
    require(user, "download", change)
    if change.evidence_file is None:
        raise NotFound("该记录没有证明材料")
    return change.evidence_file


def stage_changes(opportunity_id: int) -> list[StageChange]:
    return list(
        db.session.scalars(
            select(StageChange)
            .where(StageChange.opportunity_id == opportunity_id)
            .options(joinedload(StageChange.actor), joinedload(StageChange.evidence_file))
            .order_by(StageChange.happened_on, StageChange.id)
        )
    )


def published_day(opportunity: Opportunity) -> date | None:
    """The Beijing day the need was published."""
    return timeutil.to_local(opportunity.published_at).date() if opportunity.published_at else None


def _latest_step_day(opportunity: Opportunity) -> date | None:
    return db.session.scalar(
        select(StageChange.happened_on)
        .where(StageChange.opportunity_id == opportunity.id)
        .order_by(StageChange.happened_on.desc(), StageChange.id.desc())
        .limit(1)
    )


# ---------------------------------------------------------------- validation helpers


def _note(
    value: str | None,
    label: str,
    errors: dict[str, str],
    key: str = "note",
    required: bool = False,
    hi: int = MAX_NOTE,
) -> str:
    value = (value or "").strip()
    if "\x00" in value:
        errors[key] = f"{label}包含无效字符"
    elif required and not value:
        errors[key] = f"请填写{label}"
    elif len(value) > hi:
        errors[key] = f"{label}不能超过{hi}个字"
    return value


def _day(
    value: Any, key: str, label: str, errors: dict[str, str], not_before: date | None, before_label: str
) -> date | None:
    """A Beijing date typed by a user: not in the future, not before ``not_before``."""
    if isinstance(value, datetime) or not isinstance(value, date):
        errors[key] = f"请填写有效的{label}"
        return None
    if value > timeutil.local_today():
        errors[key] = f"{label}不能晚于今天（北京时间）"
    elif not_before is not None and value < not_before:
        errors[key] = f"{label}不能早于{before_label}（{not_before:%Y-%m-%d}）"
    return value


def _commit_with_files() -> None:
    """Commit; on failure remove the bytes of any file stored in this transaction."""
    new_names = [obj.storage_name for obj in db.session.new if isinstance(obj, StoredFile)]
    try:
        db.session.commit()
    except Exception:
        db.session.rollback()
        for name in new_names:
            uploads.remove_file(name)
        raise


# ---------------------------------------------------------------- notifications


def _recipients(organization_ids: Iterable[int], actor: User | None) -> list[User]:
    ids = set(organization_ids)
    if not ids:
        return []
    users = db.session.scalars(
        select(User).where(User.organization_id.in_(ids), User.active.is_(True)).order_by(User.id)
    )
    return [u for u in users if actor is None or u.id != actor.id]


def notify_organizations(
    organization_ids: Iterable[int], actor: User | None, kind: str, title: str, body: str, url: str
) -> None:
    """Notify the active users of these organisations, except the actor (who knows)."""
    notifications.notify(_recipients(organization_ids, actor), kind, title, body, url)


def need_path(opportunity: Opportunity) -> str:
    """The public page of the need (its timeline)."""
    return notifications.path_for("portal.opportunity", id=opportunity.id)


# ---------------------------------------------------------------- stage changes


def change_stage(
    actor: User,
    opportunity: Opportunity,
    action: str,
    happened_on: Any,
    note: str | None = "",
    evidence: Upload | None = None,
) -> StageChange:
    """Take one step of the lifecycle: record it, move the need, audit and notify."""
    require(actor, action, opportunity)
    step = TRANSITIONS[action]
    errors: dict[str, str] = {}
    label = (
        "终止原因"
        if action == "terminate"
        else ("决定说明" if needs_decision_note(actor, opportunity, action) else "说明")
    )
    note = _note(note, label, errors, required=needs_decision_note(actor, opportunity, action))
    last_step = _latest_step_day(opportunity)
    previous = last_step or published_day(opportunity)
    before = "上一阶段日期" if last_step is not None else "需求发布日期"
    day = _day(happened_on, "happened_on", "日期", errors, previous, before)
    if evidence is not None and not errors:
        try:
            uploads.check(evidence.stream, evidence.filename, EVIDENCE_POLICY, field="evidence")
        except ValidationFailed as exc:
            errors.update(exc.errors)
    if errors:
        raise ValidationFailed(errors)
    stored = None
    if evidence is not None:
        stored = uploads.store(
            evidence.stream,
            evidence.filename,
            EVIDENCE_POLICY,
            opportunity.publisher_id,
            actor,
            field="evidence",
        )
    change = StageChange(
        opportunity=opportunity,
        from_stage=_stage(opportunity),
        to_stage=step.target,
        happened_on=day,
        note=note,
        evidence_file=stored,
        actor_id=actor.id,
    )
    db.session.add(change)
    _move(opportunity, step.target, day)
    db.session.flush()
    audit.record(
        actor,
        f"opportunity.stage.{action}",
        opportunity,
        f"{change.from_label} → {change.to_label}（{day:%Y-%m-%d}）",
    )
    _notify_stage(actor, opportunity, change)
    _commit_with_files()
    return change


def _move(opportunity: Opportunity, stage: str, day: date) -> None:
    opportunity.stage = stage
    opportunity.stage_changed_at = timeutil.start_of_local_day(day).replace(tzinfo=None)


def _notify_stage(actor: User | None, opportunity: Opportunity, change: StageChange) -> None:
    orgs = {opportunity.publisher_id} | delivering_organization_ids(opportunity.id)
    notify_organizations(
        orgs,
        actor,
        NotificationKind.STAGE_CHANGED,
        f"场景进入「{change.to_label}」：{opportunity.title}",
        f"「{opportunity.title}」于 {change.happened_on:%Y-%m-%d} 由「{change.from_label}」进入"
        f"「{change.to_label}」阶段。",
        need_path(opportunity),
    )


# ---------------------------------------------------------------- signings


def get_signing(signing_id: int) -> Signing:
    signing = db.session.get(
        Signing,
        signing_id,
        options=[
            joinedload(Signing.opportunity).joinedload(Opportunity.publisher),
            selectinload(Signing.parties).joinedload(SigningParty.organization),
            selectinload(Signing.products).joinedload(SigningProduct.product),
        ],
    )
    if signing is None or signing.opportunity.status != EntryStatus.PUBLISHED:
        raise NotFound("签约不存在")
    return signing


def party_choices(opportunity: Opportunity | None = None) -> list[Organization]:
    """Organisations that may sign as a firm: verified enterprises, research institutes and
    service organisations; the need's delivering firms first."""
    firms = list(
        db.session.scalars(
            select(Organization)
            .where(Organization.verified.is_(True), Organization.kind.in_(PRODUCT_OWNER_KINDS))
            .order_by(Organization.name)
        )
    )
    if opportunity is None:
        return firms
    first = delivering_organization_ids(opportunity.id)
    return [o for o in firms if o.id in first] + [o for o in firms if o.id not in first]


def product_choices(organization_ids: Iterable[int] | None = None) -> list[Product]:
    """Published products of firms (of the given firms when given), grouped by owner."""
    stmt = (
        select(Product)
        .join(Organization, Organization.id == Product.owner_id)
        .where(Product.status == EntryStatus.PUBLISHED)
        .options(joinedload(Product.owner))
        .order_by(Organization.name, Product.name, Product.id)
    )
    if organization_ids is not None:
        stmt = stmt.where(Product.owner_id.in_(list(organization_ids)))
    return list(db.session.scalars(stmt))


def event_choices() -> list[Event]:
    """Published signing ceremonies and matchmaking meetings, newest first."""
    return list(
        db.session.scalars(
            select(Event)
            .where(
                Event.kind.in_(SIGNING_EVENT_KINDS),
                Event.status.in_((EventStatus.OPEN, EventStatus.FINISHED)),
            )
            .order_by(Event.starts_at.desc(), Event.id.desc())
        )
    )


def consortium_choices(opportunity: Opportunity) -> list[Consortium]:
    """Consortia of the need's selected responses (the signing may name one)."""
    return list(
        db.session.scalars(
            select(Consortium)
            .join(Response, Response.consortium_id == Consortium.id)
            .where(Response.opportunity_id == opportunity.id, Response.status == ResponseStatus.SELECTED)
            .options(selectinload(Consortium.members))
            .order_by(Consortium.name)
        ).unique()
    )


def _signing_values(
    opportunity: Opportunity, data: dict[str, Any], signing: Signing | None = None
) -> dict[str, Any]:
    """Check a signing's fields; returns clean values or raises :class:`ValidationFailed`."""
    errors: dict[str, str] = {}
    title = (data.get("title") or "").strip()
    if "\x00" in title or len(title) < 2 or len(title) > MAX_TITLE:
        errors["title"] = f"签约项目名称应为2到{MAX_TITLE}个字"
    note = _note(data.get("note"), "备注", errors)
    amount = data.get("amount_wan")
    if amount is not None:
        try:
            amount = Decimal(str(amount))
        except ArithmeticError:
            amount = None
            errors["amount_wan"] = "签约金额请输入数字"
        else:
            if not amount.is_finite() or amount < 0:
                errors["amount_wan"] = "签约金额不能为负数"
            elif amount > MAX_AMOUNT:
                errors["amount_wan"] = "请输入合理的签约金额"
            else:
                amount = amount.quantize(Decimal("0.01"))
    linked_step = None
    if signing is not None:
        linked_step = db.session.scalar(select(StageChange).where(StageChange.signing_id == signing.id))
    day = _day(
        data.get("signed_on"), "signed_on", "签约日期", errors, published_day(opportunity), "需求发布日期"
    )
    if day is not None and linked_step is not None and "signed_on" not in errors:
        neighbours = (
            db.session.execute(
                select(StageChange.happened_on).where(
                    StageChange.opportunity_id == opportunity.id, StageChange.id != linked_step.id
                )
            )
            .scalars()
            .all()
        )
        later = [d for d in neighbours if d >= linked_step.happened_on]
        if later and day > min(later):
            errors["signed_on"] = (
                f"该签约使场景进入「创新研发」，签约日期不能晚于下一阶段日期（{min(later):%Y-%m-%d}）"
            )

    event = None
    event_id = data.get("event_id")
    if event_id not in (None, "", 0):
        event = db.session.get(Event, event_id) if isinstance(event_id, int) else None
        if event is None or event.kind not in SIGNING_EVENT_KINDS or not event.is_published:
            errors["event_id"] = "请选择已发布的签约仪式或供需对接会"
            event = None

    consortium = None
    consortium_id = data.get("consortium_id")
    party_ids = [i for i in dict.fromkeys(data.get("organization_ids") or []) if isinstance(i, int)]
    if consortium_id not in (None, "", 0):
        consortium = next((c for c in consortium_choices(opportunity) if c.id == consortium_id), None)
        if consortium is None:
            errors["consortium_id"] = "只能选择该需求已选定答题的联合体"
        else:
            party_ids = list(dict.fromkeys([*consortium.accepted_organization_ids, *party_ids]))
    parties: list[Organization] = []
    if party_ids:
        stmt = select(Organization).where(Organization.id.in_(party_ids))
        found = {o.id: o for o in db.session.scalars(stmt)}
        parties = [found[i] for i in party_ids if i in found]
    if not parties:
        errors.setdefault("organization_ids", "请至少选择一家签约企业（或选择联合体）")
    elif len(parties) > MAX_PARTIES:
        errors["organization_ids"] = f"签约企业最多{MAX_PARTIES}家"
    elif any(o.id == opportunity.publisher_id for o in parties):
        errors["organization_ids"] = "需求发布单位是签约甲方，不必列为签约企业"
    elif any(not o.verified for o in parties):
        errors["organization_ids"] = "签约企业须已通过组织方认证"
    product_ids = [i for i in dict.fromkeys(data.get("product_ids") or []) if isinstance(i, int)]
    products: list[Product] = []
    if product_ids:
        stmt = select(Product).where(Product.id.in_(product_ids))
        found_products = {p.id: p for p in db.session.scalars(stmt)}
        products = [found_products[i] for i in product_ids if i in found_products]
        party_set = {o.id for o in parties}
        if len(products) != len(product_ids) or any(
            p.status != EntryStatus.PUBLISHED or p.owner_id not in party_set for p in products
        ):
            errors["product_ids"] = "只能选择签约企业已发布的产品"
        elif len(products) > MAX_PRODUCTS:
            errors["product_ids"] = f"签约产品最多{MAX_PRODUCTS}个"
    if errors:
        raise ValidationFailed(errors)
    return {
        "title": title,
        "note": note,
        "amount_wan": amount,
        "signed_on": day,
        "event": event,
        "consortium": consortium,
        "parties": parties,
        "products": products,
        "linked_step": linked_step,
    }


def _apply_signing(signing: Signing, values: dict[str, Any]) -> None:
    signing.title = values["title"]
    signing.note = values["note"]
    signing.amount_wan = values["amount_wan"]
    signing.signed_on = values["signed_on"]
    signing.event_id = values["event"].id if values["event"] is not None else None
    signing.consortium_id = values["consortium"].id if values["consortium"] is not None else None
    wanted_parties = [o.id for o in values["parties"]]
    signing.parties = [p for p in signing.parties if p.organization_id in wanted_parties]
    have = {p.organization_id for p in signing.parties}
    signing.parties.extend(SigningParty(organization_id=i) for i in wanted_parties if i not in have)
    wanted_products = [p.id for p in values["products"]]
    signing.products = [p for p in signing.products if p.product_id in wanted_products]
    have = {p.product_id for p in signing.products}
    signing.products.extend(SigningProduct(product_id=i) for i in wanted_products if i not in have)


def record_signing(actor: User, opportunity: Opportunity, data: dict[str, Any]) -> Signing:
    """Record a 项目签约; a need still in 机会发布 moves to 创新研发 on the signing date."""
    require(actor, "record_signing", opportunity)
    values = _signing_values(opportunity, data)
    signing = Signing(opportunity=opportunity, created_by_id=actor.id, parties=[], products=[])
    _apply_signing(signing, values)
    db.session.add(signing)
    db.session.flush()
    audit.record(
        actor,
        "signing.create",
        signing,
        f"登记签约「{signing.title}」（{signing.signed_on:%Y-%m-%d}），需求「{opportunity.title}」",
    )
    parties = [o.id for o in values["parties"]]
    notify_organizations(
        {opportunity.publisher_id, *parties},
        actor,
        NotificationKind.SIGNING,
        f"项目签约：{signing.title}",
        f"需求「{opportunity.title}」于 {signing.signed_on:%Y-%m-%d} 签约，签约企业："
        + "、".join(o.name for o in values["parties"])
        + "。",
        need_path(opportunity),
    )
    if _stage(opportunity) == ScenarioStage.PUBLISHED:
        change = StageChange(
            opportunity=opportunity,
            from_stage=ScenarioStage.PUBLISHED,
            to_stage=ScenarioStage.RND,
            happened_on=signing.signed_on,
            note=f"项目签约：{signing.title}",
            signing_id=signing.id,
            actor_id=actor.id,
        )
        db.session.add(change)
        _move(opportunity, ScenarioStage.RND, signing.signed_on)
        db.session.flush()
        audit.record(
            actor,
            "opportunity.stage.start_rnd",
            opportunity,
            f"{change.from_label} → {change.to_label}（签约，{change.happened_on:%Y-%m-%d}）",
        )
        _notify_stage(actor, opportunity, change)
    _reflect_on_shortlists(actor, signing, {}, _shortlist_claims(signing))
    db.session.commit()
    return signing


def update_signing(actor: User, signing: Signing, data: dict[str, Any]) -> Signing:
    require(actor, "edit", signing)
    values = _signing_values(signing.opportunity, data, signing)
    before = _shortlist_claims(signing)
    _apply_signing(signing, values)
    db.session.flush()
    _reflect_on_shortlists(actor, signing, before, _shortlist_claims(signing))
    step = values["linked_step"]
    if step is not None:
        step.happened_on = signing.signed_on
        if step.to_stage == _stage(signing.opportunity):
            _move(signing.opportunity, step.to_stage, step.happened_on)
    audit.record(actor, "signing.update", signing, f"修改签约「{signing.title}」")
    db.session.commit()
    return signing


def delete_signing(actor: User, signing: Signing) -> None:
    """Delete a signing. The stage step it caused stays in the history (append-only)."""
    require(actor, "delete", signing)
    opportunity = signing.opportunity
    audit.record(
        actor, "signing.delete", opportunity, f"删除签约「{signing.title}」（{signing.signed_on:%Y-%m-%d}）"
    )
    for step in db.session.scalars(select(StageChange).where(StageChange.signing_id == signing.id)):
        step.signing_id = None
    _reflect_on_shortlists(actor, signing, _shortlist_claims(signing), {})
    db.session.delete(signing)
    db.session.commit()


# ---------------------------------------------------------------- signings on the shortlists


def _shortlist_claims(signing: Signing) -> dict[tuple[int, int], tuple[ShortlistEntry, tuple[int, ...]]]:
    """``{(shortlist id, firm id): (entry, the signing's product ids of that firm)}`` for the
    signing's firms that are on a shortlist of its need: the one at the signing's event when the
    event has a shortlist for the need, otherwise every shortlist of the need."""
    party_ids = {p.organization_id for p in signing.parties}
    if not party_ids:
        return {}
    shortlists = list(db.session.scalars(
        select(Shortlist).where(Shortlist.opportunity_id == signing.opportunity_id).order_by(Shortlist.id)
    ))
    at_event = [s for s in shortlists if signing.event_id is not None and s.event_id == signing.event_id]
    chosen = at_event or shortlists
    if not chosen:
        return {}
    entries = db.session.scalars(
        select(ShortlistEntry)
        .where(ShortlistEntry.shortlist_id.in_([s.id for s in chosen]),
               ShortlistEntry.organization_id.in_(party_ids))
        .options(joinedload(ShortlistEntry.shortlist))
    )
    owners = dict(db.session.execute(
        select(Product.id, Product.owner_id).where(Product.id.in_([p.product_id for p in signing.products]))
    ).all()) if signing.products else {}
    products = sorted(((owners.get(p.product_id), p.product_id) for p in signing.products),
                      key=lambda pair: pair[1])
    return {
        (entry.shortlist_id, entry.organization_id): (
            entry, tuple(pid for owner, pid in products if owner == entry.organization_id)
        )
        for entry in entries
    }


def _last_engine(shortlist_id: int, organization_id: int) -> dict:
    """The engine snapshot last recorded for a firm on a shortlist ({} when none was)."""
    for engine in db.session.scalars(
        select(ShortlistDecision.engine)
        .where(ShortlistDecision.shortlist_id == shortlist_id,
               ShortlistDecision.organization_id == organization_id)
        .order_by(ShortlistDecision.id.desc())
    ):
        if engine:
            return dict(engine)
    return {}


def _reflect_on_shortlists(
    actor: User | None,
    signing: Signing,
    before: dict[tuple[int, int], tuple[ShortlistEntry, tuple[int, ...]]],
    after: dict[tuple[int, int], tuple[ShortlistEntry, tuple[int, ...]]],
) -> None:
    """Append ``signed`` / ``unsigned`` decisions for what changed between two claims."""
    from marketplace.services.shortlists import rank_of

    now = utcnow()
    day = f"{signing.signed_on:%Y-%m-%d}"
    changes: list[tuple[tuple[int, int], DecisionAction, tuple[int, ...], str]] = []
    signed, unsigned = DecisionAction.SIGNED, DecisionAction.UNSIGNED
    for key, (_, product_ids) in after.items():
        if key not in before:
            changes.append((key, signed, product_ids, f"项目签约：{signing.title}（{day}）"))
        elif before[key][1] != product_ids:
            changes.append((key, signed, product_ids, f"签约产品调整：{signing.title}（{day}）"))
    for key, (_, product_ids) in before.items():
        if key not in after:
            changes.append((key, unsigned, product_ids, f"撤销签约：{signing.title}（{day}）"))
    for key, action, product_ids, reason in sorted(changes, key=lambda c: c[0]):
        entry = (after.get(key) or before[key])[0]
        rank = rank_of(entry)
        db.session.add(ShortlistDecision(
            shortlist_id=key[0], organization_id=key[1], product_ids=list(product_ids), action=action.value,
            from_rank=rank, to_rank=rank, reason=reason, actor_id=actor.id if actor is not None else None,
            engine=_last_engine(*key), created_at=now,
        ))


def _signing_options():
    return (
        joinedload(Signing.event),
        joinedload(Signing.consortium),
        selectinload(Signing.parties).joinedload(SigningParty.organization),
        selectinload(Signing.products).joinedload(SigningProduct.product),
    )


def amount_label(value: Decimal | None) -> str:
    """``Decimal('1280.00')`` → ``'1280 万元'``; None → ``'未披露'``."""
    return "未披露" if value is None else f"{format(value.normalize(), 'f')} 万元"


def signings_for_opportunity(opportunity_id: int) -> list[Signing]:
    return list(
        db.session.scalars(
            select(Signing)
            .where(Signing.opportunity_id == opportunity_id)
            .options(*_signing_options())
            .order_by(Signing.signed_on, Signing.id)
        )
    )


def signings_for_event(event: Event) -> list[Signing]:
    """Signings at an event, on published needs only (public: no notes are shown)."""
    return list(
        db.session.scalars(
            select(Signing)
            .join(Opportunity, Opportunity.id == Signing.opportunity_id)
            .where(Signing.event_id == event.id, Opportunity.status == EntryStatus.PUBLISHED)
            .options(*_signing_options(), joinedload(Signing.opportunity).joinedload(Opportunity.publisher))
            .order_by(Signing.signed_on, Signing.id)
        )
    )


# ---------------------------------------------------------------- the timeline


@dataclass
class TimelineItem:
    """One row of a need's timeline. ``private`` holds what only the insiders see."""

    day: date
    kind: str  # "stage", "signing" or "lab"
    title: str
    detail: str = ""
    obj: Any = None
    private: dict[str, Any] = field(default_factory=dict)


@dataclass
class Timeline:
    opportunity: Opportunity
    stage: str
    stage_label: str
    items: list[TimelineItem]
    #: Whether the viewer sees notes, actors and evidence.
    private: bool
    #: Whether the viewer may open the management page.
    can_manage: bool
    steps: list[tuple[str, str, bool]]

    @property
    def terminated(self) -> bool:
        return self.stage == ScenarioStage.TERMINATED


def timeline(user: User | None, opportunity: Opportunity) -> Timeline:
    """The need's stage and history for ``user``: stages and dates for everyone; notes, actors
    and evidence for the publisher, the delivering firms and organizers."""
    require(user, "view_stage", opportunity)
    private = can_view_private(user, opportunity)
    items: list[TimelineItem] = []
    published = published_day(opportunity)
    if published is not None:
        items.append(TimelineItem(published, "stage", f"{ScenarioStage.PUBLISHED.label}：需求公开发布"))
    for change in stage_changes(opportunity.id):
        item = TimelineItem(change.happened_on, "stage", f"进入「{change.to_label}」", obj=change)
        if private:
            item.private = {
                "note": change.note,
                "actor": change.actor.name if change.actor else "",
                "evidence": change.evidence_file,
                "stage_change_id": change.id,
            }
        items.append(item)
    for signing in signings_for_opportunity(opportunity.id):
        detail = "签约企业：" + "、".join(p.organization.name for p in signing.parties)
        if signing.amount_wan is not None:
            detail += f"；金额 {amount_label(signing.amount_wan)}"
        item = TimelineItem(signing.signed_on, "signing", f"项目签约：{signing.title}", detail, obj=signing)
        if private:
            item.private = {"note": signing.note}
        items.append(item)
    links = db.session.scalars(
        select(LabLink)
        .where(LabLink.opportunity_id == opportunity.id)
        .options(joinedload(LabLink.lab))
        .order_by(LabLink.linked_on, LabLink.id)
    )
    for link in links:
        if not link.lab.active and not private:
            continue
        item = TimelineItem(
            link.linked_on,
            "lab",
            f"对接实验室：{link.lab.name}",
            f"{link.lab.kind_label} · {link.service_label}",
            obj=link,
        )
        if private:
            item.private = {"note": link.note}
        items.append(item)
    order = {"stage": 0, "signing": 1, "lab": 2}
    items.sort(key=lambda i: (i.day, 0 if i.obj is None else 1, order[i.kind]))
    stage = _stage(opportunity)
    reached = {c.to_stage for c in (i.obj for i in items if isinstance(i.obj, StageChange))}
    steps = [(s.value, s.label, s == ScenarioStage.PUBLISHED or s in reached) for s in STAGE_ORDER]
    return Timeline(
        opportunity=opportunity,
        stage=stage,
        stage_label=ScenarioStage.label_of(stage),
        items=items,
        private=private,
        can_manage=can(user, "manage", opportunity),
        steps=steps,
    )

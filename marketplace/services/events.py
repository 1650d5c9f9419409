"""活动 (events), their featured needs and registrations (报名), and the permission function of the
whole events domain (events, registrations, shortlists and invitations).

Workflows, declared as data (the service, the templates' buttons and the tests read them):

* :data:`EVENT_TRANSITIONS`::

      draft (筹备中) ──open──> open (报名中) ──finish──> finished (已结束)
        └────────cancel────────┴──cancel──> cancelled (已取消)

  Published events (报名中, 已结束) have a public page and are listed on 「活动」; a draft is
  seen by organizers only (everyone else gets a 404). A cancelled event that had been published
  keeps its public page (marked 已取消) but leaves the list.
* :data:`REGISTRATION_TRANSITIONS`: a verified enterprise, research institute or service
  organization registers (pending) for an open event until its registration deadline (a Beijing
  date); organizers confirm (capacity counts confirmed registrations and is enforced here) or
  decline with a reason; the firm may cancel until the event starts, and register again later.
* :data:`INVITATION_TRANSITIONS`: organizers invite firms from a shortlist; the firm confirms or
  declines (with a reason) until the event starts, and may change its answer.
* :data:`MEETING_TRANSITIONS`: once a 1:1 meeting (对接洽谈) has started, organizers mark it held
  (已洽谈, which appends a ``met`` decision) or no-show (未到场); see
  :mod:`marketplace.services.meetings`.

:func:`can` / :func:`problem` / :func:`require` answer every permission question of the
domain; pages ask nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import joinedload, selectinload

from marketplace import timeutil
from marketplace.extensions import db
from marketplace.models import (
    Batch,
    EntryStatus,
    Event,
    EventInvitationStatus,
    EventKind,
    EventOpportunity,
    EventStatus,
    Meeting,
    MeetingStatus,
    NotificationKind,
    Opportunity,
    Organization,
    Product,
    Registration,
    RegistrationProduct,
    RegistrationStatus,
    Shortlist,
    ShortlistEntry,
    User,
)
from marketplace.models.base import utcnow
from marketplace.models.enums import PRODUCT_OWNER_KINDS, OrgKind
from marketplace.services import audit, notifications
from marketplace.services.errors import (
    DomainError,
    InvalidTransition,
    NotFound,
    PermissionDenied,
    ValidationFailed,
)

MAX_TITLE = 120
MAX_DESCRIPTION = 5000
MAX_VENUE = 200
MAX_URL = 500
MAX_CAPACITY = 100_000
MAX_NOTE = 500
MAX_REASON = 500
MAX_FEATURED = 200
SEARCH_LIMIT = 20

STAFF = "staff"
FIRM = "firm"


@dataclass(frozen=True)
class Transition:
    """One step of a workflow: from ``sources`` by ``action`` to ``target``, done by ``who``."""

    action: str
    sources: frozenset[str]
    target: str
    who: str
    label: str
    done: str
    style: str = "primary"
    confirm: str | None = None
    #: Whether the step needs a reason (shown beside the button as a text box).
    needs_reason: bool = False


def _table(*steps: Transition) -> dict[str, Transition]:
    return {t.action: t for t in steps}


EVENT_TRANSITIONS = _table(
    Transition("open", frozenset({EventStatus.DRAFT}), EventStatus.OPEN, STAFF,
               "发布并开放报名", "活动已发布，门户「活动」列表可见，企业可以报名。", style="success"),
    Transition("finish", frozenset({EventStatus.OPEN}), EventStatus.FINISHED, STAFF,
               "结束活动", "活动已结束。", style="outline-primary",
               confirm="确定结束该活动吗？结束后不能再报名、邀请或调整对接名单。"),
    Transition("cancel", frozenset({EventStatus.DRAFT, EventStatus.OPEN}), EventStatus.CANCELLED, STAFF,
               "取消活动", "活动已取消，已报名和受邀的企业将收到通知。", style="outline-danger",
               confirm="确定取消该活动吗？已报名和受邀的企业将收到通知。"),
)

REGISTRATION_TRANSITIONS = _table(
    Transition("confirm", frozenset({RegistrationStatus.PENDING}), RegistrationStatus.CONFIRMED, STAFF,
               "确认", "报名已确认，企业将收到通知。", style="success"),
    Transition("decline", frozenset({RegistrationStatus.PENDING, RegistrationStatus.CONFIRMED}),
               RegistrationStatus.DECLINED, STAFF, "不予通过", "报名未通过，企业将收到通知及原因。",
               style="outline-secondary", needs_reason=True),
    Transition("cancel", frozenset({RegistrationStatus.PENDING, RegistrationStatus.CONFIRMED}),
               RegistrationStatus.CANCELLED, FIRM, "取消报名", "报名已取消。", style="outline-danger",
               confirm="确定取消报名吗？报名截止前可以重新报名。"),
)

INVITATION_TRANSITIONS = _table(
    Transition("invite", frozenset({EventInvitationStatus.NONE}), EventInvitationStatus.INVITED, STAFF,
               "发出邀请", "邀请已发出，企业将收到通知。"),
    Transition("confirm", frozenset({EventInvitationStatus.INVITED, EventInvitationStatus.DECLINED}),
               EventInvitationStatus.CONFIRMED, FIRM, "确认参加", "已确认参加，组织方将收到通知。",
               style="success"),
    Transition("decline", frozenset({EventInvitationStatus.INVITED, EventInvitationStatus.CONFIRMED}),
               EventInvitationStatus.DECLINED, FIRM, "婉拒", "已婉拒邀请，组织方将收到通知。",
               style="outline-secondary", needs_reason=True),
)

MEETING_TRANSITIONS = _table(
    Transition("hold", frozenset({MeetingStatus.SCHEDULED, MeetingStatus.NO_SHOW}), MeetingStatus.HELD, STAFF,
               "已洽谈", "已标记为已洽谈，并记入对接名单的决策记录。", style="outline-success"),
    Transition("no_show", frozenset({MeetingStatus.SCHEDULED}), MeetingStatus.NO_SHOW, STAFF,
               "未到场", "已标记为未到场。", style="outline-secondary"),
)

#: Statuses in which the event's featured needs, shortlists and invitations may still change.
PREPARING = frozenset({EventStatus.DRAFT, EventStatus.OPEN})
LIVE_REGISTRATION = frozenset({RegistrationStatus.PENDING, RegistrationStatus.CONFIRMED})


# ---------------------------------------------------------------- who is who


def _authenticated(user: User | None) -> bool:
    return bool(user is not None and user.is_authenticated)


def is_staff(user: User | None) -> bool:
    return bool(_authenticated(user) and user.is_staff)


def member_of(user: User | None, organization_id: int | None) -> bool:
    return bool(
        _authenticated(user)
        and user.organization_id is not None
        and organization_id is not None
        and user.organization_id == organization_id
    )


def is_publisher(user: User | None, shortlist: Shortlist) -> bool:
    return member_of(user, shortlist.opportunity.publisher_id)


@dataclass(frozen=True)
class Participant:
    """An organization taking part in an event's 1:1 meetings (as a firm, a need's publisher or
    both): the object of the ``view_agenda`` permission."""

    event: Event
    organization_id: int


def event_started(event: Event) -> bool:
    return timeutil.now_naive_utc() >= event.starts_at


def registration_closed(event: Event) -> bool:
    return timeutil.deadline_passed(event.registration_deadline)


def _firm_problem(user: User | None) -> str | None:
    """Why ``user`` cannot act for a firm (None: a member of a verified product-owner org)."""
    if not _authenticated(user):
        return "请先登录企业账号"
    organization = user.organization
    if organization is None:
        return "组织方账号不能报名"
    if organization.kind not in PRODUCT_OWNER_KINDS:
        return (f"{organization.kind_label}不能报名：只有{OrgKind.ENTERPRISE.label}、"
                f"{OrgKind.RESEARCH.label}和{OrgKind.SERVICE.label}可以报名")
    if not organization.verified:
        return "本单位尚未通过组织方认证，暂不能报名"
    return None


def can_view_event(user: User | None, event: Event) -> bool:
    if event.is_published or is_staff(user):
        return True
    return event.status == EventStatus.CANCELLED and event.published_at is not None


def register_problem(user: User | None, event: Event) -> str | None:
    """Why ``user`` may not register for ``event`` now (None: they may)."""
    problem_ = _firm_problem(user)
    if problem_ is not None:
        return problem_
    if event.status != EventStatus.OPEN:
        return f"「{event.status_label}」的活动不能报名"
    if registration_closed(event):
        return f"报名已于 {event.registration_deadline:%Y-%m-%d} 截止"
    if event_started(event):
        return "活动已开始，不能报名"
    existing = registration_of(user.organization_id, event.id)
    if existing is not None and existing.status != RegistrationStatus.CANCELLED:
        return f"本单位已报名（{existing.status_label}）"
    return None


def _event_step_problem(user: User | None, event: Event, action: str) -> str | None:
    step = EVENT_TRANSITIONS[action]
    if not is_staff(user):
        return "只有组织方可以管理活动"
    if event.status not in step.sources:
        return f"「{event.status_label}」的活动不能{step.label}"
    if action == "open":
        if registration_closed(event):
            return "报名截止日期已过，请先修改报名截止日期"
        if event_started(event):
            return "活动时间已过，请先修改活动时间"
    return None


def _registration_step_problem(user: User | None, registration: Registration, action: str) -> str | None:
    step = REGISTRATION_TRANSITIONS[action]
    event = registration.event
    if step.who == STAFF and not is_staff(user):
        return "只有组织方可以审核报名"
    if step.who == FIRM and not member_of(user, registration.organization_id):
        return "只有报名单位可以取消报名"
    if registration.status not in step.sources:
        return f"「{registration.status_label}」的报名不能{step.label}"
    if event.status != EventStatus.OPEN:
        return f"活动{event.status_label}，不能{step.label}"
    if action == "cancel" and event_started(event):
        return "活动已开始，不能取消报名"
    if action == "confirm" and event.confirmed_count >= event.capacity:
        return f"名额已满（{event.capacity}家），不能再确认报名"
    return None


def _invitation_step_problem(user: User | None, entry: ShortlistEntry, action: str) -> str | None:
    step = INVITATION_TRANSITIONS[action]
    event = entry.shortlist.event
    if step.who == STAFF and not is_staff(user):
        return "只有组织方可以发出邀请"
    if step.who == FIRM and not member_of(user, entry.organization_id):
        return "只有受邀单位可以答复邀请"
    if entry.invitation_status not in step.sources:
        return f"「{entry.invitation_label}」的邀请不能{step.label}"
    if event.status != EventStatus.OPEN:
        return f"活动{event.status_label}，不能{step.label}"
    if event_started(event):
        return f"活动已开始，不能{step.label}"
    return None


def _meeting_step_problem(user: User | None, meeting: Meeting, action: str) -> str | None:
    step = MEETING_TRANSITIONS[action]
    event = meeting.event
    if not is_staff(user):
        return "只有组织方可以标记洽谈结果"
    if meeting.status not in step.sources:
        return f"「{meeting.status_label}」的洽谈不能标记为{step.label}"
    if event.status not in (EventStatus.OPEN, EventStatus.FINISHED):
        return f"活动{event.status_label}，不能标记洽谈结果"
    if timeutil.now_naive_utc() < meeting.starts_at:
        return "洽谈尚未开始，不能标记结果"
    return None


def _schedule_problem(user: User | None, event: Event) -> str | None:
    if not is_staff(user):
        return "只有组织方可以安排洽谈"
    if event.status not in PREPARING:
        return f"活动{event.status_label}，洽谈安排不能再调整"
    return None


def problem(user: User | None, action: str, obj: Any) -> str | None:
    """Why ``user`` may not do ``action`` on ``obj`` (a Chinese message), or None when allowed.

    Objects and actions:

    * the class :class:`Event`: ``create``
    * :class:`Event`: ``view``, ``manage`` (organizer pages, registrations), ``edit`` (details,
      featured needs, shortlists), ``register`` and every action of :data:`EVENT_TRANSITIONS`
    * :class:`Registration`: ``view`` and every action of :data:`REGISTRATION_TRANSITIONS`
    * :class:`Shortlist`: ``view`` (organizers; the need's publisher once the event is
      published, read only), ``manage`` (organizers, while the event is 筹备中 or 报名中)
    * :class:`ShortlistEntry`: ``view_invitation`` (the firm, once invited), ``request`` (the
      need's publisher marks a firm it wants to meet, while the event is 报名中) and every action
      of :data:`INVITATION_TRANSITIONS` (``invite`` by organizers, ``confirm``/``decline`` by the firm)
    * :class:`Event`, for the 1:1 meetings and exports: ``view_schedule`` and ``export``
      (organizers), ``schedule`` (the plan, 自动排程 and manual edits: organizers, while the event
      is 筹备中 or 报名中), ``view_tables`` (the per-table agendas: organizers)
    * :class:`Participant`: ``view_agenda`` (organizers; members of that organization once the
      event is published)
    * :class:`Meeting`: ``edit`` (move, swap, remove: organizers, while the event is 筹备中 or
      报名中 and the meeting is not marked yet) and every action of :data:`MEETING_TRANSITIONS`
    """
    if obj is Event:
        if action == "create":
            return None if is_staff(user) else "只有组织方可以创建活动"
    elif isinstance(obj, Event):
        if action == "view":
            return None if can_view_event(user, obj) else "活动不存在"
        if action == "manage":
            return None if is_staff(user) else "只有组织方可以管理活动"
        if action == "edit":
            if not is_staff(user):
                return "只有组织方可以管理活动"
            return None if obj.status in PREPARING else f"活动{obj.status_label}，不能再修改"
        if action == "register":
            return register_problem(user, obj)
        if action in EVENT_TRANSITIONS:
            return _event_step_problem(user, obj, action)
        if action in ("view_schedule", "view_tables"):
            return None if is_staff(user) else "只有组织方可以查看洽谈安排"
        if action == "export":
            return None if is_staff(user) else "只有组织方可以导出活动资料"
        if action == "schedule":
            return _schedule_problem(user, obj)
    elif isinstance(obj, Participant):
        if action == "view_agenda":
            if is_staff(user) or (member_of(user, obj.organization_id) and obj.event.is_published):
                return None
            return "洽谈日程不存在"
    elif isinstance(obj, Meeting):
        if action == "edit":
            reason = _schedule_problem(user, obj.event)
            if reason is None and obj.status != MeetingStatus.SCHEDULED:
                return f"「{obj.status_label}」的洽谈不能再调整"
            return reason
        if action in MEETING_TRANSITIONS:
            return _meeting_step_problem(user, obj, action)
    elif isinstance(obj, Registration):
        if action == "view":
            ok = is_staff(user) or member_of(user, obj.organization_id)
            return None if ok else "报名不存在"
        if action in REGISTRATION_TRANSITIONS:
            return _registration_step_problem(user, obj, action)
    elif isinstance(obj, Shortlist):
        if action == "view":
            if is_staff(user) or (is_publisher(user, obj) and obj.event.is_published):
                return None
            return "对接名单不存在"
        if action == "manage":
            if not is_staff(user):
                return "只有组织方可以调整对接名单"
            if obj.event.status not in PREPARING:
                return f"活动{obj.event.status_label}，对接名单不能再调整"
            return None
    elif isinstance(obj, ShortlistEntry):
        if action == "view_invitation":
            ok = member_of(user, obj.organization_id) and obj.invitation_status != EventInvitationStatus.NONE
            return None if ok or is_staff(user) else "邀请不存在"
        if action == "request":
            if not is_publisher(user, obj.shortlist):
                return "只有需求发布单位可以标记洽谈意向"
            if obj.shortlist.event.status != EventStatus.OPEN:
                return f"活动{obj.shortlist.event.status_label}，不能再标记"
            return None
        if action in INVITATION_TRANSITIONS:
            return _invitation_step_problem(user, obj, action)
    return "不支持的操作"


def can(user: User | None, action: str, obj: Any) -> bool:
    """The permission function of the events domain (see :func:`problem` for the actions)."""
    return problem(user, action, obj) is None


def _entitled(user: User | None, action: str, obj: Any) -> bool:
    """Whether ``user`` holds the role ``action`` needs, so that a refusal is about the state."""
    if isinstance(obj, Event):
        if action == "register":
            return _firm_problem(user) is None
        return is_staff(user)
    if isinstance(obj, Registration):
        step = REGISTRATION_TRANSITIONS.get(action)
        if step is not None and step.who == FIRM:
            return member_of(user, obj.organization_id)
        return is_staff(user)
    if isinstance(obj, Shortlist | Meeting):
        return is_staff(user)
    if isinstance(obj, Participant):
        return is_staff(user) or member_of(user, obj.organization_id)
    if isinstance(obj, ShortlistEntry):
        if action == "request":
            return is_publisher(user, obj.shortlist)
        step = INVITATION_TRANSITIONS.get(action)
        if step is not None and step.who == FIRM:
            return member_of(user, obj.organization_id)
        return is_staff(user)
    return False


#: Actions whose refusal means "this does not exist for you" (404).
_HIDING = frozenset({"view", "view_invitation", "view_agenda"})


def require(user: User | None, action: str, obj: Any) -> None:
    """Raise unless :func:`can`: NotFound for what the user may not see, InvalidTransition when
    the user holds the right role but the state forbids the step, PermissionDenied otherwise."""
    reason = problem(user, action, obj)
    if reason is None:
        return
    if action in _HIDING:
        raise NotFound(reason)
    if _entitled(user, action, obj):
        raise InvalidTransition(reason)
    raise PermissionDenied(reason)


def allowed_event_actions(user: User | None, event: Event) -> list[Transition]:
    return [t for a, t in EVENT_TRANSITIONS.items() if _event_step_problem(user, event, a) is None]


def allowed_registration_actions(user: User | None, registration: Registration) -> list[Transition]:
    return [t for a, t in REGISTRATION_TRANSITIONS.items()
            if _registration_step_problem(user, registration, a) is None]


def allowed_invitation_actions(user: User | None, entry: ShortlistEntry) -> list[Transition]:
    return [t for a, t in INVITATION_TRANSITIONS.items() if _invitation_step_problem(user, entry, a) is None]


def allowed_meeting_actions(user: User | None, meeting: Meeting) -> list[Transition]:
    return [t for a, t in MEETING_TRANSITIONS.items() if _meeting_step_problem(user, meeting, a) is None]


# ---------------------------------------------------------------- lookup


def get_event(event_id: int) -> Event:
    event = db.session.get(
        Event, event_id,
        options=[selectinload(Event.featured).joinedload(EventOpportunity.opportunity)
                 .joinedload(Opportunity.publisher)],
    )
    if event is None:
        raise NotFound("活动不存在")
    return event


def visible_event(user: User | None, event_id: int) -> Event:
    """The event if ``user`` may see it; a draft does not exist for the public (404)."""
    event = get_event(event_id)
    require(user, "view", event)
    return event


def registration_of(organization_id: int | None, event_id: int) -> Registration | None:
    if organization_id is None:
        return None
    return db.session.scalar(
        select(Registration).where(
            Registration.event_id == event_id, Registration.organization_id == organization_id
        )
    )


def visible_registration(user: User | None, registration_id: int) -> Registration:
    registration = db.session.get(Registration, registration_id)
    if registration is None:
        raise NotFound("报名不存在")
    require(user, "view", registration)
    return registration


# ---------------------------------------------------------------- event details


def local_datetime_to_utc(day: date, at: time) -> datetime:
    """A Beijing wall-clock date and time as the naive UTC value stored in the database."""
    local = datetime.combine(day, at, tzinfo=timeutil.display_zone())
    return local.astimezone(UTC).replace(tzinfo=None)


def _text(value: Any, label: str, low: int, high: int, key: str, errors: dict[str, str]) -> str:
    text = (value or "").strip() if isinstance(value, str) or value is None else str(value)
    if "\x00" in text:
        errors[key] = f"{label}包含无效字符"
    elif len(text) < low:
        errors[key] = f"请填写{label}" if low <= 1 else f"{label}应为{low}–{high}个字"
    elif len(text) > high:
        errors[key] = f"{label}不能超过{high}个字"
    return text


def check_url(value: str | None, errors: dict[str, str], key: str = "online_url") -> str:
    """An online link: http or https with a host, nothing else (no javascript:, no data:)."""
    url = (value or "").strip()
    if not url:
        return ""
    if len(url) > MAX_URL:
        errors[key] = f"链接不能超过{MAX_URL}个字符"
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        parts = None
    if (parts is None or parts.scheme.lower() not in ("http", "https") or not parts.hostname
            or any(ord(c) < 33 for c in url)):
        errors[key] = "线上链接须以 http:// 或 https:// 开头"
    return url


def clean_event(data: dict) -> dict[str, Any]:
    """Check an event's fields (raises :class:`ValidationFailed`, field → Chinese message).

    ``day`` and ``registration_deadline`` are dates, ``start_time``/``end_time`` times, all in
    Beijing time.
    """
    errors: dict[str, str] = {}
    kind = data.get("kind")
    if kind not in {k.value for k in EventKind}:
        errors["kind"] = "请选择活动类型"
    out: dict[str, Any] = {
        "kind": kind,
        "title": _text(data.get("title"), "活动名称", 2, MAX_TITLE, "title", errors),
        "venue": _text(data.get("venue"), "举办地点", 0, MAX_VENUE, "venue", errors),
        "description": _text(data.get("description"), "活动介绍", 0, MAX_DESCRIPTION, "description", errors),
        "online_url": check_url(data.get("online_url"), errors),
    }
    day, start, end = data.get("day"), data.get("start_time"), data.get("end_time")
    deadline = data.get("registration_deadline")
    if not isinstance(day, date):
        errors["day"] = "请填写活动日期"
    if not isinstance(start, time):
        errors["start_time"] = "请填写开始时间"
    if end is not None and not isinstance(end, time):
        errors["end_time"] = "结束时间无效"
    elif isinstance(end, time) and isinstance(start, time) and end <= start:
        errors["end_time"] = "结束时间应晚于开始时间"
    if not isinstance(deadline, date):
        errors["registration_deadline"] = "请填写报名截止日期"
    elif isinstance(day, date) and deadline > day:
        errors["registration_deadline"] = "报名截止日期不能晚于活动日期"
    capacity = data.get("capacity")
    if isinstance(capacity, bool) or not isinstance(capacity, int) or not 1 <= capacity <= MAX_CAPACITY:
        errors["capacity"] = f"名额应为1–{MAX_CAPACITY}之间的整数"
    if not out["venue"] and not out["online_url"] and "venue" not in errors and "online_url" not in errors:
        errors["venue"] = "请填写举办地点或线上链接（至少一项）"
    if errors:
        raise ValidationFailed(errors)
    out["starts_at"] = local_datetime_to_utc(day, start)
    out["ends_at"] = local_datetime_to_utc(day, end) if isinstance(end, time) else None
    out["registration_deadline"] = deadline
    out["capacity"] = capacity
    return out


def _apply_event(event: Event, values: dict[str, Any]) -> None:
    for key in ("kind", "title", "venue", "online_url", "description", "starts_at", "ends_at",
                "registration_deadline", "capacity"):
        setattr(event, key, values[key])
    event.updated_at = utcnow()


def create_event(actor: User, data: dict) -> Event:
    """A new event in 筹备中 (draft)."""
    require(actor, "create", Event)
    values = clean_event(data)
    event = Event(status=EventStatus.DRAFT, created_by_id=actor.id)
    _apply_event(event, values)
    db.session.add(event)
    db.session.flush()
    audit.record(actor, "event.create", event, f"创建{event.kind_label}「{event.title}」")
    db.session.commit()
    return event


def update_event(actor: User, event: Event, data: dict) -> Event:
    require(actor, "edit", event)
    values = clean_event(data)
    if values["capacity"] < event.confirmed_count:
        raise ValidationFailed({"capacity": f"已确认 {event.confirmed_count} 家报名，名额不能少于该数"})
    _apply_event(event, values)
    audit.record(actor, "event.update", event, "修改活动信息")
    db.session.commit()
    return event


def form_values(event: Event) -> dict[str, Any]:
    """The event's fields as the form shows them (Beijing dates and times)."""
    start = timeutil.to_local(event.starts_at)
    end = timeutil.to_local(event.ends_at) if event.ends_at else None
    return {
        "kind": event.kind, "title": event.title, "venue": event.venue, "online_url": event.online_url,
        "description": event.description, "capacity": event.capacity,
        "registration_deadline": event.registration_deadline,
        "day": start.date(), "start_time": start.time().replace(second=0, microsecond=0),
        "end_time": end.time().replace(second=0, microsecond=0) if end else None,
    }


def _event_url(event: Event) -> str:
    return notifications.path_for("events.detail", id=event.id)


def transition_event(actor: User, event: Event, action: str, reason: str = "") -> Event:
    """Perform one step of :data:`EVENT_TRANSITIONS`."""
    require(actor, action, event)
    step = EVENT_TRANSITIONS[action]
    reason = _reason(reason, required=False)
    event.status = step.target
    event.updated_at = utcnow()
    if action == "open" and event.published_at is None:
        event.published_at = utcnow()
    if action == "cancel":
        event.cancel_reason = reason or None
        _tell_cancelled(event, reason)
    audit.record(actor, f"event.{action}", event, step.label + (f"：{reason}" if reason else ""))
    db.session.commit()
    return event


def _tell_cancelled(event: Event, reason: str) -> None:
    """Tell every firm with a live registration or an invitation that the event is cancelled."""
    org_ids = {r.organization_id for r in event.registrations if r.status in LIVE_REGISTRATION}
    org_ids |= set(
        db.session.scalars(
            select(ShortlistEntry.organization_id)
            .join(Shortlist, Shortlist.id == ShortlistEntry.shortlist_id)
            .where(
                Shortlist.event_id == event.id,
                ShortlistEntry.invitation_status.in_(
                    (EventInvitationStatus.INVITED, EventInvitationStatus.CONFIRMED)
                ),
            )
        )
    )
    body = f"「{event.title}」已取消。" + (f"原因：{reason}" if reason else "")
    for org_id in sorted(org_ids):
        notifications.notify_organization(
            org_id, NotificationKind.REGISTRATION_STATUS, f"活动已取消：{event.title}", body,
            _event_url(event),
        )


def _reason(value: str | None, required: bool, key: str = "reason", label: str = "原因") -> str:
    text = (value or "").strip()
    if "\x00" in text:
        raise ValidationFailed({key: f"{label}包含无效字符"})
    if len(text) > MAX_REASON:
        raise ValidationFailed({key: f"{label}不能超过{MAX_REASON}个字"})
    if required and not text:
        raise ValidationFailed({key: f"请填写{label}"})
    return text


# ---------------------------------------------------------------- featured needs


def search_needs(event: Event, query: str, limit: int = SEARCH_LIMIT) -> list[Opportunity]:
    """Published needs whose title, description or publisher contains ``query`` (not yet featured)."""
    query = (query or "").strip()[:100]
    if not query or "\x00" in query:
        return []
    featured = {f.opportunity_id for f in event.featured}
    rows = db.session.scalars(
        select(Opportunity)
        .join(Organization, Organization.id == Opportunity.publisher_id)
        .where(
            Opportunity.status == EntryStatus.PUBLISHED,
            or_(
                Opportunity.title.contains(query, autoescape=True),
                Opportunity.description.contains(query, autoescape=True),
                Organization.name.contains(query, autoescape=True),
            ),
        )
        .options(joinedload(Opportunity.publisher))
        .order_by(Opportunity.published_at.desc(), Opportunity.id.desc())
        .limit(limit + len(featured))
    )
    return [o for o in rows if o.id not in featured][:limit]


def opportunity_batches() -> list[Batch]:
    return list(db.session.scalars(
        select(Batch).where(Batch.kind == "opportunity").order_by(Batch.created_at.desc(), Batch.id.desc())
    ))


def _feature(actor: User, event: Event, opportunities: Iterable[Opportunity]) -> list[Opportunity]:
    present = {f.opportunity_id for f in event.featured}
    position = max((f.position for f in event.featured), default=0)
    added = []
    for opportunity in opportunities:
        if opportunity.id in present or opportunity.status != EntryStatus.PUBLISHED:
            continue
        if len(present) >= MAX_FEATURED:
            raise DomainError(f"一场活动最多展示{MAX_FEATURED}项需求")
        position += 1
        event.featured.append(EventOpportunity(
            opportunity_id=opportunity.id, opportunity=opportunity, position=position, added_by_id=actor.id,
        ))
        present.add(opportunity.id)
        added.append(opportunity)
    return added


def add_need(actor: User, event: Event, opportunity_id: int) -> Opportunity:
    """Feature one published need at the event."""
    require(actor, "edit", event)
    opportunity = db.session.get(Opportunity, opportunity_id)
    if opportunity is None or opportunity.status != EntryStatus.PUBLISHED:
        raise ValidationFailed({"opportunity_id": "只能添加已发布的需求"})
    if any(f.opportunity_id == opportunity.id for f in event.featured):
        raise ValidationFailed({"opportunity_id": "该需求已在本活动中"})
    _feature(actor, event, [opportunity])
    audit.record(actor, "event.add_need", event, f"加入需求「{opportunity.title}」")
    db.session.commit()
    return opportunity


def add_batch(actor: User, event: Event, batch_id: int) -> int:
    """Feature every published need of a published batch at once; returns how many were added."""
    require(actor, "edit", event)
    batch = db.session.get(Batch, batch_id)
    if batch is None or batch.kind != "opportunity":
        raise ValidationFailed({"batch_id": "请选择机会清单批次"})
    needs = db.session.scalars(
        select(Opportunity)
        .where(Opportunity.batch_id == batch.id, Opportunity.status == EntryStatus.PUBLISHED)
        .order_by(Opportunity.id)
    ).all()
    if not needs:
        raise ValidationFailed({"batch_id": "该批次没有已发布的需求"})
    added = _feature(actor, event, needs)
    audit.record(actor, "event.add_batch", event, f"按批次「{batch.title}」加入 {len(added)} 项需求")
    db.session.commit()
    return len(added)


def remove_need(actor: User, event: Event, opportunity_id: int) -> None:
    require(actor, "edit", event)
    row = next((f for f in event.featured if f.opportunity_id == opportunity_id), None)
    if row is None:
        raise NotFound("该需求不在本活动中")
    if shortlist_for(event.id, opportunity_id) is not None:
        raise InvalidTransition("该需求已建立对接名单，不能移除")
    title = row.opportunity.title
    event.featured.remove(row)
    audit.record(actor, "event.remove_need", event, f"移除需求「{title}」")
    db.session.commit()


def public_needs(event: Event) -> list[Opportunity]:
    """The featured needs the public may see (published ones)."""
    return [f.opportunity for f in event.featured if f.opportunity.status == EntryStatus.PUBLISHED]


def shortlist_for(event_id: int, opportunity_id: int) -> Shortlist | None:
    return db.session.scalar(
        select(Shortlist).where(Shortlist.event_id == event_id, Shortlist.opportunity_id == opportunity_id)
    )


def shortlists_of(event: Event) -> dict[int, Shortlist]:
    """The event's shortlists by need id."""
    return {s.opportunity_id: s for s in db.session.scalars(
        select(Shortlist).where(Shortlist.event_id == event.id).options(selectinload(Shortlist.entries))
    )}


# ---------------------------------------------------------------- registrations


def product_choices(organization: Organization) -> list[Product]:
    """The organization's published products (what it may bring to an event)."""
    return list(db.session.scalars(
        select(Product)
        .where(Product.owner_id == organization.id, Product.status == EntryStatus.PUBLISHED)
        .order_by(Product.id)
    ))


def _clean_registration(organization: Organization, note: str | None, product_ids: Iterable) -> tuple:
    errors: dict[str, str] = {}
    note = _text(note, "报名说明", 0, MAX_NOTE, "note", errors)
    allowed = {p.id for p in product_choices(organization)}
    ids: list[int] = []
    for raw in product_ids or []:
        try:
            ids.append(int(raw))
        except (TypeError, ValueError):
            errors["product_ids"] = "产品选择无效"
            break
    ids = list(dict.fromkeys(ids))
    if "product_ids" not in errors and any(i not in allowed for i in ids):
        errors["product_ids"] = "只能选择本单位已发布的产品"
    if errors:
        raise ValidationFailed(errors)
    return note, ids


def register(actor: User, event: Event, note: str = "", product_ids: Iterable = ()) -> Registration:
    """The actor's organization registers (报名) for the event; organizers confirm it later."""
    require(actor, "register", event)
    note, ids = _clean_registration(actor.organization, note, product_ids)
    registration = registration_of(actor.organization_id, event.id)
    if registration is None:
        registration = Registration(event=event, organization_id=actor.organization_id,
                                    organization=actor.organization)
        db.session.add(registration)
    registration.status = RegistrationStatus.PENDING
    registration.note = note
    registration.decision_reason = None
    registration.decided_at = registration.decided_by_id = registration.cancelled_at = None
    registration.created_by_id = actor.id
    registration.created_at = utcnow()
    registration.product_rows = [RegistrationProduct(product_id=i) for i in ids]
    try:
        db.session.flush()
    except IntegrityError:  # a colleague registered in the same instant
        db.session.rollback()
        raise InvalidTransition("本单位已报名") from None
    audit.record(actor, "registration.create", registration, f"报名参加「{event.title}」")
    db.session.commit()
    return registration


def transition_registration(
    actor: User, registration: Registration, action: str, reason: str = ""
) -> Registration:
    """Perform one step of :data:`REGISTRATION_TRANSITIONS` (decline needs a reason).

    Confirming locks the event row first (PostgreSQL), so two organizers confirming at once
    cannot both take the last seat.
    """
    if action == "confirm" and is_staff(actor):
        db.session.execute(select(Event.id).where(Event.id == registration.event_id).with_for_update())
        db.session.expire(registration.event, ["registrations"])
    require(actor, action, registration)
    step = REGISTRATION_TRANSITIONS[action]
    reason = _reason(reason, required=step.needs_reason)
    event = registration.event
    registration.status = step.target
    if step.who == STAFF:
        registration.decided_at = utcnow()
        registration.decided_by_id = actor.id
        registration.decision_reason = reason or None
        body = f"贵单位报名参加「{event.title}」的状态变为「{registration.status_label}」。"
        if reason:
            body += f"原因：{reason}"
        notifications.notify_organization(
            registration.organization_id, NotificationKind.REGISTRATION_STATUS,
            f"活动报名{registration.status_label}：{event.title}", body, _event_url(event),
        )
    else:
        registration.cancelled_at = utcnow()
    audit.record(actor, f"registration.{action}", registration,
                 f"{registration.organization.name}：{step.label}" + (f"：{reason}" if reason else ""))
    db.session.commit()
    return registration


def registrations_of(event: Event) -> list[Registration]:
    return list(db.session.scalars(
        select(Registration)
        .where(Registration.event_id == event.id)
        .options(joinedload(Registration.organization),
                 selectinload(Registration.product_rows).joinedload(RegistrationProduct.product))
        .order_by(Registration.created_at, Registration.id)
    ).unique())


# ---------------------------------------------------------------- lists


def _event_end(event: Event) -> datetime:
    return event.ends_at or event.starts_at


def public_events() -> tuple[list[Event], list[Event]]:
    """Published events: (upcoming soonest first, past most recent first). Drafts never."""
    now = timeutil.now_naive_utc()
    events = db.session.scalars(
        select(Event)
        .where(Event.status.in_((EventStatus.OPEN, EventStatus.FINISHED)))
        .order_by(Event.starts_at, Event.id)
        .limit(500)
    ).all()
    upcoming = [e for e in events if e.status == EventStatus.OPEN and _event_end(e) >= now]
    past = [e for e in events if e not in upcoming]
    return upcoming, list(reversed(past))


def upcoming_events(limit: int = 3) -> list[Event]:
    """The next open events, for the portal's home page."""
    now = timeutil.now_naive_utc()
    return list(db.session.scalars(
        select(Event)
        .where(Event.status == EventStatus.OPEN,
               func.coalesce(Event.ends_at, Event.starts_at) >= now)
        .order_by(Event.starts_at, Event.id)
        .limit(limit)
    ))


def all_events(actor: User) -> list[Event]:
    """Every event, for organizers (drafts included), newest first."""
    require(actor, "create", Event)
    return list(db.session.scalars(
        select(Event)
        .options(selectinload(Event.featured), selectinload(Event.registrations))
        .order_by(Event.starts_at.desc(), Event.id.desc())
    ))


def my_registrations(actor: User) -> list[Registration]:
    if actor.organization_id is None:
        raise PermissionDenied("只有单位用户有活动报名")
    return list(db.session.scalars(
        select(Registration)
        .where(Registration.organization_id == actor.organization_id)
        .options(joinedload(Registration.event),
                 selectinload(Registration.product_rows).joinedload(RegistrationProduct.product))
        .order_by(Registration.created_at.desc(), Registration.id.desc())
    ).unique())


def my_invitations(actor: User) -> list[ShortlistEntry]:
    """The shortlist entries to which the actor's organization was invited, newest first."""
    if actor.organization_id is None:
        raise PermissionDenied("只有单位用户有活动邀请")
    return list(db.session.scalars(
        select(ShortlistEntry)
        .where(ShortlistEntry.organization_id == actor.organization_id,
               ShortlistEntry.invitation_status != EventInvitationStatus.NONE)
        .options(joinedload(ShortlistEntry.shortlist).joinedload(Shortlist.event),
                 joinedload(ShortlistEntry.shortlist).joinedload(Shortlist.opportunity)
                 .joinedload(Opportunity.publisher))
        .order_by(ShortlistEntry.invited_at.desc(), ShortlistEntry.id.desc())
    ).unique())


def publisher_shortlists(actor: User) -> list[Shortlist]:
    """Shortlists of the actor's organization's needs at published events (read-only for it)."""
    if actor.organization_id is None:
        return []
    return list(db.session.scalars(
        select(Shortlist)
        .join(Opportunity, Opportunity.id == Shortlist.opportunity_id)
        .join(Event, Event.id == Shortlist.event_id)
        .where(Opportunity.publisher_id == actor.organization_id,
               Event.status.in_((EventStatus.OPEN, EventStatus.FINISHED)))
        .options(joinedload(Shortlist.event), joinedload(Shortlist.opportunity),
                 selectinload(Shortlist.entries))
        .order_by(Event.starts_at.desc(), Shortlist.id)
    ).unique())


def pending_invitation_count(user: User | None) -> int:
    if not _authenticated(user) or user.organization_id is None:
        return 0
    return db.session.scalar(
        select(func.count()).select_from(ShortlistEntry).where(
            ShortlistEntry.organization_id == user.organization_id,
            ShortlistEntry.invitation_status == EventInvitationStatus.INVITED,
        )
    ) or 0


def history(event: Event) -> list:
    """The audit events of an event, oldest first."""
    return list(reversed(db.session.scalars(audit.audit_query("event", event.id).limit(200)).all()))

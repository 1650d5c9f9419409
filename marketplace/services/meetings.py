"""1:1 对接洽谈 at a 供需对接会 (issue 8 §3): the meeting plan, 自动排程, manual edits, marking
meetings held, and the agendas.

This module turns rows into the plain values of :mod:`marketplace.scheduling` (imported as a
module: its ``Meeting`` is not the model) and stores what comes back:

* :class:`MeetingPlan` ``sessions`` hold naive-UTC ISO datetimes; :func:`to_plan` makes them
  timezone-aware for the scheduler, which shows times in ``DISPLAY_TIMEZONE``.
* A meeting is **fixed** (kept by 自动排程) when it was placed by hand (``source`` manual: added,
  moved or swapped by an organizer) or is already marked (held / no-show). 自动排程 replaces every
  other scheduled meeting in one transaction.
* Candidates are the confirmed invitations (``invitation_status == "confirmed"``) of the event's
  shortlists: weight from the firm's rank on its shortlist (:func:`scheduling.rank_weight`),
  ``requested`` from the publisher's 希望洽谈 mark.
* Manual edits go through :func:`scheduling.move`, :func:`scheduling.swap` and
  :func:`scheduling.add`; a refused edit raises :class:`MeetingConflict` (the Chinese violation
  messages) and saves nothing.
* Marking a meeting held appends a ``met`` decision to the shortlist's decision log.

Permissions are :func:`marketplace.services.events.require` (one function for the domain).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import joinedload, selectinload

from marketplace import scheduling, timeutil
from marketplace.extensions import db
from marketplace.models import (
    DecisionAction,
    EntryStatus,
    Event,
    EventInvitationStatus,
    EventStatus,
    Meeting,
    MeetingPlan,
    MeetingSource,
    MeetingStatus,
    Opportunity,
    Organization,
    Product,
    Shortlist,
    ShortlistEntry,
    User,
)
from marketplace.models.base import utcnow
from marketplace.services import audit, shortlists
from marketplace.services.errors import DomainError, NotFound, ValidationFailed
from marketplace.services.events import (
    MAX_NOTE,
    MEETING_TRANSITIONS,
    Participant,
    local_datetime_to_utc,
    require,
    shortlists_of,
)

MAX_SESSIONS = 6
MAX_BREAKS = 6
MIN_SLOT_MINUTES, MAX_SLOT_MINUTES = 5, 240
MAX_TABLES = 200
MAX_CAP = 100
#: More slots than this is a typo (a 5-minute slot over a week), not a meeting day.
MAX_SLOTS = 300
#: Seconds HiGHS may spend in the request (60 needs take about one second).
SOLVE_SECONDS = 10.0

STATUS_LABELS = {"optimal": "最优解", "time_limit": "达到时间上限（可行解）",
                 "greedy": "贪心解（求解器未给出更优解）"}


class MeetingConflict(DomainError):
    """A schedule change that would break a rule; ``messages`` are the Chinese violations."""

    status_code = 409

    def __init__(self, messages: list[str]):
        super().__init__("；".join(messages))
        self.messages = messages


# ---------------------------------------------------------------- time helpers


def _aware(value: datetime) -> datetime:
    """A stored naive-UTC datetime as an aware one (what the scheduler takes)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _naive(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None)


def slot_key(value: datetime) -> str:
    """How a slot travels in a form: its start as a naive-UTC ISO string."""
    return _naive(_aware(value)).isoformat(timespec="minutes")


def parse_slot(raw: Any) -> datetime:
    """A slot start from a form (see :func:`slot_key`), as an aware UTC datetime."""
    text = str(raw if raw is not None else "").strip()
    try:
        value = datetime.fromisoformat(text) if 0 < len(text) <= 40 else None
    except ValueError:
        value = None
    if value is None:
        raise ValidationFailed({"slot": "请选择洽谈时段"})
    return _aware(value) if value.tzinfo is None else value.astimezone(UTC)


# ---------------------------------------------------------------- the plan


def plan_of(event: Event) -> MeetingPlan | None:
    return db.session.scalar(select(MeetingPlan).where(MeetingPlan.event_id == event.id))


def to_plan(row: MeetingPlan) -> scheduling.Plan:
    """The stored plan as the scheduler's :class:`scheduling.Plan` (raises ``PlanError``)."""
    sessions, breaks = [], []
    for session in row.sessions or []:
        sessions.append(scheduling.Session(
            _aware(datetime.fromisoformat(session["start"])), _aware(datetime.fromisoformat(session["end"])),
            session.get("name", ""),
        ))
        for pause in session.get("breaks", []):
            breaks.append(scheduling.Break(
                _aware(datetime.fromisoformat(pause["start"])), _aware(datetime.fromisoformat(pause["end"])),
                pause.get("name") or "茶歇",
            ))
    return scheduling.Plan(
        sessions=tuple(sessions), slot_minutes=row.slot_minutes, tables=row.tables, breaks=tuple(breaks),
        max_per_firm=row.max_meetings_per_firm, max_per_need=row.max_meetings_per_need,
        zone=str(timeutil.display_zone()),
    )


def _int(value: Any, low: int, high: int, key: str, label: str, errors: dict[str, str],
         required: bool = True) -> int | None:
    if value is None or value == "":
        if required:
            errors[key] = f"请填写{label}"
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        errors[key] = f"{label}应为{low}–{high}之间的整数"
        return None
    return value


def _period(row: dict, prefix: str, index: int, label: str, errors: dict[str, str]):
    """One session or break row: (name, start, end) in naive UTC, or None when left blank."""
    day, start, end = row.get("day"), row.get("start"), row.get("end")
    name = (row.get("name") or "").strip()
    if day is None and start is None and end is None and not name:
        return None
    key = f"{prefix}-{index}"
    if "\x00" in name or len(name) > 20:
        errors[f"{key}-name"] = "名称不能超过20个字"
    if not isinstance(day, date):
        errors[f"{key}-day"] = f"请填写{label}日期"
    if not isinstance(start, time):
        errors[f"{key}-start"] = "请填写开始时间"
    if not isinstance(end, time):
        errors[f"{key}-end"] = "请填写结束时间"
    elif isinstance(start, time) and end <= start:
        errors[f"{key}-end"] = "结束时间应晚于开始时间"
    if any(k.startswith(key) for k in errors):
        return None
    return name, local_datetime_to_utc(day, start), local_datetime_to_utc(day, end)


def clean_plan(data: dict) -> dict[str, Any]:
    """Check a plan typed in Beijing time (raises :class:`ValidationFailed`, key → Chinese message).

    ``data``: ``sessions`` and ``breaks`` (lists of ``{"name", "day", "start", "end"}``, blank rows
    ignored), ``slot_minutes``, ``tables``, ``max_per_firm`` and ``max_per_need`` (required: the
    model's caps are NOT NULL).
    Each break must lie inside a session. Returns the model's column values.
    """
    errors: dict[str, str] = {}
    slot_minutes = _int(data.get("slot_minutes"), MIN_SLOT_MINUTES, MAX_SLOT_MINUTES, "slot_minutes",
                        "每场洽谈时长（分钟）", errors)
    tables = _int(data.get("tables"), 1, MAX_TABLES, "tables", "洽谈桌数", errors)
    per_firm = _int(data.get("max_per_firm"), 1, MAX_CAP, "max_per_firm", "每家企业洽谈上限", errors)
    per_need = _int(data.get("max_per_need"), 1, MAX_CAP, "max_per_need", "每项需求洽谈上限", errors)
    sessions = [p for i, row in enumerate(data.get("sessions") or [])
                if (p := _period(row, "sessions", i, "场次", errors)) is not None]
    breaks = [p for i, row in enumerate(data.get("breaks") or [])
              if (p := _period(row, "breaks", i, "茶歇", errors)) is not None]
    if not sessions and not any(k.startswith("sessions") for k in errors):
        errors["sessions"] = "请至少填写一个洽谈场次"
    if errors:
        raise ValidationFailed(errors)
    sessions.sort(key=lambda p: p[1])
    rows = [{"name": name, "start": start.isoformat(), "end": end.isoformat(), "breaks": []}
            for name, start, end in sessions]
    for name, start, end in sorted(breaks, key=lambda p: p[1]):
        home = next((row for row, (_, s, e) in zip(rows, sessions, strict=True) if s <= start and end <= e),
                    None)
        if home is None:
            when = timeutil.to_local(start)
            raise ValidationFailed({"breaks": f"茶歇 {when:%m-%d %H:%M} 不在任何洽谈场次内"})
        home["breaks"].append({"name": name or "茶歇", "start": start.isoformat(), "end": end.isoformat()})
    values = {"sessions": rows, "slot_minutes": slot_minutes, "tables": tables,
              "max_meetings_per_firm": per_firm, "max_meetings_per_need": per_need}
    try:
        plan = to_plan(MeetingPlan(**values))
    except scheduling.PlanError as exc:
        raise ValidationFailed({"sessions": str(exc)}) from None
    if not plan.slots:
        raise ValidationFailed({"slot_minutes": "按当前场次、茶歇和时长，没有可用的洽谈时段"})
    if len(plan.slots) > MAX_SLOTS:
        raise ValidationFailed({"slot_minutes": f"洽谈时段过多（{len(plan.slots)} 个，最多 {MAX_SLOTS} 个）"})
    return values


def save_plan(actor: User, event: Event, data: dict) -> MeetingPlan:
    """Create or replace the event's plan; stored meetings keep their start and get the new length.

    Meetings that no longer fit (in a new break, past a session's end) stay and are reported on
    the schedule page (:func:`conflicts`), so the organizer repairs them one at a time.
    """
    require(actor, "schedule", event)
    values = clean_plan(data)
    row = plan_of(event)
    if row is None:
        row = MeetingPlan(event_id=event.id, event=event)
        db.session.add(row)
    for key, value in values.items():
        setattr(row, key, value)
    row.updated_at = utcnow()
    length = timedelta(minutes=values["slot_minutes"])
    for meeting in meetings_of(event):
        meeting.ends_at = meeting.starts_at + length
    plan = to_plan(row)
    audit.record(actor, "meeting.plan", event,
                 f"洽谈安排：{len(plan.slots)} 个时段 × {row.tables} 张桌，每场 {row.slot_minutes} 分钟")
    db.session.commit()
    return row


def form_values(event: Event) -> dict[str, Any]:
    """The plan as the form shows it (Beijing dates and times); defaults from the event."""
    row = plan_of(event)
    if row is None:
        start = timeutil.to_local(event.starts_at)
        end = timeutil.to_local(event.ends_at) if event.ends_at else start + timedelta(hours=3)
        return {"sessions": [{"name": "", "day": start.date(), "start": start.time(), "end": end.time()}],
                "breaks": [], "slot_minutes": 20, "tables": 10, "max_per_firm": 4, "max_per_need": 8}

    def local(period: dict) -> dict:
        start = timeutil.to_local(datetime.fromisoformat(period["start"]))
        end = timeutil.to_local(datetime.fromisoformat(period["end"]))
        return {"name": period.get("name", ""), "day": start.date(), "start": start.time(), "end": end.time()}

    return {
        "sessions": [local(s) for s in row.sessions],
        "breaks": [local(b) for s in row.sessions for b in s.get("breaks", [])],
        "slot_minutes": row.slot_minutes, "tables": row.tables,
        "max_per_firm": row.max_meetings_per_firm, "max_per_need": row.max_meetings_per_need,
    }


def _require_plan(event: Event) -> tuple[MeetingPlan, scheduling.Plan]:
    row = plan_of(event)
    if row is None:
        raise DomainError("请先设置洽谈场次、时长和洽谈桌")
    return row, to_plan(row)


# ---------------------------------------------------------------- meetings as the scheduler sees them


def meetings_of(event: Event) -> list[Meeting]:
    """The event's meetings (cancelled ones left out), by time and table."""
    return list(db.session.scalars(
        select(Meeting)
        .where(Meeting.event_id == event.id, Meeting.status != MeetingStatus.CANCELLED)
        .options(joinedload(Meeting.opportunity).joinedload(Opportunity.publisher),
                 joinedload(Meeting.organization), joinedload(Meeting.shortlist_entry))
        .order_by(Meeting.starts_at, Meeting.table_number, Meeting.id)
    ).unique())


def is_fixed(meeting: Meeting) -> bool:
    """Kept by 自动排程: placed by hand, or already marked held / no-show."""
    return meeting.source == MeetingSource.MANUAL or meeting.status != MeetingStatus.SCHEDULED


def _value(meeting: Meeting) -> scheduling.Meeting:
    opportunity = meeting.opportunity
    return scheduling.Meeting(
        need_id=meeting.opportunity_id, publisher_id=opportunity.publisher_id,
        firm_id=meeting.organization_id, start=_aware(meeting.starts_at),
        table=meeting.table_number or 0, fixed=is_fixed(meeting), id=meeting.id,
        need_title=opportunity.title, publisher_name=opportunity.publisher.name,
        firm_name=meeting.organization.name,
    )


def conflicts(event: Event, rows: list[Meeting] | None = None) -> list[str]:
    """The rules the stored schedule breaks (after a plan change, say), as Chinese messages."""
    row = plan_of(event)
    if row is None:
        return []
    rows = meetings_of(event) if rows is None else rows
    return [v.message for v in scheduling.validate(to_plan(row), [_value(m) for m in rows])]


@dataclass
class Confirmed:
    """A confirmed invitation: a firm that will come to meet a need's publisher."""

    entry: ShortlistEntry
    shortlist: Shortlist
    rank: int
    size: int

    @property
    def candidate(self) -> scheduling.Candidate:
        opportunity = self.shortlist.opportunity
        return scheduling.Candidate(
            need_id=opportunity.id, publisher_id=opportunity.publisher_id,
            firm_id=self.entry.organization_id, weight=scheduling.rank_weight(self.rank, self.size),
            requested=self.entry.publisher_requested, need_title=opportunity.title,
            publisher_name=opportunity.publisher.name, firm_name=self.entry.organization.name,
        )


def confirmed(event: Event) -> list[Confirmed]:
    """Every confirmed invitation of the event's shortlists, need by need, in shortlist order."""
    out = []
    lists = db.session.scalars(
        select(Shortlist).where(Shortlist.event_id == event.id)
        .options(joinedload(Shortlist.opportunity).joinedload(Opportunity.publisher),
                 selectinload(Shortlist.entries).joinedload(ShortlistEntry.organization))
        .order_by(Shortlist.id)
    ).unique()
    for shortlist in lists:
        ordered = shortlists.ordered(shortlist)
        for rank, entry in enumerate(ordered, start=1):
            if (entry.invitation_status == EventInvitationStatus.CONFIRMED
                    and entry.organization_id != shortlist.opportunity.publisher_id):
                out.append(Confirmed(entry, shortlist, rank, len(ordered)))
    return out


# ---------------------------------------------------------------- 自动排程


@dataclass
class AutoResult:
    """What 自动排程 did, for the page."""

    placed: int
    kept: int
    replaced: int
    candidates: int
    requested_placed: int
    requested_total: int
    status: str
    gap: float | None
    seconds: float
    unplaced: list[str] = field(default_factory=list)

    @property
    def status_label(self) -> str:
        return STATUS_LABELS.get(self.status, self.status)

    def summary(self) -> str:
        text = (f"自动排程完成：共 {self.placed + self.kept} 场洽谈（新排 {self.placed} 场，保留手动安排"
                f" {self.kept} 场）；发布单位希望洽谈的 {self.requested_total} 对中已安排 "
                f"{self.requested_placed} 对；{self.candidates} 对确认参加的组合中 "
                f"{len(self.unplaced)} 对未能安排。"
                f"求解状态：{self.status_label}")
        if self.gap is not None and self.status != "optimal":
            text += f"（相对差距 {self.gap:.2%}）"
        return text + f"，用时 {self.seconds:.1f} 秒。"


def auto_schedule(actor: User, event: Event, time_limit: float = SOLVE_SECONDS) -> AutoResult:
    """Schedule the confirmed invitations around the fixed meetings and replace the other
    (automatic, still scheduled) meetings, in one transaction.

    The event row is locked first (PostgreSQL), so two organizers scheduling at once take turns.
    """
    require(actor, "schedule", event)
    db.session.execute(select(Event.id).where(Event.id == event.id).with_for_update())
    _, plan = _require_plan(event)
    rows = meetings_of(event)
    fixed = [m for m in rows if is_fixed(m)]
    replaced = [m for m in rows if not is_fixed(m)]
    confirmed_rows = confirmed(event)
    candidates = [c.candidate for c in confirmed_rows]
    try:
        result = scheduling.schedule(plan, candidates, [_value(m) for m in fixed], time_limit=time_limit)
    except scheduling.ScheduleConflict as exc:
        raise MeetingConflict(["手动安排的洽谈存在冲突，请先调整："]
                              + [v.message for v in exc.violations]) from None
    entry_of = {(c.shortlist.opportunity_id, c.entry.organization_id): c.entry for c in confirmed_rows}
    for meeting in replaced:
        db.session.delete(meeting)
    db.session.flush()
    length = timedelta(minutes=plan.slot_minutes)
    placed = 0
    for value in result.meetings:
        if value.fixed:
            continue
        entry = entry_of[value.pair]
        start = _naive(value.start)
        db.session.add(Meeting(
            event_id=event.id, shortlist_entry_id=entry.id, opportunity_id=value.need_id,
            organization_id=value.firm_id, table_number=value.table, starts_at=start,
            ends_at=start + length, status=MeetingStatus.SCHEDULED, source=MeetingSource.AUTO,
        ))
        placed += 1
    outcome = AutoResult(
        placed=placed, kept=len(fixed), replaced=len(replaced), candidates=len(candidates),
        requested_placed=result.requested_placed, requested_total=result.requested_total,
        status=result.status, gap=result.gap, seconds=result.seconds,
        unplaced=[f"{c.firm_name} — {c.need_title}" for c in result.unplaced],
    )
    audit.record(actor, "meeting.auto", event, outcome.summary())
    db.session.commit()
    return outcome


# ---------------------------------------------------------------- manual edits


def get_meeting(meeting_id: int) -> Meeting:
    meeting = db.session.get(Meeting, meeting_id) if 0 < meeting_id <= 2**31 - 1 else None
    if meeting is None or meeting.status == MeetingStatus.CANCELLED:
        raise NotFound("洽谈不存在")
    return meeting


def _table_number(raw: Any) -> int:
    try:
        number = int(str(raw).strip())
    except (TypeError, ValueError):
        raise ValidationFailed({"table": "请选择洽谈桌"}) from None
    if not -(2**31) < number < 2**31:
        raise ValidationFailed({"table": "请选择洽谈桌"})
    return number


def _refused(exc: scheduling.ScheduleConflict) -> MeetingConflict:
    return MeetingConflict([v.message for v in exc.violations])


def _clock(meeting: Meeting) -> str:
    return f"{timeutil.to_local(meeting.starts_at):%m-%d %H:%M} 第 {meeting.table_number} 号桌"


def move(actor: User, meeting: Meeting, slot: Any, table: Any) -> Meeting:
    """Move a meeting to another slot (its start) and table; refused with the violated rules."""
    require(actor, "edit", meeting)
    start, number = parse_slot(slot), _table_number(table)
    row, plan = _require_plan(meeting.event)
    try:
        scheduling.move(plan, [_value(m) for m in meetings_of(meeting.event)], meeting.id, start, number)
    except scheduling.ScheduleConflict as exc:
        raise _refused(exc) from None
    before = _clock(meeting)
    meeting.starts_at = _naive(start)
    meeting.ends_at = meeting.starts_at + timedelta(minutes=row.slot_minutes)
    meeting.table_number = number
    meeting.source = MeetingSource.MANUAL
    audit.record(actor, "meeting.move", meeting.event,
                 f"{meeting.organization.name}（{meeting.opportunity.title}）：{before} → {_clock(meeting)}")
    db.session.commit()
    return meeting


def swap(actor: User, meeting: Meeting, other_id: Any) -> Meeting:
    """Exchange the places (slot and table) of two meetings of the same event."""
    require(actor, "edit", meeting)
    try:
        other = get_meeting(int(str(other_id).strip()))
    except (TypeError, ValueError):
        raise ValidationFailed({"other": "请选择要交换的洽谈"}) from None
    if other.event_id != meeting.event_id or other.id == meeting.id:
        raise ValidationFailed({"other": "请选择本活动中的另一场洽谈"})
    require(actor, "edit", other)
    _, plan = _require_plan(meeting.event)
    try:
        scheduling.swap(plan, [_value(m) for m in meetings_of(meeting.event)], meeting.id, other.id)
    except scheduling.ScheduleConflict as exc:
        raise _refused(exc) from None
    mine = (meeting.starts_at, meeting.ends_at, meeting.table_number)
    theirs = (other.starts_at, other.ends_at, other.table_number)
    meeting.starts_at, meeting.ends_at, meeting.table_number = theirs
    other.starts_at, other.ends_at, other.table_number = mine
    meeting.source = other.source = MeetingSource.MANUAL
    audit.record(actor, "meeting.swap", meeting.event,
                 f"交换：{meeting.organization.name}（{_clock(meeting)}）与 {other.organization.name}"
                 f"（{_clock(other)}）")
    db.session.commit()
    return meeting


def remove(actor: User, meeting: Meeting) -> None:
    """Take a meeting off the schedule (it is deleted; 自动排程 may place the pair again)."""
    require(actor, "edit", meeting)
    event = meeting.event
    audit.record(actor, "meeting.remove", event,
                 f"移除洽谈：{meeting.organization.name}（{meeting.opportunity.title}，{_clock(meeting)}）")
    db.session.delete(meeting)
    db.session.commit()


def addable(event: Event) -> list[tuple[ShortlistEntry, Shortlist]]:
    """The shortlist entries an organizer may add a meeting for (not declined), need by need."""
    out = []
    for shortlist in sorted(shortlists_of(event).values(), key=lambda s: s.id):
        for entry in shortlists.ordered(shortlist):
            if entry.invitation_status != EventInvitationStatus.DECLINED:
                out.append((entry, shortlist))
    return out


def add(actor: User, event: Event, entry_id: Any, slot: Any, table: Any, note: str = "") -> Meeting:
    """Add a meeting by hand for a firm on one of the event's shortlists (it is then fixed)."""
    require(actor, "schedule", event)
    try:
        entry = shortlists.get_entry(int(str(entry_id).strip()))
    except (TypeError, ValueError, NotFound):
        raise ValidationFailed({"entry_id": "请选择对接名单中的企业"}) from None
    shortlist = entry.shortlist
    if shortlist.event_id != event.id:
        raise ValidationFailed({"entry_id": "请选择本活动对接名单中的企业"})
    if entry.invitation_status == EventInvitationStatus.DECLINED:
        raise ValidationFailed({"entry_id": "该企业已婉拒邀请，不能安排洽谈"})
    start, number = parse_slot(slot), _table_number(table)
    note = (note or "").strip()
    if "\x00" in note or len(note) > MAX_NOTE:
        raise ValidationFailed({"note": f"备注不能超过{MAX_NOTE}个字"})
    row, plan = _require_plan(event)
    opportunity = shortlist.opportunity
    value = scheduling.Meeting(
        need_id=opportunity.id, publisher_id=opportunity.publisher_id, firm_id=entry.organization_id,
        start=start, table=number, fixed=True, need_title=opportunity.title,
        publisher_name=opportunity.publisher.name, firm_name=entry.organization.name,
    )
    try:
        scheduling.add(plan, [_value(m) for m in meetings_of(event)], value)
    except scheduling.ScheduleConflict as exc:
        raise _refused(exc) from None
    meeting = Meeting(
        event_id=event.id, event=event, shortlist_entry_id=entry.id, opportunity_id=opportunity.id,
        opportunity=opportunity, organization_id=entry.organization_id, organization=entry.organization,
        table_number=number, starts_at=_naive(start),
        ends_at=_naive(start) + timedelta(minutes=row.slot_minutes),
        status=MeetingStatus.SCHEDULED, source=MeetingSource.MANUAL, note=note,
    )
    db.session.add(meeting)
    db.session.flush()
    audit.record(actor, "meeting.add", event,
                 f"手动安排：{entry.organization.name}（{opportunity.title}，{_clock(meeting)}）")
    db.session.commit()
    return meeting


# ---------------------------------------------------------------- after the event


def mark(actor: User, meeting: Meeting, action: str) -> Meeting:
    """Mark a meeting held (已洽谈: appends a ``met`` decision) or no-show (未到场)."""
    require(actor, action, meeting)
    step = MEETING_TRANSITIONS[action]
    meeting.status = step.target
    meeting.updated_at = utcnow()
    if action == "hold":
        entry = meeting.shortlist_entry
        shortlist = entry.shortlist if entry is not None else db.session.scalar(
            select(Shortlist).where(Shortlist.event_id == meeting.event_id,
                                    Shortlist.opportunity_id == meeting.opportunity_id))
        if shortlist is not None:
            rank = shortlists.rank_of(entry) if entry is not None else None
            shortlists._record(actor, shortlist, meeting.organization_id, DecisionAction.MET,
                               entry.product_ids if entry is not None else [], rank, rank,
                               f"1:1 洽谈 {_clock(meeting)}")
    audit.record(actor, f"meeting.{action}", meeting.event,
                 f"{meeting.organization.name}（{meeting.opportunity.title}）：{step.label}")
    db.session.commit()
    return meeting


# ---------------------------------------------------------------- the schedule page


@dataclass
class Grid:
    """Rows = slots, columns = tables; ``cells[(slot start, table)]`` is the meeting there."""

    plan: scheduling.Plan
    cells: dict[tuple[datetime, int], Meeting]
    #: Meetings at no slot or table of the plan (after a plan change).
    stray: list[Meeting]

    @property
    def tables(self) -> range:
        return range(1, self.plan.tables + 1)

    @property
    def multi_day(self) -> bool:
        return len({timeutil.to_local(s.start).date() for s in self.plan.slots}) > 1

    def at(self, slot: scheduling.Slot, table: int) -> Meeting | None:
        return self.cells.get((_naive(slot.start), table))

    def label(self, slot: scheduling.Slot) -> str:
        start, end = timeutil.to_local(slot.start), timeutil.to_local(slot.end)
        prefix = f"{start:%m-%d} " if self.multi_day else ""
        return f"{prefix}{start:%H:%M}–{end:%H:%M}"

    def key(self, slot: scheduling.Slot) -> str:
        return slot_key(slot.start)


def grid(event: Event, rows: list[Meeting]) -> Grid | None:
    row = plan_of(event)
    if row is None:
        return None
    plan = to_plan(row)
    starts = {_naive(s.start) for s in plan.slots}
    cells: dict[tuple[datetime, int], Meeting] = {}
    stray = []
    for meeting in rows:
        place = (meeting.starts_at, meeting.table_number or 0)
        if meeting.starts_at in starts and 1 <= place[1] <= plan.tables and place not in cells:
            cells[place] = meeting
        else:
            stray.append(meeting)
    return Grid(plan, cells, stray)


@dataclass
class NeedSchedule:
    """One featured need: its meetings and its confirmed firms not (yet) scheduled."""

    opportunity: Opportunity
    meetings: list[Meeting]
    waiting: list[Confirmed]


def by_need(event: Event, rows: list[Meeting]) -> list[NeedSchedule]:
    confirmed_rows = confirmed(event)
    met = {(m.opportunity_id, m.organization_id) for m in rows}
    out = []
    for featured in event.featured:
        need = featured.opportunity
        out.append(NeedSchedule(
            need, [m for m in rows if m.opportunity_id == need.id],
            [c for c in confirmed_rows if c.shortlist.opportunity_id == need.id
             and (need.id, c.entry.organization_id) not in met],
        ))
    return out


# ---------------------------------------------------------------- agendas


@dataclass
class AgendaLine:
    """One meeting on a participant's agenda; ``role`` is ``firm`` or ``publisher``."""

    meeting: Meeting
    role: str
    products: list[Product]


@dataclass
class Agenda:
    organization: Organization
    lines: list[AgendaLine]

    @property
    def roles(self) -> set[str]:
        return {line.role for line in self.lines}


def _products(rows: list[Meeting]) -> dict[int, list[Product]]:
    """Each meeting's firm's products for the need (published ones, from its shortlist entry)."""
    ids = {pid for m in rows if m.shortlist_entry is not None for pid in m.shortlist_entry.product_ids}
    found = {p.id: p for p in db.session.scalars(
        select(Product).where(Product.id.in_(ids), Product.status == EntryStatus.PUBLISHED)
    )} if ids else {}
    return {m.id: [found[i] for i in (m.shortlist_entry.product_ids if m.shortlist_entry else [])
                   if i in found]
            for m in rows}


def agendas(event: Event, organization_id: int | None = None) -> list[Agenda]:
    """The agenda of every participant (or of one organization), by name; meetings by time."""
    rows = meetings_of(event)
    products = _products(rows)
    lines: dict[int, list[AgendaLine]] = defaultdict(list)
    names: dict[int, Organization] = {}
    for meeting in rows:
        publisher = meeting.opportunity.publisher
        lines[meeting.organization_id].append(AgendaLine(meeting, "firm", []))
        lines[publisher.id].append(AgendaLine(meeting, "publisher", products[meeting.id]))
        names[meeting.organization_id] = meeting.organization
        names[publisher.id] = publisher
    if organization_id is not None:
        organization = names.get(organization_id) or db.session.get(Organization, organization_id)
        if organization is None:
            raise NotFound("单位不存在")
        return [Agenda(organization, lines.get(organization_id, []))]
    return [Agenda(names[o], lines[o]) for o in sorted(names, key=lambda o: names[o].name)]


def agenda_for(user: User | None, event: Event, organization_id: int) -> Agenda:
    require(user, "view_agenda", Participant(event, organization_id))
    return agendas(event, organization_id)[0]


def by_table(event: Event) -> dict[int, list[Meeting]]:
    out: dict[int, list[Meeting]] = defaultdict(list)
    for meeting in meetings_of(event):
        out[meeting.table_number or 0].append(meeting)
    return dict(sorted(out.items()))


def my_agendas(user: User) -> list[tuple[Event, int]]:
    """Published events where the user's organization has meetings (as a firm or a publisher),
    newest first, with how many."""
    if user.organization_id is None:
        return []
    org = user.organization_id
    rows = db.session.execute(
        select(Event, Meeting.id)
        .join(Meeting, Meeting.event_id == Event.id)
        .join(Opportunity, Opportunity.id == Meeting.opportunity_id)
        .where(or_(Meeting.organization_id == org, Opportunity.publisher_id == org),
               Meeting.status != MeetingStatus.CANCELLED,
               Event.status.in_((EventStatus.OPEN, EventStatus.FINISHED)))
    ).all()
    counts: dict[int, list] = {}
    for event, _ in rows:
        counts.setdefault(event.id, [event, 0])[1] += 1
    return sorted(((e, n) for e, n in counts.values()), key=lambda p: p[0].starts_at, reverse=True)

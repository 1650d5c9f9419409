"""1:1 meeting scheduler for a 供需对接会 (issue 8 §3): plain dataclasses in, plain dataclasses out.

No Flask and no SQLAlchemy here (like ``matching/``): the events service turns its rows into
:class:`Plan`, :class:`Candidate` and :class:`Meeting` values, calls :func:`schedule` or one of the
manual edits (:func:`add`, :func:`move`, :func:`swap`, :func:`remove`), and stores the result.

The rules every schedule keeps, and that :func:`validate` checks (with Chinese messages):

* every meeting starts at a slot of the plan: slots come from the sessions, the slot length and the
  breaks, and never overlap a break or run past the end of their session;
* its table exists (tables are numbered 1 … ``plan.tables``) and holds one meeting per slot;
* nobody is double-booked: an organization (``publisher_id`` and ``firm_id`` are both organization
  ids) is in at most one meeting per slot, whether it sits there as a need's publisher, possibly
  for several of its needs, or as a firm confirmed for several needs;
* caps: at most ``plan.max_per_firm`` meetings per firm and ``plan.max_per_need`` per need;
* a need and a firm meet at most once.

:func:`schedule` maximises, lexicographically: the number of publisher-requested meetings, then the
number of meetings, then the total rank weight. It solves a 0/1 programme with HiGHS
(``scipy.optimize.milp``) that assigns candidates to slots; tables are given afterwards, which is
exact (see :func:`schedule`). The formulation is written up in ``docs/scheduling.md``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np

DEFAULT_ZONE = "Asia/Shanghai"

#: Violation codes about *where* a meeting sits; a move or a swap can only break these.
PLACE_CODES = frozenset({"slot_in_break", "slot_unknown", "table_unknown", "table_taken", "busy"})


class PlanError(ValueError):
    """The organizer's plan (sessions, breaks, slot length, tables, caps) is not usable."""


class ScheduleConflict(ValueError):
    """A change that would break a rule; ``violations`` say which, in Chinese."""

    def __init__(self, violations: Sequence[Violation]) -> None:
        self.violations = list(violations)
        super().__init__("；".join(v.message for v in self.violations))


@dataclass(frozen=True)
class Session:
    """A block of the event day during which meetings run (场次), e.g. 09:00–12:00."""

    start: datetime
    end: datetime
    name: str = ""


@dataclass(frozen=True)
class Break:
    """A pause inside a session (茶歇, 午休): no slot overlaps it."""

    start: datetime
    end: datetime
    name: str = "茶歇"


@dataclass(frozen=True)
class Slot:
    """One meeting slot; ``index`` is its position in ``plan.slots``, ``session`` its session's."""

    index: int
    session: int
    start: datetime
    end: datetime


def build_slots(
    sessions: Sequence[Session], slot_minutes: int, breaks: Sequence[Break] = ()
) -> tuple[Slot, ...]:
    """Cut each session into back-to-back slots of ``slot_minutes``.

    A slot that would overlap a break is not made; slots resume at the end of the break. A slot
    that would run past the end of its session is not made either.
    """
    length = timedelta(minutes=slot_minutes)
    slots: list[Slot] = []
    for number, session in enumerate(sorted(sessions, key=lambda s: s.start)):
        start = session.start
        while start + length <= session.end:
            overlapping = [b for b in breaks if b.start < start + length and start < b.end]
            if overlapping:
                start = max(b.end for b in overlapping)
                continue
            slots.append(Slot(len(slots), number, start, start + length))
            start += length
    return tuple(slots)


@dataclass(frozen=True)
class Plan:
    """What the organizer sets for the 1:1 meetings of one event.

    Times must be timezone-aware (the event's Beijing times, or UTC: they are instants); messages
    show them in ``zone``. Sessions may not overlap. ``None`` caps mean "no cap".
    """

    sessions: tuple[Session, ...]
    slot_minutes: int
    tables: int
    breaks: tuple[Break, ...] = ()
    max_per_firm: int | None = None
    max_per_need: int | None = None
    zone: str = DEFAULT_ZONE
    slots: tuple[Slot, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sessions", tuple(sorted(self.sessions, key=lambda s: s.start)))
        object.__setattr__(self, "breaks", tuple(sorted(self.breaks, key=lambda b: b.start)))
        for period in (*self.sessions, *self.breaks):
            if period.start.tzinfo is None or period.end.tzinfo is None:
                raise PlanError("场次和茶歇的时间必须带时区")
            if period.end <= period.start:
                raise PlanError("结束时间必须晚于开始时间")
        if not self.sessions:
            raise PlanError("至少需要一个场次")
        for before, after in zip(self.sessions, self.sessions[1:], strict=False):
            if after.start < before.end:
                raise PlanError("场次时间不能重叠")
        if self.slot_minutes < 1:
            raise PlanError("每场洽谈至少 1 分钟")
        if self.tables < 1:
            raise PlanError("至少需要 1 张洽谈桌")
        for cap in (self.max_per_firm, self.max_per_need):
            if cap is not None and cap < 1:
                raise PlanError("洽谈场数上限至少为 1")
        object.__setattr__(self, "slots", build_slots(self.sessions, self.slot_minutes, self.breaks))
        object.__setattr__(self, "_by_start", {slot.start: slot for slot in self.slots})

    def slot_at(self, start: datetime) -> Slot | None:
        """The slot that begins at ``start``, if there is one."""
        return self._by_start.get(start)  # type: ignore[attr-defined]

    def clock(self, moment: datetime) -> str:
        """``moment`` as the organizer reads it: 「9:20」."""
        local = moment.astimezone(ZoneInfo(self.zone))
        return f"{local.hour}:{local.minute:02d}"


def rank_weight(rank: int, size: int) -> float:
    """A candidate's weight from its place on a shortlist of ``size``: 1.0 for rank 1, 1/size for the last."""
    if not 1 <= rank <= size:
        raise ValueError(f"rank {rank} outside 1..{size}")
    return (size - rank + 1) / size


@dataclass(frozen=True)
class Candidate:
    """A meeting that may be scheduled: a need (its publisher attends) and a confirmed firm.

    ``weight`` in [0, 1] orders otherwise equal meetings (use :func:`rank_weight`); ``requested``
    marks pairs the publisher asked for. The names only serve the messages.
    """

    need_id: int
    publisher_id: int
    firm_id: int
    weight: float = 0.0
    requested: bool = False
    need_title: str = field(default="", compare=False)
    publisher_name: str = field(default="", compare=False)
    firm_name: str = field(default="", compare=False)

    @property
    def pair(self) -> tuple[int, int]:
        return (self.need_id, self.firm_id)


@dataclass(frozen=True)
class Meeting:
    """A 1:1 meeting placed at a slot (by its start time) and a table (1 … ``plan.tables``).

    ``fixed`` meetings were pinned by hand and are kept by :func:`schedule`. ``id`` is the stored
    meeting's id, used by :func:`move`, :func:`swap` and :func:`remove`; the scheduler leaves it None.
    """

    need_id: int
    publisher_id: int
    firm_id: int
    start: datetime
    table: int
    fixed: bool = False
    id: int | None = None
    need_title: str = field(default="", compare=False)
    publisher_name: str = field(default="", compare=False)
    firm_name: str = field(default="", compare=False)

    @classmethod
    def of(cls, candidate: Candidate, start: datetime, table: int, **extra: object) -> Meeting:
        """The meeting of ``candidate`` at ``start`` and ``table``."""
        return cls(
            candidate.need_id,
            candidate.publisher_id,
            candidate.firm_id,
            start,
            table,
            need_title=candidate.need_title,
            publisher_name=candidate.publisher_name,
            firm_name=candidate.firm_name,
            **extra,  # type: ignore[arg-type]
        )

    @property
    def pair(self) -> tuple[int, int]:
        return (self.need_id, self.firm_id)


@dataclass(frozen=True)
class Violation:
    """A broken rule: a stable ``code``, the Chinese ``message`` and the meetings involved."""

    code: str
    message: str
    meetings: tuple[Meeting, ...]


def _name(group: Sequence[Meeting], attribute: str, ident: int) -> str:
    """The first name given for ``ident`` among ``group``'s meetings, or ``#ident``."""
    return next((getattr(m, attribute) for m in group if getattr(m, attribute)), f"#{ident}")


def _need(group: Sequence[Meeting]) -> str:
    title = _name(group, "need_title", group[0].need_id)
    return "该需求" if title.startswith("#") else f"需求“{title}”"


def _slot_problem(plan: Plan, meeting: Meeting) -> Violation | None:
    if plan.slot_at(meeting.start) is not None:
        return None
    start, end = meeting.start, meeting.start + timedelta(minutes=plan.slot_minutes)
    clock = plan.clock(start)
    for pause in plan.breaks:
        if pause.start < end and start < pause.end:
            span = f"{pause.name} {plan.clock(pause.start)}–{plan.clock(pause.end)}"
            return Violation("slot_in_break", f"该时段在茶歇时间内（{clock}，{span}）", (meeting,))
    session = next((s for s in plan.sessions if s.start <= start < s.end), None)
    if session is None:
        message = f"{clock} 不在对接会的场次时间内"
    elif end > session.end:
        message = f"{clock} 开始的洽谈超出场次结束时间（{plan.clock(session.end)}）"
    else:
        message = f"{clock} 不是洽谈时段的开始时间（每 {plan.slot_minutes} 分钟一个时段）"
    return Violation("slot_unknown", message, (meeting,))


def _busy_message(plan: Plan, org: int, group: Sequence[Meeting]) -> str:
    as_firm = [m for m in group if m.firm_id == org]
    as_publisher = [m for m in group if m.publisher_id == org]
    if as_firm:
        name = _name(as_firm, "firm_name", org)
    else:
        name = _name(as_publisher, "publisher_name", org)
    role = "企业" if not as_publisher else "发布单位" if not as_firm else "单位"
    return f"{role}“{name}”在 {plan.clock(group[0].start)} 已有洽谈"


def validate(plan: Plan, meetings: Iterable[Meeting]) -> list[Violation]:
    """Every rule that ``meetings`` break under ``plan``; an empty list means the schedule is valid."""
    meetings = list(meetings)
    found: list[Violation] = []
    at_table: dict[tuple[datetime, int], list[Meeting]] = defaultdict(list)
    busy: dict[tuple[int, datetime], list[Meeting]] = defaultdict(list)
    per_firm: dict[int, list[Meeting]] = defaultdict(list)
    per_need: dict[int, list[Meeting]] = defaultdict(list)
    per_pair: dict[tuple[int, int], list[Meeting]] = defaultdict(list)
    for meeting in meetings:
        problem = _slot_problem(plan, meeting)
        if problem:
            found.append(problem)
        if not 1 <= meeting.table <= plan.tables:
            found.append(
                Violation(
                    "table_unknown", f"第 {meeting.table} 号桌不存在（共 {plan.tables} 张桌）", (meeting,)
                )
            )
        else:
            at_table[(meeting.start, meeting.table)].append(meeting)
        for org in {meeting.publisher_id, meeting.firm_id}:
            busy[(org, meeting.start)].append(meeting)
        per_firm[meeting.firm_id].append(meeting)
        per_need[meeting.need_id].append(meeting)
        per_pair[meeting.pair].append(meeting)
    for (start, table), group in at_table.items():
        if len(group) > 1:
            found.append(
                Violation("table_taken", f"第 {table} 号桌在 {plan.clock(start)} 已有洽谈", tuple(group))
            )
    for (org, _start), group in busy.items():
        if len(group) > 1:
            found.append(Violation("busy", _busy_message(plan, org, group), tuple(group)))
    if plan.max_per_firm is not None:
        for firm, group in per_firm.items():
            if len(group) > plan.max_per_firm:
                name = _name(group, "firm_name", firm)
                message = f"企业“{name}”的洽谈已达上限（{plan.max_per_firm} 场）"
                found.append(Violation("firm_cap", message, tuple(group)))
    if plan.max_per_need is not None:
        for group in per_need.values():
            if len(group) > plan.max_per_need:
                message = f"{_need(group)}的洽谈已达上限（{plan.max_per_need} 场）"
                found.append(Violation("need_cap", message, tuple(group)))
    for group in per_pair.values():
        if len(group) > 1:
            message = f"企业“{_name(group, 'firm_name', group[0].firm_id)}”与{_need(group)}已安排洽谈"
            found.append(Violation("pair_repeated", message, tuple(group)))
    return found


# Manual edits ---------------------------------------------------------------------------------


def _index_of(meetings: Sequence[Meeting], meeting_id: int) -> int:
    for position, meeting in enumerate(meetings):
        if meeting.id == meeting_id:
            return position
    raise KeyError(meeting_id)


def _checked(
    plan: Plan, result: list[Meeting], changed: Sequence[Meeting], codes: frozenset[str] | None
) -> list[Meeting]:
    """``result`` unless a rule (among ``codes``; all when None) breaks at a changed meeting.

    Only violations that involve a changed meeting refuse the change, so an organizer can repair an
    invalid schedule (after moving a break, say) one meeting at a time.
    """
    refused = [
        v
        for v in validate(plan, result)
        if (codes is None or v.code in codes) and any(m is c for m in v.meetings for c in changed)
    ]
    if refused:
        raise ScheduleConflict(refused)
    return result


def add(plan: Plan, meetings: Sequence[Meeting], meeting: Meeting) -> list[Meeting]:
    """``meetings`` with ``meeting`` added; raises :class:`ScheduleConflict` if it breaks any rule."""
    return _checked(plan, [*meetings, meeting], [meeting], None)


def move(
    plan: Plan, meetings: Sequence[Meeting], meeting_id: int, new_slot: Slot | datetime, new_table: int
) -> list[Meeting]:
    """``meetings`` with meeting ``meeting_id`` moved to ``new_slot`` (a slot or its start) and ``new_table``.

    Raises :class:`ScheduleConflict` if the meeting would break a rule at its new place, and
    ``KeyError`` for an unknown id. A move changes no counts, so caps are not checked.
    """
    start = new_slot.start if isinstance(new_slot, Slot) else new_slot
    result = list(meetings)
    position = _index_of(result, meeting_id)
    result[position] = dataclasses.replace(result[position], start=start, table=new_table)
    return _checked(plan, result, [result[position]], PLACE_CODES)


def swap(plan: Plan, meetings: Sequence[Meeting], first_id: int, second_id: int) -> list[Meeting]:
    """``meetings`` with two meetings exchanging their slots and tables; refused like :func:`move`."""
    result = list(meetings)
    first, second = _index_of(result, first_id), _index_of(result, second_id)
    a, b = result[first], result[second]
    result[first] = dataclasses.replace(a, start=b.start, table=b.table)
    result[second] = dataclasses.replace(b, start=a.start, table=a.table)
    return _checked(plan, result, [result[first], result[second]], PLACE_CODES)


def remove(meetings: Sequence[Meeting], meeting_id: int) -> list[Meeting]:
    """``meetings`` without meeting ``meeting_id`` (removing never breaks a rule); ``KeyError`` if unknown."""
    result = list(meetings)
    del result[_index_of(result, meeting_id)]
    return result


# Scheduling -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Schedule:
    """The scheduler's answer.

    ``status`` is ``"optimal"`` (HiGHS proved it), ``"time_limit"`` (best solution found in the time
    limit; ``gap`` says how far from optimal it may be) or ``"greedy"`` (the solver found nothing in
    time, or was worse than the greedy placement, which is returned instead). ``objective`` and
    ``dual_bound`` are in the units of :class:`Priorities`.
    """

    meetings: tuple[Meeting, ...]
    unplaced: tuple[Candidate, ...]
    status: str
    objective: float
    dual_bound: float | None
    gap: float | None
    seconds: float
    requested_placed: int
    requested_total: int

    @property
    def optimal(self) -> bool:
        return self.status == "optimal"


@dataclass(frozen=True)
class Priorities:
    """The objective that makes "requested, then count, then rank" lexicographic in one sum.

    A meeting's value is ``requested_bonus·[requested] + meeting_value + weight``, with weights in
    [0, 1] and at most ``most`` meetings to place. ``meeting_value = most + 1`` exceeds the largest
    difference in total weight (≤ ``most``), so one more meeting beats any gain in rank;
    ``requested_bonus = (most + 1)·meeting_value`` exceeds the largest difference in
    ``count·meeting_value + weight``, so one more requested meeting beats any number of others.
    """

    most: int

    @property
    def meeting_value(self) -> float:
        return float(self.most + 1)

    @property
    def requested_bonus(self) -> float:
        return float((self.most + 1) * (self.most + 1))

    def value(self, candidate: Candidate) -> float:
        return self.requested_bonus * candidate.requested + self.meeting_value + candidate.weight


class _Problem:
    """What is left to place once the fixed meetings are in: free candidates and remaining room."""

    def __init__(self, plan: Plan, candidates: Sequence[Candidate], fixed: Sequence[Meeting]) -> None:
        self.plan = plan
        self.fixed = [m if m.fixed else dataclasses.replace(m, fixed=True) for m in fixed]
        problems = validate(plan, self.fixed)
        if problems:
            raise ScheduleConflict(problems)
        seen: dict[tuple[int, int], Candidate] = {}
        publisher_of: dict[int, int] = {}
        for c in candidates:
            if not 0.0 <= c.weight <= 1.0:
                raise ValueError(f"candidate weight {c.weight} outside [0, 1]")
            if c.publisher_id == c.firm_id:
                raise ValueError(f"organization {c.firm_id} cannot meet about its own need {c.need_id}")
            if publisher_of.setdefault(c.need_id, c.publisher_id) != c.publisher_id:
                raise ValueError(f"need {c.need_id} has two publishers")
            if c.pair in seen:
                raise ValueError(f"candidate need {c.need_id} / firm {c.firm_id} given twice")
            seen[c.pair] = c
        self.candidates = list(candidates)
        pinned = {m.pair for m in self.fixed}
        self.free = [c for c in self.candidates if c.pair not in pinned]
        self.room = [plan.tables] * len(plan.slots)
        self.busy: set[tuple[int, int]] = set()  # (organization, slot index)
        self.firm_left: dict[int, float] = defaultdict(lambda: _cap(plan.max_per_firm))
        self.need_left: dict[int, float] = defaultdict(lambda: _cap(plan.max_per_need))
        for m in self.fixed:
            slot = plan.slot_at(m.start)
            assert slot is not None  # validated above
            self.room[slot.index] -= 1
            self.busy.update({(m.publisher_id, slot.index), (m.firm_id, slot.index)})
            self.firm_left[m.firm_id] -= 1
            self.need_left[m.need_id] -= 1
        self.priorities = Priorities(most=min(len(self.free), sum(self.room)))
        self.pinned_value = sum(self.priorities.value(c) for c in self.candidates if c.pair in pinned)

    def open_slots(self, c: Candidate) -> list[int]:
        """Slots where neither party of ``c`` is pinned and a table is left."""
        return [
            s
            for s in range(len(self.plan.slots))
            if self.room[s] > 0 and (c.publisher_id, s) not in self.busy and (c.firm_id, s) not in self.busy
        ]

    def result(self, chosen: Sequence[tuple[Candidate, int]], status: str, seconds: float) -> Schedule:
        """The schedule of the fixed meetings plus ``chosen`` (candidate, slot index); no bound yet."""
        slots = self.plan.slots
        meetings = _assign_tables(self.plan, self.fixed, [(c, slots[s]) for c, s in chosen])
        placed = {m.pair for m in meetings}
        value = sum(self.priorities.value(c) for c in self.candidates if c.pair in placed)
        return Schedule(
            meetings=tuple(meetings),
            unplaced=tuple(c for c in self.candidates if c.pair not in placed),
            status=status,
            objective=value,
            dual_bound=None,
            gap=None,
            seconds=seconds,
            requested_placed=sum(1 for c in self.candidates if c.requested and c.pair in placed),
            requested_total=sum(1 for c in self.candidates if c.requested),
        )


def _cap(cap: int | None) -> float:
    return float("inf") if cap is None else float(cap)


def _assign_tables(
    plan: Plan, fixed: Sequence[Meeting], placed: Sequence[tuple[Candidate, Slot]]
) -> list[Meeting]:
    """Give each placed meeting a free table of its slot; fixed meetings keep theirs.

    A publisher keeps the table it had in the previous slot when that table is free, so that firms,
    not publishers, walk between meetings. Any injective choice is valid: tables only differ by
    number, and a slot never holds more meetings than tables (the solver's slot constraint).
    """
    by_slot: dict[int, list[Candidate]] = defaultdict(list)
    for candidate, slot in placed:
        by_slot[slot.index].append(candidate)
    taken: dict[int, set[int]] = defaultdict(set)
    for m in fixed:
        taken[plan.slot_at(m.start).index].add(m.table)  # type: ignore[union-attr]
    meetings = list(fixed)
    last_table: dict[int, int] = {}
    for slot in plan.slots:
        used = taken[slot.index]
        waiting = sorted(by_slot.get(slot.index, []), key=lambda c: (c.publisher_id, c.need_id, c.firm_id))
        here = [m for m in fixed if m.start == slot.start]
        rest = []
        for c in waiting:
            table = last_table.get(c.publisher_id)
            if table is not None and table not in used:
                used.add(table)
                here.append(Meeting.of(c, slot.start, table))
            else:
                rest.append(c)
        free = (t for t in range(1, plan.tables + 1) if t not in used)
        for c in rest:
            table = next(free)
            used.add(table)
            here.append(Meeting.of(c, slot.start, table))
        last_table.update((m.publisher_id, m.table) for m in here)
        meetings.extend(m for m in here if not m.fixed)
    meetings.sort(key=lambda m: (m.start, m.table))
    return meetings


def greedy(plan: Plan, candidates: Sequence[Candidate], fixed: Sequence[Meeting] = ()) -> Schedule:
    """Place candidates one by one, most valuable first, each in its earliest open slot.

    Fast and always valid, but not optimal; :func:`schedule` falls back to it.
    """
    began = time.perf_counter()
    problem = _Problem(plan, candidates, fixed)
    return _greedy(problem, began)


def _greedy(problem: _Problem, began: float) -> Schedule:
    room = list(problem.room)
    busy = set(problem.busy)
    firm_left = defaultdict(lambda: _cap(problem.plan.max_per_firm), problem.firm_left)
    need_left = defaultdict(lambda: _cap(problem.plan.max_per_need), problem.need_left)
    chosen: list[tuple[Candidate, int]] = []
    order = sorted(problem.free, key=lambda c: -problem.priorities.value(c))
    for c in order:
        if firm_left[c.firm_id] < 1 or need_left[c.need_id] < 1:
            continue
        for s in range(len(room)):
            if room[s] > 0 and (c.publisher_id, s) not in busy and (c.firm_id, s) not in busy:
                chosen.append((c, s))
                room[s] -= 1
                busy.update({(c.publisher_id, s), (c.firm_id, s)})
                firm_left[c.firm_id] -= 1
                need_left[c.need_id] -= 1
                break
    return problem.result(chosen, "greedy", time.perf_counter() - began)


def schedule(
    plan: Plan,
    candidates: Sequence[Candidate],
    fixed: Sequence[Meeting] = (),
    *,
    time_limit: float = 10.0,
    mip_rel_gap: float = 1e-9,
) -> Schedule:
    """The best schedule of ``candidates`` around the ``fixed`` meetings (kept as they are).

    Formulation (HiGHS via ``scipy.optimize.milp``): a binary ``x[c, s]`` for every free candidate
    ``c`` and every slot ``s`` where a table is left and neither of its parties is pinned; maximise
    ``Σ value(c)·x[c, s]`` (:class:`Priorities`) subject to

    * ``Σ_s x[c, s] ≤ 1`` for each candidate;
    * ``Σ_c x[c, s] ≤ tables − pinned(s)`` for each slot;
    * ``Σ x[c, s] ≤ 1`` over the candidates in which organization ``o`` takes part (as publisher of
      the need or as the firm), for each ``o`` and ``s``;
    * ``Σ_{c, s} x[c, s] ≤ cap − pinned`` for each firm and each need.

    Tables are given afterwards, slot by slot. That is exact: the objective and every other rule
    ignore which table a meeting has, and tables are interchangeable, so a full assignment
    ``y[c, s, t]`` is feasible iff its projection ``x[c, s] = Σ_t y[c, s, t]`` is feasible here with
    the same value: given ``x``, a slot holds at most ``tables − pinned(s)`` meetings, so they get
    distinct free tables (pigeonhole). The optimum over ``x`` is the optimum over ``y``.

    A fixed meeting that matches a candidate (same need and firm) counts as that candidate placed.
    Fixed meetings that break a rule raise :class:`ScheduleConflict`. On reaching ``time_limit``
    the best solution found is returned with ``status="time_limit"`` and its gap; if HiGHS has none
    (or a worse one than :func:`greedy`), the greedy placement is returned with ``status="greedy"``.
    """
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import coo_array

    began = time.perf_counter()
    problem = _Problem(plan, candidates, fixed)
    var_candidate: list[int] = []
    var_slot: list[int] = []
    for i, c in enumerate(problem.free):
        for s in problem.open_slots(c):
            var_candidate.append(i)
            var_slot.append(s)
    if not var_candidate:
        empty = problem.result([], "optimal", time.perf_counter() - began)
        return dataclasses.replace(empty, dual_bound=empty.objective, gap=0.0)
    cand = np.asarray(var_candidate)
    slot = np.asarray(var_slot)
    n_vars, n_slots = len(cand), len(plan.slots)
    free = problem.free
    value = np.array([problem.priorities.value(c) for c in free])

    rows: list[np.ndarray] = []
    upper: list[np.ndarray] = []
    row_base = 0

    def group(keys: np.ndarray, caps_by_key: np.ndarray) -> None:
        """One ``≤`` row per distinct key of the variables, with the given right-hand sides."""
        nonlocal row_base
        rows.append(keys + row_base)
        upper.append(caps_by_key)
        row_base += len(caps_by_key)

    group(cand, np.ones(len(free)))  # each candidate at most once
    group(slot, np.array(problem.room, dtype=float))  # tables per slot

    # each organization at most once per slot, across roles and needs
    orgs = sorted({c.publisher_id for c in free} | {c.firm_id for c in free})
    org_index = {o: k for k, o in enumerate(orgs)}
    publisher_of = np.array([org_index[c.publisher_id] for c in free])
    firm_of = np.array([org_index[c.firm_id] for c in free])
    org_slots = np.ones(len(orgs) * n_slots)
    rows_pub = publisher_of[cand] * n_slots + slot
    rows_firm = firm_of[cand] * n_slots + slot
    rows.append(np.concatenate([rows_pub, rows_firm]) + row_base)
    upper.append(org_slots)
    row_base += len(org_slots)

    firms = sorted({c.firm_id for c in free})
    firm_index = {f: k for k, f in enumerate(firms)}
    group(
        np.array([firm_index[c.firm_id] for c in free])[cand], np.array([problem.firm_left[f] for f in firms])
    )
    needs = sorted({c.need_id for c in free})
    need_index = {n: k for k, n in enumerate(needs)}
    group(
        np.array([need_index[c.need_id] for c in free])[cand], np.array([problem.need_left[n] for n in needs])
    )

    row_ids = np.concatenate(rows)
    columns = np.tile(np.arange(n_vars), len(row_ids) // n_vars)  # every variable once per family
    matrix = coo_array((np.ones(len(row_ids)), (row_ids, columns)), shape=(row_base, n_vars)).tocsr()
    rhs = np.concatenate(upper)
    rhs = np.where(np.isinf(rhs), n_vars, rhs)  # no cap: any count fits
    result = milp(
        c=-value[cand],
        integrality=np.ones(n_vars),
        bounds=Bounds(0, 1),
        constraints=LinearConstraint(matrix, -np.inf, rhs),
        options={"time_limit": time_limit, "mip_rel_gap": mip_rel_gap},
    )
    seconds = time.perf_counter() - began
    if result.x is None:
        best = _greedy(problem, began)
    else:
        chosen = [(free[cand[k]], int(slot[k])) for k in np.flatnonzero(result.x > 0.5)]
        best = problem.result(chosen, "optimal" if result.status == 0 else "time_limit", seconds)
        if not best.optimal:
            fallback = _greedy(problem, began)
            if fallback.objective > best.objective:
                best = fallback
    if result.mip_dual_bound is None or not math.isfinite(result.mip_dual_bound):
        return best
    # HiGHS bounds the free part; the pinned candidates add a constant to both sides.
    bound = -float(result.mip_dual_bound) + problem.pinned_value
    return dataclasses.replace(best, dual_bound=bound, gap=_gap(best.objective, bound))


def _gap(objective: float, bound: float) -> float:
    """Relative MIP gap as HiGHS defines it: (bound − objective) / objective."""
    return max(0.0, bound - objective) / max(abs(objective), 1e-9)

"""The 1:1 meeting scheduler (issue 8 §3): slots, validation messages, manual edits, the solver.

Hand-checked cases first, then hypothesis properties on small random events: the solver's schedule
is valid and keeps the pinned meetings, it is optimal (checked against brute force), and a manual
edit is accepted exactly when the edited schedule is valid.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections import Counter
from datetime import datetime, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from marketplace.scheduling import (
    Break,
    Candidate,
    Meeting,
    Plan,
    PlanError,
    Priorities,
    ScheduleConflict,
    Session,
    add,
    build_slots,
    greedy,
    move,
    rank_weight,
    remove,
    schedule,
    swap,
    validate,
)

pytestmark = pytest.mark.no_app

BEIJING = ZoneInfo("Asia/Shanghai")
PROPERTY = settings(
    max_examples=60,
    deadline=None,  # the first example imports scipy
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def at(hour: int, minute: int = 0, day: int = 8) -> datetime:
    return datetime(2026, 12, day, hour, minute, tzinfo=BEIJING)


def morning(**overrides) -> Plan:
    """09:00–12:00, 20-minute slots, tea break 10:00–10:20, 30 tables: 8 slots."""
    values = dict(
        sessions=(Session(at(9), at(12), "上午"),),
        slot_minutes=20,
        tables=30,
        breaks=(Break(at(10), at(10, 20)),),
    )
    return Plan(**(values | overrides))


def one_slot(tables: int = 1, **caps) -> Plan:
    return Plan((Session(at(9), at(9, 20)),), slot_minutes=20, tables=tables, **caps)


def cand(need: int, publisher: int, firm: int, weight: float = 0.5, requested: bool = False) -> Candidate:
    return Candidate(need, publisher, firm, weight, requested)


def clocks(plan: Plan) -> list[str]:
    return [plan.clock(slot.start) for slot in plan.slots]


def messages(violations) -> list[str]:
    return [v.message for v in violations]


# Slots -----------------------------------------------------------------------------------------


def test_slots_skip_the_break_and_stop_before_the_session_ends():
    assert clocks(morning()) == ["9:00", "9:20", "9:40", "10:20", "10:40", "11:00", "11:20", "11:40"]


def test_slots_resume_at_the_end_of_a_break_off_the_grid():
    plan = morning(breaks=(Break(at(10, 10), at(10, 30)),))
    assert clocks(plan) == ["9:00", "9:20", "9:40", "10:30", "10:50", "11:10", "11:30"]


def test_no_slot_runs_past_the_end_of_its_session():
    slots = build_slots([Session(at(9), at(10, 10))], 20)
    assert [s.end for s in slots] == [at(9, 20), at(9, 40), at(10)]


def test_slots_are_numbered_across_sessions_in_time_order():
    plan = morning(sessions=(Session(at(14), at(15), "下午"), Session(at(9), at(10), "上午")), breaks=())
    assert [(s.index, s.session, plan.clock(s.start)) for s in plan.slots] == [
        (0, 0, "9:00"),
        (1, 0, "9:20"),
        (2, 0, "9:40"),
        (3, 1, "14:00"),
        (4, 1, "14:20"),
        (5, 1, "14:40"),
    ]


def test_clock_shows_beijing_time_for_utc_input():
    plan = morning()
    assert plan.clock(at(9, 20).astimezone(ZoneInfo("UTC"))) == "9:20"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"sessions": (Session(at(9), at(11)), Session(at(10), at(12)))}, "场次时间不能重叠"),
        (
            {"sessions": (Session(datetime(2026, 12, 8, 9), datetime(2026, 12, 8, 12)),)},
            "场次和茶歇的时间必须带时区",
        ),
        ({"sessions": (Session(at(12), at(9)),)}, "结束时间必须晚于开始时间"),
        ({"sessions": ()}, "至少需要一个场次"),
        ({"tables": 0}, "至少需要 1 张洽谈桌"),
        ({"slot_minutes": 0}, "每场洽谈至少 1 分钟"),
        ({"max_per_need": 0}, "洽谈场数上限至少为 1"),
    ],
)
def test_unusable_plans_are_refused_in_chinese(overrides, message):
    with pytest.raises(PlanError, match=message):
        morning(**overrides)


def test_rank_weight_runs_from_one_down_to_one_over_size():
    assert [rank_weight(r, 4) for r in (1, 2, 3, 4)] == [1.0, 0.75, 0.5, 0.25]
    with pytest.raises(ValueError):
        rank_weight(5, 4)


# Validation messages ---------------------------------------------------------------------------


def meeting(need=1, publisher=100, firm=200, start=None, table=1, **extra) -> Meeting:
    return Meeting(need, publisher, firm, start or at(9, 20), table, **extra)


def test_a_valid_schedule_has_no_violations():
    plan = morning()
    assert validate(plan, [meeting(), meeting(need=2, publisher=101, firm=201, table=2)]) == []


def test_firm_double_booked():
    plan = morning()
    found = validate(
        plan,
        [
            meeting(firm_name="赣江智能"),
            meeting(need=2, publisher=101, table=2, firm_name="赣江智能"),
        ],
    )
    assert messages(found) == ["企业“赣江智能”在 9:20 已有洽谈"]
    assert found[0].code == "busy" and len(found[0].meetings) == 2


def test_publisher_double_booked_across_its_needs():
    plan = morning()
    found = validate(plan, [meeting(publisher_name="南昌市数据局"), meeting(need=2, firm=201, table=2)])
    assert messages(found) == ["发布单位“南昌市数据局”在 9:20 已有洽谈"]


def test_an_organization_is_one_party_whether_it_publishes_or_answers():
    plan = morning()
    found = validate(plan, [meeting(publisher=100), meeting(need=2, publisher=101, firm=100, table=2)])
    assert messages(found) == ["单位“#100”在 9:20 已有洽谈"]


@pytest.mark.parametrize(
    ("start", "table", "message", "code"),
    [
        (at(9, 20), 31, "第 31 号桌不存在（共 30 张桌）", "table_unknown"),
        (at(9, 20), 0, "第 0 号桌不存在（共 30 张桌）", "table_unknown"),
        (at(10), 1, "该时段在茶歇时间内（10:00，茶歇 10:00–10:20）", "slot_in_break"),
        (at(9, 50), 1, "该时段在茶歇时间内（9:50，茶歇 10:00–10:20）", "slot_in_break"),
        (at(9, 10), 1, "9:10 不是洽谈时段的开始时间（每 20 分钟一个时段）", "slot_unknown"),
        (at(11, 50), 1, "11:50 开始的洽谈超出场次结束时间（12:00）", "slot_unknown"),
        (at(13), 1, "13:00 不在对接会的场次时间内", "slot_unknown"),
    ],
)
def test_misplaced_meeting(start, table, message, code):
    found = validate(morning(), [meeting(start=start, table=table)])
    assert [(v.code, v.message) for v in found] == [(code, message)]


def test_table_taken():
    found = validate(morning(), [meeting(table=5), meeting(need=2, publisher=101, firm=201, table=5)])
    assert messages(found) == ["第 5 号桌在 9:20 已有洽谈"]


def test_need_cap():
    plan = morning(max_per_need=4)
    meetings = [meeting(firm=200 + k, start=plan.slots[k].start) for k in range(5)]
    assert messages(validate(plan, meetings)) == ["该需求的洽谈已达上限（4 场）"]
    titled = [dataclasses.replace(m, need_title="智慧停车") for m in meetings]
    assert messages(validate(plan, titled)) == ["需求“智慧停车”的洽谈已达上限（4 场）"]


def test_firm_cap():
    plan = morning(max_per_firm=2)
    meetings = [
        meeting(need=k, publisher=100 + k, start=plan.slots[k].start, firm_name="洪城科技") for k in range(3)
    ]
    assert messages(validate(plan, meetings)) == ["企业“洪城科技”的洽谈已达上限（2 场）"]


def test_a_need_and_a_firm_meet_once():
    found = validate(morning(), [meeting(), meeting(start=at(9, 40), firm_name="赣江智能")])
    assert messages(found) == ["企业“赣江智能”与该需求已安排洽谈"]


# Manual edits ----------------------------------------------------------------------------------


def day_schedule() -> list[Meeting]:
    return [
        meeting(id=1, firm_name="赣江智能"),
        meeting(id=2, need=2, publisher=101, firm=201, table=2),
        meeting(id=3, need=3, publisher=102, firm=202, start=at(9, 40), table=1),
    ]


def test_move_to_a_free_place():
    moved = move(morning(), day_schedule(), 3, morning().slots[0], 7)
    assert [(m.id, m.start, m.table) for m in moved][2] == (3, at(9), 7)


def test_move_accepts_a_start_time():
    assert move(morning(), day_schedule(), 3, at(11), 1)[2].start == at(11)


@pytest.mark.parametrize(
    ("start", "table", "message"),
    [
        (at(9, 20), 1, "第 1 号桌在 9:20 已有洽谈"),
        (at(9, 20), 31, "第 31 号桌不存在（共 30 张桌）"),
        (at(10), 3, "该时段在茶歇时间内（10:00，茶歇 10:00–10:20）"),
    ],
)
def test_move_refused_with_the_reason(start, table, message):
    with pytest.raises(ScheduleConflict) as refused:
        move(morning(), day_schedule(), 3, start, table)
    assert messages(refused.value.violations) == [message]
    assert str(refused.value) == message


def test_move_refuses_to_double_book_the_firm():
    schedule_ = day_schedule()
    schedule_[2] = dataclasses.replace(schedule_[2], firm_id=200, firm_name="赣江智能")
    with pytest.raises(ScheduleConflict, match="企业“赣江智能”在 9:20 已有洽谈"):
        move(morning(), schedule_, 3, at(9, 20), 9)


def test_moves_repair_a_schedule_one_meeting_at_a_time():
    """After the break moves to 9:20, each stranded meeting can be moved out on its own."""
    plan = morning(breaks=(Break(at(9, 20), at(9, 40)),))
    meetings = day_schedule()
    assert len(validate(plan, meetings)) == 2
    meetings = move(plan, meetings, 1, at(10), 1)
    assert len(validate(plan, meetings)) == 1
    meetings = move(plan, meetings, 2, at(10), 2)
    assert validate(plan, meetings) == []


def test_a_move_is_not_refused_for_a_cap_it_does_not_change():
    plan = morning(max_per_need=1)
    meetings = [meeting(id=1), meeting(id=2, firm=201, start=at(9, 40))]
    assert [v.code for v in validate(plan, meetings)] == ["need_cap"]
    assert move(plan, meetings, 2, at(11), 1)[1].start == at(11)


def test_swap_exchanges_places():
    swapped = swap(morning(), day_schedule(), 1, 3)
    assert [(m.id, m.start, m.table) for m in swapped] == [
        (1, at(9, 40), 1),
        (2, at(9, 20), 2),
        (3, at(9, 20), 1),
    ]


def test_swap_refused_when_it_double_books():
    meetings = day_schedule()
    meetings[2] = dataclasses.replace(meetings[2], firm_id=201, firm_name="洪城科技")
    with pytest.raises(ScheduleConflict, match="企业“洪城科技”在 9:20 已有洽谈"):
        swap(morning(), meetings, 1, 3)


def test_remove_and_unknown_ids():
    assert [m.id for m in remove(day_schedule(), 2)] == [1, 3]
    with pytest.raises(KeyError):
        remove(day_schedule(), 9)
    with pytest.raises(KeyError):
        move(morning(), day_schedule(), 9, at(9), 1)


def test_add_checks_caps():
    plan = morning(max_per_need=2)
    meetings = [meeting(id=1), meeting(id=2, firm=201, start=at(9, 40))]
    with pytest.raises(ScheduleConflict, match="该需求的洽谈已达上限（2 场）"):
        add(plan, meetings, meeting(firm=202, start=at(11)))
    assert len(add(plan, meetings, meeting(need=2, firm=202, start=at(11)))) == 3


# The solver on hand-checked cases --------------------------------------------------------------


def test_a_requested_pair_wins_over_a_better_ranked_one():
    plan = one_slot()
    result = schedule(plan, [cand(1, 100, 200, weight=1.0), cand(2, 101, 201, weight=0.1, requested=True)])
    assert [m.firm_id for m in result.meetings] == [201]
    assert result.optimal and result.requested_placed == result.requested_total == 1


def test_more_meetings_win_over_a_better_rank():
    """X blocks both Y (same publisher) and Z (same firm); Y and Z together are two meetings."""
    x, y, z = cand(1, 100, 200, weight=1.0), cand(1, 100, 201, weight=0.0), cand(2, 101, 200, weight=0.0)
    result = schedule(one_slot(tables=2), [x, y, z])
    assert {(m.need_id, m.firm_id) for m in result.meetings} == {(1, 201), (2, 200)}
    assert [(c.need_id, c.firm_id) for c in result.unplaced] == [(1, 200)]
    # greedy takes X first and is stuck with one meeting: the solver is needed
    assert len(greedy(one_slot(tables=2), [x, y, z]).meetings) == 1


def test_the_better_ranked_firm_wins_a_need_with_one_place_left():
    plan = one_slot(tables=2, max_per_need=1)
    result = schedule(plan, [cand(1, 100, 200, weight=rank_weight(2, 2)), cand(1, 100, 201, weight=1.0)])
    assert [m.firm_id for m in result.meetings] == [201]


def test_a_publisher_with_two_needs_meets_once_per_slot():
    candidates = [cand(1, 100, 200), cand(2, 100, 201)]
    assert len(schedule(one_slot(tables=5), candidates).meetings) == 1
    two_slots = Plan((Session(at(9), at(9, 40)),), slot_minutes=20, tables=5)
    assert sorted(m.start for m in schedule(two_slots, candidates).meetings) == [at(9), at(9, 20)]


def test_an_organization_never_publishes_and_answers_at_once():
    candidates = [cand(1, 100, 300), cand(2, 101, 100)]
    assert len(schedule(one_slot(tables=5), candidates).meetings) == 1


def test_caps_hold():
    candidates = [cand(n, 100 + n, 200) for n in range(4)] + [cand(9, 109, 200 + k) for k in range(1, 5)]
    result = schedule(morning(max_per_firm=2, max_per_need=3), candidates)
    per = Counter(m.firm_id for m in result.meetings), Counter(m.need_id for m in result.meetings)
    assert per[0][200] == 2 and per[1][9] == 3 and len(result.meetings) == 5


def test_fixed_meetings_are_kept_and_count():
    plan = one_slot(tables=1)
    pinned = Meeting.of(cand(1, 100, 200), at(9), 1)
    result = schedule(
        plan, [cand(1, 100, 200), cand(2, 101, 201, weight=1.0, requested=True)], fixed=[pinned]
    )
    assert result.meetings == (dataclasses.replace(pinned, fixed=True),)
    assert result.requested_placed == 0 and [c.firm_id for c in result.unplaced] == [201]
    assert result.objective == pytest.approx(result.dual_bound)


def test_fixed_meetings_that_break_a_rule_are_refused():
    pinned = [Meeting.of(cand(1, 100, 200), at(9), 1), Meeting.of(cand(2, 101, 200), at(9), 2)]
    with pytest.raises(ScheduleConflict, match="在 9:00 已有洽谈"):
        schedule(one_slot(tables=2), [], fixed=pinned)


def test_publishers_keep_their_table_while_firms_walk():
    plan = Plan((Session(at(9), at(10)),), slot_minutes=20, tables=3)
    candidates = [cand(1, 100, 200 + k, requested=True) for k in range(3)] + [
        cand(2, 101, 210, requested=True)
    ]
    tables = {m.table for m in schedule(plan, candidates).meetings if m.publisher_id == 100}
    assert len(tables) == 1


@pytest.mark.parametrize(
    ("candidates", "message"),
    [
        ([cand(1, 100, 200, weight=1.5)], "outside"),
        ([cand(1, 100, 100)], "own need"),
        ([cand(1, 100, 200), cand(1, 101, 201)], "two publishers"),
        ([cand(1, 100, 200), cand(1, 100, 200)], "twice"),
    ],
)
def test_inconsistent_candidates_are_refused(candidates, message):
    with pytest.raises(ValueError, match=message):
        schedule(one_slot(), candidates)


def test_priorities_are_lexicographic():
    most = 10
    p = Priorities(most)
    requested = Candidate(1, 1, 2, 0.0, True)
    best_others = most * (p.meeting_value + 1.0)  # every other meeting, each at full weight
    assert p.value(requested) + (most - 1) * p.meeting_value > best_others
    assert p.meeting_value > most * 1.0  # one meeting beats any difference in weight


def test_time_limit_without_a_solution_falls_back_to_greedy(monkeypatch):
    import scipy.optimize

    def out_of_time(*args, **kwargs):
        return SimpleNamespace(x=None, status=1, mip_dual_bound=None, mip_gap=None)

    monkeypatch.setattr(scipy.optimize, "milp", out_of_time)
    plan = morning()
    result = schedule(plan, [cand(1, 100, 200), cand(2, 101, 201)], time_limit=0.01)
    assert result.status == "greedy" and not result.optimal
    assert len(result.meetings) == 2 and validate(plan, result.meetings) == []


def test_time_limit_keeps_the_better_of_solver_and_greedy(monkeypatch):
    import numpy as np
    import scipy.optimize

    def poor_incumbent(c, **kwargs):
        return SimpleNamespace(x=np.zeros(len(c)), status=1, mip_dual_bound=-1e9, mip_gap=1.0)

    monkeypatch.setattr(scipy.optimize, "milp", poor_incumbent)
    result = schedule(morning(), [cand(1, 100, 200)])
    assert result.status == "greedy" and len(result.meetings) == 1
    assert result.dual_bound == 1e9 and result.gap > 0


def test_nothing_to_place():
    result = schedule(morning(), [])
    assert result.meetings == () and result.optimal and result.gap == 0.0


# Properties on random small events -------------------------------------------------------------


@st.composite
def events(draw, max_candidates: int = 8):
    """A plan of 1–2 sessions (maybe with a break), organizations 1–6 in both roles, and pins."""
    slot_minutes = draw(st.sampled_from([15, 20, 30]))
    sessions, breaks = [], []
    day_start = at(9)
    for _ in range(draw(st.integers(1, 2))):
        length = slot_minutes * draw(st.integers(1, 3)) + draw(st.sampled_from([0, 5]))
        if draw(st.booleans()):
            pause = day_start + timedelta(minutes=draw(st.sampled_from([0, 10, 20, 30])))
            breaks.append(Break(pause, pause + timedelta(minutes=draw(st.sampled_from([10, 20])))))
            length += 20
        sessions.append(Session(day_start, day_start + timedelta(minutes=length)))
        day_start += timedelta(minutes=length + draw(st.sampled_from([0, 60])))
    caps = st.one_of(st.none(), st.integers(1, 3))
    plan = Plan(
        tuple(sessions),
        slot_minutes,
        tables=draw(st.integers(1, 3)),
        breaks=tuple(breaks),
        max_per_firm=draw(caps),
        max_per_need=draw(caps),
    )
    needs = {n: draw(st.integers(1, 6)) for n in range(1, draw(st.integers(1, 4)) + 1)}
    pairs = [(n, f) for n in needs for f in range(1, 7) if f != needs[n]]
    chosen = draw(st.lists(st.sampled_from(pairs), unique=True, max_size=max_candidates))
    candidates = [
        Candidate(
            n,
            needs[n],
            f,
            weight=draw(st.sampled_from([0.0, 0.25, 0.5, 1.0])),
            requested=draw(st.booleans()),
            firm_name=f"企业{f}",
        )
        for n, f in chosen
    ]
    fixed: list[Meeting] = []
    if plan.slots and candidates:
        for _ in range(draw(st.integers(0, 2))):
            c = draw(st.sampled_from(candidates))
            pin = Meeting.of(
                c, draw(st.sampled_from(plan.slots)).start, draw(st.integers(1, plan.tables)), fixed=True
            )
            try:
                fixed = add(plan, fixed, pin)
            except ScheduleConflict:
                pass
    return plan, candidates, fixed


def slot_feasible(plan: Plan, fixed: list[Meeting], placement: dict[Candidate, int]) -> bool:
    """Independent check of a slot assignment (tables follow by the pigeonhole argument)."""
    per_slot: dict[int, list[tuple[int, int]]] = {}
    for m in fixed:
        per_slot.setdefault(plan.slot_at(m.start).index, []).append((m.publisher_id, m.firm_id))
    for c, s in placement.items():
        per_slot.setdefault(s, []).append((c.publisher_id, c.firm_id))
    for parties in per_slot.values():
        people = [o for pair in parties for o in pair]
        if len(parties) > plan.tables or len(people) != len(set(people)):
            return False
    firms = Counter([m.firm_id for m in fixed] + [c.firm_id for c in placement])
    needs = Counter([m.need_id for m in fixed] + [c.need_id for c in placement])
    return (plan.max_per_firm is None or max(firms.values(), default=0) <= plan.max_per_firm) and (
        plan.max_per_need is None or max(needs.values(), default=0) <= plan.max_per_need
    )


def score(candidates) -> tuple[int, int, float]:
    return (sum(c.requested for c in candidates), len(candidates), sum(c.weight for c in candidates))


def placed_candidates(result, candidates) -> list[Candidate]:
    pairs = {m.pair for m in result.meetings}
    return [c for c in candidates if c.pair in pairs]


@PROPERTY
@given(events())
def test_schedule_is_valid_and_keeps_the_pinned_meetings(event):
    plan, candidates, fixed = event
    result = schedule(plan, candidates, fixed)
    assert validate(plan, result.meetings) == []
    assert set(fixed) <= set(result.meetings)
    known = {c.pair for c in candidates} | {m.pair for m in fixed}
    assert all(m.pair in known for m in result.meetings)
    for m in result.meetings:  # the rules, spelled out once more
        slot = plan.slot_at(m.start)
        assert slot is not None and 1 <= m.table <= plan.tables
        assert all(not (b.start < slot.end and slot.start < b.end) for b in plan.breaks)
    assert len(result.meetings) + len(result.unplaced) == len(candidates) + sum(
        1 for m in fixed if m.pair not in {c.pair for c in candidates}
    )


@PROPERTY
@given(events(max_candidates=6))
def test_schedule_is_optimal_against_brute_force(event):
    plan, candidates, fixed = event
    pinned = {m.pair for m in fixed}
    free = [c for c in candidates if c.pair not in pinned]
    kept = [c for c in candidates if c.pair in pinned]
    best = score(kept)
    for choice in itertools.product([None, *range(len(plan.slots))], repeat=len(free)):
        placement = {c: s for c, s in zip(free, choice, strict=True) if s is not None}
        if slot_feasible(plan, fixed, placement):
            best = max(best, score(kept + list(placement)))
    result = schedule(plan, candidates, fixed)
    got = score(placed_candidates(result, candidates))
    assert got[:2] == best[:2] and got[2] == pytest.approx(best[2])
    assert result.optimal
    assert score(placed_candidates(greedy(plan, candidates, fixed), candidates)) <= got


def with_ids(meetings) -> list[Meeting]:
    return [dataclasses.replace(m, id=k) for k, m in enumerate(meetings, start=1)]


def targets(plan: Plan):
    """Slot starts, plus times inside breaks, off the grid and outside the sessions."""
    starts = [s.start for s in plan.slots] + [b.start for b in plan.breaks]
    starts += [plan.sessions[0].start + timedelta(minutes=5), plan.sessions[-1].end]
    return st.sampled_from(starts)


@PROPERTY
@given(events(), st.data())
def test_a_move_is_accepted_iff_the_result_is_valid(event, data):
    plan, candidates, fixed = event
    meetings = with_ids(schedule(plan, candidates, fixed).meetings)
    if not meetings:
        return
    chosen = data.draw(st.sampled_from(meetings))
    start, table = data.draw(targets(plan)), data.draw(st.integers(0, plan.tables + 1))
    expected = [
        dataclasses.replace(m, start=start, table=table) if m.id == chosen.id else m for m in meetings
    ]
    problems = validate(plan, expected)
    try:
        moved = move(plan, meetings, chosen.id, start, table)
    except ScheduleConflict as refused:
        assert problems and messages(refused.violations) == messages(problems)
    else:
        assert moved == expected and problems == []


@PROPERTY
@given(events(), st.data())
def test_a_swap_is_accepted_iff_the_result_is_valid(event, data):
    plan, candidates, fixed = event
    meetings = with_ids(schedule(plan, candidates, fixed).meetings)
    if len(meetings) < 2:
        return
    a, b = data.draw(st.lists(st.sampled_from(meetings), min_size=2, max_size=2, unique=True))
    try:
        swapped = swap(plan, meetings, a.id, b.id)
    except ScheduleConflict as refused:
        assert refused.violations
        assert messages(refused.violations) == messages(validate(plan, [_swapped(m, a, b) for m in meetings]))
    else:
        assert validate(plan, swapped) == []
        assert swapped == [_swapped(m, a, b) for m in meetings]


def _swapped(m: Meeting, a: Meeting, b: Meeting) -> Meeting:
    if m.id == a.id:
        return dataclasses.replace(m, start=b.start, table=b.table)
    if m.id == b.id:
        return dataclasses.replace(m, start=a.start, table=a.table)
    return m


@PROPERTY
@given(events(), st.data())
def test_an_addition_is_accepted_iff_the_result_is_valid(event, data):
    plan, candidates, fixed = event
    meetings = list(schedule(plan, candidates, fixed).meetings)
    if not candidates:
        return
    c = data.draw(st.sampled_from(candidates))
    new = Meeting.of(c, data.draw(targets(plan)), data.draw(st.integers(0, plan.tables + 1)))
    problems = validate(plan, [*meetings, new])
    try:
        added = add(plan, meetings, new)
    except ScheduleConflict as refused:
        assert problems and messages(refused.violations) == messages(problems)
    else:
        assert problems == [] and added == [*meetings, new]

"""1:1 对接洽谈: the plan and its checks, 自动排程 from confirmed invitations, manual edits refused
with the scheduler's messages (and nothing saved), held → a ``met`` decision, the agendas and the
permission matrix, malformed input never a 500."""

from __future__ import annotations

from datetime import date, datetime, time

import pytest
from sqlalchemy import func, select

from marketplace.models import (
    AuditEvent,
    EntryStatus,
    Meeting,
    MeetingPlan,
    OrgKind,
    ShortlistDecision,
)
from marketplace.services import events as events_service
from marketplace.services import meetings as service
from marketplace.services import shortlists
from marketplace.services.errors import InvalidTransition, PermissionDenied, ValidationFailed
from tests.marketplace.test_events import Clock, event_data

DAY = date(2026, 12, 16)
ROLES = ["anonymous", "firm_user", "other_firm_user", "publisher_user", "organizer", "admin"]


def plan_data(**overrides) -> dict:
    """14:00–15:40 with a 茶歇 15:00–15:20: slots 14:00, 14:20, 14:40 and 15:20; two tables."""
    data = {
        "sessions": [{"name": "下午场", "day": DAY, "start": time(14, 0), "end": time(15, 40)}],
        "breaks": [{"name": "茶歇", "day": DAY, "start": time(15, 0), "end": time(15, 20)}],
        "slot_minutes": 20, "tables": 2, "max_per_firm": 3, "max_per_need": 4,
    }
    data.update(overrides)
    return data


def plan_form(**overrides) -> dict:
    """The same plan as the HTML form posts it."""
    data = {
        "sessions-0-name": "下午场", "sessions-0-day": "2026-12-16", "sessions-0-start": "14:00",
        "sessions-0-end": "15:40", "breaks-0-name": "茶歇", "breaks-0-day": "2026-12-16",
        "breaks-0-start": "15:00", "breaks-0-end": "15:20", "slot_minutes": "20", "tables": "2",
        "max_per_firm": "3", "max_per_need": "4",
    }
    data.update(overrides)
    return data


def slot(clock: str) -> str:
    """A slot's form value (naive-UTC ISO) from a Beijing time on the event day."""
    return service.slot_key(events_service.local_datetime_to_utc(DAY, time.fromisoformat(clock)))


def utc(clock: str) -> datetime:
    return events_service.local_datetime_to_utc(DAY, time.fromisoformat(clock))


class World:
    pass


@pytest.fixture
def clock(monkeypatch) -> Clock:
    """Frozen at 09:30, not the 10:00 other modules use: the matching service decides whether
    its index is fresh by (id, updated_at), and SQLite reuses ids once the tables are emptied, so
    identical timestamps would let a later module query this module's index."""
    c = Clock(monkeypatch)
    c.set("2026-12-01 09:30:00")
    return c


def _entry(w, shortlist, organization):
    entry = next((e for e in shortlist.entries if e.organization_id == organization.id), None)
    return entry or shortlists.add_firm(w.organizer, shortlist, organization.name)


@pytest.fixture
def world(make, clock):
    """A 供需对接会 with two needs (two publishers) and three firms.

    Need A (南昌市交通运输局): 云眸 confirmed (rank 1), 泊易通 confirmed and requested (rank 2),
    赣州数智 only invited. Need B (鹰潭市公安局): 云眸 confirmed, 赣州数智 declined.
    """
    w = World()
    w.publisher = make.org(kind=OrgKind.GOVERNMENT, name="南昌市交通运输局")
    w.publisher_b = make.org(kind=OrgKind.GOVERNMENT, name="鹰潭市公安局")
    w.firm = make.org(name="江西云眸智能科技有限公司", contact_name="陈志远")
    w.second = make.org(name="南昌泊易通智能科技有限公司")
    w.other_firm = make.org(name="赣州数智物联有限公司")
    w.publisher_user, w.publisher_b_user = make.user(w.publisher), make.user(w.publisher_b)
    w.firm_user, w.second_user = make.user(w.firm), make.user(w.second)
    w.other_firm_user = make.user(w.other_firm)
    w.organizer, w.admin = make.organizer(), make.admin()
    w.need = make.opportunity(w.publisher, status=EntryStatus.PUBLISHED, deadline=date(2026, 12, 31),
                              title="中心城区智慧停车诱导系统建设")
    w.need_b = make.opportunity(w.publisher_b, status=EntryStatus.PUBLISHED, deadline=date(2026, 12, 31),
                                title="重点区域视频监控智能解析与人群聚集预警")
    w.product = make.product(w.firm, status=EntryStatus.PUBLISHED, name="高位视频智慧泊位管理系统")
    make.product(w.second, status=EntryStatus.PUBLISHED, name="城市级停车诱导与错峰共享平台")
    make.product(w.other_firm, status=EntryStatus.PUBLISHED, name="NB-IoT地磁车位检测器")
    w.event = events_service.create_event(w.organizer, event_data(kind="matchmaking", capacity=20,
                                                                    title="2026年供需对接会（南昌）"))
    events_service.add_need(w.organizer, w.event, w.need.id)
    events_service.add_need(w.organizer, w.event, w.need_b.id)
    events_service.transition_event(w.organizer, w.event, "open")

    w.list_a = shortlists.open_shortlist(w.organizer, w.event, w.need.id)
    w.a_firm, w.a_second, w.a_other = (_entry(w, w.list_a, o) for o in (w.firm, w.second, w.other_firm))
    for e in list(w.list_a.entries):
        if e not in (w.a_firm, w.a_second, w.a_other):
            shortlists.remove(w.organizer, e)
    shortlists.move(w.organizer, w.a_firm, 1)
    shortlists.move(w.organizer, w.a_second, 2)
    w.list_b = shortlists.open_shortlist(w.organizer, w.event, w.need_b.id)
    w.b_firm, w.b_other = (_entry(w, w.list_b, o) for o in (w.firm, w.other_firm))
    shortlists.invite(w.organizer, w.list_a, [w.a_firm.id, w.a_second.id, w.a_other.id])
    shortlists.invite(w.organizer, w.list_b, [w.b_firm.id, w.b_other.id])
    shortlists.answer(w.firm_user, w.a_firm, "confirm")
    shortlists.answer(w.second_user, w.a_second, "confirm")
    shortlists.answer(w.firm_user, w.b_firm, "confirm")
    shortlists.answer(w.other_firm_user, w.b_other, "decline", "schedule")
    shortlists.set_requested(w.publisher_user, w.a_second, True)
    return w


@pytest.fixture
def planned(world):
    service.save_plan(world.organizer, world.event, plan_data())
    return world


@pytest.fixture
def scheduled(planned):
    planned.result = service.auto_schedule(planned.organizer, planned.event)
    planned.meetings = service.meetings_of(planned.event)
    return planned


def pairs(event) -> set[tuple[int, int]]:
    return {(m.opportunity_id, m.organization_id) for m in service.meetings_of(event)}


def meeting_of(w, entry) -> Meeting:
    return next(m for m in service.meetings_of(w.event) if m.shortlist_entry_id == entry.id)


def _login(auth, world, role):
    if role != "anonymous":
        auth.login(getattr(world, role))


# ---------------------------------------------------------------- the plan


def test_a_plan_is_stored_in_utc_with_its_breaks_inside_sessions(planned, db):
    row = db.session.scalars(select(MeetingPlan)).one()
    assert row.sessions == [{
        "name": "下午场", "start": "2026-12-16T06:00:00", "end": "2026-12-16T07:40:00",
        "breaks": [{"name": "茶歇", "start": "2026-12-16T07:00:00", "end": "2026-12-16T07:20:00"}],
    }]
    plan = service.to_plan(row)
    assert [plan.clock(s.start) for s in plan.slots] == ["14:00", "14:20", "14:40", "15:20"]
    assert service.form_values(planned.event)["breaks"][0]["start"] == time(15, 0)


@pytest.mark.parametrize(
    ("overrides", "key", "message"),
    [
        ({"sessions": []}, "sessions", "请至少填写一个洽谈场次"),
        ({"sessions": [{"day": DAY, "start": time(15, 0), "end": time(14, 0)}]}, "sessions-0-end",
         "结束时间应晚于开始时间"),
        ({"sessions": [{"day": None, "start": time(14, 0), "end": time(15, 0)}]}, "sessions-0-day",
         "请填写场次日期"),
        ({"sessions": [{"day": DAY, "start": time(9, 0), "end": time(11, 0)},
                       {"day": DAY, "start": time(10, 0), "end": time(12, 0)}], "breaks": []},
         "sessions", "场次时间不能重叠"),
        ({"breaks": [{"day": DAY, "start": time(18, 0), "end": time(18, 20)}]}, "breaks",
         "不在任何洽谈场次内"),
        ({"slot_minutes": 240}, "slot_minutes", "没有可用的洽谈时段"),
        ({"slot_minutes": 1}, "slot_minutes", "每场洽谈时长（分钟）应为5–240"),
        ({"tables": 0}, "tables", "洽谈桌数应为1–200"),
        ({"tables": None}, "tables", "请填写洽谈桌数"),
        ({"max_per_firm": 0}, "max_per_firm", "每家企业洽谈上限应为1–100"),
        ({"slot_minutes": 5, "breaks": [],
          "sessions": [{"day": d, "start": time(0, 0), "end": time(23, 59)}
                       for d in (DAY, date(2026, 12, 17))]},
         "slot_minutes", "洽谈时段过多"),
    ],
)
def test_plan_rules_have_chinese_messages(world, overrides, key, message):
    with pytest.raises(ValidationFailed) as caught:
        service.save_plan(world.organizer, world.event, plan_data(**overrides))
    assert message in caught.value.errors[key]


def test_caps_are_required(world):
    with pytest.raises(ValidationFailed) as caught:
        service.save_plan(world.organizer, world.event, plan_data(max_per_firm=None, max_per_need=None))
    assert caught.value.errors["max_per_firm"] == "请填写每家企业洽谈上限"


def test_the_plan_form_keeps_input_and_shows_errors_beside_fields(world, client, auth, db):
    auth.login(world.organizer)
    page = client.get(f"/events/{world.event.id}/meetings/plan").get_data(as_text=True)
    assert 'value="14:00"' in page  # defaults from the event's start
    reply = auth.post(f"/events/{world.event.id}/meetings/plan",
                      plan_form(**{"sessions-0-name": "保留的场次名", "sessions-0-end": "13:00"}))
    html = reply.get_data(as_text=True)
    assert reply.status_code == 400
    assert "结束时间应晚于开始时间" in html and "保留的场次名" in html
    assert db.session.scalar(select(func.count()).select_from(MeetingPlan)) == 0


def test_the_plan_form_shows_the_schedulers_plan_error(world, client, auth):
    auth.login(world.organizer)
    reply = auth.post(f"/events/{world.event.id}/meetings/plan", plan_form(**{
        "sessions-1-day": "2026-12-16", "sessions-1-start": "15:00", "sessions-1-end": "16:00",
    }))
    assert reply.status_code == 400 and "场次时间不能重叠" in reply.get_data(as_text=True)


def test_the_plan_form_saves(world, client, auth, db):
    auth.login(world.organizer)
    reply = auth.post(f"/events/{world.event.id}/meetings/plan", plan_form())
    assert reply.status_code == 302
    assert db.session.scalars(select(MeetingPlan)).one().tables == 2


# ---------------------------------------------------------------- 自动排程


def test_auto_scheduling_places_only_confirmed_invitations(scheduled, db):
    w = scheduled
    assert pairs(w.event) == {(w.need.id, w.firm.id), (w.need.id, w.second.id), (w.need_b.id, w.firm.id)}
    assert all(m.source == "auto" and m.status == "scheduled" for m in w.meetings)
    assert {m.shortlist_entry_id for m in w.meetings} == {w.a_firm.id, w.a_second.id, w.b_firm.id}
    assert w.result.placed == 3 and w.result.requested_placed == w.result.requested_total == 1
    assert w.result.status == "optimal" and "求解状态：最优解" in w.result.summary()
    assert service.conflicts(w.event) == []
    assert db.session.scalar(select(func.count()).select_from(ShortlistDecision)
                             .where(ShortlistDecision.action == "met")) == 0


def test_auto_scheduling_prefers_the_requested_pair_when_room_is_short(world):
    """One slot, one table: 泊易通 (rank 2 but requested) beats 云眸 (rank 1) for need A, and need B
    cannot meet 云眸 in the same slot either way."""
    one_slot = [{"day": DAY, "start": time(14, 0), "end": time(14, 20)}]
    service.save_plan(world.organizer, world.event, plan_data(sessions=one_slot, breaks=[], tables=1))
    result = service.auto_schedule(world.organizer, world.event)
    assert pairs(world.event) == {(world.need.id, world.second.id)}
    assert result.requested_placed == 1 and len(result.unplaced) == 2


def test_auto_scheduling_keeps_manual_meetings_and_replaces_automatic_ones(scheduled):
    w = scheduled
    manual = meeting_of(w, w.a_second)
    service.move(w.organizer, manual, slot("15:20"), 2)
    before = {m.id for m in service.meetings_of(w.event)}
    service.auto_schedule(w.organizer, w.event)
    after = service.meetings_of(w.event)
    kept = next(m for m in after if m.id == manual.id)
    assert (kept.starts_at, kept.table_number, kept.source) == (utc("15:20"), 2, "manual")
    assert len(after) == 3 and {m.id for m in after} & before == {manual.id}


def test_auto_scheduling_needs_a_plan_and_an_organizer(world):
    with pytest.raises(events_service.DomainError, match="请先设置洽谈场次"):
        service.auto_schedule(world.organizer, world.event)
    with pytest.raises(PermissionDenied):
        service.auto_schedule(world.firm_user, world.event)


def test_the_auto_button_reports_the_result(planned, client, auth):
    auth.login(planned.organizer)
    reply = auth.post(f"/events/{planned.event.id}/meetings/auto", follow_redirects=True)
    html = reply.get_data(as_text=True)
    assert "自动排程完成：共 3 场洽谈" in html and "已安排 1 对" in html
    assert planned.firm.name in html and 'id="schedule-grid"' in html


# ---------------------------------------------------------------- manual edits


def test_a_move_to_a_free_place_is_saved_as_manual(scheduled, db):
    m = meeting_of(scheduled, scheduled.a_second)
    service.move(scheduled.organizer, m, slot("15:20"), 2)
    db.session.expire_all()
    assert (m.starts_at, m.table_number, m.source) == (utc("15:20"), 2, "manual")
    assert m.ends_at == utc("15:40")
    assert db.session.scalars(select(AuditEvent).where(AuditEvent.action == "meeting.move")).one()


def _place(m):
    return (m.starts_at, m.table_number, m.source)


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("busy", "在"),
        ("break", "该时段在茶歇时间内"),
        ("off", "不是洽谈时段的开始时间"),
        ("table", "号桌不存在（共 2 张桌）"),
    ],
)
def test_a_refused_move_says_why_and_saves_nothing(scheduled, client, auth, db, target, message):
    w = scheduled
    m = meeting_of(w, w.a_firm)
    other = meeting_of(w, w.b_firm)  # 云眸 again, for need B
    before = _place(m)
    data = {
        "busy": {"slot": service.slot_key(other.starts_at), "table": str(3 - other.table_number)},
        "break": {"slot": slot("15:00"), "table": "1"},
        "off": {"slot": slot("14:10"), "table": "1"},
        "table": {"slot": slot("15:20"), "table": "9"},
    }[target]
    auth.login(w.organizer)
    reply = auth.post(f"/events/meetings/{m.id}/move", data, follow_redirects=True)
    assert reply.status_code == 200 and message in reply.get_data(as_text=True)
    db.session.expire_all()
    assert _place(m) == before


def test_the_busy_message_names_the_firm(scheduled):
    w = scheduled
    m, other = meeting_of(w, w.a_firm), meeting_of(w, w.b_firm)
    free_table = 3 - other.table_number
    with pytest.raises(service.MeetingConflict) as caught:
        service.move(w.organizer, m, service.slot_key(other.starts_at), free_table)
    messages = caught.value.messages
    assert any("企业“江西云眸智能科技有限公司”在" in text and "已有洽谈" in text for text in messages)


@pytest.fixture
def placed(planned):
    """By hand: 云眸–A 14:00 table 1, 泊易通–A 14:20 table 1, 云眸–B 14:20 table 2."""
    w = planned
    w.m_firm_a = service.add(w.organizer, w.event, w.a_firm.id, slot("14:00"), 1)
    w.m_second_a = service.add(w.organizer, w.event, w.a_second.id, slot("14:20"), 1)
    w.m_firm_b = service.add(w.organizer, w.event, w.b_firm.id, slot("14:20"), 2)
    return w


def test_a_swap_exchanges_places(placed, db):
    w = placed
    service.swap(w.organizer, w.m_second_a, w.m_firm_b.id)
    db.session.expire_all()
    assert (w.m_second_a.table_number, w.m_firm_b.table_number) == (2, 1)
    assert w.m_second_a.starts_at == w.m_firm_b.starts_at == utc("14:20")


def test_a_refused_swap_says_why_and_saves_nothing(placed, client, auth, db):
    """云眸–A to 14:20 would put 南昌市交通运输局 in two meetings at 14:20."""
    w = placed
    auth.login(w.organizer)
    reply = auth.post(f"/events/meetings/{w.m_firm_a.id}/swap", {"other": str(w.m_firm_b.id)},
                      follow_redirects=True)
    assert "发布单位“南昌市交通运输局”在 14:20 已有洽谈" in reply.get_data(as_text=True)
    db.session.expire_all()
    assert (w.m_firm_a.starts_at, w.m_firm_a.table_number) == (utc("14:00"), 1)
    assert (w.m_firm_b.starts_at, w.m_firm_b.table_number) == (utc("14:20"), 2)


def test_add_by_hand_is_fixed_and_refusals_keep_the_form(scheduled, client, auth, db):
    w = scheduled
    service.remove(w.organizer, meeting_of(w, w.a_second))
    busy_slot = service.slot_key(meeting_of(w, w.a_firm).starts_at)
    auth.login(w.organizer)
    # 发布单位 A already meets 云眸 in that slot.
    reply = auth.post(f"/events/{w.event.id}/meetings/add",
                      {"entry_id": str(w.a_second.id), "slot": busy_slot, "table": "2", "note": "保留的备注"})
    html = reply.get_data(as_text=True)
    assert reply.status_code == 409 and "发布单位“南昌市交通运输局”在" in html and "保留的备注" in html
    assert len(service.meetings_of(w.event)) == 2
    reply = auth.post(f"/events/{w.event.id}/meetings/add",
                      {"entry_id": str(w.a_second.id), "slot": slot("15:20"), "table": "1",
                       "note": "现场加排"})
    assert reply.status_code == 302
    added = meeting_of(w, w.a_second)
    assert (added.source, added.note, added.starts_at) == ("manual", "现场加排", utc("15:20"))
    assert service.is_fixed(added)


def test_a_declined_firm_cannot_be_added(scheduled):
    with pytest.raises(ValidationFailed, match="婉拒"):
        service.add(scheduled.organizer, scheduled.event, scheduled.b_other.id, slot("15:20"), 1)


def test_remove_deletes_the_meeting(scheduled, client, auth):
    m = meeting_of(scheduled, scheduled.a_second)
    auth.login(scheduled.organizer)
    assert auth.post(f"/events/meetings/{m.id}/remove").status_code == 302
    assert (scheduled.need.id, scheduled.second.id) not in pairs(scheduled.event)


def test_a_plan_change_reports_meetings_that_no_longer_fit(placed, client, auth):
    w = placed
    service.save_plan(w.organizer, w.event, plan_data(breaks=[
        {"name": "开幕致辞", "day": DAY, "start": time(14, 0), "end": time(14, 20)}]))
    assert service.conflicts(w.event) == ["该时段在茶歇时间内（14:00，开幕致辞 14:00–14:20）"]
    auth.login(w.organizer)
    html = client.get(f"/events/{w.event.id}/meetings").get_data(as_text=True)
    assert "当前排程有 1 处冲突" in html and 'id="stray-meetings"' in html
    # repaired one meeting at a time
    service.move(w.organizer, w.m_firm_a, slot("14:40"), 1)
    assert service.conflicts(w.event) == []


def test_edits_stop_once_the_event_is_finished(scheduled):
    w = scheduled
    events_service.transition_event(w.organizer, w.event, "finish")
    with pytest.raises(InvalidTransition, match="已结束"):
        service.move(w.organizer, meeting_of(w, w.a_firm), slot("15:20"), 1)
    with pytest.raises(InvalidTransition):
        service.auto_schedule(w.organizer, w.event)


# ---------------------------------------------------------------- after the event


def test_held_appends_a_met_decision_and_no_show_does_not(scheduled, clock, db):
    w = scheduled
    clock.set("2026-12-16 18:00:00")
    held, missed = meeting_of(w, w.a_second), meeting_of(w, w.a_firm)
    service.mark(w.organizer, held, "hold")
    service.mark(w.organizer, missed, "no_show")
    rows = db.session.scalars(select(ShortlistDecision).where(ShortlistDecision.action == "met")).all()
    assert len(rows) == 1
    decision = rows[0]
    assert (decision.shortlist_id, decision.organization_id) == (w.list_a.id, w.second.id)
    assert decision.actor_id == w.organizer.id and decision.from_rank == decision.to_rank == 2
    assert "1:1 洽谈" in decision.reason and decision.engine["k"] == shortlists.PROPOSAL_K
    assert (held.status, missed.status) == ("held", "no_show")
    service.mark(w.organizer, missed, "hold")  # the firm came late after all
    with pytest.raises(InvalidTransition):
        service.mark(w.organizer, held, "no_show")


def test_a_meeting_cannot_be_marked_before_it_starts(scheduled):
    with pytest.raises(InvalidTransition, match="洽谈尚未开始"):
        service.mark(scheduled.organizer, meeting_of(scheduled, scheduled.a_firm), "hold")


def test_marking_through_the_page(scheduled, clock, client, auth, db):
    clock.set("2026-12-16 18:00:00")
    m = meeting_of(scheduled, scheduled.a_firm)
    auth.login(scheduled.organizer)
    page = client.get(f"/events/{scheduled.event.id}/meetings").get_data(as_text=True)
    assert f"/events/meetings/{m.id}/hold" in page
    assert auth.post(f"/events/meetings/{m.id}/hold").status_code == 302
    db.session.expire_all()
    assert m.status == "held"


# ---------------------------------------------------------------- agendas


def test_the_firm_agenda_lists_needs_publishers_tables_and_times(scheduled, client, auth):
    w = scheduled
    auth.login(w.firm_user)
    mine = client.get("/events/mine").get_data(as_text=True)
    url = f"/events/{w.event.id}/agendas/{w.firm.id}"
    assert "我的洽谈日程" in mine and url in mine and "1:1 洽谈 2 场" in mine
    html = client.get(url).get_data(as_text=True)
    assert w.need.title in html and w.need_b.title in html
    assert "南昌市交通运输局" in html and "鹰潭市公安局" in html
    m = meeting_of(w, w.a_firm)
    assert f"{events_service.timeutil.to_local(m.starts_at):%H:%M}" in html
    assert w.second.name not in html  # another firm's meetings are not on it
    assert "@page" in html and "break-after: page" in html


def test_the_publisher_agenda_lists_firms_and_their_products(scheduled, client, auth):
    w = scheduled
    auth.login(w.publisher_user)
    mine = client.get("/events/mine").get_data(as_text=True)
    assert f"/events/{w.event.id}/agendas/{w.publisher.id}" in mine
    html = client.get(f"/events/{w.event.id}/agendas/{w.publisher.id}").get_data(as_text=True)
    assert w.firm.name in html and w.second.name in html and w.product.name in html
    assert w.need_b.title not in html


def test_organizers_print_every_agenda_and_every_table(scheduled, client, auth):
    w = scheduled
    auth.login(w.organizer)
    html = client.get(f"/events/{w.event.id}/agendas").get_data(as_text=True)
    for organization in (w.firm, w.second, w.publisher, w.publisher_b):
        assert f'id="agenda-{organization.id}"' in html
    assert w.other_firm.name not in html
    tables = client.get(f"/events/{w.event.id}/agendas/tables").get_data(as_text=True)
    assert "第 1 号桌" in tables and w.firm.name in tables


def test_an_organization_without_meetings_gets_an_empty_agenda(scheduled, client, auth):
    auth.login(scheduled.other_firm_user)
    reply = client.get(f"/events/{scheduled.event.id}/agendas/{scheduled.other_firm.id}")
    assert reply.status_code == 200 and "暂无洽谈安排" in reply.get_data(as_text=True)


STAFF_ONLY = {"anonymous": 302, "firm_user": 403, "other_firm_user": 403, "publisher_user": 403,
              "organizer": 200, "admin": 200}
PAGES = {
    "plan": (lambda w: f"/events/{w.event.id}/meetings/plan", STAFF_ONLY),
    "schedule": (lambda w: f"/events/{w.event.id}/meetings", STAFF_ONLY),
    "all agendas": (lambda w: f"/events/{w.event.id}/agendas", STAFF_ONLY),
    "table agendas": (lambda w: f"/events/{w.event.id}/agendas/tables", STAFF_ONLY),
    "firm agenda": (lambda w: f"/events/{w.event.id}/agendas/{w.firm.id}",
                    {"anonymous": 302, "firm_user": 200, "other_firm_user": 404, "publisher_user": 404,
                     "organizer": 200, "admin": 200}),
    "publisher agenda": (lambda w: f"/events/{w.event.id}/agendas/{w.publisher.id}",
                         {"anonymous": 302, "firm_user": 404, "other_firm_user": 404, "publisher_user": 200,
                          "organizer": 200, "admin": 200}),
}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("page", list(PAGES))
def test_page_permission_matrix(scheduled, client, auth, role, page):
    url, expected = PAGES[page]
    _login(auth, scheduled, role)
    assert client.get(url(scheduled)).status_code == expected[role]


def test_agendas_of_a_draft_event_are_hidden_from_participants(world, client, auth):
    draft = events_service.create_event(world.organizer,
                                        event_data(title="筹备中的对接会", kind="matchmaking"))
    auth.login(world.firm_user)
    assert client.get(f"/events/{draft.id}/agendas/{world.firm.id}").status_code == 404


#: (role) → (HTTP status, whether the step happened) for each POST.
ACTIONS = {
    "auto": (lambda w: f"/events/{w.event.id}/meetings/auto", {},
             lambda w: len(service.meetings_of(w.event)) == 3,
             {"anonymous": (302, False), "firm_user": (403, False), "other_firm_user": (403, False),
              "publisher_user": (403, False), "organizer": (302, True), "admin": (302, True)}),
    "move": (lambda w: f"/events/meetings/{w.target.id}/move", {"slot": slot("15:20"), "table": "2"},
             lambda w: w.target.starts_at == utc("15:20"),
             {"anonymous": (302, False), "firm_user": (403, False), "other_firm_user": (403, False),
              "publisher_user": (403, False), "organizer": (302, True), "admin": (302, True)}),
    "remove": (lambda w: f"/events/meetings/{w.target.id}/remove", {},
               lambda w: w.target.id not in {m.id for m in service.meetings_of(w.event)},
               {"anonymous": (302, False), "firm_user": (403, False), "other_firm_user": (403, False),
                "publisher_user": (403, False), "organizer": (302, True), "admin": (302, True)}),
    "hold": (lambda w: f"/events/meetings/{w.target.id}/hold", {},
             lambda w: w.target.status == "held",
             {"anonymous": (302, False), "firm_user": (403, False), "other_firm_user": (403, False),
              "publisher_user": (403, False), "organizer": (302, True), "admin": (302, True)}),
}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("action", list(ACTIONS))
def test_action_permission_matrix(scheduled, clock, client, auth, db, role, action):
    url, data, happened, expected = ACTIONS[action]
    w = scheduled
    w.target = meeting_of(w, w.a_second)
    if action == "auto":
        service.remove(w.organizer, w.target)
    if action == "hold":
        clock.set("2026-12-16 18:00:00")
    _login(auth, w, role)
    reply = auth.post(url(w), data)
    code, done = expected[role]
    assert reply.status_code == code
    db.session.expire_all()
    assert happened(w) is done


@pytest.mark.parametrize(
    ("role", "expected"),
    [("anonymous", False), ("firm_user", False), ("other_firm_user", False), ("publisher_user", False),
     ("organizer", True), ("admin", True)],
)
def test_service_permission_function_for_meetings(scheduled, role, expected):
    w = scheduled
    user = None if role == "anonymous" else getattr(w, role)
    meeting = meeting_of(w, w.a_firm)
    for action, obj in (("schedule", w.event), ("view_schedule", w.event), ("export", w.event),
                        ("view_tables", w.event), ("edit", meeting)):
        assert events_service.can(user, action, obj) is expected
    participant = events_service.Participant(w.event, w.firm.id)
    assert events_service.can(user, "view_agenda", participant) is (expected or role == "firm_user")


def test_a_post_without_csrf_token_is_refused(scheduled, client, auth):
    m = meeting_of(scheduled, scheduled.a_firm)
    auth.login(scheduled.organizer)
    before = _place(m)
    move = {"slot": slot("15:20"), "table": "1"}
    assert client.post(f"/events/meetings/{m.id}/move", data=move).status_code == 400
    assert client.post(f"/events/{scheduled.event.id}/meetings/auto").status_code == 400
    assert _place(m) == before


# ---------------------------------------------------------------- malformed input


@pytest.mark.parametrize(
    ("url", "data"),
    [
        ("/events/meetings/{m}/move", {"slot": "junk", "table": "1"}),
        ("/events/meetings/{m}/move", {"slot": "2026-12-16T06:00\x00", "table": "1"}),
        ("/events/meetings/{m}/move", {"slot": "9999-99-99T99:99", "table": "1"}),
        ("/events/meetings/{m}/move", {"slot": "", "table": "1"}),
        ("/events/meetings/{m}/move", {"slot": "2026-12-16T06:00", "table": "abc"}),
        ("/events/meetings/{m}/move", {"slot": "2026-12-16T06:00", "table": "99999999999999999999"}),
        ("/events/meetings/{m}/move", {"slot": "2026-12-16T06:00+99:00", "table": "1"}),
        ("/events/meetings/{m}/swap", {"other": "99999999999999999999"}),
        ("/events/meetings/{m}/swap", {"other": "2147483647"}),
        ("/events/meetings/{m}/swap", {"other": "abc"}),
        ("/events/meetings/{m}/swap", {"other": "{m}"}),
        ("/events/meetings/2147483647/move", {"slot": "2026-12-16T06:00", "table": "1"}),
        ("/events/meetings/99999999999/remove", {}),
        ("/events/{e}/meetings/add", {"entry_id": "abc", "slot": "x", "table": "1"}),
        ("/events/{e}/meetings/add", {"entry_id": "2147483647", "slot": "2026-12-16T06:00", "table": "1"}),
        ("/events/{e}/meetings/add", {"entry_id": "1", "slot": "2026-12-16T06:00", "table": "-5"}),
        ("/events/{e}/meetings/add",
         {"entry_id": "1", "slot": "2026-12-16T06:00", "table": "1", "note": "\x00"}),
        ("/events/{e}/meetings/plan", {"sessions-0-day": "2026-13-45", "slot_minutes": "20", "tables": "2"}),
        ("/events/{e}/meetings/plan", {"sessions-0-day": "2026-12-16", "sessions-0-start": "25:99",
                                       "slot_minutes": "abc", "tables": "99999999999999999999"}),
        ("/events/{e}/meetings/plan", {"sessions-0-name": "\x00", "slot_minutes": "20", "tables": "2"}),
        ("/events/{e}/meetings/plan", {"sessions-99-day": "2026-12-16", "slot_minutes": "20", "tables": "2"}),
        ("/events/meetings/{m}/no_show", {}),
    ],
)
def test_malformed_posts_are_4xx_or_redirects_never_500(scheduled, client, auth, db, url, data):
    m = meeting_of(scheduled, scheduled.a_firm)
    before = _place(m)
    auth.login(scheduled.organizer)
    filled = {k: v.replace("{m}", str(m.id)) for k, v in data.items()}
    reply = auth.post(url.format(m=m.id, e=scheduled.event.id), filled)
    assert reply.status_code in (302, 400, 404, 409)
    db.session.expire_all()
    assert _place(m) == before


@pytest.mark.parametrize("query", ["selected=abc", "selected=99999999999999999999", "slot=%00&table=x",
                                   "selected=-1"])
def test_the_schedule_page_survives_junk_queries(scheduled, client, auth, query):
    auth.login(scheduled.organizer)
    assert client.get(f"/events/{scheduled.event.id}/meetings?{query}").status_code in (200, 400)


@pytest.mark.parametrize("url", ["/events/2147483647/meetings", "/events/2147483647/agendas/1",
                                 "/events/{e}/agendas/2147483647", "/events/99999999999/agendas/tables"])
def test_missing_ids_are_404(scheduled, client, auth, url):
    auth.login(scheduled.organizer)
    assert client.get(url.format(e=scheduled.event.id)).status_code == 404


# ---------------------------------------------------------------- the seeded 供需对接会


def test_the_seeded_matchmaking_event_has_a_valid_schedule_on_both_demo_agendas(app, db):
    from marketplace.models import Event, User
    from marketplace.services.seeding import load_seeds

    load_seeds(app.config["SEEDS_DIR"])
    event = db.session.scalar(select(Event).where(Event.kind == "matchmaking"))
    assert service.plan_of(event).tables == 5 and service.conflicts(event) == []
    rows = service.meetings_of(event)
    assert len(rows) == 14 and {m.status for m in rows} == {"held", "no_show"}
    assert all(m.shortlist_entry.invitation_status == "confirmed" for m in rows)
    met = db.session.scalars(select(ShortlistDecision).where(ShortlistDecision.action == "met")).all()
    assert len(met) == 13 and all(d.engine == {"seeded": True} for d in met)
    for email in ("firm@demo.jxcj.cn", "gov@demo.jxcj.cn"):
        user = db.session.scalar(select(User).where(User.email == email))
        assert [(e.id, n) for e, n in service.my_agendas(user)] == [(event.id, 3)]
        assert len(service.agenda_for(user, event, user.organization_id).lines) == 3
    count = db.session.scalar(select(func.count()).select_from(Meeting))
    assert not load_seeds(app.config["SEEDS_DIR"]).changed
    assert db.session.scalar(select(func.count()).select_from(Meeting)) == count

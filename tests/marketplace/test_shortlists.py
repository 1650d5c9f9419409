"""对接名单: the merged proposal grouped by firm, curation, invitations, the publisher's marks, and
the append-only decision log with the engine's snapshot (the learning-to-rank signal)."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import select

from marketplace.models import (
    DecisionAction,
    EntryStatus,
    Notification,
    OrgKind,
    ShortlistDecision,
    ShortlistEntry,
)
from marketplace.services import events as events_service
from marketplace.services import shortlists as service
from marketplace.services.errors import (
    DomainError,
    InvalidTransition,
    PermissionDenied,
    ValidationFailed,
)
from tests.marketplace.test_events import Clock, event_data

PARKING = ("面向中心城区的停车诱导与泊位共享平台，基于高位视频和地磁检测识别空余泊位，"
           "通过诱导屏和小程序引导车辆停放，支持错时共享和无感支付。")


@pytest.fixture
def clock(monkeypatch) -> Clock:
    c = Clock(monkeypatch)
    c.set("2026-12-01 10:00:00")
    return c


class World:
    pass


@pytest.fixture
def world(make, clock):
    w = World()
    w.publisher = make.org(kind=OrgKind.GOVERNMENT, name="南昌市交通运输局")
    w.publisher_user = make.user(w.publisher)
    w.organizer = make.organizer()
    w.admin = make.admin()
    # Three firms the engine finds, one that only answered the need, one that only registered.
    w.firm = make.org(name="江西云眸智能科技有限公司")
    w.firm_user = make.user(w.firm)
    w.firm_a = make.org(name="南昌泊易通智能科技有限公司")
    w.firm_a_user = make.user(w.firm_a)
    w.firm_b = make.org(name="赣州数智物联有限公司")
    w.responder = make.org(name="江西赣交数智科技有限公司")
    w.registrant = make.org(kind=OrgKind.RESEARCH, name="江西省智能交通研究院")
    w.registrant_user = make.user(w.registrant)
    w.responder_user = make.user(w.responder)
    w.gov = make.org(kind=OrgKind.GOVERNMENT, name="九江市生态环境局")
    w.need = make.opportunity(w.publisher, status=EntryStatus.PUBLISHED, deadline=date(2026, 12, 31),
                              title="中心城区智慧停车诱导系统建设", description=PARKING)
    w.p1 = make.product(w.firm, status=EntryStatus.PUBLISHED, name="高位视频智慧泊位管理系统",
                        description=PARKING)
    w.p1b = make.product(w.firm, status=EntryStatus.PUBLISHED, name="停车诱导屏与反向寻车系统",
                         description="停车场诱导屏、反向寻车终端与车位引导，适用于商场和医院停车场。")
    w.p2 = make.product(w.firm_a, status=EntryStatus.PUBLISHED, name="城市级静态交通一体化运营平台",
                        description="泊位检测、停车诱导、无感支付和停车运营分析，已在南昌部署。")
    w.p3 = make.product(w.firm_b, status=EntryStatus.PUBLISHED, name="NB-IoT地磁车位检测器",
                        description="地磁车位检测器，低功耗NB-IoT上报，路内泊位占用识别。")
    w.p4 = make.product(w.responder, status=EntryStatus.PUBLISHED, name="水库大坝安全监测系统",
                        description="渗压、位移和雨水情自动测报，适用于小型水库。", fields=("智慧水利",),
                        tags=("传感器",))
    make.response(w.need, w.responder, [w.p4], status="submitted")
    w.event = events_service.create_event(w.organizer, event_data(capacity=20))
    events_service.add_need(w.organizer, w.event, w.need.id)
    events_service.transition_event(w.organizer, w.event, "open")
    events_service.register(w.registrant_user, w.event)
    return w


@pytest.fixture
def shortlist(world):
    return service.open_shortlist(world.organizer, world.event, world.need.id)


def entry_of(shortlist, organization):
    return next(e for e in shortlist.entries if e.organization_id == organization.id)


def names(shortlist) -> list[str]:
    return [e.organization.name for e in service.ordered(shortlist)]


def decisions(db, shortlist) -> list[ShortlistDecision]:
    return list(db.session.scalars(
        select(ShortlistDecision)
        .where(ShortlistDecision.shortlist_id == shortlist.id)
        .order_by(ShortlistDecision.id)
    ))


# ---------------------------------------------------------------- the merged proposal


def test_the_proposal_groups_products_by_firm(world):
    proposal = service.propose(world.event, world.need)
    org_ids = [f.organization.id for f in proposal]
    assert len(org_ids) == len(set(org_ids))
    firm = next(f for f in proposal if f.organization.id == world.firm.id)
    assert {p["id"] for p in firm.products} == {world.p1.id, world.p1b.id}
    assert all(0 < p["score"] <= 1 and p["reason"].startswith("推荐理由") for p in firm.products)
    assert firm.score == max(p["score"] for p in firm.products)


def test_the_proposal_marks_how_each_firm_got_there(world):
    proposal = {f.organization.id: f for f in service.propose(world.event, world.need)}
    assert proposal[world.firm.id].sources == ["recommended"]
    assert "responded" in proposal[world.responder.id].sources
    assert proposal[world.responder.id].products[0]["id"] == world.p4.id
    assert proposal[world.registrant.id].sources == ["registered"]
    assert proposal[world.registrant.id].products == []  # no published product
    assert proposal[world.registrant.id].source_labels == ["已报名"]
    assert world.publisher.id not in proposal and world.gov.id not in proposal


def test_a_firm_that_is_recommended_answered_and_registered_appears_once_with_all_marks(world, make):
    make.response(world.need, world.firm, [world.p1], status="shortlisted")
    events_service.register(world.firm_user, world.event)
    proposal = [f for f in service.propose(world.event, world.need) if f.organization.id == world.firm.id]
    assert len(proposal) == 1
    assert proposal[0].sources == ["recommended", "responded", "registered"]
    assert proposal[0].source_labels == ["推荐", "已答题", "已报名"]


def test_drafts_and_withdrawn_answers_do_not_count(world, make):
    make.response(world.need, world.firm_b, [world.p3], status="draft")
    proposal = {f.organization.id: f for f in service.propose(world.event, world.need)}
    assert "responded" not in proposal[world.firm_b.id].sources


def test_opening_stores_the_proposal_and_entries_best_first(world, shortlist):
    assert shortlist.target_size == 8
    ranked = service.ordered(shortlist)
    scores = [e.score for e in ranked if e.score is not None]
    assert scores == sorted(scores, reverse=True)
    assert ranked[-1].organization_id == world.registrant.id  # no product, no score: last
    assert [f["organization_id"] for f in shortlist.proposal["firms"]] == [e.organization_id for e in ranked]
    assert shortlist.proposal["k"] == service.PROPOSAL_K
    # Opening again returns the same shortlist.
    assert service.open_shortlist(world.organizer, world.event, world.need.id).id == shortlist.id


def test_only_featured_needs_get_a_shortlist(world, make):
    other = make.opportunity(world.publisher, status=EntryStatus.PUBLISHED, title="公交调度")
    with pytest.raises(DomainError):
        service.open_shortlist(world.organizer, world.event, other.id)


# ---------------------------------------------------------------- curation and its decision log


def test_adding_a_firm_records_the_engine_snapshot(world, shortlist, db, make):
    newcomer = make.org(name="鹰潭感知物联技术有限公司")
    product = make.product(newcomer, status=EntryStatus.PUBLISHED, name="路内泊位视频桩", description=PARKING)
    entry = service.add_firm(world.organizer, shortlist, "鹰潭感知物联", "去年在东湖区做过同类项目")
    assert entry.sources == ["added"] and entry.product_ids == [product.id]
    decision = decisions(db, shortlist)[-1]
    assert decision.action == "added" and decision.organization_id == newcomer.id
    assert decision.from_rank is None and decision.to_rank == len(shortlist.entries)
    assert decision.reason == "去年在东湖区做过同类项目" and decision.actor_id == world.organizer.id
    assert decision.product_ids == [product.id]
    engine = decision.engine
    assert engine["k"] == service.PROPOSAL_K and "encoder" in engine
    assert engine["products"][0]["id"] == product.id
    assert set(engine["products"][0]) >= {"rank", "score", "breakdown", "matched_terms", "reason"}
    assert engine["products"][0]["breakdown"]
    assert engine["score"] == engine["products"][0]["score"]


@pytest.mark.parametrize(
    ("query", "message"),
    [("", "请输入单位名称"), ("不存在的公司", "未找到该单位"), ("有限公司", "找到多家单位"),
     ("九江市生态环境局", "政府部门不能列入"), ("江西云眸智能科技有限公司", "已在名单中"),
     ("南昌市交通运输局", "政府部门不能列入"), ("x" * 101, "请输入单位名称"), ("云眸\x00", "请输入单位名称")],
)
def test_adding_a_firm_is_checked(world, shortlist, query, message):
    with pytest.raises(ValidationFailed, match=message):
        service.add_firm(world.organizer, shortlist, query)


def test_an_unverified_firm_cannot_be_added(world, shortlist, make):
    make.org(name="未认证科技有限公司", verified=False)
    with pytest.raises(ValidationFailed, match="认证"):
        service.add_firm(world.organizer, shortlist, "未认证科技有限公司")


def test_adding_a_product_puts_it_under_its_firm(world, shortlist, db, make):
    extra = make.product(world.firm_a, status=EntryStatus.PUBLISHED, name="智慧停车收费管理平台")
    entry = service.add_product(world.organizer, shortlist, extra.id)
    assert entry.organization_id == world.firm_a.id and extra.id in entry.product_ids
    decision = decisions(db, shortlist)[-1]
    assert decision.action == "added" and decision.product_ids == [extra.id]
    assert decision.from_rank == decision.to_rank == service.rank_of(entry)
    with pytest.raises(ValidationFailed, match="已在名单中"):
        service.add_product(world.organizer, shortlist, str(extra.id))
    draft = make.product(world.firm_a, status=EntryStatus.DRAFT)
    with pytest.raises(ValidationFailed, match="已发布"):
        service.add_product(world.organizer, shortlist, str(draft.id))


@pytest.mark.parametrize(
    ("query", "message"),
    [("", "请输入产品名称或编号"), ("不存在的产品", "未找到"), ("系统", "找到多个产品"),
     ("99999999999999999999", "只能添加已发布的产品"), ("产品\x00", "请输入产品名称或编号")],
)
def test_products_are_found_by_name_or_number(world, shortlist, query, message):
    with pytest.raises(ValidationFailed, match=message):
        service.add_product(world.organizer, shortlist, query)


def test_a_product_found_by_a_unique_part_of_its_name(world, shortlist, make):
    newcomer = make.org(name="吉安智泊科技有限公司")
    product = make.product(newcomer, status=EntryStatus.PUBLISHED, name="智泊云停车收费稽核终端")
    entry = service.add_product(world.organizer, shortlist, "智泊云")
    assert entry.organization_id == newcomer.id and product.id in entry.product_ids
    assert entry.sources == ["added"]


def test_removing_records_the_rank_it_left(world, shortlist, db):
    entry = entry_of(shortlist, world.firm_b)
    rank = service.rank_of(entry)
    service.remove(world.organizer, entry, "产品仅覆盖路内泊位")
    decision = decisions(db, shortlist)[-1]
    assert (decision.action, decision.from_rank, decision.to_rank) == ("removed", rank, None)
    assert decision.reason == "产品仅覆盖路内泊位" and decision.organization_id == world.firm_b.id
    assert decision.engine["rank"] is not None and decision.engine["score"] > 0
    assert world.firm_b.name not in names(shortlist)
    assert [e.position for e in service.ordered(shortlist)] == list(range(1, len(shortlist.entries) + 1))


def test_moving_records_from_and_to(world, shortlist, db):
    last = service.ordered(shortlist)[-1]
    service.move(world.organizer, last, 1)
    assert service.ordered(shortlist)[0] is last
    decision = decisions(db, shortlist)[-1]
    assert (decision.action, decision.from_rank, decision.to_rank) == ("moved", len(shortlist.entries), 1)
    assert decision.engine["rank"] is None  # the registrant has no product in the engine's list
    before = len(decisions(db, shortlist))
    service.move(world.organizer, last, 1)  # no-op: nothing recorded
    assert len(decisions(db, shortlist)) == before


def test_up_and_down_move_one_place(world, shortlist, db):
    second = service.ordered(shortlist)[1]
    service.step(world.organizer, second, "up")
    assert service.rank_of(second) == 1
    service.step(world.organizer, second, "down")
    assert service.rank_of(second) == 2
    assert [(d.from_rank, d.to_rank) for d in decisions(db, shortlist)] == [(2, 1), (1, 2)]


@pytest.mark.parametrize("to_rank", ["abc", "0", "-3", "99999999999999999999", "\x00", ""])
def test_bad_positions_are_refused(world, shortlist, to_rank):
    with pytest.raises(ValidationFailed):
        service.move(world.organizer, service.ordered(shortlist)[0], to_rank)


def test_pinned_entries_stay_on_top(world, shortlist, db):
    last = service.ordered(shortlist)[-1]
    service.set_pinned(world.organizer, last, True)
    assert service.ordered(shortlist)[0] is last
    decision = decisions(db, shortlist)[-1]
    assert (decision.action, decision.from_rank, decision.to_rank) == ("pinned", len(shortlist.entries), 1)
    # An unpinned entry cannot be moved above a pinned one, nor a pinned one below.
    second = service.ordered(shortlist)[1]
    assert service.move(world.organizer, second, 1) == 2
    assert service.move(world.organizer, last, len(shortlist.entries)) == 1
    service.set_pinned(world.organizer, last, False)
    assert decisions(db, shortlist)[-1].action == "unpinned"
    assert service.rank_of(last) == 1  # top of the unpinned block


def test_notes_are_recorded(world, shortlist, db):
    entry = entry_of(shortlist, world.firm)
    service.set_note(world.organizer, entry, "已电话确认有南昌案例")
    assert entry.note == "已电话确认有南昌案例"
    decision = decisions(db, shortlist)[-1]
    assert decision.action == "noted" and decision.reason == "已电话确认有南昌案例"


def test_the_target_size_draws_the_line(world, shortlist):
    service.update_settings(world.organizer, shortlist, "2", "优先邀请有南昌案例的企业")
    rows = service.rows(shortlist)
    assert [r.above_line for r in rows] == [True, True] + [False] * (len(rows) - 2)
    for bad in ("0", "abc", "100000", None):
        with pytest.raises(ValidationFailed):
            service.update_settings(world.organizer, shortlist, bad)


def test_the_decision_log_is_append_only_and_in_order(world, shortlist, db):
    entry = entry_of(shortlist, world.firm)
    service.set_pinned(world.organizer, entry, True)
    service.set_note(world.organizer, entry, "重点")
    service.invite(world.organizer, shortlist, [entry.id])
    events_service.require(world.firm_user, "confirm", entry)
    service.answer(world.firm_user, entry, "confirm")
    service.set_requested(world.publisher_user, entry, True)
    actions = [d.action for d in decisions(db, shortlist)]
    assert actions == ["pinned", "noted", "invited", "confirmed", "publisher_requested"]
    actors = [d.actor_id for d in decisions(db, shortlist)]
    assert actors == [world.organizer.id] * 3 + [world.firm_user.id, world.publisher_user.id]
    assert all(d.engine["rank"] is not None for d in decisions(db, shortlist))


@pytest.mark.parametrize("who", ["firm_user", "publisher_user"])
def test_only_organizers_curate(world, shortlist, who):
    user = getattr(world, who)
    entry = service.ordered(shortlist)[0]
    for call in (lambda: service.move(user, entry, 2), lambda: service.set_pinned(user, entry, True),
                 lambda: service.remove(user, entry), lambda: service.add_firm(user, shortlist, "赣州数智"),
                 lambda: service.invite(user, shortlist)):
        with pytest.raises(PermissionDenied):
            call()


def test_a_finished_event_freezes_its_shortlists(world, shortlist):
    events_service.transition_event(world.organizer, world.event, "finish")
    with pytest.raises(InvalidTransition, match="不能再调整"):
        service.set_pinned(world.organizer, service.ordered(shortlist)[0], True)


# ---------------------------------------------------------------- invitations


def test_inviting_without_a_selection_invites_the_firms_above_the_line(world, shortlist, db):
    service.update_settings(world.organizer, shortlist, "2")
    chosen = service.invite(world.organizer, shortlist)
    assert [e.id for e in chosen] == [e.id for e in service.ordered(shortlist)[:2]]
    assert all(e.invitation_status == "invited" and e.invited_at for e in chosen)
    notes = db.session.scalars(select(Notification).where(Notification.kind == "event_invitation")).all()
    assert {n.url for n in notes} == {f"/events/invitations/{e.id}" for e in chosen}
    logged = [d for d in decisions(db, shortlist) if d.action == "invited"]
    expected = [(e.organization_id, i + 1) for i, e in enumerate(chosen)]
    assert [(d.organization_id, d.from_rank) for d in logged] == expected
    with pytest.raises(DomainError, match="均已邀请"):
        service.invite(world.organizer, shortlist)


def test_inviting_selected_entries_only(world, shortlist):
    entry = entry_of(shortlist, world.registrant)
    assert service.invite(world.organizer, shortlist, [str(entry.id)]) == [entry]
    for bad in (["abc"], ["99999999999"]):
        with pytest.raises(ValidationFailed):
            service.invite(world.organizer, shortlist, bad)


def test_invitations_need_an_open_event(world, db, make):
    world.event.status = "draft"
    db.session.commit()
    shortlist = service.open_shortlist(world.organizer, world.event, world.need.id)
    with pytest.raises(InvalidTransition):
        service.invite(world.organizer, shortlist)


INVITATION_MATRIX = [
    (source, action, source in events_service.INVITATION_TRANSITIONS[action].sources)
    for source in ("none", "invited", "confirmed", "declined")
    for action in ("confirm", "decline")
]


@pytest.mark.parametrize(("source", "action", "allowed"), INVITATION_MATRIX)
def test_invitation_answers(world, shortlist, db, source, action, allowed):
    entry = entry_of(shortlist, world.firm)
    entry.invitation_status = source
    db.session.commit()
    if allowed:
        service.answer(world.firm_user, entry, action, "schedule")
        assert entry.invitation_status == events_service.INVITATION_TRANSITIONS[action].target
    else:
        with pytest.raises(InvalidTransition):
            service.answer(world.firm_user, entry, action, "schedule")
        assert entry.invitation_status == source


def test_declining_needs_a_reason_and_other_needs_words(world, shortlist, db):
    entry = entry_of(shortlist, world.firm)
    service.invite(world.organizer, shortlist, [entry.id])
    with pytest.raises(ValidationFailed, match="请选择婉拒原因"):
        service.answer(world.firm_user, entry, "decline", "")
    with pytest.raises(ValidationFailed, match="填写说明"):
        service.answer(world.firm_user, entry, "decline", "other", " ")
    service.answer(world.firm_user, entry, "decline", "other", "同期参加深圳展会")
    assert entry.decline_label == "其他：同期参加深圳展会"
    decision = decisions(db, shortlist)[-1]
    assert decision.action == "declined" and decision.reason == "其他：同期参加深圳展会"
    assert decision.actor_id == world.firm_user.id and decision.engine["products"]
    staff_note = db.session.scalars(
        select(Notification).where(Notification.user_id == world.organizer.id,
                                   Notification.kind == "invitation_answer")
    ).one()
    assert "婉拒" in staff_note.title and "同期参加深圳展会" in staff_note.body


@pytest.mark.parametrize("reason", ["mismatch", "schedule"])
def test_the_listed_decline_reasons(world, shortlist, reason):
    entry = entry_of(shortlist, world.firm)
    service.invite(world.organizer, shortlist, [entry.id])
    service.answer(world.firm_user, entry, "decline", reason)
    assert entry.decline_label in ("不匹配", "时间冲突")


def test_a_firm_cannot_answer_after_the_event_started(world, shortlist, clock):
    entry = entry_of(shortlist, world.firm)
    service.invite(world.organizer, shortlist, [entry.id])
    clock.set("2026-12-16 14:00:01")
    with pytest.raises(InvalidTransition, match="活动已开始"):
        service.answer(world.firm_user, entry, "confirm")


def test_another_firm_cannot_answer(world, shortlist):
    entry = entry_of(shortlist, world.firm)
    service.invite(world.organizer, shortlist, [entry.id])
    with pytest.raises(PermissionDenied):
        service.answer(world.registrant_user, entry, "confirm")


def test_invited_firms_cannot_be_removed(world, shortlist):
    entry = entry_of(shortlist, world.firm)
    service.invite(world.organizer, shortlist, [entry.id])
    with pytest.raises(DomainError, match="不能移出"):
        service.remove(world.organizer, entry)


# ---------------------------------------------------------------- the publisher's view


def test_the_publisher_marks_firms_it_wants_to_meet(world, shortlist, db):
    entry = entry_of(shortlist, world.firm_a)
    service.set_requested(world.publisher_user, entry, True)
    service.set_requested(world.publisher_user, entry, True)  # idempotent
    service.set_requested(world.publisher_user, entry, False)
    assert [d.action for d in decisions(db, shortlist)] == ["publisher_requested", "publisher_unrequested"]
    assert all(d.actor_id == world.publisher_user.id for d in decisions(db, shortlist))


@pytest.mark.parametrize("who", ["organizer", "firm_user"])
def test_only_the_publisher_marks(world, shortlist, who):
    with pytest.raises(PermissionDenied):
        service.set_requested(getattr(world, who), entry_of(shortlist, world.firm), True)


def test_the_publisher_sees_the_shortlist_read_only(world, shortlist, client, auth):
    auth.login(world.publisher_user)
    page = client.get(f"/events/shortlists/{shortlist.id}").get_data(as_text=True)
    assert world.firm.name in page and "希望洽谈" in page
    assert "上移" not in page and "发送邀请" not in page and "决策记录" not in page


def test_the_publisher_cannot_see_a_draft_events_shortlist(world, db, client, auth):
    world.event.status = "draft"
    db.session.commit()
    shortlist = service.open_shortlist(world.organizer, world.event, world.need.id)
    auth.login(world.publisher_user)
    assert client.get(f"/events/shortlists/{shortlist.id}").status_code == 404


# ---------------------------------------------------------------- pages


def test_the_organizers_page_shows_groups_sources_line_and_controls(world, shortlist, client, auth):
    service.update_settings(world.organizer, shortlist, "2")
    auth.login(world.organizer)
    page = client.get(f"/events/shortlists/{shortlist.id}").get_data(as_text=True)
    assert page.count(world.firm.name) >= 1 and world.p1.name in page and world.p1b.name in page
    assert "推荐理由" in page and "已答题" in page and "已报名" in page
    assert "以上为目标 2 家" in page
    assert 'draggable="true"' in page and '<script src="/static/shortlist.js">' in page
    assert "上移" in page and "下移" in page and "置顶" in page


def test_reordering_works_without_javascript(world, shortlist, client, auth):
    third = service.ordered(shortlist)[2]
    auth.login(world.organizer)
    assert auth.post(f"/events/shortlists/entries/{third.id}/up").status_code == 302
    assert service.rank_of(third) == 2
    assert auth.post(f"/events/shortlists/entries/{third.id}/move", {"to_rank": "1"}).status_code == 302
    assert service.rank_of(third) == 1


@pytest.mark.parametrize("to_rank", ["abc", "0", "99999999999999999999", "\x00"])
def test_malformed_move_posts_are_not_500(world, shortlist, client, auth, to_rank):
    auth.login(world.organizer)
    entry = service.ordered(shortlist)[0]
    reply = auth.post(f"/events/shortlists/entries/{entry.id}/move", {"to_rank": to_rank})
    assert reply.status_code in (302, 400)
    assert service.rank_of(entry) == 1


def test_the_organizer_adds_a_product_by_name_on_the_page(world, shortlist, client, auth, make):
    extra = make.product(world.firm_b, status=EntryStatus.PUBLISHED, name="路内泊位巡检车载识别系统")
    auth.login(world.organizer)
    reply = auth.post(f"/events/shortlists/{shortlist.id}/add-product", {"product": "巡检车载"})
    assert reply.status_code == 302
    assert extra.id in entry_of(shortlist, world.firm_b).product_ids
    page = client.get(f"/events/shortlists/{shortlist.id}").get_data(as_text=True)
    assert extra.name in page


def test_add_firm_form_errors_keep_the_input(world, shortlist, client, auth):
    auth.login(world.organizer)
    reply = auth.post(f"/events/shortlists/{shortlist.id}/add-firm",
                      {"organization": "有限公司", "reason": "保留理由"})
    html = reply.get_data(as_text=True)
    assert reply.status_code == 400 and "找到多家单位" in html and "保留理由" in html


@pytest.mark.parametrize(
    ("path", "data"),
    [("add-product", {"product": "99999999999999999999"}), ("add-product", {"product": "2147483647"}),
     ("add-product", {"product": "x\x00"}), ("settings", {"target_size": "\x00"}),
     ("settings", {"target_size": "99999999999999999999"}), ("invite", {"entry_ids": ["abc"]}),
     ("invite", {"entry_ids": ["2147483647"]}), ("add-firm", {"organization": "\x00"})],
)
def test_malformed_shortlist_posts_are_4xx_never_500(world, shortlist, client, auth, path, data):
    auth.login(world.organizer)
    reply = auth.post(f"/events/shortlists/{shortlist.id}/{path}", data)
    assert reply.status_code in (302, 400)


def test_the_firm_answers_from_its_invitation_page(world, shortlist, client, auth, db):
    entry = entry_of(shortlist, world.firm)
    service.invite(world.organizer, shortlist, [entry.id])
    auth.login(world.firm_user)
    mine = client.get("/events/mine").get_data(as_text=True)
    assert world.event.title in mine and "待答复" in mine
    page = client.get(f"/events/invitations/{entry.id}").get_data(as_text=True)
    assert "确认参加" in page and "不匹配" in page and "时间冲突" in page and world.p1.name in page
    reply = auth.post(f"/events/invitations/{entry.id}/decline", {"reason": "other", "detail": ""})
    assert reply.status_code == 400 and "选择「其他」时请填写说明" in reply.get_data(as_text=True)
    assert auth.post(f"/events/invitations/{entry.id}/decline", {"reason": "bogus"}).status_code == 400
    assert auth.post(f"/events/invitations/{entry.id}/confirm").status_code == 302
    db.session.expire_all()
    assert db.session.get(ShortlistEntry, entry.id).invitation_status == "confirmed"


def test_the_firms_responses_page_links_to_its_invitations(world, shortlist, client, auth):
    service.invite(world.organizer, shortlist, [entry_of(shortlist, world.firm).id])
    auth.login(world.firm_user)
    page = client.get("/responses/mine").get_data(as_text=True)
    assert "/events/mine" in page and "活动对接邀请" in page


def test_decision_actions_cover_the_documented_vocabulary():
    assert {a.value for a in DecisionAction} >= {
        "added", "removed", "moved", "pinned", "unpinned", "noted", "invited", "confirmed", "declined",
        "publisher_requested", "met", "signed",
    }

"""项目签约 in the shortlist history: a signing appends a ``signed`` decision for each signing firm
on a shortlist of its need (the one at its event, else every one), edits and deletions append
``unsigned`` / ``signed``, and the shortlist page shows them with their Chinese labels."""

from __future__ import annotations

from datetime import date, datetime

import pytest
from sqlalchemy import select

from marketplace.models import (
    DecisionAction,
    Event,
    Shortlist,
    ShortlistDecision,
    ShortlistEntry,
)
from marketplace.services import lifecycle as service
from tests.marketplace import test_lifecycle as base
from tests.marketplace.test_lifecycle import login_as
from tests.marketplace.test_signings import data

clock = base.clock
world = base.world

ENGINE = {"rank": 2, "k": 30, "encoder": "offline", "score": 0.71, "products": []}


def _event(db, title: str, kind: str = "matchmaking") -> Event:
    event = Event(kind=kind, title=title, status="finished", starts_at=datetime(2026, 7, 1, 1, 0),
                  capacity=60, registration_deadline=date(2026, 6, 25))
    db.session.add(event)
    db.session.flush()
    return event


def _shortlist(db, event: Event, need, firms: list) -> Shortlist:
    shortlist = Shortlist(event_id=event.id, opportunity_id=need.id, target_size=8, proposal={})
    db.session.add(shortlist)
    db.session.flush()
    for position, firm in enumerate(firms, start=1):
        db.session.add(ShortlistEntry(shortlist_id=shortlist.id, organization_id=firm.id, position=position,
                                      sources=["recommended"], products=[]))
    db.session.flush()
    return shortlist


@pytest.fixture
def lists(world, db):
    """Two 供需对接会 with a shortlist each for the need (the firm 2nd on the first, alone on the
    second; the partner only on the first), an engine snapshot recorded for the firm on the first,
    and a 签约仪式 without a shortlist."""
    w = world
    w.fair = _event(db, "2026年第一批机会清单供需对接会（南昌）")
    w.fair_list = _shortlist(db, w.fair, w.need, [w.partner, w.firm])
    w.salon = _event(db, "智慧水利场景对接会（九江）")
    w.salon_list = _shortlist(db, w.salon, w.need, [w.firm])
    w.ceremony = _event(db, "2026年应用场景项目集中签约仪式", kind="signing")
    db.session.add(ShortlistDecision(shortlist_id=w.fair_list.id, organization_id=w.firm.id, action="added",
                                     product_ids=[w.product.id], engine=ENGINE))
    db.session.add(ShortlistDecision(shortlist_id=w.fair_list.id, organization_id=w.firm.id, action="noted",
                                     product_ids=[w.product.id], engine={}))
    db.session.commit()
    return w


def _decisions(db, action: str | None = None) -> list[ShortlistDecision]:
    stmt = select(ShortlistDecision).where(ShortlistDecision.action.in_(("signed", "unsigned")))
    if action:
        stmt = stmt.where(ShortlistDecision.action == action)
    return list(db.session.scalars(stmt.order_by(ShortlistDecision.id)))


def test_a_signing_at_an_event_with_a_shortlist_is_recorded_on_that_shortlist_only(lists, db):
    w = lists
    service.record_signing(w.organizer, w.need, data(w, event_id=w.fair.id))
    [decision] = _decisions(db)
    assert decision.shortlist_id == w.fair_list.id and decision.organization_id == w.firm.id
    assert decision.action == DecisionAction.SIGNED and decision.action_label == "已签约"
    assert decision.product_ids == [w.product.id]
    assert decision.actor_id == w.organizer.id
    assert decision.from_rank == decision.to_rank == 2
    assert decision.engine == ENGINE  # the last snapshot recorded for the firm, not the empty one
    assert "修水县小型水库雨水情测报和大坝安全监测设施建设项目" in decision.reason


def test_a_signing_without_an_event_is_recorded_on_every_shortlist_of_the_need(lists, db):
    w = lists
    service.record_signing(w.publisher_user, w.need, data(w))
    found = {(d.shortlist_id, d.organization_id): d for d in _decisions(db)}
    assert set(found) == {(w.fair_list.id, w.firm.id), (w.salon_list.id, w.firm.id)}
    assert found[(w.salon_list.id, w.firm.id)].engine == {}  # nothing recorded there
    assert found[(w.salon_list.id, w.firm.id)].actor_id == w.publisher_user.id


def test_a_signing_at_an_event_without_a_shortlist_for_the_need_uses_every_shortlist(lists, db):
    w = lists
    service.record_signing(w.organizer, w.need, data(w, event_id=w.ceremony.id))
    assert {d.shortlist_id for d in _decisions(db)} == {w.fair_list.id, w.salon_list.id}


def test_each_firm_gets_its_own_products(lists, db):
    w = lists
    service.record_signing(w.organizer, w.need, data(
        w, event_id=w.fair.id, organization_ids=[w.firm.id, w.partner.id],
        product_ids=[w.product.id, w.partner_product.id]))
    found = {d.organization_id: d for d in _decisions(db)}
    assert found[w.firm.id].product_ids == [w.product.id]
    assert found[w.partner.id].product_ids == [w.partner_product.id]
    assert found[w.partner.id].from_rank == 1


def test_firms_on_no_shortlist_and_needs_without_shortlists_write_nothing(world, lists, db, make):
    w = lists
    service.record_signing(w.organizer, w.need, data(w, organization_ids=[w.other_firm.id],
                                                     product_ids=[w.other_product.id]))
    assert _decisions(db) == []


def test_deleting_a_signing_appends_unsigned_and_keeps_the_signed_row(lists, db):
    w = lists
    signing = service.record_signing(w.organizer, w.need, data(w, event_id=w.fair.id))
    service.delete_signing(w.organizer, signing)
    rows = _decisions(db)
    assert [d.action for d in rows] == ["signed", "unsigned"]
    assert rows[1].action_label == "撤销签约" and rows[1].shortlist_id == w.fair_list.id
    assert rows[1].organization_id == w.firm.id and rows[1].product_ids == [w.product.id]
    assert rows[1].reason.startswith("撤销签约：")


def test_an_edit_reflects_firms_added_and_removed_and_changed_products(lists, db):
    w = lists
    signing = service.record_signing(w.organizer, w.need, data(w, event_id=w.fair.id))
    service.update_signing(w.organizer, signing, data(w, event_id=w.fair.id, organization_ids=[w.partner.id],
                                                       product_ids=[w.partner_product.id]))
    rows = [(d.action, d.organization_id) for d in _decisions(db)]
    assert rows[0] == ("signed", w.firm.id)
    assert sorted(rows[1:]) == [("signed", w.partner.id), ("unsigned", w.firm.id)]
    service.update_signing(w.organizer, signing, data(w, event_id=w.fair.id, organization_ids=[w.partner.id],
                                                       product_ids=[]))
    last = _decisions(db)[-1]
    assert (last.action, last.organization_id, last.product_ids) == ("signed", w.partner.id, [])
    assert last.reason.startswith("签约产品调整")


def test_an_edit_that_changes_nothing_on_the_lists_writes_nothing(lists, db):
    w = lists
    signing = service.record_signing(w.organizer, w.need, data(w, event_id=w.fair.id))
    service.update_signing(w.organizer, signing, data(w, event_id=w.fair.id, title="修水县水库监测项目"))
    assert len(_decisions(db)) == 1


def test_moving_a_signing_to_another_event_moves_it_between_shortlists(lists, db):
    w = lists
    signing = service.record_signing(w.organizer, w.need, data(w, event_id=w.fair.id))
    service.update_signing(w.organizer, signing, data(w, event_id=w.salon.id))
    rows = [(d.action, d.shortlist_id) for d in _decisions(db)]
    assert rows[0] == ("signed", w.fair_list.id)
    assert sorted(rows[1:]) == [("signed", w.salon_list.id), ("unsigned", w.fair_list.id)]


def test_the_shortlist_page_shows_the_signing_with_its_chinese_label(app, lists, db):
    w = lists
    signing = service.record_signing(w.organizer, w.need, data(w, event_id=w.fair.id))
    service.delete_signing(w.organizer, signing)
    client, _ = login_as(app, w, "organizer")
    html = client.get(f"/events/shortlists/{w.fair_list.id}").get_data(as_text=True)
    log = html[html.index('id="decision-log"'):]
    assert "<td>已签约</td>" in log and "<td>撤销签约</td>" in log
    assert "项目签约：修水县小型水库雨水情测报和大坝安全监测设施建设项目（2026-07-12）" in log

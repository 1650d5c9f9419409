"""The grading rule (marketplace/services/judgements.py): every source and its grade, conflicts on
one pair, firm-level records, what never counts, and the leakage-safe history features."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from marketplace.extensions import db
from marketplace.models import (
    DecisionAction,
    EntryStatus,
    Event,
    Meeting,
    MeetingStatus,
    OrgKind,
    Shortlist,
    ShortlistDecision,
    ShortlistEntry,
    Signing,
    SigningParty,
)
from marketplace.models.programme import SigningProduct
from marketplace.services import judgements

T0 = datetime(2026, 3, 1, 8, 0)


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


class World:
    pass


@pytest.fixture
def w(make):
    w = World()
    w.publisher = make.org(kind=OrgKind.GOVERNMENT, name="南昌市交通运输局")
    w.need = make.opportunity(w.publisher, status=EntryStatus.PUBLISHED, title="停车诱导")
    w.other_need = make.opportunity(w.publisher, status=EntryStatus.PUBLISHED, title="公交调度")
    w.draft_need = make.opportunity(w.publisher, status=EntryStatus.DRAFT, title="草稿需求")
    w.firm = make.org(name="江西云眸智能科技有限公司")
    w.p1 = make.product(w.firm, status=EntryStatus.PUBLISHED, name="泊位管理系统")
    w.p2 = make.product(w.firm, status=EntryStatus.PUBLISHED, name="诱导屏")
    w.p_draft = make.product(w.firm, status=EntryStatus.DRAFT, name="未发布产品")
    w.member = make.org(name="赣州数智物联有限公司")
    w.p_member = make.product(w.member, status=EntryStatus.PUBLISHED, name="地磁检测器")
    w.event = Event(kind="salon", title="场景沙龙", status="open", starts_at=at(500), capacity=20,
                    registration_deadline=date(2026, 3, 20))
    db.session.add(w.event)
    db.session.flush()
    w.shortlist = Shortlist(event_id=w.event.id, opportunity_id=w.need.id)
    db.session.add(w.shortlist)
    db.session.commit()
    return w


def decide(w, action, org=None, products=(), rank=3, when=0.0, reason=""):
    decision = ShortlistDecision(
        shortlist_id=w.shortlist.id, organization_id=(org or w.firm).id,
        product_ids=[p.id for p in products], action=action.value, reason=reason,
        engine={"rank": rank, "k": 30}, created_at=at(when),
    )
    db.session.add(decision)
    db.session.commit()
    return decision


def respond(make, w, status, products=(), when=0.0, reviewed=None, need=None, org=None):
    return make.response(need or w.need, org or w.firm, list(products), status=status,
                         submitted_at=at(when) if status != "draft" else None,
                         reviewed_at=at(reviewed) if reviewed is not None else None)


def sign(w, products=(), parties=(), when=0.0, need=None):
    signing = Signing(opportunity_id=(need or w.need).id, signed_on=date(2026, 3, 10), title="签约",
                      created_at=at(when))
    signing.products = [SigningProduct(product_id=p.id) for p in products]
    signing.parties = [SigningParty(organization_id=o.id) for o in parties]
    db.session.add(signing)
    db.session.commit()
    return signing


def hold_meeting(w, entry=None, when=0.0, status=MeetingStatus.HELD):
    meeting = Meeting(event_id=w.event.id, opportunity_id=w.need.id, organization_id=w.firm.id,
                      shortlist_entry_id=entry.id if entry else None, starts_at=at(when - 1),
                      ends_at=at(when - 0.5), status=status, updated_at=at(when))
    db.session.add(meeting)
    db.session.commit()
    return meeting


def graded():
    """{(need, org, product): (grade, source)}."""
    return {(j.need_id, j.organization_id, j.product_id): (j.grade, j.source) for j in judgements.collect()}


# ---------------------------------------------------------------- one record per source


SOURCE_CASES = {
    "signed": (lambda make, w: sign(w, [w.p1], [w.firm]), 3),
    "selected": (lambda make, w: respond(make, w, "selected", [w.p1], reviewed=1), 3),
    "meeting_held": (lambda make, w: hold_meeting(w, _entry(w, [w.p1])), 2),
    "invitation_confirmed": (lambda make, w: decide(w, DecisionAction.CONFIRMED, products=[w.p1]), 2),
    "shortlisted": (lambda make, w: respond(make, w, "shortlisted", [w.p1], reviewed=1), 2),
    "organizer_added": (lambda make, w: decide(w, DecisionAction.ADDED, products=[w.p1], rank=None), 2),
    "organizer_pinned": (lambda make, w: decide(w, DecisionAction.PINNED, products=[w.p1]), 2),
    "submitted": (lambda make, w: respond(make, w, "submitted", [w.p1]), 1),
    "removed_top10": (lambda make, w: decide(w, DecisionAction.REMOVED, products=[w.p1], rank=10), 0),
    "declined_mismatch": (
        lambda make, w: decide(w, DecisionAction.DECLINED, products=[w.p1], reason="不匹配：只做路内停车"),
        0,
    ),
}


def _entry(w, products):
    entry = ShortlistEntry(shortlist_id=w.shortlist.id, organization_id=w.firm.id,
                           products=[{"id": p.id, "score": 0.5, "reason": ""} for p in products])
    db.session.add(entry)
    db.session.commit()
    return entry


@pytest.mark.parametrize("source", list(SOURCE_CASES))
def test_each_source_gives_its_documented_grade(make, w, source):
    create, grade = SOURCE_CASES[source]
    create(make, w)
    assert judgements.SOURCES[source].grade == grade
    assert graded() == {(w.need.id, w.firm.id, w.p1.id): (grade, source)}
    assert judgements.counts()[source] == 1


def test_the_grading_table_is_the_documented_one():
    assert {code: s.grade for code, s in judgements.SOURCES.items()} == {
        "signed": 3, "selected": 3, "meeting_held": 2, "invitation_confirmed": 2, "shortlisted": 2,
        "organizer_added": 2, "organizer_pinned": 2, "submitted": 1, "removed_top10": 0,
        "declined_mismatch": 0,
    }
    assert {c for c, s in judgements.SOURCES.items() if s.negative} == {"removed_top10", "declined_mismatch"}


@pytest.mark.parametrize("make_record", [
    lambda make, w: decide(w, DecisionAction.REMOVED, products=[w.p1], rank=11),
    lambda make, w: decide(w, DecisionAction.REMOVED, products=[w.p1], rank=None),
    lambda make, w: decide(w, DecisionAction.DECLINED, products=[w.p1], reason="时间冲突"),
    lambda make, w: decide(w, DecisionAction.DECLINED, products=[w.p1], reason="其他：不匹配写在说明"),
    lambda make, w: decide(w, DecisionAction.MOVED, products=[w.p1]),
    lambda make, w: decide(w, DecisionAction.PUBLISHER_REQUESTED, products=[w.p1]),
    lambda make, w: hold_meeting(w, _entry(w, [w.p1]), status=MeetingStatus.NO_SHOW),
    lambda make, w: respond(make, w, "draft", [w.p1]),
    lambda make, w: respond(make, w, "withdrawn", [w.p1]),
], ids=["removed-rank-11", "removed-not-in-top", "declined-schedule", "declined-other", "moved",
        "publisher-wish", "no-show", "draft-response", "withdrawn-response"])
def test_records_that_are_no_judgement(make, w, make_record):
    make_record(make, w)
    assert judgements.collect() == []


def test_a_rejected_response_still_counts_as_submitted(make, w):
    respond(make, w, "rejected", [w.p1], when=1, reviewed=2)
    assert graded() == {(w.need.id, w.firm.id, w.p1.id): (1, "submitted")}


def test_unpublished_needs_never_count(make, w):
    make.response(w.draft_need, w.firm, [w.p1], status="selected")
    sign(w, [w.p1], [w.firm], need=w.draft_need)
    assert judgements.collect() == []
    assert sum(judgements.counts().values()) == 0


def test_unpublished_products_are_dropped_and_a_record_without_one_stays_firm_level(make, w):
    respond(make, w, "submitted", [w.p_draft])
    assert graded() == {(w.need.id, w.firm.id, None): (1, "submitted")}


def test_a_record_naming_several_products_grades_each_for_its_owner(make, w):
    # A consortium's answer (lead: firm) names a member's product: that product is the member's.
    respond(make, w, "submitted", [w.p1, w.p2, w.p_member])
    assert graded() == {
        (w.need.id, w.firm.id, w.p1.id): (1, "submitted"),
        (w.need.id, w.firm.id, w.p2.id): (1, "submitted"),
        (w.need.id, w.member.id, w.p_member.id): (1, "submitted"),
    }


# ---------------------------------------------------------------- firm-level records


def test_a_signing_party_without_products_takes_the_products_of_its_answer(make, w):
    respond(make, w, "submitted", [w.p2], when=0)
    sign(w, [], [w.firm], when=5)
    assert graded() == {(w.need.id, w.firm.id, w.p2.id): (3, "signed")}


def test_a_signing_party_with_nothing_attached_stays_firm_level(make, w):
    sign(w, [], [w.member], when=5)
    assert graded() == {(w.need.id, w.member.id, None): (3, "signed")}


def test_a_held_meeting_takes_the_products_shown_on_the_shortlist_entry(make, w):
    hold_meeting(w, _entry(w, [w.p1, w.p2]))
    assert graded() == {
        (w.need.id, w.firm.id, w.p1.id): (2, "meeting_held"),
        (w.need.id, w.firm.id, w.p2.id): (2, "meeting_held"),
    }


def test_a_held_meeting_without_entry_is_firm_level(make, w):
    hold_meeting(w, None)
    assert graded() == {(w.need.id, w.firm.id, None): (2, "meeting_held")}


# ---------------------------------------------------------------- several records on one pair


def test_the_highest_grade_wins(make, w):
    respond(make, w, "shortlisted", [w.p1], when=0, reviewed=1)
    decide(w, DecisionAction.ADDED, products=[w.p1], when=2)
    decide(w, DecisionAction.CONFIRMED, products=[w.p1], when=3)
    assert graded() == {(w.need.id, w.firm.id, w.p1.id): (2, "invitation_confirmed")}


def test_a_later_removal_from_the_top_10_beats_earlier_positives(make, w):
    respond(make, w, "submitted", [w.p1], when=0)
    decide(w, DecisionAction.ADDED, products=[w.p1], when=1)
    decide(w, DecisionAction.REMOVED, products=[w.p1], rank=4, when=2)
    assert graded() == {(w.need.id, w.firm.id, w.p1.id): (0, "removed_top10")}


def test_a_positive_after_the_negative_wins(make, w):
    decide(w, DecisionAction.REMOVED, products=[w.p1], rank=2, when=1)
    decide(w, DecisionAction.ADDED, products=[w.p1], when=2)
    assert graded() == {(w.need.id, w.firm.id, w.p1.id): (2, "organizer_added")}


def test_signed_or_selected_wins_over_a_later_negative(make, w):
    sign(w, [w.p1], [w.firm], when=1)
    respond(make, w, "selected", [w.p2], when=0, reviewed=1)
    decide(w, DecisionAction.REMOVED, products=[w.p1, w.p2], rank=1, when=5)
    assert graded() == {
        (w.need.id, w.firm.id, w.p1.id): (3, "signed"),
        (w.need.id, w.firm.id, w.p2.id): (3, "selected"),
    }


def test_a_removal_outside_the_top_10_takes_back_the_organizers_addition(make, w):
    decide(w, DecisionAction.ADDED, products=[w.p1], when=1)
    decide(w, DecisionAction.REMOVED, products=[w.p1], rank=25, when=2)
    assert graded() == {}


def test_unpinning_takes_back_the_pin_but_not_the_addition(make, w):
    decide(w, DecisionAction.PINNED, products=[w.p1], when=1)
    decide(w, DecisionAction.UNPINNED, products=[w.p1], when=2)
    assert graded() == {}
    decide(w, DecisionAction.ADDED, products=[w.p2], when=3)
    decide(w, DecisionAction.PINNED, products=[w.p2], when=4)
    decide(w, DecisionAction.UNPINNED, products=[w.p2], when=5)
    assert graded() == {(w.need.id, w.firm.id, w.p2.id): (2, "organizer_added")}


def test_only_the_firms_latest_answer_to_an_invitation_counts(make, w):
    decide(w, DecisionAction.DECLINED, products=[w.p1], reason="不匹配", when=1)
    decide(w, DecisionAction.CONFIRMED, products=[w.p1], when=2)
    assert graded() == {(w.need.id, w.firm.id, w.p1.id): (2, "invitation_confirmed")}
    decide(w, DecisionAction.DECLINED, products=[w.p1], reason="不匹配", when=3)
    assert graded() == {(w.need.id, w.firm.id, w.p1.id): (0, "declined_mismatch")}


def test_a_declined_mismatch_after_a_submitted_answer_wins(make, w):
    respond(make, w, "submitted", [w.p1], when=0)
    decide(w, DecisionAction.DECLINED, products=[w.p1], reason="不匹配", when=1)
    assert graded() == {(w.need.id, w.firm.id, w.p1.id): (0, "declined_mismatch")}


def test_a_judgement_carries_the_deciding_record(make, w):
    respond(make, w, "shortlisted", [w.p1], when=0, reviewed=1)
    decision = decide(w, DecisionAction.ADDED, products=[w.p1], when=2)
    (j,) = judgements.collect()
    # Same grade: the latest record decides, and gives its source, time and key.
    assert (j.source, j.decision_key, j.at) == ("organizer_added", f"decision:{decision.id}",
                                                at(2).replace(tzinfo=UTC))


def test_collect_since_keeps_recent_decisions(make, w):
    respond(make, w, "submitted", [w.p1], when=0)
    decide(w, DecisionAction.ADDED, products=[w.p2], when=10)
    assert {j.product_id for j in judgements.collect(since=at(5))} == {w.p2.id}
    assert {j.product_id for j in judgements.collect(since=at(5).replace(tzinfo=UTC))} == {w.p2.id}


def test_counts_lists_every_source(make, w):
    respond(make, w, "submitted", [w.p1, w.p2])
    counts = judgements.counts()
    assert list(counts) == list(judgements.SOURCES)
    assert counts["submitted"] == 2 and counts["signed"] == 0


# ---------------------------------------------------------------- history without leakage


def test_history_leaves_out_the_judged_need_and_everything_from_the_cutoff(make, w):
    old = respond(make, w, "selected", [w.p1], when=0, reviewed=1, need=w.other_need)
    respond(make, w, "selected", [w.p1], when=2, reviewed=3)  # the judged need itself
    sign(w, [w.p1], [w.firm], when=10, need=w.other_need)  # after the cutoff
    events = judgements.history_events([w.firm.id])
    counts, used = judgements.history_for(events, w.firm.id, exclude_need=w.need.id,
                                          before=at(5).replace(tzinfo=UTC))
    assert counts == {"hist_responses": 1.0, "hist_selected": 1.0, "hist_signed": 0.0}
    assert used == {f"response:{old.id}"}
    everything, _ = judgements.history_for(events, w.firm.id, exclude_need=None)
    assert everything == {"hist_responses": 2.0, "hist_selected": 2.0, "hist_signed": 1.0}


def test_history_refuses_the_labels_own_decision_key(make, w):
    response = respond(make, w, "selected", [w.p1], when=0, reviewed=1, need=w.other_need)
    events = judgements.history_events()
    counts, used = judgements.history_for(events, w.firm.id, exclude_need=w.need.id,
                                          exclude_keys={f"response:{response.id}"})
    assert counts["hist_selected"] == 0 and not used

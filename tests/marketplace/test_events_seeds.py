"""The 活动 demo seeds: the four events, their rules, the demo accounts' views, idempotency."""

from __future__ import annotations

from sqlalchemy import func, select

from marketplace.models import (
    Event,
    Registration,
    Shortlist,
    ShortlistDecision,
    ShortlistEntry,
    User,
)
from marketplace.services import events as service
from marketplace.services import shortlists
from marketplace.services.seeding import load_seeds


def _counts(db):
    return {m.__name__: db.session.scalar(select(func.count()).select_from(m))
            for m in (Event, Registration, Shortlist, ShortlistEntry, ShortlistDecision)}


def test_event_seeds_load_once(app, db):
    load_seeds(app.config["SEEDS_DIR"])
    counts = _counts(db)
    assert counts["Event"] == 4 and counts["Shortlist"] == 7
    assert not load_seeds(app.config["SEEDS_DIR"]).changed
    assert _counts(db) == counts


def test_seeded_events_follow_the_rules(app, db):
    load_seeds(app.config["SEEDS_DIR"])
    events = {e.kind: e for e in db.session.scalars(select(Event))}
    assert {k: e.status for k, e in events.items()} == {
        "matchmaking": "finished", "salon": "open", "roadshow": "draft", "signing": "finished",
    }
    salon = events["salon"]
    assert not service.registration_closed(salon) and not service.event_started(salon)
    for event in events.values():
        assert event.registration_deadline <= service.timeutil.to_local(event.starts_at).date()
        assert event.confirmed_count <= event.capacity
        assert all(f.opportunity.status == "published" for f in event.featured)
    upcoming, past = service.public_events()
    assert [e.id for e in upcoming] == [salon.id]
    assert [e.id for e in past] == [events["signing"].id, events["matchmaking"].id]  # most recent first
    entries = db.session.scalars(select(ShortlistEntry)).all()
    assert {e.invitation_status for e in entries} == {"none", "invited", "confirmed", "declined"}
    for entry in entries:
        assert entry.sources
        if entry.invitation_status == "declined":
            assert entry.decline_reason in ("mismatch", "schedule", "other")
    decisions = db.session.scalars(select(ShortlistDecision)).all()
    assert {d.action for d in decisions} >= {"invited", "confirmed", "declined", "publisher_requested"}
    assert all(d.engine == {"seeded": True} for d in decisions)


def test_the_demo_firm_and_department_see_something(app, db):
    load_seeds(app.config["SEEDS_DIR"])
    firm = db.session.scalar(select(User).where(User.email == "firm@demo.jxcj.cn"))
    gov = db.session.scalar(select(User).where(User.email == "gov@demo.jxcj.cn"))
    invitations = service.my_invitations(firm)
    assert any(e.invitation_status == "invited" and e.shortlist.event.status == "open" for e in invitations)
    assert service.pending_invitation_count(firm) == 1
    assert {r.status for r in service.my_registrations(firm)} == {"confirmed"}
    owned = service.publisher_shortlists(gov)
    assert owned and all(service.can(gov, "view", s) for s in owned)
    entry = next(e for s in owned for e in s.entries if e.organization.name == "江西云眸智能科技有限公司")
    assert service.can(gov, "request", entry)
    assert shortlists.rows(owned[0])

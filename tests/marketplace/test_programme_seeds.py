"""The issue-10 seeds (seeds/programme.json): complete, following the rules, and idempotent."""

from __future__ import annotations

from collections import Counter

from sqlalchemy import func, select

from marketplace import timeutil
from marketplace.models import (
    AuditEvent,
    Designation,
    DesignationOpportunity,
    DesignationOrganization,
    Event,
    Lab,
    LabLink,
    Notification,
    Opportunity,
    ProgrammeTarget,
    ScenarioStage,
    Shortlist,
    ShortlistDecision,
    Signing,
    SigningParty,
    SigningProduct,
    StageChange,
    User,
)
from marketplace.services import lifecycle
from marketplace.services.seeding import load_seeds

MODELS = (
    StageChange,
    ShortlistDecision,
    Signing,
    SigningParty,
    SigningProduct,
    Lab,
    LabLink,
    Designation,
    DesignationOpportunity,
    DesignationOrganization,
    ProgrammeTarget,
    Event,
    Notification,
    AuditEvent,
)


def _counts(db) -> dict[str, int]:
    return {m.__name__: db.session.scalar(select(func.count()).select_from(m)) for m in MODELS}


def test_programme_seeds_load_twice_without_duplicates(app, db):
    load_seeds(app.config["SEEDS_DIR"])
    counts = _counts(db)
    stages = dict(db.session.execute(select(Opportunity.id, Opportunity.stage)).all())
    report = load_seeds(app.config["SEEDS_DIR"])
    assert not report.changed
    assert _counts(db) == counts
    assert dict(db.session.execute(select(Opportunity.id, Opportunity.stage)).all()) == stages


def check_needs_are_seeded_at_every_stage_with_histories_that_follow_the_rules(db) -> None:
    stages = Counter(db.session.scalars(select(Opportunity.stage).where(Opportunity.status == "published")))
    assert set(stages) == {s.value for s in ScenarioStage}
    assert stages[ScenarioStage.DEMONSTRATION] >= 4
    today = timeutil.local_today()
    moved = db.session.scalars(select(Opportunity).where(Opportunity.stage != ScenarioStage.PUBLISHED)).all()
    for need in moved:
        steps = lifecycle.stage_changes(need.id)
        assert steps and steps[-1].to_stage == need.stage, need.title
        previous, stage = lifecycle.published_day(need), ScenarioStage.PUBLISHED.value
        for step in steps:
            assert step.from_stage == stage, need.title
            assert any(
                stage in t.sources and t.target == step.to_stage for t in lifecycle.TRANSITIONS.values()
            )
            assert previous <= step.happened_on <= today, need.title
            previous, stage = step.happened_on, step.to_stage
        first = steps[0]
        # Leaving 机会发布: a selected response, a signing, or an organizer's decision with a note.
        assert lifecycle.has_selected_response(need.id) or first.signing_id or first.note, need.title
        if need.stage == ScenarioStage.TERMINATED:
            assert steps[-1].note


def check_signings_are_seeded_with_parties_products_and_events(db) -> None:
    signings = db.session.scalars(select(Signing)).all()
    assert 14 <= len(signings) <= 18
    kinds = {s.event.kind for s in signings if s.event is not None}
    assert kinds == {"matchmaking", "signing"}  # the seeded 供需对接会 and 项目签约 ceremony
    ceremony = db.session.scalars(select(Event).where(Event.kind == "signing")).one()
    assert ceremony.status == "finished"
    at_ceremony = [s for s in signings if s.event_id == ceremony.id]
    assert len(at_ceremony) == 3
    assert all(s.signed_on == timeutil.to_local(ceremony.starts_at).date() for s in at_ceremony)
    assert {s.opportunity_id for s in at_ceremony} <= {f.opportunity_id for f in ceremony.featured}
    assert {s.signed_on.year for s in signings} == {2023, 2024, 2025, 2026}
    assert any(s.consortium_id for s in signings)
    for s in signings:
        parties = {p.organization_id for p in s.parties}
        assert parties and s.opportunity.publisher_id not in parties
        assert all(p.product.owner_id in parties and p.product.status == "published" for p in s.products)
        assert s.amount_wan is not None and s.amount_wan > 0
        assert lifecycle.published_day(s.opportunity) <= s.signed_on <= timeutil.local_today()
    caused = db.session.scalars(select(StageChange).where(StageChange.signing_id.is_not(None))).all()
    assert caused
    assert all(db.session.get(Signing, c.signing_id).signed_on == c.happened_on for c in caused)


def check_stage_history_spans_several_years_consistent_with_batches(db) -> None:
    steps = db.session.scalars(select(StageChange)).all()
    assert {s.happened_on.year for s in steps} == {2023, 2024, 2025, 2026}
    for step in steps:
        need = step.opportunity
        assert need.batch is not None and need.batch.published_on <= step.happened_on, need.title
        assert lifecycle.published_day(need) == need.batch.published_on
    # Every year has needs reaching 示范推广 on the way: the earliest batches went furthest.
    demo_years = {s.happened_on.year for s in steps if s.to_stage == ScenarioStage.DEMONSTRATION}
    assert {2024, 2025, 2026} <= demo_years
    projects = db.session.scalars(select(Designation).where(Designation.kind == "project",
                                                            Designation.status == "approved")).all()
    assert {d.year for d in projects} >= {2024, 2025, 2026}


def check_signings_on_shortlists_are_in_the_shortlist_history(db) -> None:
    signed = db.session.scalars(select(ShortlistDecision).where(ShortlistDecision.action == "signed")).all()
    assert signed and all(d.engine == {"seeded": True} for d in signed)
    for decision in signed:
        shortlist = db.session.get(Shortlist, decision.shortlist_id)
        signing = db.session.scalars(
            select(Signing).join(SigningParty).where(Signing.opportunity_id == shortlist.opportunity_id,
                                                     SigningParty.organization_id == decision.organization_id)
        ).first()
        assert signing is not None and decision.created_at >= shortlist.created_at
        assert set(decision.product_ids) <= {p.product_id for p in signing.products}


def check_two_labs_with_links_made_in_rnd_or_pilot(db) -> None:
    labs = db.session.scalars(select(Lab)).all()
    assert {lab.kind for lab in labs} == {"innovation", "future"} and len(labs) == 2
    assert {lab.organization.region_city for lab in labs} == {"南昌市", "赣州市"}
    links = db.session.scalars(select(LabLink)).all()
    assert len(links) >= 4 and {link.lab_id for link in links} == {lab.id for lab in labs}
    for link in links:
        assert link.service in link.lab.services
        stage = ScenarioStage.PUBLISHED.value
        for step in lifecycle.stage_changes(link.opportunity_id):
            if step.happened_on <= link.linked_on:
                stage = step.to_stage
        assert stage in lifecycle.LAB_STAGES, link.opportunity.title


def check_designations_of_every_kind_and_status_and_the_targets(db) -> None:
    designations = db.session.scalars(select(Designation)).all()
    pairs = {(d.kind, d.status) for d in designations}
    assert pairs == {
        (k, s)
        for k in ("zone", "project", "firm")
        for s in ("recommended", "reviewing", "approved", "rejected")
    }
    assert {d.year for d in designations} == {2023, 2024, 2025, 2026}
    for d in designations:
        if d.kind == "zone":
            assert d.name and d.region_city and d.opportunities
        elif d.kind == "project":
            assert d.opportunity.stage == ScenarioStage.DEMONSTRATION
            assert {o.organization_id for o in d.organizations} == lifecycle.delivering_organization_ids(
                d.opportunity_id
            )
        else:
            assert d.organization.kind in ("enterprise", "research", "service")
        decided = d.status in ("approved", "rejected")
        assert (d.decided_by_id is not None) is decided and (d.decided_at is not None) is decided
    targets = {(t.year, t.kind, t.cumulative): t.target for t in db.session.scalars(select(ProgrammeTarget))}
    assert targets[(2025, "zone", True)] == 50
    assert targets[(2025, "project", True)] == 300
    assert targets[(2025, "firm", True)] == 3000
    for year in range(2022, 2027):
        assert targets[(year, "zone", False)] == 10 and targets[(year, "project", False)] == 60


def check_the_demo_firm_hears_about_its_need_moving(db) -> None:
    firm = db.session.scalar(select(User).where(User.email == "firm@demo.jxcj.cn"))
    kinds = set(db.session.scalars(select(Notification.kind).where(Notification.user_id == firm.id)))
    assert {"stage_changed", "signing"} <= kinds


def test_the_seeded_programme_follows_the_rules(app, db):
    """One load (seeding is the slow part), checked section by section."""
    load_seeds(app.config["SEEDS_DIR"])
    check_needs_are_seeded_at_every_stage_with_histories_that_follow_the_rules(db)
    check_signings_are_seeded_with_parties_products_and_events(db)
    check_stage_history_spans_several_years_consistent_with_batches(db)
    check_signings_on_shortlists_are_in_the_shortlist_history(db)
    check_two_labs_with_links_made_in_rnd_or_pilot(db)
    check_designations_of_every_kind_and_status_and_the_targets(db)
    check_the_demo_firm_hears_about_its_need_moving(db)

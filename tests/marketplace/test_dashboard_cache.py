"""The funnel and the activity cubes are kept per data version: a repeated dashboard reads them
from the cache, and any ORM change to what they read (a response, a shortlist entry, a meeting, a
signing, a stage step, a designation, a need), or a bulk publication, recomputes them."""

from __future__ import annotations

from datetime import date

from sqlalchemy import select

from marketplace.models import (
    Designation,
    DesignationStatus,
    EntryStatus,
    IndexState,
    Opportunity,
    Response,
    ResponseStatus,
    Signing,
)
from marketplace.services import dashboard as service
from marketplace.services import index_sync
from tests.marketplace.test_dashboard import _count_queries, corpus, frozen, rows  # noqa: F401

ALL = service.Filters()


def _counts(fig: service.Figure) -> list[int]:
    return [row[1] for row in fig.rows]


def test_a_second_dashboard_reads_the_funnel_and_cubes_from_the_cache(corpus, db):  # noqa: F811
    first = service.dashboard(ALL)
    cold = _count_queries(db, lambda: service.dashboard(service.Filters(city="南昌市")))
    warm = _count_queries(db, lambda: service.dashboard(service.Filters(city="南昌市")))
    assert warm < cold
    again = service.dashboard(ALL)
    assert [(f.key, f.rows) for f in again] == [(f.key, f.rows) for f in first]


def test_cached_figures_are_copies(corpus):  # noqa: F811
    fig = service.funnel(ALL)
    fig.rows[0][1] = 999
    assert service.funnel(ALL).rows[0][1] == 4


def test_a_new_signing_moves_the_funnel_and_the_signing_cube(corpus, db):  # noqa: F811
    assert _counts(service.funnel(ALL))[4] == 2
    assert rows(service.by_city(ALL))["南昌市"][3] == 1
    db.session.add(Signing(opportunity_id=corpus["n2"].id, signed_on=date(2026, 4, 1), title="二期"))
    db.session.commit()
    assert _counts(service.funnel(ALL))[4] == 3
    assert rows(service.by_city(ALL))["南昌市"][3] == 2


def test_a_response_status_change_moves_the_funnel(corpus, db):  # noqa: F811
    assert service.funnel(ALL).rows[1][4] == 4.5  # median of N1 (5 days) and N2 (4 days)
    response = db.session.scalar(select(Response).where(Response.opportunity_id == corpus["n2"].id,
                                                        Response.status == ResponseStatus.SUBMITTED))
    response.status = ResponseStatus.WITHDRAWN
    db.session.commit()
    assert service.funnel(ALL).rows[1][4] == 5.0  # N2 has no live answer any more


def test_a_designation_decision_moves_the_cubes(corpus, db):  # noqa: F811
    assert rows(service.by_city(ALL))["九江市"][5] == 0
    firm = db.session.scalar(select(Designation).where(Designation.status == DesignationStatus.RECOMMENDED))
    firm.status = DesignationStatus.APPROVED
    db.session.commit()
    assert rows(service.by_city(ALL))["九江市"][5] == 1


def test_a_rolled_back_change_does_not_move_the_version(corpus, db):  # noqa: F811
    service.funnel(ALL)
    version = db.session.scalar(select(IndexState.version).where(IndexState.name == service.DATA_VERSION))
    corpus["n2"].stage = "rnd"
    db.session.flush()
    db.session.rollback()
    db.session.commit()
    assert db.session.scalar(
        select(IndexState.version).where(IndexState.name == service.DATA_VERSION)) == version


def test_a_bulk_publication_moves_the_funnel_through_the_public_counter(corpus, db):  # noqa: F811
    assert _counts(service.funnel(ALL))[0] == 4
    draft = db.session.scalar(select(Opportunity).where(Opportunity.status == EntryStatus.DRAFT))
    db.session.execute(Opportunity.__table__.update().where(Opportunity.id == draft.id)
                       .values(status=EntryStatus.PUBLISHED, published_at=corpus["n1"].published_at))
    index_sync.bump()  # what every publishing service does
    db.session.commit()
    assert _counts(service.funnel(ALL))[0] == 5

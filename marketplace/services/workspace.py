"""Read-only queries of a member's workspace: their organization's entries and their history,
and what each kind of organization lands on (firms: 「适合我的机会」 across their products and
their responses; departments: their published needs with the best candidate products).

Every entry state is visible here (drafts included) because these lists are only ever shown to
the owning organization; the public portal uses :mod:`marketplace.services.portal` instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from flask_sqlalchemy.pagination import Pagination
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from marketplace.extensions import db
from marketplace.models import (
    AuditEvent,
    EntryKind,
    EntryStatus,
    Opportunity,
    Organization,
    Product,
    Response,
    User,
)
from marketplace.services.audit import audit_query
from marketplace.services.entries import MODELS, Entry, model_for
from matching.engine import Hit

if TYPE_CHECKING:
    from marketplace.services.matching import MatchResult

#: How many audit events the entry page shows.
HISTORY_LIMIT = 50


def _owner_column(model: type[Opportunity] | type[Product]):
    return model.publisher_id if model is Opportunity else model.owner_id


def organization_entries(
    kind: str, organization: Organization, status: str | None, page: int, per_page: int
) -> Pagination:
    """One page of the organization's entries of ``kind``, most recently updated first.

    ``status`` (an :class:`EntryStatus` value or None for all) must be validated by the caller.
    """
    model = model_for(kind)
    stmt = (
        select(model)
        .where(_owner_column(model) == organization.id)
        .options(selectinload(model.batch))
        .order_by(model.updated_at.desc(), model.id.desc())
    )
    if status is not None:
        stmt = stmt.where(model.status == status)
    return db.paginate(stmt, page=page, per_page=per_page, error_out=False, count=True)


def status_counts(organization: Organization) -> dict[str, dict[str, int]]:
    """``{kind: {status: n}}`` for every kind and every status (zeros included)."""
    counts: dict[str, dict[str, int]] = {}
    for kind, model in MODELS.items():
        counts[kind] = {s.value: 0 for s in EntryStatus}
        rows = db.session.execute(
            select(model.status, func.count())
            .where(_owner_column(model) == organization.id)
            .group_by(model.status)
        )
        for status, n in rows:
            counts[kind][status] = n
    return counts


def entry_history(entry: Entry) -> list[AuditEvent]:
    """The entry's audit trail, newest first, with the actors loaded."""
    stmt = (
        audit_query(object_type=entry.__tablename__, object_id=entry.id)
        .options(selectinload(AuditEvent.actor))
        .limit(HISTORY_LIMIT)
    )
    return list(db.session.scalars(stmt))


# ---------------------------------------------------------------- landing page by kind of organization

#: How many of a firm's published products feed 「适合我的机会」, and hits kept per product.
FIT_PRODUCTS = 8
FIT_PER_PRODUCT = 5
#: Needs shown with their candidate products on a department's landing page.
NEEDS_WITH_CANDIDATES = 4
CANDIDATES_PER_NEED = 3


@dataclass
class Fit:
    """An open need that fits some of the firm's products: the best hit and which products."""

    opportunity: Opportunity
    hit: Hit
    products: list[Product] = field(default_factory=list)
    responded: bool = False


@dataclass
class NeedCandidates:
    """A department's published need, its best candidate products and its response count."""

    opportunity: Opportunity
    candidates: list[MatchResult]
    responses: int


def landing_tab(organization: Organization) -> str:
    """The list a member lands on: firms (product owners) on products, others on needs."""
    return "products" if organization.can_own_products else "opportunities"


def _published(model, organization: Organization, limit: int) -> list:
    return list(
        db.session.scalars(
            select(model)
            .where(_owner_column(model) == organization.id, model.status == EntryStatus.PUBLISHED)
            .order_by(model.published_at.desc(), model.id.desc())
            .limit(limit)
        )
    )


def fitting_opportunities(organization: Organization, limit: int = 6) -> list[Fit]:
    """「适合我的机会」 across the firm's published products: open needs, best first.

    Each need appears once, with the best of its hits and every product of the firm that it
    fits; needs the organization already answers are marked ``responded``.
    """
    if not organization.can_own_products:
        return []
    from marketplace.services import matching, responses
    from marketplace.services.matching.checks import build_filters

    filters = build_filters(EntryKind.OPPORTUNITY, include_closed=False)
    fits: dict[int, Fit] = {}
    for product in _published(Product, organization, FIT_PRODUCTS):
        for result in matching.opportunities_for_product(product, FIT_PER_PRODUCT, filters):
            if result.entry.publisher_id == organization.id:
                continue
            fit = fits.get(result.entry.id)
            if fit is None:
                fit = fits[result.entry.id] = Fit(opportunity=result.entry, hit=result.hit)
            elif result.hit.score > fit.hit.score:
                fit.hit = result.hit
            fit.products.append(product)
    ranked = sorted(fits.values(), key=lambda f: (-f.hit.score, f.opportunity.id))[:limit]
    for fit in ranked:
        fit.responded = responses.live_response(organization.id, fit.opportunity.id) is not None
    return ranked


def needs_with_candidates(organization: Organization) -> list[NeedCandidates]:
    """The department's most recent published needs with their top candidate products."""
    from marketplace.services import matching, responses

    needs = _published(Opportunity, organization, NEEDS_WITH_CANDIDATES)
    counts = responses.response_counts(n.id for n in needs)
    return [
        NeedCandidates(
            opportunity=need,
            candidates=matching.products_for_opportunity(need, CANDIDATES_PER_NEED),
            responses=counts.get(need.id, 0),
        )
        for need in needs
    ]


def recent_responses(user: User, limit: int = 5) -> list[Response]:
    """The organization's latest responses (企业答题), newest first."""
    from marketplace.services import responses

    return responses.my_responses(user)[:limit]

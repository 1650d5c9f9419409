"""Read-only queries of a member's workspace: their organization's entries and their history.

Every entry state is visible here (drafts included) because these lists are only ever shown to
the owning organization; the public portal uses :mod:`marketplace.services.portal` instead.
"""

from __future__ import annotations

from flask_sqlalchemy.pagination import Pagination
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from marketplace.extensions import db
from marketplace.models import AuditEvent, EntryStatus, Opportunity, Organization, Product
from marketplace.services.audit import audit_query
from marketplace.services.entries import MODELS, Entry, model_for

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

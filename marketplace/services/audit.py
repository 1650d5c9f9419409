"""Writing and reading the audit trail."""

from __future__ import annotations

from sqlalchemy import Select, select

from marketplace.extensions import db
from marketplace.models import AuditEvent, User


def record(actor: User | None, action: str, obj: object, summary: str = "") -> AuditEvent:
    """Add an audit event for the model ``obj`` to the session.

    It is committed together with the change it describes, so the log never claims a change
    that was rolled back.
    """
    event = AuditEvent(
        actor_id=actor.id if actor is not None else None,
        action=action,
        object_type=obj.__tablename__,
        object_id=getattr(obj, "id", None),
        summary=summary[:500],
    )
    db.session.add(event)
    return event


def audit_query(
    object_type: str | None = None,
    object_id: int | None = None,
    actor_id: int | None = None,
    action: str | None = None,
) -> Select:
    """Newest-first audit events, filtered by object and actor."""
    stmt = select(AuditEvent).order_by(AuditEvent.created_at.desc(), AuditEvent.id.desc())
    if object_type:
        stmt = stmt.where(AuditEvent.object_type == object_type)
    if object_id is not None:
        stmt = stmt.where(AuditEvent.object_id == object_id)
    if actor_id is not None:
        stmt = stmt.where(AuditEvent.actor_id == actor_id)
    if action:
        stmt = stmt.where(AuditEvent.action == action)
    return stmt

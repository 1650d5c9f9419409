"""Batches (清单批次): creation and publication."""

from __future__ import annotations

from datetime import date

from sqlalchemy import func, select, update

from marketplace import timeutil
from marketplace.extensions import db
from marketplace.models import Batch, BatchStatus, EntryKind, EntryStatus, User
from marketplace.models.base import utcnow
from marketplace.services import audit, index_sync, notifications
from marketplace.services.accounts import require_staff
from marketplace.services.entries import model_for
from marketplace.services.errors import InvalidTransition, NotFound, ValidationFailed


def get_batch(batch_id: int) -> Batch:
    batch = db.session.get(Batch, batch_id)
    if batch is None:
        raise NotFound("批次不存在")
    return batch


def create_batch(actor: User, kind: str, title: str, description: str = "") -> Batch:
    require_staff(actor)
    errors = {}
    if kind not in {k.value for k in EntryKind}:
        errors["kind"] = "清单类型无效"
    title = (title or "").strip()
    if len(title) < 4:
        errors["title"] = "批次名称至少4个字"
    elif db.session.scalar(select(Batch.id).where(Batch.title == title)) is not None:
        errors["title"] = "已有同名批次"
    if errors:
        raise ValidationFailed(errors)
    batch = Batch(kind=kind, title=title, description=(description or "").strip(),
                  status=BatchStatus.COLLECTING)
    db.session.add(batch)
    db.session.flush()
    audit.record(actor, "batch.create", batch, f"新建批次「{title}」")
    db.session.commit()
    return batch


def entry_counts(batch: Batch) -> dict[str, int]:
    """Number of entries in the batch per status."""
    model = model_for(batch.kind)
    rows = db.session.execute(
        select(model.status, func.count()).where(model.batch_id == batch.id).group_by(model.status)
    )
    return {status: n for status, n in rows}


def publish_batch(actor: User, batch: Batch, on: date | None = None) -> int:
    """Publish every approved entry of the batch; returns how many became public."""
    require_staff(actor)
    if batch.status != BatchStatus.COLLECTING:
        raise InvalidTransition("该批次已发布")
    model = model_for(batch.kind)
    now = utcnow()
    result = db.session.execute(
        update(model)
        .where(model.batch_id == batch.id, model.status == EntryStatus.APPROVED)
        .values(status=EntryStatus.PUBLISHED, published_at=now, updated_at=now)
        .execution_options(synchronize_session="fetch")
    )
    if result.rowcount == 0:
        db.session.rollback()
        raise InvalidTransition("批次中没有已入选的条目，不能发布空批次")
    batch.status = BatchStatus.PUBLISHED
    batch.published_on = on or timeutil.local_today()
    audit.record(actor, "batch.publish", batch, f"发布批次「{batch.title}」，共{result.rowcount}条")
    published = db.session.scalars(
        select(model).where(model.batch_id == batch.id, model.status == EntryStatus.PUBLISHED)
    )
    notifications.batch_published(batch, published)
    index_sync.bump()
    _request_encoding()
    db.session.commit()
    return result.rowcount


def _request_encoding() -> None:
    """Queue the background encoding of the new public entries once this commits."""
    from marketplace.services.matching import request_encoding

    request_encoding()


def open_batches(kind: str) -> list[Batch]:
    return list(
        db.session.scalars(
            select(Batch)
            .where(Batch.kind == kind, Batch.status == BatchStatus.COLLECTING)
            .order_by(Batch.created_at)
        )
    )


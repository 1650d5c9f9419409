"""Bulk review: approve several submitted entries into one open batch (审核队列「批量通过」).

All or nothing, in one transaction: every selected entry is checked with the same rules as a
single approval (:func:`marketplace.services.entries.stage_approval`: organizer or admin, entry
still 「待审核」, batch open and of the same kind). If any entry fails, nothing changes and the
error names each entry and why, so the organizer can untick it and confirm again. Each entry gets
its own audit event and notification, as when approved one by one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select

from marketplace.extensions import db
from marketplace.models import Batch, User
from marketplace.services import entries
from marketplace.services.accounts import require_staff
from marketplace.services.errors import DomainError, ValidationFailed

#: More than this many entries at once is refused (a page of the queue is far fewer).
MAX_BULK = 200


@dataclass(frozen=True)
class BulkSelection:
    """What the organizer ticked: the entries (of the batch's kind) and the batch."""

    kind: str
    batch: Batch
    entries: list[entries.Entry]


def parse_ids(values: Iterable[str]) -> list[int]:
    """Entry ids from the submitted checkboxes; anything that is not an id is a 400-type error."""
    ids: list[int] = []
    for value in values:
        text = str(value).strip()
        if not text.isdigit() or len(text) > 9:
            raise ValidationFailed({"entries": "所选条目无效，请刷新页面后重新选择"})
        if int(text) not in ids:
            ids.append(int(text))
    return ids


def select_for_bulk(actor: User, kind: str, ids: list[int], batch_id: int | None) -> BulkSelection:
    """Load and check the selection before the confirmation page; raises on any problem."""
    require_staff(actor)
    model = entries.model_for(kind)
    errors: dict[str, str] = {}
    if not ids:
        errors["entries"] = "请至少勾选一个待审核条目"
    elif len(ids) > MAX_BULK:
        errors["entries"] = f"一次最多批量通过{MAX_BULK}个条目"
    batch = db.session.get(Batch, batch_id) if batch_id else None
    if batch is None:
        errors["batch_id"] = "请选择入选批次"
    elif batch.kind != kind:
        errors["batch_id"] = "请选择同类清单的批次"
    elif not batch.is_open:
        errors["batch_id"] = "该批次已发布，不能再加入条目"
    if errors:
        raise ValidationFailed(errors)
    found = {e.id: e for e in db.session.scalars(select(model).where(model.id.in_(ids)))}
    missing = [i for i in ids if i not in found]
    if missing:
        raise ValidationFailed({"entries": "部分所选条目不存在，请刷新页面后重新选择"})
    return BulkSelection(kind=kind, batch=batch, entries=[found[i] for i in ids])


def bulk_approve(actor: User, kind: str, ids: list[int], batch_id: int | None) -> BulkSelection:
    """Approve every selected entry into the batch in one transaction, or none of them."""
    selection = select_for_bulk(actor, kind, ids, batch_id)
    problems: list[str] = []
    for entry in selection.entries:
        try:
            entries.stage_approval(actor, entry, selection.batch, summary="批量审核通过")
        except DomainError as exc:
            problems.append(f"「{entry.display_name}」：{exc.message}")
    if problems:
        db.session.rollback()
        raise ValidationFailed({"entries": "以下条目不能审核通过，均未处理：" + "；".join(problems)})
    db.session.commit()
    return selection

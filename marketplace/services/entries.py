"""The lifecycle of list entries (机会清单 and 产品清单).

::

    draft ──submit──> submitted ──approve(batch)──> approved ──publish batch──> published
      ^                  │   ^                          │
      │               return │ resubmit              return
      │                  v   │                          v
      │               returned <────────────────────────┘
      └──restore── withdrawn <──withdraw── (any state but withdrawn)

Editing a published entry does not touch the public row: the change is stored as an
:class:`EntryRevision` awaiting review, and copied onto the entry when an organizer approves it.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from marketplace import timeutil
from marketplace.extensions import db
from marketplace.models import (
    Batch,
    CooperationMode,
    EntryKind,
    EntryRevision,
    EntryStatus,
    Maturity,
    Opportunity,
    Product,
    ProductField,
    ProductTag,
    RevisionStatus,
    Tier,
    User,
)
from marketplace.models.base import utcnow
from marketplace.reference import reference
from marketplace.services import audit, index_sync, notifications
from marketplace.services.accounts import require_staff
from marketplace.services.errors import (
    DomainError,
    InvalidTransition,
    NotFound,
    PermissionDenied,
    ValidationFailed,
)

Entry = Opportunity | Product

MODELS: dict[str, type[Opportunity] | type[Product]] = {
    EntryKind.OPPORTUNITY: Opportunity,
    EntryKind.PRODUCT: Product,
}
OPPORTUNITY_FIELDS = (
    "title", "description", "field_category", "tier", "region_city", "region_county",
    "budget_min", "budget_max", "cooperation_modes", "deadline", "contact_name", "contact_phone",
)
PRODUCT_FIELDS = (
    "name", "description", "fields", "tags", "maturity", "cases", "region_city", "region_county",
)
MIN_DESCRIPTION = 20
MAX_DESCRIPTION = 5000
MAX_PRODUCT_FIELDS = 5
MAX_TAGS = 8
#: Statuses the owner may edit in place.
EDITABLE_IN_PLACE = {EntryStatus.DRAFT, EntryStatus.RETURNED, EntryStatus.WITHDRAWN}
PENDING_REVISION = (RevisionStatus.SUBMITTED, RevisionStatus.RETURNED)


# ---------------------------------------------------------------- lookup and permissions


def model_for(kind: str) -> type[Opportunity] | type[Product]:
    try:
        return MODELS[kind]
    except KeyError:
        raise NotFound("清单类型不存在") from None


def get_entry(kind: str, entry_id: int) -> Entry:
    model = model_for(kind)
    options = [selectinload(Product.field_rows), selectinload(Product.tag_rows)] if model is Product else []
    entry = db.session.get(model, entry_id, options=options)
    if entry is None:
        raise NotFound("条目不存在")
    return entry


def is_owner(user: User | None, entry: Entry) -> bool:
    return bool(
        user is not None
        and user.is_authenticated
        and user.organization_id is not None
        and user.organization_id == entry.owner_id
    )


def can_view(user: User | None, entry: Entry) -> bool:
    """Published entries are public; everything else only for the owner and organizers."""
    if entry.status == EntryStatus.PUBLISHED:
        return True
    return is_owner(user, entry) or bool(user is not None and user.is_authenticated and user.is_staff)


def require_view(user: User | None, entry: Entry) -> None:
    if not can_view(user, entry):
        # Hide the existence of unpublished entries from outsiders.
        raise NotFound("条目不存在")


def require_owner(user: User | None, entry: Entry) -> None:
    if not is_owner(user, entry):
        raise PermissionDenied("只能操作本单位的条目")


# ---------------------------------------------------------------- validation


def _decimal(value: Any, field: str, errors: dict[str, str]) -> Decimal | None:
    if value in (None, ""):
        return None
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        errors[field] = "请输入数字"
        return None
    if not number.is_finite() or number < 0 or number > Decimal("9999999999"):
        errors[field] = "金额应为不小于0的合理数值"
        return None
    return number.quantize(Decimal("0.01"))


def _text(data: dict, field: str, errors: dict[str, str], label: str, lo: int, hi: int) -> str:
    value = (data.get(field) or "").strip()
    if len(value) < lo:
        errors[field] = f"{label}至少{lo}个字" if lo > 1 else f"请填写{label}"
    elif len(value) > hi:
        errors[field] = f"{label}不能超过{hi}个字"
    return value


def _region(data: dict, errors: dict[str, str]) -> tuple[str, str | None]:
    city = data.get("region_city") or ""
    county = data.get("region_county") or None
    if not reference().is_valid_region(city, county):
        errors["region_city" if city not in reference().city_counties else "region_county"] = (
            "所在地区无效"
        )
    return city, county


def clean_opportunity(data: dict, today: date | None = None) -> dict:
    """Check the business rules of an opportunity and return normalized values."""
    errors: dict[str, str] = {}
    out: dict[str, Any] = {
        "title": _text(data, "title", errors, "标题", 4, 120),
        "description": _text(data, "description", errors, "需求描述", MIN_DESCRIPTION, MAX_DESCRIPTION),
        "contact_name": _text(data, "contact_name", errors, "联系人", 1, 50),
        "contact_phone": _text(data, "contact_phone", errors, "联系电话", 1, 30),
    }
    category = data.get("field_category") or ""
    if reference().area_of(category) is None:
        errors["field_category"] = "请选择有效的应用领域"
    out["field_category"] = category
    out["field_area"] = reference().area_of(category)
    tier = data.get("tier") or ""
    if tier not in {t.value for t in Tier}:
        errors["tier"] = "请选择有效的场景层级"
    out["tier"] = tier
    out["region_city"], out["region_county"] = _region(data, errors)
    lo = _decimal(data.get("budget_min"), "budget_min", errors)
    hi = _decimal(data.get("budget_max"), "budget_max", errors)
    if lo is not None and hi is not None and lo > hi:
        errors["budget_max"] = "预算上限不能低于预算下限"
    out["budget_min"], out["budget_max"] = lo, hi
    modes = list(dict.fromkeys(data.get("cooperation_modes") or []))
    valid_modes = {m.value for m in CooperationMode}
    if not modes:
        errors["cooperation_modes"] = "请至少选择一种合作方式"
    elif any(m not in valid_modes for m in modes):
        errors["cooperation_modes"] = "合作方式无效"
    out["cooperation_modes"] = modes
    deadline = data.get("deadline")
    if deadline is not None and not isinstance(deadline, date):
        errors["deadline"] = "日期格式无效"
    elif deadline is not None and deadline < (today or timeutil.local_today()):
        errors["deadline"] = "答题截止日期不能早于今天"
    out["deadline"] = deadline
    if errors:
        raise ValidationFailed(errors)
    return out


def clean_product(data: dict) -> dict:
    """Check the business rules of a product and return normalized values."""
    errors: dict[str, str] = {}
    out: dict[str, Any] = {
        "name": _text(data, "name", errors, "产品名称", 2, 120),
        "description": _text(data, "description", errors, "产品介绍", MIN_DESCRIPTION, MAX_DESCRIPTION),
        "cases": _text(data, "cases", errors, "典型案例", 0, MAX_DESCRIPTION),
    }
    fields = list(dict.fromkeys(data.get("fields") or []))
    if not fields:
        errors["fields"] = "请至少选择一个应用领域"
    elif len(fields) > MAX_PRODUCT_FIELDS:
        errors["fields"] = f"应用领域最多选择{MAX_PRODUCT_FIELDS}个"
    elif any(reference().area_of(f) is None for f in fields):
        errors["fields"] = "应用领域无效"
    out["fields"] = fields
    tags = list(dict.fromkeys(data.get("tags") or []))
    if len(tags) > MAX_TAGS:
        errors["tags"] = f"技术标签最多选择{MAX_TAGS}个"
    elif any(t not in reference().tags for t in tags):
        errors["tags"] = "技术标签无效"
    out["tags"] = tags
    maturity = data.get("maturity") or ""
    if maturity not in {m.value for m in Maturity}:
        errors["maturity"] = "请选择有效的成熟度"
    out["maturity"] = maturity
    out["region_city"], out["region_county"] = _region(data, errors)
    if errors:
        raise ValidationFailed(errors)
    return out


def clean(kind: str, data: dict) -> dict:
    return clean_opportunity(data) if kind == EntryKind.OPPORTUNITY else clean_product(data)


# ---------------------------------------------------------------- applying values


def _apply(entry: Entry, values: dict) -> None:
    """Copy cleaned values onto the entry row (and a product's field and tag rows)."""
    for key, value in values.items():
        if key == "fields":
            entry.field_rows = [
                ProductField(category=c, area=reference().area_of(c)) for c in value
            ]
        elif key == "tags":
            entry.tag_rows = [ProductTag(tag=t) for t in value]
        else:
            setattr(entry, key, value)
    entry.updated_at = utcnow()


def _to_json(values: dict) -> dict:
    out = {}
    for key, value in values.items():
        if isinstance(value, Decimal):
            value = str(value)
        elif isinstance(value, date):
            value = value.isoformat()
        out[key] = value
    return out


def _from_json(kind: str, data: dict) -> dict:
    out = dict(data)
    for key in ("budget_min", "budget_max"):
        if out.get(key) is not None:
            out[key] = Decimal(out[key])
    if out.get("deadline"):
        out["deadline"] = date.fromisoformat(out["deadline"])
    return out


def current_values(entry: Entry) -> dict:
    """The editable values of an entry as stored on its row."""
    if entry.kind == EntryKind.PRODUCT:
        values = {f: getattr(entry, f) for f in PRODUCT_FIELDS if f not in ("fields", "tags")}
        values["fields"] = entry.categories
        values["tags"] = entry.tags
        return values
    return {f: getattr(entry, f) for f in OPPORTUNITY_FIELDS}


def pending_revision(entry: Entry) -> EntryRevision | None:
    return db.session.scalar(
        select(EntryRevision)
        .where(
            EntryRevision.entry_kind == entry.kind,
            EntryRevision.entry_id == entry.id,
            EntryRevision.status.in_(PENDING_REVISION),
        )
        .order_by(EntryRevision.id.desc())
    )


def editable_values(entry: Entry) -> dict:
    """What the owner's edit form shows: the pending change if there is one."""
    revision = pending_revision(entry)
    if revision is not None:
        return _from_json(entry.kind, revision.data)
    return current_values(entry)


# ---------------------------------------------------------------- owner actions


def _require_member(actor: User | None) -> None:
    if actor is None or not actor.is_authenticated or actor.organization is None:
        raise PermissionDenied("只有单位用户可以创建清单条目")


def create_entry(actor: User, kind: str, data: dict) -> Entry:
    """Create a draft for the actor's own organization."""
    _require_member(actor)
    model = model_for(kind)
    if model is Product and not actor.organization.can_own_products:
        raise PermissionDenied("只有企业、科研院所和服务机构可以发布产品")
    values = clean(kind, data)
    owner_key = "publisher_id" if model is Opportunity else "owner_id"
    entry = model(status=EntryStatus.DRAFT, created_by_id=actor.id, **{owner_key: actor.organization_id})
    _apply(entry, values)
    db.session.add(entry)
    db.session.flush()
    audit.record(actor, "entry.create", entry, f"新建「{entry.display_name}」")
    db.session.commit()
    return entry


def update_entry(actor: User, entry: Entry, data: dict) -> EntryRevision | None:
    """Edit an entry. Returns the revision when the entry was published (it goes to review)."""
    require_owner(actor, entry)
    values = clean(entry.kind, data)
    if entry.status in EDITABLE_IN_PLACE:
        restored = entry.status == EntryStatus.WITHDRAWN
        if restored:
            entry.status = EntryStatus.DRAFT
            entry.batch_id = None
        _apply(entry, values)
        audit.record(
            actor, "entry.update", entry, "修改内容" + ("并恢复为草稿" if restored else "")
        )
        db.session.commit()
        return None
    if entry.status == EntryStatus.PUBLISHED:
        _require_verified(actor)
        revision = pending_revision(entry)
        if revision is None:
            revision = EntryRevision(entry_kind=entry.kind, entry_id=entry.id, data={})
            db.session.add(revision)
        revision.data = _to_json(values)
        revision.status = RevisionStatus.SUBMITTED
        revision.review_comment = None
        revision.created_by_id = actor.id
        revision.updated_at = utcnow()
        db.session.flush()
        audit.record(actor, "revision.submit", entry, "修改已发布条目，提交审核（公开页面仍显示原内容）")
        db.session.commit()
        return revision
    raise InvalidTransition("审核中的条目不能修改；如需修改，请先撤回")


def _require_verified(actor: User) -> None:
    if not actor.organization.verified:
        raise DomainError("本单位尚未通过组织方认证，暂不能提交审核")


def submit(actor: User, entry: Entry) -> None:
    require_owner(actor, entry)
    if entry.status not in (EntryStatus.DRAFT, EntryStatus.RETURNED):
        raise InvalidTransition(f"「{entry.status_label}」状态的条目不能提交审核")
    _require_verified(actor)
    entry.status = EntryStatus.SUBMITTED
    entry.submitted_at = utcnow()
    audit.record(actor, "entry.submit", entry, "提交审核")
    db.session.commit()


def withdraw(actor: User, entry: Entry) -> None:
    """The owner takes the entry back, from any state; a published one leaves the public lists."""
    require_owner(actor, entry)
    if entry.status == EntryStatus.WITHDRAWN:
        raise InvalidTransition("该条目已撤回")
    was_public = entry.status == EntryStatus.PUBLISHED
    if entry.status == EntryStatus.APPROVED:
        entry.batch_id = None
    entry.status = EntryStatus.WITHDRAWN
    revision = pending_revision(entry)
    if revision is not None:
        revision.status = RevisionStatus.DISCARDED
    audit.record(actor, "entry.withdraw", entry, "撤回" + ("（已从公开清单移除）" if was_public else ""))
    if was_public:
        index_sync.bump()
    db.session.commit()


def restore(actor: User, entry: Entry) -> None:
    """A withdrawn entry becomes a draft again."""
    require_owner(actor, entry)
    if entry.status != EntryStatus.WITHDRAWN:
        raise InvalidTransition("只有已撤回的条目可以恢复为草稿")
    entry.status = EntryStatus.DRAFT
    entry.batch_id = None
    audit.record(actor, "entry.restore", entry, "恢复为草稿")
    db.session.commit()


# ---------------------------------------------------------------- organizer actions


def approve(actor: User, entry: Entry, batch: Batch) -> None:
    """Accept a submitted entry into an open batch of the same kind."""
    stage_approval(actor, entry, batch)
    db.session.commit()


def stage_approval(actor: User, entry: Entry, batch: Batch, summary: str = "审核通过") -> None:
    """:func:`approve` without the commit, so that several approvals can share one transaction
    (``services.review.bulk_approve``). Raises before changing anything when a rule is broken."""
    require_staff(actor)
    if entry.status != EntryStatus.SUBMITTED:
        raise InvalidTransition(f"「{entry.status_label}」状态的条目不能审核通过")
    if batch is None or batch.kind != entry.kind:
        raise DomainError("请选择同类清单的批次")
    if not batch.is_open:
        raise InvalidTransition("该批次已发布，不能再加入条目")
    entry.status = EntryStatus.APPROVED
    entry.batch_id = batch.id
    entry.review_comment = None
    audit.record(actor, "entry.approve", entry, f"{summary}，入选「{batch.title}」")
    notifications.entry_approved(entry, batch)


def return_entry(actor: User, entry: Entry, comment: str) -> None:
    """Send a submitted (or approved, not yet published) entry back to its owner."""
    require_staff(actor)
    if entry.status not in (EntryStatus.SUBMITTED, EntryStatus.APPROVED):
        raise InvalidTransition(f"「{entry.status_label}」状态的条目不能退回")
    comment = (comment or "").strip()
    if not comment:
        raise ValidationFailed({"comment": "请填写退回意见"})
    entry.status = EntryStatus.RETURNED
    entry.batch_id = None
    entry.review_comment = comment[:2000]
    audit.record(actor, "entry.return", entry, f"退回修改：{comment[:200]}")
    notifications.entry_returned(entry, entry.review_comment)
    db.session.commit()


def get_revision(revision_id: int) -> EntryRevision:
    revision = db.session.get(EntryRevision, revision_id)
    if revision is None:
        raise NotFound("修改记录不存在")
    return revision


def approve_revision(actor: User, revision: EntryRevision) -> Entry:
    require_staff(actor)
    if revision.status != RevisionStatus.SUBMITTED:
        raise InvalidTransition(f"「{revision.status_label}」的修改不能审核通过")
    entry = get_entry(revision.entry_kind, revision.entry_id)
    if entry.status != EntryStatus.PUBLISHED:
        raise InvalidTransition("条目已不在公开清单中，该修改无法生效")
    _apply(entry, _from_json(entry.kind, revision.data))
    revision.status = RevisionStatus.APPROVED
    revision.reviewed_by_id = actor.id
    revision.reviewed_at = utcnow()
    audit.record(actor, "revision.approve", entry, "修改审核通过，公开内容已更新")
    index_sync.bump()
    _request_encoding()  # the public text changed: its vector is encoded in the background
    db.session.commit()
    return entry


def _request_encoding() -> None:
    """Queue the background encoding of changed public texts once this commits (imported
    here: the matching service imports this module)."""
    from marketplace.services.matching import request_encoding

    request_encoding()


def return_revision(actor: User, revision: EntryRevision, comment: str) -> None:
    require_staff(actor)
    if revision.status != RevisionStatus.SUBMITTED:
        raise InvalidTransition(f"「{revision.status_label}」的修改不能退回")
    comment = (comment or "").strip()
    if not comment:
        raise ValidationFailed({"comment": "请填写退回意见"})
    revision.status = RevisionStatus.RETURNED
    revision.review_comment = comment[:2000]
    revision.reviewed_by_id = actor.id
    revision.reviewed_at = utcnow()
    entry = get_entry(revision.entry_kind, revision.entry_id)
    audit.record(actor, "revision.return", entry, f"修改被退回：{comment[:200]}")
    db.session.commit()


def review_queue(kind: str | None = None) -> tuple[list[Entry], list[EntryRevision]]:
    """Submitted entries and submitted revisions, oldest first."""
    entries: list[Entry] = []
    for k, model in MODELS.items():
        if kind and k != kind:
            continue
        owner = model.publisher if model is Opportunity else model.owner
        stmt = (
            select(model)
            .where(model.status == EntryStatus.SUBMITTED)
            .options(selectinload(owner))
            .order_by(model.submitted_at)
        )
        entries.extend(db.session.scalars(stmt))
    stmt = select(EntryRevision).where(EntryRevision.status == RevisionStatus.SUBMITTED)
    if kind:
        stmt = stmt.where(EntryRevision.entry_kind == kind)
    revisions = list(db.session.scalars(stmt.order_by(EntryRevision.updated_at)))
    return entries, revisions

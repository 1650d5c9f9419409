"""对接名单 (shortlists): one per (event, featured need), proposed by the engine and curated by
organizers; invitations to the firms on it; the need's publisher marks the firms it wants to meet.

* :func:`propose` merges the engine's top candidates (:data:`PROPOSAL_K` products) with the firms
  that answered the need (submitted / 入围 / 选定 responses) and the firms registered for the
  event, **grouped by firm**: each firm once, with its best products for the need and how it got
  there (:class:`ShortlistSource`: 推荐 / 已答题 / 已报名, possibly several).
* Organizers add (a firm by name, or a product), remove, move (drag-and-drop or 上移/下移), pin,
  annotate, set the target size (entries beyond it are below the line) and invite.
* **Every decision is appended to** ``ShortlistDecision`` as it happens, with the engine's view of
  the firm at that moment (:func:`engine_view`): its rank among firms in the engine's top
  candidates, its best score and each product's score, breakdown and matched terms. This is
  the training signal of a later learning-to-rank issue.

Permissions are :func:`marketplace.services.events.require` (one function for the domain).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import joinedload, selectinload

from marketplace.extensions import db
from marketplace.models import (
    DecisionAction,
    DeclineReason,
    EntryStatus,
    Event,
    EventInvitationStatus,
    NotificationKind,
    Opportunity,
    Organization,
    Product,
    Registration,
    Response,
    ResponseProduct,
    ResponseStatus,
    Shortlist,
    ShortlistDecision,
    ShortlistEntry,
    ShortlistSource,
    User,
)
from marketplace.models.base import utcnow
from marketplace.models.enums import PRODUCT_OWNER_KINDS
from marketplace.services import audit, notifications
from marketplace.services.errors import DomainError, NotFound, ValidationFailed
from marketplace.services.events import (
    INVITATION_TRANSITIONS,
    LIVE_REGISTRATION,
    MAX_NOTE,
    _reason,
    require,
    shortlist_for,
)

#: How many products the engine proposes for a need.
PROPOSAL_K = 30
#: Products shown under each firm.
PRODUCTS_PER_FIRM = 3
DEFAULT_TARGET = 8
MAX_TARGET = 200
MAX_ENTRIES = 300
#: Response statuses that put a firm on the proposal.
RESPONDED = (ResponseStatus.SUBMITTED, ResponseStatus.SHORTLISTED, ResponseStatus.SELECTED)


# ---------------------------------------------------------------- the engine's view


def _product_snapshot(result: Any, rank: int | None) -> dict[str, Any]:
    hit = result.hit
    return {
        "id": result.entry.id,
        "rank": rank,
        "score": round(float(hit.score), 6),
        "breakdown": {k: round(float(v), 6) for k, v in (hit.breakdown or {}).items()},
        "matched_terms": list(hit.matched_terms or [])[:20],
        "reason": hit.reason,
    }


def _encoder_name() -> str | None:
    from marketplace.services import matching

    try:
        return matching.encoder_name()
    except Exception:  # the name is informative only
        return None


def engine_view(opportunity: Opportunity, organization_ids: Iterable[int] = ()) -> dict[int, dict]:
    """What the engine proposes for ``opportunity``, grouped by firm.

    Firms in the engine's top :data:`PROPOSAL_K` products come first, ranked 1, 2, … by their best
    product; each of ``organization_ids`` not among them is added with ``rank`` None and its
    published products scored for the need (an organization without one has no entry).
    Returns ``{organization_id: {"rank", "score", "products": [{"id", "rank", "score",
    "breakdown", "matched_terms", "reason"}]}}`` in rank order.
    """
    from marketplace.services import matching
    from matching import Filters

    service = matching.get_service()
    firms: dict[int, dict] = {}
    for i, result in enumerate(service.products_for_opportunity(opportunity, PROPOSAL_K), start=1):
        owner_id = result.entry.owner_id
        if owner_id == opportunity.publisher_id:
            continue
        firm = firms.get(owner_id)
        if firm is None:
            firm = firms[owner_id] = {"rank": len(firms) + 1, "score": None, "products": []}
        firm["products"].append(_product_snapshot(result, i))
    missing = {int(o) for o in organization_ids} - set(firms) - {opportunity.publisher_id}
    if missing:
        ids = db.session.scalars(
            select(Product.id).where(Product.owner_id.in_(missing), Product.status == EntryStatus.PUBLISHED)
        ).all()
        if ids:
            extra = service.products_for_opportunity(
                opportunity, min(len(ids), matching.MAX_K), Filters(allowed_ids=frozenset(ids))
            )
            for result in extra:
                firm = firms.setdefault(result.entry.owner_id, {"rank": None, "score": None, "products": []})
                firm["products"].append(_product_snapshot(result, None))
    for firm in firms.values():
        firm["score"] = max((p["score"] for p in firm["products"]), default=None)
    return firms


def _snapshot(view: dict[int, dict], organization_id: int) -> dict[str, Any]:
    firm = view.get(organization_id) or {"rank": None, "score": None, "products": []}
    return {"k": PROPOSAL_K, "encoder": _encoder_name(), **firm}


# ---------------------------------------------------------------- the proposal


@dataclass
class ProposedFirm:
    """One firm of a proposal: its best products for the need and how it got there."""

    organization: Organization
    sources: list[str]
    score: float | None
    engine_rank: int | None
    products: list[dict] = field(default_factory=list)

    @property
    def source_labels(self) -> list[str]:
        return [ShortlistSource.label_of(s) for s in self.sources]


def _responded(opportunity: Opportunity) -> dict[int, list[int]]:
    """Firms that answered the need (submitted / 入围 / 选定) → the products of their answer."""
    out: dict[int, list[int]] = {}
    rows = db.session.execute(
        select(Response.organization_id, ResponseProduct.product_id)
        .outerjoin(ResponseProduct, ResponseProduct.response_id == Response.id)
        .where(Response.opportunity_id == opportunity.id, Response.status.in_(RESPONDED))
    )
    for org_id, product_id in rows:
        out.setdefault(org_id, [])
        if product_id is not None:
            out[org_id].append(product_id)
    return out


def _registered(event: Event) -> set[int]:
    return set(db.session.scalars(
        select(Registration.organization_id).where(
            Registration.event_id == event.id, Registration.status.in_(LIVE_REGISTRATION)
        )
    ))


def _pick_products(snapshot: dict | None, must: Iterable[int] = ()) -> list[dict]:
    """The firm's best products (and any in ``must``, e.g. those of its answer) for display."""
    products = sorted((snapshot or {}).get("products", []), key=lambda p: -p["score"])
    chosen = products[:PRODUCTS_PER_FIRM]
    wanted = set(must) - {p["id"] for p in chosen}
    chosen += [p for p in products if p["id"] in wanted]
    return [{"id": p["id"], "score": p["score"], "reason": p["reason"]} for p in chosen]


def propose(event: Event, opportunity: Opportunity) -> list[ProposedFirm]:
    """The merged proposal for a need at an event, grouped by firm, best first."""
    responded = _responded(opportunity)
    registered = _registered(event)
    view = engine_view(opportunity, set(responded) | registered)
    org_ids = (set(view) | set(responded) | registered) - {opportunity.publisher_id}
    organizations = {
        o.id: o for o in db.session.scalars(select(Organization).where(Organization.id.in_(org_ids)))
    }
    firms = []
    for org_id, organization in organizations.items():
        if organization.kind not in PRODUCT_OWNER_KINDS:
            continue
        snapshot = view.get(org_id)
        sources = []
        if snapshot is not None and snapshot["rank"] is not None:
            sources.append(ShortlistSource.RECOMMENDED.value)
        if org_id in responded:
            sources.append(ShortlistSource.RESPONDED.value)
        if org_id in registered:
            sources.append(ShortlistSource.REGISTERED.value)
        if not sources:
            continue
        firms.append(ProposedFirm(
            organization=organization, sources=sources,
            score=snapshot["score"] if snapshot else None,
            engine_rank=snapshot["rank"] if snapshot else None,
            products=_pick_products(snapshot, responded.get(org_id, ())),
        ))
    firms.sort(key=lambda f: (f.score is None, -(f.score or 0), f.engine_rank or 10**6, f.organization.id))
    return firms


def open_shortlist(actor: User, event: Event, opportunity_id: int) -> Shortlist:
    """Create the shortlist of a featured need from the merged proposal."""
    require(actor, "edit", event)
    featured = next((f for f in event.featured if f.opportunity_id == opportunity_id), None)
    if featured is None:
        raise NotFound("该需求不在本活动中")
    existing = shortlist_for(event.id, opportunity_id)
    if existing is not None:
        return existing
    opportunity = featured.opportunity
    firms = propose(event, opportunity)[:MAX_ENTRIES]
    shortlist = Shortlist(
        event_id=event.id, event=event, opportunity_id=opportunity.id, opportunity=opportunity,
        target_size=DEFAULT_TARGET, created_by_id=actor.id,
        proposal={
            "generated_at": utcnow().isoformat(), "k": PROPOSAL_K, "encoder": _encoder_name(),
            "firms": [
                {"organization_id": f.organization.id, "rank": i, "engine_rank": f.engine_rank,
                 "score": f.score, "sources": f.sources, "product_ids": [p["id"] for p in f.products]}
                for i, f in enumerate(firms, start=1)
            ],
        },
    )
    for position, firm in enumerate(firms, start=1):
        shortlist.entries.append(ShortlistEntry(
            organization_id=firm.organization.id, organization=firm.organization, position=position,
            sources=firm.sources, products=firm.products, score=firm.score,
        ))
    db.session.add(shortlist)
    try:
        db.session.flush()
    except IntegrityError:  # opened by another organizer in the same instant
        db.session.rollback()
        existing = shortlist_for(event.id, opportunity_id)
        if existing is None:
            raise
        return existing
    audit.record(actor, "shortlist.open", shortlist,
                 f"为「{opportunity.title}」生成对接名单（{len(firms)} 家候选）")
    db.session.commit()
    return shortlist


# ---------------------------------------------------------------- lookup and display


def get_shortlist(shortlist_id: int) -> Shortlist:
    shortlist = db.session.get(
        Shortlist, shortlist_id,
        options=[
            joinedload(Shortlist.event),
            joinedload(Shortlist.opportunity).joinedload(Opportunity.publisher),
            selectinload(Shortlist.entries).joinedload(ShortlistEntry.organization),
        ],
    )
    if shortlist is None:
        raise NotFound("对接名单不存在")
    return shortlist


def visible_shortlist(user: User | None, shortlist_id: int) -> Shortlist:
    shortlist = get_shortlist(shortlist_id)
    require(user, "view", shortlist)
    return shortlist


def get_entry(entry_id: int) -> ShortlistEntry:
    entry = db.session.get(ShortlistEntry, entry_id)
    if entry is None:
        raise NotFound("名单条目不存在")
    return entry


def ordered(shortlist: Shortlist) -> list[ShortlistEntry]:
    """The displayed order: pinned entries first, then by position."""
    return sorted(shortlist.entries, key=lambda e: (not e.pinned, e.position, e.id))


def rank_of(entry: ShortlistEntry) -> int:
    return ordered(entry.shortlist).index(entry) + 1


@dataclass
class Row:
    """One line of the shortlist page."""

    entry: ShortlistEntry
    rank: int
    above_line: bool
    products: list[tuple[Product, dict]]

    @property
    def best_score(self) -> float | None:
        scores = [info["score"] for _, info in self.products if info.get("score") is not None]
        return max(scores) if scores else None


def live_scores(opportunity: Opportunity, product_ids: set[int]) -> dict[int, dict]:
    """The engine's current score and 推荐理由 of each (published) product for the need."""
    if not product_ids:
        return {}
    from marketplace.services import matching
    from matching import Filters

    results = matching.get_service().products_for_opportunity(
        opportunity, min(len(product_ids), matching.MAX_K), Filters(allowed_ids=frozenset(product_ids))
    )
    return {r.entry.id: {"score": round(float(r.hit.score), 6), "reason": r.hit.reason} for r in results}


def rows(shortlist: Shortlist) -> list[Row]:
    """The displayed lines; each product shows the engine's current score and reason for the need
    (falling back to those stored when the firm was put on the list)."""
    entries = ordered(shortlist)
    ids = {pid for e in entries for pid in e.product_ids}
    products = {}
    if ids:
        products = {
            p.id: p for p in db.session.scalars(
                select(Product).where(Product.id.in_(ids), Product.status == EntryStatus.PUBLISHED)
            )
        }
    scores = live_scores(shortlist.opportunity, set(products))
    return [
        Row(entry=e, rank=i, above_line=i <= shortlist.target_size,
            products=[(products[p["id"]], scores.get(p["id"], p)) for p in e.products or []
                      if p["id"] in products])
        for i, e in enumerate(entries, start=1)
    ]


def decisions(shortlist: Shortlist, limit: int = 200) -> list[ShortlistDecision]:
    return list(db.session.scalars(
        select(ShortlistDecision)
        .where(ShortlistDecision.shortlist_id == shortlist.id)
        .options(joinedload(ShortlistDecision.organization), joinedload(ShortlistDecision.actor))
        .order_by(ShortlistDecision.created_at.desc(), ShortlistDecision.id.desc())
        .limit(limit)
    ))


# ---------------------------------------------------------------- decisions


def _record(
    actor: User | None, shortlist: Shortlist, organization_id: int, action: DecisionAction,
    product_ids: Iterable[int] = (), from_rank: int | None = None, to_rank: int | None = None,
    reason: str = "", view: dict[int, dict] | None = None,
) -> ShortlistDecision:
    """Append one decision with the engine's view of the firm at this moment."""
    if view is None:
        view = engine_view(shortlist.opportunity, [organization_id])
    decision = ShortlistDecision(
        shortlist_id=shortlist.id, organization_id=organization_id, product_ids=list(product_ids),
        action=action.value, from_rank=from_rank, to_rank=to_rank, reason=reason or "",
        actor_id=actor.id if actor is not None else None, engine=_snapshot(view, organization_id),
        created_at=utcnow(),
    )
    db.session.add(decision)
    return decision


def _renumber(entries: list[ShortlistEntry]) -> None:
    for position, entry in enumerate(entries, start=1):
        entry.position = position


def _find_organization(shortlist: Shortlist, query: str) -> Organization:
    query = (query or "").strip()
    if not query or "\x00" in query or len(query) > 100:
        raise ValidationFailed({"organization": "请输入单位名称"})
    exact = db.session.scalar(select(Organization).where(Organization.name == query))
    candidates = [exact] if exact is not None else list(db.session.scalars(
        select(Organization)
        .where(Organization.name.contains(query, autoescape=True),
               Organization.kind.in_(tuple(PRODUCT_OWNER_KINDS)), Organization.verified.is_(True))
        .order_by(Organization.name).limit(6)
    ))
    if not candidates:
        raise ValidationFailed({"organization": "未找到该单位"})
    if len(candidates) > 1:
        names = "、".join(o.name for o in candidates[:5])
        raise ValidationFailed({"organization": f"找到多家单位，请输入完整名称：{names}"})
    organization = candidates[0]
    if organization.kind not in PRODUCT_OWNER_KINDS:
        raise ValidationFailed({"organization": f"{organization.kind_label}不能列入对接名单"})
    if not organization.verified:
        raise ValidationFailed({"organization": "该单位尚未通过组织方认证"})
    if organization.id == shortlist.opportunity.publisher_id:
        raise ValidationFailed({"organization": "不能把需求发布单位列入对接名单"})
    return organization


def _new_entry(
    shortlist: Shortlist, organization: Organization, view: dict, must: Iterable[int] = ()
) -> ShortlistEntry:
    if len(shortlist.entries) >= MAX_ENTRIES:
        raise DomainError(f"对接名单最多{MAX_ENTRIES}家")
    sources = [ShortlistSource.ADDED.value]
    if organization.id in _responded(shortlist.opportunity):
        sources.append(ShortlistSource.RESPONDED.value)
    if organization.id in _registered(shortlist.event):
        sources.append(ShortlistSource.REGISTERED.value)
    snapshot = view.get(organization.id)
    products = _pick_products(snapshot, must)
    entry = ShortlistEntry(
        organization_id=organization.id, organization=organization, sources=sources, products=products,
        score=snapshot["score"] if snapshot else None,
        position=max((e.position for e in shortlist.entries), default=0) + 1,
    )
    shortlist.entries.append(entry)
    return entry


def add_firm(actor: User, shortlist: Shortlist, query: str, reason: str = "") -> ShortlistEntry:
    """Put a firm (found by name) at the end of the list."""
    require(actor, "manage", shortlist)
    reason = _reason(reason, required=False)
    organization = _find_organization(shortlist, query)
    if any(e.organization_id == organization.id for e in shortlist.entries):
        raise ValidationFailed({"organization": "该单位已在名单中"})
    view = engine_view(shortlist.opportunity, [organization.id])
    entry = _new_entry(shortlist, organization, view)
    db.session.flush()
    _record(actor, shortlist, organization.id, DecisionAction.ADDED, entry.product_ids,
            None, rank_of(entry), reason, view)
    db.session.commit()
    return entry


def find_product(query: Any) -> Product:
    """A published product by its number, its exact name or a unique part of its name."""
    text = str(query if query is not None else "").strip()
    if not text or "\x00" in text or len(text) > 120:
        raise ValidationFailed({"product": "请输入产品名称或编号"})
    if text.isdigit():
        number = int(text)
        product = db.session.get(Product, number) if number <= 2**31 - 1 else None
        if product is None or product.status != EntryStatus.PUBLISHED:
            raise ValidationFailed({"product": "只能添加已发布的产品"})
        return product
    published = (
        select(Product).where(Product.status == EntryStatus.PUBLISHED).options(joinedload(Product.owner))
    )
    exact = db.session.scalars(published.where(Product.name == text).limit(6)).all()
    candidates = exact or db.session.scalars(
        published.where(Product.name.contains(text, autoescape=True)).order_by(Product.name).limit(6)
    ).all()
    if not candidates:
        raise ValidationFailed({"product": "未找到已发布的产品"})
    if len(candidates) > 1:
        names = "、".join(f"{p.name}（{p.owner.name}，编号{p.id}）" for p in candidates[:5])
        raise ValidationFailed({"product": f"找到多个产品，请输入完整名称或编号：{names}"})
    return candidates[0]


def add_product(actor: User, shortlist: Shortlist, query: Any, reason: str = "") -> ShortlistEntry:
    """Put a product (found by number or name) on the list: under its firm's entry, or as a new
    entry for the firm."""
    require(actor, "manage", shortlist)
    reason = _reason(reason, required=False)
    product = find_product(query)
    view = engine_view(shortlist.opportunity, [product.owner_id])
    snapshot = view.get(product.owner_id) or {"products": []}
    scored = next((p for p in snapshot["products"] if p["id"] == product.id), None)
    item = {"id": product.id, "score": scored["score"] if scored else None,
            "reason": scored["reason"] if scored else ""}
    entry = next((e for e in shortlist.entries if e.organization_id == product.owner_id), None)
    if entry is None:
        try:
            organization = _find_organization(shortlist, product.owner.name)
        except ValidationFailed as exc:
            raise ValidationFailed({"product": next(iter(exc.errors.values()))}) from None
        entry = _new_entry(shortlist, organization, view, must=[product.id])
        if product.id not in entry.product_ids:
            entry.products = [*entry.products, item]
        db.session.flush()
        from_rank = None
    else:
        if product.id in entry.product_ids:
            raise ValidationFailed({"product": "该产品已在名单中"})
        entry.products = [*entry.products, item]
        from_rank = rank_of(entry)
    _record(actor, shortlist, product.owner_id, DecisionAction.ADDED, [product.id],
            from_rank, rank_of(entry), reason, view)
    db.session.commit()
    return entry


def remove(actor: User, entry: ShortlistEntry, reason: str = "") -> None:
    shortlist = entry.shortlist
    require(actor, "manage", shortlist)
    reason = _reason(reason, required=False)
    if entry.invitation_status in (EventInvitationStatus.INVITED, EventInvitationStatus.CONFIRMED):
        raise DomainError("已邀请（或已确认参加）的企业不能移出名单")
    from_rank = rank_of(entry)
    _record(actor, shortlist, entry.organization_id, DecisionAction.REMOVED, entry.product_ids,
            from_rank, None, reason)
    shortlist.entries.remove(entry)
    _renumber(ordered(shortlist))
    db.session.commit()


def _parse_rank(value: Any, total: int) -> int:
    try:
        rank = int(str(value).strip())
    except (TypeError, ValueError):
        raise ValidationFailed({"to_rank": "位置无效"}) from None
    if not 1 <= rank <= total:
        raise ValidationFailed({"to_rank": f"位置应为1–{total}"})
    return rank


def move(actor: User, entry: ShortlistEntry, to_rank: Any) -> int:
    """Move an entry to a 1-based position, within its block (pinned entries stay on top).

    Returns the rank it landed on; a move to where it is records nothing.
    """
    shortlist = entry.shortlist
    require(actor, "manage", shortlist)
    entries = ordered(shortlist)
    target = _parse_rank(to_rank, len(entries))
    pinned = sum(1 for e in entries if e.pinned)
    low, high = (1, pinned) if entry.pinned else (pinned + 1, len(entries))
    target = min(max(target, low), high)
    from_rank = entries.index(entry) + 1
    if target == from_rank:
        return from_rank
    entries.remove(entry)
    entries.insert(target - 1, entry)
    _renumber(entries)
    _record(actor, shortlist, entry.organization_id, DecisionAction.MOVED, entry.product_ids,
            from_rank, target)
    db.session.commit()
    return target


def step(actor: User, entry: ShortlistEntry, direction: str) -> int:
    """上移 / 下移 by one place (the no-JavaScript way to reorder)."""
    require(actor, "manage", entry.shortlist)
    rank = rank_of(entry)
    total = len(entry.shortlist.entries)
    target = rank - 1 if direction == "up" else rank + 1
    return move(actor, entry, min(max(target, 1), total))


def set_pinned(actor: User, entry: ShortlistEntry, pinned: bool) -> None:
    """Pin (to the end of the pinned block at the top) or unpin (to the top of the rest)."""
    shortlist = entry.shortlist
    require(actor, "manage", shortlist)
    if entry.pinned == pinned:
        return
    entries = ordered(shortlist)
    from_rank = entries.index(entry) + 1
    entries.remove(entry)
    block = sum(1 for e in entries if e.pinned)
    entries.insert(block, entry)
    entry.pinned = pinned
    _renumber(entries)
    action = DecisionAction.PINNED if pinned else DecisionAction.UNPINNED
    _record(actor, shortlist, entry.organization_id, action, entry.product_ids, from_rank, block + 1)
    db.session.commit()


def set_note(actor: User, entry: ShortlistEntry, note: str) -> None:
    shortlist = entry.shortlist
    require(actor, "manage", shortlist)
    note = _reason(note, required=False, key="note", label="备注")
    entry.note = note[:MAX_NOTE]
    rank = rank_of(entry)
    _record(actor, shortlist, entry.organization_id, DecisionAction.NOTED, entry.product_ids,
            rank, rank, note)
    db.session.commit()


def update_settings(actor: User, shortlist: Shortlist, target_size: Any, note: str = "") -> None:
    require(actor, "manage", shortlist)
    errors: dict[str, str] = {}
    try:
        size = int(str(target_size).strip())
    except (TypeError, ValueError):
        size = 0
    if not 1 <= size <= MAX_TARGET:
        errors["target_size"] = f"目标家数应为1–{MAX_TARGET}"
    note = (note or "").strip()
    if "\x00" in note or len(note) > 2000:
        errors["note"] = "名单说明不能超过2000个字"
    if errors:
        raise ValidationFailed(errors)
    shortlist.target_size, shortlist.note = size, note
    audit.record(actor, "shortlist.settings", shortlist, f"目标家数 {size}")
    db.session.commit()


# ---------------------------------------------------------------- invitations


def _invitation_url(entry: ShortlistEntry) -> str:
    return notifications.path_for("events.invitation", id=entry.id)


def invite(actor: User, shortlist: Shortlist, entry_ids: Iterable[Any] | None = None) -> list[ShortlistEntry]:
    """Invite the firms above the line (or the selected entries) that were not yet invited."""
    require(actor, "manage", shortlist)
    entries = ordered(shortlist)
    if entry_ids:
        wanted: set[int] = set()
        for raw in entry_ids:
            try:
                wanted.add(int(raw))
            except (TypeError, ValueError):
                raise ValidationFailed({"entry_ids": "选择无效"}) from None
        chosen = [e for e in entries if e.id in wanted]
        if len(chosen) != len(wanted):
            raise ValidationFailed({"entry_ids": "只能邀请本名单中的企业"})
    else:
        chosen = entries[: shortlist.target_size]
    chosen = [e for e in chosen if e.invitation_status == EventInvitationStatus.NONE]
    if not chosen:
        raise DomainError("没有需要邀请的企业（所选企业均已邀请）")
    for entry in chosen:
        require(actor, "invite", entry)
    view = engine_view(shortlist.opportunity, [e.organization_id for e in chosen])
    event, opportunity = shortlist.event, shortlist.opportunity
    now = utcnow()
    for entry in chosen:
        entry.invitation_status = EventInvitationStatus.INVITED
        entry.invited_at = now
        entry.answered_at = entry.decline_reason = entry.decline_detail = None
        rank = entries.index(entry) + 1
        _record(actor, shortlist, entry.organization_id, DecisionAction.INVITED, entry.product_ids,
                rank, rank, view=view)
        notifications.notify_organization(
            entry.organization_id, NotificationKind.EVENT_INVITATION,
            f"对接邀请：{event.title}",
            f"组织方邀请贵单位参加「{event.title}」，就需求「{opportunity.title}」"
            f"（{opportunity.publisher.name}）进行对接。请确认是否参加。",
            _invitation_url(entry),
        )
    audit.record(actor, "shortlist.invite", shortlist, f"邀请 {len(chosen)} 家企业")
    db.session.commit()
    return chosen


def answer(
    actor: User, entry: ShortlistEntry, action: str, reason: str = "", detail: str = ""
) -> ShortlistEntry:
    """The invited firm confirms (确认参加) or declines (婉拒, with a reason) the invitation."""
    require(actor, action, entry)
    step_ = INVITATION_TRANSITIONS[action]
    detail = _reason(detail, required=False, key="detail", label="说明")
    if action == "decline":
        if reason not in {r.value for r in DeclineReason}:
            raise ValidationFailed({"reason": "请选择婉拒原因"})
        if reason == DeclineReason.OTHER and not detail:
            raise ValidationFailed({"detail": "选择「其他」时请填写说明"})
    shortlist = entry.shortlist
    entry.invitation_status = step_.target
    entry.answered_at = utcnow()
    entry.decline_reason = reason if action == "decline" else None
    entry.decline_detail = (detail or None) if action == "decline" else None
    rank = rank_of(entry)
    decision_action = DecisionAction.CONFIRMED if action == "confirm" else DecisionAction.DECLINED
    text = entry.decline_label if action == "decline" else detail
    _record(actor, shortlist, entry.organization_id, decision_action, entry.product_ids, rank, rank, text)
    notifications.notify_staff(
        NotificationKind.INVITATION_ANSWER,
        f"{entry.organization.name}{step_.label}：{shortlist.event.title}",
        f"「{entry.organization.name}」{step_.label}「{shortlist.opportunity.title}」的对接邀请。"
        + (f"原因：{text}" if text else ""),
        notifications.path_for("events.shortlist", id=shortlist.id),
    )
    db.session.commit()
    return entry


def set_requested(actor: User, entry: ShortlistEntry, wanted: bool) -> None:
    """The need's publisher marks (or unmarks) a firm it wants to meet."""
    require(actor, "request", entry)
    if entry.publisher_requested == wanted:
        return
    entry.publisher_requested = wanted
    rank = rank_of(entry)
    action = DecisionAction.PUBLISHER_REQUESTED if wanted else DecisionAction.PUBLISHER_UNREQUESTED
    _record(actor, entry.shortlist, entry.organization_id, action, entry.product_ids, rank, rank)
    db.session.commit()


def firm_names(limit: int = 1000) -> list[str]:
    """Verified firms, institutes and service organizations, for the add-firm suggestions."""
    return list(db.session.scalars(
        select(Organization.name)
        .where(Organization.verified.is_(True), Organization.kind.in_(tuple(PRODUCT_OWNER_KINDS)))
        .order_by(Organization.name)
        .limit(limit)
    ))

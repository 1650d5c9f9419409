"""Graded judgements from what organizers, publishers and firms actually decided (issue 14 §1).

This module is **the one place** that turns platform records into graded judgements
(need, product or firm, grade, source, time) for the learned re-ranker
(:mod:`marketplace.services.matching.learning`). docs/learning.md repeats the table.

==========================  =====  ==========================================================
source (code)               grade  record
==========================  =====  ==========================================================
``signed``                  3      a 项目签约 (``Signing``): every ``SigningProduct``, and every
                                   ``SigningParty`` without a product of its own there
``selected``                3      a response 选定 (``ResponseStatus.SELECTED``)
``meeting_held``            2      a 1:1 洽谈 marked held (``MeetingStatus.HELD``)
``invitation_confirmed``    2      the firm's latest answer to a shortlist invitation is 确认参加
``shortlisted``             2      a response 入围 (``ResponseStatus.SHORTLISTED``)
``organizer_added``         2      an organizer added the firm or product to a shortlist
                                   (``DecisionAction.ADDED``), not taken back since
``organizer_pinned``        2      an organizer pinned it (``DecisionAction.PINNED``), not
                                   unpinned or removed since
``submitted``               1      a response submitted (also one that was later 未选定: the firm
                                   answered; not choosing it among answers is no mismatch)
``removed_top10``           0      an organizer removed a firm that the engine had in its top 10
                                   (``ShortlistDecision.engine["rank"] <= 10``) — explicit negative
``declined_mismatch``       0      the firm's latest answer to an invitation is 婉拒 with the
                                   reason 「不匹配」 (``DeclineReason.MISMATCH``) — explicit negative
==========================  =====  ==========================================================

What does not count: drafts and withdrawn responses (a submitted then withdrawn response is not a
positive), needs and products that are not published (now), an invitation declined for another
reason, a removal of a firm outside the engine's top 10 (it still takes back the organizer's own
earlier 加入/置顶 on that shortlist), moves, notes and the publisher's wishes.

**Products or firm.** A record that names products yields one judgement per published product
(its organization is the product's owner: a consortium's answer may name a member's product). A
firm-level record (a signing party, a meeting, a shortlist decision) takes the products that were
shown or attached: the shortlist entry's products at that moment (``ShortlistDecision.product_ids``
or the meeting's entry), for a signing party the products of the firm's answer or shortlist
entries on that need. When none of them is published it stays firm-level (``product_id`` None).

**Several records on one pair** (need, organization, product):

1. a grade-3 record (signed, selected) is a final outcome and wins, whenever it happened;
2. otherwise an explicit negative (removed_top10, declined_mismatch) wins over every positive
   recorded *before or at the same time*: the organizer or the firm looked again and said no;
3. a positive recorded *after* the latest negative wins over it (the firm was taken back);
4. among the remaining positives, the highest grade wins (the latest on a tie).

The deciding record gives the judgement its source, time (timezone-aware UTC) and
``decision_key``: the id of the record (``response:12``, ``decision:40`` for a
``ShortlistDecision``, ``meeting:5``, ``signing:3``). The history features of the re-ranker
(:func:`history_events`) use the same keys, so training can check that no row's history holds the
decision behind its own label (:func:`matching.learning.build_dataset`).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select

from marketplace.extensions import db
from marketplace.models import (
    DecisionAction,
    DeclineReason,
    EntryStatus,
    Meeting,
    MeetingStatus,
    Opportunity,
    Product,
    Response,
    ResponseProduct,
    ResponseStatus,
    Shortlist,
    ShortlistDecision,
    ShortlistEntry,
    Signing,
    SigningParty,
)
from marketplace.models.programme import SigningProduct
from matching.learning import Judgement, history_from

#: Removing a firm counts as a negative only when the engine had it this high (its firm rank).
REMOVED_TOP = 10


@dataclass(frozen=True)
class Source:
    """One kind of record and the grade it gives."""

    code: str
    grade: int
    label: str
    negative: bool = False


#: Every source, best grade first (the grading rule as data; the page lists it in this order).
SOURCES: dict[str, Source] = {
    s.code: s
    for s in (
        Source("signed", 3, "项目签约"),
        Source("selected", 3, "答题被选定"),
        Source("meeting_held", 2, "1:1 洽谈已举行"),
        Source("invitation_confirmed", 2, "确认参加对接活动"),
        Source("shortlisted", 2, "答题入围"),
        Source("organizer_added", 2, "组织方加入对接名单"),
        Source("organizer_pinned", 2, "组织方置顶"),
        Source("submitted", 1, "提交答题"),
        Source("removed_top10", 0, "引擎前10名被组织方移出", negative=True),
        Source("declined_mismatch", 0, "以「不匹配」婉拒邀请", negative=True),
    )
}

#: Responses that count (a draft or a withdrawn response never does).
_COUNTED_RESPONSES = {
    ResponseStatus.SUBMITTED.value: "submitted",
    ResponseStatus.REJECTED.value: "submitted",
    ResponseStatus.SHORTLISTED.value: "shortlisted",
    ResponseStatus.SELECTED.value: "selected",
}


@dataclass(frozen=True)
class Record:
    """One graded record before conflicts are resolved."""

    need_id: int
    organization_id: int
    product_id: int | None
    source: str
    at: datetime
    key: str

    @property
    def grade(self) -> int:
        return SOURCES[self.source].grade

    @property
    def negative(self) -> bool:
        return SOURCES[self.source].negative


def source_label(code: str) -> str:
    source = SOURCES.get(code)
    return source.label if source is not None else code


# ---------------------------------------------------------------- loading records


class _Catalogue:
    """Published needs, and published products with their owners (loaded once per collection)."""

    def __init__(self) -> None:
        self.needs: set[int] = set(db.session.scalars(
            select(Opportunity.id).where(Opportunity.status == EntryStatus.PUBLISHED)
        ))
        self.owner_of: dict[int, int] = dict(db.session.execute(
            select(Product.id, Product.owner_id).where(Product.status == EntryStatus.PUBLISHED)
        ).all())

    def expand(
        self, need_id: int, organization_id: int, product_ids: Iterable[int], source: str, at: datetime,
        key: str, *, owned_only: bool = False,
    ) -> list[Record]:
        """One record per published product, or one firm-level record when none is published.

        ``owned_only`` keeps only the firm's own products (a shortlist entry lists only them
        anyway; a response may name a consortium member's product, which is that member's)."""
        if need_id not in self.needs or at is None:
            return []
        products = []
        for pid in dict.fromkeys(int(p) for p in product_ids):
            owner = self.owner_of.get(pid)
            if owner is None or (owned_only and owner != organization_id):
                continue
            products.append((pid, owner))
        if not products:
            return [Record(need_id, organization_id, None, source, at, key)]
        return [Record(need_id, owner, pid, source, at, key) for pid, owner in products]


def _response_records(cat: _Catalogue) -> list[Record]:
    rows = db.session.execute(
        select(Response.id, Response.opportunity_id, Response.organization_id, Response.status,
               Response.submitted_at, Response.reviewed_at, Response.updated_at)
        .where(Response.status.in_(tuple(_COUNTED_RESPONSES)))
    ).all()
    products: dict[int, list[int]] = defaultdict(list)
    if rows:
        for response_id, product_id in db.session.execute(
            select(ResponseProduct.response_id, ResponseProduct.product_id)
            .join(Response, Response.id == ResponseProduct.response_id)
            .where(Response.status.in_(tuple(_COUNTED_RESPONSES)))
        ):
            products[response_id].append(product_id)
    out: list[Record] = []
    for rid, need_id, org_id, status, submitted_at, reviewed_at, updated_at in rows:
        source = _COUNTED_RESPONSES[status]
        if source in ("shortlisted", "selected"):
            at = reviewed_at or submitted_at or updated_at
        else:
            at = submitted_at or updated_at
        out += cat.expand(need_id, org_id, products[rid], source, at, f"response:{rid}")
    return out


def _decision_records(cat: _Catalogue) -> list[Record]:
    """Organizer curation and invitation answers from the append-only decision log."""
    actions = (
        DecisionAction.ADDED, DecisionAction.PINNED, DecisionAction.UNPINNED, DecisionAction.REMOVED,
        DecisionAction.CONFIRMED, DecisionAction.DECLINED,
    )
    rows = db.session.execute(
        select(ShortlistDecision, Shortlist.opportunity_id)
        .join(Shortlist, Shortlist.id == ShortlistDecision.shortlist_id)
        .where(ShortlistDecision.action.in_(tuple(a.value for a in actions)))
        .order_by(ShortlistDecision.created_at, ShortlistDecision.id)
    ).all()
    mismatch = DeclineReason.MISMATCH.label
    # Per (shortlist, firm): live curation positives, and the latest invitation answer.
    curated: dict[tuple[int, int], list[tuple[str, ShortlistDecision]]] = defaultdict(list)
    answers: dict[tuple[int, int], ShortlistDecision] = {}
    negatives: list[tuple[int, ShortlistDecision]] = []
    need_of: dict[int, int] = {}
    for decision, need_id in rows:
        pair = (decision.shortlist_id, decision.organization_id)
        need_of[decision.shortlist_id] = need_id
        action = decision.action
        if action == DecisionAction.ADDED:
            curated[pair].append(("organizer_added", decision))
        elif action == DecisionAction.PINNED:
            curated[pair].append(("organizer_pinned", decision))
        elif action == DecisionAction.UNPINNED:
            curated[pair] = [c for c in curated[pair] if c[0] != "organizer_pinned"]
        elif action == DecisionAction.REMOVED:
            curated[pair] = []  # the organizer took back its own additions and pins
            rank = (decision.engine or {}).get("rank")
            if isinstance(rank, int) and rank <= REMOVED_TOP:
                negatives.append((need_id, decision))
        else:  # CONFIRMED / DECLINED: the firm may change its answer; the latest one counts
            answers[pair] = decision
    out: list[Record] = []

    def add(source: str, need_id: int, decision: ShortlistDecision) -> None:
        nonlocal out
        out += cat.expand(need_id, decision.organization_id, decision.product_ids or [], source,
                          decision.created_at, f"decision:{decision.id}", owned_only=True)

    for (shortlist_id, _org), items in curated.items():
        for source, decision in items:
            add(source, need_of[shortlist_id], decision)
    for need_id, decision in negatives:
        add("removed_top10", need_id, decision)
    for (shortlist_id, _org), decision in answers.items():
        if decision.action == DecisionAction.CONFIRMED:
            add("invitation_confirmed", need_of[shortlist_id], decision)
        else:
            reason = decision.reason or ""
            if reason == mismatch or reason.startswith(f"{mismatch}："):
                add("declined_mismatch", need_of[shortlist_id], decision)
    return out


def _meeting_records(cat: _Catalogue) -> list[Record]:
    rows = db.session.execute(
        select(Meeting.id, Meeting.opportunity_id, Meeting.organization_id, Meeting.updated_at,
               Meeting.ends_at, ShortlistEntry.products)
        .outerjoin(ShortlistEntry, ShortlistEntry.id == Meeting.shortlist_entry_id)
        .where(Meeting.status == MeetingStatus.HELD)
    ).all()
    out: list[Record] = []
    for mid, need_id, org_id, updated_at, ends_at, products in rows:
        ids = [int(p["id"]) for p in products or [] if isinstance(p, dict) and "id" in p]
        out += cat.expand(need_id, org_id, ids, "meeting_held", updated_at or ends_at, f"meeting:{mid}",
                          owned_only=True)
    return out


def _attached_products(need_ids: set[int]) -> dict[tuple[int, int], list[int]]:
    """(need, firm) → the products of its live answers and shortlist entries on that need."""
    attached: dict[tuple[int, int], list[int]] = defaultdict(list)
    if not need_ids:
        return attached
    for need_id, org_id, product_id in db.session.execute(
        select(Response.opportunity_id, Response.organization_id, ResponseProduct.product_id)
        .join(ResponseProduct, ResponseProduct.response_id == Response.id)
        .where(Response.opportunity_id.in_(need_ids),
               Response.status.in_(tuple(_COUNTED_RESPONSES)))
    ):
        attached[(need_id, org_id)].append(product_id)
    for need_id, org_id, products in db.session.execute(
        select(Shortlist.opportunity_id, ShortlistEntry.organization_id, ShortlistEntry.products)
        .join(Shortlist, Shortlist.id == ShortlistEntry.shortlist_id)
        .where(Shortlist.opportunity_id.in_(need_ids))
    ):
        attached[(need_id, org_id)] += [int(p["id"]) for p in products or [] if isinstance(p, dict)]
    return attached


def _signing_records(cat: _Catalogue) -> list[Record]:
    signings = db.session.execute(
        select(Signing.id, Signing.opportunity_id, Signing.created_at)
    ).all()
    if not signings:
        return []
    products: dict[int, list[int]] = defaultdict(list)
    for signing_id, product_id in db.session.execute(
        select(SigningProduct.signing_id, SigningProduct.product_id)
    ):
        products[signing_id].append(product_id)
    parties: dict[int, list[int]] = defaultdict(list)
    for signing_id, org_id in db.session.execute(
        select(SigningParty.signing_id, SigningParty.organization_id)
    ):
        parties[signing_id].append(org_id)
    attached = _attached_products({need_id for _, need_id, _ in signings})
    out: list[Record] = []
    for sid, need_id, created_at in signings:
        signed = [p for p in products[sid] if p in cat.owner_of]
        owners = {cat.owner_of[p] for p in signed}
        for pid in signed:
            out += cat.expand(need_id, cat.owner_of[pid], [pid], "signed", created_at, f"signing:{sid}")
        for org_id in parties[sid]:
            if org_id in owners:
                continue  # the party's signed products already say it
            out += cat.expand(need_id, org_id, attached.get((need_id, org_id), []), "signed",
                              created_at, f"signing:{sid}", owned_only=True)
    return out


def records() -> list[Record]:
    """Every graded record of the platform, before conflicts on a pair are resolved."""
    cat = _Catalogue()
    if not cat.needs:
        return []
    return (
        _signing_records(cat) + _response_records(cat) + _meeting_records(cat) + _decision_records(cat)
    )


# ---------------------------------------------------------------- resolving conflicts


def resolve(pair_records: Iterable[Record]) -> Record | None:
    """The deciding record of one pair (see the module docstring for the rule)."""
    items = sorted(pair_records, key=lambda r: (r.at, r.key))
    if not items:
        return None
    finals = [r for r in items if r.grade >= 3]
    if finals:
        return finals[-1]
    negatives = [r for r in items if r.negative]
    positives = [r for r in items if not r.negative]
    if negatives:
        last = negatives[-1]
        positives = [r for r in positives if r.at > last.at]
        if not positives:
            return last
    best = max(r.grade for r in positives)
    return [r for r in positives if r.grade == best][-1]


def collect(since: datetime | None = None) -> list[Judgement]:
    """The graded judgements, one per (need, organization, product or firm) pair.

    Conflicts are resolved over every record; ``since`` (naive UTC) then keeps the judgements
    whose deciding record is that recent or newer. Sorted by need, then organization, product.
    """
    pairs: dict[tuple[int, int, int | None], list[Record]] = defaultdict(list)
    for record in records():
        pairs[(record.need_id, record.organization_id, record.product_id)].append(record)
    out: list[Judgement] = []
    for (need_id, org_id, product_id), items in pairs.items():
        decided = resolve(items)
        if decided is None or (since is not None and decided.at < _naive(since)):
            continue
        out.append(Judgement(
            need_id=need_id, product_id=product_id, organization_id=org_id, grade=decided.grade,
            source=decided.source, at=decided.at.replace(tzinfo=UTC), decision_key=decided.key,
        ))
    out.sort(key=lambda j: (j.need_id, j.organization_id, j.product_id or 0))
    return out


def counts() -> dict[str, int]:
    """How many graded records of each kind exist (every source, zeros included)."""
    found = Counter(r.source for r in records())
    return {code: found.get(code, 0) for code in SOURCES}


def _naive(value: datetime) -> datetime:
    if value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


# ---------------------------------------------------------------- the candidates' history


@dataclass(frozen=True)
class HistoryEvent:
    """One past outcome of a firm on some need, for the history features."""

    organization_id: int
    need_id: int
    feature: str  # one of matching.learning.HISTORY_FEATURES
    key: str  # the record's decision key (as in the judgements)
    at: datetime  # timezone-aware UTC


def history_events(organization_ids: Iterable[int] | None = None) -> list[HistoryEvent]:
    """Every counted answer (``hist_responses``), selection (``hist_selected``) and signing
    (``hist_signed``) of the given firms (all firms when None)."""
    orgs = None if organization_ids is None else sorted(set(organization_ids))
    if orgs is not None and not orgs:
        return []
    stmt = select(Response.id, Response.organization_id, Response.opportunity_id, Response.status,
                  Response.submitted_at, Response.reviewed_at, Response.created_at).where(
        Response.status.in_(tuple(_COUNTED_RESPONSES)))
    if orgs is not None:
        stmt = stmt.where(Response.organization_id.in_(orgs))
    events: list[HistoryEvent] = []
    for rid, org_id, need_id, status, submitted_at, reviewed_at, created_at in db.session.execute(stmt):
        key = f"response:{rid}"
        at = submitted_at or created_at
        events.append(HistoryEvent(org_id, need_id, "hist_responses", key, _aware(at)))
        if status == ResponseStatus.SELECTED:
            at = reviewed_at or submitted_at or created_at
            events.append(HistoryEvent(org_id, need_id, "hist_selected", key, _aware(at)))
    stmt = select(Signing.id, SigningParty.organization_id, Signing.opportunity_id, Signing.created_at).join(
        Signing, Signing.id == SigningParty.signing_id)
    if orgs is not None:
        stmt = stmt.where(SigningParty.organization_id.in_(orgs))
    for sid, org_id, need_id, created_at in db.session.execute(stmt):
        events.append(HistoryEvent(org_id, need_id, "hist_signed", f"signing:{sid}", _aware(created_at)))
    return events


#: Later than any record: the history "before" of a live query (everything so far counts).
FOREVER = datetime(9999, 1, 1, tzinfo=UTC)


def history_for(
    events: Iterable[HistoryEvent], organization_id: int, *, exclude_need: int | None,
    before: datetime = FOREVER, exclude_keys: Iterable[str] = (),
) -> tuple[dict[str, float], frozenset[str]]:
    """A firm's history counts and the decision keys they came from, **never** from the need
    being judged (events on ``exclude_need`` are left out) nor from ``before`` on (the label's
    own decisions and what followed them); see :func:`matching.learning.history_from`."""
    own = (
        (e.feature, e.key, e.at)
        for e in events
        if e.organization_id == organization_id and e.need_id != exclude_need
    )
    return history_from(own, before=before, exclude_keys=exclude_keys)


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

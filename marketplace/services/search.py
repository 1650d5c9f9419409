"""Keyword search over the PUBLISHED entries (机会清单 and 产品清单).

Each app keeps one :class:`SearchIndex` in ``app.extensions["search"]``. Per side (opportunity,
product) it holds a BM25 :class:`matching.LexicalIndex` over the **whole words** of the entry text
(:func:`matching.text.words`: jieba + domain dictionary + thesaurus terms, compound words also
as their parts, English acronyms kept whole; no character bigrams, so 「动车」 never matches
「电动车」), plus the metadata the list filters need and the ``updated_at`` stamp of every
indexed row.

Ranking a query (see :func:`score_terms`):

* The query's terms are the distinct words the user typed (:func:`matching.text.query_terms`).
* A term matches an entry through the word itself (weight 1), a thesaurus group-mate
  (weight ``SYNONYM_WEIGHT`` = 0.5), or, for a compound such as 「养老服务」, all of its parts
  (weight ``PARTS_WEIGHT``, scored by the weakest part). The term's score is the best of these
  BM25 contributions; the entry's score is the sum over terms.
* Only entries that match at least one term are results. Entries matching more terms rank
  first (every term before all but one, and so on), then by score, then newest first.
* **Relative cut-off.** An entry that matches only some of the terms is dropped when its score
  is below ``RELATIVE_CUTOFF`` (0.5) times the best result's score (after the filters); an entry
  matching every term is always kept. The value was chosen by two-fold cross-validation on
  ``seeds/search_eval.json`` (each half picks it, the other half reports it; see
  ``docs/benchmarks.md``, "Portal keyword search quality").

Freshness across workers: every service change to what is public bumps the
``index_state`` row of :mod:`marketplace.services.index_sync`. Before each search the index
reads that row (one small query) and, when it has moved since the last sync, refreshes
incrementally: it compares ``(id, updated_at)`` of the published rows with its stamps, upserts
the new or changed rows and drops those no longer published. When the row does not exist yet
(nothing was ever bumped) the comparison runs on every search, so rows inserted behind the
services' back are still picked up.

Scores of the two sides come from different indexes and are not comparable, so a search over
both sides returns one ranked page per side.
"""

from __future__ import annotations

import gc
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import numpy as np
from flask import Flask, current_app
from flask_sqlalchemy.pagination import Pagination
from markupsafe import Markup, escape
from sqlalchemy import select
from sqlalchemy.orm import joinedload, selectinload

from marketplace import timeutil
from marketplace.extensions import db
from marketplace.models import (
    EntryKind,
    EntryStatus,
    IndexState,
    Opportunity,
    Organization,
    Product,
    ProductField,
    ProductTag,
)
from marketplace.services import index_sync
from matching import LexicalIndex
from matching.text import SYNONYM_WEIGHT, compound_parts, query_terms, thesaurus, words

EXTENSION_KEY = "search"
SIDES: tuple[str, ...] = (EntryKind.OPPORTUNITY, EntryKind.PRODUCT)
#: Longest query we tokenise; longer input is cut (the form also limits it).
MAX_QUERY_LENGTH = 100
#: Rows loaded per ``IN (...)`` query while refreshing.
_CHUNK = 500
#: Partial matches scoring below this share of the best result's score are dropped (module docstring).
RELATIVE_CUTOFF = 0.5
#: Weight of a compound query term matched by all of its parts instead of whole.
PARTS_WEIGHT = 0.8


@dataclass(frozen=True)
class EntryFilters:
    """Hard constraints of the list pages and the search. ``None`` means "any".

    A filter that one side does not have (``tier`` for products, ``maturity`` and ``tag`` for
    opportunities) excludes that side entirely: no product has a scenario tier.
    """

    batch_id: int | None = None
    area: str | None = None
    category: str | None = None
    city: str | None = None
    county: str | None = None
    tier: str | None = None
    maturity: str | None = None
    tag: str | None = None
    #: 征集中 (``"open"``) or 已截止 (``"closed"``) by the answer deadline in Beijing time.
    #: Only opportunities have deadlines; the filter leaves products alone.
    state: str | None = None


@dataclass(frozen=True, slots=True)
class EntryMeta:
    """What the filters look at, per indexed entry."""

    batch_id: int | None
    areas: frozenset[str]
    categories: frozenset[str]
    city: str
    county: str | None
    tier: str | None = None
    maturity: str | None = None
    tags: frozenset[str] = frozenset()
    deadline: date | None = None


@dataclass
class _Doc:
    id: int
    text: str
    meta: EntryMeta
    stamp: datetime


#: Filter fields whose metadata holds a set of values (any of them may match).
_SET_FIELDS = {"area": "areas", "category": "categories", "tag": "tags"}
#: Filter fields compared with one metadata value.
_SCALAR_FIELDS = {"batch_id": "batch_id", "city": "city", "county": "county", "tier": "tier",
                  "maturity": "maturity"}


@dataclass
class _Side:
    """One side of the index: BM25, filter metadata, stamps, and per-filter masks.

    The masks are boolean arrays aligned with the BM25 index's document order (the ``order``
    list it returns with its scores); they are computed on first use of a filter value and
    dropped whenever that order changes.
    """

    lexical: LexicalIndex = field(default_factory=LexicalIndex)
    meta: dict[int, EntryMeta] = field(default_factory=dict)
    stamps: dict[int, datetime] = field(default_factory=dict)
    _order: list[int] | None = None
    _ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    _masks: dict[tuple[str, Any], np.ndarray] = field(default_factory=dict)

    def align(self, order: list[int]) -> np.ndarray:
        """The ids in BM25 order as an array (cached until the order changes)."""
        if order is not self._order:
            self._order = order
            self._ids = np.asarray(order, dtype=np.int64)
            self._masks = {}
        return self._ids

    def mask(self, name: str, value: Any) -> np.ndarray:
        """Which documents (in BM25 order) satisfy one filter; call :meth:`align` first."""
        key = (name, value)
        cached = self._masks.get(key)
        if cached is None:
            metas = [self.meta[i] for i in self._order]
            if name in _SET_FIELDS:
                attr = _SET_FIELDS[name]
                values = (value in getattr(m, attr) for m in metas)
            else:
                attr = _SCALAR_FIELDS[name]
                values = (getattr(m, attr) == value for m in metas)
            cached = self._masks[key] = np.fromiter(values, dtype=bool, count=len(metas))
        return cached

    def deadline_mask(self, state: str, today: date) -> np.ndarray:
        """Which documents are open (no deadline, or not before ``today``) or closed."""
        key = ("state", (state, today))
        cached = self._masks.get(key)
        if cached is None:
            metas = [self.meta[i] for i in self._order]
            is_open = (m.deadline is None or m.deadline >= today for m in metas)
            cached = np.fromiter(is_open, dtype=bool, count=len(metas))
            if state == "closed":
                cached = ~cached
            self._masks[key] = cached
        return cached


class RankedPage(Pagination):
    """One page of ranked hits, with the interface of ``db.paginate`` (``macros.pagination``).

    ``matched`` maps the id of each hit on the page to the query terms it contains, for
    highlighting; ``scores`` maps it to its BM25 score.
    """

    matched: dict[int, list[str]]
    scores: dict[int, float]

    def _query_items(self) -> list[Any]:
        ranked: Sequence[int] = self._query_args["ranked"]
        window = ranked[self._query_offset : self._query_offset + self.per_page]
        return self._query_args["load"]([int(item_id) for item_id in window])

    def _query_count(self) -> int:
        return len(self._query_args["ranked"])


def empty_page(per_page: int = 20) -> RankedPage:
    """A page with no hits (an empty query)."""
    return _page([], 1, per_page, lambda ids: [])


def _page(
    ranked: Sequence[int],
    page: int,
    per_page: int,
    load: Callable[[list[int]], list[Any]],
) -> RankedPage:
    """``ranked``: all matching ids, best first."""
    result = RankedPage(
        page=max(int(page), 1), per_page=per_page, max_per_page=None, error_out=False,
        ranked=ranked, load=load,
    )
    result.matched = {}
    result.scores = {}
    return result


def public_stamp() -> tuple[int, datetime | None] | None:
    """``(version, updated_at)`` of the public-content counter, None if it was never bumped.

    The timestamp makes the stamp unique even when a database is emptied and the counter
    starts again (as between tests), where the version alone would repeat.
    """
    row = db.session.execute(
        select(IndexState.version, IndexState.updated_at).where(IndexState.name == index_sync.ENTRIES)
    ).first()
    return (row[0], row[1]) if row is not None else None


class SearchIndex:
    """Per-app keyword index of the published entries; built lazily, refreshed incrementally."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._sides: dict[str, _Side] | None = None
        self._stamp: tuple[int, datetime | None] | None = None
        #: See ``RELATIVE_CUTOFF``; the quality benchmark varies it.
        self.relative_cutoff = RELATIVE_CUTOFF
        #: Seconds the last full build took (for the benchmark and logs).
        self.build_seconds: float | None = None

    # ---------------------------------------------------------------- freshness

    def sync(self) -> None:
        """Bring the index up to date with the database (see the module docstring)."""
        stamp = public_stamp()
        with self._lock:
            if self._sides is None:
                self.rebuild()
            elif stamp is None or stamp != self._stamp:
                for kind in SIDES:
                    self._refresh(kind)
            self._stamp = stamp

    def rebuild(self) -> None:
        """Build both sides from scratch."""
        started = time.perf_counter()
        with self._lock:
            sides = {}
            for kind in SIDES:
                side = _Side()
                docs = _load_docs(kind)
                side.lexical.build([d.id for d in docs], [words(d.text) for d in docs])
                side.meta = {d.id: d.meta for d in docs}
                side.stamps = {d.id: d.stamp for d in docs}
                sides[kind] = side
            self._sides = sides
        # The index holds millions of references in plain containers; a full garbage
        # collection would traverse them all (a pause of ~300 ms at 50,000 products). They
        # live as long as the process, so move them out of the collector's generations.
        gc.freeze()
        self.build_seconds = time.perf_counter() - started

    def _refresh(self, kind: str) -> None:
        side = self._sides[kind]
        model = _MODELS[kind]
        current = dict(
            db.session.execute(
                select(model.id, model.updated_at).where(model.status == EntryStatus.PUBLISHED)
            ).all()
        )
        gone = [i for i in side.stamps if i not in current]
        changed = [i for i, stamp in current.items() if side.stamps.get(i) != stamp]
        for item_id in gone:
            side.lexical.remove(item_id)
            del side.meta[item_id], side.stamps[item_id]
        for start in range(0, len(changed), _CHUNK):
            for doc in _load_docs(kind, changed[start : start + _CHUNK]):
                side.lexical.upsert(doc.id, words(doc.text))
                side.meta[doc.id] = doc.meta
                side.stamps[doc.id] = doc.stamp

    # ---------------------------------------------------------------- queries

    def search(
        self,
        kind: str,
        q: str,
        filters: EntryFilters | None = None,
        page: int = 1,
        per_page: int = 20,
    ) -> RankedPage:
        """Published entries of ``kind`` matching ``q`` and ``filters``, best first (ranking and
        cut-off: see the module docstring).

        Ties are broken by id, newest first. The page's rows are loaded in one query (plus the
        product's field and tag rows), in rank order.
        """
        if kind not in _MODELS:
            raise ValueError(f"unknown side: {kind}")
        terms = query_terms((q or "")[:MAX_QUERY_LENGTH])
        if not terms:
            return empty_page(per_page)
        filters = filters or EntryFilters()
        self.sync()
        with self._lock:
            side = self._sides[kind]
            scores, coverage, alternatives = score_terms(side.lexical, terms)
            ids = side.align(side.lexical.order())
            keep = coverage > 0
            for name in (*_SET_FIELDS, *_SCALAR_FIELDS):
                value = getattr(filters, name)
                if value is not None and len(ids):
                    keep &= side.mask(name, value)
            if filters.state is not None and kind == EntryKind.OPPORTUNITY and len(ids):
                keep &= side.deadline_mask(filters.state, timeutil.local_today())
            if keep.any():
                full = coverage == len(terms)
                keep &= full | (scores >= self.relative_cutoff * scores[keep].max())
            positions = np.flatnonzero(keep)
            hit_ids, hit_scores, hit_coverage = ids[positions], scores[positions], coverage[positions]
            # Most terms matched first, then best score; ties: newest (highest) id first.
            rank = np.lexsort((-hit_ids, -hit_scores, -hit_coverage))
            ranked, ranked_scores = hit_ids[rank], hit_scores[rank]
            result = _page(ranked, page, per_page, lambda page_ids: _load_rows(kind, page_ids))
            start = (result.page - 1) * result.per_page
            page_scores = dict(zip(ranked[start : start + result.per_page].tolist(),
                                   ranked_scores[start : start + result.per_page].tolist(),
                                   strict=True))
            for entry in result.items:
                found = side.lexical.matched_terms(alternatives, entry.id)
                result.matched[entry.id] = _highlight_terms(found)
                result.scores[entry.id] = page_scores[entry.id]
        return result


def score_terms(lexical: LexicalIndex, terms: Sequence[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Per-document ``(score, number of terms matched)`` arrays in the index's order, and every
    token that can match a term (for highlighting). See the module docstring for the rule."""
    n = len(lexical.order())
    total = np.zeros(n, dtype=np.float32)
    coverage = np.zeros(n, dtype=np.int32)
    alternatives: list[str] = []
    th = thesaurus()
    for term in terms:
        best = lexical.token_scores(term)
        alternatives.append(term)
        for mate in th.related(term):
            best = np.maximum(best, SYNONYM_WEIGHT * lexical.token_scores(mate))
            alternatives.append(mate)
        parts = compound_parts(term)
        if parts:
            weakest = np.minimum.reduce([lexical.token_scores(p) for p in parts])
            best = np.maximum(best, PARTS_WEIGHT * weakest)
            alternatives.extend(parts)
        total += best
        coverage += best > 0
    return total, coverage, list(dict.fromkeys(alternatives))


def _highlight_terms(matched: list[str]) -> list[str]:
    """The matched tokens to highlight: a compound's parts only where the compound itself is
    absent (「养老服务」 found whole does not light up every 「服务」)."""
    present = set(matched)
    covered = {part for term in matched for part in compound_parts(term) if term in present}
    return [t for t in matched if t not in covered]


# -------------------------------------------------------------------- loading rows

_MODELS: dict[str, type[Opportunity] | type[Product]] = {
    EntryKind.OPPORTUNITY: Opportunity,
    EntryKind.PRODUCT: Product,
}


def _load_docs(kind: str, ids: Sequence[int] | None = None) -> list[_Doc]:
    """Index text and metadata of published entries (all, or those among ``ids``)."""
    if kind == EntryKind.OPPORTUNITY:
        stmt = (
            select(
                Opportunity.id, Opportunity.title, Opportunity.description,
                Opportunity.field_area, Opportunity.field_category, Opportunity.tier,
                Opportunity.region_city, Opportunity.region_county, Opportunity.batch_id,
                Opportunity.updated_at, Opportunity.deadline, Organization.name,
            )
            .join(Organization, Organization.id == Opportunity.publisher_id)
            .where(Opportunity.status == EntryStatus.PUBLISHED)
        )
        if ids is not None:
            stmt = stmt.where(Opportunity.id.in_(ids))
        return [
            _Doc(
                id=row.id,
                # The title is repeated so that a title hit weighs more than a body hit.
                text=" ".join((row.title, row.title, row.description, row.field_category, row.name)),
                meta=EntryMeta(
                    batch_id=row.batch_id, areas=frozenset((row.field_area,)),
                    categories=frozenset((row.field_category,)), city=row.region_city,
                    county=row.region_county, tier=row.tier, deadline=row.deadline,
                ),
                stamp=row.updated_at,
            )
            for row in db.session.execute(stmt)
        ]

    stmt = (
        select(
            Product.id, Product.name, Product.description, Product.maturity,
            Product.region_city, Product.region_county, Product.batch_id, Product.updated_at,
            Organization.name.label("owner_name"),
        )
        .join(Organization, Organization.id == Product.owner_id)
        .where(Product.status == EntryStatus.PUBLISHED)
    )
    field_stmt = (
        select(ProductField.product_id, ProductField.category, ProductField.area)
        .join(Product, Product.id == ProductField.product_id)
        .where(Product.status == EntryStatus.PUBLISHED)
    )
    tag_stmt = (
        select(ProductTag.product_id, ProductTag.tag)
        .join(Product, Product.id == ProductTag.product_id)
        .where(Product.status == EntryStatus.PUBLISHED)
    )
    if ids is not None:
        stmt = stmt.where(Product.id.in_(ids))
        field_stmt = field_stmt.where(ProductField.product_id.in_(ids))
        tag_stmt = tag_stmt.where(ProductTag.product_id.in_(ids))
    categories: dict[int, list[str]] = {}
    areas: dict[int, set[str]] = {}
    for product_id, category, area in db.session.execute(field_stmt):
        categories.setdefault(product_id, []).append(category)
        areas.setdefault(product_id, set()).add(area)
    tags: dict[int, list[str]] = {}
    for product_id, tag in db.session.execute(tag_stmt):
        tags.setdefault(product_id, []).append(tag)
    docs = []
    for row in db.session.execute(stmt):
        cats = categories.get(row.id, [])
        product_tags = tags.get(row.id, [])
        docs.append(
            _Doc(
                id=row.id,
                text=" ".join(
                    (row.name, row.name, row.description, *cats, *product_tags, row.owner_name)
                ),
                meta=EntryMeta(
                    batch_id=row.batch_id, areas=frozenset(areas.get(row.id, ())),
                    categories=frozenset(cats), city=row.region_city, county=row.region_county,
                    maturity=row.maturity, tags=frozenset(product_tags),
                ),
                stamp=row.updated_at,
            )
        )
    return docs


def _load_rows(kind: str, ids: list[int]) -> list[Opportunity | Product]:
    """The published rows with these ids, in the given order, ready for list cards."""
    if not ids:
        return []
    if kind == EntryKind.OPPORTUNITY:
        options = [joinedload(Opportunity.publisher), joinedload(Opportunity.batch)]
    else:
        options = [
            joinedload(Product.owner), joinedload(Product.batch),
            selectinload(Product.field_rows), selectinload(Product.tag_rows),
        ]
    model = _MODELS[kind]
    rows = db.session.scalars(
        select(model)
        .where(model.id.in_(ids), model.status == EntryStatus.PUBLISHED)
        .options(*options)
    ).unique()
    by_id = {row.id: row for row in rows}
    return [by_id[i] for i in ids if i in by_id]


# -------------------------------------------------------------------- app wiring


def init_app(app: Flask) -> SearchIndex:
    """Attach a fresh :class:`SearchIndex` to ``app`` (once)."""
    if EXTENSION_KEY in app.extensions:
        raise RuntimeError("the search index is already registered on this app")
    index = SearchIndex()
    app.extensions[EXTENSION_KEY] = index
    return index


def get_index() -> SearchIndex:
    """The search index of the current app."""
    return current_app.extensions[EXTENSION_KEY]


def search(
    kind: str,
    q: str,
    filters: EntryFilters | None = None,
    page: int = 1,
    per_page: int = 20,
) -> RankedPage:
    """Search one side of the current app's index (see :meth:`SearchIndex.search`)."""
    return get_index().search(kind, q, filters, page, per_page)


# -------------------------------------------------------------------- highlighting

_ENTITY = r"&(?:#\d+|#x[0-9a-fA-F]+|[a-zA-Z]+);"


def _terms_pattern(terms: Iterable[str]) -> str | None:
    unique = sorted({t for t in terms if t}, key=len, reverse=True)
    if not unique:
        return None
    return "|".join(re.escape(str(escape(t))) for t in unique)


def highlight(text: str | None, terms: Iterable[str] | None) -> Markup:
    """Escape ``text``, then wrap every occurrence of a matched term in ``<mark>``.

    Matching is case-insensitive (tokens are lower-cased) and never splits an HTML entity
    produced by the escaping.
    """
    escaped = str(escape(text or ""))
    pattern = _terms_pattern(terms or ())
    if pattern is None:
        return Markup(escaped)

    def wrap(match: re.Match[str]) -> str:
        if match.group(1):
            return match.group(1)
        return f"<mark>{match.group(2)}</mark>"

    return Markup(re.sub(f"({_ENTITY})|({pattern})", wrap, escaped, flags=re.IGNORECASE))


def snippet(text: str | None, terms: Iterable[str] | None, width: int = 120) -> str:
    """About ``width`` characters of ``text`` around its first matched term (plain text)."""
    text = " ".join((text or "").split())
    if len(text) <= width:
        return text
    lowered = text.lower()
    positions = [p for p in (lowered.find(t.lower()) for t in terms or () if t) if p >= 0]
    start = max(min(positions) - width // 4, 0) if positions else 0
    start = min(start, len(text) - width)
    piece = text[start : start + width]
    return ("…" if start > 0 else "") + piece + ("…" if start + width < len(text) else "")

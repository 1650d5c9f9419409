"""Read-only queries of the public portal: lists, filters, batch pages and home statistics.

Only PUBLISHED entries (and published batches) are ever returned. The portal's list pages load
their cards as plain rows (:class:`OpportunityCard`, :class:`ProductCard`: one statement, plus
one for a product page's categories and tags), the API's lists whole rows with their related
rows eager, so the number of statements per page does not grow with the page size. What does
not depend on the request (the home page's figures and latest entries, the published batches
of the filter forms) is computed once per public data version (:func:`versioned`).

The lists stay fast at any depth (:func:`_keyset_page`): their totals are counted once per
filter combination and public data version (:func:`list_cache`), 下一页 / 上一页 seek from an
entry's key (``after=<id>`` / ``before=<id>``) on indexes that hold the filter columns and the
order (``migrations``: "list indexes"), a page number reads ids only, and the cards load only
the columns they show. ``benchmarks/render_profile.py`` times and profiles the renders.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal
from typing import Any, NamedTuple

from flask import current_app, has_request_context, request
from flask_sqlalchemy.pagination import Pagination
from sqlalchemy import (
    Select,
    and_,
    case,
    distinct,
    exists,
    func,
    literal,
    literal_column,
    or_,
    select,
    tuple_,
    union_all,
)
from sqlalchemy.orm import joinedload, load_only, selectinload

from marketplace import timeutil
from marketplace.extensions import db
from marketplace.models import (
    Batch,
    BatchStatus,
    EntryKind,
    EntryStatus,
    IndexState,
    Maturity,
    Opportunity,
    Organization,
    Product,
    ProductField,
    ProductTag,
)
from marketplace.paging import KeysetPage
from marketplace.reference import reference
from marketplace.services import index_sync
from marketplace.services import search as search_service
from marketplace.services.errors import NotFound
from marketplace.services.search import EntryFilters, RankedPage

__all__ = [
    "EntryFilters",
    "HomeStats",
    "Listing",
    "batch_entries",
    "get_published_batch",
    "get_published_opportunity",
    "get_published_product",
    "cached_published_counts",
    "home_stats",
    "published_counts",
    "list_opportunities",
    "list_products",
    "published_batches",
    "published_batches_with_counts",
    "search_entries",
]

PUBLISHED = EntryStatus.PUBLISHED
LATEST_COUNT = 6


# -------------------------------------------------------------------- home page


@dataclass
class AreaStats:
    name: str
    opportunities: int = 0
    products: int = 0
    #: ``(category, opportunities, products)`` in taxonomy order.
    categories: list[tuple[str, int, int]] = field(default_factory=list)


class BatchRow(NamedTuple):
    """What the public pages show of a published batch (a plain row, cached per data version)."""

    id: int
    kind: str
    title: str
    published_on: date | None

    @property
    def kind_label(self) -> str:
        return EntryKind.label_of(self.kind)


class Named(NamedTuple):
    """An organization (or batch) as a card shows it: ``entry.publisher.name``."""

    id: int
    name: str


class BatchRef(NamedTuple):
    """A card's batch link: ``entry.batch.title``."""

    id: int
    title: str


class LatestOpportunity(NamedTuple):
    id: int
    title: str
    field_category: str
    published_at: datetime | None
    publisher: Named


class LatestProduct(NamedTuple):
    id: int
    name: str
    maturity: str
    published_at: datetime | None
    owner: Named

    @property
    def maturity_label(self) -> str:
        return Maturity.label_of(self.maturity)


@dataclass
class HomeStats:
    opportunities: int
    products: int
    #: Published batches with the number of their published entries, newest first.
    batches: list[tuple[BatchRow, int]]
    areas: list[AreaStats]
    latest_opportunities: list[LatestOpportunity]
    latest_products: list[LatestProduct]


@dataclass(frozen=True)
class PublishedCounts:
    """Aggregate counts of the published entries (what the home page's numbers come from)."""

    opportunities_by_batch: dict[int | None, int]
    opportunities_by_category: dict[str, int]
    products_by_batch: dict[int | None, int]
    products_by_category: dict[str, int]
    products_by_area: dict[str, int]


#: ``app.extensions`` key of the values cached per public data version (:func:`versioned`).
_VERSIONED = "portal.versioned"
#: ``request.environ`` key of this request's public stamp (read once per request).
_STAMP = "marketplace.portal.public_stamp"


def _read_stamps() -> dict[str, tuple[int, Any]]:
    rows = db.session.execute(
        select(IndexState.name, IndexState.version, IndexState.updated_at)
        .where(IndexState.name.in_((index_sync.ENTRIES, index_sync.PAGES)))
    )
    return {name: (version, stamp) for name, version, stamp in rows}


def public_stamp() -> Hashable | None:
    """The stamp of what public pages show, read once per request: the public-content counter
    (publications, withdrawals, approved edits) and the ``pages`` counter (any commit to a table
    a public page shows, such as a batch's new title), each with its time; None before the
    public-content counter exists.

    On an anonymous public page the HTTP cache's validators have already read both rows
    (:data:`index_sync.REQUEST_STAMPS`); otherwise one query reads them.
    """
    environ = request.environ if has_request_context() else {}
    if _STAMP not in environ:
        rows = environ.get(index_sync.REQUEST_STAMPS) or _read_stamps()
        entries = rows.get(index_sync.ENTRIES)
        environ[_STAMP] = None if entries is None else (entries, rows.get(index_sync.PAGES))
    return environ[_STAMP]


def versioned(key: Hashable, compute: Callable[[], Any]) -> Any:
    """``compute()``, kept per process until :func:`public_stamp` moves.

    Every service change to what is public (publication, withdrawal, an approved edit, an
    organization's new name, a 揭榜 selection) bumps :mod:`~marketplace.services.index_sync`,
    the same signal that refreshes the search index, and any other commit to a table a public
    page shows moves the ``pages`` counter, so these values are never stale, whoever made the
    change. Before the public-content counter exists nothing is cached. Values
    must be immutable or never changed by callers (plain rows and tuples, not ORM objects).
    """
    stamp = public_stamp()
    if stamp is None:
        return compute()
    held = current_app.extensions.get(_VERSIONED)
    if held is None or held[0] != stamp:
        held = current_app.extensions[_VERSIONED] = (stamp, {})
    values = held[1]
    if key not in values:
        values[key] = compute()
    return values[key]


def published_counts() -> PublishedCounts:
    """Count the published entries per batch, category and area (four aggregate queries)."""
    opp_batches: dict[int | None, int] = {}
    opp_categories: dict[str, int] = {}
    for batch_id, category, n in db.session.execute(
        select(Opportunity.batch_id, Opportunity.field_category, func.count())
        .where(Opportunity.status == PUBLISHED)
        .group_by(Opportunity.batch_id, Opportunity.field_category)
    ):
        opp_batches[batch_id] = opp_batches.get(batch_id, 0) + n
        opp_categories[category] = opp_categories.get(category, 0) + n
    product_batches = dict(
        db.session.execute(
            select(Product.batch_id, func.count())
            .where(Product.status == PUBLISHED)
            .group_by(Product.batch_id)
        ).all()
    )
    published_products = select(Product.id).where(Product.status == PUBLISHED)
    product_categories = dict(
        db.session.execute(
            select(ProductField.category, func.count())
            .where(ProductField.product_id.in_(published_products))
            .group_by(ProductField.category)
        ).all()
    )
    # A product serving two categories of one area counts once for that area.
    product_areas = dict(
        db.session.execute(
            select(ProductField.area, func.count(distinct(ProductField.product_id)))
            .where(ProductField.product_id.in_(published_products))
            .group_by(ProductField.area)
        ).all()
    )
    return PublishedCounts(opp_batches, opp_categories, product_batches, product_categories,
                           product_areas)


def cached_published_counts() -> PublishedCounts:
    """:func:`published_counts`, cached per public data version (:func:`versioned`)."""
    return versioned("published_counts", published_counts)


def home_stats() -> HomeStats:
    """Counts of published entries in total, per published batch and per area and category,
    and the latest entries: computed once per public data version (:func:`versioned`), so a
    render of the home page costs one statement here (the stamp) instead of six."""
    return versioned("home_stats", _home_stats)


def _home_stats() -> HomeStats:
    counts = cached_published_counts()
    opp_batches = counts.opportunities_by_batch
    opp_categories = counts.opportunities_by_category
    product_batches = counts.products_by_batch
    product_categories = counts.products_by_category
    product_areas = counts.products_by_area

    areas = []
    for area, categories in reference().areas:
        stats = AreaStats(name=area, products=product_areas.get(area, 0))
        for category in categories:
            n_opp = opp_categories.get(category, 0)
            stats.opportunities += n_opp
            stats.categories.append((category, n_opp, product_categories.get(category, 0)))
        areas.append(stats)

    batches = [
        (b, (opp_batches if b.kind == EntryKind.OPPORTUNITY else product_batches).get(b.id, 0))
        for b in cached_published_batches()
    ]
    latest_opportunities = [
        LatestOpportunity(id_, title, category, published_at, Named(org_id, org_name))
        for id_, title, category, published_at, org_id, org_name in db.session.execute(
            select(Opportunity.id, Opportunity.title, Opportunity.field_category,
                   Opportunity.published_at, Organization.id, Organization.name)
            .join(Organization, Organization.id == Opportunity.publisher_id)
            .where(Opportunity.status == PUBLISHED)
            .order_by(Opportunity.published_at.desc(), Opportunity.id.desc())
            .limit(LATEST_COUNT)
        )
    ]
    latest_products = [
        LatestProduct(id_, name, maturity, published_at, Named(org_id, org_name))
        for id_, name, maturity, published_at, org_id, org_name in db.session.execute(
            select(Product.id, Product.name, Product.maturity, Product.published_at,
                   Organization.id, Organization.name)
            .join(Organization, Organization.id == Product.owner_id)
            .where(Product.status == PUBLISHED)
            .order_by(Product.published_at.desc(), Product.id.desc())
            .limit(LATEST_COUNT)
        )
    ]
    return HomeStats(
        opportunities=sum(opp_batches.values()),
        products=sum(product_batches.values()),
        batches=batches,
        areas=areas,
        latest_opportunities=latest_opportunities,
        latest_products=latest_products,
    )


# -------------------------------------------------------------------- keyset lists


@dataclass(frozen=True)
class _Segment:
    """A run of a list read in one index order: rows meeting ``where`` as well. A list is its
    segments one after the other (the opportunities: open ones, then closed ones)."""

    name: str
    where: tuple = ()


@dataclass(frozen=True, eq=False)
class _ListSpec:
    """A public list: which rows (``public`` and ``filters``), in which order (``key``, every
    column in one direction, unique because it ends with the id) and in which segments.
    ``cache_key`` names the rows for the count cache (the filters, and what else they depend on)."""

    model: type[Opportunity] | type[Product]
    key: tuple
    descending: bool
    public: tuple
    filters: tuple
    segments: tuple[_Segment, ...]
    cache_key: tuple


class _BoundedCache:
    """A small least-recently-used map, safe across threads; keys include the data version,
    so stale entries are never read again and simply age out."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: Hashable, value: Any) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


#: ``app.extensions`` key of the per-process cache of list counts.
LIST_CACHE = "portal.list_cache"
#: Counts kept per process (one integer per list, filter combination and segment).
LIST_CACHE_SIZE = 1024


def list_cache() -> _BoundedCache:
    """This app's cache of list counts (created on first use)."""
    cache = current_app.extensions.get(LIST_CACHE)
    if cache is None:
        cache = current_app.extensions.setdefault(LIST_CACHE, _BoundedCache(LIST_CACHE_SIZE))
    return cache


def _segment_count(spec: _ListSpec, segment: _Segment, stamp: Hashable | None) -> int:
    """``count(*)`` of a segment, cached per filters and public data version (no cache before
    the version counter exists)."""
    key = (spec.cache_key, segment.name, stamp)
    cache = list_cache() if stamp is not None else None
    if cache is not None and (hit := cache.get(key)) is not None:
        return hit
    n = db.session.scalar(
        select(func.count()).select_from(spec.model)
        .where(*spec.public, *spec.filters, *segment.where)
    ) or 0
    if cache is not None:
        cache.put(key, n)
    return n


#: Every LADDER_STEP-th key of a list is cached (per filters and data version), so that page N
#: is a seek from the nearest rung plus an OFFSET shorter than this, at any depth.
LADDER_STEP = 200


def _ladder(spec: _ListSpec, segment: _Segment, stamp: Hashable) -> list[tuple]:
    """The keys of rows LADDER_STEP, 2 × LADDER_STEP, … of a segment, in list order: one
    index-ordered ``row_number()`` pass, cached like the counts."""
    step = LADDER_STEP
    key = (spec.cache_key, segment.name, "ladder", step, stamp)
    cache = list_cache()
    if (hit := cache.get(key)) is not None:
        return hit
    position = func.row_number().over(order_by=_order(spec, reverse=False)).label("position")
    ranked = (select(*spec.key, position)
              .where(*spec.public, *spec.filters, *segment.where).subquery())
    rungs = [tuple(row) for row in db.session.execute(
        select(*[ranked.c[column.key] for column in spec.key])
        .where(ranked.c.position % step == 0).order_by(ranked.c.position)
    )]
    cache.put(key, rungs)
    return rungs


def _page_ids(spec: _ListSpec, segment: _Segment, *, offset: int, limit: int,
              stamp: Hashable | None) -> list[int]:
    """Ids ``offset …`` of a segment: a plain OFFSET near the start, else a seek from the
    ladder's nearest rung plus an OFFSET below :data:`LADDER_STEP`."""
    if offset < LADDER_STEP or stamp is None:
        return _segment_ids(spec, segment, limit=limit, offset=offset)
    ladder = _ladder(spec, segment, stamp)
    rung = min(offset // LADDER_STEP, len(ladder))
    if rung == 0:
        return _segment_ids(spec, segment, limit=limit, offset=offset)
    return _segment_ids(spec, segment, limit=limit, offset=offset - rung * LADDER_STEP,
                        beyond=ladder[rung - 1])


def _order(spec: _ListSpec, reverse: bool) -> list:
    descending = spec.descending != reverse
    return [c.desc() if descending else c.asc() for c in spec.key]


def _beyond(spec: _ListSpec, values: tuple, reverse: bool):
    """SQL: the row comes after ``values`` in the list order (before them when ``reverse``),
    as one row-value comparison that an index on the key columns answers."""
    left = tuple_(*spec.key) if len(spec.key) > 1 else spec.key[0]
    right = tuple_(*values) if len(values) > 1 else values[0]
    return left < right if spec.descending != reverse else left > right


def _segment_ids(spec: _ListSpec, segment: _Segment, *, limit: int, offset: int = 0,
                 beyond: tuple | None = None, reverse: bool = False) -> list[int]:
    """Ids of one segment in list order: an index-only read when an index covers the filter
    columns and the key."""
    stmt = select(spec.model.id).where(*spec.public, *spec.filters, *segment.where)
    if beyond is not None:
        stmt = stmt.where(_beyond(spec, beyond, reverse))
    stmt = stmt.order_by(*_order(spec, reverse)).limit(limit)
    if offset:
        stmt = stmt.offset(offset)
    return list(db.session.scalars(stmt))


def _anchor(spec: _ListSpec, entry_id: int) -> tuple[int, tuple] | None:
    """``(segment index, key values)`` of a published entry, or None (not public, or in no
    segment of this list). It need not match the filters: only its place in the order counts."""
    flags = [
        case((and_(*segment.where), 1), else_=0) if segment.where else literal(1)
        for segment in spec.segments
    ]
    row = db.session.execute(
        select(*spec.key, *flags).where(spec.model.id == entry_id, *spec.public)
    ).first()
    if row is None:
        return None
    n_key = len(spec.key)
    for index, flag in enumerate(row[n_key:]):
        if flag:
            return index, tuple(row[:n_key])
    return None


def _seek(spec: _ListSpec, counts: list[int], start: int, values: tuple, limit: int,
          reverse: bool) -> list[int]:
    """Up to ``limit`` ids after (``reverse``: before) the key ``values`` in segment ``start``,
    continuing into the next (previous) segments; in the direction of reading."""
    ids: list[int] = []
    order = range(start, len(spec.segments)) if not reverse else range(start, -1, -1)
    for index in order:
        if index != start and not counts[index]:
            continue
        ids += _segment_ids(spec, spec.segments[index], limit=limit - len(ids),
                            beyond=values if index == start else None, reverse=reverse)
        if len(ids) >= limit:
            break
    return ids


def _keyset_page(spec: _ListSpec, *, page: int | None, per_page: int, after: int | None,
                 before: int | None, load: Callable[[list[int]], list]) -> KeysetPage:
    """One page of a list without ``OFFSET`` over whole rows and without a count per request.

    * ``after`` / ``before`` an entry (下一页 / 上一页): a seek from that entry's key, reading
      ``per_page + 1`` ids from an index; ``page`` is then only a label. An anchor that is not
      public falls back to page 1, and a 上一页 that reaches the start shows page 1 whole.
    * a page number (bookmarks, numbered links, the API): the segment counts (cached per data
      version) say which segment the page starts in; the ids come from an index-only read of
      that segment, a seek from the cached ladder (:func:`_page_ids`) on deep pages; a page
      past the end reads nothing.

    Then one query loads the page's rows by id (``load``).
    """
    stamp = public_stamp()
    counts = [_segment_count(spec, segment, stamp) for segment in spec.segments]
    total = sum(counts)
    pages = max(-(-total // per_page), 1)
    label = page if page is not None and 1 <= page <= pages else None
    anchor = _anchor(spec, after if after is not None else before) if (after or before) else None
    if anchor is not None:
        start, values = anchor
        if after is not None:
            ids = _seek(spec, counts, start, values, per_page + 1, reverse=False)
            return KeysetPage(load(ids[:per_page]), page=label, per_page=per_page, total=total,
                              has_prev=True, has_next=len(ids) > per_page)
        ids = _seek(spec, counts, start, values, per_page + 1, reverse=True)
        if len(ids) > per_page:
            return KeysetPage(load(ids[:per_page][::-1]), page=label, per_page=per_page,
                              total=total, has_prev=True, has_next=True)
    if anchor is not None or after is not None or before is not None:
        page = 1
    page = max(page or 1, 1)
    offset = (page - 1) * per_page
    ids = []
    if offset < total:
        for segment, count in zip(spec.segments, counts, strict=True):
            if offset >= count:
                offset -= count
                continue
            ids += _page_ids(spec, segment, offset=offset, limit=per_page - len(ids), stamp=stamp)
            offset = 0
            if len(ids) >= per_page:
                break
    return KeysetPage(load(ids), page=page, per_page=per_page, total=total, has_prev=page > 1,
                      has_next=page * per_page < total)


def _load(model: type[Opportunity] | type[Product], ids: list[int], options: tuple) -> list:
    """The rows with these ids, in this order, in one query (plus the ``selectinload`` ones)."""
    if not ids:
        return []
    rows = {row.id: row for row in db.session.scalars(
        select(model).where(model.id.in_(ids)).options(*options))}
    return [rows[i] for i in ids if i in rows]


class OpportunityCard:
    """What a list card shows of a published opportunity (templates/portal/_macros.html), read
    as one plain row: no ORM identity map, no lazy attributes. The labels are the model's own
    properties, so a card reads exactly like the entry."""

    __slots__ = ("id", "title", "description", "field_category", "tier", "region_city",
                 "region_county", "budget_min", "budget_max", "deadline", "publisher", "batch")
    kind = EntryKind.OPPORTUNITY
    status = PUBLISHED
    region_label = Opportunity.region_label
    tier_label = Opportunity.tier_label
    budget_label = Opportunity.budget_label
    is_open = Opportunity.is_open
    days_left = Opportunity.days_left

    def __init__(self, id: int, title: str, description: str, field_category: str, tier: str,
                 region_city: str, region_county: str | None, budget_min: Decimal | None,
                 budget_max: Decimal | None, deadline: date | None, publisher: Named,
                 batch: BatchRef | None) -> None:
        self.id, self.title, self.description = id, title, description
        self.field_category, self.tier = field_category, tier
        self.region_city, self.region_county = region_city, region_county
        self.budget_min, self.budget_max, self.deadline = budget_min, budget_max, deadline
        self.publisher, self.batch = publisher, batch


class ProductCard:
    """What a list card shows of a published product (see :class:`OpportunityCard`)."""

    __slots__ = ("id", "name", "description", "maturity", "region_city", "region_county",
                 "owner", "batch", "categories", "tags")
    kind = EntryKind.PRODUCT
    status = PUBLISHED
    region_label = Product.region_label
    maturity_label = Product.maturity_label
    title = Product.title
    display_name = Product.display_name

    def __init__(self, id: int, name: str, description: str, maturity: str, region_city: str,
                 region_county: str | None, owner: Named, batch: BatchRef | None) -> None:
        self.id, self.name, self.description, self.maturity = id, name, description, maturity
        self.region_city, self.region_county = region_city, region_county
        self.owner, self.batch = owner, batch
        #: In the order of the model's relationships (by category, by tag).
        self.categories: list[str] = []
        self.tags: list[str] = []


def _batch_ref(id_: int | None, title: str | None) -> BatchRef | None:
    return None if id_ is None else BatchRef(id_, title)


def _in_order(rows: dict[int, Any], ids: list[int]) -> list:
    return [rows[i] for i in ids if i in rows]


def _opportunity_cards(ids: list[int]) -> list[OpportunityCard]:
    """The cards of these opportunities, in this order: one statement."""
    if not ids:
        return []
    o = Opportunity
    rows = db.session.execute(
        select(o.id, o.title, o.description, o.field_category, o.tier, o.region_city,
               o.region_county, o.budget_min, o.budget_max, o.deadline,
               Organization.id, Organization.name, Batch.id, Batch.title)
        .join(Organization, Organization.id == o.publisher_id)
        .outerjoin(Batch, Batch.id == o.batch_id)
        .where(o.id.in_(ids))
    )
    cards = {row[0]: OpportunityCard(*row[:10], Named(row[10], row[11]), _batch_ref(row[12], row[13]))
             for row in rows}
    return _in_order(cards, ids)


def _product_cards(ids: list[int]) -> list[ProductCard]:
    """The cards of these products, in this order: two statements (the rows, then their
    categories and tags in one ``UNION ALL``)."""
    if not ids:
        return []
    p = Product
    rows = db.session.execute(
        select(p.id, p.name, p.description, p.maturity, p.region_city, p.region_county,
               Organization.id, Organization.name, Batch.id, Batch.title)
        .join(Organization, Organization.id == p.owner_id)
        .outerjoin(Batch, Batch.id == p.batch_id)
        .where(p.id.in_(ids))
    )
    cards = {row[0]: ProductCard(*row[:6], Named(row[6], row[7]), _batch_ref(row[8], row[9]))
             for row in rows}
    extras = union_all(
        select(ProductField.product_id.label("product_id"), literal(0).label("part"),
               ProductField.category.label("value")).where(ProductField.product_id.in_(ids)),
        select(ProductTag.product_id, literal(1), ProductTag.tag).where(ProductTag.product_id.in_(ids)),
    ).order_by(literal_column("part"), literal_column("value"))
    for product_id, part, value in db.session.execute(extras):
        card = cards.get(product_id)
        if card is not None:
            (card.tags if part else card.categories).append(value)
    return _in_order(cards, ids)


#: What the batch tables show.
_OPPORTUNITY_FULL = (joinedload(Opportunity.publisher), joinedload(Opportunity.batch))
_PRODUCT_FULL = (
    joinedload(Product.owner), joinedload(Product.batch),
    selectinload(Product.field_rows), selectinload(Product.tag_rows),
)
_BATCH_ROW = {
    EntryKind.OPPORTUNITY: (
        load_only(Opportunity.title, Opportunity.publisher_id, Opportunity.field_category,
                  Opportunity.tier, Opportunity.region_city, Opportunity.region_county,
                  Opportunity.status),
        joinedload(Opportunity.publisher).load_only(Organization.name),
    ),
    EntryKind.PRODUCT: (
        load_only(Product.name, Product.owner_id, Product.maturity, Product.region_city,
                  Product.region_county, Product.status),
        joinedload(Product.owner).load_only(Organization.name),
        selectinload(Product.field_rows),
    ),
}


# -------------------------------------------------------------------- batches


def _published_batches_query(kind: str | None = None) -> list[Batch]:
    stmt = select(Batch).where(Batch.status == BatchStatus.PUBLISHED)
    if kind is not None:
        stmt = stmt.where(Batch.kind == kind)
    return list(db.session.scalars(stmt.order_by(Batch.published_on.desc(), Batch.id.desc())))


def published_batches(kind: str | None = None) -> list[Batch]:
    """Published batches (of one kind), newest first."""
    return _published_batches_query(kind)


def cached_published_batches(kind: str | None = None) -> list[BatchRow]:
    """Published batches (of one kind), newest first, as plain rows cached per public data
    version (publishing a batch bumps the counter): the filter forms' choices and the home page."""
    rows = versioned("published_batches", lambda: [
        BatchRow(*row) for row in db.session.execute(
            select(Batch.id, Batch.kind, Batch.title, Batch.published_on)
            .where(Batch.status == BatchStatus.PUBLISHED)
            .order_by(Batch.published_on.desc(), Batch.id.desc()))
    ])
    return rows if kind is None else [row for row in rows if row.kind == kind]


def published_batches_with_counts() -> list[tuple[BatchRow, int]]:
    """Published batches, newest first, each with its number of published entries."""
    counts = cached_published_counts()
    by_batch = {**counts.opportunities_by_batch, **counts.products_by_batch}
    return [(b, by_batch.get(b.id, 0)) for b in cached_published_batches()]


def get_published_batch(batch_id: int) -> Batch:
    """A published batch; a collecting one is not public and raises :class:`NotFound`."""
    batch = db.session.get(Batch, batch_id)
    if batch is None or batch.status != BatchStatus.PUBLISHED:
        raise NotFound("批次不存在或尚未发布")
    return batch


def batch_entries(batch: Batch, page: int | None = 1, per_page: int = 50, *,
                  after: int | None = None, before: int | None = None) -> KeysetPage:
    """The published entries of a batch in list order (by id): a page by number, or the page
    after / before an entry (keyset; see :func:`_keyset_page`)."""
    model = Opportunity if batch.kind == EntryKind.OPPORTUNITY else Product
    spec = _ListSpec(
        model=model,
        key=(model.id,),
        descending=False,
        public=(model.status == PUBLISHED,),
        filters=(model.batch_id == batch.id,),
        segments=(_Segment("all"),),
        cache_key=("batch", batch.kind, batch.id),
    )
    options = _BATCH_ROW[batch.kind]
    result = _keyset_page(spec, page=page, per_page=per_page, after=after, before=before,
                          load=lambda ids: _load(model, ids, options))
    if result.first_index is None and result.items:
        # A seek link without its page label: the table's 序号 still needs the position.
        result.first_index = 1 + (db.session.scalar(
            select(func.count()).select_from(model)
            .where(*spec.public, *spec.filters, model.id < result.first_id)
        ) or 0)
    return result


# -------------------------------------------------------------------- lists


@dataclass
class Listing:
    """One page of a list. ``matched`` holds the highlighted terms of a keyword search."""

    page: KeysetPage | Pagination
    matched: dict[int, list[str]] = field(default_factory=dict)
    ranked: bool = False


def open_condition():
    """SQL: the opportunity is still open for answers (征集中) today in Beijing time."""
    return or_(Opportunity.deadline.is_(None), Opportunity.deadline >= timeutil.local_today())


def closed_condition():
    """SQL: the answer deadline (a Beijing date) is over; the exact negation of
    :func:`open_condition`, written so that an index on the deadline could serve it."""
    return Opportunity.deadline < timeutil.local_today()


def _opportunity_filters(filters: EntryFilters) -> list | None:
    """SQL conditions of ``filters`` on opportunities, except the open/closed state (None:
    nothing can match)."""
    if filters.maturity is not None or filters.tag is not None:
        return None
    conditions = []
    if filters.batch_id is not None:
        conditions.append(Opportunity.batch_id == filters.batch_id)
    if filters.area is not None:
        conditions.append(Opportunity.field_area == filters.area)
    if filters.category is not None:
        conditions.append(Opportunity.field_category == filters.category)
    if filters.city is not None:
        conditions.append(Opportunity.region_city == filters.city)
    if filters.county is not None:
        conditions.append(Opportunity.region_county == filters.county)
    if filters.tier is not None:
        conditions.append(Opportunity.tier == filters.tier)
    return conditions


def _product_filters(filters: EntryFilters) -> list | None:
    """SQL conditions of ``filters`` on products (None: nothing can match). Categories, areas
    and tags are ``EXISTS`` probes of the join tables' (value, product_id) indexes."""
    if filters.tier is not None:
        return None
    conditions = []
    if filters.batch_id is not None:
        conditions.append(Product.batch_id == filters.batch_id)
    if filters.area is not None or filters.category is not None:
        serves = ProductField.product_id == Product.id
        if filters.area is not None:
            serves = serves & (ProductField.area == filters.area)
        if filters.category is not None:
            serves = serves & (ProductField.category == filters.category)
        conditions.append(exists().where(serves))
    if filters.tag is not None:
        conditions.append(
            exists().where(ProductTag.product_id == Product.id, ProductTag.tag == filters.tag)
        )
    if filters.city is not None:
        conditions.append(Product.region_city == filters.city)
    if filters.county is not None:
        conditions.append(Product.region_county == filters.county)
    if filters.maturity is not None:
        conditions.append(Product.maturity == filters.maturity)
    return conditions


def opportunity_query(filters: EntryFilters) -> Select | None:
    """Published opportunities matching ``filters``: open ones first, then newest first
    (None: nothing can match). Every row, for exports; the pages use :func:`list_opportunities`."""
    conditions = _opportunity_filters(filters)
    if conditions is None:
        return None
    stmt = select(Opportunity).where(Opportunity.status == PUBLISHED, *conditions)
    if filters.state == "open":
        stmt = stmt.where(open_condition())
    elif filters.state == "closed":
        stmt = stmt.where(~open_condition())
    return stmt.options(joinedload(Opportunity.publisher), joinedload(Opportunity.batch)).order_by(
        case((open_condition(), 0), else_=1), Opportunity.published_at.desc(), Opportunity.id.desc()
    )


def product_query(filters: EntryFilters) -> Select | None:
    """Published products matching ``filters``, newest first (None: nothing can match). Every
    row, for exports; the pages use :func:`list_products`."""
    conditions = _product_filters(filters)
    if conditions is None:
        return None
    return select(Product).where(Product.status == PUBLISHED, *conditions).options(
        joinedload(Product.owner),
        joinedload(Product.batch),
        selectinload(Product.field_rows),
        selectinload(Product.tag_rows),
    ).order_by(Product.published_at.desc(), Product.id.desc())


def _opportunity_spec(filters: EntryFilters) -> _ListSpec | None:
    """The opportunity list: open ones (征集中) first, then closed ones, each newest first.

    The two runs are separate segments so that each is read in the order of an index; which
    entries are open depends on today's (Beijing) date, so the day is part of the cache key.
    """
    conditions = _opportunity_filters(filters)
    if conditions is None:
        return None
    open_run = _Segment("open", (open_condition(),))
    closed_run = _Segment("closed", (closed_condition(),))
    segments = {"open": (open_run,), "closed": (closed_run,)}.get(filters.state, (open_run, closed_run))
    return _ListSpec(
        model=Opportunity,
        key=(Opportunity.published_at, Opportunity.id),
        descending=True,
        public=(Opportunity.status == PUBLISHED, Opportunity.published_at.is_not(None)),
        filters=tuple(conditions),
        segments=segments,
        cache_key=(EntryKind.OPPORTUNITY, filters, timeutil.local_today()),
    )


def _product_spec(filters: EntryFilters) -> _ListSpec | None:
    """The product list, newest first."""
    conditions = _product_filters(filters)
    if conditions is None:
        return None
    return _ListSpec(
        model=Product,
        key=(Product.published_at, Product.id),
        descending=True,
        public=(Product.status == PUBLISHED, Product.published_at.is_not(None)),
        filters=tuple(conditions),
        segments=(_Segment("all"),),
        # The open/closed state does not apply to products; keep it out of the key.
        cache_key=(EntryKind.PRODUCT, replace(filters, state=None)),
    )


def _listing(kind: str, spec: _ListSpec | None, filters: EntryFilters, q: str | None,
             page: int | None, per_page: int, after: int | None, before: int | None,
             load: Callable[[list[int]], list]) -> Listing:
    if q and q.strip():
        result = search_service.search(kind, q, filters, page or 1, per_page)
        return Listing(page=result, matched=result.matched, ranked=True)
    if spec is None:
        return Listing(page=search_service.empty_page(per_page))
    return Listing(page=_keyset_page(spec, page=page, per_page=per_page, after=after,
                                     before=before, load=load))


def list_opportunities(filters: EntryFilters, q: str | None = None, page: int | None = 1,
                       per_page: int = 20, *, after: int | None = None,
                       before: int | None = None, card_only: bool = False) -> Listing:
    """A page of published opportunities: open ones first and newest first (by page number, or
    after / before an entry), or ranked by relevance to ``q``.

    ``card_only`` loads just what a list card shows, as plain rows (:class:`OpportunityCard`,
    the portal pages); otherwise whole ORM rows (the API serialises more fields).
    """
    if card_only:
        load = _opportunity_cards
    else:
        def load(ids: list[int]) -> list:
            return _load(Opportunity, ids, _OPPORTUNITY_FULL)
    return _listing(EntryKind.OPPORTUNITY, _opportunity_spec(filters), filters, q, page,
                    per_page, after, before, load)


def list_products(filters: EntryFilters, q: str | None = None, page: int | None = 1,
                  per_page: int = 20, *, after: int | None = None, before: int | None = None,
                  card_only: bool = False) -> Listing:
    """A page of published products, newest first (by page number, or after / before an
    entry), or ranked by relevance to ``q``. ``card_only``: see :func:`list_opportunities`."""
    if card_only:
        load = _product_cards
    else:
        def load(ids: list[int]) -> list:
            return _load(Product, ids, _PRODUCT_FULL)
    return _listing(EntryKind.PRODUCT, _product_spec(filters), filters, q, page, per_page,
                    after, before, load)


def search_entries(q: str, sides: tuple[str, ...], filters: EntryFilters, page: int = 1,
                   per_page: int = 20) -> dict[str, RankedPage]:
    """Ranked hits for ``q`` on each requested side (``EntryKind`` values)."""
    return {kind: search_service.search(kind, q, filters, page, per_page) for kind in sides}


# -------------------------------------------------------------------- detail pages


def get_published_opportunity(entry_id: int) -> Opportunity:
    """A published opportunity; anything else is :class:`NotFound` on the public portal."""
    entry = db.session.scalar(
        select(Opportunity)
        .where(Opportunity.id == entry_id, Opportunity.status == PUBLISHED)
        .options(joinedload(Opportunity.publisher), joinedload(Opportunity.batch))
    )
    if entry is None:
        raise NotFound("条目不存在或尚未公开")
    return entry


def get_published_product(entry_id: int) -> Product:
    """A published product; anything else is :class:`NotFound` on the public portal."""
    entry = db.session.scalars(
        select(Product)
        .where(Product.id == entry_id, Product.status == PUBLISHED)
        .options(
            joinedload(Product.owner),
            joinedload(Product.batch),
            # Joined, not select-in: one statement for the page (a product has a few of each;
            # the relationships' order_by orders the joined rows).
            joinedload(Product.field_rows),
            joinedload(Product.tag_rows),
        )
    ).unique().first()
    if entry is None:
        raise NotFound("条目不存在或尚未公开")
    return entry

"""Read-only queries of the public portal: lists, filters, batch pages and home statistics.

Only PUBLISHED entries (and published batches) are ever returned. Every list loads its page's
related rows eagerly (``joinedload`` for many-to-one, ``selectinload`` for a product's field and
tag rows), so the number of statements per page does not grow with the page size.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flask import current_app
from flask_sqlalchemy.pagination import Pagination
from sqlalchemy import Select, case, distinct, exists, func, or_, select
from sqlalchemy.orm import joinedload, selectinload

from marketplace import timeutil
from marketplace.extensions import db
from marketplace.models import (
    Batch,
    BatchStatus,
    EntryKind,
    EntryStatus,
    Opportunity,
    Product,
    ProductField,
    ProductTag,
)
from marketplace.reference import reference
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


@dataclass
class HomeStats:
    opportunities: int
    products: int
    #: Published batches with the number of their published entries, newest first.
    batches: list[tuple[Batch, int]]
    areas: list[AreaStats]
    latest_opportunities: list[Opportunity]
    latest_products: list[Product]


@dataclass(frozen=True)
class PublishedCounts:
    """Aggregate counts of the published entries (what the home page's numbers come from)."""

    opportunities_by_batch: dict[int | None, int]
    opportunities_by_category: dict[str, int]
    products_by_batch: dict[int | None, int]
    products_by_category: dict[str, int]
    products_by_area: dict[str, int]


_COUNTS_CACHE = "portal.published_counts"


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
    """:func:`published_counts`, cached per app until the public-content counter moves.

    Every service change to what is public bumps :mod:`~marketplace.services.index_sync`, the
    same signal that refreshes the search index, so the cache is never stale for changes made
    through the services. Before the counter exists nothing is cached.
    """
    stamp = search_service.public_stamp()
    cached = current_app.extensions.get(_COUNTS_CACHE)
    if stamp is not None and cached is not None and cached[0] == stamp:
        return cached[1]
    counts = published_counts()
    if stamp is not None:
        current_app.extensions[_COUNTS_CACHE] = (stamp, counts)
    return counts


def home_stats() -> HomeStats:
    """Counts of published entries in total, per published batch and per area and category.

    The counts come from :func:`cached_published_counts`; the batches and the latest entries
    are three small queries.
    """
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
        for b in _published_batches_query()
    ]
    latest_opportunities = list(
        db.session.scalars(
            select(Opportunity)
            .where(Opportunity.status == PUBLISHED)
            .options(joinedload(Opportunity.publisher))
            .order_by(Opportunity.published_at.desc(), Opportunity.id.desc())
            .limit(LATEST_COUNT)
        )
    )
    latest_products = list(
        db.session.scalars(
            select(Product)
            .where(Product.status == PUBLISHED)
            .options(joinedload(Product.owner))
            .order_by(Product.published_at.desc(), Product.id.desc())
            .limit(LATEST_COUNT)
        )
    )
    return HomeStats(
        opportunities=sum(opp_batches.values()),
        products=sum(product_batches.values()),
        batches=batches,
        areas=areas,
        latest_opportunities=latest_opportunities,
        latest_products=latest_products,
    )


# -------------------------------------------------------------------- batches


def _published_batches_query(kind: str | None = None) -> list[Batch]:
    stmt = select(Batch).where(Batch.status == BatchStatus.PUBLISHED)
    if kind is not None:
        stmt = stmt.where(Batch.kind == kind)
    return list(db.session.scalars(stmt.order_by(Batch.published_on.desc(), Batch.id.desc())))


def published_batches(kind: str | None = None) -> list[Batch]:
    """Published batches (of one kind), newest first."""
    return _published_batches_query(kind)


def published_batches_with_counts() -> list[tuple[Batch, int]]:
    """Published batches, newest first, each with its number of published entries."""
    counts = cached_published_counts()
    by_batch = {**counts.opportunities_by_batch, **counts.products_by_batch}
    return [(b, by_batch.get(b.id, 0)) for b in _published_batches_query()]


def get_published_batch(batch_id: int) -> Batch:
    """A published batch; a collecting one is not public and raises :class:`NotFound`."""
    batch = db.session.get(Batch, batch_id)
    if batch is None or batch.status != BatchStatus.PUBLISHED:
        raise NotFound("批次不存在或尚未发布")
    return batch


def batch_entries(batch: Batch, page: int = 1, per_page: int = 50) -> Pagination:
    """The published entries of a batch in list order (by id), paginated."""
    if batch.kind == EntryKind.OPPORTUNITY:
        stmt = (
            select(Opportunity)
            .where(Opportunity.batch_id == batch.id, Opportunity.status == PUBLISHED)
            .options(joinedload(Opportunity.publisher))
            .order_by(Opportunity.id)
        )
    else:
        stmt = (
            select(Product)
            .where(Product.batch_id == batch.id, Product.status == PUBLISHED)
            .options(joinedload(Product.owner), selectinload(Product.field_rows))
            .order_by(Product.id)
        )
    return db.paginate(stmt, page=page, per_page=per_page, error_out=False)


# -------------------------------------------------------------------- lists


@dataclass
class Listing:
    """One page of a list. ``matched`` holds the highlighted terms of a keyword search."""

    page: Pagination
    matched: dict[int, list[str]] = field(default_factory=dict)
    ranked: bool = False


def open_condition():
    """SQL: the opportunity is still open for answers (征集中) today in Beijing time."""
    return or_(Opportunity.deadline.is_(None), Opportunity.deadline >= timeutil.local_today())


def opportunity_query(filters: EntryFilters) -> Select | None:
    """Published opportunities matching ``filters``: open ones first, then newest first
    (None: nothing can match)."""
    if filters.maturity is not None or filters.tag is not None:
        return None
    stmt = select(Opportunity).where(Opportunity.status == PUBLISHED)
    if filters.state == "open":
        stmt = stmt.where(open_condition())
    elif filters.state == "closed":
        stmt = stmt.where(~open_condition())
    if filters.batch_id is not None:
        stmt = stmt.where(Opportunity.batch_id == filters.batch_id)
    if filters.area is not None:
        stmt = stmt.where(Opportunity.field_area == filters.area)
    if filters.category is not None:
        stmt = stmt.where(Opportunity.field_category == filters.category)
    if filters.city is not None:
        stmt = stmt.where(Opportunity.region_city == filters.city)
    if filters.county is not None:
        stmt = stmt.where(Opportunity.region_county == filters.county)
    if filters.tier is not None:
        stmt = stmt.where(Opportunity.tier == filters.tier)
    return stmt.options(joinedload(Opportunity.publisher), joinedload(Opportunity.batch)).order_by(
        case((open_condition(), 0), else_=1), Opportunity.published_at.desc(), Opportunity.id.desc()
    )


def product_query(filters: EntryFilters) -> Select | None:
    """Published products matching ``filters``, newest first (None: nothing can match)."""
    if filters.tier is not None:
        return None
    stmt = select(Product).where(Product.status == PUBLISHED)
    if filters.batch_id is not None:
        stmt = stmt.where(Product.batch_id == filters.batch_id)
    if filters.area is not None or filters.category is not None:
        serves = ProductField.product_id == Product.id
        if filters.area is not None:
            serves = serves & (ProductField.area == filters.area)
        if filters.category is not None:
            serves = serves & (ProductField.category == filters.category)
        stmt = stmt.where(exists().where(serves))
    if filters.tag is not None:
        stmt = stmt.where(
            exists().where(ProductTag.product_id == Product.id, ProductTag.tag == filters.tag)
        )
    if filters.city is not None:
        stmt = stmt.where(Product.region_city == filters.city)
    if filters.county is not None:
        stmt = stmt.where(Product.region_county == filters.county)
    if filters.maturity is not None:
        stmt = stmt.where(Product.maturity == filters.maturity)
    return stmt.options(
        joinedload(Product.owner),
        joinedload(Product.batch),
        selectinload(Product.field_rows),
        selectinload(Product.tag_rows),
    ).order_by(Product.published_at.desc(), Product.id.desc())


def _listing(kind: str, stmt: Select | None, filters: EntryFilters, q: str | None,
             page: int, per_page: int) -> Listing:
    if q and q.strip():
        result = search_service.search(kind, q, filters, page, per_page)
        return Listing(page=result, matched=result.matched, ranked=True)
    if stmt is None:
        return Listing(page=search_service.empty_page(per_page))
    return Listing(page=db.paginate(stmt, page=page, per_page=per_page, error_out=False))


def list_opportunities(filters: EntryFilters, q: str | None = None, page: int = 1,
                       per_page: int = 20) -> Listing:
    """A page of published opportunities: newest first, or ranked by relevance to ``q``."""
    return _listing(EntryKind.OPPORTUNITY, opportunity_query(filters), filters, q, page, per_page)


def list_products(filters: EntryFilters, q: str | None = None, page: int = 1,
                  per_page: int = 20) -> Listing:
    """A page of published products: newest first, or ranked by relevance to ``q``."""
    return _listing(EntryKind.PRODUCT, product_query(filters), filters, q, page, per_page)


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
    entry = db.session.scalar(
        select(Product)
        .where(Product.id == entry_id, Product.status == PUBLISHED)
        .options(
            joinedload(Product.owner),
            joinedload(Product.batch),
            selectinload(Product.field_rows),
            selectinload(Product.tag_rows),
        )
    )
    if entry is None:
        raise NotFound("条目不存在或尚未公开")
    return entry

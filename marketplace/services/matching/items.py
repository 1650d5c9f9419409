"""Engine items from database rows: what the matching engine knows about a published entry.

Only PUBLISHED rows are ever loaded for the index; :func:`item_for` turns any row (a draft too)
into an item so that it can be a query on its own matching page.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from functools import lru_cache

from sqlalchemy import select
from sqlalchemy.orm import joinedload, selectinload

from marketplace.extensions import db
from marketplace.models import (
    EntryKind,
    EntryStatus,
    Opportunity,
    Product,
    ProductField,
    ProductTag,
)
from marketplace.reference import reference
from matching import Item, document_text

SIDES: tuple[str, ...] = (EntryKind.OPPORTUNITY.value, EntryKind.PRODUCT.value)
_CHUNK = 500
MODELS: dict[str, type[Opportunity] | type[Product]] = {
    EntryKind.OPPORTUNITY: Opportunity,
    EntryKind.PRODUCT: Product,
}

Entry = Opportunity | Product


@lru_cache(maxsize=8)
def _tag_patterns(tags: tuple[str, ...]) -> list[tuple[str, re.Pattern[str]]]:
    patterns = []
    for tag in tags:
        alternatives = [re.escape(a) for a in tag.split("/") if a]
        # ASCII alternatives (5G, AR, GIS) must not be part of a longer ASCII word.
        body = "|".join(f"(?<![A-Za-z0-9]){a}(?![A-Za-z0-9])" if a.isascii() else a for a in alternatives)
        patterns.append((tag, re.compile(body, re.IGNORECASE)))
    return patterns


def mentioned_tags(text: str) -> tuple[str, ...]:
    """Technology tags (from ``seeds/tags.json``) named in an opportunity's text.

    Opportunities have no tag field; deriving tags from the text lets the tag signal and the
    「技术标签」 reason work for needs that name a technology.
    """
    return tuple(tag for tag, pattern in _tag_patterns(reference().tags) if pattern.search(text))


def opportunity_item(
    id: int, title: str, description: str, category: str, area: str, city: str, county: str | None
) -> Item:
    return Item(
        id=id,
        side=EntryKind.OPPORTUNITY.value,
        title=title,
        text=description,
        categories=(category,),
        areas=(area,) if area else (),
        region_city=city,
        region_county=county or None,
        tags=mentioned_tags(f"{title}\n{description}"),
    )


def product_item(
    id: int,
    name: str,
    description: str,
    cases: str,
    categories: Sequence[str],
    areas: Iterable[str],
    tags: Sequence[str],
    maturity: str,
    city: str,
    county: str | None,
) -> Item:
    return Item(
        id=id,
        side=EntryKind.PRODUCT.value,
        title=name,
        text="\n".join(p for p in (description.strip(), (cases or "").strip()) if p),
        categories=tuple(sorted(categories)),
        areas=tuple(sorted(set(areas))),
        region_city=city,
        region_county=county or None,
        tags=tuple(sorted(tags)),
        maturity=maturity or None,
    )


def item_for(entry: Entry) -> Item:
    """The engine item of an entry row, whatever its status (a draft can be a query)."""
    if isinstance(entry, Opportunity):
        return opportunity_item(
            entry.id,
            entry.title,
            entry.description,
            entry.field_category,
            entry.field_area,
            entry.region_city,
            entry.region_county,
        )
    return product_item(
        entry.id,
        entry.name,
        entry.description,
        entry.cases,
        entry.categories,
        entry.areas,
        entry.tags,
        entry.maturity,
        entry.region_city,
        entry.region_county,
    )


def chunks(values: Sequence[int], size: int = _CHUNK) -> Iterable[Sequence[int]]:
    """``values`` in slices of ``size`` (keeps ``IN (...)`` lists short)."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


def load_published_items(side: str, ids: Sequence[int] | None = None) -> list[Item]:
    """Items of the published entries of one side (all, or those among ``ids``), by id."""
    if ids is not None:
        return [item for chunk in chunks(sorted(ids)) for item in _load_items(side, chunk)]
    return _load_items(side, None)


def _load_items(side: str, ids: Sequence[int] | None) -> list[Item]:
    published = EntryStatus.PUBLISHED
    if side == EntryKind.OPPORTUNITY:
        stmt = select(
            Opportunity.id,
            Opportunity.title,
            Opportunity.description,
            Opportunity.field_category,
            Opportunity.field_area,
            Opportunity.region_city,
            Opportunity.region_county,
        ).where(Opportunity.status == published)
        if ids is not None:
            stmt = stmt.where(Opportunity.id.in_(ids))
        return [opportunity_item(*row) for row in db.session.execute(stmt.order_by(Opportunity.id))]

    stmt = select(
        Product.id,
        Product.name,
        Product.description,
        Product.cases,
        Product.maturity,
        Product.region_city,
        Product.region_county,
    ).where(Product.status == published)
    field_stmt = select(ProductField.product_id, ProductField.category, ProductField.area)
    tag_stmt = select(ProductTag.product_id, ProductTag.tag)
    if ids is not None:
        # A few ids (the delta): their rows by primary key; rows of an id that is not published
        # are read but never used (only published products are listed below).
        stmt = stmt.where(Product.id.in_(ids))
        field_stmt = field_stmt.where(ProductField.product_id.in_(ids))
        tag_stmt = tag_stmt.where(ProductTag.product_id.in_(ids))
    else:
        field_stmt = field_stmt.join(Product, Product.id == ProductField.product_id).where(
            Product.status == published
        )
        tag_stmt = tag_stmt.join(Product, Product.id == ProductTag.product_id).where(
            Product.status == published
        )
    categories: dict[int, list[str]] = {}
    areas: dict[int, list[str]] = {}
    for product_id, category, area in db.session.execute(field_stmt):
        categories.setdefault(product_id, []).append(category)
        areas.setdefault(product_id, []).append(area)
    tags: dict[int, list[str]] = {}
    for product_id, tag in db.session.execute(tag_stmt):
        tags.setdefault(product_id, []).append(tag)
    return [
        product_item(
            row.id,
            row.name,
            row.description,
            row.cases,
            categories.get(row.id, []),
            areas.get(row.id, []),
            tags.get(row.id, []),
            row.maturity,
            row.region_city,
            row.region_county,
        )
        for row in db.session.execute(stmt.order_by(Product.id))
    ]


def published_stamps(side: str) -> dict[int, datetime]:
    """``{id: updated_at}`` of the published rows of one side (what an index was built from)."""
    model = MODELS[side]
    rows = db.session.execute(select(model.id, model.updated_at).where(model.status == EntryStatus.PUBLISHED))
    return {item_id: updated_at for item_id, updated_at in rows}


def load_rows(side: str, ids: Sequence[int]) -> dict[int, Entry]:
    """Published rows by id, with what the result cards show, in one query (+ selectins)."""
    if not ids:
        return {}
    model = MODELS[side]
    if side == EntryKind.OPPORTUNITY:
        options = [joinedload(Opportunity.publisher)]
    else:
        options = [
            joinedload(Product.owner),
            selectinload(Product.field_rows),
            selectinload(Product.tag_rows),
        ]
    rows = db.session.scalars(
        select(model).where(model.id.in_(list(ids)), model.status == EntryStatus.PUBLISHED).options(*options)
    ).unique()
    return {row.id: row for row in rows}


def text_hash(item: Item) -> str:
    """sha256 of the document text: part of the embedding cache key."""
    return hashlib.sha256(document_text(item).encode("utf-8")).hexdigest()


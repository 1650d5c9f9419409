"""The public lists at any depth: keyset (seek) pages, page numbers, cached counts, indexes.

Every page read by ``after=`` / ``before=`` or by number must hold exactly the rows of the
full ordered query (the one the exports use), for many filter combinations and on both
database backends.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import event, select, text

from marketplace import timeutil
from marketplace.extensions import db as _db
from marketplace.models import BatchStatus, EntryStatus
from marketplace.models.base import utcnow
from marketplace.services import batches, entries, index_sync, portal
from marketplace.services.search import EntryFilters

CITIES = [("南昌市", "东湖区"), ("九江市", "浔阳区"), ("赣州市", "章贡区")]
CATEGORIES = [("交通出行", "数字生活"), ("社会保障", "数字生活"), ("政务服务", "数字政府")]
TIERS = ["major", "integrated", "focused"]
MATURITIES = ["rnd", "pilot", "scale"]
TAGS = [("物联网",), ("5G", "物联网"), ("人工智能",)]


@pytest.fixture
def catalogue(db, make):
    """40 published needs and 40 published products across every filter, many of them sharing
    a publication time (ties broken by id), a third of the needs past their deadline and some
    without one; plus drafts and withdrawn entries that must never show."""
    today = timeutil.local_today()
    opp_batches = [make.batch("opportunity", BatchStatus.PUBLISHED) for _ in range(2)]
    product_batches = [make.batch("product", BatchStatus.PUBLISHED) for _ in range(2)]
    publisher = make.org(kind="government")
    supplier = make.org()
    base = utcnow() - timedelta(days=1)
    for i in range(40):
        (category, area), (city, county) = CATEGORIES[i % 3], CITIES[(i // 3) % 3]
        stamp = base + timedelta(minutes=i // 4)  # four entries per publication time
        deadline = [today + timedelta(days=30), today - timedelta(days=5), None, today][i % 4]
        make.opportunity(
            publisher, EntryStatus.PUBLISHED, opp_batches[i % 2], title=f"场景{i:02d}",
            field_category=category, field_area=area, region_city=city, region_county=county,
            tier=TIERS[i % 3], deadline=deadline, published_at=stamp,
        )
        make.product(
            supplier, EntryStatus.PUBLISHED, product_batches[i % 2], name=f"产品{i:02d}",
            fields=(category,) if i % 2 else (category, "医疗健康"), tags=TAGS[i % 3],
            maturity=MATURITIES[(i // 2) % 3], region_city=city, region_county=county,
            published_at=stamp,
        )
    for status in (EntryStatus.DRAFT, EntryStatus.WITHDRAWN, EntryStatus.SUBMITTED):
        make.opportunity(publisher, status, title=f"隐藏场景{status}")
        make.product(supplier, status, name=f"隐藏产品{status}")
    index_sync.bump()
    db.session.commit()
    return {"opp_batches": opp_batches, "product_batches": product_batches}


OPPORTUNITY_FILTERS = [
    {},
    {"state": "open"},
    {"state": "closed"},
    {"category": "交通出行"},
    {"area": "数字生活", "city": "南昌市"},
    {"city": "九江市", "county": "浔阳区"},
    {"tier": "focused", "state": "open"},
    {"tier": "major", "category": "政务服务"},
    {"batch": 0},
    {"batch": 1, "state": "closed"},
    {"category": "医疗健康"},  # nothing matches
]
PRODUCT_FILTERS = [
    {},
    {"tag": "物联网"},
    {"tag": "物联网", "maturity": "pilot"},
    {"area": "数字生活"},
    {"category": "医疗健康", "city": "赣州市"},
    {"city": "南昌市", "county": "东湖区", "maturity": "scale"},
    {"batch": 1, "tag": "5G"},
    {"state": "closed"},  # does not apply to products
    {"tag": "区块链"},  # nothing matches
]


def _filters(spec: dict, batch_list) -> EntryFilters:
    values = dict(spec)
    if "batch" in values:
        values["batch_id"] = batch_list[values.pop("batch")].id
    return EntryFilters(**values)


def _reference(kind: str, filters: EntryFilters) -> list[int]:
    """The whole list in order, from the unpaginated query the exports use."""
    stmt = (portal.opportunity_query if kind == "opportunity" else portal.product_query)(filters)
    return [] if stmt is None else [row.id for row in _db.session.scalars(stmt).unique()]


def _lister(kind: str):
    return portal.list_opportunities if kind == "opportunity" else portal.list_products


def _walk(kind: str, filters: EntryFilters, per_page: int) -> dict[str, list[int]]:
    """Read the whole list three ways: by page number, forward by ``after`` and backward by
    ``before`` from the last page."""
    listing = _lister(kind)
    first = listing(filters, per_page=per_page, card_only=True).page
    by_number = []
    for number in range(1, first.pages + 1):
        page = listing(filters, page=number, per_page=per_page).page
        assert page.page == number and page.total == first.total
        by_number += [e.id for e in page.items]
    forward, page = [], first
    while True:
        forward += [e.id for e in page.items]
        if not page.has_next:
            break
        page = listing(filters, page=None, per_page=per_page, after=page.last_id).page
        assert page.has_prev
    backward = []
    page = listing(filters, page=max(first.pages, 1), per_page=per_page).page
    while True:
        backward = [e.id for e in page.items] + backward
        if not page.has_prev:
            break
        page = listing(filters, page=None, per_page=per_page, before=page.first_id).page
        assert page.has_next
    return {"number": by_number, "after": forward, "before": backward}


@pytest.fixture(params=[200, 4], ids=["ladder-200", "ladder-4"])
def ladder_step(request, monkeypatch):
    """The default ladder, and one with a rung every 4 rows so that deep page numbers seek."""
    monkeypatch.setattr(portal, "LADDER_STEP", request.param)
    return request.param


@pytest.mark.parametrize("spec", OPPORTUNITY_FILTERS, ids=str)
def test_opportunity_pages_hold_exactly_the_ordered_rows(catalogue, spec, ladder_step):
    filters = _filters(spec, catalogue["opp_batches"])
    expected = _reference("opportunity", filters)
    for per_page in (3, 7, 50):
        walks = _walk("opportunity", filters, per_page)
        assert walks == {"number": expected, "after": expected, "before": expected}


@pytest.mark.parametrize("spec", PRODUCT_FILTERS, ids=str)
def test_product_pages_hold_exactly_the_ordered_rows(catalogue, spec, ladder_step):
    filters = _filters(spec, catalogue["product_batches"])
    expected = _reference("product", filters)
    for per_page in (3, 7, 50):
        walks = _walk("product", filters, per_page)
        assert walks == {"number": expected, "after": expected, "before": expected}


def test_the_reference_lists_really_have_several_pages(catalogue):
    """Guard: the walks above cross pages, segments and ties."""
    everything = _reference("opportunity", EntryFilters())
    closed = _reference("opportunity", EntryFilters(state="closed"))
    assert len(everything) == 40 and 0 < len(closed) < 40
    assert everything[-len(closed):] == closed  # open ones first, then closed ones
    assert len(_reference("product", EntryFilters(tag="物联网", maturity="pilot"))) >= 4


def test_deep_page_numbers_seek_from_a_cached_ladder(db, catalogue, monkeypatch):
    monkeypatch.setattr(portal, "LADDER_STEP", 4)
    expected = _reference("product", EntryFilters())
    portal.list_products(EntryFilters(), page=4, per_page=5)  # builds the ladder
    with _statements(db) as statements:
        page = portal.list_products(EntryFilters(), page=7, per_page=5).page
    assert [e.id for e in page.items] == expected[30:35]
    (ids_query,) = [s for s in statements if "LIMIT" in s.upper() and "product.description" not in s
                    and "FROM product" in s]
    assert "row_number" not in ids_query.lower() and "OFFSET" in ids_query.upper()
    assert not any("row_number" in s.lower() for s in statements)  # the ladder was cached


def test_batch_pages_by_number_and_by_seek_agree(client, catalogue):
    batch = catalogue["product_batches"][0]
    forward, page = [], portal.batch_entries(batch, per_page=6)
    numbered = []
    for number in range(1, page.pages + 1):
        numbered += [e.id for e in portal.batch_entries(batch, page=number, per_page=6).items]
    while True:
        forward += [e.id for e in page.items]
        if not page.has_next:
            break
        page = portal.batch_entries(batch, page=None, per_page=6, after=page.last_id)
    assert forward == numbered == sorted(forward) and len(forward) == 20


def test_a_batch_seek_link_without_its_label_still_numbers_the_rows(client, catalogue):
    batch = catalogue["opp_batches"][0]
    ids = [e.id for e in portal.batch_entries(batch, per_page=50).items]
    html = client.get(f"/batches/{batch.id}?after={ids[4]}").get_data(as_text=True)
    assert '<td class="text-center">6</td>' in html


# -------------------------------------------------------------------- links on the pages


def _links(html: str, label: str) -> list[str]:
    return [href.replace("&amp;", "&")
            for href in re.findall(rf'<a class="page-link"[^>]*href="([^"#]+)">{label}</a>', html)]


def _names(html: str, prefix: str) -> list[str]:
    return re.findall(rf">({prefix}\d\d)<", html)


def test_next_and_previous_links_seek_and_keep_the_filters(client, catalogue):
    url = "/products?tag=物联网&area=数字生活"
    html = client.get(url).get_data(as_text=True)
    expected = [f"产品{i:02d}" for i in range(39, -1, -1) if i % 3 != 2]  # newest first
    assert len(expected) == 27
    first = _names(html, "产品")
    assert first == expected[:20]
    assert "第 1/2 页" in html
    (next_link,) = _links(html, "下一页")
    assert "after=" in next_link and "page=2" in next_link
    assert "tag=" in next_link and "area=" in next_link
    second_html = client.get(next_link).get_data(as_text=True)
    assert _names(second_html, "产品") == expected[20:]
    assert "第 2/2 页" in second_html
    assert not _links(second_html, "下一页")
    (prev_link,) = _links(second_html, "上一页")
    assert _names(client.get(prev_link).get_data(as_text=True), "产品") == first


def test_previous_link_from_a_deep_page_seeks_before_its_first_row(client, catalogue):
    html = client.get("/opportunities?page=2").get_data(as_text=True)
    (prev_link,) = _links(html, "上一页")
    assert "page=1" in prev_link  # page 1 is a plain link
    assert portal.list_opportunities(EntryFilters(), page=2, per_page=7).page.prev_args == {"page": 1}
    third = portal.list_opportunities(EntryFilters(), page=3, per_page=7).page
    assert third.prev_args == {"before": third.first_id, "page": 2}
    assert third.next_args == {"after": third.last_id, "page": 4}


def test_numbered_links_cover_the_first_pages_the_current_one_and_the_last(catalogue):
    page = portal.list_products(EntryFilters(), page=5, per_page=2).page
    assert page.pages == 20
    assert page.numbered() == [1, 2, 3, 4, 5, 6, 7, None, 20]
    page = portal.list_products(EntryFilters(), page=12, per_page=2).page
    assert page.numbered() == [1, 2, 3, 4, 5, None, 10, 11, 12, 13, 14, None, 20]


# -------------------------------------------------------------------- bad input


@pytest.mark.parametrize("query", [
    "after=abc", "after=-3", "after=0", "after=1e3", "after=99999999999999999999",
    "before=abc", "before=2147483648", "after=2147483647", "before=2147483647",
    "after=5&before=6", "page=abc&after=x", "after=3&page=99999999999",
    "page=2147483648", "page=99999",
])
@pytest.mark.parametrize("path", ["/opportunities", "/products"])
def test_malformed_or_unknown_anchors_never_fail(client, catalogue, path, query):
    response = client.get(f"{path}?{query}")
    assert response.status_code == 200


@pytest.mark.parametrize("path", ["/opportunities", "/products"])
def test_a_nul_in_an_anchor_is_a_400_with_a_message(client, path):
    response = client.get(f"{path}?after=%00")
    assert response.status_code == 400
    assert "空字符" in response.get_data(as_text=True)


@pytest.mark.parametrize("status", [EntryStatus.DRAFT, EntryStatus.WITHDRAWN])
def test_an_anchor_that_is_not_public_falls_back_to_the_first_page(client, db, make, catalogue,
                                                                    status):
    hidden = make.product(make.org(), status, name="隐藏的锚点产品")
    db.session.commit()
    for arg in ("after", "before"):
        html = client.get(f"/products?{arg}={hidden.id}").get_data(as_text=True)
        assert _names(html, "产品") == [f"产品{i:02d}" for i in range(39, 19, -1)]
        assert "隐藏" not in html


def test_a_page_past_the_end_is_empty_and_reads_no_rows(client, db, catalogue):
    with _statements(db) as statements:
        page = portal.list_products(EntryFilters(), page=999, per_page=20).page
    assert page.items == [] and page.total == 40 and page.has_prev and not page.has_next
    assert not any("LIMIT" in s.upper() for s in statements)


# -------------------------------------------------------------------- counts


class _statements:
    def __init__(self, db):
        self.engine = db.engine
        self.statements: list[str] = []

    def _record(self, conn, cursor, statement, *args):
        self.statements.append(statement)

    def __enter__(self) -> list[str]:
        event.listen(self.engine, "before_cursor_execute", self._record)
        return self.statements

    def __exit__(self, *exc) -> None:
        event.remove(self.engine, "before_cursor_execute", self._record)


def _counts(statements: list[str]) -> int:
    return sum(1 for s in statements if re.search(r"count\(\*\)", s, re.I))


def test_totals_are_counted_once_per_data_version(db, catalogue):
    filters = EntryFilters(tag="物联网", maturity="pilot")
    with _statements(db) as first:
        portal.list_products(filters)
    with _statements(db) as second:
        again = portal.list_products(filters, page=2, per_page=3).page
    assert _counts(first) == 1 and _counts(second) == 0
    assert again.total == len(_reference("product", filters))


def test_counts_follow_a_publication_through_the_services(client, db, make, catalogue):
    batch = make.batch("product", BatchStatus.COLLECTING)
    entry = make.product(make.org(), EntryStatus.APPROVED, batch, name="新发布产品", tags=("物联网",),
                         maturity="pilot")
    db.session.commit()
    url = "/products?tag=物联网&maturity=pilot"
    before = client.get(url).get_data(as_text=True)
    total = int(re.search(r"共 (\d+) 条", before).group(1))
    assert "新发布产品" not in before
    batches.publish_batch(make.organizer(), batch)
    after = client.get(url).get_data(as_text=True)
    assert int(re.search(r"共 (\d+) 条", after).group(1)) == total + 1
    assert "新发布产品" in after
    entries.withdraw(make.user(entry.owner), entry)
    assert int(re.search(r"共 (\d+) 条", client.get(url).get_data(as_text=True)).group(1)) == total


def test_the_open_state_is_counted_per_day(db, catalogue, monkeypatch):
    """An entry's deadline passing moves it from the open run to the closed one overnight."""
    open_today = portal.list_opportunities(EntryFilters(state="open")).page.total
    tomorrow = timeutil.local_today() + timedelta(days=1)
    monkeypatch.setattr(timeutil, "local_today", lambda: tomorrow)
    open_tomorrow = portal.list_opportunities(EntryFilters(state="open")).page.total
    assert open_tomorrow == open_today - 10  # the ten needs whose deadline is today
    assert [e.id for e in portal.list_opportunities(EntryFilters(), per_page=50).page.items] == \
        _reference("opportunity", EntryFilters())


def test_the_count_cache_is_bounded(app):
    cache = portal._BoundedCache(3)
    for i in range(10):
        cache.put(("k", i), i)
    assert len(cache) == 3
    assert cache.get(("k", 0)) is None and cache.get(("k", 9)) == 9
    cache.get(("k", 7))
    cache.put(("k", 10), 10)
    assert cache.get(("k", 7)) == 7 and cache.get(("k", 8)) is None
    assert portal.list_cache().size == portal.LIST_CACHE_SIZE


# -------------------------------------------------------------------- statements and columns


def test_seek_pages_use_few_statements_that_do_not_grow_with_the_page(client, db, catalogue):
    product = portal.list_products(EntryFilters(), page=3, per_page=5).page
    need = portal.list_opportunities(EntryFilters(), page=3, per_page=5).page
    client.get("/products")  # warm the counts
    client.get("/opportunities")
    sizes = []
    for url in (f"/products?after={product.last_id}&page=2", "/products?page=2",
                f"/products?before={product.first_id}", f"/opportunities?after={need.last_id}",
                f"/opportunities?before={need.first_id}"):
        with _statements(db) as statements:
            assert client.get(url).status_code == 200
        sizes.append(len(statements))
    assert max(sizes) <= 9


def test_cards_load_only_the_columns_they_show(client, db, catalogue):
    with _statements(db) as statements:
        client.get("/products")
    page_query = next(s for s in statements if "FROM product" in s and "product.description" in s)
    assert "product.cases" not in page_query and "review_comment" not in page_query
    with _statements(db) as statements:
        client.get("/opportunities")
    page_query = next(s for s in statements if "FROM opportunity" in s and "opportunity.description" in s)
    assert "contact_phone" not in page_query and "cooperation_modes" not in page_query


# -------------------------------------------------------------------- indexes


#: The tag / area / category filters are EXISTS probes into the join tables: served by either
#: their primary key (product_id, value) or the (value, product_id) index, never a table scan.
JOIN_TAG = r"ix_product_tag_tag|pk_product_tag|sqlite_autoindex_product_tag"
JOIN_FIELD = r"ix_product_field_(area|category)|pk_product_field|sqlite_autoindex_product_field"
PLAN_CASES = [
    ("product", {}, "ix_product_status_published"),
    ("product", {"maturity": "pilot"}, "ix_product_status_maturity"),
    ("product", {"city": "南昌市"}, "ix_product_status_city"),
    ("product", {"batch_id": 1}, "ix_product_status_batch"),
    ("product", {"tag": "物联网"}, JOIN_TAG),
    ("product", {"area": "数字生活"}, JOIN_FIELD),
    ("product", {"category": "交通出行"}, JOIN_FIELD),
    ("opportunity", {}, "ix_opportunity_status_published"),
    ("opportunity", {"category": "交通出行"}, "ix_opportunity_status_category"),
    ("opportunity", {"area": "数字生活"}, "ix_opportunity_status_area"),
    ("opportunity", {"city": "南昌市"}, "ix_opportunity_status_city"),
    ("opportunity", {"county": "东湖区"}, "ix_opportunity_status_county"),
    ("opportunity", {"tier": "major"}, "ix_opportunity_status_tier"),
    ("opportunity", {"batch_id": 1}, "ix_opportunity_status_batch"),
]


def _plan(db, stmt, hide: tuple[str, ...] = ()) -> str:
    """The query plan of a statement (PostgreSQL with sequential scans and sorts priced out,
    so the plan shows whether an index *can* serve it; the test tables are tiny). On PostgreSQL
    the indexes in ``hide`` are dropped inside the transaction (rolled back): on tiny tables the
    planner may price a generic index plus a filter as cheap as the filter's own index."""
    compiled = stmt.compile(dialect=db.engine.dialect)
    with db.engine.connect() as conn:
        if db.engine.dialect.name == "postgresql":
            for name in hide:
                conn.exec_driver_sql(f"DROP INDEX IF EXISTS {name}")
            conn.exec_driver_sql("SET enable_seqscan = off")
            conn.exec_driver_sql("SET enable_sort = off")
            rows = conn.exec_driver_sql("EXPLAIN " + str(compiled), compiled.params).all()
            conn.rollback()
        else:
            params = tuple(compiled.params[name] for name in compiled.positiontup)
            rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + str(compiled), params).all()
    return "\n".join(str(row[-1]) for row in rows)


@pytest.mark.parametrize(("kind", "values", "index"), PLAN_CASES, ids=lambda v: str(v))
def test_each_filter_of_the_list_is_served_by_an_index(db, catalogue, kind, values, index):
    filters = EntryFilters(**values)
    spec = (portal._opportunity_spec if kind == "opportunity" else portal._product_spec)(filters)
    stmt = select(spec.model.id).where(*spec.public, *spec.filters, *spec.segments[0].where)
    stmt = stmt.order_by(*portal._order(spec, reverse=False)).limit(20)
    generic = f"ix_{kind}_status_published"
    plan = _plan(db, stmt, hide=(generic,) if index != generic else ())
    assert re.search(index, plan), plan
    assert not re.search(r"\bSCAN (product|opportunity)|Seq Scan", plan), plan


def test_the_list_indexes_exist(db):
    names = {row[0] for row in db.session.execute(text(
        "SELECT indexname FROM pg_indexes" if db.engine.dialect.name == "postgresql"
        else "SELECT name FROM sqlite_master WHERE type = 'index'"))}
    assert {index for _, _, index in PLAN_CASES if "|" not in index} | {
        "ix_product_tag_tag", "ix_product_field_area", "ix_product_field_category",
        "ix_opportunity_batch_status", "ix_product_batch_status"} <= names

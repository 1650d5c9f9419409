"""The number of SQL statements per public page does not grow with the data (no N+1)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager

import pytest
from sqlalchemy import event

from marketplace.http_cache import page_cache
from marketplace.models import BatchStatus, EntryStatus
from marketplace.services import index_sync

MAX_STATEMENTS = 10
CITIES = [("南昌市", "东湖区"), ("九江市", "浔阳区"), ("赣州市", "章贡区")]
CATEGORIES = [("交通出行", "数字生活"), ("社会保障", "数字生活"), ("政务服务", "数字政府")]


@contextmanager
def count_statements(db):
    """Count the statements sent to the database inside the block."""
    statements: list[str] = []

    def before_cursor_execute(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    engine = db.engine
    event.listen(engine, "before_cursor_execute", before_cursor_execute)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", before_cursor_execute)


class Catalogue:
    """Published entries spread over several organizations, batches, categories and cities."""

    def __init__(self, make, db):
        self.make = make
        self.db = db
        self.opp_batch = make.batch("opportunity", BatchStatus.PUBLISHED)
        self.product_batch = make.batch("product", BatchStatus.PUBLISHED)
        self.n = 0
        self.first_opportunity = None
        self.first_product = None

    def grow_to(self, n: int) -> None:
        """Add entries until there are ``n`` published opportunities and ``n`` products."""
        make = self.make
        for i in range(self.n, n):
            (category, area), (city, county) = CATEGORIES[i % 3], CITIES[i % 3]
            opp = make.opportunity(
                make.org(kind="government"), EntryStatus.PUBLISHED, self.opp_batch,
                title=f"智慧停车场景{i}", field_category=category, field_area=area,
                region_city=city, region_county=county,
            )
            product = make.product(
                make.org(), EntryStatus.PUBLISHED, self.product_batch, name=f"停车诱导产品{i}",
                fields=(category, "医疗健康"), tags=("物联网", "5G"),
                maturity="scale" if i % 2 else "pilot", region_city=city, region_county=county,
            )
            make.opportunity(make.org(kind="government"), EntryStatus.DRAFT, title=f"草稿{i}")
            self.first_opportunity = self.first_opportunity or opp
            self.first_product = self.first_product or product
        self.n = n
        index_sync.bump()
        self.db.session.commit()


PAGES: dict[str, Callable[[Catalogue], str]] = {
    "home": lambda c: "/",
    "opportunity list": lambda c: "/opportunities",
    "opportunity list, filtered": lambda c: "/opportunities?category=交通出行&city=南昌市&tier=focused",
    "opportunity list, keyword": lambda c: "/opportunities?q=停车&city=南昌市",
    "product list": lambda c: "/products",
    "product list, filtered": lambda c: "/products?tag=物联网&maturity=scale&area=数字生活",
    "product list, keyword": lambda c: "/products?q=停车&tag=5G",
    "search, both sides": lambda c: "/search?q=智慧停车",
    "search, one side with filters": lambda c: "/search?q=停车&side=products&city=九江市",
    "batch list": lambda c: "/batches",
    "opportunity batch": lambda c: f"/batches/{c.opp_batch.id}",
    "product batch": lambda c: f"/batches/{c.product_batch.id}",
    "opportunity detail": lambda c: f"/opportunities/{c.first_opportunity.id}",
    "product detail": lambda c: f"/products/{c.first_product.id}",
}


def statements_for(client, db, url: str) -> int:
    """Statements of one render of ``url`` (after a warm-up; never a page-cache hit)."""
    assert client.get(url).status_code == 200  # warm-up (builds or refreshes the search index)
    page_cache(client.application).clear()
    with count_statements(db) as statements:
        response = client.get(url)
    assert response.status_code == 200
    return len(statements)


@pytest.mark.parametrize("page", list(PAGES))
def test_statements_per_page_do_not_grow_with_the_data(client, db, make, page):
    catalogue = Catalogue(make, db)
    catalogue.grow_to(5)
    url = PAGES[page](catalogue)
    small = statements_for(client, db, url)
    catalogue.grow_to(40)
    large = statements_for(client, db, url)
    assert small == large
    assert large <= MAX_STATEMENTS


def test_the_counter_sees_statements(client, db, make):
    """Guard against a listener that silently counts nothing."""
    catalogue = Catalogue(make, db)
    catalogue.grow_to(1)
    assert statements_for(client, db, "/opportunities") >= 2


@pytest.mark.parametrize(("url", "expected"), [
    ("/opportunities?category=交通出行&city=南昌市", ["智慧停车场景0", "智慧停车场景3"]),
    ("/products?tag=物联网&maturity=scale", ["停车诱导产品1", "停车诱导产品3"]),
    ("/search?q=智慧停车", ["智慧停车场景0", "智慧停车场景3"]),
    ("/batches", []),
])
def test_measured_pages_really_list_entries(client, db, make, url, expected):
    """A statement count of an empty page would prove nothing."""
    catalogue = Catalogue(make, db)
    catalogue.grow_to(4)
    html = client.get(url).get_data(as_text=True).replace("<mark>", "").replace("</mark>", "")
    for title in expected or [catalogue.opp_batch.title, catalogue.product_batch.title]:
        assert title in html

"""The uncached render of the public pages: statement ceilings, plain-row cards that read like
the entries, home data cached per public data version, remembered filter selects."""

from __future__ import annotations

from datetime import timedelta

import pytest
from wtforms.widgets import Select

from marketplace import timeutil
from marketplace.http_cache import page_cache
from marketplace.models import Batch, BatchStatus, EntryStatus
from marketplace.portal.forms import ProductFilterForm, SearchForm
from marketplace.services import index_sync, portal
from marketplace.services.search import EntryFilters
from tests.marketplace.test_query_counts import count_statements


def render_statements(client, db, url: str) -> list[str]:
    """Statements of one render of ``url``, after a warm-up (never a page-cache hit)."""
    assert client.get(url).status_code == 200
    page_cache(client.application).clear()
    with count_statements(db) as seen:
        response = client.get(url)
    assert response.status_code == 200
    return seen


@pytest.fixture
def catalogue(make, db):
    """Published entries with every card detail: budgets, deadlines, counties, batches, fields
    and tags (two of each, so their order shows), and an entry without a batch."""
    opp_batch = make.batch("opportunity", BatchStatus.PUBLISHED, title="2026年第一批机会清单")
    product_batch = make.batch("product", BatchStatus.PUBLISHED, title="2026年第一批产品清单")
    today = timeutil.local_today()
    found = {"opportunities": [], "products": []}
    for i in range(6):
        found["opportunities"].append(make.opportunity(
            make.org(kind="government", name=f"测试发布单位{i}"), EntryStatus.PUBLISHED,
            opp_batch if i % 3 else None, title=f"智慧停车场景{i}",
            deadline=today + timedelta(days=i - 2) if i % 2 else None,
            budget_min=10 * i if i % 2 else None, budget_max=20 * i if i else None,
            region_county=None if i % 2 else "东湖区",
        ))
        found["products"].append(make.product(
            make.org(name=f"测试供应单位{i}"), EntryStatus.PUBLISHED, product_batch if i % 3 else None,
            name=f"停车诱导产品{i}", fields=("交通出行", "社会保障"), tags=("物联网", "5G", "大数据"),
            maturity="scale" if i % 2 else "pilot",
        ))
    make.product(make.org(), EntryStatus.DRAFT, name="未公开产品")
    index_sync.bump()
    db.session.commit()
    return found


#: Statements of one uncached render, anonymous (the validators of the HTTP cache are one of
#: them). Before this work: 6, 6, 7, 7 and 6.
CEILINGS = {
    "/": 3,  # validators, public stamp, upcoming events
    # validators, stamp, ids of the open and of the closed run (a page holding both), card rows,
    # 已揭榜 names
    "/opportunities": 6,
    "/products": 5,  # validators, stamp, ids, card rows, categories and tags
    "/products?tag=物联网&maturity=pilot": 5,
}


@pytest.mark.parametrize("url", list(CEILINGS))
def test_statements_per_render_stay_under_the_ceiling(client, db, catalogue, url):
    assert len(render_statements(client, db, url)) <= CEILINGS[url]


def test_product_detail_is_one_statement_for_the_product(client, db, catalogue):
    product_id = catalogue["products"][1].id
    db.session.expire_all()
    with count_statements(db) as seen:
        entry = portal.get_published_product(product_id)
        assert (entry.owner.name, entry.batch.title) == ("测试供应单位1", "2026年第一批产品清单")
        assert entry.categories == ["交通出行", "社会保障"] and entry.tags == ["5G", "大数据", "物联网"]
    assert len(seen) == 1
    html = client.get(f"/products/{product_id}").get_data(as_text=True)
    assert html.index("5G") < html.index("大数据") < html.index("物联网")


def _card_view(entry) -> tuple:
    common = (entry.id, entry.region_label, entry.description,
              (entry.batch.id, entry.batch.title) if entry.batch else None)
    if entry.kind == "opportunity":
        return (*common, entry.title, entry.publisher.name, entry.field_category, entry.tier_label,
                entry.budget_label, entry.deadline, entry.is_open, entry.days_left)
    return (*common, entry.name, entry.owner.name, entry.maturity_label, list(entry.categories),
            list(entry.tags))


@pytest.mark.parametrize("side", ["opportunities", "products"])
def test_cards_read_exactly_like_the_entries(catalogue, side):
    lister = portal.list_opportunities if side == "opportunities" else portal.list_products
    cards = lister(EntryFilters(), per_page=50, card_only=True).page.items
    entries = lister(EntryFilters(), per_page=50).page.items
    assert len(cards) == len(catalogue[side]) == 6
    assert [_card_view(c) for c in cards] == [_card_view(e) for e in entries]


def test_home_data_is_cached_until_a_shown_table_changes(client, db, make, catalogue):
    client.get("/")
    page_cache(client.application).clear()
    with count_statements(db) as seen:
        stats = portal.home_stats()
    assert len(seen) == 1  # the stamp only
    assert stats.products == 6 and [p.name for p in stats.latest_products][:1] == ["停车诱导产品5"]
    with count_statements(db) as seen:
        assert portal.home_stats() == stats
    assert len(seen) == 1

    # Written directly, without a service bumping the public-content counter: the commit still
    # moves the pages counter, and the home data follows.
    make.product(make.org(), EntryStatus.PUBLISHED, name="新发布产品")
    db.session.commit()
    fresh = portal.home_stats()
    assert fresh.products == 7 and fresh.latest_products[0].name == "新发布产品"
    assert "新发布产品" in client.get("/").get_data(as_text=True)


def test_a_page_request_reads_the_stamps_once(client, db, catalogue):
    client.get("/products")
    page_cache(client.application).clear()
    with count_statements(db) as seen:
        assert client.get("/products").status_code == 200
    assert sum("index_state" in s for s in seen) == 1  # the validators' query serves the services


def test_a_renamed_batch_shows_on_the_home_page_at_once(client, db, catalogue):
    client.get("/")
    batch = portal.cached_published_batches("product")[0]
    row = db.session.get(Batch, batch.id)
    row.title = "2026年第一批产品清单（修订）"
    db.session.commit()
    assert "2026年第一批产品清单（修订）" in client.get("/").get_data(as_text=True)


def test_batch_choices_follow_a_published_batch(client, db, make, catalogue):
    assert [b.title for b in portal.cached_published_batches("product")] == ["2026年第一批产品清单"]
    make.batch("product", BatchStatus.PUBLISHED, title="2026年第二批产品清单")
    index_sync.bump()  # what batches.publish_batch does
    db.session.commit()
    html = client.get("/products").get_data(as_text=True)
    assert "2026年第二批产品清单" in html


@pytest.mark.parametrize("args", [
    {},
    {"city": "南昌市", "county": "东湖区", "tag": "物联网"},
    {"city": "九江市", "county": "东湖区"},  # a county of another city: a field error
    {"maturity": "bogus", "area": "数字生活"},
])
def test_remembered_selects_render_exactly_like_wtforms(app, args):
    from werkzeug.datastructures import MultiDict

    plain = Select()
    for form_class in (ProductFilterForm, SearchForm):
        with app.test_request_context("/products"):
            for _ in range(2):  # the second rendering comes from the memory
                form = form_class(MultiDict(args), batches=[portal.BatchRow(7, "product", "第一批", None)])
                form.validate()
                for name in ("batch", "maturity", "tag", "area", "category", "city", "county"):
                    field = form[name]
                    kwargs = {"class_": "form-select form-select-sm"
                              + (" is-invalid" if field.errors else "")}
                    assert field(**kwargs) == plain(field, **{**(field.render_kw or {}), **kwargs})

"""The public portal: only published entries, filters, pagination, batch and detail pages."""

from __future__ import annotations

import re

import pytest

from marketplace.models import BatchStatus, EntryStatus
from marketplace.services import batches, entries, index_sync, portal

NOT_PUBLISHED = [
    EntryStatus.DRAFT,
    EntryStatus.SUBMITTED,
    EntryStatus.RETURNED,
    EntryStatus.APPROVED,
    EntryStatus.WITHDRAWN,
]


def page_text(response) -> str:
    assert response.status_code == 200, response.status_code
    return response.get_data(as_text=True)


def stat(html: str, name: str) -> int:
    match = re.search(rf'id="stat-{name}">(\d+)<', html)
    assert match, f"no {name} statistic on the page"
    return int(match.group(1))


@pytest.fixture
def publisher(make):
    return make.org(kind="government", name="南昌市交通运输局")


@pytest.fixture
def supplier(make):
    return make.org(kind="enterprise", name="江西智行科技有限公司")


@pytest.fixture
def opp_batch(make):
    return make.batch("opportunity", BatchStatus.PUBLISHED, title="2026年第一批机会清单")


@pytest.fixture
def product_batch(make):
    return make.batch("product", BatchStatus.PUBLISHED, title="2026年第一批产品清单")


@pytest.fixture
def mixed_entries(make, publisher, supplier, opp_batch, product_batch):
    """Two published opportunities and one published product, plus one of each in every other status."""
    collecting_opp = make.batch("opportunity", BatchStatus.COLLECTING)
    collecting_product = make.batch("product", BatchStatus.COLLECTING)
    make.opportunity(publisher, EntryStatus.PUBLISHED, opp_batch, title="公开场景停车诱导")
    make.opportunity(publisher, EntryStatus.PUBLISHED, opp_batch, title="公开场景智慧养老",
                     field_category="社会保障")
    make.product(supplier, EntryStatus.PUBLISHED, product_batch, name="公开产品泊位平台")
    for status in NOT_PUBLISHED:
        batch_opp = collecting_opp if status == EntryStatus.APPROVED else None
        batch_product = collecting_product if status == EntryStatus.APPROVED else None
        make.opportunity(publisher, status, batch_opp, title=f"隐藏场景{status}")
        make.product(supplier, status, batch_product, name=f"隐藏产品{status}")


# -------------------------------------------------------------------- home page


def test_home_shows_the_slogan_and_counts_only_published_entries(client, mixed_entries):
    html = page_text(client.get("/"))
    assert "政府搭台、各方出卷、企业答题" in html
    assert stat(html, "opportunities") == 2
    assert stat(html, "products") == 1
    assert "公开场景停车诱导" in html and "公开产品泊位平台" in html
    assert "隐藏场景" not in html and "隐藏产品" not in html


def test_home_statistics_per_batch_area_and_category(mixed_entries, opp_batch, product_batch):
    stats = portal.home_stats()
    assert (stats.opportunities, stats.products) == (2, 1)
    assert {(b.title, n) for b, n in stats.batches} == {
        (opp_batch.title, 2),
        (product_batch.title, 1),
    }
    life = next(a for a in stats.areas if a.name == "数字生活")
    assert (life.opportunities, life.products) == (2, 1)
    categories = {c: (n_opp, n_prod) for c, n_opp, n_prod in life.categories}
    assert categories["交通出行"] == (1, 1)
    assert categories["社会保障"] == (1, 0)
    government = next(a for a in stats.areas if a.name == "数字政府")
    assert (government.opportunities, government.products) == (0, 0)


def test_home_links_batches_and_categories(client, mixed_entries, opp_batch):
    html = page_text(client.get("/"))
    assert f'href="/batches/{opp_batch.id}"' in html
    assert "/opportunities?category=%E4%BA%A4%E9%80%9A%E5%87%BA%E8%A1%8C" in html  # 交通出行
    assert "/products?area=" in html


def test_a_product_serving_two_categories_of_one_area_counts_once_for_the_area(
    make, supplier, product_batch
):
    make.product(supplier, EntryStatus.PUBLISHED, product_batch, fields=("交通出行", "医疗健康"))
    life = next(a for a in portal.home_stats().areas if a.name == "数字生活")
    categories = {c: n_prod for c, _, n_prod in life.categories}
    assert life.products == 1
    assert categories["交通出行"] == categories["医疗健康"] == 1


def test_home_counts_follow_publication_and_withdrawal_through_the_services(client, db, make, publisher):
    batch = make.batch("opportunity", BatchStatus.COLLECTING)
    entry = make.opportunity(publisher, EntryStatus.APPROVED, batch)
    index_sync.bump()
    db.session.commit()
    assert stat(page_text(client.get("/")), "opportunities") == 0
    batches.publish_batch(make.organizer(), batch)
    assert stat(page_text(client.get("/")), "opportunities") == 1
    entries.withdraw(make.user(publisher), entry)
    assert stat(page_text(client.get("/")), "opportunities") == 0


def test_collecting_batches_are_not_on_the_home_page(client, make):
    make.batch("opportunity", BatchStatus.COLLECTING, title="2026年第九批机会清单")
    assert "2026年第九批机会清单" not in page_text(client.get("/"))


# -------------------------------------------------------------------- lists


@pytest.mark.parametrize("url", ["/opportunities", "/products"])
def test_lists_show_only_published_entries(client, mixed_entries, url):
    html = page_text(client.get(url))
    assert "公开" in html
    assert "隐藏" not in html


def test_opportunity_cards_show_the_public_fields(client, mixed_entries, opp_batch):
    html = page_text(client.get("/opportunities"))
    for text in ("公开场景停车诱导", "南昌市交通运输局", "交通出行", "高价值小切口场景",
                 "南昌市东湖区", "万元", "答题截止", opp_batch.title):
        assert text in html


def test_product_cards_show_the_public_fields(client, mixed_entries):
    html = page_text(client.get("/products"))
    for text in ("公开产品泊位平台", "江西智行科技有限公司", "交通出行", "物联网", "规模化推广",
                 "南昌市青山湖区"):
        assert text in html


OPPORTUNITY_FILTERS = [
    # (query, attributes of the entry that matches, attributes of the one that does not)
    ({"area": "数字生活"}, {"field_category": "交通出行"},
     {"field_category": "政务服务", "field_area": "数字政府"}),
    ({"category": "交通出行"}, {"field_category": "交通出行"}, {"field_category": "医疗健康"}),
    ({"city": "九江市"}, {"region_city": "九江市", "region_county": "浔阳区"}, {}),
    ({"city": "南昌市", "county": "西湖区"}, {"region_county": "西湖区"}, {"region_county": "东湖区"}),
    ({"tier": "major"}, {"tier": "major"}, {"tier": "focused"}),
]


@pytest.mark.parametrize(("query", "matching", "other"), OPPORTUNITY_FILTERS)
def test_opportunity_filters(client, make, publisher, opp_batch, query, matching, other):
    make.opportunity(publisher, EntryStatus.PUBLISHED, opp_batch, title="命中的场景甲", **matching)
    make.opportunity(publisher, EntryStatus.PUBLISHED, opp_batch, title="落选的场景乙", **other)
    html = page_text(client.get("/opportunities", query_string=query))
    assert "命中的场景甲" in html
    assert "落选的场景乙" not in html


PRODUCT_FILTERS = [
    ({"area": "数字政府"}, {"fields": ("政务服务", "医疗健康")}, {"fields": ("医疗健康",)}),
    ({"category": "医疗健康"}, {"fields": ("交通出行", "医疗健康")}, {"fields": ("交通出行",)}),
    ({"city": "赣州市"}, {"region_city": "赣州市", "region_county": "章贡区"}, {}),
    ({"maturity": "pilot"}, {"maturity": "pilot"}, {"maturity": "scale"}),
    ({"tag": "区块链"}, {"tags": ("区块链", "大数据")}, {"tags": ("大数据",)}),
]


@pytest.mark.parametrize(("query", "matching", "other"), PRODUCT_FILTERS)
def test_product_filters(client, make, supplier, product_batch, query, matching, other):
    make.product(supplier, EntryStatus.PUBLISHED, product_batch, name="命中的产品甲", **matching)
    make.product(supplier, EntryStatus.PUBLISHED, product_batch, name="落选的产品乙", **other)
    html = page_text(client.get("/products", query_string=query))
    assert "命中的产品甲" in html
    assert "落选的产品乙" not in html


@pytest.mark.parametrize("kind", ["opportunity", "product"])
def test_batch_filter(client, make, publisher, supplier, kind):
    first = make.batch(kind, BatchStatus.PUBLISHED)
    second = make.batch(kind, BatchStatus.PUBLISHED)
    if kind == "opportunity":
        make.opportunity(publisher, EntryStatus.PUBLISHED, first, title="第一批的条目甲")
        make.opportunity(publisher, EntryStatus.PUBLISHED, second, title="第二批的条目乙")
        url = "/opportunities"
    else:
        make.product(supplier, EntryStatus.PUBLISHED, first, name="第一批的条目甲")
        make.product(supplier, EntryStatus.PUBLISHED, second, name="第二批的条目乙")
        url = "/products"
    html = page_text(client.get(url, query_string={"batch": first.id}))
    assert "第一批的条目甲" in html
    assert "第二批的条目乙" not in html


def test_pagination_keeps_the_filters(client, make, publisher, opp_batch):
    for i in range(25):
        make.opportunity(publisher, EntryStatus.PUBLISHED, opp_batch, title=f"交通场景第{i:02d}号",
                         field_category="交通出行")
    make.opportunity(publisher, EntryStatus.PUBLISHED, opp_batch, title="医疗场景", field_category="医疗健康",
                     field_area="数字生活")
    first = page_text(client.get("/opportunities?category=交通出行&city=南昌市"))
    assert first.count('class="card entry-card') == 20
    links = re.findall(r'href="(/opportunities\?[^"]*page=2[^"]*)"', first)
    assert links, "no link to page 2"
    assert all("category=" in link and "city=" in link for link in links)
    second = page_text(client.get(links[0].replace("&amp;", "&")))
    assert second.count('class="card entry-card') == 5
    assert "医疗场景" not in first + second


def test_an_invalid_filter_value_is_a_form_error_and_is_ignored(client, mixed_entries):
    html = page_text(client.get("/products?maturity=foo&tag=不存在的标签"))
    assert "无效的成熟度" in html
    assert "无效的技术标签" in html
    assert "公开产品泊位平台" in html


def test_a_county_outside_the_chosen_city_is_a_form_error(client, mixed_entries):
    html = page_text(client.get("/opportunities?city=九江市&county=东湖区"))
    assert "无效的区县" in html


# -------------------------------------------------------------------- detail pages


def test_published_opportunity_detail_shows_all_public_fields(client, make, publisher, opp_batch):
    entry = make.opportunity(
        publisher, EntryStatus.PUBLISHED, opp_batch,
        description="第一段需求说明，停车位紧张。\n第二段需求说明，需要诱导系统。",
    )
    html = page_text(client.get(f"/opportunities/{entry.id}"))
    for text in (entry.title, "<p>第一段需求说明，停车位紧张。</p>", "<p>第二段需求说明，需要诱导系统。</p>",
                 "南昌市交通运输局", "数字生活 / 交通出行", "高价值小切口场景", "南昌市东湖区",
                 entry.budget_label, "设备采购/租赁、联合研发", "登录并通过单位认证后可查看联系方式",
                 f'href="/batches/{opp_batch.id}"'):  # contact details: test_contacts.py
        assert text in html


def test_published_product_detail_shows_all_public_fields(client, make, supplier, product_batch):
    supplier.contact_email = "bd@zhixing.example.cn"
    entry = make.product(supplier, EntryStatus.PUBLISHED, product_batch, tags=("物联网", "5G"))
    html = page_text(client.get(f"/products/{entry.id}"))
    for text in (entry.name, "江西智行科技有限公司", "数字生活 / 交通出行", "物联网", "5G", "规模化推广",
                 "南昌市青山湖区", "已在南昌市东湖区部署", "登录并通过单位认证后可查看联系方式",
                 f'href="/batches/{product_batch.id}"'):  # contact details: test_contacts.py
        assert text in html


@pytest.mark.parametrize("viewer", ["anonymous", "owner", "organizer"])
@pytest.mark.parametrize("status", NOT_PUBLISHED)
@pytest.mark.parametrize("kind", ["opportunity", "product"])
def test_detail_pages_are_404_for_everyone_unless_published(
    client, auth, make, publisher, supplier, kind, status, viewer
):
    if kind == "opportunity":
        entry = make.opportunity(publisher, status)
        url = f"/opportunities/{entry.id}"
        owner_org = publisher
    else:
        entry = make.product(supplier, status)
        url = f"/products/{entry.id}"
        owner_org = supplier
    if viewer != "anonymous":
        user = make.user(owner_org) if viewer == "owner" else make.organizer()
        assert auth.login(user).status_code == 302  # logged in
    assert client.get(url).status_code == 404


@pytest.mark.parametrize("url", ["/opportunities/999999", "/products/999999", "/batches/999999",
                                 "/opportunities/abc", "/products/-1", "/batches/1.5"])
def test_unknown_ids_are_404(client, url):
    assert client.get(url).status_code == 404


# -------------------------------------------------------------------- batches


def test_batch_list_shows_published_batches_with_counts(client, mixed_entries, opp_batch, make):
    make.batch("product", BatchStatus.COLLECTING, title="2026年第二批产品清单")
    html = page_text(client.get("/batches"))
    assert opp_batch.title in html
    assert "2026年第二批产品清单" not in html
    assert dict((b.title, n) for b, n in portal.published_batches_with_counts())[opp_batch.title] == 2


def test_batch_page_is_a_numbered_table_of_its_published_entries(client, make, publisher, opp_batch):
    make.opportunity(publisher, EntryStatus.PUBLISHED, opp_batch, title="批内场景一")
    make.opportunity(publisher, EntryStatus.PUBLISHED, opp_batch, title="批内场景二")
    withdrawn = make.opportunity(publisher, EntryStatus.WITHDRAWN, opp_batch, title="已撤回场景")
    make.opportunity(publisher, EntryStatus.PUBLISHED, make.batch("opportunity", BatchStatus.PUBLISHED),
                     title="别的批次场景")
    html = page_text(client.get(f"/batches/{opp_batch.id}"))
    assert "序号" in html and "应用领域" in html and "场景层级" in html
    assert "批内场景一" in html and "批内场景二" in html
    assert withdrawn.title not in html and "别的批次场景" not in html
    assert re.search(r'<td class="text-center">2</td>', html)


def test_product_batch_page_shows_maturity(client, make, supplier, product_batch):
    make.product(supplier, EntryStatus.PUBLISHED, product_batch, name="批内产品", maturity="pilot")
    html = page_text(client.get(f"/batches/{product_batch.id}"))
    assert "批内产品" in html and "成熟度" in html and "试点应用" in html


def test_batch_page_is_paginated_by_fifty(client, make, publisher, opp_batch):
    for i in range(55):
        make.opportunity(publisher, EntryStatus.PUBLISHED, opp_batch, title=f"批内场景{i:02d}")
    first = page_text(client.get(f"/batches/{opp_batch.id}"))
    second = page_text(client.get(f"/batches/{opp_batch.id}?page=2"))
    assert first.count("批内场景") == 50
    assert second.count("批内场景") == 5
    assert '<td class="text-center">51</td>' in second


def test_a_collecting_batch_page_is_404(client, make, publisher):
    batch = make.batch("opportunity", BatchStatus.COLLECTING)
    make.opportunity(publisher, EntryStatus.APPROVED, batch)
    assert client.get(f"/batches/{batch.id}").status_code == 404


# -------------------------------------------------------------------- robustness


MALFORMED = [
    "page=-1",
    "page=0",
    "page=abc",
    "page=99999999999999999999999",
    "page=1e3",
    "batch=abc",
    "batch=-5",
    "batch=999999",
    "area=不存在的领域",
    "category=%00",
    "city=火星市",
    "county=东湖区",
    "city=南昌市&county=章贡区",
    "tier=huge",
    "maturity=foo",
    "tag=" + "长" * 500,
    "q=" + "停车" * 400,
    "q=%E2%80%8B%00%FF",
    "q=<script>alert(1)</script>",
    "q=%25%27%22%3B--",
    "side=bar",
    "side=",
    "side=all&side=products",
    "area=数字政府&area=数字生活",
    "per_page=100000",
]


@pytest.mark.parametrize("query", MALFORMED)
@pytest.mark.parametrize("path", ["/opportunities", "/products", "/search", "/", "/batches"])
def test_malformed_query_strings_never_cause_a_server_error(client, mixed_entries, path, query):
    response = client.get(f"{path}?{query}")
    assert response.status_code < 500
    if response.status_code == 200:
        assert "<script>alert(1)</script>" not in response.get_data(as_text=True)


@pytest.mark.parametrize("query", ["page=-1", "page=abc", "page=99999999999999999999"])
def test_malformed_pages_of_a_batch_never_cause_a_server_error(client, mixed_entries, opp_batch, query):
    assert client.get(f"/batches/{opp_batch.id}?{query}").status_code < 500

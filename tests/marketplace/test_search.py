"""Keyword search: Chinese tokens, ranking, synonyms, published-only, freshness across apps."""

from __future__ import annotations

import pytest
from markupsafe import Markup

from marketplace import create_app
from marketplace.extensions import db as _db
from marketplace.models import BatchStatus, EntryStatus
from marketplace.services import batches, entries, index_sync
from marketplace.services.search import EntryFilters, get_index, highlight, search, snippet

NOT_PUBLISHED = [
    EntryStatus.DRAFT,
    EntryStatus.SUBMITTED,
    EntryStatus.RETURNED,
    EntryStatus.APPROVED,
    EntryStatus.WITHDRAWN,
]
NEUTRAL = "本单位计划建设相关的信息化系统，提升日常工作效率和服务水平，欢迎各方参与。"


def titles(page) -> list[str]:
    return [entry.title for entry in page.items]


def plain_page(response) -> str:
    """The page's HTML without the highlighting marks."""
    assert response.status_code == 200
    return response.get_data(as_text=True).replace("<mark>", "").replace("</mark>", "")


@pytest.fixture
def publisher(make):
    return make.org(kind="government", name="南昌市城市管理局")


@pytest.fixture
def supplier(make):
    return make.org(kind="enterprise", name="江西泊安科技有限公司")


@pytest.fixture
def opp_batch(make):
    return make.batch("opportunity", BatchStatus.PUBLISHED)


@pytest.fixture
def product_batch(make):
    return make.batch("product", BatchStatus.PUBLISHED)


@pytest.fixture
def published(make, publisher, opp_batch):
    """Create a published opportunity with a neutral description unless one is given."""

    def create(title: str, description: str = NEUTRAL, **kw):
        return make.opportunity(publisher, EntryStatus.PUBLISHED, opp_batch, title=title,
                                description=description, **kw)

    return create


# -------------------------------------------------------------------- tokens and ranking


def test_a_two_character_word_finds_a_longer_compound(published):
    published("智慧停车诱导系统")
    published("社区养老服务中心建设")
    assert titles(search("opportunity", "停车")) == ["智慧停车诱导系统"]


@pytest.fixture
def background(published):
    """Unrelated published needs, so that idf behaves as in a real catalogue."""
    for title in ("河道水位预警", "城市道路智慧停车诱导", "农产品质量溯源平台", "学校食堂明厨亮灶",
                  "工业企业能耗在线分析", "政务服务一网通办"):
        published(title)


def test_entries_matching_more_query_words_rank_higher(published, background):
    one = published("社区养老服务中心建设")
    all_three = published("养老机构智能监测平台", "为养老机构建设智能监测系统，实时监测老人健康状况。")
    two = published("居家养老智能呼叫终端")
    page = search("opportunity", "养老 智能 监测")
    ids = [e.id for e in page.items]
    # partial matches may fall under the relative cut-off; those kept follow in order
    assert ids[0] == all_three.id
    assert ids[1:] in ([], [two.id], [one.id], [two.id, one.id])
    assert all(page.scores[all_three.id] > page.scores[i] for i in ids[1:])


def test_a_result_matches_a_query_word_as_a_whole_word(published):
    published("电动自行车入梯识别")
    published("住宅小区电动车入梯阻止")
    published("高铁动车组检修机器人")
    assert titles(search("opportunity", "动车")) == ["高铁动车组检修机器人"]
    assert set(titles(search("opportunity", "电动车"))) == {"住宅小区电动车入梯阻止", "电动自行车入梯识别"}


def test_entries_matching_every_term_come_first(published, background):
    published("养老服务热线", "养老 " * 8)
    both = published("养老机构智能监测平台")
    assert search("opportunity", "养老 监测").items[0].id == both.id


def test_weak_partial_matches_are_cut_off(published, background):
    strong = published("养老机构智能监测平台", "养老机构智能监测系统，监测老人健康，养老服务。")
    published("温泉度假区智慧服务平台", "景区游客服务，客流智能分析。")
    page = search("opportunity", "养老 智能 监测")
    assert titles(page) == ["养老机构智能监测平台"] and page.items[0].id == strong.id


def test_a_compound_word_matches_its_parts(published):
    published("社区老年人养老上门服务")
    published("城市道路智慧停车诱导")
    assert titles(search("opportunity", "养老服务")) == ["社区老年人养老上门服务"]


def test_synonyms_expand_the_query(published):
    published("老旧小区泊位共享改造")
    published("河道水位监测预警")
    assert titles(search("opportunity", "车位")) == ["老旧小区泊位共享改造"]
    assert search("opportunity", "车位").matched[search("opportunity", "车位").items[0].id] == ["泊位"]


def test_an_exact_match_ranks_above_a_synonym_match(published):
    exact = published("工地扬尘在线监测")
    synonym = published("工地颗粒物在线监测")
    page = search("opportunity", "扬尘")
    assert [e.id for e in page.items] == [exact.id, synonym.id]
    assert page.scores[exact.id] > page.scores[synonym.id] > 0


@pytest.mark.parametrize("query", ["NB-IoT", "nb-iot", "ＮＢ－ＩｏＴ 水表"])
def test_english_acronyms_are_whole_tokens(make, supplier, product_batch, query):
    make.product(supplier, EntryStatus.PUBLISHED, product_batch, name="基于NB-IoT的智能水表",
                 description="采用NB-IoT窄带物联网通信的远传水表，支持阀控与漏损分析。")
    make.product(supplier, EntryStatus.PUBLISHED, product_batch, name="城市级静态交通平台")
    assert [p.name for p in search("product", query).items] == ["基于NB-IoT的智能水表"]


def test_matched_terms_are_reported_per_hit(published):
    entry = published("智慧停车诱导系统")
    page = search("opportunity", "停车")
    assert "停车" in page.matched[entry.id]


def test_a_query_without_tokens_finds_nothing(published):
    published("智慧停车诱导系统")
    assert search("opportunity", "，。！ ").total == 0


def test_products_are_searched_by_tag_and_owner_name(make, supplier, product_batch):
    make.product(supplier, EntryStatus.PUBLISHED, product_batch, name="城市综合治理平台",
                 tags=("区块链",))
    assert search("product", "区块链").total == 1
    assert search("product", "泊安科技").total == 1


# -------------------------------------------------------------------- filters and pagination


def test_filters_are_hard_constraints(published):
    published("南昌智慧停车", region_city="南昌市", region_county="东湖区")
    published("九江智慧停车", region_city="九江市", region_county="浔阳区")
    published("重大停车场景", tier="major")
    assert titles(search("opportunity", "停车", EntryFilters(city="九江市"))) == ["九江智慧停车"]
    assert titles(search("opportunity", "停车", EntryFilters(tier="major"))) == ["重大停车场景"]
    assert search("opportunity", "停车", EntryFilters(maturity="pilot")).total == 0


def test_search_pages_through_the_ranked_hits(published):
    for i in range(25):
        published(f"智慧停车项目{i:02d}")
    first = search("opportunity", "停车", page=1, per_page=20)
    second = search("opportunity", "停车", page=2, per_page=20)
    assert (first.total, first.pages, len(first.items), len(second.items)) == (25, 2, 20, 5)
    assert not {e.id for e in first.items} & {e.id for e in second.items}


@pytest.mark.parametrize("status", NOT_PUBLISHED)
def test_unpublished_entries_never_appear(make, publisher, supplier, status, client):
    make.opportunity(publisher, status, title="隐秘的停车需求")
    make.product(supplier, status, name="隐秘的停车产品")
    assert search("opportunity", "停车").total == 0
    assert search("product", "停车").total == 0
    assert "隐秘的" not in plain_page(client.get("/search?q=停车"))


# -------------------------------------------------------------------- freshness


@pytest.fixture
def organizer(make):
    return make.organizer()


def test_publishing_a_batch_is_visible_in_the_next_search(make, publisher, organizer):
    batch = make.batch("opportunity", BatchStatus.COLLECTING)
    make.opportunity(publisher, EntryStatus.APPROVED, batch, title="新发布的停车场景")
    index_sync.bump()
    _db.session.commit()
    assert search("opportunity", "停车").total == 0  # builds the index
    batches.publish_batch(organizer, batch)
    assert titles(search("opportunity", "停车")) == ["新发布的停车场景"]


def test_withdrawing_an_entry_is_visible_in_the_next_search(make, publisher, published):
    entry = published("将被撤回的停车场景")
    index_sync.bump()
    _db.session.commit()
    assert search("opportunity", "停车").total == 1
    entries.withdraw(make.user(publisher), entry)
    assert search("opportunity", "停车").total == 0


def test_an_index_without_a_version_row_still_sees_new_rows(published):
    assert search("opportunity", "停车").total == 0
    published("后来插入的停车场景")
    assert search("opportunity", "停车").total == 1


@pytest.fixture
def second_app(app, database_url):
    """Another app (think: another worker process) on the same database."""
    other = create_app({
        "TESTING": True,
        "SECRET_KEY": "test-secret",
        "SQLALCHEMY_DATABASE_URI": database_url,
        "MATCHING_INDEX_DIR": app.config["MATCHING_INDEX_DIR"],
    })
    yield other
    with other.app_context():
        _db.session.remove()
        _db.engine.dispose()


def test_a_publication_in_one_app_is_seen_by_another_apps_next_search(
    make, publisher, organizer, second_app
):
    batch = make.batch("opportunity", BatchStatus.COLLECTING)
    make.opportunity(publisher, EntryStatus.APPROVED, batch, title="跨进程可见的停车场景")
    index_sync.bump()
    _db.session.commit()
    with second_app.app_context():
        assert search("opportunity", "停车").total == 0
        other_index = get_index()
    assert other_index is not get_index()

    batches.publish_batch(organizer, batch)

    with second_app.app_context():
        assert titles(search("opportunity", "停车")) == ["跨进程可见的停车场景"]
        _db.session.remove()


# -------------------------------------------------------------------- pages and highlighting


def test_search_page_highlights_the_matched_terms(client, published):
    published("智慧停车诱导系统")
    html = client.get("/search?q=停车").get_data(as_text=True)
    assert "智慧<mark>停车</mark>诱导系统" in html


def test_search_page_escapes_entry_text_before_highlighting(client, published):
    published("<b>停车</b>&改造")
    html = client.get("/search?q=停车&side=opportunities").get_data(as_text=True)
    assert "&lt;b&gt;<mark>停车</mark>&lt;/b&gt;&amp;改造" in html


def test_empty_query_shows_the_form_and_a_hint(client, published):
    published("智慧停车诱导系统")
    html = client.get("/search?q=").get_data(as_text=True)
    assert 'id="search-hint"' in html
    assert "智慧停车诱导系统" not in html


@pytest.mark.parametrize(("side", "shown", "hidden"), [
    ("opportunities", "停车诱导需求", "停车诱导产品"),
    ("products", "停车诱导产品", "停车诱导需求"),
])
def test_search_page_side_restricts_the_lists(client, published, make, supplier, product_batch,
                                              side, shown, hidden):
    published("停车诱导需求")
    make.product(supplier, EntryStatus.PUBLISHED, product_batch, name="停车诱导产品")
    both = plain_page(client.get("/search?q=停车"))
    assert "停车诱导需求" in both and "停车诱导产品" in both
    html = plain_page(client.get(f"/search?q=停车&side={side}"))
    assert shown in html and hidden not in html


def test_a_tier_filter_leaves_no_products(client, published, make, supplier, product_batch):
    published("重大停车场景", tier="major")
    make.product(supplier, EntryStatus.PUBLISHED, product_batch, name="停车诱导产品")
    html = plain_page(client.get("/search?q=停车&tier=major"))
    assert "重大停车场景" in html and "停车诱导产品" not in html


def test_list_page_with_a_keyword_ranks_by_relevance(client, published, background):
    published("社区养老服务中心建设")
    published("养老机构智能监测平台", "为养老机构建设智能监测系统，实时监测老人健康状况。")
    html = plain_page(client.get("/opportunities?q=养老 智能 监测"))
    assert "养老机构智能监测平台" in html
    assert html.find("社区养老服务中心建设") in (-1, *range(html.index("养老机构智能监测平台"), len(html)))


def test_highlight_escapes_and_never_breaks_entities():
    result = highlight('a&b <amp> amp "停车"', ["amp", "停车"])
    assert isinstance(result, Markup)
    assert result == 'a&amp;b &lt;<mark>amp</mark>&gt; <mark>amp</mark> &#34;<mark>停车</mark>&#34;'


def test_highlight_prefers_the_longest_term_and_ignores_case():
    assert highlight("基于NB-IoT的智慧停车", ["停车", "智慧停车", "nb-iot"]) == (
        "基于<mark>NB-IoT</mark>的<mark>智慧停车</mark>"
    )


def test_snippet_centres_on_the_first_match():
    text = "甲" * 200 + "停车" + "乙" * 200
    piece = snippet(text, ["停车"], width=60)
    assert "停车" in piece and piece.startswith("…") and piece.endswith("…")


def test_a_compound_found_whole_does_not_highlight_its_parts(published):
    entry = published("养老服务中心", "提供养老服务和其他服务。")
    assert search("opportunity", "养老服务").matched[entry.id] == ["养老服务"]

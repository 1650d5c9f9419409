"""The matching engine inside the app: published data only, freshness, the vector cache, pages, CLI."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from marketplace import create_app
from marketplace.extensions import db
from marketplace.models import EntryStatus, Opportunity, Organization, Product
from marketplace.services import batches, entries, index_sync, matching
from marketplace.services.errors import NotFound, PermissionDenied, ValidationFailed
from marketplace.services.matching import MatchingService
from matching.encoders import OfflineEncoder
from tests.conftest import AuthActions

HIDDEN = "隐藏条目"
UNPUBLISHED = [s.value for s in EntryStatus if s != EntryStatus.PUBLISHED]
PARKING_QUERY = "老旧小区停车诱导与泊位共享"


@dataclass
class Corpus:
    gov: Organization
    firm: Organization
    care_firm: Organization
    parking_need: Opportunity
    care_need: Opportunity
    parking_product: Product
    care_product: Product


def build_corpus(make) -> Corpus:
    """Two published needs and two published products, in two fields and two cities."""
    gov = make.org(kind="government", name="南昌市东湖区数据管理局")
    firm = make.org(name="南昌泊位通科技有限公司")
    care_firm = make.org(name="九江康养智能科技有限公司", region_city="九江市", region_county="浔阳区")
    parking_need = make.opportunity(gov, EntryStatus.PUBLISHED)
    care_need = make.opportunity(
        gov,
        EntryStatus.PUBLISHED,
        title="社区居家养老智能监护服务",
        description="为独居老人提供跌倒检测、紧急呼叫和健康监测的智能监护服务，需要物联网传感器和养老服务平台。",
        field_category="社会保障",
        field_area="数字生活",
        region_city="九江市",
        region_county="浔阳区",
    )
    parking_product = make.product(firm, EntryStatus.PUBLISHED, fields=("交通出行",), tags=("物联网",))
    care_product = make.product(
        care_firm,
        EntryStatus.PUBLISHED,
        name="居家养老智能监护平台",
        description="面向独居老人的跌倒检测、紧急呼叫与健康监测平台，结合物联网传感器提供上门养老服务。",
        cases="已在九江市浔阳区服务独居老人3000名。",
        fields=("社会保障",),
        tags=("物联网", "人工智能"),
        maturity="pilot",
        region_city="九江市",
        region_county="浔阳区",
    )
    return Corpus(gov, firm, care_firm, parking_need, care_need, parking_product, care_product)


def hidden_product(make, owner: Organization, status: str) -> Product:
    """A product that matches the parking need very well but is not published."""
    batch = make.batch("product") if status == EntryStatus.APPROVED else None
    return make.product(
        owner, status, batch, name=f"停车诱导泊位共享{HIDDEN}", fields=("交通出行",), tags=("物联网",)
    )


def hidden_opportunity(make, owner: Organization, status: str) -> Opportunity:
    batch = make.batch("opportunity") if status == EntryStatus.APPROVED else None
    return make.opportunity(owner, status, batch, title=f"停车诱导泊位共享{HIDDEN}")


def names(results: list[matching.MatchResult]) -> list[str]:
    return [r.entry.display_name for r in results]


@pytest.fixture
def corpus(make) -> Corpus:
    return build_corpus(make)


@pytest.fixture
def encoded(monkeypatch) -> list[str]:
    """Texts encoded as documents by any offline encoder during the test."""
    texts: list[str] = []
    original = OfflineEncoder.encode

    def counting(self, batch, kind="document"):
        if kind == "document":
            texts.extend(batch)
        return original(self, batch, kind)

    monkeypatch.setattr(OfflineEncoder, "encode", counting)
    return texts


@pytest.fixture
def second_app(app, database_url):
    """Another worker: its own app, engine and matching service over the same database."""
    other = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "test-secret",
            "SQLALCHEMY_DATABASE_URI": database_url,
            "MATCHING_INDEX_DIR": app.config["MATCHING_INDEX_DIR"],
        }
    )
    yield other
    with other.app_context():
        db.session.remove()
        db.engine.dispose()


def api_names(client, url: str) -> list[str]:
    response = client.get(url)
    assert response.status_code == 200, response.get_json()
    return [r.get("name") or r.get("title") for r in response.get_json()["results"]]


# ---------------------------------------------------------------- published data only


@pytest.mark.parametrize("status", UNPUBLISHED)
def test_unpublished_products_never_match(make, corpus, status):
    hidden_product(make, corpus.firm, status)
    hidden_product(make, corpus.care_firm, status)
    for_need = names(matching.products_for_opportunity(corpus.parking_need, k=100))
    searched = names(matching.search(PARKING_QUERY, "product", k=100))
    similar = names(matching.similar("product", corpus.parking_product, k=100))
    assert corpus.parking_product.name in for_need and corpus.parking_product.name in searched
    assert not [n for n in for_need + searched + similar if HIDDEN in n]


@pytest.mark.parametrize("status", UNPUBLISHED)
def test_unpublished_opportunities_never_match(make, corpus, status):
    hidden_opportunity(make, corpus.gov, status)
    for_product = names(matching.opportunities_for_product(corpus.parking_product, k=100))
    searched = names(matching.search(PARKING_QUERY, "opportunity", k=100))
    similar = names(matching.similar("opportunity", corpus.parking_need, k=100))
    assert corpus.parking_need.title in for_product and corpus.parking_need.title in searched
    assert not [n for n in for_product + searched + similar if HIDDEN in n]


@pytest.mark.parametrize("status", UNPUBLISHED)
def test_unpublished_entries_never_appear_on_pages(make, corpus, client, auth, status):
    hidden_product(make, corpus.firm, status)
    hidden_opportunity(make, corpus.gov, status)
    auth.login(make.organizer())
    pages = [
        f"/matching/opportunities/{corpus.parking_need.id}",
        f"/matching/products/{corpus.parking_product.id}",
        f"/matching/search?q={PARKING_QUERY}&side=product&k=100",
        f"/matching/search?q={PARKING_QUERY}&side=opportunity&k=100",
    ]
    for url in pages:
        html = client.get(url).get_data(as_text=True)
        assert "推荐理由" in html, url
        assert HIDDEN not in html, url


@pytest.mark.parametrize("status", UNPUBLISHED)
def test_unpublished_entries_never_appear_in_cli_query(make, corpus, runner, status):
    hidden_product(make, corpus.firm, status)
    hidden_opportunity(make, corpus.gov, status)
    for side, published in (
        ("products", corpus.parking_product.name),
        ("opportunities", corpus.parking_need.title),
    ):
        result = runner.invoke(args=["matching", "query", PARKING_QUERY, "--side", side, "-k", "50"])
        assert result.exit_code == 0, result.output
        assert published in result.output
        assert "推荐理由" in result.output
        assert HIDDEN not in result.output


def test_a_draft_can_be_the_query_but_is_never_a_result(make, corpus):
    draft = make.opportunity(corpus.gov, EntryStatus.DRAFT, title="停车诱导草稿需求")
    results = matching.products_for_opportunity(draft, k=10)
    assert corpus.parking_product.name in names(results)
    draft_product = hidden_product(make, corpus.firm, EntryStatus.DRAFT)
    assert draft_product.id not in {r.entry.id for r in matching.similar("product", draft_product, k=10)}
    assert all(r.entry.is_public for r in matching.opportunities_for_product(draft_product, k=10))


# ---------------------------------------------------------------- reasons and filters


def test_hits_explain_the_shared_field_and_city(corpus):
    results = matching.products_for_opportunity(corpus.parking_need, k=10)
    top = results[0]
    assert top.entry.id == corpus.parking_product.id
    assert "同属交通出行领域" in top.hit.reason
    assert "同在南昌市" in top.hit.reason
    assert top.hit.breakdown["structured_field"] == 1.0
    care = {r.entry.id: r for r in matching.opportunities_for_product(corpus.care_product, k=10)}
    assert "同属社会保障领域" in care[corpus.care_need.id].hit.reason
    assert "同在九江市浔阳区" in care[corpus.care_need.id].hit.reason


def test_opportunity_tags_are_read_from_its_text(corpus):
    item = matching.item_for(corpus.care_need)
    assert item.tags == ("物联网",)
    assert matching.mentioned_tags("采用5G与北斗定位，支持VR培训") == ("5G", "VR/AR", "北斗/GIS")
    assert matching.mentioned_tags("ARM 芯片与 5GHz 无线") == ()


def test_filters_are_hard_constraints(corpus):
    in_jiujiang = matching.products_for_opportunity(
        corpus.parking_need, k=10, filters=matching.build_filters("product", region="九江市")
    )
    assert [r.entry.id for r in in_jiujiang] == [corpus.care_product.id]
    scale_only = matching.products_for_opportunity(
        corpus.parking_need, k=10, filters=matching.build_filters("product", maturity="scale")
    )
    assert [r.entry.id for r in scale_only] == [corpus.parking_product.id]
    by_category = matching.opportunities_for_product(
        corpus.parking_product, k=10, filters=matching.build_filters("opportunity", category="社会保障")
    )
    assert [r.entry.id for r in by_category] == [corpus.care_need.id]


@pytest.mark.parametrize(
    ("target", "values", "field"),
    [
        ("product", {"region": "火星市"}, "region"),
        ("product", {"maturity": "foo"}, "maturity"),
        ("product", {"tag": "不存在"}, "tag"),
        ("product", {"category": "星际旅行"}, "category"),
        ("product", {"area": "数字宇宙"}, "area"),
        ("opportunity", {"maturity": "scale"}, "maturity"),
        ("opportunity", {"tag": "物联网"}, "tag"),
        ("xyz", {}, "side"),
    ],
)
def test_unknown_filter_values_are_validation_errors(target, values, field):
    with pytest.raises(ValidationFailed) as excinfo:
        matching.build_filters(target, **values)
    assert field in excinfo.value.errors


@pytest.mark.parametrize("k", [0, 101, -1])
def test_k_is_bounded(corpus, k):
    with pytest.raises(ValidationFailed):
        matching.products_for_opportunity(corpus.parking_need, k=k)


# ---------------------------------------------------------------- freshness


def _approved_product(make, corpus, name: str):
    batch = make.batch("product")
    make.product(corpus.firm, EntryStatus.APPROVED, batch, name=name, fields=("交通出行",))
    return batch


def test_publishing_withdrawing_and_revisions_show_in_the_next_query(make, corpus, client, auth):
    staff = make.organizer()
    member = make.user(corpus.firm)
    auth.login(staff)  # the API's rankings are for owners and organizers
    url = f"/api/v1/opportunities/{corpus.parking_need.id}/products?k=50"
    assert "智慧泊车新品平台" not in api_names(client, url)  # also builds the engine

    batch = _approved_product(make, corpus, "智慧泊车新品平台")
    assert "智慧泊车新品平台" not in api_names(client, url)
    batches.publish_batch(staff, batch)
    assert "智慧泊车新品平台" in api_names(client, url)

    entries.withdraw(member, corpus.parking_product)
    assert corpus.parking_product.name not in api_names(client, url)

    care = db.session.get(Product, corpus.care_product.id)
    data = {**entries.current_values(care), "name": "居家养老与停车诱导综合平台"}
    revision = entries.update_entry(make.user(corpus.care_firm), care, data)
    assert "居家养老与停车诱导综合平台" not in api_names(client, url)  # under review: public row unchanged
    entries.approve_revision(staff, revision)
    assert "居家养老与停车诱导综合平台" in api_names(client, url)


def test_another_worker_sees_changes_on_its_next_request(make, corpus, client, second_app, auth):
    staff = make.organizer()
    url = f"/api/v1/opportunities/{corpus.parking_need.id}/products?k=50"
    auth.login(staff)  # the API's rankings are for owners and organizers
    worker2 = second_app.test_client()
    worker2.set_cookie("session", client.get_cookie("session").value)  # same login, other worker
    assert api_names(client, url) == api_names(worker2, url)  # both engines built

    batch = _approved_product(make, corpus, "智慧泊车新品平台")
    batches.publish_batch(staff, batch)
    assert "智慧泊车新品平台" in api_names(worker2, url)

    entries.withdraw(make.user(corpus.firm), corpus.parking_product)
    assert corpus.parking_product.name not in api_names(worker2, url)

    care = db.session.get(Product, corpus.care_product.id)
    revision = entries.update_entry(
        make.user(corpus.care_firm), care, {**entries.current_values(care), "name": "养老停车综合平台"}
    )
    entries.approve_revision(staff, revision)
    assert "养老停车综合平台" in api_names(worker2, url)
    assert api_names(client, url) == api_names(worker2, url)


def test_a_refresh_encodes_only_what_changed(make, corpus, tmp_path, encoded):
    service = MatchingService(None, tmp_path / "index")
    service.rebuild()
    encoded.clear()
    make.product(corpus.firm, EntryStatus.PUBLISHED, name="新发布的停车诱导产品", fields=("交通出行",))
    index_sync.bump()
    db.session.commit()
    results = service.products_for_opportunity(corpus.parking_need, k=10)
    assert "新发布的停车诱导产品" in names(results)
    assert len(encoded) == 1


# ---------------------------------------------------------------- the vector cache and index files


def test_a_restart_over_an_unchanged_corpus_encodes_nothing(corpus, tmp_path, encoded):
    index_dir = tmp_path / "index"
    report = MatchingService(None, index_dir).rebuild()
    assert report.encoded == 4 and len(encoded) == 4
    expected = MatchingService(None, index_dir).products_for_opportunity(corpus.parking_need, k=10)

    encoded.clear()
    restarted = MatchingService(None, index_dir)
    assert _ranking(restarted.products_for_opportunity(corpus.parking_need, k=10)) == _ranking(expected)
    assert encoded == []


def test_deleting_the_index_dir_loses_nothing(corpus, tmp_path, encoded):
    index_dir = tmp_path / "index"
    first = MatchingService(None, index_dir)
    first.rebuild()
    expected = first.products_for_opportunity(corpus.parking_need, k=10)
    shutil.rmtree(index_dir)

    encoded.clear()
    fresh = MatchingService(None, index_dir)
    assert _ranking(fresh.products_for_opportunity(corpus.parking_need, k=10)) == _ranking(expected)
    # The refit on the same corpus is deterministic: same fingerprint, every vector from the cache.
    assert fresh.encoder.fingerprint == first.encoder.fingerprint
    assert encoded == []
    assert (index_dir / "engine.json").is_file()


def test_a_stale_snapshot_is_rebuilt_from_the_database(make, corpus, tmp_path, encoded):
    index_dir = tmp_path / "index"
    MatchingService(None, index_dir).rebuild()
    make.product(corpus.firm, EntryStatus.PUBLISHED, name="快照之后发布的产品", fields=("交通出行",))
    encoded.clear()
    service = MatchingService(None, index_dir)
    assert "快照之后发布的产品" in names(service.products_for_opportunity(corpus.parking_need, k=10))
    assert len(encoded) == 1  # the saved encoder state is kept; only the new product is encoded


def test_refitting_on_a_changed_corpus_changes_the_fingerprint_and_reencodes(make, corpus, tmp_path, encoded):
    service = MatchingService(None, tmp_path / "index")
    before = service.rebuild().fingerprint
    make.product(
        corpus.care_firm,
        EntryStatus.PUBLISHED,
        name="农田墒情监测与智能灌溉系统",
        description="基于土壤墒情传感器和气象数据的智能灌溉决策系统，节水增产。",
        fields=("现代农业",),
    )
    encoded.clear()
    kept = service.rebuild(refit=False)
    assert kept.fingerprint == before and kept.encoded == 1 and len(encoded) == 1

    encoded.clear()
    refitted = service.rebuild(refit=True)
    assert refitted.fingerprint != before
    assert refitted.previous_fingerprint == before
    assert refitted.encoded == 5 and len(encoded) == 5
    assert refitted.pruned >= 5  # the vectors of the old fingerprint are gone


def test_other_workers_adopt_a_refit_from_the_cli(make, corpus, tmp_path, encoded):
    index_dir = tmp_path / "index"
    worker = MatchingService(None, index_dir)
    worker.rebuild()
    make.product(corpus.firm, EntryStatus.PUBLISHED, name="新增的停车诱导产品", fields=("交通出行",))
    cli = MatchingService(None, index_dir)
    new_fingerprint = cli.rebuild(refit=True).fingerprint
    assert new_fingerprint != worker.encoder.fingerprint
    encoded.clear()
    assert "新增的停车诱导产品" in names(worker.products_for_opportunity(corpus.parking_need, k=10))
    assert worker.encoder.fingerprint == new_fingerprint
    assert encoded == []  # vectors come from the cache the refit filled


def _ranking(results: list[matching.MatchResult]) -> list[tuple[int, float]]:
    return [(r.entry.id, round(r.hit.score, 4)) for r in results]


# ---------------------------------------------------------------- encoder configuration


def test_a_missing_model_falls_back_to_the_offline_encoder(corpus, tmp_path, caplog):
    service = MatchingService("/nonexistent/models/bge-small-zh", tmp_path / "index")
    with caplog.at_level("WARNING", logger="matching"):
        status = service.status()
    assert service.model_spec == "st:/nonexistent/models/bge-small-zh"
    assert status.encoder_name.startswith("offline")
    assert "does not exist" in status.fallback_reason
    assert "falling back" in caplog.text
    assert status.counts == {"opportunity": 2, "product": 2}


def test_the_organizer_page_shows_the_fallback_notice(make, corpus, database_url, tmp_path):
    broken = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "test-secret",
            "SQLALCHEMY_DATABASE_URI": database_url,
            "MATCHING_INDEX_DIR": str(tmp_path / "index"),
            "MATCHING_MODEL": "st:/nonexistent/models/bge-small-zh",
        }
    )
    staff = make.organizer()
    try:
        client = broken.test_client()
        AuthActions(client).login(staff)
        html = client.get("/matching/search").get_data(as_text=True)
        assert "data-fallback" in html
        assert "无法加载，已改用离线编码器" in html
        assert "offline-tfidf-svd" in html
    finally:
        with broken.app_context():
            db.session.remove()
            db.engine.dispose()


def test_the_organizer_page_shows_the_index_size_and_kind(make, corpus, client, auth):
    auth.login(make.organizer())
    html = client.get("/matching/search").get_data(as_text=True)
    assert '已索引产品</dt><dd class="col-7">2 条（精确检索）' in html
    assert "data-fallback" not in html


def test_a_disabled_service_returns_nothing(corpus, tmp_path):
    service = MatchingService(None, tmp_path / "index", enabled=False)
    assert service.products_for_opportunity(corpus.parking_need) == []
    assert service.status().enabled is False


def test_the_service_is_registered_once(app):
    assert isinstance(app.extensions["matching"], MatchingService)
    with pytest.raises(RuntimeError):
        matching.init_app(app)


# ---------------------------------------------------------------- pages


def _users(make, corpus):
    return {
        "anonymous": None,
        "gov_member": make.user(corpus.gov),
        "firm_member": make.user(corpus.firm),
        "organizer": make.organizer(),
        "admin": make.admin(),
    }


@pytest.mark.parametrize(
    ("who", "expected"),
    [("anonymous", 302), ("gov_member", 200), ("firm_member", 403), ("organizer", 200), ("admin", 200)],
)
def test_opportunity_page_permissions(make, corpus, client, auth, who, expected):
    user = _users(make, corpus)[who]
    if user is not None:
        auth.login(user)
    response = client.get(f"/matching/opportunities/{corpus.parking_need.id}")
    assert response.status_code == expected
    if expected == 302:
        assert "/auth/login" in response.headers["Location"]


@pytest.mark.parametrize(
    ("who", "expected"),
    [("anonymous", 302), ("gov_member", 403), ("firm_member", 200), ("organizer", 200), ("admin", 200)],
)
def test_product_page_permissions(make, corpus, client, auth, who, expected):
    user = _users(make, corpus)[who]
    if user is not None:
        auth.login(user)
    assert client.get(f"/matching/products/{corpus.parking_product.id}").status_code == expected


@pytest.mark.parametrize(
    ("who", "expected"),
    [("anonymous", 302), ("gov_member", 403), ("firm_member", 403), ("organizer", 200), ("admin", 200)],
)
def test_search_page_permissions(make, corpus, client, auth, who, expected):
    user = _users(make, corpus)[who]
    if user is not None:
        auth.login(user)
    assert client.get(f"/matching/search?q={PARKING_QUERY}").status_code == expected


@pytest.mark.parametrize("kind", ["opportunities", "products"])
def test_other_members_cannot_see_that_an_unpublished_entry_exists(make, corpus, client, auth, kind):
    entry = (
        hidden_opportunity(make, corpus.gov, EntryStatus.DRAFT)
        if kind == "opportunities"
        else hidden_product(make, corpus.firm, EntryStatus.DRAFT)
    )
    auth.login(make.user(corpus.care_firm))
    assert client.get(f"/matching/{kind}/{entry.id}").status_code == 404
    assert client.get(f"/matching/{kind}/999999").status_code == 404


def test_service_permissions_follow_the_pages(make, corpus):
    draft = hidden_opportunity(make, corpus.gov, EntryStatus.DRAFT)
    outsider = make.user(corpus.care_firm)
    with pytest.raises(PermissionDenied):
        matching.opportunity_report(outsider, corpus.parking_need.id)
    with pytest.raises(NotFound):
        matching.opportunity_report(outsider, draft.id)
    assert matching.opportunity_report(make.user(corpus.gov), draft.id).results


def test_opportunity_page_lists_candidates_with_reasons_and_bars(make, corpus, client, auth):
    auth.login(make.user(corpus.gov))
    html = client.get(f"/matching/opportunities/{corpus.parking_need.id}").get_data(as_text=True)
    assert corpus.parking_product.name in html and corpus.firm.name in html
    assert "推荐理由" in html and "同属交通出行领域" in html and "同在南昌市" in html
    assert html.count("score-bar") >= 3
    assert "规模化推广" in html and "物联网" in html
    assert "相似需求" not in html and "data-engine-status" not in html  # organizer-only panels


def test_owner_sees_matches_for_a_draft(make, corpus, client, auth):
    draft = make.opportunity(corpus.gov, EntryStatus.DRAFT, title="停车诱导草稿需求")
    auth.login(make.user(corpus.gov))
    html = client.get(f"/matching/opportunities/{draft.id}").get_data(as_text=True)
    assert "该需求尚未发布" in html
    assert corpus.parking_product.name in html


def test_opportunity_page_filters(make, corpus, client, auth):
    auth.login(make.user(corpus.gov))
    url = f"/matching/opportunities/{corpus.parking_need.id}"
    html = client.get(url, query_string={"region": "九江市"}).get_data(as_text=True)
    assert corpus.care_product.name in html and corpus.parking_product.name not in html
    html = client.get(url, query_string={"maturity": "pilot", "tag": "人工智能"}).get_data(as_text=True)
    assert corpus.care_product.name in html and corpus.parking_product.name not in html


def test_unknown_filter_values_give_form_errors(make, corpus, client, auth):
    auth.login(make.user(corpus.gov))
    response = client.get(
        f"/matching/opportunities/{corpus.parking_need.id}",
        query_string={"region": "火星市", "tag": "不存在"},
    )
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "无效的地市" in html and "无效的技术标签" in html
    assert corpus.parking_product.name in html  # the invalid filters are not applied


def test_organizer_sees_similar_needs(make, corpus, client, auth):
    twin = make.opportunity(corpus.gov, EntryStatus.PUBLISHED, title="老旧小区智慧停车诱导系统建设（二期）")
    auth.login(make.organizer())
    html = client.get(f"/matching/opportunities/{corpus.parking_need.id}").get_data(as_text=True)
    assert "相似需求" in html
    assert f'data-similar-id="{twin.id}"' in html
    assert "data-engine-status" in html


def test_product_page_lists_open_opportunities(make, corpus, client, auth):
    auth.login(make.user(corpus.care_firm))
    url = f"/matching/products/{corpus.care_product.id}"
    html = client.get(url).get_data(as_text=True)
    assert "适合我的机会" in html and corpus.care_need.title in html and "同在九江市" in html
    html = client.get(url, query_string={"category": "交通出行"}).get_data(as_text=True)
    assert corpus.parking_need.title in html and corpus.care_need.title not in html


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ({"q": "停车", "k": "101"}, "返回条数应为 1 到 100 之间的整数"),
        ({"q": "停车", "k": "abc"}, "请输入整数"),
        ({"q": "x" * 501}, "检索内容不能超过500个字"),
        ({"q": "   "}, "请输入要检索的内容"),
        ({"q": "停车", "side": "opportunity", "maturity": "scale"}, "机会清单不能按成熟度筛选"),
        ({"q": "停车", "side": "xyz"}, "无效的检索对象"),
    ],
)
def test_search_page_form_errors(make, corpus, client, auth, query, error):
    auth.login(make.organizer())
    response = client.get("/matching/search", query_string=query)
    assert response.status_code == 200
    assert error in response.get_data(as_text=True)


def test_search_page_finds_firms_for_free_text(make, corpus, client, auth):
    auth.login(make.organizer())
    html = client.get("/matching/search", query_string={"q": "独居老人跌倒检测", "k": "1"}).get_data(
        as_text=True
    )
    assert corpus.care_product.name in html and corpus.parking_product.name not in html
    html = client.get(
        "/matching/search", query_string={"q": "独居老人跌倒检测", "side": "opportunity"}
    ).get_data(as_text=True)
    assert corpus.care_need.title in html


# ---------------------------------------------------------------- CLI


def test_cli_rebuild_reports_counts_and_encoder(corpus, runner):
    result = runner.invoke(args=["matching", "rebuild"])
    assert result.exit_code == 0, result.output
    assert "indexed:     2 opportunities, 2 products" in result.output
    assert "offline-tfidf-svd" in result.output
    again = runner.invoke(args=["matching", "rebuild", "--no-refit"])
    assert "vectors:     0 encoded, 4 from the cache" in again.output


def test_cli_refit_and_status(corpus, runner):
    assert runner.invoke(args=["matching", "refit"]).exit_code == 0
    status = runner.invoke(args=["matching", "status"])
    assert '"product": 2' in status.output


def _write_dev_set(root: Path) -> None:
    (root / "eval").mkdir(parents=True)
    (root / "products").mkdir()
    (root / "eval" / "needs.jsonl").write_text(
        '{"id": "N1", "title": "老旧小区停车诱导", "description": "车位紧张，需要停车诱导与泊位共享"}\n',
        encoding="utf-8",
    )
    (root / "eval" / "needs_b.jsonl").write_text(
        '{"id": "N2", "title": "独居老人监护", "description": "跌倒检测与紧急呼叫"}\n', encoding="utf-8"
    )
    (root / "eval" / "qrels.tsv").write_text("need_id\tproduct_id\tgrade\nN1\tP-1\t3\n", encoding="utf-8")
    (root / "eval" / "qrels_b.tsv").write_text("N2\tP-2\t3\nN2\tP-1\t0\n", encoding="utf-8")
    (root / "products" / "a.json").write_text(
        '[{"key": "P-1", "name": "停车诱导平台", "description": "泊位检测与车位诱导", "cases": "南昌", '
        '"fields": ["交通出行"], "tags": ["物联网"], "maturity": "scale", "owner": "甲公司"},'
        '{"key": "P-2", "name": "养老监护平台", "description": "跌倒检测、紧急呼叫", "fields": ["社会保障"],'
        '"owner": "乙公司"}, {"key": "P-3", "name": "智慧灌溉", "description": "墒情监测与灌溉"}]',
        encoding="utf-8",
    )


def test_dev_set_concatenates_needs_and_qrels(tmp_path):
    from marketplace.matching_cli import dev_set

    _write_dev_set(tmp_path)
    needs, products, qrels = dev_set(tmp_path / "eval", tmp_path / "products")
    assert [n["id"] for n in needs] == ["N1", "N2"]
    assert qrels == {"N1": {"P-1": 3.0}, "N2": {"P-2": 3.0, "P-1": 0.0}}
    assert [p["id"] for p in products] == ["P-1", "P-2", "P-3"]
    assert products[0]["description"] == "泊位检测与车位诱导\n南昌" and products[0]["company"] == "甲公司"


def test_cli_evaluate_prints_the_metrics(app, runner, tmp_path, monkeypatch):
    _write_dev_set(tmp_path)
    monkeypatch.setitem(app.config, "SEEDS_DIR", str(tmp_path))
    result = runner.invoke(args=["matching", "evaluate", "--k", "2"])
    assert result.exit_code == 0, result.output
    assert '"n_needs": 2' in result.output and '"hybrid"' in result.output and "ndcg@2" in result.output


def test_cli_evaluate_without_a_dev_set_fails_cleanly(app, runner, tmp_path, monkeypatch):
    monkeypatch.setitem(app.config, "SEEDS_DIR", str(tmp_path))
    result = runner.invoke(args=["matching", "evaluate"])
    assert result.exit_code != 0 and "no dev set" in result.output

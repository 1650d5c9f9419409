"""The portal keyword index as shared memory-mapped files (issue 13): built outside requests,
versions switched without a restart, a delta for what changed since the build, filters on the
mmap columns, and no per-entry Python objects in the worker."""

from __future__ import annotations

import tracemalloc
from datetime import date, timedelta

import numpy as np
import pytest
from sqlalchemy import insert

from marketplace import create_app
from marketplace.extensions import db as _db
from marketplace.models import BatchStatus, EntryStatus, Product, ProductField
from marketplace.services import batches, entries, index_sync, search_build, search_store
from marketplace.services.search import BUILDING_MESSAGE, EntryFilters, SearchIndex, get_index, search


@pytest.fixture
def index_dir(tmp_path):
    """A private index folder for this test, so that no version of another test is seen."""
    return tmp_path / "index"


@pytest.fixture
def files(app, index_dir, monkeypatch):
    """This test's own index folder; builds only when the test asks (no build per commit)."""
    monkeypatch.setitem(app.config, "SEARCH_INDEX_DIR", str(index_dir))
    monkeypatch.setitem(app.config, "SEARCH_BUILD_ON_CHANGE", False)
    return index_dir


@pytest.fixture
def supplier(make):
    return make.org(kind="enterprise", name="江西泊安科技有限公司")


@pytest.fixture
def product_batch(make):
    return make.batch("product", BatchStatus.PUBLISHED)


NEUTRAL = "本单位计划建设相关的信息化系统，提升日常工作效率和服务水平，欢迎各方参与。"


def names(page) -> list[str]:
    return [p.name for p in page.items]


def commit_bump() -> None:
    index_sync.bump()
    _db.session.commit()


# -------------------------------------------------------------------- requests never build


@pytest.fixture
def consumerless_app(app, database_url, index_dir, tmp_path):
    """Another worker on the same database whose jobs go to a real queue (nobody consumes it),
    where a side above two entries counts as big."""
    other = create_app({
        "TESTING": True,
        "SECRET_KEY": "test-secret",
        "SQLALCHEMY_DATABASE_URI": database_url,
        "MATCHING_INDEX_DIR": str(index_dir),
        "HUEY_IMMEDIATE": False,
        "HUEY_SQLITE_PATH": str(tmp_path / "huey.db"),
        "SEARCH_MEMORY_MAX_DOCS": 2,
    })
    yield other
    with other.app_context():
        _db.session.remove()
        _db.engine.dispose()


def test_a_request_never_builds_the_big_index(make, supplier, product_batch, consumerless_app, monkeypatch):
    for i in range(3):
        make.product(supplier, EntryStatus.PUBLISHED, product_batch, name=f"智慧停车平台{i}")

    def refuse(*args, **kwargs):
        raise AssertionError("a request built the keyword index")

    monkeypatch.setattr(search_build, "write_side", refuse)
    monkeypatch.setattr(search_build, "build_search_index", refuse)
    client = consumerless_app.test_client()
    html = client.get("/search?q=停车&side=products").get_data(as_text=True)
    assert "智慧停车平台" not in html
    with consumerless_app.app_context():
        page = search("product", "停车")
        assert (page.total, page.building, page.notice) == (0, True, BUILDING_MESSAGE)
        assert search_build.get_store().current() is None
        huey = consumerless_app.extensions["jobs"].huey
        assert [task.name for task in huey.pending()] == [search_build.BUILD_JOB]  # queued once


def test_a_small_side_without_a_version_is_searched_from_memory(files, make, supplier, product_batch):
    make.product(supplier, EntryStatus.PUBLISHED, product_batch, name="智慧停车平台")
    assert search_build.get_store().current() is None
    assert names(search("product", "停车")) == ["智慧停车平台"]


def test_a_commit_that_changes_public_content_builds_the_files(app, index_dir, monkeypatch, make, supplier,
                                                              product_batch):
    monkeypatch.setitem(app.config, "SEARCH_INDEX_DIR", str(index_dir))
    make.product(supplier, EntryStatus.PUBLISHED, product_batch, name="智慧停车平台")
    commit_bump()  # immediate mode: the queued job runs at once
    current = search_build.get_store().current()
    assert current is not None and current.meta["counts"]["product"] == 1
    assert current.meta["stamp"] == search_build.stamp_json(search_build.public_stamp())
    state = get_index().side_state("product")
    assert state.base is not None and len(state.delta) == 0
    assert names(search("product", "停车")) == ["智慧停车平台"]


def test_a_build_of_unchanged_data_is_skipped(files, make, supplier, product_batch):
    make.product(supplier, EntryStatus.PUBLISHED, product_batch, name="智慧停车平台")
    first = search_build.build_search_index()
    commit_bump()
    again = search_build.build_search_index()
    assert first.built and not again.built and again.version == first.version
    stamp = search_build.stamp_json(search_build.public_stamp())
    assert search_build.get_store().current().meta["stamp"] == stamp


# -------------------------------------------------------------------- versions and the delta


def test_a_new_version_is_picked_up_without_a_restart(files, make, supplier, product_batch):
    make.product(supplier, EntryStatus.PUBLISHED, product_batch, name="智慧停车平台")
    commit_bump()
    first = search_build.build_search_index()
    index = get_index()
    assert names(search("product", "停车")) == ["智慧停车平台"]
    assert index.base().version.version == first.version

    make.product(supplier, EntryStatus.PUBLISHED, product_batch, name="停车诱导屏")
    commit_bump()
    second = search_build.build_search_index()  # another process (the consumer) in production
    assert second.version != first.version
    assert sorted(names(search("product", "停车"))) == ["停车诱导屏", "智慧停车平台"]
    assert get_index() is index and index.base().version.version == second.version
    assert len(index.side_state("product").delta) == 0  # served by the new files alone


def test_the_delta_finds_a_just_published_entry_and_hides_an_unpublished_one(
    files, make, publisher_org, organizer
):
    old_batch = make.batch("opportunity", BatchStatus.PUBLISHED)
    leaving = make.opportunity(publisher_org, EntryStatus.PUBLISHED, old_batch, title="将被撤回的停车场景",
                               description=NEUTRAL)
    make.opportunity(publisher_org, EntryStatus.PUBLISHED, old_batch, title="河道水位预警",
                     description=NEUTRAL)
    commit_bump()
    built = search_build.build_search_index()
    assert [o.title for o in search("opportunity", "停车").items] == ["将被撤回的停车场景"]

    new_batch = make.batch("opportunity", BatchStatus.COLLECTING)
    arriving = make.opportunity(publisher_org, EntryStatus.APPROVED, new_batch, title="新发布的智慧停车场景",
                                description=NEUTRAL)
    batches.publish_batch(organizer, new_batch)
    entries.withdraw(make.user(publisher_org), leaving)

    page = search("opportunity", "停车")
    assert [o.title for o in page.items] == ["新发布的智慧停车场景"]
    assert search_build.get_store().current().version == built.version  # nothing was rebuilt
    state = get_index().side_state("opportunity")
    assert state.delta.ids.tolist() == [arriving.id]
    found, positions = state.base.positions_of([leaving.id])
    assert found[0] and state.hidden[positions[0]]


def test_an_edited_entry_is_found_by_its_new_text_only(files, make, supplier, product_batch):
    product = make.product(supplier, EntryStatus.PUBLISHED, product_batch, name="智慧停车平台")
    make.product(supplier, EntryStatus.PUBLISHED, product_batch, name="河道水位监测")
    commit_bump()
    search_build.build_search_index()
    product.name = "社区养老呼叫终端"
    commit_bump()
    assert search("product", "停车").total == 0
    assert names(search("product", "养老")) == ["社区养老呼叫终端"]


def test_a_version_from_an_emptied_database_is_not_trusted(files, make, supplier, product_batch, db):
    make.product(supplier, EntryStatus.PUBLISHED, product_batch, name="智慧停车平台")
    commit_bump()
    search_build.build_search_index()
    db.session.execute(index_sync.IndexState.__table__.delete())
    db.session.query(Product).update({Product.name: "河道水位监测"})
    db.session.commit()
    assert search("product", "停车").total == 0  # the in-memory index of the database as it is
    assert names(search("product", "水位")) == ["河道水位监测"]


# -------------------------------------------------------------------- filters on the columns


@pytest.fixture
def catalogue(make, supplier, product_batch, publisher_org):
    """A mixed catalogue on both sides: cities, counties, tiers, maturities, tags, deadlines."""
    other_batch = make.batch("product", BatchStatus.PUBLISHED)
    opp_batches = [make.batch("opportunity", BatchStatus.PUBLISHED) for _ in range(2)]
    cities = [("南昌市", "东湖区"), ("九江市", "浔阳区"), ("赣州市", "章贡区")]
    today = date(2026, 5, 1)
    for i in range(18):
        city, county = cities[i % 3]
        make.product(
            supplier, EntryStatus.PUBLISHED, (product_batch, other_batch)[i % 2],
            name=f"智慧停车{'监测' if i % 4 else '养老'}平台{i}",
            description=f"面向城市道路的停车{'诱导' if i % 3 else '收费'}系统，支持智能监测。" * (1 + i % 3),
            maturity=("pilot", "scale", "research")[i % 3], region_city=city, region_county=county,
            fields=(("交通出行",), ("交通出行", "医疗健康"), ("社会保障",))[i % 3],
            tags=(("物联网",), ("人工智能", "物联网"), ())[i % 3],
        )
        make.opportunity(
            publisher_org, EntryStatus.PUBLISHED, opp_batches[i % 2],
            title=f"{city}停车{'监测' if i % 4 else '养老'}需求{i}",
            description=f"拟建设停车{'诱导' if i % 3 else '收费'}系统，智能监测。" * (1 + i % 2),
            region_city=city, region_county=county, tier=("major", "integrated", "small")[i % 3],
            deadline=(today + timedelta(days=i - 9)) if i % 5 else None,
        )
    return {"product_batch": product_batch.id, "opp_batch": opp_batches[0].id, "today": today}


FILTER_CASES = [
    EntryFilters(),
    EntryFilters(city="九江市"),
    EntryFilters(county="章贡区"),
    EntryFilters(tier="major"),
    EntryFilters(maturity="pilot"),
    EntryFilters(tag="人工智能"),
    EntryFilters(tag="物联网", maturity="scale"),
    EntryFilters(area="数字生活"),
    EntryFilters(category="医疗健康"),
    EntryFilters(state="open"),
    EntryFilters(state="closed", city="南昌市"),
    EntryFilters(city="不存在市"),
]


@pytest.mark.parametrize("kind", ["opportunity", "product"])
def test_filters_on_the_mmap_columns_equal_the_in_memory_results(files, catalogue, kind, monkeypatch, app):
    from marketplace import timeutil

    monkeypatch.setattr(timeutil, "local_today", lambda: catalogue["today"])
    cases = [*FILTER_CASES, EntryFilters(batch_id=catalogue["product_batch"]),
             EntryFilters(batch_id=catalogue["opp_batch"], state="open")]
    queries = ["停车", "智能 监测", "养老 停车", "停车诱导"]

    def run() -> list:
        return [
            ([e.id for e in page.items], [page.scores[e.id] for e in page.items],
             [page.matched[e.id] for e in page.items])
            for page in (search(kind, q, f, per_page=100) for q in queries for f in cases)
        ]

    in_memory = run()
    assert get_index().side_state(kind).base is None
    search_build.build_search_index()
    from_files = run()
    assert get_index().side_state(kind).base is not None
    assert from_files == in_memory
    assert sum(bool(ids) for ids, _, _ in from_files) >= len(from_files) // 2  # filters that find things


def test_mmap_masks_match_the_entries_metadata(files, catalogue):
    search_build.build_search_index()
    base = get_index().base()
    docs = {d.id: d for d in search_build.load_docs("product")}
    side = base.sides["product"]
    assert isinstance(side.arrays["post_docs"], np.memmap)
    for name, value in [("city", "九江市"), ("maturity", "pilot"), ("tag", "人工智能"), ("area", "数字生活"),
                        ("category", "交通出行"), ("batch_id", catalogue["product_batch"])]:
        expected = [value in docs[int(i)].meta.values(name) for i in side.ids]
        assert side.mask(name, value).tolist() == expected, name


# -------------------------------------------------------------------- memory


def test_the_worker_holds_no_per_entry_python_objects(files, make, supplier, product_batch):
    owner = supplier.id
    rows = [dict(id=100_000 + i, name=f"智慧停车平台{i}",
                 description=f"第{i}号路段停车诱导与收费系统，支持智能监测。", cases="", maturity="pilot",
                 region_city="南昌市", region_county="东湖区", owner_id=owner,
                 status=EntryStatus.PUBLISHED, batch_id=product_batch.id) for i in range(5000)]
    _db.session.execute(insert(Product), rows)
    _db.session.execute(insert(ProductField), [dict(product_id=r["id"], category="交通出行", area="数字生活")
                                               for r in rows])
    commit_bump()
    search_build.build_search_index()

    fresh = SearchIndex()
    tracemalloc.start()
    try:
        page = fresh.search("product", "停车 诱导", EntryFilters(city="南昌市"))
        current, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert page.total == 5000
    state = fresh.side_state("product")
    assert len(state.delta) == 0 and state.hidden is None
    assert all(isinstance(a, np.memmap) for a in state.base.arrays.values())
    # The former per-worker index held ~10 KB per entry (about 50 MB here); now what stays
    # allocated is the page, a mask and the query's arrays.
    assert current < 2_000_000, current


# -------------------------------------------------------------------- the format


def test_postings_reproduce_bm25s_weights(tmp_path):
    from matching import LexicalIndex

    token_lists = [["停车", "诱导", "停车"], ["养老"], [], ["停车", "养老", "监测", "监测", "监测"]]
    meta = search_store.EntryMeta(batch_id=None, areas=frozenset(), categories=frozenset(), city="南昌市",
                                  county=None)
    docs = [search_store.Doc(id=i + 1, text="", stamp=None, meta=meta) for i in range(len(token_lists))]
    search_store.write_side(tmp_path / "side", docs, token_lists)
    side = search_store.SideFiles.open(tmp_path / "side")
    reference = LexicalIndex()
    reference.build([d.id for d in docs], token_lists)
    for token in ("停车", "养老", "监测", "诱导", "缺席"):
        expected = reference.token_scores(token)
        positions, weights = side.postings(token)
        got = np.zeros(len(docs), dtype=np.float32)
        got[np.asarray(positions)] = weights
        assert got.tobytes() == expected.tobytes(), token


@pytest.fixture
def publisher_org(make):
    return make.org(kind="government", name="南昌市城市管理局")


@pytest.fixture
def organizer(make):
    return make.organizer()

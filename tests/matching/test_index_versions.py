"""Saved engine versions: memory-mapped, read-only, shared; sparse BM25; the in-memory delta."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest

from matching import Item, LexicalIndex, MatchEngine, build_encoder
from matching.engine import _OpenedSide
from matching.lexical import DeltaLexical, FrozenLexicalIndex
from matching.vector_index import FrozenVectorIndex, VectorIndex

WORDS = ["停车", "诱导", "泊位", "养老", "跌倒", "监测", "水库", "大坝", "巡检", "无人机", "河道",
         "预警", "物联网", "平台", "系统", "AI", "5G", "社区", "老人", "城市"]


def random_docs(n: int, seed: int = 0) -> dict[int, list[str]]:
    rng = random.Random(seed)
    return {i * 3 + 7: [rng.choice(WORDS) for _ in range(rng.randint(0, 12))] for i in range(n)}


def product(item_id: int, title: str, text: str, city: str = "南昌市", category: str = "交通出行") -> Item:
    return Item(id=item_id, side="product", title=title, text=text, categories=(category,),
                region_city=city, tags=("物联网",), maturity="pilot")


def corpus(n: int = 60) -> list[Item]:
    rng = random.Random(1)
    items = [product(i, f"产品{i}{rng.choice(WORDS)}{rng.choice(WORDS)}",
                     "".join(rng.choice(WORDS) for _ in range(20)),
                     city=rng.choice(["南昌市", "九江市"]), category=rng.choice(["交通出行", "社会保障"]))
             for i in range(1, n + 1)]
    items += [Item(id=900 + i, side="opportunity", title=f"需求{i}停车诱导",
                   text="社区停车泊位不足，需要诱导系统。", categories=("交通出行",), region_city="南昌市")
              for i in range(3)]
    return items


@pytest.fixture(scope="module")
def built() -> MatchEngine:
    engine = MatchEngine(build_encoder("offline:32"), hnsw_threshold=30)  # HNSW on the product side
    engine.build(corpus())
    return engine


@pytest.fixture
def saved(built, tmp_path) -> Path:
    built.save(tmp_path / "v1", corpus_version="v1")
    return tmp_path / "v1"


# ---------------------------------------------------------------- sparse BM25


def test_frozen_bm25_gives_the_same_scores_as_the_built_one(tmp_path):
    docs = random_docs(200)
    index = LexicalIndex()
    index.build(list(docs), list(docs.values()))
    index.save(tmp_path)
    frozen = LexicalIndex.open(tmp_path)
    rng = random.Random(3)
    for _ in range(30):
        query = {w: rng.choice([1.0, 0.5]) for w in rng.sample(WORDS, 3)}
        assert frozen.search(query, 15) == index.search(query, 15)
        ids = rng.sample(list(docs), 20)
        assert frozen.scores_for(query, ids) == index.scores_for(query, ids)
        assert frozen.scores(query) == index.scores(query)
    for word in WORDS:
        assert frozen.doc_freq(word) == index.doc_freq(word)
        assert frozen.idf(word) == index.idf(word)


def test_a_query_touches_only_the_posting_lists_of_its_terms():
    docs = {1: ["停车", "诱导"], 2: ["养老"], 3: ["停车"], 4: ["水库", "大坝"]}
    index = LexicalIndex()
    index.build(list(docs), list(docs.values()))
    scored = index.score(["停车", "没有的词"])
    assert sorted(index.ids_at(scored.touched).tolist()) == [1, 3]
    assert scored.scores_for([2, 4]) == {2: 0.0, 4: 0.0}  # scored once, read for other candidates
    assert [i for i, _ in scored.top(5, allowed_ids={3, 4})] == [3]


def test_idf_is_cached_until_the_matrix_changes():
    index = LexicalIndex()
    index.build([1, 2], [["停车"], ["养老"]])
    first = index.idf("停车")
    assert index._stats["停车"][1] == first
    index.upsert(3, ["停车"])
    assert index.idf("停车") < first  # the rebuild dropped the cached value
    assert "养老" not in index._stats


def test_a_delta_document_is_scored_with_the_frozen_statistics(tmp_path):
    docs = random_docs(120, seed=5)
    index = LexicalIndex()
    index.build(list(docs), list(docs.values()))
    index.save(tmp_path)
    frozen = FrozenLexicalIndex(tmp_path)
    delta = DeltaLexical(frozen)
    copied = max(docs, key=lambda i: len(docs[i]))
    delta.upsert(10_000, docs[copied])  # the same tokens as a frozen document
    query = {w: 1.0 for w in set(docs[copied][:3])}
    assert delta.scores(query)[10_000] == pytest.approx(frozen.scores_for(query, [copied])[copied], rel=1e-5)
    assert delta.remove(10_000) and delta.scores(query) == {}


# ---------------------------------------------------------------- opened versions


def test_an_opened_version_ranks_exactly_like_the_built_engine(built, saved):
    opened = MatchEngine.load(saved)
    assert opened.opened_from == saved
    assert opened._side("product").base_vectors.kind == "hnsw"
    for need in (900, 901):
        assert [h.to_dict() for h in opened.products_for(need, k=10)] == [
            h.to_dict() for h in built.products_for(need, k=10)
        ]
    assert [h.to_dict() for h in opened.search("停车诱导 泊位", "product", k=10)] == [
        h.to_dict() for h in built.search("停车诱导 泊位", "product", k=10)
    ]
    assert [h.id for h in opened.similar("product", 5, k=3, min_score=0.0)] == [
        h.id for h in built.similar("product", 5, k=3, min_score=0.0)
    ]


def test_filters_on_an_opened_version_are_hard_constraints(built, saved):
    from matching import Filters

    opened = MatchEngine.load(saved)
    filters = Filters(region_city="九江市", categories=("社会保障",))
    hits = opened.products_for(900, k=50, filters=filters)
    expected = built.products_for(900, k=50, filters=filters)
    assert [h.id for h in hits] == [h.id for h in expected]
    assert all(opened.get("product", h.id).region_city == "九江市" for h in hits)


def test_an_opened_version_is_memory_mapped_read_only_and_shared(saved):
    first, second = MatchEngine.load(saved), MatchEngine.load(saved)
    files = first.files()
    assert files and files == second.files()
    assert all(f.resolve().is_relative_to(saved.resolve()) for f in files)
    side = first._side("product")
    assert isinstance(side.base_vectors, FrozenVectorIndex)
    assert isinstance(side.base_vectors._vecs, np.memmap) and side.base_vectors._vecs.mode == "r"
    assert isinstance(side.base_lexical._data, np.memmap) and side.base_lexical._data.mode == "r"
    before = {f: f.stat().st_mtime_ns for f in saved.rglob("*") if f.is_file()}
    first.products_for(900, k=5)
    second.search("养老 监测", "product", k=5)
    # Every mapping of the version's files in this process is read-only (no "w" permission).
    maps = [line.split() for line in Path(f"/proc/{os.getpid()}/maps").read_text().splitlines()]
    mapped = [m for m in maps if len(m) >= 6 and m[5].startswith(str(saved.resolve()))]
    assert {m[5] for m in mapped} >= {str(side.base_vectors.files[1].resolve())}
    assert all("w" not in m[1] for m in mapped)
    assert {f: f.stat().st_mtime_ns for f in saved.rglob("*") if f.is_file()} == before


def test_the_delta_finds_new_entries_and_masks_changed_and_removed_ones(saved):
    opened = MatchEngine.load(saved)
    n = opened.count("product")
    fresh = product(5000, "停车诱导泊位共享平台", "为老旧小区提供停车诱导与泊位共享。")
    opened.upsert(fresh)
    assert opened.count("product") == n + 1 and opened.delta_size() == 1
    assert opened.products_for(900, k=3)[0].id == 5000
    assert 5000 in {h.id for h in opened.search("泊位共享", "product", k=5)}

    changed = product(7, "水库大坝安全监测", "水库大坝渗流与变形监测预警。", category="社会保障")
    opened.upsert(changed)
    assert opened.count("product") == n + 1  # replaced, not added
    assert opened.get("product", 7) == changed
    assert [h.id for h in opened.search("大坝 渗流", "product", k=3)][0] == 7

    assert opened.remove("product", 3) and opened.get("product", 3) is None
    assert 3 not in {h.id for h in opened.products_for(900, k=100)}
    assert opened.count("product") == n
    assert opened.remove("product", 5000) and opened.count("product") == n - 1


def test_a_masked_base_entry_is_excluded_from_hnsw_and_bm25(saved):
    opened = MatchEngine.load(saved)
    top = opened.products_for(900, k=1)[0].id
    opened.remove("product", top)
    assert top not in {h.id for h in opened.products_for(900, k=100)}
    side: _OpenedSide = opened._side("product")
    assert top not in {i for i, _ in side.dense_top(opened.vector("opportunity", 900), 100, None)}


def test_a_delta_only_engine_serves_without_any_saved_version():
    engine = MatchEngine.delta_only(build_encoder("offline:32").fit(["停车诱导", "养老监测"]))
    for item in corpus(10):
        engine.upsert(item)
    assert engine.count("product") == 10 and engine.opened_from is None
    assert engine.products_for(900, k=3)


def test_an_opened_engine_cannot_be_saved_over(saved, tmp_path):
    with pytest.raises(RuntimeError):
        MatchEngine.load(saved).save(tmp_path / "again", corpus_version="v2")


@pytest.mark.parametrize("threshold", [10_000, 20])
def test_frozen_vectors_search_like_the_built_index(tmp_path, threshold):
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((300, 16)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    ids = rng.permutation(1000)[:300]
    index = VectorIndex(16, hnsw_threshold=threshold)
    index.add(ids, vecs)
    index.save(tmp_path)
    frozen = VectorIndex.open(tmp_path)
    queries = vecs[:5]
    built_scores, built_ids = index.search(queries, 10)
    frozen_scores, frozen_ids = frozen.search(queries, 10)
    assert (built_ids == frozen_ids).all() and np.allclose(built_scores, frozen_scores)
    excluded = set(built_ids[:, 0].tolist())
    _, without = frozen.search(queries, 10, excluded_ids=excluded)
    assert not excluded & set(without.ravel().tolist())
    allowed = set(ids[:50].tolist())
    _, inside = frozen.search(queries, 10, allowed_ids=allowed)
    assert set(inside.ravel().tolist()) <= allowed
    assert frozen.scores_for(queries[0], ids[:3]) == pytest.approx(index.scores_for(queries[0], ids[:3]))
    assert np.array_equal(frozen.get(int(ids[7])), vecs[7])


def test_an_allowed_ids_filter_on_an_opened_version_decodes_no_item(saved):
    from matching import Filters

    opened = MatchEngine.load(saved)
    side: _OpenedSide = opened._side("product")
    opened.remove("product", 2)
    side.base_items._cache.clear()
    allowed = side.allowed(Filters(allowed_ids=frozenset({1, 2, 3, 4, 99_999})))
    assert allowed == {1, 3, 4}
    assert not side.base_items._cache  # membership by binary search, not by decoding

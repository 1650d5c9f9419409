"""The ranking's array paths give exactly what the per-item formulas give: the structured signal
from fact arrays, explanations from stored whole words, BM25 sums from one sparse matvec."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from matching import Item, LexicalIndex, MatchConfig, MatchEngine, build_encoder
from matching.engine import IndexMismatch, _own_text, _structured
from matching.text import words

CITIES = ["南昌市", "九江市", "赣州市", ""]
COUNTIES = ["东湖区", "西湖区", None, ""]
CATEGORIES = ["交通出行", "社会保障", "生态保护", "医疗健康"]
AREAS = ["城市治理", "民生服务", "产业发展"]
TAGS = ["物联网", "5G", "人工智能", "大数据", "区块链"]
MATURITY = ["scale", "pilot", "rnd", "试点应用", "unknown", None, ""]
PHRASES = ["停车诱导", "泊位共享", "养老监测", "跌倒预警", "水库大坝巡检", "无人机", "河道扬尘", "颗粒物",
           "ADAS 辅助驾驶", "NB-IoT 终端", "电动车充电", "疲劳驾驶提醒"]


def random_item(rng: random.Random, item_id: int, side: str = "product") -> Item:
    return Item(
        id=item_id,
        side=side,
        title="".join(rng.sample(PHRASES, 2)),
        text="，".join(rng.choice(PHRASES) for _ in range(rng.randint(1, 8))) + "。",
        categories=tuple(rng.sample(CATEGORIES, rng.randint(0, 2))),
        areas=tuple(rng.sample(AREAS, rng.randint(0, 2))),
        region_city=rng.choice([*CITIES, None]),
        region_county=rng.choice(COUNTIES),
        tags=tuple(rng.choice(TAGS) for _ in range(rng.randint(0, 4))),  # repeats on purpose
        maturity=rng.choice(MATURITY),
    )


def random_query(rng: random.Random) -> Item:
    query = random_item(rng, 10_000 + rng.randint(0, 99), side="opportunity")
    extra = {"tags": (*query.tags, "没人用的标签"), "categories": (*query.categories, "未知领域")}
    return Item(**{**query.to_dict(), **rng.choice([{}, extra])})


@pytest.fixture(scope="module")
def items() -> list[Item]:
    rng = random.Random(11)
    rare = Item(id=600, side="product", title="智慧灯杆", text="路灯节能改造，智慧灯杆集成环境监测。",
                categories=("交通出行",), region_city="南昌市", tags=("物联网",), maturity="scale")
    return [random_item(rng, i) for i in range(1, 121)] + [rare, random_item(rng, 500, side="opportunity")]


@pytest.fixture(scope="module")
def engine(items) -> MatchEngine:
    built = MatchEngine(build_encoder("offline:32"), config=MatchConfig(w_county=0.3), hnsw_threshold=40)
    built.build(items)
    return built


def check_structured(engine: MatchEngine, side_name: str = "product", seed: int = 5) -> None:
    side = engine._side(side_name)
    ids = sorted(side.items)
    rng = random.Random(seed)
    cfg = engine.config
    for query in [None, *(random_query(rng) for _ in range(40))]:
        got = side.structured_scores(cfg, query, ids)
        want = [_structured(cfg, query, side.item(i))[0] for i in ids]
        assert got.tolist() == want  # bit for bit


def test_structured_arrays_equal_the_per_item_formula(engine):
    check_structured(engine)


def test_structured_arrays_follow_upserts_and_removals(items):
    engine = MatchEngine(build_encoder("offline:32"), hnsw_threshold=40)
    engine.build(items)
    rng = random.Random(3)
    for item_id in (1, 2, 3):
        engine.remove("product", item_id)
    for item_id in (4, 5, 700, 701):  # replaced and new, with wider tag lists than before
        changed = random_item(rng, item_id)
        engine.upsert(Item(**{**changed.to_dict(), "tags": tuple(TAGS) + ("新标签",)}))
    check_structured(engine)


def test_opened_version_and_its_delta_rank_as_the_built_engine(engine, items, tmp_path):
    engine.save(tmp_path / "v", corpus_version="v")
    opened = MatchEngine.load(tmp_path / "v", config=engine.config)
    check_structured(opened)
    rng = random.Random(8)
    fresh = [random_item(rng, 800 + n) for n in range(5)] + [random_item(rng, 7)]
    for item in fresh:
        opened.upsert(item)
    opened.remove("product", 9)
    check_structured(opened)
    side = opened._side("product")
    for item_id in [*sorted(side.items)[:30], 800, 7]:
        assert side.item_words(item_id) == frozenset(words(_own_text(side.item(item_id))))
    with pytest.raises(KeyError):
        side.item_words(9)


def test_stored_words_and_rankings_match_after_a_round_trip(engine, items, tmp_path):
    engine.save(tmp_path / "v", corpus_version="v")
    opened = MatchEngine.load(tmp_path / "v", config=engine.config)
    for item in items[:25]:
        assert engine._side("product").item_words(item.id) == frozenset(words(_own_text(item)))
    rng = random.Random(2)
    for _ in range(15):
        query = random_query(rng)
        built_hits = [h.to_dict() for h in engine.products_for(query, k=10)]
        assert built_hits == [h.to_dict() for h in opened.products_for(query, k=10)]
    lamp = Item(id=10_500, side="opportunity", title="路灯节能", text="需要智慧灯杆和路灯节能改造。")
    built_hits = [h.to_dict() for h in engine.products_for(lamp, k=5)]
    assert built_hits == [h.to_dict() for h in opened.products_for(lamp, k=5)]
    assert built_hits[0]["id"] == 600 and "智慧灯杆" in built_hits[0]["matched_terms"]


def test_a_version_of_the_previous_format_is_refused_not_misread(engine, tmp_path):
    engine.save(tmp_path / "v", corpus_version="v")
    manifest_path = tmp_path / "v" / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["format"] = 2  # written before the fact arrays and stored words existed
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(IndexMismatch):
        MatchEngine.load(tmp_path / "v")


def test_missing_fact_files_are_an_index_mismatch(engine, tmp_path):
    engine.save(tmp_path / "v", corpus_version="v")
    (tmp_path / "v" / "product" / "facts_tags.npy").unlink()
    with pytest.raises(IndexMismatch):
        MatchEngine.load(tmp_path / "v")


def test_bm25_scores_are_the_column_by_column_float32_sums():
    rng = random.Random(4)
    vocab = [f"t{n}" for n in range(40)]
    docs = {i: [rng.choice(vocab) for _ in range(rng.randint(0, 30))] for i in range(300)}
    index = LexicalIndex()
    index.build(list(docs), list(docs.values()))
    indptr, indices, data = index._matrix()
    for _ in range(30):
        query = {t: rng.choice([1.0, 0.5, 0.3]) for t in rng.sample(vocab, rng.randint(1, 12))}
        expected = np.zeros(len(docs), dtype=np.float32)
        for col, weight in index._query_columns(query):
            rows = indices[indptr[col] : indptr[col + 1]]
            values = data[indptr[col] : indptr[col + 1]]
            expected[rows] += values if weight == 1.0 else np.float32(weight) * values
        got = index.score(query)
        assert got.scores.view(np.int32).tolist() == expected.view(np.int32).tolist()
        assert sorted(got.touched.tolist()) == np.flatnonzero(expected > 0).tolist()

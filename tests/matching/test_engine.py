"""MatchEngine: fusion, explanations, hard filters, duplicates, updates and persistence."""

from __future__ import annotations

import json

import numpy as np
import pytest

from matching import (
    Filters,
    Hit,
    IndexMismatch,
    Item,
    MatchConfig,
    MatchEngine,
    build_encoder,
    document_text,
)
from tests.matching.conftest import OPPORTUNITIES, PRODUCTS


def test_document_text_is_title_categories_tags_text():
    item = PRODUCTS[0]
    assert document_text(item) == "智慧停车诱导系统\n交通出行\n物联网、人工智能\n" + item.text


def test_item_coerces_sequences_and_validates_side():
    item = Item(1, "product", "t", "x", categories=["交通出行"], tags="物联网")
    assert item.categories == ("交通出行",) and item.tags == ("物联网",)
    with pytest.raises(ValueError):
        Item(1, "company", "t", "x")


@pytest.mark.parametrize(
    ("opportunity", "best"),
    [(101, {1, 13}), (102, {3}), (103, {5}), (104, {8})],
)
def test_products_for_finds_the_right_product(engine, opportunity, best):
    hits = engine.products_for(opportunity, k=3)
    assert hits[0].id in best


def test_hit_breakdown_and_fusion_formula(engine):
    cfg = engine.config
    for hit in engine.products_for(101, k=5):
        b = hit.breakdown
        assert {
            "dense",
            "lexical",
            "structured",
            "structured_field",
            "structured_city",
            "structured_county",
            "structured_tags",
            "structured_maturity",
        } <= set(b)
        fused = cfg.w_dense * hit.dense + cfg.w_lexical * hit.lexical + cfg.w_structured * hit.structured
        assert hit.score == pytest.approx(fused, abs=1e-5)
        assert 0 <= hit.dense <= 1 and 0 <= hit.lexical <= 1 and 0 <= hit.structured <= 1
    scores = [h.score for h in engine.products_for(101, k=10)]
    assert scores == sorted(scores, reverse=True)


def test_explanation_names_field_keywords_and_city(engine):
    hit = next(h for h in engine.products_for(101, k=5) if h.id == 1)
    assert hit.reason.startswith("推荐理由：")
    assert "同属交通出行领域" in hit.reasons
    assert "同在南昌市东湖区" in hit.reasons
    keywords = next(r for r in hit.reasons if r.startswith("共同关键词："))
    assert "车位" in keywords or "泊位" in keywords or "停车诱导" in keywords
    assert "技术标签：物联网" in hit.reasons and "成熟度：规模化推广" in hit.reasons
    assert hit.reason == "推荐理由：" + "；".join(hit.reasons)
    data = hit.to_dict()
    assert json.loads(json.dumps(data, ensure_ascii=False))["reason"] == hit.reason


def test_semantic_reason_when_dense_is_high():
    hit = Hit(1, "product", 0.9, 0.9, 0.5, 0.1, reasons=["语义相似度高"])
    assert hit.reason == "推荐理由：语义相似度高"
    assert Hit(1, "product", 0.1, 0.1, 0.0, 0.0).reason.startswith("推荐理由：")


def test_opportunities_for_product(engine):
    hits = engine.opportunities_for(5, k=2)
    assert hits[0].id == 103 and hits[0].side == "opportunity"


def test_free_text_search(engine):
    hits = engine.search("老人摔倒 一键呼叫", "product", k=3)
    assert hits[0].id == 3
    assert any("跌倒" in r or "一键呼叫" in r for r in hits[0].reasons)
    assert engine.search("   ", "product") == []


def test_draft_item_not_in_index(engine):
    draft = Item(
        999,
        "opportunity",
        "景区游客太多",
        "旺季景区客流拥堵，需要客流监测和预约导览。",
        categories=("文化旅游",),
        areas=("数字生活",),
    )
    assert engine.products_for(draft, k=1)[0].id == 11
    assert engine.get("opportunity", 999) is None


@pytest.mark.parametrize(
    ("filters", "check"),
    [
        (Filters(region_city="九江市"), lambda i: i.region_city == "九江市"),
        (Filters(region_county="东湖区"), lambda i: i.region_county == "东湖区"),
        (Filters(maturity="scale"), lambda i: i.maturity == "scale"),
        (Filters(maturity=("pilot", "rnd")), lambda i: i.maturity in ("pilot", "rnd")),
        (Filters(tags=("区块链", "VR/AR")), lambda i: {"区块链", "VR/AR"} & set(i.tags)),
        (Filters(categories=("生产制造",)), lambda i: "生产制造" in i.categories),
        (Filters(areas=("数字治理",)), lambda i: "数字治理" in i.areas),
        (Filters(allowed_ids=frozenset({7, 12})), lambda i: i.id in {7, 12}),
        (Filters(region_city="南昌市", maturity="pilot"), lambda i: i.id == 13),
    ],
)
def test_filters_are_hard_constraints(engine, filters, check):
    expected = {p.id for p in PRODUCTS if check(p)}
    hits = engine.products_for(101, k=50, filters=filters)
    assert {h.id for h in hits} == expected  # nothing outside, nothing missing


def test_filter_matching_nothing_returns_empty(engine):
    assert engine.products_for(101, filters=Filters(region_city="北京市")) == []


def test_near_duplicates(engine):
    dups = engine.similar("product", 1, k=3)
    assert [h.id for h in dups] == [13]
    assert dups[0].score >= engine.config.duplicate_threshold
    assert dups[0].reasons[0].startswith("内容高度相似")
    assert engine.similar("product", 7, k=3) == []
    assert 1 not in {h.id for h in engine.similar("product", 1, k=20, min_score=-1)}


def test_incremental_upsert_and_remove(engine):
    new = Item(
        50,
        "product",
        "河湖巡查无人机",
        "无人机自动巡查河道和水库库区，识别漂浮物和违建。",
        categories=("智慧水利",),
        areas=("数字治理",),
        region_city="九江市",
        maturity="pilot",
    )
    engine.upsert(new)
    assert engine.get("product", 50) == new
    assert 50 in {h.id for h in engine.search("河道巡检", "product", k=3)}
    assert 50 in {h.id for h in engine.products_for(103, k=5, filters=Filters(maturity="pilot"))}
    changed = Item(
        50, "product", "农产品溯源", "脐橙种植采摘物流溯源。", categories=("现代农业",), maturity="scale"
    )
    engine.upsert(changed)
    assert 50 not in {h.id for h in engine.products_for(103, k=50, filters=Filters(maturity="pilot"))}
    assert 50 not in {h.id for h in engine.search("河道巡检", "product", k=3)}
    assert engine.remove("product", 50) and not engine.remove("product", 50)
    assert engine.get("product", 50) is None
    assert 50 not in {h.id for h in engine.search("脐橙溯源", "product", k=20)}


def test_build_uses_given_vectors(fitted_encoder):
    eng = MatchEngine(fitted_encoder)
    marker = np.zeros(fitted_encoder.dim, dtype=np.float32)
    marker[0] = 1.0
    eng.build(PRODUCTS + OPPORTUNITIES, vectors={("product", 1): marker})
    np.testing.assert_array_equal(eng.vector("product", 1), marker)
    with pytest.raises(ValueError):
        MatchEngine(fitted_encoder).build(PRODUCTS, vectors={("product", 1): np.ones(3)})


def test_build_fits_an_unfitted_encoder():
    eng = MatchEngine(build_encoder(None))
    assert eng.products_for(101) == [] and eng.count("product") == 0
    eng.build(PRODUCTS + OPPORTUNITIES)
    assert eng.encoder.is_fitted and eng.count("product") == len(PRODUCTS)
    empty = MatchEngine(build_encoder(None))
    empty.upsert(PRODUCTS[0])
    assert empty.search("停车", "product")[0].id == 1


def test_encode_items(engine):
    vecs = engine.encode_items(PRODUCTS[:2])
    np.testing.assert_allclose(vecs[0], engine.vector("product", 1), atol=1e-6)


def test_save_load_round_trip(engine, tmp_path):
    engine.save(tmp_path, corpus_version="v1")
    loaded = MatchEngine.load(tmp_path, build_encoder(None), expected_corpus_version="v1")
    assert loaded.encoder.fingerprint == engine.encoder.fingerprint
    assert [h.to_dict() for h in loaded.products_for(101, k=5)] == [
        h.to_dict() for h in engine.products_for(101, k=5)
    ]
    assert MatchEngine.load(tmp_path).count("opportunity") == len(OPPORTUNITIES)


def test_load_rejects_other_corpus_version(engine, tmp_path):
    engine.save(tmp_path, corpus_version="v1")
    with pytest.raises(IndexMismatch):
        MatchEngine.load(tmp_path, engine.encoder, expected_corpus_version="v2")


def test_load_rejects_other_fingerprint(engine, tmp_path):
    engine.save(tmp_path, corpus_version="v1")
    other = build_encoder(None).fit([document_text(i) for i in PRODUCTS[:6]])
    with pytest.raises(IndexMismatch):
        MatchEngine.load(tmp_path, other, expected_corpus_version="v1")
    with pytest.raises(IndexMismatch):
        MatchEngine.load(tmp_path, build_encoder("offline:16"), expected_corpus_version="v1")


def test_load_of_missing_index_raises_mismatch(tmp_path):
    with pytest.raises(IndexMismatch):
        MatchEngine.load(tmp_path / "nothing", build_encoder(None))


def test_config_from_mapping_ignores_unknown_and_rejects_bad():
    cfg = MatchConfig.from_mapping({"w_dense": "0.5", "candidate_pool": 50.0, "unknown": 1})
    assert cfg.w_dense == 0.5 and cfg.candidate_pool == 50
    assert MatchConfig.from_mapping(None) == MatchConfig()
    for bad in (
        {"w_dense": -1},
        {"w_lexical": "abc"},
        {"candidate_pool": 2.5},
        {"w_dense": float("nan")},
        {"duplicate_threshold": 1.5},
        {"w_dense": 0, "w_lexical": 0, "w_structured": 0},
        {"w_tags": True},
    ):
        with pytest.raises(ValueError):
            MatchConfig.from_mapping(bad)


def test_config_weights_change_the_ranking(fitted_encoder):
    structured_only = MatchEngine(
        fitted_encoder,
        MatchConfig(w_dense=0, w_lexical=0, w_structured=1, w_field=0, w_city=0, w_county=0, w_tags=0),
    )
    structured_only.build(PRODUCTS + OPPORTUNITIES)
    hits = structured_only.products_for(104, k=len(PRODUCTS))
    scale_ids = {p.id for p in PRODUCTS if p.maturity == "scale"}
    assert {h.id for h in hits[: len(scale_ids)]} == scale_ids


def test_an_item_never_matches_itself(engine):
    same_side_query = engine.get("opportunity", 101)
    assert 101 not in {h.id for h in engine.opportunities_for(same_side_query, k=10)}


def test_encoder_defaults_follow_the_encoder():
    from matching.engine import ENCODER_DEFAULTS

    e5 = MatchConfig.for_encoder("e5-small")
    assert (e5.w_dense, e5.w_lexical, e5.w_structured) == (0.90, 0.10, 0.0)
    assert e5.duplicate_threshold == ENCODER_DEFAULTS["e5-small"]["duplicate_threshold"]
    assert MatchConfig.for_encoder("offline-tfidf-svd-64") == MatchConfig()
    assert MatchConfig.for_encoder("e5-small", {"w_lexical": 0.3}).w_lexical == 0.3

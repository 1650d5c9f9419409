"""Explanations people can trust: whole words only, no filler, written case, thesaurus pairs,
thesaurus expansion weighted below exact terms, and the 「语义最接近」 sentence pair."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pytest

from matching import Item, MatchEngine
from matching.encoders import Encoder

#: concept → keywords; a text's vector counts the keywords of each concept it contains
CONCEPTS = {
    "parking": ("停车", "车位", "泊位"),
    "fall": ("跌倒", "摔倒", "倒地"),
    "water": ("水位", "水库", "河道"),
    "dust": ("扬尘", "颗粒物", "粉尘"),
    "vehicle": ("车辆", "驾驶", "动车", "电动车"),
}


class ConceptEncoder(Encoder):
    """A tiny deterministic encoder for tests: one dimension per concept (a text without any
    concept is the zero vector), and it records which kinds it was asked to encode."""

    def __init__(self) -> None:
        self.kinds: list[tuple[str, int]] = []

    name = "test-concepts"
    dim = len(CONCEPTS)
    is_fitted = True
    fingerprint = "concepts-v1"

    def fit(self, texts: Sequence[str]) -> Encoder:
        return self

    def encode(self, texts: Sequence[str], kind: str = "document") -> np.ndarray:
        self.kinds.append((kind, len(texts)))
        rows = []
        for text in texts:
            rows.append([sum(text.count(k) for k in keys) for keys in CONCEPTS.values()])
        mat = np.asarray(rows, dtype=np.float32)
        norms = np.linalg.norm(mat, axis=1, keepdims=True)
        return mat / np.where(norms > 0, norms, 1.0)

    def save(self, directory: str | os.PathLike[str]) -> None:  # pragma: no cover - unused
        raise NotImplementedError


def need(i: int, title: str, text: str) -> Item:
    return Item(i, "opportunity", title, text, categories=("交通出行",))


def product(i: int, title: str, text: str) -> Item:
    return Item(i, "product", title, text, categories=("交通出行",))


def build(items: list[Item]) -> MatchEngine:
    engine = MatchEngine(ConceptEncoder())
    engine.build(items)
    return engine


def hit_for(engine: MatchEngine, need_id: int, product_id: int):
    return next(h for h in engine.products_for(need_id, k=20) if h.id == product_id)


@pytest.mark.parametrize(
    ("need_text", "product_text", "never"),
    [
        (
            "住宅小区电梯防电动车入梯识别，电动车上楼充电隐患大。",
            "高铁动车组车底智能检修机器人，动车入库后自动巡检。",
            "动车",
        ),
        (
            "公交驾驶员疲劳驾驶与异常行为监测，防止疲劳驾驶。",
            "出租车文明用语培训：乘客一声劳驾，司机一声谢谢。",
            "劳驾",
        ),
    ],
)
def test_a_term_inside_a_longer_word_is_never_a_reason(need_text, product_text, never):
    engine = build([need(101, "需求", need_text), product(1, "产品", product_text)])
    hit = hit_for(engine, 101, 1)
    assert never not in hit.matched_terms
    assert never not in hit.reason


def test_filler_words_are_never_reasons():
    engine = build([
        need(101, "企业能耗监测", "帮助企业实现软硬件一体的能耗监测，单位产值能耗下降。"),
        product(1, "企业能耗一体机", "企业能耗监测一体机，部署后能耗明显下降。"),
    ])
    hit = hit_for(engine, 101, 1)
    assert any("能耗" in term for term in hit.matched_terms)
    for filler in ("企业", "一体", "下降"):
        assert filler not in hit.matched_terms


def test_acronyms_keep_their_written_case():
    engine = build([
        need(101, "营运车辆主动安全", "为两客一危车辆加装ADAS和DMS终端。"),
        product(1, "ADAS主动安全终端", "前向碰撞预警的ADAS终端，兼容DMS驾驶员监测。"),
    ])
    hit = hit_for(engine, 101, 1)
    assert "ADAS" in hit.matched_terms and "adas" not in hit.matched_terms
    assert "ADAS" in hit.reason


def test_thesaurus_hits_are_shown_as_pairs():
    engine = build([
        need(101, "工地扬尘治理", "建筑工地扬尘在线监测和渣土运输监管。"),
        product(1, "颗粒物在线监测仪", "工地颗粒物浓度在线监测，联动喷淋；工程运输车辆未苫盖识别。"),
    ])
    hit = hit_for(engine, 101, 1)
    assert ("扬尘", "颗粒物") in hit.related_terms
    reason = next(r for r in hit.reasons if r.startswith("近义词："))
    assert "扬尘 ≈ 颗粒物" in reason and "渣土运输 ≈ 工程运输车辆" in reason
    assert hit.to_dict()["related_terms"][0] == list(hit.related_terms[0])


def test_a_thesaurus_match_scores_below_an_exact_match():
    engine = build([
        product(1, "扬尘监测仪", "工地扬尘在线监测。"),
        product(2, "颗粒物监测仪", "工地颗粒物在线监测。"),
        product(3, "停车诱导屏", "路内泊位诱导。"),
    ])
    hits = {h.id: h for h in engine.search("扬尘", "product", k=3)}
    assert hits[1].lexical > hits[2].lexical > 0
    assert 3 not in hits or hits[3].lexical == 0


def test_a_semantic_match_shows_the_closest_sentence_pair():
    engine = build([
        need(101, "老旧小区改造", "老旧小区道路狭窄。独居老人在家跌倒无人知晓。希望尽快改善。"),
        product(1, "居家安全监测终端", "外壳采用阻燃材料。雷达感知人员倒地后自动报警。支持壁挂安装。"),
        product(2, "停车诱导屏", "路内泊位诱导，停车更方便。"),
    ])
    encoder = engine.encoder
    encoder.kinds.clear()
    hit = hit_for(engine, 101, 1)
    assert not hit.matched_terms  # no word in common (BM25 only sees the shared category line)
    assert hit.evidence is not None
    assert hit.evidence.query_sentence == "独居老人在家跌倒无人知晓。"
    assert hit.evidence.item_sentence == "雷达感知人员倒地后自动报警。"
    assert 0 < hit.evidence.cosine <= 1
    assert ("query", 4) in encoder.kinds  # the need's title and sentences, with the query prompt
    data = hit.to_dict()["evidence"]
    assert data == {"query_sentence": "独居老人在家跌倒无人知晓。",
                    "item_sentence": "雷达感知人员倒地后自动报警。", "cosine": hit.evidence.cosine}


def test_evidence_is_left_out_of_lexical_matches_and_cached():
    engine = build([
        need(101, "智慧停车诱导", "老城区停车难，需要停车诱导和泊位共享。"),
        product(1, "停车诱导系统", "停车诱导屏和泊位共享平台，缓解停车难。"),
    ])
    hit = hit_for(engine, 101, 1)
    assert hit.lexical == 1.0 and hit.evidence is None


def test_sentence_vectors_are_cached():
    engine = build([
        need(101, "老旧小区改造", "独居老人在家跌倒无人知晓。"),
        product(1, "居家安全监测终端", "雷达感知人员倒地后自动报警。"),
    ])
    engine.products_for(101, k=5)
    calls = len(engine.encoder.kinds)
    engine.products_for(101, k=5)
    assert len(engine.encoder.kinds) == calls

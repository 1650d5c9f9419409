"""BM25 index: scores, filters, incremental updates and matched terms."""

from __future__ import annotations

import pytest

from matching import LexicalIndex, query_tokens, tokenize

DOCS = {
    1: "智慧停车诱导系统，实时发布空余泊位",
    2: "居家养老跌倒监测终端",
    3: "水库大坝安全监测预警",
    4: "停车场收费管理系统",
}


@pytest.fixture
def index() -> LexicalIndex:
    idx = LexicalIndex()
    idx.build(list(DOCS), [tokenize(t) for t in DOCS.values()])
    return idx


def test_scores_only_positive_documents(index):
    scores = index.scores(query_tokens("找车位 停车诱导"))
    assert set(scores) == {1, 4}
    assert scores[1] > scores[4] > 0


def test_search_orders_and_limits(index):
    hits = index.search(query_tokens("停车"), 1)
    assert [h[0] for h in hits] == [1] or [h[0] for h in hits] == [4]
    assert len(index.search(query_tokens("停车"), 10)) == 2
    assert index.search(["完全", "无关"], 5) == []


def test_allowed_ids_are_a_hard_constraint(index):
    hits = index.search(query_tokens("停车诱导"), 10, allowed_ids={4, 2})
    assert [h[0] for h in hits] == [4]


def test_upsert_and_remove_rebuild_lazily(index):
    index.upsert(5, tokenize("无人机巡检河道"))
    assert index.search(query_tokens("河道巡查"), 5)[0][0] == 5
    index.upsert(5, tokenize("智慧农业病虫害识别"))
    assert index.search(query_tokens("河道巡查"), 5) == []
    assert index.remove(1) and not index.remove(1)
    assert 1 not in index.scores(tokenize("停车诱导")) and len(index) == 4


def test_matched_terms_rarest_first(index):
    terms = index.matched_terms(query_tokens("停车诱导系统 泊位"), 1)
    assert {"停车诱导", "泊位", "系统"} <= set(terms)
    assert terms.index("系统") > terms.index("停车诱导")  # 系统 is in two documents
    assert index.matched_terms(["停车"], 99) == []


def test_empty_index_and_empty_documents():
    idx = LexicalIndex()
    assert idx.search(["停车"], 5) == [] and idx.scores(["停车"]) == {}
    idx.build([1, 2], [[], tokenize("停车")])
    assert [h[0] for h in idx.search(["停车"], 5)] == [2]


def test_export_round_trips_term_frequencies(index):
    exported = index.export()
    assert exported[1] == tokenize(DOCS[1])

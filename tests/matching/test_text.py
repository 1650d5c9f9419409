"""Tokeniser: normalisation, jieba with the domain dictionary, bigrams, English, whole words,
thesaurus expansion and sentences."""

from __future__ import annotations

import threading
import time

import pytest

from matching import normalize, query_tokens, tokenize
from matching.text import SYNONYM_WEIGHT, expand_query, query_terms, split_sentences, thesaurus, words


def test_normalize_folds_full_width_case_and_spaces():
    assert normalize("ＮＢ－ＩｏＴ\u3000 智慧　停车  ＡＢＣ１２３") == "nb-iot 智慧 停车 abc123"


@pytest.mark.parametrize(
    "word",
    [
        "智慧停车",
        "数字孪生",
        "工业互联网",
        "城市大脑",
        "适老化",
        "一网通办",
        "城市生命线",
        "低空经济",
        "车路协同",
        "泊位",
    ],
)
def test_domain_words_are_kept_whole(word):
    assert word in tokenize(f"推进{word}建设")


def test_bigrams_make_substrings_match():
    tokens = tokenize("智慧停车诱导系统")
    assert "停车" in tokens and "诱导" in tokens
    assert set(tokenize("停车")) & set(tokens)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("基于NB-IoT的井盖监测", {"nb-iot"}),
        ("５Ｇ基站", {"5g"}),
        ("AGV小车与BIM模型", {"agv", "bim"}),
        ("OCR识别", {"ocr"}),
        ("VR/AR实训", {"vr", "ar"}),
    ],
)
def test_english_words_and_acronyms_are_kept_lower_cased(text, expected):
    assert expected <= set(tokenize(text))


def test_mixed_text_keeps_both_scripts():
    tokens = tokenize("5G+工业互联网平台支持AGV调度")
    assert {"5g", "工业互联网", "agv", "调度"} <= set(tokens)


def test_stopwords_and_punctuation_are_dropped():
    tokens = tokenize("我们的平台，通过数据的共享，实现了协同。")
    for stop in ("我们", "的", "通过", "实现", "，", "。", "了"):
        assert stop not in tokens
    assert "平台" in tokens and "共享" in tokens
    assert not any("的" in t for t in tokens)  # no bigram straddles a stopword character


def test_meaningful_generic_words_are_kept():
    assert {"系统", "平台", "管理"} <= set(tokenize("系统平台管理"))


def test_plain_numbers_are_dropped_but_hotline_codes_kept():
    tokens = tokenize("2026年建成12345热线")
    assert "2026" not in tokens and "12345" in tokens


def test_empty_text():
    assert tokenize("") == [] and tokenize("  ，。 ") == [] and query_tokens("") == []


@pytest.mark.parametrize(
    ("query", "synonym"),
    [
        ("找车位难", "停车诱导"),
        ("车位紧张", "泊位"),
        ("养老服务", "老年人"),
        ("河道巡检", "巡查"),
        ("老人摔倒", "跌倒"),
        ("水库安全", "库区"),
    ],
)
def test_query_tokens_add_synonyms(query, synonym):
    assert synonym in query_tokens(query)
    assert synonym not in tokenize(query)


@pytest.mark.parametrize(
    ("text", "bad"),
    [("住宅小区电动车入梯", "动车"), ("公交驾驶员疲劳驾驶监测", "劳驾"), ("智慧停车诱导系统", "慧停")],
)
def test_words_never_cut_across_word_boundaries(text, bad):
    assert bad not in words(text)
    assert bad in tokenize(text)  # the bigram is still there for BM25 recall


def test_compound_words_also_yield_their_own_parts():
    assert {"停车诱导", "停车", "诱导"} <= set(words("智慧停车诱导系统"))
    assert {"城市生命线", "城市", "生命线"} <= set(words("城市生命线"))
    assert words("电动车") == ["电动车", "电动"]


def test_consecutive_single_characters_form_an_unknown_word():
    assert "泊安" in words("江西泊安科技有限公司")
    assert query_terms("泊安科技") == ["泊安", "科技"]


def test_thesaurus_terms_segment_as_whole_words():
    th = thesaurus()
    for term in ("扬尘", "颗粒物", "渣土运输", "工程运输车辆", "材料免提交", "电子证照", "疲劳驾驶"):
        assert term in th
        assert term in words(f"加强{term}管理")


def test_expansion_weighs_synonyms_below_exact_terms():
    weights = expand_query("工地扬尘")
    assert weights["扬尘"] == 1.0 and weights["工地"] == 1.0
    assert 0 < weights["颗粒物"] == SYNONYM_WEIGHT < 1.0
    assert expand_query("工地扬尘", synonym_weight=0) == dict.fromkeys(tokenize("工地扬尘"), 1.0)


def test_expansion_fires_on_whole_words_only():
    # 「动车」 inside 「电动车」 is not a word, so nothing about trains is added
    assert "高铁" not in expand_query("电动车") and "电瓶车" in expand_query("电动车")


def test_split_sentences():
    text = "现状与痛点：老人独居。需求：1.跌倒自动报警；2.一键呼叫！\n合作方式：采购"
    assert split_sentences(text) == [
        "现状与痛点：老人独居。", "需求：1.跌倒自动报警；", "一键呼叫！", "合作方式：采购"
    ]
    long = "监测" * 100
    assert all(len(s) <= 120 for s in split_sentences(long))


def test_query_tokens_are_unique():
    tokens = query_tokens("停车停车停车")
    assert len(tokens) == len(set(tokens))


def test_tokenize_is_thread_safe():
    texts = [f"第{i}号智慧停车诱导系统与水库大坝安全监测" for i in range(200)]
    expected = [tokenize(t) for t in texts]
    results: dict[int, list[list[str]]] = {}

    def work(n: int) -> None:
        results[n] = [tokenize(t) for t in texts]

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r == expected for r in results.values())


def test_tokenizing_is_fast():
    base = "本项目面向城市管理部门建设智慧停车诱导系统利用物联网地磁传感器与视频识别技术实时采集泊位状态"
    texts = [base[i % 40 :] + base[: i % 40] + f"第{i}期" for i in range(2000)]
    start = time.perf_counter()
    for text in texts:
        tokenize(text)
    assert time.perf_counter() - start < 2.0


def test_is_word_separates_dictionary_words_from_boundary_bigrams():
    from matching.text import is_word

    assert is_word("停车")
    assert is_word("智慧停车")
    assert is_word("nb-iot")
    assert not is_word("作方")

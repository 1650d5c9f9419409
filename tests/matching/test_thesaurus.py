"""The domain thesaurus in seeds/thesaurus.tsv: shape, categories, loading and switching."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from matching import IndexMismatch, MatchEngine
from matching.text import Thesaurus, expand_query, thesaurus, use_thesaurus, words

SEEDS = Path(__file__).resolve().parents[2] / "seeds"


def taxonomy_categories() -> set[str]:
    data = json.loads((SEEDS / "taxonomy.json").read_text(encoding="utf-8"))
    return {c["name"] for area in data["areas"] for c in area["categories"]}


def test_the_packaged_thesaurus_is_the_seed_file():
    assert len(thesaurus()) == len(Thesaurus.load(SEEDS / "thesaurus.tsv"))


def test_at_least_300_groups_of_two_or_more_terms():
    th = thesaurus()
    assert len(th) >= 300
    assert all(len(g.terms) >= 2 and len(set(g.terms)) == len(g.terms) for g in th.groups)


def test_every_category_is_from_the_taxonomy_and_every_category_is_covered():
    categories = taxonomy_categories()
    assert len(categories) == 18
    counts = Counter(g.category for g in thesaurus().groups)
    assert set(counts) == categories
    assert min(counts.values()) >= 10


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("扬尘", "颗粒物"),
        ("渣土运输", "工程运输车辆"),
        ("材料免提交", "电子证照"),
        ("跌倒", "摔倒"),
        ("泊位", "车位"),
    ],
)
def test_issue_examples_are_in_one_group(a, b):
    assert b in thesaurus().related(a) and a in thesaurus().related(b)


def test_a_malformed_group_is_an_error():
    with pytest.raises(ValueError):
        Thesaurus.parse("交通出行\t车位\n")
    with pytest.raises(ValueError):
        Thesaurus.parse("交通出行\t车位\t车位\n")


def test_use_thesaurus_switches_expansion_and_segmentation(tmp_path):
    custom = tmp_path / "custom.tsv"
    custom.write_text("# test\n交通出行\t青蛙跳\t蛤蟆跳\n", encoding="utf-8")
    try:
        use_thesaurus(custom)
        assert len(thesaurus()) == 1
        assert "青蛙跳" in words("看青蛙跳")
        assert expand_query("青蛙跳")["蛤蟆跳"] < 1
        assert "颗粒物" not in expand_query("扬尘")
    finally:
        use_thesaurus(SEEDS / "thesaurus.tsv")
    assert "颗粒物" in expand_query("扬尘")


def test_a_saved_index_is_refused_after_the_thesaurus_changed(engine, tmp_path):
    engine.save(tmp_path / "index", corpus_version="v1")
    custom = tmp_path / "custom.tsv"
    custom.write_text("交通出行\t青蛙跳\t蛤蟆跳\n", encoding="utf-8")
    try:
        use_thesaurus(custom)
        with pytest.raises(IndexMismatch):
            MatchEngine.load(tmp_path / "index")
    finally:
        use_thesaurus(SEEDS / "thesaurus.tsv")
    assert MatchEngine.load(tmp_path / "index").count("product") == engine.count("product")

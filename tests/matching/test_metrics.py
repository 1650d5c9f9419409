"""Metrics on hand-computed examples."""

from __future__ import annotations

import math

import pytest

from matching.metrics import dcg, mean, ndcg_at_k, recall_at_k, reciprocal_rank

JUDGED = {"a": 3, "b": 2, "c": 1, "d": 0}


def test_dcg_uses_exponential_gain_and_log2_discount():
    assert dcg([3, 2]) == pytest.approx(7 / 1 + 3 / math.log2(3))


def test_ndcg_perfect_ranking_is_one():
    assert ndcg_at_k(["a", "b", "c", "d"], JUDGED, 10) == pytest.approx(1.0)


def test_ndcg_hand_computed():
    # ranking: x (unjudged), b (2), a (3)
    got = ndcg_at_k(["x", "b", "a"], JUDGED, 3)
    ideal = 7 + 3 / math.log2(3) + 1 / 2
    assert got == pytest.approx((3 / math.log2(3) + 7 / 2) / ideal)


def test_ndcg_ideal_uses_all_judged_grades():
    # only "c" retrieved at rank 1; ideal still includes a and b
    assert ndcg_at_k(["c"], JUDGED, 10) == pytest.approx(1 / (7 + 3 / math.log2(3) + 1 / 2))


def test_ndcg_undefined_without_positive_grades():
    assert ndcg_at_k(["a"], {"a": 0}, 10) is None


def test_recall_counts_grade_two_and_up():
    assert recall_at_k(["a", "x"], JUDGED, 2) == pytest.approx(0.5)
    assert recall_at_k(["a", "b"], JUDGED, 1) == pytest.approx(0.5)
    assert recall_at_k(["c"], JUDGED, 10, min_grade=1) == pytest.approx(1 / 3)
    assert recall_at_k(["c"], {"c": 1}, 10) is None


def test_reciprocal_rank():
    assert reciprocal_rank(["x", "c", "b"], JUDGED) == pytest.approx(1 / 3)
    assert reciprocal_rank(["x"], JUDGED) == 0.0
    assert reciprocal_rank(["x"], {"c": 1}) is None


def test_mean_skips_undefined():
    assert mean([1.0, None, 0.0]) == pytest.approx(0.5)
    assert mean([None]) == 0.0

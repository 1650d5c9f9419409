"""Metrics on hand-computed examples."""

from __future__ import annotations

import math

import pytest

from matching.metrics import (
    bootstrap_ci,
    dcg,
    mean,
    ndcg_at_k,
    paired_bootstrap_ci,
    recall_at_k,
    reciprocal_rank,
)

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


# ------------------------------------------------------------------ edge cases


def test_edge_cases_empty_rankings_and_judgements():
    assert ndcg_at_k([], JUDGED, 10) == 0.0
    assert ndcg_at_k(["a"], {}, 10) is None
    assert recall_at_k([], JUDGED, 10) == 0.0
    assert recall_at_k(["a"], {}, 10) is None
    assert reciprocal_rank([], JUDGED) == 0.0
    assert reciprocal_rank(["a"], {}) is None
    assert mean([]) == 0.0


def test_ndcg_cut_at_k_and_k_larger_than_ranking():
    # the relevant document at rank 3 does not count for k=2
    assert ndcg_at_k(["x", "y", "a"], JUDGED, 2) == 0.0
    assert ndcg_at_k(["a"], {"a": 3}, 100) == pytest.approx(1.0)


def test_grades_below_relevance_threshold_do_not_count_for_recall_or_mrr():
    assert recall_at_k(["c"], JUDGED, 10) == 0.0  # c has grade 1
    assert reciprocal_rank(["c", "d", "b"], JUDGED) == pytest.approx(1 / 3)


# ------------------------------------------------------------------ bootstrap

VALUES = [0.2, 0.9, 0.5, 1.0, 0.0, 0.7, 0.65, 0.3, None, 0.8]


def test_bootstrap_ci_contains_the_point_estimate():
    lo, hi = bootstrap_ci(VALUES, resamples=2000, seed=0)
    assert lo <= mean(VALUES) <= hi
    assert 0.0 <= lo < hi <= 1.0


def test_bootstrap_ci_is_deterministic_with_the_seed():
    assert bootstrap_ci(VALUES, resamples=500, seed=7) == bootstrap_ci(VALUES, resamples=500, seed=7)
    assert bootstrap_ci(VALUES, resamples=500, seed=7) != bootstrap_ci(VALUES, resamples=500, seed=8)


def test_bootstrap_ci_narrows_with_more_needs():
    lo1, hi1 = bootstrap_ci(VALUES[:8], seed=0)
    lo2, hi2 = bootstrap_ci(VALUES[:8] * 10, seed=0)
    assert hi2 - lo2 < hi1 - lo1


def test_bootstrap_ci_degenerate_inputs():
    assert bootstrap_ci([0.5, 0.5, 0.5]) == pytest.approx((0.5, 0.5))
    assert bootstrap_ci([None, None]) == (0.0, 0.0)
    assert bootstrap_ci([]) == (0.0, 0.0)
    with pytest.raises(ValueError):
        bootstrap_ci([0.5], resamples=0)
    with pytest.raises(ValueError):
        bootstrap_ci([0.5], level=1.5)


def test_paired_bootstrap_ci():
    a = [0.9, 0.8, 0.7, 1.0, None, 0.6]
    b = [0.8, 0.8, 0.5, 0.9, 0.4, None]
    got = paired_bootstrap_ci(a, b, resamples=1000, seed=0)
    # needs 4 and 5 are undefined on one side and left out of the difference
    assert got["diff"] == pytest.approx((0.1 + 0.0 + 0.2 + 0.1) / 4)
    lo, hi = got["ci"]
    assert lo <= got["diff"] <= hi
    assert got == paired_bootstrap_ci(a, b, resamples=1000, seed=0)
    assert got["p_le_0"] < 0.05  # never worse on any need
    same = paired_bootstrap_ci(a, a, resamples=100, seed=0)
    assert same["diff"] == 0.0 and same["ci"] == pytest.approx((0.0, 0.0)) and same["p_le_0"] == 1.0
    with pytest.raises(ValueError):
        paired_bootstrap_ci([0.1], [0.1, 0.2])

"""Ranking metrics against graded judgements (TREC-style qrels, grades 0–3).

Conventions (documented in docs/matching.md):

* **nDCG@k** uses gains ``2**grade - 1`` and ``log2(rank + 1)`` discounts. Unjudged documents
  count as grade 0. The ideal DCG is built from *all* judged grades of that need (not only the
  retrieved ones), so missing a relevant document is penalised.
* **Recall@k** and **MRR** count a document as relevant when ``grade >= min_grade``; the
  default ``RELEVANT_GRADE = 2`` means "answers most of the need or all of it". Grade 1
  (merely related) still earns nDCG gain. Needs without any relevant document are left out of
  the Recall/MRR averages (their value is undefined), but still count for nDCG if they have
  any positive grade.

Confidence intervals (:func:`bootstrap_ci`, :func:`paired_bootstrap_ci`) resample *needs* with
replacement (percentile bootstrap, fixed seed, so the same inputs always give the same
interval). A need whose value is undefined (``None``) is carried along in the resample and
skipped in that resample's mean, exactly as :func:`mean` does for the point estimate.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence

import numpy as np

__all__ = [
    "RELEVANT_GRADE",
    "dcg",
    "ndcg_at_k",
    "recall_at_k",
    "reciprocal_rank",
    "mean",
    "bootstrap_ci",
    "paired_bootstrap_ci",
    "DEFAULT_RESAMPLES",
    "DEFAULT_SEED",
]

#: Bootstrap defaults used by :mod:`matching.evaluate`.
DEFAULT_RESAMPLES = 2000
DEFAULT_SEED = 0

RELEVANT_GRADE = 2


def dcg(grades: Sequence[float]) -> float:
    """Discounted cumulative gain of grades in rank order (gain ``2**g - 1``)."""
    return sum((2.0**g - 1.0) / math.log2(rank + 2) for rank, g in enumerate(grades))


def ndcg_at_k(ranked: Sequence[Hashable], judgements: Mapping[Hashable, float], k: int) -> float | None:
    """nDCG@k of one ranking; ``None`` when the need has no positive grade."""
    ideal = dcg(sorted((g for g in judgements.values() if g > 0), reverse=True)[:k])
    if ideal <= 0:
        return None
    return dcg([judgements.get(doc, 0) for doc in ranked[:k]]) / ideal


def recall_at_k(
    ranked: Sequence[Hashable],
    judgements: Mapping[Hashable, float],
    k: int,
    min_grade: float = RELEVANT_GRADE,
) -> float | None:
    """Share of relevant documents found in the top k; ``None`` when none are relevant."""
    relevant = {doc for doc, g in judgements.items() if g >= min_grade}
    if not relevant:
        return None
    return len(relevant & set(ranked[:k])) / len(relevant)


def reciprocal_rank(
    ranked: Sequence[Hashable], judgements: Mapping[Hashable, float], min_grade: float = RELEVANT_GRADE
) -> float | None:
    """1 / rank of the first relevant document (0 if none retrieved; ``None`` if none exist)."""
    if not any(g >= min_grade for g in judgements.values()):
        return None
    for rank, doc in enumerate(ranked, start=1):
        if judgements.get(doc, 0) >= min_grade:
            return 1.0 / rank
    return 0.0


def mean(values: Sequence[float | None]) -> float:
    """Mean of the defined values (0.0 if there are none)."""
    defined = [v for v in values if v is not None]
    return sum(defined) / len(defined) if defined else 0.0


def _as_array(values: Sequence[float | None]) -> np.ndarray:
    return np.asarray([np.nan if v is None else float(v) for v in values], dtype=np.float64)


def _resample_means(values: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """Means of ``resamples`` bootstrap resamples of ``values`` (NaN = undefined, skipped)."""
    rng = np.random.default_rng(seed)
    n = len(values)
    idx = rng.integers(0, n, size=(resamples, n))
    sample = values[idx]
    defined = ~np.isnan(sample)
    counts = defined.sum(axis=1)
    sums = np.where(defined, sample, 0.0).sum(axis=1)
    # a resample with no defined value has no mean; it is dropped
    keep = counts > 0
    return sums[keep] / counts[keep]


def _percentiles(means: np.ndarray, level: float) -> tuple[float, float]:
    if not len(means):
        return (0.0, 0.0)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return (float(lo), float(hi))


def bootstrap_ci(
    values: Sequence[float | None],
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of per-need ``values`` (``None`` = undefined).

    Returns ``(0.0, 0.0)`` when no value is defined. Deterministic for a given ``seed``.
    """
    if resamples < 1:
        raise ValueError("resamples must be at least 1")
    if not 0 < level < 1:
        raise ValueError("level must be between 0 and 1")
    arr = _as_array(values)
    if not len(arr) or np.isnan(arr).all():
        return (0.0, 0.0)
    return _percentiles(_resample_means(arr, resamples, seed), level)


def paired_bootstrap_ci(
    a: Sequence[float | None],
    b: Sequence[float | None],
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    level: float = 0.95,
) -> dict[str, float | tuple[float, float]]:
    """Paired bootstrap of ``mean(a - b)`` over the same needs (``a[i]``, ``b[i]`` = need i).

    Needs where either value is undefined are left out of the difference. Returns
    ``{"diff": point estimate, "ci": (lo, hi), "p_le_0": share of resamples whose mean
    difference is <= 0}`` (a one-sided bootstrap p-value for "a is better than b").
    """
    if len(a) != len(b):
        raise ValueError(f"paired samples differ in length: {len(a)} != {len(b)}")
    diff = _as_array(a) - _as_array(b)  # NaN when either is undefined
    defined = diff[~np.isnan(diff)]
    if not len(defined):
        return {"diff": 0.0, "ci": (0.0, 0.0), "p_le_0": 1.0}
    means = _resample_means(diff, resamples, seed)
    return {
        "diff": float(defined.mean()),
        "ci": _percentiles(means, level),
        "p_le_0": float((means <= 0).mean()) if len(means) else 1.0,
    }

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
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence

__all__ = ["RELEVANT_GRADE", "dcg", "ndcg_at_k", "recall_at_k", "reciprocal_rank", "mean"]

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

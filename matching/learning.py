"""Learning the need-to-candidate ranking from what organizers and firms decide (issue 14 §2).

Pure library: no Flask, no database. The app turns its records (shortlists, responses,
meetings, signings) into :class:`Judgement` rows and graded feature rows; this module trains,
evaluates, explains and serialises a re-ranker of the engine's hits.

**Features** (:data:`FEATURES`, the single source of truth) are computed per (need, candidate)
by :func:`features_for_hit` from a :class:`matching.Hit`, its position in the engine's own
order and the candidate's history on the platform:

=================  ==============================================================
``dense``          the engine's dense signal (cosine, clipped to [0, 1])
``lexical``        normalised BM25
``structured``     the engine's structured signal (weighted sum of the five below)
``field``          1 same category, 0.5 same area only
``city``           1 same ``region_city``
``county``         1 same ``region_county``
``tags``           share of the need's tags the candidate carries
``maturity``       规模化推广 1, 试点应用 0.6, 研发中 0.3
``thesaurus``      number of thesaurus pairs (近义词) in the explanation
``matched_terms``  number of whole shared words (共同关键词) in the explanation
``rank``           1-based position in the engine's hand-set order
``hist_*``         the candidate's earlier responses, selections and signings
=================  ==============================================================

**Label leakage.** A history feature must be built only from decisions made *before* the
decision being predicted, and never from that decision itself. :func:`history_from` counts
events strictly before a time and excluding given decision keys, and returns the keys it used;
:func:`check_no_leakage` and :func:`build_dataset` refuse a row whose history contains the
decision behind its own label (:class:`LabelLeakage`).

**Models.** ``"lambdarank"``: LightGBM's LambdaRank objective (optimises nDCG@10 directly),
used when there are at least :data:`MIN_JUDGEMENTS_LAMBDARANK` judgements and LightGBM is
installed. ``"logistic"``: a pairwise logistic model (RankNet with a linear scorer, fitted by
Newton's method in numpy) on standardised features (counts enter as ``log1p``); it needs little
data, needs no optional library, and its contributions are exact (``coef · z``). Both keep the
signs of :data:`MONOTONE`: a learned score never rises as the engine's rank worsens or a
similarity signal falls (judgements are selection-biased; see :data:`MONOTONE`).

**Switching on** (:func:`evaluate_switch`). Needs are split into folds (grouped by need, so no
need is in both training and test); inside each training fold the hyper-parameters are chosen on
an inner split of needs; the held-out needs are ranked by the learned model and by the
engine's hand-set order (ascending ``rank``) and compared by nDCG@10 on their judgements, with a
paired bootstrap interval over needs (:mod:`matching.metrics`). The learned ranking is switched
on only when

* there are at least :data:`MIN_JUDGEMENTS` judgements and :data:`MIN_NEEDS` needs whose
  judgements disagree (two grades or more; a need with one grade cannot tell two orders apart),
* the mean paired difference is at least :data:`MIN_MARGIN`, and
* the lower bound of its 95 % interval is above 0.

Why ``MIN_MARGIN = 0.01``: the interval guards against noise; the margin guards against
switching for a real but negligible gain. Switching changes what every organizer sees and the
wording of the 推荐理由, so it must buy something visible. A mean gain of 0.01 nDCG@10 is one
need in ten gaining about 0.1, e.g. its best answer (grade 3) swapping places with the grade-2
answer ranked just above it (0.85 → 1.0 for a need judged 3, 2, 1, 1). It is also the
resolution of our dev sets: the paired intervals between rankings in docs/benchmarks.md are
about ±0.007 wide (hybrid − BM25: +0.011 [+0.005, +0.019] over 125 needs), so a smaller
difference could not be told from zero on a platform with as many judged needs.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from matching.metrics import ndcg_at_k, paired_bootstrap_ci

if TYPE_CHECKING:  # pragma: no cover
    from matching.engine import Hit

__all__ = [
    "FEATURES",
    "HISTORY_FEATURES",
    "COUNT_FEATURES",
    "MONOTONE",
    "ALGORITHMS",
    "ALGORITHM_LABELS",
    "MIN_JUDGEMENTS",
    "MIN_JUDGEMENTS_LAMBDARANK",
    "MIN_NEEDS",
    "MIN_MARGIN",
    "K",
    "Judgement",
    "LabelLeakage",
    "NotEnoughJudgements",
    "ModelUnavailable",
    "Dataset",
    "Reranker",
    "SwitchReport",
    "features_for_hit",
    "history_from",
    "check_no_leakage",
    "build_dataset",
    "lightgbm_available",
    "choose_algorithm",
    "train",
    "evaluate_switch",
    "handset_order",
    "reasons_for",
    "explain",
]

#: Every feature of a (need, candidate) pair, in model column order.
FEATURES: tuple[str, ...] = (
    "dense",
    "lexical",
    "structured",
    "field",
    "city",
    "county",
    "tags",
    "maturity",
    "thesaurus",
    "matched_terms",
    "rank",
    "hist_responses",
    "hist_selected",
    "hist_signed",
)
#: The candidate's history on the platform (counts of earlier decisions).
HISTORY_FEATURES: tuple[str, ...] = ("hist_responses", "hist_selected", "hist_signed")
#: Unbounded counts: the logistic model takes ``log1p`` of them.
COUNT_FEATURES: frozenset[str] = frozenset({"thesaurus", "matched_terms", "rank", *HISTORY_FEATURES})
#: Direction a learned score must follow in each relevance signal (+1 never lower when the
#: signal grows, -1 never higher). Judgements are selection-biased: organizers remove candidates
#: from the top 10 they are shown and add candidates from further down, so among the judged rows
#: a worse engine rank (and a lower similarity) goes with a *higher* grade. Unconstrained, a
#: model learns to promote deep candidates. In ``benchmarks/learning.py`` (1000 decisions, the
#: app's training rows) LambdaRank gained 0.093 nDCG@10 on the hidden preference and lost 0.022 on
#: the true grades with the constraints, and gained 0.072 / lost 0.069 without them
#: (``--no-monotone``); trained on the judged pairs alone it lost on both without them.
MONOTONE: dict[str, int] = {
    "dense": 1,
    "lexical": 1,
    "structured": 1,
    "field": 1,
    "thesaurus": 1,
    "matched_terms": 1,
    "rank": -1,
}

ALGORITHMS = ("lambdarank", "logistic")
#: Names shown to organizers.
ALGORITHM_LABELS: dict[str, str] = {
    "lambdarank": "LightGBM LambdaRank 排序模型",
    "logistic": "成对逻辑回归排序模型",
    "handset": "人工设定权重",
}

#: Below this many judgements nothing is learned (the hand-set weights stay).
MIN_JUDGEMENTS = 30
#: From this many judgements on, ``algorithm="auto"`` uses LightGBM LambdaRank (if installed).
MIN_JUDGEMENTS_LAMBDARANK = 300
#: Needs with at least two different grades required before the switch can be evaluated.
MIN_NEEDS = 10
#: Minimum mean held-out nDCG@10 gain over the hand-set order (see the module docstring).
MIN_MARGIN = 0.01
#: Cut-off of the evaluation metric.
K = 10

_FORMAT = "matching.learning/1"
_LOGISTIC_GRID: tuple[dict[str, float], ...] = ({"C": 1.0}, {"C": 0.1}, {"C": 10.0}, {"C": 0.01})
_LAMBDARANK_GRID: tuple[dict[str, float], ...] = (
    {"num_leaves": 7, "num_boost_round": 150, "learning_rate": 0.05, "min_data_in_leaf": 10},
    {"num_leaves": 3, "num_boost_round": 300, "learning_rate": 0.05, "min_data_in_leaf": 10},
    {"num_leaves": 15, "num_boost_round": 150, "learning_rate": 0.05, "min_data_in_leaf": 20},
    {"num_leaves": 7, "num_boost_round": 60, "learning_rate": 0.1, "min_data_in_leaf": 5},
)
#: Within-need pairs used per need by the logistic model (a random sample beyond this).
_MAX_PAIRS_PER_NEED = 2000


class LabelLeakage(ValueError):
    """A feature was built from the decision that gives the row its label."""


class NotEnoughJudgements(ValueError):
    """Too few (or too uniform) judgements to train or evaluate a learned ranking."""


class ModelUnavailable(RuntimeError):
    """The model needs a library that is not installed (LightGBM)."""


@dataclass(frozen=True)
class Judgement:
    """One graded decision about a candidate for a need.

    ``decision_key`` identifies the record the grade comes from (e.g. ``"signing:17"``); the
    same key must never feed a history feature of the same row (:func:`check_no_leakage`).
    ``at`` is timezone-aware UTC.
    """

    need_id: int
    product_id: int | None
    organization_id: int
    grade: int
    source: str
    at: datetime
    decision_key: str


# ------------------------------------------------------------------------------ features


def features_for_hit(hit: Hit, rank: int, history: Mapping[str, float] | None = None) -> dict[str, float]:
    """The :data:`FEATURES` of one engine hit at 1-based position ``rank`` of the engine's order.

    ``history`` holds the candidate's history counts, keyed by the names in
    :data:`HISTORY_FEATURES` (``"hist_signed"``) or without the prefix (``"signed"``); missing
    ones are 0. It must come from decisions before the one being predicted (see
    :func:`history_from`). Unknown keys raise ``ValueError``.
    """
    if rank < 1:
        raise ValueError(f"rank is 1-based, got {rank}")
    b = hit.breakdown
    feats = {
        "dense": float(hit.dense),
        "lexical": float(hit.lexical),
        "structured": float(hit.structured),
        "field": float(b.get("structured_field", 0.0)),
        "city": float(b.get("structured_city", 0.0)),
        "county": float(b.get("structured_county", 0.0)),
        "tags": float(b.get("structured_tags", 0.0)),
        "maturity": float(b.get("structured_maturity", 0.0)),
        "thesaurus": float(len(hit.related_terms)),
        "matched_terms": float(len(hit.matched_terms)),
        "rank": float(rank),
    }
    hist = {name: 0.0 for name in HISTORY_FEATURES}
    for key, value in (history or {}).items():
        name = key if key.startswith("hist_") else f"hist_{key}"
        if name not in hist:
            raise ValueError(f"unknown history feature {key!r}; expected one of {HISTORY_FEATURES}")
        value = float(value)
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"history feature {key!r} must be a non-negative count, not {value!r}")
        hist[name] = value
    feats.update(hist)
    return {name: feats[name] for name in FEATURES}


def history_from(
    events: Iterable[tuple[str, str, datetime]],
    *,
    before: datetime,
    exclude_keys: Iterable[str] = (),
) -> tuple[dict[str, float], frozenset[str]]:
    """Leakage-safe history counts of one candidate.

    ``events`` are ``(feature, decision_key, at)`` with ``feature`` in :data:`HISTORY_FEATURES`
    (or without the ``hist_`` prefix). Only events strictly before ``before`` whose key is not
    in ``exclude_keys`` count. Returns the counts and the decision keys they came from (store
    them with the row: :func:`build_dataset` checks them against the label's keys).
    """
    excluded = set(exclude_keys)
    counts = {name: 0.0 for name in HISTORY_FEATURES}
    used: set[str] = set()
    for feature, key, at in events:
        name = feature if feature.startswith("hist_") else f"hist_{feature}"
        if name not in counts:
            raise ValueError(f"unknown history feature {feature!r}")
        if at >= before or key in excluded:
            continue
        counts[name] += 1.0
        used.add(key)
    return counts, frozenset(used)


def check_no_leakage(judgement: Judgement, history_sources: Iterable[str | Judgement]) -> None:
    """Raise :class:`LabelLeakage` if the history behind a row's features includes the decision
    that labels it.

    ``history_sources`` are the decision keys (or the :class:`Judgement` rows) the history
    features were counted from. A :class:`Judgement` source must also be strictly earlier than
    ``judgement`` (a later decision cannot explain an earlier one).
    """
    for source in history_sources:
        key = source.decision_key if isinstance(source, Judgement) else str(source)
        if key == judgement.decision_key:
            raise LabelLeakage(
                f"history of need {judgement.need_id} / candidate "
                f"{judgement.product_id or judgement.organization_id} uses its own label decision {key!r}"
            )
        if isinstance(source, Judgement) and source.at >= judgement.at:
            raise LabelLeakage(
                f"history decision {key!r} ({source.at.isoformat()}) is not earlier than the "
                f"labelled decision {judgement.decision_key!r} ({judgement.at.isoformat()})"
            )


# ------------------------------------------------------------------------------ dataset


@dataclass(frozen=True)
class Dataset:
    """Graded feature rows grouped by need (rows of one need are contiguous).

    ``X`` has one column per name in ``features``; ``grades`` are 0–3 (or higher integers).
    """

    need_ids: np.ndarray
    candidate_ids: np.ndarray
    X: np.ndarray
    grades: np.ndarray
    features: tuple[str, ...] = FEATURES

    def __post_init__(self) -> None:
        n = len(self.grades)
        if self.X.shape != (n, len(self.features)) or len(self.need_ids) != n or len(self.candidate_ids) != n:
            raise ValueError("Dataset arrays disagree in shape")
        if n and np.any(np.diff(self._group_index()) < 0):
            raise ValueError("rows of one need must be contiguous")

    def _group_index(self) -> np.ndarray:
        order = {need: i for i, need in enumerate(dict.fromkeys(self.need_ids.tolist()))}
        return np.asarray([order[n] for n in self.need_ids.tolist()], dtype=np.int64)

    def __len__(self) -> int:
        return int(len(self.grades))

    @property
    def n_judgements(self) -> int:
        """Number of graded (need, candidate) rows."""
        return len(self)

    @property
    def needs(self) -> list[int]:
        """Need ids, in row order."""
        return list(dict.fromkeys(int(n) for n in self.need_ids.tolist()))

    def group_sizes(self) -> list[int]:
        """Rows per need, in :attr:`needs` order."""
        _, counts = np.unique(self._group_index(), return_counts=True)
        return counts.tolist()

    def groups(self) -> list[tuple[int, slice]]:
        """``(need_id, row slice)`` per need."""
        out, start = [], 0
        for need, size in zip(self.needs, self.group_sizes(), strict=True):
            out.append((need, slice(start, start + size)))
            start += size
        return out

    def informative_needs(self) -> list[int]:
        """Needs whose judgements hold at least two grades (only these can rank two orders
        differently) and a positive one (nDCG is defined)."""
        return [
            need
            for need, rows in self.groups()
            if len(set(self.grades[rows].tolist())) >= 2 and self.grades[rows].max() > 0
        ]

    def subset(self, needs: Iterable[int]) -> Dataset:
        """The rows of ``needs`` (kept in this dataset's order)."""
        wanted = {int(n) for n in needs}
        mask = np.asarray([int(n) in wanted for n in self.need_ids.tolist()], dtype=bool)
        return Dataset(
            need_ids=self.need_ids[mask],
            candidate_ids=self.candidate_ids[mask],
            X=self.X[mask],
            grades=self.grades[mask],
            features=self.features,
        )

    def grade_counts(self) -> dict[int, int]:
        """``{grade: rows}``."""
        values, counts = np.unique(self.grades, return_counts=True)
        return {int(v): int(c) for v, c in zip(values, counts, strict=True)}


def _feature_vector(feats: Mapping[str, float], names: Sequence[str]) -> list[float]:
    missing = [n for n in names if n not in feats]
    if missing:
        raise ValueError(f"features missing: {missing}")
    extra = [n for n in feats if n not in names]
    if extra:
        raise ValueError(f"unknown features: {extra}")
    row = [float(feats[n]) for n in names]
    if not all(math.isfinite(v) for v in row):
        raise ValueError(f"features must be finite numbers: {dict(feats)}")
    return row


def build_dataset(rows: Sequence[tuple[Any, ...]]) -> Dataset:
    """A :class:`Dataset` from ``(need_id, candidate_id, features, grade)`` rows.

    A row may carry two more items, ``(…, label_keys, history_keys)``: the decision keys behind
    its grade and those its history features were counted from; a row whose history contains one
    of its label keys raises :class:`LabelLeakage`.

    Several rows for the same (need, candidate) (pinned, then signed) become one row with the
    highest grade (and that row's features). Rows are grouped by need in first-seen order.
    """
    best: dict[tuple[int, int], tuple[int, list[float]]] = {}
    for row in rows:
        if len(row) not in (4, 6):
            raise ValueError("a row is (need_id, candidate_id, features, grade[, label_keys, history_keys])")
        need_id, candidate_id, feats, grade = row[:4]
        if len(row) == 6:
            label_keys, history_keys = row[4], row[5]
            leaked = set(label_keys) & set(history_keys)
            if leaked:
                raise LabelLeakage(
                    f"need {need_id} / candidate {candidate_id}: history uses its own label decision(s) "
                    f"{sorted(leaked)}"
                )
        if isinstance(grade, bool) or not isinstance(grade, int | np.integer) or grade < 0:
            raise ValueError(f"grade must be a non-negative integer, not {grade!r}")
        key = (int(need_id), int(candidate_id))
        vector = _feature_vector(feats, FEATURES)
        if key not in best or int(grade) > best[key][0]:
            best[key] = (int(grade), vector)
    order = list(dict.fromkeys(need for need, _ in best))
    position = {need: i for i, need in enumerate(order)}
    keys = sorted(best, key=lambda k: position[k[0]])
    n = len(keys)
    return Dataset(
        need_ids=np.asarray([k[0] for k in keys], dtype=np.int64),
        candidate_ids=np.asarray([k[1] for k in keys], dtype=np.int64),
        X=np.asarray([best[k][1] for k in keys], dtype=np.float64).reshape(n, len(FEATURES)),
        grades=np.asarray([best[k][0] for k in keys], dtype=np.int64),
    )


# ------------------------------------------------------------------------------ models


def lightgbm_available() -> bool:
    """Whether LightGBM can be imported."""
    try:
        import lightgbm  # noqa: F401
    except Exception:
        return False
    return True


def choose_algorithm(n_judgements: int, algorithm: str = "auto") -> str:
    """``"auto"`` → ``"lambdarank"`` with at least :data:`MIN_JUDGEMENTS_LAMBDARANK` judgements
    and LightGBM installed, else ``"logistic"``. An explicit ``"lambdarank"`` without LightGBM
    raises :class:`ModelUnavailable`."""
    if algorithm == "auto":
        if n_judgements >= MIN_JUDGEMENTS_LAMBDARANK and lightgbm_available():
            return "lambdarank"
        return "logistic"
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be 'auto' or one of {ALGORITHMS}, not {algorithm!r}")
    if algorithm == "lambdarank" and not lightgbm_available():
        raise ModelUnavailable("LightGBM is not installed")
    return algorithm


def _logistic_transform(X: np.ndarray, features: Sequence[str]) -> np.ndarray:
    out = np.array(X, dtype=np.float64, copy=True)
    for j, name in enumerate(features):
        if name in COUNT_FEATURES:
            out[:, j] = np.log1p(np.maximum(out[:, j], 0.0))
    return out


class Reranker:
    """A trained re-ranker: scores feature dicts, explains a score, serialises to bytes."""

    def __init__(
        self,
        algorithm: str,
        features: Sequence[str],
        params: Mapping[str, Any],
        *,
        coef: np.ndarray | None = None,
        mean: np.ndarray | None = None,
        scale: np.ndarray | None = None,
        booster: Any = None,
        trained_on: Mapping[str, Any] | None = None,
    ) -> None:
        if algorithm not in ALGORITHMS:
            raise ValueError(f"unknown algorithm {algorithm!r}")
        self.algorithm = algorithm
        self.features: tuple[str, ...] = tuple(features)
        self.params = dict(params)
        self.trained_on = dict(trained_on or {})
        self._coef = None if coef is None else np.asarray(coef, dtype=np.float64)
        self._mean = None if mean is None else np.asarray(mean, dtype=np.float64)
        self._scale = None if scale is None else np.asarray(scale, dtype=np.float64)
        self._booster = booster
        if algorithm == "logistic" and (self._coef is None or self._mean is None or self._scale is None):
            raise ValueError("a logistic reranker needs coef, mean and scale")
        if algorithm == "lambdarank" and booster is None:
            raise ValueError("a lambdarank reranker needs a booster")

    @property
    def label(self) -> str:
        """The algorithm's name for organizers."""
        return ALGORITHM_LABELS[self.algorithm]

    def matrix(self, feats: Sequence[Mapping[str, float]]) -> np.ndarray:
        """Feature dicts → model matrix in :attr:`features` order. A missing feature raises
        ``ValueError``; extra keys are ignored, so a model trained before a feature was added
        keeps scoring the rows :func:`features_for_hit` builds now."""
        rows = [_feature_vector({n: f[n] for n in self.features if n in f}, self.features) for f in feats]
        return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(self.features))

    def _z(self, X: np.ndarray) -> np.ndarray:
        assert self._mean is not None and self._scale is not None
        return (_logistic_transform(X, self.features) - self._mean) / self._scale

    def score_matrix(self, X: np.ndarray) -> np.ndarray:
        """Scores of rows already in :attr:`features` column order (higher = better)."""
        X = np.asarray(X, dtype=np.float64).reshape(-1, len(self.features))
        if not len(X):
            return np.zeros(0)
        if self.algorithm == "logistic":
            assert self._coef is not None
            return self._z(X) @ self._coef
        return np.asarray(self._booster.predict(X, num_threads=1), dtype=np.float64)

    def score(self, feats: list[dict[str, float]]) -> np.ndarray:
        """One score per feature dict (higher ranks first)."""
        return self.score_matrix(self.matrix(feats))

    def all_contributions(self, feats: Mapping[str, float]) -> tuple[dict[str, float], float]:
        """Per-feature contributions to the score of one row, and the constant part; they sum
        to :meth:`score` exactly (logistic: ``coef · z``, bias 0; LightGBM: SHAP values of
        ``pred_contrib=True`` and the expected value)."""
        X = self.matrix([feats])
        if self.algorithm == "logistic":
            assert self._coef is not None
            values = (self._z(X) * self._coef)[0]
            bias = 0.0
        else:
            contrib = np.asarray(self._booster.predict(X, pred_contrib=True, num_threads=1), dtype=np.float64)
            values, bias = contrib[0, :-1], float(contrib[0, -1])
        return {n: float(v) for n, v in zip(self.features, values, strict=True)}, bias

    def contributions(
        self, feats: dict[str, float], top: int = 3, *, positive_only: bool = True
    ) -> list[tuple[str, float]]:
        """The ``top`` features that raise this row's score most, largest first.

        With ``positive_only=False`` the ``top`` largest by absolute value (signed)."""
        values, _ = self.all_contributions(feats)
        items = list(values.items())
        if positive_only:
            items = sorted((p for p in items if p[1] > 0), key=lambda p: (-p[1], p[0]))
        else:
            items = sorted(items, key=lambda p: (-abs(p[1]), p[0]))
        return items[: max(0, int(top))]

    def importances(self) -> dict[str, float]:
        """Global weight of each feature, normalised to sum 1 (logistic: ``|coef|``; LightGBM:
        total gain)."""
        if self.algorithm == "logistic":
            assert self._coef is not None
            raw = np.abs(self._coef)
        else:
            raw = np.asarray(self._booster.feature_importance(importance_type="gain"), dtype=np.float64)
        total = float(raw.sum())
        return {n: (float(v) / total if total > 0 else 0.0) for n, v in zip(self.features, raw, strict=True)}

    # -------------------------------------------------------------- persistence

    def to_bytes(self) -> bytes:
        """UTF-8 JSON (no pickle): the model, its features, parameters and training summary."""
        data: dict[str, Any] = {
            "format": _FORMAT,
            "algorithm": self.algorithm,
            "features": list(self.features),
            "params": self.params,
            "trained_on": self.trained_on,
        }
        if self.algorithm == "logistic":
            assert self._coef is not None and self._mean is not None and self._scale is not None
            data["coef"] = self._coef.tolist()
            data["mean"] = self._mean.tolist()
            data["scale"] = self._scale.tolist()
        else:
            data["model"] = self._booster.model_to_string()
        return json.dumps(data, ensure_ascii=False).encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes) -> Reranker:
        """Inverse of :meth:`to_bytes`. Raises ``ValueError`` on damaged data and
        :class:`ModelUnavailable` for a LightGBM model without LightGBM installed."""
        try:
            obj = json.loads(bytes(data).decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise ValueError(f"not a serialised reranker: {exc}") from exc
        if not isinstance(obj, dict) or obj.get("format") != _FORMAT:
            raise ValueError("not a serialised reranker (unknown format)")
        algorithm = obj.get("algorithm")
        features = obj.get("features") or []
        common = {"params": obj.get("params") or {}, "trained_on": obj.get("trained_on") or {}}
        if algorithm == "logistic":
            coef, mean, scale = (np.asarray(obj[k], dtype=np.float64) for k in ("coef", "mean", "scale"))
            if not (len(coef) == len(mean) == len(scale) == len(features)):
                raise ValueError("serialised logistic reranker is inconsistent")
            return cls("logistic", features, coef=coef, mean=mean, scale=scale, **common)
        if algorithm == "lambdarank":
            try:
                import lightgbm
            except Exception as exc:
                raise ModelUnavailable(f"LightGBM is needed to load this model: {exc}") from exc
            booster = lightgbm.Booster(model_str=obj["model"])
            if booster.num_feature() != len(features):
                raise ValueError("serialised lambdarank reranker is inconsistent")
            return cls("lambdarank", features, booster=booster, **common)
        raise ValueError(f"unknown algorithm {algorithm!r}")


def _pairs(dataset: Dataset, seed: int) -> tuple[list[int], list[int], list[float]]:
    """Within-need pairs (better, worse) and a weight per pair (each need weighs the same)."""
    rng = random.Random(seed)
    better: list[int] = []
    worse: list[int] = []
    weights: list[float] = []
    for _need, rows in dataset.groups():
        idx = range(rows.start, rows.stop)
        g = dataset.grades
        pairs = [(i, j) for i in idx for j in idx if g[i] > g[j]]
        if not pairs:
            continue
        if len(pairs) > _MAX_PAIRS_PER_NEED:
            pairs = rng.sample(pairs, _MAX_PAIRS_PER_NEED)
        for i, j in pairs:
            better.append(i)
            worse.append(j)
            weights.append(1.0 / len(pairs))
    return better, worse, weights


def _fit_pairwise_logistic(diff: np.ndarray, weights: np.ndarray, C: float) -> np.ndarray:
    """``argmin_w Σ_i weights_i · log(1 + exp(-w · diff_i)) + ||w||² / (2C)`` by Newton's method.

    The same objective as scikit-learn's ``LogisticRegression(C=C, fit_intercept=False)`` on the
    symmetric pairs (``diff`` labelled 1, ``-diff`` labelled 0); with a dozen features a few
    exact Newton steps in numpy are faster and fully deterministic.
    """
    dim = diff.shape[1]
    w = np.zeros(dim)
    ridge = np.eye(dim) / C

    def objective(v: np.ndarray) -> float:
        return float(weights @ np.logaddexp(0.0, -(diff @ v)) + v @ v / (2 * C))

    current = objective(w)
    for _ in range(100):
        margin = diff @ w
        p = 0.5 * (1.0 + np.tanh(-margin / 2.0))  # sigmoid(-margin), overflow-free
        grad = -(diff.T @ (weights * p)) + w / C
        hess = (diff.T * (weights * p * (1.0 - p))) @ diff + ridge
        step = np.linalg.solve(hess, grad)
        t = 1.0
        while True:  # backtracking keeps every step a descent step
            candidate = w - t * step
            value = objective(candidate)
            if value <= current - 1e-4 * t * float(grad @ step) or t < 1e-8:
                break
            t /= 2.0
        w, improvement, current = candidate, current - value, value
        if improvement < 1e-12 or float(np.abs(grad).max()) < 1e-9:
            break
    return w


def _fit_monotone(diff: np.ndarray, weights: np.ndarray, C: float, features: Sequence[str]) -> np.ndarray:
    """:func:`_fit_pairwise_logistic` with the signs of :data:`MONOTONE` enforced: a coefficient
    of the wrong sign is fixed at 0 (its column dropped) and the rest refitted, the worst first,
    until every constrained coefficient has its sign (standardising and ``log1p`` keep signs)."""
    free = list(range(len(features)))
    while True:
        coef = np.zeros(len(features))
        coef[free] = _fit_pairwise_logistic(diff[:, free], weights, C)
        wrong = [
            (-coef[j] * MONOTONE[features[j]], j)
            for j in free
            if features[j] in MONOTONE and coef[j] * MONOTONE[features[j]] < 0
        ]
        if not wrong:
            return coef
        free.remove(max(wrong)[1])


def _train_logistic(dataset: Dataset, params: Mapping[str, Any], seed: int) -> Reranker:
    better, worse, weights = _pairs(dataset, seed)
    if not better:
        raise NotEnoughJudgements("no need has two different grades: nothing to learn an order from")
    T = _logistic_transform(dataset.X, dataset.features)
    mean = T.mean(axis=0)
    scale = T.std(axis=0)
    scale[scale < 1e-9] = 1.0
    Z = (T - mean) / scale
    diff = Z[better] - Z[worse]
    w = np.asarray(weights, dtype=np.float64)
    # pairs weigh 1 on average, so C means the same whatever the number of pairs;
    # a symmetric pair (diff → 1, -diff → 0) counts twice
    w = 2.0 * w * (len(w) / w.sum())
    coef = _fit_monotone(diff, w, float(params.get("C", 1.0)), dataset.features)
    return Reranker("logistic", dataset.features, dict(params), coef=coef, mean=mean, scale=scale)


def _train_lambdarank(dataset: Dataset, params: Mapping[str, Any], seed: int) -> Reranker:
    try:
        import lightgbm
    except Exception as exc:  # pragma: no cover - checked by choose_algorithm
        raise ModelUnavailable(f"LightGBM is not installed: {exc}") from exc
    if not dataset.informative_needs():
        raise NotEnoughJudgements("no need has two different grades: nothing to learn an order from")
    p = dict(params)
    rounds = int(p.pop("num_boost_round", 150))
    max_grade = int(dataset.grades.max()) if len(dataset) else 3
    lgb_params = {
        "objective": "lambdarank",
        "metric": "ndcg",
        "eval_at": [K],
        "lambdarank_truncation_level": K,
        "label_gain": [float(2**g - 1) for g in range(max(max_grade, 3) + 1)],
        "learning_rate": 0.05,
        "num_leaves": 7,
        "min_data_in_leaf": 10,
        "min_sum_hessian_in_leaf": 1e-3,
        "feature_fraction": 1.0,
        "bagging_fraction": 1.0,
        "lambda_l2": 1.0,
        "monotone_constraints": [MONOTONE.get(name, 0) for name in dataset.features],
        "seed": seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": 1,
        "verbosity": -1,
        **p,
    }
    train_set = lightgbm.Dataset(
        dataset.X,
        label=dataset.grades,
        group=dataset.group_sizes(),
        feature_name=list(dataset.features),
        free_raw_data=True,
    )
    booster = lightgbm.train(lgb_params, train_set, num_boost_round=rounds)
    return Reranker("lambdarank", dataset.features, {**params}, booster=booster)


def _fit(dataset: Dataset, algorithm: str, params: Mapping[str, Any], seed: int) -> Reranker:
    if algorithm == "logistic":
        return _train_logistic(dataset, params, seed)
    return _train_lambdarank(dataset, params, seed)


def handset_order(dataset: Dataset, rows: slice) -> list[int]:
    """Candidate ids of one need in the engine's hand-set order (ascending ``rank``, then id)."""
    col = dataset.features.index("rank")
    ids = dataset.candidate_ids[rows].tolist()
    ranks = dataset.X[rows, col].tolist()
    return [c for _, c in sorted(zip(ranks, ids, strict=True))]


def _learned_order(model: Reranker, dataset: Dataset, rows: slice) -> list[int]:
    scores = model.score_matrix(dataset.X[rows])
    col = dataset.features.index("rank")
    ranks = dataset.X[rows, col].tolist()
    ids = dataset.candidate_ids[rows].tolist()
    # ties (e.g. a tree with few splits) fall back to the hand-set order
    return [c for _s, _r, c in sorted(zip((-scores).tolist(), ranks, ids, strict=True))]


def _judged(dataset: Dataset, rows: slice) -> dict[int, float]:
    return {
        int(c): float(g)
        for c, g in zip(dataset.candidate_ids[rows].tolist(), dataset.grades[rows].tolist(), strict=True)
    }


def _mean_ndcg(model: Reranker, dataset: Dataset) -> float:
    values = [
        ndcg_at_k(_learned_order(model, dataset, rows), _judged(dataset, rows), K)
        for _n, rows in dataset.groups()
    ]
    defined = [v for v in values if v is not None]
    return float(np.mean(defined)) if defined else 0.0


def _split_needs(needs: Sequence[int], folds: int, seed: int) -> list[list[int]]:
    """Needs shuffled with ``seed`` and dealt round-robin into ``folds`` groups."""
    shuffled = list(needs)
    random.Random(seed).shuffle(shuffled)
    return [sorted(shuffled[i::folds]) for i in range(folds)]


def _tune(dataset: Dataset, algorithm: str, seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Hyper-parameters chosen on an inner split of ``dataset``'s needs (a quarter held out);
    the first grid point (the default) when there are too few needs to split."""
    grid = _LOGISTIC_GRID if algorithm == "logistic" else _LAMBDARANK_GRID
    informative = dataset.informative_needs()
    if len(informative) < 8:
        return dict(grid[0]), {"tuned": False, "reason": "too few needs for an inner split"}
    val_needs = set(_split_needs(informative, 4, seed + 1)[0])
    inner_train = dataset.subset([n for n in dataset.needs if n not in val_needs])
    inner_val = dataset.subset(val_needs)
    scores = []
    for point in grid:
        try:
            model = _fit(inner_train, algorithm, point, seed)
        except NotEnoughJudgements:
            scores.append(-1.0)
            continue
        scores.append(_mean_ndcg(model, inner_val))
    best = int(np.argmax(scores))  # first among ties: the default
    return dict(grid[best]), {"tuned": True, "inner_scores": [round(s, 4) for s in scores], "chosen": best}


def train(
    dataset: Dataset,
    *,
    algorithm: str = "auto",
    seed: int = 0,
    params: Mapping[str, Any] | None = None,
) -> Reranker:
    """Train a re-ranker on all of ``dataset``.

    ``algorithm``: ``"auto"`` (see :func:`choose_algorithm`), ``"lambdarank"`` or
    ``"logistic"``. Without ``params`` the hyper-parameters are chosen on an inner split of the
    needs. Raises :class:`NotEnoughJudgements` when no need has two different grades.
    """
    algo = choose_algorithm(dataset.n_judgements, algorithm)
    if params is None:
        chosen, tuning = _tune(dataset, algo, seed)
    else:
        chosen, tuning = dict(params), {"tuned": False, "reason": "given"}
    model = _fit(dataset, algo, chosen, seed)
    model.trained_on = {
        "judgements": dataset.n_judgements,
        "needs": len(dataset.needs),
        "grades": {str(k): v for k, v in dataset.grade_counts().items()},
        "seed": seed,
        "tuning": tuning,
    }
    return model


# ------------------------------------------------------------------------------ switching on


@dataclass
class SwitchReport:
    """Whether the learned ranking may replace the hand-set weights, and why (in Chinese)."""

    switch_on: bool
    reason: str
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def algorithm(self) -> str | None:
        """The algorithm that was evaluated (``None`` when nothing was trained)."""
        return self.metrics.get("algorithm")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return dataclasses.asdict(self)


def _too_few_reason(judgements: int, needs: int, min_judgements: int, min_needs: int) -> str:
    return (
        f"目前共有 {judgements} 条判断、{needs} 个有区分度的需求（同一需求下有不同评级），"
        f"少于评估学习排序所需的 {min_judgements} 条判断和 {min_needs} 个需求，"
        "继续使用人工设定的权重。"
    )


def evaluate_switch(
    dataset: Dataset,
    *,
    folds: int = 5,
    margin: float = MIN_MARGIN,
    seed: int = 0,
    algorithm: str = "auto",
    min_judgements: int = MIN_JUDGEMENTS,
    min_needs: int = MIN_NEEDS,
    resamples: int = 2000,
    n_judgements: int | None = None,
) -> SwitchReport:
    """Held-out comparison of the learned ranking with the hand-set order, and the switch rule.

    Folds are groups of needs (a need's rows are never split). Inside each training fold the
    hyper-parameters are chosen by an inner split (:func:`train`). Only informative needs
    (:meth:`Dataset.informative_needs`) are scored. See the module docstring for the rule.

    ``n_judgements``: the number of real judgements behind the rows, when the rows also hold
    candidates nobody acted on (graded 0); it is what the minimum, ``"auto"`` and the report
    count. Default: every row is a judgement.
    """
    judged = dataset.n_judgements if n_judgements is None else int(n_judgements)
    informative = dataset.informative_needs()
    base_metrics: dict[str, Any] = {
        "judgements": judged,
        "rows": dataset.n_judgements,
        "needs": len(informative),
        "needs_total": len(dataset.needs),
        "margin": margin,
        "min_judgements": min_judgements,
        "min_needs": min_needs,
    }
    if judged < min_judgements or len(informative) < max(min_needs, 2):
        return SwitchReport(
            switch_on=False,
            reason=_too_few_reason(judged, len(informative), min_judgements, min_needs),
            metrics={**base_metrics, "algorithm": None},
        )
    algo = choose_algorithm(judged, algorithm)
    n_folds = max(2, min(int(folds), len(informative)))
    # informative needs are dealt into folds; the rest only ever train (they cannot be scored)
    test_folds = _split_needs(informative, n_folds, seed)
    learned: list[float | None] = []
    handset: list[float | None] = []
    scored_needs: list[int] = []
    chosen_params: list[dict[str, Any]] = []
    for test_needs in test_folds:
        test_set = set(test_needs)
        train_set = dataset.subset([n for n in dataset.needs if n not in test_set])
        try:
            model = train(train_set, algorithm=algo, seed=seed)
        except NotEnoughJudgements:
            model = None
        chosen_params.append(dict(model.params) if model is not None else {})
        held_out = dataset.subset(test_needs)
        for need, rows in held_out.groups():
            judged = _judged(held_out, rows)
            base = handset_order(held_out, rows)
            order = _learned_order(model, held_out, rows) if model is not None else base
            learned.append(ndcg_at_k(order, judged, K))
            handset.append(ndcg_at_k(base, judged, K))
            scored_needs.append(need)
    paired = paired_bootstrap_ci(learned, handset, resamples=resamples, seed=seed)
    diff = float(paired["diff"])
    lo, hi = (float(v) for v in paired["ci"])  # type: ignore[union-attr]
    learned_mean = float(np.mean([v for v in learned if v is not None]))
    handset_mean = float(np.mean([v for v in handset if v is not None]))
    metrics = {
        **base_metrics,
        "learned": {f"ndcg@{K}": round(learned_mean, 4)},
        "handset": {f"ndcg@{K}": round(handset_mean, 4)},
        "diff": round(diff, 4),
        "ci95": [round(lo, 4), round(hi, 4)],
        "p_le_0": round(float(paired["p_le_0"]), 4),
        "folds": n_folds,
        "algorithm": algo,
        "params": chosen_params,
        "seed": seed,
    }
    switch_on = diff >= margin and lo > 0
    summary = (
        f"在 {len(scored_needs)} 个留出需求上（按需求分 {n_folds} 折交叉验证），"
        f"学习排序（{ALGORITHM_LABELS[algo]}）的 nDCG@{K} 为 {learned_mean:.3f}，"
        f"人工设定权重为 {handset_mean:.3f}，差值 {diff:+.3f}（95% 置信区间 [{lo:+.3f}, {hi:+.3f}]）"
    )
    if switch_on:
        reason = f"{summary}，提升至少 {margin:.2f} 且置信区间下限大于 0，满足启用条件，启用学习排序。"
    elif diff < margin:
        reason = f"{summary}，提升不足 {margin:.2f}，继续使用人工设定的权重。"
    else:
        reason = f"{summary}，置信区间下限未超过 0，提升尚不可靠，继续使用人工设定的权重。"
    return SwitchReport(switch_on=switch_on, reason=reason, metrics=metrics)


# ------------------------------------------------------------------------------ reasons

#: 推荐理由 for a feature that raises a learned score (same style as the engine's reasons).
_REASONS: dict[str, str] = {
    "dense": "语义相似度高",
    "lexical": "关键词高度重合",
    "matched_terms": "共同关键词较多",
    "thesaurus": "近义词匹配",
    "structured": "领域、地区等条件相符",
    "field": "应用领域相同",
    "city": "同城企业",
    "county": "同在一个区县",
    "tags": "技术标签相符",
    "maturity": "产品成熟度高",
    "rank": "综合相关度较高",
    "hist_responses": "该企业曾积极参与场景答题",
    "hist_selected": "该企业方案曾被选中",
    "hist_signed": "该企业曾在平台上签约",
}


def reasons_for(contributions: Iterable[tuple[str, float]]) -> list[str]:
    """Chinese reasons for the positive contributions, in the order given, without repeats.

    ``contributions`` is what :meth:`Reranker.contributions` returns.
    """
    out: list[str] = []
    for name, value in contributions:
        if value <= 0:
            continue
        text = _REASONS.get(name)
        if text and text not in out:
            out.append(text)
    return out


def explain(model: Reranker, feats: dict[str, float], top: int = 3) -> list[str]:
    """Shortcut: the reasons of the ``top`` contributions of one row."""
    return reasons_for(model.contributions(feats, top=top))

"""Choosing the fusion weights without flattering ourselves: grid search inside k-fold
cross-validation over needs.

The evaluation (:mod:`matching.evaluate`) computes, once per need, the engine's per-candidate
signals (dense cosine, normalised BM25, structured sub-signals; see :mod:`matching.engine`).
Those do not depend on the fusion weights, so any weight setting can then be re-ranked with
numpy in microseconds (:func:`fuse`) instead of re-running the engine: encode once, fuse many
times.

* :func:`default_grid` is the coarse grid of fusion weights that is searched.
* :func:`score_grid` scores every grid point on every need (nDCG@k, ``NaN`` = undefined).
* :func:`make_folds` splits needs into ``k`` folds with a fixed seed (stratified by dev set).
* :func:`choose` picks one grid point from the needs it is *given*: highest mean nDCG@k, and
  among ties (within ``tie_tolerance``) the one closest to the default weights, then the one
  with fewer non-zero signals. :func:`cross_validate` calls it with the training needs of
  each fold only, so a held-out need can never influence the weights used to rank it.

Parameters of :class:`~matching.engine.MatchConfig` that change the signals themselves rather
than their fusion (anything outside :data:`FUSION_KEYS`) can also appear in a grid: the caller
then supplies signals per value (``signals_for``) and the same selection runs over all of
them.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from matching.engine import Item, MatchConfig, MatchEngine, document_text
from matching.text import query_tokens

__all__ = [
    "FUSION_KEYS",
    "TOP_KEYS",
    "STRUCTURED_KEYS",
    "NeedSignals",
    "need_signals",
    "lexical_query",
    "fuse",
    "default_grid",
    "parse_grid",
    "score_grid",
    "make_folds",
    "choose",
    "Fold",
    "CVResult",
    "cross_validate",
    "fusion_weights",
    "chosen_config",
]

#: The three top-level weights of the fusion formula.
TOP_KEYS = ("w_dense", "w_lexical", "w_structured")
#: Sub-weights of the structured signal, in the order the engine sums them.
STRUCTURED_KEYS = ("w_field", "w_city", "w_county", "w_tags", "w_maturity")
_PARTS = ("field", "city", "county", "tags", "maturity")
#: MatchConfig keys that only change how the signals are fused (re-ranked without the engine).
FUSION_KEYS = TOP_KEYS + STRUCTURED_KEYS

#: Default tie tolerance on mean training nDCG: differences below this are not a reason to
#: move away from the default weights.
DEFAULT_TIE_TOLERANCE = 1e-4


@dataclass
class NeedSignals:
    """The engine's signals for one need against every candidate product of its set."""

    key: str
    group: str
    judged: Mapping[Hashable, float]
    product_keys: Sequence[str]
    cand: np.ndarray  # internal product ids (int64)
    dense: np.ndarray  # clipped cosine, float64
    lexical: np.ndarray  # bm25 / max bm25, float64
    parts: np.ndarray  # (n_cand, 5) structured sub-signals in _PARTS order


def need_signals(
    engine: MatchEngine,
    item: Item,
    depth: int,
    *,
    key: str,
    group: str,
    judged: Mapping[Hashable, float],
    product_keys: Sequence[str],
    parts_cache: dict[int, list[float]] | None = None,
) -> NeedSignals:
    """Signals of an indexed opportunity against the product side, as ``MatchEngine._rank``
    computes them (same candidate pool, same normalisation, same sub-signals).

    :func:`matching.evaluate` checks on every held-out need that :func:`fuse` over these
    signals gives the engine's own ranking, so a change in the engine that this mirror misses
    shows up as a non-zero ``fusion_check`` instead of silently wrong numbers.

    ``parts_cache`` (product id → structured sub-signals of this need) may be shared between
    calls for the same need: the sub-signals depend on the two items only.
    """
    side = engine._side("product")
    cfg = engine.config
    vec = engine.vector("opportunity", item.id)
    q_tokens = lexical_query(engine, item)
    pool = max(cfg.candidate_pool, depth)
    scores, ids = side.vectors.search(vec[None, :], pool)
    dense = {int(i): float(c) for i, c in zip(ids[0].tolist(), scores[0].tolist(), strict=True) if i >= 0}
    lex_top = side.lexical.search(q_tokens, pool)
    candidates = set(dense) | {i for i, _ in lex_top}
    missing_dense = [i for i in candidates if i not in dense]
    if missing_dense:
        dense.update(side.vectors.scores_for(vec, missing_dense))
    lex_all = dict(lex_top)
    missing_lex = [i for i in candidates if i not in lex_all]
    if missing_lex and len(lex_top) >= pool:
        lex_all.update(side.lexical.scores_for(q_tokens, missing_lex))
    best_lex = max(lex_all.values(), default=0.0)
    cand = sorted(candidates)
    d = [max(0.0, min(1.0, dense.get(c, 0.0))) for c in cand]
    lx = [lex_all.get(c, 0.0) / best_lex if best_lex > 0 else 0.0 for c in cand]
    if parts_cache is None:
        parts_cache = {}
    for c in cand:
        if c not in parts_cache:
            found = engine._structured(item, side.items[c])[1]
            parts_cache[c] = [found[p] for p in _PARTS]
    parts = [parts_cache[c] for c in cand]
    return NeedSignals(
        key=key,
        group=group,
        judged=judged,
        product_keys=product_keys,
        cand=np.asarray(cand, dtype=np.int64),
        dense=np.asarray(d, dtype=np.float64),
        lexical=np.asarray(lx, dtype=np.float64),
        parts=np.asarray(parts, dtype=np.float64).reshape(len(cand), len(_PARTS)),
    )


def lexical_query(engine: MatchEngine, item: Item) -> Any:
    """The BM25 query the engine builds for an item under its current config: weighted
    tokens with thesaurus expansions (``synonym_weight``) when the engine has that, else the
    plain expanded tokens."""
    builder = getattr(engine, "_item_query", None)
    if builder is not None:
        return builder(item).weights
    return query_tokens(document_text(item))


def fuse(sig: NeedSignals, weights: Mapping[str, float], depth: int) -> list[str]:
    """Product keys ranked by ``w_dense·dense + w_lexical·lexical + w_structured·structured``
    (ties by internal id, as in the engine), top ``depth``. ``weights`` may be a
    :class:`MatchConfig` dict; missing keys take the MatchConfig defaults."""
    w = {k: float(weights.get(k, getattr(MatchConfig, k))) for k in FUSION_KEYS}
    total = sum(w[k] for k in STRUCTURED_KEYS)
    if total > 0:
        p = sig.parts
        # same summation order as MatchEngine._structured, so the floats are identical
        acc = w["w_field"] * p[:, 0]
        for j, name in enumerate(STRUCTURED_KEYS[1:], start=1):
            acc = acc + w[name] * p[:, j]
        structured = acc / total
    else:
        structured = np.zeros(len(sig.cand))
    score = w["w_dense"] * sig.dense + w["w_lexical"] * sig.lexical + w["w_structured"] * structured
    order = np.lexsort((sig.cand, -score))[:depth]
    keys = sig.product_keys
    return [keys[int(i)] for i in sig.cand[order]]


def fusion_weights(config: MatchConfig | Mapping[str, Any]) -> dict[str, float]:
    """The fusion weights of a config (or mapping), as a plain dict."""
    data = config.to_dict() if isinstance(config, MatchConfig) else dict(config)
    return {k: float(data[k]) for k in FUSION_KEYS if k in data}


# ------------------------------------------------------------------------------------ grids


#: Thesaurus expansion weights searched when MatchConfig has ``synonym_weight``.
SYNONYM_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)


def default_grid(
    step: float = 0.05,
    structured: Sequence[float] = (0.0, 0.05, 0.10, 0.15, 0.20, 0.30),
    synonym_weights: Sequence[float] | None = SYNONYM_WEIGHTS,
) -> list[dict[str, float]]:
    """Top-level weights on the simplex: ``w_dense`` from 0 to 1 by ``step``, ``w_structured``
    from ``structured``, ``w_lexical = 1 − w_dense − w_structured`` (≥ 0); crossed with the
    thesaurus expansion weight ``synonym_weight`` (a BM25 query weight, so a signal-level
    knob) when MatchConfig has one and ``synonym_weights`` is not ``None``.

    The grid was fixed before any held-out number was looked at; on dev set 1 only maturity
    feeds the structured signal (a query-independent prior), which is why ``w_structured``
    stops at 0.3. Widening a grid after seeing where the optimum lands is tuning on the
    evaluation too (a wider ``w_structured`` range scored *worse* held out on dev set 1).

    The three weights sum to 1 because only their ratios change a ranking. BM25 alone
    (``w_lexical = 1``) and dense alone (``w_dense = 1``) are grid points, so the search may
    also decide that fusion does not help. Structured sub-weights stay at the base config's
    values (on the dev sets only maturity varies, so they only rescale ``w_structured``).
    """
    n = round(1 / step)
    grid = []
    for ws in structured:
        for i in range(n + 1):
            wd = round(i * step, 6)
            wl = round(1.0 - wd - ws, 6)
            if wl < -1e-9:
                continue
            grid.append({"w_dense": wd, "w_lexical": max(wl, 0.0), "w_structured": float(ws)})
    names = {f.name for f in dataclasses.fields(MatchConfig)}
    if synonym_weights is not None and "synonym_weight" in names:
        grid = [{**p, "synonym_weight": float(sw)} for sw in synonym_weights for p in grid]
    return grid


def parse_grid(spec: str | Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]] | None) -> list[dict]:
    """A grid from JSON text, a list of override dicts, or ``{key: [values]}`` (cartesian
    product). ``None`` → :func:`default_grid`. Every override is validated by MatchConfig."""
    if spec is None:
        return default_grid()
    if isinstance(spec, str):
        spec = json.loads(spec)
    if isinstance(spec, Mapping):
        points: list[dict] = [{}]
        for name, values in spec.items():
            points = [{**p, name: v} for p in points for v in values]
        spec = points
    grid = [dict(p) for p in spec]
    if not grid:
        raise ValueError("the grid is empty")
    for point in grid:
        MatchConfig.from_mapping(point)  # raises on unknown types / bad values
    return grid


# ------------------------------------------------------------------------------ selection


def _signal_key(point: Mapping[str, Any]) -> tuple:
    return tuple(sorted((k, v) for k, v in point.items() if k not in FUSION_KEYS))


def score_grid(
    signals_for: Callable[[Mapping[str, Any]], Sequence[NeedSignals]],
    grid: Sequence[Mapping[str, Any]],
    base: MatchConfig,
    k: int,
    depth: int,
) -> np.ndarray:
    """``(len(grid), n_needs)`` nDCG@k of every grid point on every need (NaN = undefined).

    ``signals_for(signal_overrides)`` returns the needs' signals for the non-fusion part of a
    grid point (``{}`` for a pure weight grid); it is called once per distinct value.
    """
    base_dict = base.to_dict()
    out = np.full((len(grid), 0), np.nan)
    by_signal: dict[tuple, list[int]] = {}
    for g, point in enumerate(grid):
        by_signal.setdefault(_signal_key(point), []).append(g)
    for skey, rows in by_signal.items():
        sigs = signals_for(dict(skey))
        if out.shape[1] == 0:
            out = np.full((len(grid), len(sigs)), np.nan)
        w = np.asarray(
            [[float({**base_dict, **grid[g]}[name]) for name in FUSION_KEYS] for g in rows], dtype=np.float64
        )
        for n, sig in enumerate(sigs):
            out[rows, n] = _ndcg_many(sig, w, k, depth)
    return out


def _ndcg_many(sig: NeedSignals, w: np.ndarray, k: int, depth: int) -> np.ndarray:
    """nDCG@k of one need under many weight rows (columns in FUSION_KEYS order), vectorised;
    the same scores and tie-break as :func:`fuse`."""
    positive = sorted((g for g in sig.judged.values() if g > 0), reverse=True)[:k]
    if not positive:
        return np.full(len(w), np.nan)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = float(((2.0 ** np.asarray(positive)) - 1.0) @ discounts[: len(positive)])
    p = sig.parts
    wd, wl, ws = w[:, 0:1], w[:, 1:2], w[:, 2:3]
    sub = w[:, 3:]
    total = sub.sum(axis=1, keepdims=True)
    acc = sub[:, 0:1] * p[None, :, 0]
    for j in range(1, sub.shape[1]):
        acc = acc + sub[:, j : j + 1] * p[None, :, j]
    structured = np.where(total > 0, acc / np.where(total > 0, total, 1.0), 0.0)
    score = wd * sig.dense[None, :] + wl * sig.lexical[None, :] + ws * structured
    cand = np.broadcast_to(sig.cand, score.shape)
    order = np.lexsort((cand, -score), axis=-1)[:, : min(k, depth)]
    keys = sig.product_keys
    grade_of = np.asarray([float(sig.judged.get(keys[int(c)], 0.0)) for c in sig.cand])
    grades = grade_of[order]
    gains = (2.0**grades - 1.0) @ discounts[: grades.shape[1]]
    return gains / ideal


def _normalised(weights: Mapping[str, float]) -> dict[str, float]:
    out = {}
    for keys in (TOP_KEYS, STRUCTURED_KEYS):
        total = sum(float(weights[k]) for k in keys)
        for k in keys:
            out[k] = float(weights[k]) / total if total > 0 else 0.0
    return out


def _distance(point: Mapping[str, Any], base: MatchConfig) -> float:
    """L1 distance to the base config: normalised fusion weights, plus |Δ| of any other knob."""
    base_dict = base.to_dict()
    merged = {**base_dict, **point}
    a, b = _normalised(merged), _normalised(base_dict)
    dist = sum(abs(a[k] - b[k]) for k in FUSION_KEYS)
    for k, v in point.items():
        if k not in FUSION_KEYS and v != base_dict.get(k):
            try:
                dist += abs(float(v) - float(base_dict.get(k)))
            except (TypeError, ValueError):
                dist += 1.0
    return dist


def _complexity(point: Mapping[str, Any], base: MatchConfig) -> int:
    merged = {**base.to_dict(), **point}
    return sum(1 for k in TOP_KEYS if float(merged[k]) > 0)


def choose(
    scores: np.ndarray,
    need_idx: Sequence[int],
    grid: Sequence[Mapping[str, Any]],
    base: MatchConfig,
    tie_tolerance: float = DEFAULT_TIE_TOLERANCE,
) -> tuple[int, float]:
    """Index of the grid point chosen on the needs ``need_idx`` only, and its mean nDCG there.

    Highest mean nDCG@k over those needs (undefined values skipped); grid points within
    ``tie_tolerance`` of the best count as tied, and a tie goes to the point closest to
    ``base`` (the default weights), then to the one with fewer non-zero top-level weights,
    then to the earlier grid point.
    """
    idx = np.asarray(list(need_idx), dtype=np.int64)
    if not len(idx):
        raise ValueError("cannot choose weights on zero needs")
    sub = scores[:, idx]
    defined = ~np.isnan(sub)
    counts = defined.sum(axis=1)
    means = np.where(counts > 0, np.where(defined, sub, 0.0).sum(axis=1) / np.maximum(counts, 1), -np.inf)
    best = float(means.max())
    tied = [i for i in range(len(grid)) if means[i] >= best - tie_tolerance]
    pick = min(tied, key=lambda i: (_distance(grid[i], base), _complexity(grid[i], base), i))
    return pick, float(means[pick]) if math.isfinite(means[pick]) else 0.0


def make_folds(groups: Sequence[str], k: int, seed: int) -> list[list[int]]:
    """Test-need indices of ``k`` folds (``k`` is capped at the number of needs).

    Needs are shuffled with ``random.Random(seed)`` within each group (dev set) and dealt
    round-robin, so every fold holds a share of every set. Each need is in exactly one fold.
    """
    n = len(groups)
    if n == 0:
        return []
    k = max(1, min(int(k), n))
    rng = random.Random(seed)
    folds: list[list[int]] = [[] for _ in range(k)]
    position = 0
    for group in sorted(set(groups)):
        members = [i for i, g in enumerate(groups) if g == group]
        rng.shuffle(members)
        for i in members:
            folds[position % k].append(i)
            position += 1
    return [sorted(f) for f in folds]


@dataclass
class Fold:
    """One CV fold: its held-out needs and the grid point chosen on the other needs."""

    test: list[int]
    choice: int
    weights: dict[str, Any]
    train_ndcg: float


@dataclass
class CVResult:
    """Folds, grid and, per need, the weights it was ranked with (always from another fold)."""

    folds: list[Fold]
    grid: list[dict[str, Any]]
    scores: np.ndarray
    choice_of_need: dict[int, int] = field(default_factory=dict)

    def held_out_ndcg(self) -> list[float | None]:
        """Per-need nDCG@k under the weights chosen without that need (fast-fusion values)."""
        out: list[float | None] = []
        for i in range(self.scores.shape[1]):
            v = self.scores[self.choice_of_need[i], i]
            out.append(None if np.isnan(v) else float(v))
        return out


def cross_validate(
    signals_for: Callable[[Mapping[str, Any]], Sequence[NeedSignals]],
    groups: Sequence[str],
    *,
    grid: Sequence[Mapping[str, Any]] | None = None,
    base: MatchConfig | None = None,
    folds: int = 5,
    seed: int = 0,
    k: int = 10,
    depth: int = 50,
    tie_tolerance: float = DEFAULT_TIE_TOLERANCE,
) -> CVResult:
    """k-fold CV over needs: per fold, :func:`choose` on the training needs only.

    The base config's own values of the grid's keys are added to the grid when missing."""
    grid = [dict(p) for p in (grid if grid is not None else default_grid())]
    base = base or MatchConfig()
    # the base (default) weights are always a candidate, so "no change" can win
    keys = list(dict.fromkeys(k for p in grid for k in p))
    base_point = {k: getattr(base, k) for k in keys}
    if base_point not in [{k: p.get(k, getattr(base, k)) for k in keys} for p in grid]:
        grid.append(base_point)
    scores = score_grid(signals_for, grid, base, k, depth)
    result = CVResult(folds=[], grid=grid, scores=scores)
    n = len(groups)
    test_sets = make_folds(groups, folds, seed)
    for test in test_sets:
        train = [i for i in range(n) if i not in set(test)] if len(test_sets) > 1 else list(range(n))
        # with a single fold there is no held-out data; callers treat that as "fixed" mode
        choice, train_score = choose(scores, train, grid, base, tie_tolerance)
        result.folds.append(
            Fold(test=test, choice=choice, weights=chosen_config(grid[choice], base), train_ndcg=train_score)
        )
        for i in test:
            result.choice_of_need[i] = choice
    return result


def chosen_config(point: Mapping[str, Any], base: MatchConfig) -> dict[str, Any]:
    """The tuned values of a grid point on top of ``base``: top-level weights plus any
    non-fusion override (structured sub-weights only when the point sets them)."""
    merged = dataclasses.replace(base, **dict(point)) if point else base
    data = merged.to_dict()
    keys = list(TOP_KEYS) + [k for k in point if k not in TOP_KEYS]
    return {k: data[k] for k in dict.fromkeys(keys)}

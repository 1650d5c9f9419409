"""Offline evaluation of BM25 alone, dense alone and the fused ranking against graded qrels.

Usage::

    python -m matching.evaluate --needs needs.jsonl --products products.jsonl \\
        --qrels qrels.tsv [--model SPEC] [--k 10] [--cv 0|5] [--config weights.json]
    python -m matching.evaluate --set seeds/eval [--set seeds/eval2] [--model e5-small] --cv 5
    python -m matching.evaluate --set private/ --cv 0 --config '{"w_dense": 0.35, ...}'

prints one JSON object::

    {"encoder": "offline-tfidf-svd-256", "n_needs": 40, "n_products": 120, "mode": "cv",
     "bm25": {"ndcg@10": ..., "recall@10": ..., "recall@50": ..., "mrr": ...},
     "dense": {...}, "hybrid": {...},
     "ci95": {"bm25": {"ndcg@10": [lo, hi], ...}, ..., "hybrid_minus_bm25": {...}},
     "cv": {"folds": 5, "seed": 0, "chosen": [...per fold...], "recommended": {...}}}

**Modes.** By default (``--cv 0``) every need is ranked with the engine as shipped: the
encoder's default weights (``MatchConfig.for_encoder``), or ``--config``. That is what a
benchmark the weights were not chosen on should measure (a private benchmark, a new set).
``--cv K`` is the honest mode for *our* dev sets, on which the defaults were chosen: the fusion
weights that rank a need are chosen by grid search (:mod:`matching.tuning`) on the *other*
folds only, and only these held-out numbers are reported (``benchmarks/evaluate_all.py`` uses
``--cv 5``). BM25 alone and dense alone have no weights, so they are the same in both modes.

**Confidence intervals.** ``ci95`` holds percentile-bootstrap intervals over needs
(``--bootstrap`` resamples, default 2,000, ``--seed``), and paired intervals of the
hybrid-minus-BM25 and hybrid-minus-dense differences (``diff``, ``ci95``, ``p_le_0``).

**Several files or sets.** Repeated ``--needs/--products/--qrels`` are concatenated into one
corpus. ``--set DIR`` reads ``DIR/needs.jsonl``, ``DIR/products.jsonl``, ``DIR/qrels.tsv``, or,
when those are absent, every sub-folder that has them (parts, concatenated, e.g.
``seeds/eval2/part_a`` + ``part_b``). Repeated ``--set`` gives separate corpora: each need
is ranked against its own set's products, and folds and averages run over all needs.

File formats:

* needs JSONL: ``{"id", "title", "description", "field"?, "region"?}``
* products JSONL: ``{"id", "name", "description", "field"? (string or list; "fields" also
  accepted), "tags"? (list), "maturity"?, "company"?}``. ``field`` is free text, used as text.
* qrels TSV: ``need_id<TAB>product_id<TAB>grade`` (grade 0–3; ``#`` lines and a header
  line are skipped).

Ids in the files are strings; they are mapped to ints internally. See
:mod:`matching.metrics` for the metric conventions.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import hashlib
import json
import sys
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from matching.encoders import Encoder, build_encoder
from matching.engine import Item, MatchConfig, MatchEngine, document_text
from matching.metrics import (
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    bootstrap_ci,
    mean,
    ndcg_at_k,
    paired_bootstrap_ci,
    recall_at_k,
    reciprocal_rank,
)
from matching.tuning import (
    DEFAULT_TIE_TOLERANCE,
    FUSION_KEYS,
    NeedSignals,
    choose,
    chosen_config,
    cross_validate,
    fuse,
    fusion_weights,
    lexical_query,
    need_signals,
    parse_grid,
)

__all__ = [
    "DEFAULT_CV",
    "EvalSet",
    "PreparedSet",
    "combine_sets",
    "evaluate",
    "evaluate_prepared",
    "evaluate_sets",
    "load_jsonl",
    "load_qrels",
    "load_set",
    "make_encoders",
    "main",
    "per_need_metrics",
]

#: Held-out (cross-validated) evaluation is the default: fixed weights on the set they were
#: chosen on flatter the engine.
DEFAULT_CV = 0
#: Rankings are cut at this depth (Recall@50 needs 50).
DEFAULT_DEPTH = 50
RANKINGS = ("bm25", "dense", "hybrid")

Qrels = Mapping[str, Mapping[str, float]]


def load_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Records of a JSONL file (blank lines skipped). A ``.json`` file holding a list also works."""
    text = Path(path).read_text(encoding="utf-8")
    if Path(path).suffix == ".json" and text.lstrip().startswith("["):
        return list(json.loads(text))
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def load_qrels(path: str | Path) -> dict[str, dict[str, float]]:
    """``{need_id: {product_id: grade}}`` from a TSV file."""
    qrels: dict[str, dict[str, float]] = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.replace("\t", " ").split()
        if len(parts) == 4:  # TREC form: need 0 product grade
            parts = [parts[0], parts[2], parts[3]]
        if len(parts) != 3:
            raise ValueError(f"bad qrels line: {line!r}")
        try:
            grade = float(parts[2])
        except ValueError:
            continue  # header
        qrels.setdefault(parts[0], {})[parts[1]] = grade
    return qrels


def _as_tuple(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,) if value.strip() else ()
    return tuple(str(v) for v in value if str(v).strip())


def _need_item(record: Mapping[str, Any], internal_id: int) -> Item:
    fields = _as_tuple(record.get("field") or record.get("fields") or record.get("field_category"))
    region = record.get("region") or record.get("region_city")
    title = str(record.get("title") or record.get("name") or "")
    text = " ".join(p for p in ["、".join(fields), str(record.get("description") or "")] if p)
    return Item(
        id=internal_id,
        side="opportunity",
        title=title,
        text=text,
        region_city=str(region) if region else None,
    )


def _product_item(record: Mapping[str, Any], internal_id: int) -> Item:
    fields = _as_tuple(record.get("field") or record.get("fields"))
    title = str(record.get("name") or record.get("title") or "")
    text = " ".join(p for p in ["、".join(fields), str(record.get("description") or "")] if p)
    maturity = record.get("maturity")
    return Item(
        id=internal_id,
        side="product",
        title=title,
        text=text,
        tags=_as_tuple(record.get("tags")),
        maturity=str(maturity) if maturity else None,
    )


def _load(value: Any, loader: Any) -> Any:
    return loader(value) if isinstance(value, str | Path) else value


# ------------------------------------------------------------------------------ data sets


@dataclass
class EvalSet:
    """One dev set: needs, products and graded judgements (ids are strings)."""

    name: str
    needs: list[dict[str, Any]]
    products: list[dict[str, Any]]
    qrels: dict[str, dict[str, float]]
    parts: list[str] = field(default_factory=list)

    def check(self) -> dict[str, int]:
        """Counts of judgements that cannot be scored (unknown need or product ids)."""
        need_ids = {str(r.get("id")) for r in self.needs}
        product_ids = {str(r.get("id") or r.get("key")) for r in self.products}
        return {
            "qrels_unknown_needs": sum(1 for n in self.qrels if n not in need_ids),
            "qrels_unknown_products": sum(
                1 for judged in self.qrels.values() for p in judged if p not in product_ids
            ),
        }


def _merge_qrels(target: dict[str, dict[str, float]], qrels: Qrels) -> None:
    for need_id, judged in qrels.items():
        target.setdefault(need_id, {}).update(judged)


def combine_sets(sets: Sequence[EvalSet], name: str | None = None) -> EvalSet:
    """Concatenate sets into one corpus (parts of one dev set); ids must not collide."""
    needs: list[dict[str, Any]] = []
    products: list[dict[str, Any]] = []
    qrels: dict[str, dict[str, float]] = {}
    for s in sets:
        needs.extend(s.needs)
        products.extend(s.products)
        _merge_qrels(qrels, s.qrels)
    for label, records in (("need", needs), ("product", products)):
        seen: set[str] = set()
        for r in records:
            rid = str(r.get("id") or r.get("key"))
            if rid in seen:
                raise ValueError(f"duplicate {label} id {rid!r} when combining {[s.name for s in sets]}")
            seen.add(rid)
    return EvalSet(
        name=name or "+".join(s.name for s in sets),
        needs=needs,
        products=products,
        qrels=qrels,
        parts=[p for s in sets for p in (s.parts or [s.name])],
    )


def _has_files(path: Path) -> bool:
    return all((path / f).is_file() for f in ("needs.jsonl", "products.jsonl", "qrels.tsv"))


def load_set(path: str | Path, name: str | None = None) -> EvalSet:
    """A dev set folder: ``needs.jsonl``, ``products.jsonl``, ``qrels.tsv`` in it, or else in
    each of its sub-folders (parts, concatenated in name order)."""
    root = Path(path)
    if _has_files(root):
        return EvalSet(
            name=name or root.name,
            needs=load_jsonl(root / "needs.jsonl"),
            products=load_jsonl(root / "products.jsonl"),
            qrels=load_qrels(root / "qrels.tsv"),
            parts=[str(root)],
        )
    parts = sorted(p for p in root.iterdir() if p.is_dir() and _has_files(p)) if root.is_dir() else []
    if not parts:
        raise FileNotFoundError(f"no needs.jsonl/products.jsonl/qrels.tsv in {root} or its sub-folders")
    combined = combine_sets([load_set(p) for p in parts], name=name or root.name)
    combined.parts = [str(p) for p in parts]
    return combined


# ------------------------------------------------------------------------------ metrics


def per_need_metrics(ranked: Sequence[str], judged: Qrels | Mapping[str, float], k: int) -> dict[str, Any]:
    """nDCG@k, Recall@k, Recall@50 and MRR of one ranking (``None`` = undefined)."""
    return {
        f"ndcg@{k}": ndcg_at_k(ranked, judged, k),
        f"recall@{k}": recall_at_k(ranked, judged, k),
        "recall@50": recall_at_k(ranked, judged, 50),
        "mrr": reciprocal_rank(ranked, judged),
    }


def _aggregate(rows: Sequence[Mapping[str, Any]], k: int) -> dict[str, float]:
    names = [f"ndcg@{k}", f"recall@{k}", "recall@50", "mrr"]
    return {n: round(mean([r[n] for r in rows]), 4) for n in names}


def _metrics(rankings: Mapping[str, Sequence[str]], qrels: Qrels, k: int) -> dict[str, float]:
    """Mean metrics of ``rankings`` over the judged needs that have one."""
    return _aggregate([per_need_metrics(rankings[n], j, k) for n, j in qrels.items() if n in rankings], k)


def _cis(
    per_need: Mapping[str, Sequence[Mapping[str, Any]]], k: int, resamples: int, seed: int
) -> dict[str, Any]:
    names = [f"ndcg@{k}", f"recall@{k}", "mrr"]
    out: dict[str, Any] = {}
    for ranking, rows in per_need.items():
        out[ranking] = {
            n: [round(v, 4) for v in bootstrap_ci([r[n] for r in rows], resamples, seed)] for n in names
        }
    for other in ("bm25", "dense"):
        diff = {}
        for n in names:
            d = paired_bootstrap_ci(
                [r[n] for r in per_need["hybrid"]], [r[n] for r in per_need[other]], resamples, seed
            )
            diff[n] = {
                "diff": round(float(d["diff"]), 4),
                "ci95": [round(v, 4) for v in d["ci"]],
                "p_le_0": round(float(d["p_le_0"]), 4),
            }
        out[f"hybrid_minus_{other}"] = diff
    return out


# ------------------------------------------------------------------------------ engines


def _ranking_only(config: MatchConfig) -> MatchConfig:
    """``config`` without the work that does not change a ranking: the sentence evidence of
    semantic hits encodes sentences with the encoder (slow with a pretrained model)."""
    if "evidence_max_hits" in {f.name for f in dataclasses.fields(config)}:
        return dataclasses.replace(config, evidence_max_hits=0)
    return config


def _vector_key(fingerprint: str, text: str) -> str:
    return f"{fingerprint}|{hashlib.sha1(text.encode('utf-8')).hexdigest()}"


class PreparedSet:
    """One set indexed with one encoder: BM25 and dense rankings, and the per-need signals
    from which any fusion weights can be re-ranked (:func:`matching.tuning.fuse`).

    ``vector_cache`` (any mutable mapping) keeps document vectors of a pretrained encoder
    between sets and runs, keyed by encoder fingerprint and text hash.
    """

    def __init__(
        self,
        evalset: EvalSet,
        encoder: Encoder,
        *,
        config: MatchConfig | None = None,
        depth: int = DEFAULT_DEPTH,
        vector_cache: MutableMapping[str, np.ndarray] | None = None,
    ) -> None:
        self.evalset = evalset
        self.config = _ranking_only(config or MatchConfig.for_encoder(encoder.name))
        self.depth = int(depth)
        need_records, product_records = evalset.needs, evalset.products
        self.need_items = [_need_item(r, i) for i, r in enumerate(need_records)]
        self.product_items = [_product_item(r, i) for i, r in enumerate(product_records)]
        self.need_keys = [str(r.get("id")) for r in need_records]
        self.product_keys = [str(r.get("id") or r.get("key")) for r in product_records]
        if len(set(self.need_keys)) != len(self.need_keys):
            raise ValueError(f"{evalset.name}: duplicate need ids")
        if len(set(self.product_keys)) != len(self.product_keys):
            raise ValueError(f"{evalset.name}: duplicate product ids")
        self.engine = MatchEngine(encoder, config=self.config)
        items = self.need_items + self.product_items
        vectors = None
        if encoder.is_fitted and vector_cache is not None:
            texts = {(i.side, i.id): document_text(i) for i in items}
            vectors = {
                key: vector_cache[_vector_key(encoder.fingerprint, t)]
                for key, t in texts.items()
                if _vector_key(encoder.fingerprint, t) in vector_cache
            }
            missing = [i for i in items if (i.side, i.id) not in vectors]
            if missing:
                fresh = encoder.encode([document_text(i) for i in missing], kind="document")
                for item, vec in zip(missing, fresh, strict=True):
                    vectors[(item.side, item.id)] = vec
                    vector_cache[_vector_key(encoder.fingerprint, texts[(item.side, item.id)])] = vec
        self.engine.build(items, vectors=vectors)
        self.encoder = encoder
        # needs with judgements, in file order
        self.judged = [
            (item, self.need_keys[item.id])
            for item in self.need_items
            if self.need_keys[item.id] in evalset.qrels
        ]
        side = self.engine._side("product")
        self.bm25: dict[str, list[str]] = {}
        self.dense: dict[str, list[str]] = {}
        for item, key in self.judged:
            # the engine's own lexical query under the base config (thesaurus expansion included)
            lexical = side.lexical.search(lexical_query(self.engine, item), self.depth)
            self.bm25[key] = [self.product_keys[i] for i, _ in lexical]
            vec = self.engine.vector("opportunity", item.id)
            _, dense_ids = side.vectors.search(vec[None, :], self.depth)
            self.dense[key] = [self.product_keys[int(i)] for i in dense_ids[0] if i >= 0]
        self._signals: dict[tuple, list[NeedSignals]] = {}
        self._parts: dict[int, dict[int, list[float]]] = {}

    @property
    def name(self) -> str:
        return self.evalset.name

    def signals(self, overrides: Mapping[str, Any] | None = None) -> list[NeedSignals]:
        """Per judged need, the engine's signals under ``config`` + non-fusion ``overrides``."""
        key = tuple(sorted((overrides or {}).items()))
        if key not in self._signals:
            cfg = dataclasses.replace(self.config, **dict(key)) if key else self.config
            saved, self.engine.config = self.engine.config, cfg
            try:
                self._signals[key] = [
                    need_signals(
                        self.engine,
                        item,
                        self.depth,
                        key=nkey,
                        group=self.name,
                        judged=self.evalset.qrels[nkey],
                        product_keys=self.product_keys,
                        parts_cache=self._parts.setdefault(item.id, {}),
                    )
                    for item, nkey in self.judged
                ]
            finally:
                self.engine.config = saved
        return self._signals[key]

    def hybrid(self, item: Item, config: MatchConfig) -> list[str]:
        """The engine's own fused ranking of one need under ``config`` (product keys)."""
        saved, self.engine.config = self.engine.config, _ranking_only(config)
        try:
            hits = self.engine.products_for(item.id, k=self.depth)
        finally:
            self.engine.config = saved
        return [self.product_keys[h.id] for h in hits]


def make_encoders(spec: str | None, n: int, encoder: Encoder | None = None) -> list[Encoder]:
    """``n`` encoders for ``n`` sets: one shared pretrained model, or a fresh (unfitted)
    offline encoder per set, since the offline encoder is fitted on each corpus."""
    first = encoder if encoder is not None else build_encoder(spec)
    if first.is_fitted:
        return [first] * n
    template = copy.deepcopy(first)
    return [first] + [copy.deepcopy(template) for _ in range(n - 1)]


# ------------------------------------------------------------------------------ evaluation


def evaluate_prepared(
    prepared: Sequence[PreparedSet],
    *,
    k: int = 10,
    cv: int = DEFAULT_CV,
    seed: int = DEFAULT_SEED,
    resamples: int = DEFAULT_RESAMPLES,
    config: MatchConfig | None = None,
    grid: Any = None,
    tie_tolerance: float = DEFAULT_TIE_TOLERANCE,
    fixed_weights: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate prepared sets together (each need ranked within its own set).

    ``cv >= 2``: held-out hybrid (weights chosen per fold on the other folds). Otherwise the
    hybrid uses ``config`` updated with ``fixed_weights``.
    """
    base = config or (prepared[0].config if prepared else MatchConfig())
    needs = [(p, item, key) for p in prepared for item, key in p.judged]
    depth = max(p.depth for p in prepared) if prepared else DEFAULT_DEPTH
    rankings: dict[str, list[list[str]]] = {name: [] for name in RANKINGS}
    for p, _item, key in needs:
        rankings["bm25"].append(p.bm25[key])
        rankings["dense"].append(p.dense[key])
    info: dict[str, Any] = {}
    if cv >= 2 and len(needs) >= 2:
        grid_points = parse_grid(grid)

        def signals_for(overrides: Mapping[str, Any]) -> list[NeedSignals]:
            return [s for p in prepared for s in p.signals(overrides)]

        groups = [p.name for p, _i, _k in needs]
        res = cross_validate(
            signals_for,
            groups,
            grid=grid_points,
            base=base,
            folds=cv,
            seed=seed,
            k=k,
            depth=depth,
            tie_tolerance=tie_tolerance,
        )
        hybrid: list[list[str] | None] = [None] * len(needs)
        mismatched = 0
        for fold in res.folds:
            point = res.grid[fold.choice]
            cfg = dataclasses.replace(base, **point)
            sig_key = {kk: v for kk, v in point.items() if kk not in FUSION_KEYS}
            fold_signals = signals_for(sig_key)
            for i in fold.test:
                p, item, _key = needs[i]
                ranked = p.hybrid(item, cfg)
                hybrid[i] = ranked
                if fuse(fold_signals[i], cfg.to_dict(), depth) != ranked:
                    mismatched += 1
        rankings["hybrid"] = [r or [] for r in hybrid]
        final, final_score = choose(res.scores, range(len(needs)), res.grid, base, tie_tolerance)
        info["cv"] = {
            "folds": len(res.folds),
            "seed": seed,
            "grid_size": len(res.grid),
            "selection": f"max mean nDCG@{k} on the training folds; ties (±{tie_tolerance:g}) → "
            "closest to the default weights, then fewer non-zero weights",
            "chosen": [
                {
                    "fold": n,
                    "n_test": len(f.test),
                    "weights": f.weights,
                    f"train_ndcg@{k}": round(f.train_ndcg, 4),
                }
                for n, f in enumerate(res.folds)
            ],
            # chosen on every need: the recommendation, not an evaluated number
            "recommended": chosen_config(res.grid[final], base),
            f"recommended_in_sample_ndcg@{k}": round(final_score, 4),
            "fusion_check": {"needs": len(needs), "mismatched": mismatched},
        }
        mode = "cv"
    else:
        cfg = dataclasses.replace(base, **dict(fixed_weights or {}))
        rankings["hybrid"] = [p.hybrid(item, cfg) for p, item, _key in needs]
        info["weights"] = fusion_weights(cfg)
        mode = "fixed"

    per_need = {
        name: [
            per_need_metrics(r, p.evalset.qrels[key], k)
            for r, (p, _item, key) in zip(rankings[name], needs, strict=True)
        ]
        for name in RANKINGS
    }
    encoders = {p.encoder.name for p in prepared}
    result: dict[str, Any] = {
        "encoder": ", ".join(sorted(encoders)),
        "n_needs": sum(len(p.need_items) for p in prepared),
        "n_products": sum(len(p.product_items) for p in prepared),
        "n_judged_needs": len(needs),
        "mode": mode,
    }
    reasons = {p.encoder.fallback_reason for p in prepared if p.encoder.fallback_reason}
    if reasons:
        result["fallback_reason"] = "; ".join(sorted(reasons))
    for name in RANKINGS:
        result[name] = _aggregate(per_need[name], k)
    if resamples > 0 and needs:
        result["ci95"] = _cis(per_need, k, resamples, seed)
        result["bootstrap"] = {"resamples": resamples, "seed": seed, "unit": "need", "method": "percentile"}
    if len(prepared) > 1:
        result["per_set"] = {}
        for p in prepared:
            idx = [i for i, (q, _item, _key) in enumerate(needs) if q is p]
            result["per_set"][p.name] = {
                "n_needs": len(p.need_items),
                "n_products": len(p.product_items),
                **{name: _aggregate([per_need[name][i] for i in idx], k) for name in RANKINGS},
            }
    result["sets"] = [{"name": p.name, "parts": p.evalset.parts, **p.evalset.check()} for p in prepared]
    result.update(info)
    result["_per_need"] = {"keys": [key for _p, _i, key in needs], **per_need}
    return result


def evaluate_sets(
    sets: Sequence[EvalSet],
    encoder_spec: str | None = None,
    *,
    encoder: Encoder | None = None,
    k: int = 10,
    config: MatchConfig | Mapping[str, Any] | None = None,
    cv: int = DEFAULT_CV,
    seed: int = DEFAULT_SEED,
    resamples: int = DEFAULT_RESAMPLES,
    grid: Any = None,
    tie_tolerance: float = DEFAULT_TIE_TOLERANCE,
    vector_cache: MutableMapping[str, np.ndarray] | None = None,
    per_need: bool = False,
) -> dict[str, Any]:
    """Evaluate one or more sets (each its own corpus) with one encoder spec.

    Without ``config`` the encoder's shipped defaults are used (:meth:`MatchConfig.for_encoder`).
    """
    encoders = make_encoders(encoder_spec, len(sets), encoder)
    if not isinstance(config, MatchConfig):
        config = MatchConfig.for_encoder(encoders[0].name if encoders else None, config)
    depth = max(k, DEFAULT_DEPTH)
    prepared = [
        PreparedSet(s, enc, config=config, depth=depth, vector_cache=vector_cache)
        for s, enc in zip(sets, encoders, strict=True)
    ]
    result = evaluate_prepared(
        prepared,
        k=k,
        cv=cv,
        seed=seed,
        resamples=resamples,
        config=config,
        grid=grid,
        tie_tolerance=tie_tolerance,
    )
    if not per_need:
        result.pop("_per_need", None)
    return result


def evaluate(
    needs: Iterable[Mapping[str, Any]] | str | Path,
    products: Iterable[Mapping[str, Any]] | str | Path,
    qrels: Qrels | str | Path,
    encoder_spec: str | None = None,
    k: int = 10,
    config: MatchConfig | Mapping[str, Any] | None = None,
    *,
    cv: int = DEFAULT_CV,
    seed: int = DEFAULT_SEED,
    resamples: int = DEFAULT_RESAMPLES,
    grid: Any = None,
    encoder: Encoder | None = None,
) -> dict[str, Any]:
    """Evaluate the three rankings on one corpus; arguments are records (or file paths) as
    described above. ``cv=0`` (or 1) evaluates the fixed weights of ``config``; otherwise the
    hybrid is held out (``cv``-fold cross-validation) and ``config`` is the tie-break anchor and
    supplies every knob that is not tuned.

    The encoder is fitted on needs and products together (unlabelled text only).
    """
    evalset = EvalSet(
        name="dev",
        needs=[dict(r) for r in _load(needs, load_jsonl)],
        products=[dict(r) for r in _load(products, load_jsonl)],
        qrels={n: dict(j) for n, j in _load(qrels, load_qrels).items()},
    )
    return evaluate_sets(
        [evalset],
        encoder_spec,
        encoder=encoder,
        k=k,
        config=config,
        cv=cv,
        seed=seed,
        resamples=resamples,
        grid=grid,
    )


def _read_json_arg(value: str) -> Any:
    raw = Path(value).read_text(encoding="utf-8") if Path(value).is_file() else value
    return json.loads(raw)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; prints one JSON object to stdout."""
    parser = argparse.ArgumentParser(prog="python -m matching.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("--needs", action="append", default=[], help="needs JSONL (repeatable)")
    parser.add_argument("--products", action="append", default=[], help="products JSONL (repeatable)")
    parser.add_argument("--qrels", action="append", default=[], help="qrels TSV: need_id, product_id, grade")
    parser.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        help="dev set folder (needs.jsonl, products.jsonl, qrels.tsv, or parts in sub-folders); repeatable",
    )
    parser.add_argument(
        "--model",
        default=None,
        help="encoder spec: offline | e5-small | st:<name or path>; default: $MATCHING_MODEL, else "
        "build_encoder's default (a model that cannot be loaded falls back to offline, and the "
        "output says so in fallback_reason)",
    )
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument(
        "--cv",
        type=int,
        default=DEFAULT_CV,
        help="folds for held-out weights on a dev set; 0 (default) = the shipped weights of the "
        "encoder, or --config",
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="fold and bootstrap seed")
    parser.add_argument(
        "--bootstrap", type=int, default=DEFAULT_RESAMPLES, help="bootstrap resamples (0 = no intervals)"
    )
    parser.add_argument("--config", default=None, help="JSON file or inline JSON with MatchConfig values")
    parser.add_argument(
        "--grid", default=None, help='JSON grid: [{"w_dense": ..}, ..] or {"w_dense": [..], ..}'
    )
    parser.add_argument("--per-need", action="store_true", help="include per-need metric values")
    args = parser.parse_args(argv)
    config = MatchConfig.from_mapping(_read_json_arg(args.config)) if args.config else None
    sets: list[EvalSet] = [load_set(path) for path in args.sets]
    if args.needs or args.products or args.qrels:
        if not (args.needs and args.products and args.qrels):
            parser.error("--needs, --products and --qrels go together")
        qrels: dict[str, dict[str, float]] = {}
        for path in args.qrels:
            _merge_qrels(qrels, load_qrels(path))
        sets.append(
            combine_sets(
                [
                    EvalSet(
                        name="files",
                        needs=[r for path in args.needs for r in load_jsonl(path)],
                        products=[r for path in args.products for r in load_jsonl(path)],
                        qrels=qrels,
                        parts=list(args.needs),
                    )
                ],
                name="files",
            )
        )
    if not sets:
        parser.error("give --set DIR or --needs/--products/--qrels")
    grid = _read_json_arg(args.grid) if args.grid else None
    result = evaluate_sets(
        sets,
        args.model,
        k=args.k,
        config=config,
        cv=args.cv,
        seed=args.seed,
        resamples=args.bootstrap,
        grid=grid,
        per_need=args.per_need,
    )
    json.dump(result, sys.stdout, ensure_ascii=False)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

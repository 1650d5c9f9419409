"""Held-out quality table of the matching engine on both dev sets, with confidence intervals.

    .venv/bin/python benchmarks/evaluate_all.py                       # markdown to stdout
    .venv/bin/python benchmarks/evaluate_all.py --json benchmarks/out/evaluate_all.json

For each encoder (``--models``, default ``offline,e5-small``) and each dev set (``--set1``
``seeds/eval``, ``--set2`` ``seeds/eval2``, whose part folders are concatenated) it reports:

* BM25 alone, dense alone and the hybrid, the hybrid **held out**: k-fold cross-validation over
  needs (``--cv 5``, ``--seed 0``), weights chosen by grid search on the training folds only
  (:mod:`matching.tuning`); 95 % percentile-bootstrap intervals over needs (``--bootstrap``
  2,000 resamples) and the paired hybrid − BM25 interval;
* the weights chosen in every fold (their stability) on set 1, set 2 and the union;
* the **recommended weights**: chosen on all needs of the union of both sets (each need
  ranked within its own set's products);
* **cross-set transfer**: weights chosen on all of set 1, scored on set 2, and vice versa,
  plus the current MatchConfig defaults (chosen on set 1) scored on set 2: the closest thing to
  the private benchmark we have.

Pretrained encoders encode each document once; vectors are cached on disk per encoder
fingerprint (``--cache``, default ``instance/eval_cache``), so reruns only fuse. An encoder that
cannot be loaded (``build_encoder`` fell back to offline) is reported as unavailable, never
as numbers. A missing set 2 is skipped with a note.

It is a measurement script, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from matching.encoders import build_encoder  # noqa: E402
from matching.engine import MatchConfig  # noqa: E402
from matching.evaluate import (  # noqa: E402
    DEFAULT_DEPTH,
    PreparedSet,
    evaluate_prepared,
    load_set,
    make_encoders,
)
from matching.tuning import TOP_KEYS  # noqa: E402


class DiskVectorCache(MutableMapping):
    """A dict of vectors persisted as one ``.npz`` (keys + matrix) per cache file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, np.ndarray] = {}
        self.dirty = False
        if path.is_file():
            with np.load(path, allow_pickle=False) as z:
                for key, vec in zip(z["keys"].tolist(), z["vectors"], strict=True):
                    self.data[str(key)] = vec

    def __getitem__(self, key: str) -> np.ndarray:
        return self.data[key]

    def __setitem__(self, key: str, value: np.ndarray) -> None:
        self.data[key] = np.asarray(value, dtype=np.float32)
        self.dirty = True

    def __delitem__(self, key: str) -> None:
        del self.data[key]
        self.dirty = True

    def __iter__(self):
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def save(self) -> None:
        if not self.dirty or not self.data:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        keys = list(self.data)
        tmp = self.path.with_suffix(".tmp.npz")
        np.savez(tmp, keys=np.asarray(keys), vectors=np.stack([self.data[k] for k in keys]))
        tmp.replace(self.path)
        self.dirty = False


def _weights(w: dict[str, Any]) -> str:
    text = " / ".join(f"{w[k]:.2f}" for k in TOP_KEYS)
    if "synonym_weight" in w:
        text += f" (syn {w['synonym_weight']:.2f})"
    return text


def _defaults(out: dict[str, Any], spec: str) -> dict[str, Any]:
    """The fixed weights evaluated for ``spec``: ``--config`` when given, else the encoder's
    shipped defaults (``MatchConfig.for_encoder``)."""
    if out["defaults"]:
        return out["defaults"]
    config = MatchConfig.for_encoder(spec)
    return {key: getattr(config, key) for key in (*TOP_KEYS, "synonym_weight") if hasattr(config, key)}


def _cell(res: dict[str, Any], ranking: str, metric: str) -> str:
    value = res[ranking][metric]
    ci = res.get("ci95", {}).get(ranking, {}).get(metric)
    return f"{value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else f"{value:.3f}"


def _row(label: str, res: dict[str, Any], ranking: str, k: int) -> str:
    cells = [_cell(res, ranking, m) for m in (f"ndcg@{k}", f"recall@{k}", "mrr")]
    return f"| {label} | " + " | ".join(cells) + " |"


def _diff_row(label: str, res: dict[str, Any], k: int) -> str:
    cells = [_diff(res, m) for m in (f"ndcg@{k}", f"recall@{k}", "mrr")]
    return f"| {label} | " + " | ".join(cells) + " |"


def _diff(res: dict[str, Any], metric: str, other: str = "bm25") -> str:
    d = res["ci95"][f"hybrid_minus_{other}"][metric]
    return f"{d['diff']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]"


def run(args: argparse.Namespace) -> dict[str, Any]:
    k = args.k
    depth = max(k, DEFAULT_DEPTH)
    sets = {"set1": load_set(args.set1, name="set1")}
    notes: list[str] = []
    try:
        sets["set2"] = load_set(args.set2, name="set2")
        root = Path(args.set2)
        incomplete = [
            d.name
            for d in sorted(root.iterdir())
            if d.is_dir() and str(d) not in sets["set2"].parts and not (root / "needs.jsonl").is_file()
        ]
        if incomplete:
            notes.append(f"dev set 2: sub-folders without needs/products/qrels skipped: {incomplete}")
    except FileNotFoundError as exc:
        notes.append(f"dev set 2 not available: {exc}")
    # None: each encoder's shipped defaults (MatchConfig.for_encoder).
    config = MatchConfig.from_mapping(json.loads(args.config)) if args.config else None
    common = {"k": k, "seed": args.seed, "resamples": args.bootstrap, "config": config}
    out: dict[str, Any] = {
        "k": k,
        "cv": args.cv,
        "seed": args.seed,
        "bootstrap": args.bootstrap,
        "defaults": {
            key: getattr(config, key) for key in (*TOP_KEYS, "synonym_weight") if hasattr(config, key)
        },
        "sets": {
            name: {
                "n_needs": len(s.needs),
                "n_products": len(s.products),
                "n_judged": len(s.qrels),
                "parts": s.parts,
            }
            for name, s in sets.items()
        },
        "encoders": {},
        "notes": notes,
    }
    for spec in args.models:
        t0 = time.perf_counter()
        probe = build_encoder(spec)
        if probe.fallback_reason and spec not in {"offline", "default", ""}:
            out["encoders"][spec] = {"unavailable": probe.fallback_reason}
            notes.append(f"{spec}: unavailable ({probe.fallback_reason})")
            continue
        cache = DiskVectorCache(Path(args.cache) / f"{spec.replace('/', '_').replace(':', '_')}.npz")
        encoders = make_encoders(spec, len(sets), probe)
        prepared = {
            name: PreparedSet(s, enc, config=config, depth=depth, vector_cache=cache)
            for (name, s), enc in zip(sets.items(), encoders, strict=True)
        }
        cache.save()
        entry: dict[str, Any] = {"encoder": probe.name, "prepare_s": round(time.perf_counter() - t0, 1)}
        for name, p in prepared.items():
            entry[name] = evaluate_prepared([p], cv=args.cv, **common)
            entry[f"{name}_defaults_fixed"] = evaluate_prepared([p], cv=0, **common)
        if len(prepared) == 2:
            entry["union"] = evaluate_prepared(list(prepared.values()), cv=args.cv, **common)
            entry["recommended"] = entry["union"]["cv"]["recommended"]
            for src, dst in (("set1", "set2"), ("set2", "set1")):
                weights = entry[src]["cv"]["recommended"]
                entry[f"transfer_{src}_to_{dst}"] = evaluate_prepared(
                    [prepared[dst]], cv=0, fixed_weights=weights, **common
                )
        entry["total_s"] = round(time.perf_counter() - t0, 1)
        for res in [v for v in entry.values() if isinstance(v, dict) and "_per_need" in v]:
            res.pop("_per_need", None)
        out["encoders"][spec] = entry
    return out


def markdown(out: dict[str, Any]) -> str:
    k = out["k"]
    nd = f"ndcg@{k}"
    lines: list[str] = []
    sets = [s for s in ("set1", "set2") if s in out["sets"]]
    label = {
        s: f"dev set {s[-1]} ({out['sets'][s]['n_judged']} needs, {out['sets'][s]['n_products']} products)"
        for s in sets
    }
    encs = {spec: e for spec, e in out["encoders"].items() if "unavailable" not in e}
    lines.append(
        f"Held out: {out['cv']}-fold CV over needs (seed {out['seed']}); "
        f"[95 % bootstrap CI over needs, {out['bootstrap']} resamples]."
    )
    lines.append("")
    for s in sets:
        lines.append(f"**{label[s]}**")
        lines.append("")
        lines.append(f"| ranking | nDCG@{k} | Recall@{k} | MRR |")
        lines.append("|---|---|---|---|")
        first = next(iter(encs.values()), None)
        if first and s in first:
            r = first[s]
            lines.append(_row("BM25 alone", r, "bm25", k))
        for spec, e in encs.items():
            if s not in e:
                continue
            r = e[s]
            lines.append(_row(f"dense alone ({spec})", r, "dense", k))
        for spec, e in encs.items():
            if s not in e:
                continue
            r = e[s]
            lines.append(_row(f"hybrid ({spec}), held out", r, "hybrid", k))
        for spec, e in encs.items():
            if s not in e:
                continue
            r = e[s]
            lines.append(_diff_row(f"hybrid ({spec}) − BM25, paired", r, k))
        for spec, e in encs.items():
            key = f"{s}_defaults_fixed"
            if key in e:
                r = e[key]
                tag = "in-sample: the defaults were tuned here" if s == "set1" else "not tuned on this set"
                weights = _weights(_defaults(out, spec))
                lines.append(_row(f"hybrid ({spec}), fixed defaults {weights} ({tag})", r, "hybrid", k))
        lines.append("")
    if any("union" in e for e in encs.values()):
        lines.append(
            f"**Cross-set transfer** (weights chosen on all needs of one set, scored on the other; nDCG@{k})"
        )
        lines.append("")
        lines.append(
            "| encoder | weights chosen on set 1 → set 2 | hybrid − BM25 "
            "| weights chosen on set 2 → set 1 | hybrid − BM25 |"
        )
        lines.append("|---|---|---|---|---|")
        for spec, e in encs.items():
            if "union" not in e:
                continue
            a, b = e["transfer_set1_to_set2"], e["transfer_set2_to_set1"]
            lines.append(
                f"| {spec} | {_weights(a['weights'])}: {_cell(a, 'hybrid', nd)} | {_diff(a, nd)} | "
                f"{_weights(b['weights'])}: {_cell(b, 'hybrid', nd)} | {_diff(b, nd)} |"
            )
        lines.append("")
        lines.append(
            f"**Union of both sets** ({out['cv']}-fold CV over all needs, each ranked within its own set)"
        )
        lines.append("")
        lines.append(f"| ranking | nDCG@{k} | Recall@{k} | MRR |")
        lines.append("|---|---|---|---|")
        first = next(e for e in encs.values() if "union" in e)
        r = first["union"]
        lines.append(_row("BM25 alone", r, "bm25", k))
        for spec, e in encs.items():
            if "union" in e:
                r = e["union"]
                lines.append(_row(f"dense alone ({spec})", r, "dense", k))
        for spec, e in encs.items():
            if "union" in e:
                r = e["union"]
                lines.append(_row(f"hybrid ({spec}), held out", r, "hybrid", k))
                lines.append(_diff_row(f"hybrid ({spec}) − BM25, paired", r, k))
        lines.append("")
    lines.append(
        "**Weights chosen per fold** (w_dense / w_lexical / w_structured, thesaurus synonym_weight) "
        "and the recommendation"
    )
    lines.append("")
    lines.append("| encoder | evaluated on | per fold | recommended (chosen on all needs) |")
    lines.append("|---|---|---|---|")
    for spec, e in encs.items():
        for s in [*sets, "union"]:
            if s not in e or "cv" not in e[s]:
                continue
            cv = e[s]["cv"]
            folds = "; ".join(_weights(c["weights"]) for c in cv["chosen"])
            lines.append(f"| {spec} | {s} | {folds} | **{_weights(cv['recommended'])}** |")
    lines.append("")
    for spec, e in encs.items():
        checks = [
            e[s]["cv"]["fusion_check"]["mismatched"] for s in [*sets, "union"] if s in e and "cv" in e[s]
        ]
        lines.append(
            f"- {spec}: encoder `{e['encoder']}`, fusion check mismatches {sum(checks)}, {e['total_s']} s"
        )
    for note in out["notes"]:
        lines.append(f"- note: {note}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--set1", default=str(ROOT / "seeds" / "eval"))
    parser.add_argument("--set2", default=str(ROOT / "seeds" / "eval2"))
    parser.add_argument(
        "--models", type=lambda s: [m for m in s.split(",") if m], default=["offline", "e5-small"]
    )
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--cv", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bootstrap", type=int, default=2000)
    parser.add_argument("--config", default=None, help="inline JSON MatchConfig values (the defaults/anchor)")
    parser.add_argument("--cache", default=str(ROOT / "instance" / "eval_cache"))
    parser.add_argument("--json", default=None, help="also write the full results as JSON to this file")
    args = parser.parse_args(argv)
    # an evaluation never downloads a model: a missing one is reported as unavailable
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    out = run(args)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, ensure_ascii=False, indent=2), encoding="utf-8")
    print(markdown(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

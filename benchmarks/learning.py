"""Simulation: how fast does the learned re-ranker recover an organizer's hidden preference?

    .venv/bin/python benchmarks/learning.py                      # markdown table to stdout
    .venv/bin/python benchmarks/learning.py --runs 5 --json benchmarks/out/learning.json

Setting (issue 14 §4). Both dev sets (``seeds/eval``, ``seeds/eval2``) are indexed with the
offline encoder (TF-IDF + SVD, fitted per set, no model weights; it runs in minutes) and the
engine's hand-set weights (``MatchConfig.for_encoder``). Every product gets synthetic attributes
that the dev sets do not have:

* a **firm city**: one of the 11 Jiangxi prefecture cities (南昌市 30 %, the others evenly), put
  on the item as ``region_city``, so the engine computes its ``city`` signal against the need's
  region;
* **scale-proven** (20 % of products): the firm has signed before on the platform; its history
  gets ``hist_signed`` ≥ 1. Every product also gets unrelated history noise (responses,
  selections) so history alone is not a give-away.

The **hidden preference** of the simulated organizers: a product is worth its true grade g
(qrels, 0 when unjudged) plus ``LOCAL`` if the firm is in the need's city plus ``PROVEN`` if it
is scale-proven (``--local 1.0``, ``--proven 1.0``): a local, proven firm that only partly fits
(g = 1) is worth as much as a distant one that solves the need (g = 3). ``--gated`` gives the
bonuses to relevant products only (g ≥ 1). The hand-set weights barely see either: the
structured signal weighs 0.10 and city is 0.15 of it; history is not in the formula at all.

**Decisions.** An organizer session takes a random training need, shows the engine's top 10 and
judges candidates by the hidden value plus Gaussian noise (``--noise 0.5``): removes the shown
ones valued below ``--remove-below 0.75`` (grade 0), pins the best one if it is valued 2 or
more (2), adds up to three candidates from ranks 11–50 valued 2.5 or more (2); each kept
candidate is invited and replies with probability 0.6, by its own view (true relevance):
confirmed (2) or 「不匹配」 (0); half of the sessions end with the best candidate signed (3).
Every removal, pin, addition, reply and signing is one decision, i.e. one judgement row with the
features the app would store (:func:`matching.learning.features_for_hit`). Sessions repeat
until 50, 200 and 1000 decisions (``--checkpoints``); rows for the same (need, product) merge
into the highest grade, as in the app.

**Measured.** At each checkpoint :func:`matching.learning.train` (``algorithm="auto"``, chosen by
the number of distinct judged pairs) is trained on the decisions so far, as the app builds its
rows (``--rows app``: the engine's top 30 of every judged need, a candidate nobody acted on graded
0, plus the judged products below them; ``--rows judged``: the judged pairs only). It then
re-ranks the engine's top 50 of every **held-out** need (30 % of the judged needs of each set,
``--held-out``, never seen in a session). Reported: nDCG@10 of the hand-set order and of the
learned order against (a) the hidden preference and (b) the true qrels, and whether
:func:`matching.learning.evaluate_switch` would switch the learned ranking on from the decisions
alone. Each run redraws the attributes, the held-out split and the decisions (``--runs``,
``--seed``); the table shows the mean over runs and, for the hidden-preference gain, the lowest
and highest run.

It is a measurement script, not a test.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from matching import learning  # noqa: E402
from matching.encoders import build_encoder  # noqa: E402
from matching.engine import MatchConfig, MatchEngine  # noqa: E402
from matching.evaluate import EvalSet, _need_item, _product_item, load_set  # noqa: E402
from matching.learning import (  # noqa: E402
    FEATURES,
    K,
    build_dataset,
    choose_algorithm,
    evaluate_switch,
    features_for_hit,
    train,
)
from matching.metrics import ndcg_at_k, paired_bootstrap_ci  # noqa: E402

JIANGXI_CITIES = (
    "南昌市",
    "九江市",
    "赣州市",
    "吉安市",
    "宜春市",
    "上饶市",
    "抚州市",
    "景德镇市",
    "萍乡市",
    "新余市",
    "鹰潭市",
)
DEPTH = 50
SHOWN = 10
#: engine candidates per judged need in the app's training rows (services/matching/learning.py)
APP_CANDIDATES = 30


@dataclass
class Need:
    """A judged need of one set with the engine's top ``DEPTH`` and their features."""

    key: int  # unique across sets
    candidates: list[int]  # product keys in hand-set order
    features: list[dict[str, float]]
    true: dict[int, float]  # qrels grades
    hidden: dict[int, float]  # hidden-preference grades


def _attributes(n_products: int, rng: np.random.Generator) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Firm city, scale-proven flag and history counts (responses, selected, signed) per product."""
    probs = np.array([0.3] + [0.07] * (len(JIANGXI_CITIES) - 1))
    cities = [JIANGXI_CITIES[i] for i in rng.choice(len(JIANGXI_CITIES), size=n_products, p=probs)]
    proven = rng.random(n_products) < 0.2
    signed = np.where(proven, 1 + rng.poisson(0.8, n_products), 0)
    selected = rng.poisson(0.6, n_products) + signed
    responses = rng.poisson(2.0, n_products) + selected
    return cities, proven, np.stack([responses, selected, signed], axis=1).astype(float)


def prepare_set(
    evalset: EvalSet,
    set_index: int,
    rng: np.random.Generator,
    local: float,
    proven_bonus: float,
    gated: bool = False,
) -> list[Need]:
    """Index one set with synthetic firm cities and return its judged needs with features."""
    need_items = [_need_item(r, i) for i, r in enumerate(evalset.needs)]
    need_keys = [str(r.get("id")) for r in evalset.needs]
    product_keys = [str(r.get("id") or r.get("key")) for r in evalset.products]
    cities, proven, history = _attributes(len(evalset.products), rng)
    product_items = [
        dataclasses.replace(_product_item(r, i), region_city=cities[i])
        for i, r in enumerate(evalset.products)
    ]
    encoder = build_encoder("offline")
    config = dataclasses.replace(MatchConfig.for_encoder(encoder.name), evidence_max_hits=0)
    engine = MatchEngine(encoder, config=config)
    engine.build(need_items + product_items)
    base = set_index * 100_000
    position = {key: i for i, key in enumerate(product_keys)}
    needs: list[Need] = []
    for item in need_items:
        judged = evalset.qrels.get(need_keys[item.id])
        if not judged:
            continue
        true = {base + position[p]: float(g) for p, g in judged.items() if p in position}
        hidden = {}
        for i in range(len(product_items)):
            g = true.get(base + i, 0.0)
            if gated and g < 1:
                continue  # the gated variant: an irrelevant firm stays irrelevant
            value = g + local * (cities[i] == item.region_city) + proven_bonus * bool(proven[i])
            if value > 0:
                hidden[base + i] = value
        hits = engine.products_for(item.id, k=DEPTH)
        feats = [
            features_for_hit(
                hit,
                rank,
                dict(zip(("responses", "selected", "signed"), history[hit.id].tolist(), strict=True)),
            )
            for rank, hit in enumerate(hits, start=1)
        ]
        needs.append(
            Need(
                key=base + item.id,
                candidates=[base + h.id for h in hits],
                features=feats,
                true=true,
                hidden=hidden,
            )
        )
    return needs


def session(
    need: Need, rng: np.random.Generator, noise: float, remove_below: float
) -> list[tuple[int, int, dict[str, float], int]]:
    """One organizer's decisions on one need, and the invited firms' replies, in order."""
    perceived = {c: need.hidden.get(c, 0.0) + rng.normal(0.0, noise) for c in need.candidates}
    shown = list(range(min(SHOWN, len(need.candidates))))
    decisions: list[tuple[int, int, dict[str, float], int]] = []

    def decide(i: int, grade: int) -> None:
        decisions.append((need.key, need.candidates[i], need.features[i], grade))

    def value(i: int) -> float:
        return perceived[need.candidates[i]]

    kept = []
    for i in shown:
        if value(i) < remove_below:
            decide(i, 0)  # shown in the top 10 and removed
        else:
            kept.append(i)
    pinned = max(kept, key=value) if kept and max(value(i) for i in kept) >= 2.0 else None
    if pinned is not None:
        decide(pinned, 2)  # pinned
    deeper = sorted(range(len(shown), len(need.candidates)), key=lambda i: -value(i))
    added = [i for i in deeper[:3] if value(i) >= 2.5]
    for i in added:
        decide(i, 2)  # added by the organizer
    for i in kept:
        if i == pinned:
            continue
        # the invited firm replies (its own view: the true relevance); no reply = no judgement
        if rng.random() < 0.6:
            decide(i, 2 if need.true.get(need.candidates[i], 0.0) >= 1 else 0)  # confirmed / 「不匹配」
    shortlist = kept + added
    if shortlist and rng.random() < 0.5:
        best = max(shortlist, key=value)
        if value(best) >= 1.5:
            decide(best, 3)  # signed
    return decisions


def training_rows(
    decisions: list[tuple[int, int, dict[str, float], int]], by_key: dict[int, Need], mode: str
) -> tuple[list[tuple[int, int, dict[str, float], int]], int]:
    """The rows handed to :func:`build_dataset`, and the number of distinct judgements.

    ``"judged"``: the judged (need, product) pairs only. ``"app"`` (as
    ``marketplace.services.matching.learning.training_rows`` does): for every judged need the
    engine's top :data:`APP_CANDIDATES`, a candidate nobody acted on graded 0, plus the judged
    products below them.
    """
    grades: dict[tuple[int, int], int] = {}
    for need_key, product, _feats, grade in decisions:
        grades[(need_key, product)] = max(grade, grades.get((need_key, product), 0))
    if mode == "judged":
        return decisions, len(grades)
    rows = []
    for need_key in dict.fromkeys(d[0] for d in decisions):
        need = by_key[need_key]
        for i, product in enumerate(need.candidates):
            if i < APP_CANDIDATES or (need_key, product) in grades:
                rows.append((need_key, product, need.features[i], grades.get((need_key, product), 0)))
    return rows, len(grades)


def _ndcg(order: list[int], judged: dict[int, float]) -> float | None:
    return ndcg_at_k(order, judged, K)


def score_held_out(model: Any, needs: list[Need]) -> dict[str, list[float | None]]:
    """Per held-out need: nDCG@10 of hand-set and learned order against hidden and true grades."""
    out: dict[str, list[float | None]] = {
        "hidden_handset": [],
        "hidden_learned": [],
        "hidden_ceiling": [],
        "true_handset": [],
        "true_learned": [],
        "true_ceiling": [],
    }
    for need in needs:
        handset = need.candidates
        scores = model.score(need.features).tolist() if model is not None else [0.0] * len(handset)
        learned = [
            c for _s, _r, c in sorted(zip((-s for s in scores), range(len(handset)), handset, strict=True))
        ]
        ceiling = sorted(handset, key=lambda c: -need.hidden.get(c, 0.0))
        out["hidden_handset"].append(_ndcg(handset, need.hidden))
        out["hidden_learned"].append(_ndcg(learned, need.hidden))
        out["hidden_ceiling"].append(_ndcg(ceiling, need.hidden))
        out["true_handset"].append(_ndcg(handset, need.true))
        out["true_learned"].append(_ndcg(learned, need.true))
        out["true_ceiling"].append(_ndcg(ceiling, need.true))
    return out


def _mean(values: list[float | None]) -> float:
    defined = [v for v in values if v is not None]
    return float(np.mean(defined)) if defined else 0.0


def run_once(
    sets: list[EvalSet], run_seed: int, args: argparse.Namespace
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    rng = np.random.default_rng(run_seed)
    needs_by_set = [
        prepare_set(s, i + 1, rng, args.local, args.proven, args.gated) for i, s in enumerate(sets)
    ]
    by_key = {need.key: need for needs in needs_by_set for need in needs}
    train_needs: list[Need] = []
    held_out: list[Need] = []
    for needs in needs_by_set:
        order = rng.permutation(len(needs))
        cut = int(round(args.held_out * len(needs)))
        held_out += [needs[i] for i in order[:cut]]
        train_needs += [needs[i] for i in order[cut:]]
    decisions: list[tuple[int, int, dict[str, float], int]] = []
    target = max(args.checkpoints)
    while len(decisions) < target:
        decisions += session(
            train_needs[int(rng.integers(len(train_needs)))], rng, args.noise, args.remove_below
        )
    rows = []
    for n in args.checkpoints:
        train_rows, n_judged = training_rows(decisions[:n], by_key, args.rows)
        dataset = build_dataset(train_rows)
        algorithm = choose_algorithm(n_judged, args.algorithm)
        started = time.perf_counter()
        model = train(dataset, algorithm=algorithm, seed=run_seed)
        train_s = time.perf_counter() - started
        scores = score_held_out(model, held_out)
        paired = paired_bootstrap_ci(scores["hidden_learned"], scores["hidden_handset"], seed=run_seed)
        switch = evaluate_switch(dataset, seed=run_seed, algorithm=algorithm, n_judgements=n_judged)
        rows.append(
            {
                "decisions": n,
                "judgements": n_judged,
                "rows": dataset.n_judgements,
                "needs": len(dataset.needs),
                "algorithm": model.algorithm,
                "train_s": round(train_s, 3),
                **{name: round(_mean(v), 4) for name, v in scores.items()},
                "hidden_diff": round(float(paired["diff"]), 4),
                "hidden_diff_ci95": [round(float(x), 4) for x in paired["ci"]],  # type: ignore[union-attr]
                "switch_on": switch.switch_on,
                "switch_diff": switch.metrics.get("diff"),
                "switch_reason": switch.reason,
                "top_features": sorted(model.importances().items(), key=lambda kv: -kv[1])[:3],
            }
        )
    info = {
        "seed": run_seed,
        "train_needs": len(train_needs),
        "held_out_needs": len(held_out),
        "sessions_decisions": len(decisions),
    }
    return rows, info


def table(runs: list[list[dict[str, Any]]], checkpoints: list[int]) -> str:
    lines = [
        "| decisions | judged pairs | model | hidden nDCG@10 hand-set | hidden nDCG@10 learned "
        "| gain (min … max run) | true nDCG@10 hand-set | true nDCG@10 learned | switched on |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c, n in enumerate(checkpoints):
        rows = [r[c] for r in runs]
        algos = sorted({r["algorithm"] for r in rows})
        gains = [r["hidden_diff"] for r in rows]

        def avg(name: str, rows: list[dict[str, Any]] = rows) -> float:
            return float(np.mean([r[name] for r in rows]))

        lines.append(
            f"| {n} | {avg('judgements'):.0f} | {', '.join(algos)} "
            f"| {avg('hidden_handset'):.3f} | {avg('hidden_learned'):.3f} "
            f"| {avg('hidden_diff'):+.3f} ({min(gains):+.3f} … {max(gains):+.3f}) "
            f"| {avg('true_handset'):.3f} | {avg('true_learned'):.3f} "
            f"| {sum(r['switch_on'] for r in rows)}/{len(rows)} |"
        )
    ceiling = float(np.mean([r[0]["hidden_ceiling"] for r in runs]))
    ceiling_true = float(np.mean([r[0]["true_ceiling"] for r in runs]))
    lines.append("")
    lines.append(
        f"Ceiling (the engine's top 50 re-ordered by the hidden preference itself): hidden nDCG@10 "
        f"{ceiling:.3f}, true nDCG@10 {ceiling_true:.3f}."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--set1", default=str(ROOT / "seeds" / "eval"))
    parser.add_argument("--set2", default=str(ROOT / "seeds" / "eval2"))
    parser.add_argument("--checkpoints", default="50,200,1000", help="decision counts to train at")
    parser.add_argument("--runs", type=int, default=5, help="independent simulation runs")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first run")
    parser.add_argument("--held-out", type=float, default=0.3, help="share of each set's needs held out")
    parser.add_argument("--noise", type=float, default=0.5, help="sd of the organizer's judgement noise")
    parser.add_argument(
        "--remove-below",
        type=float,
        default=1.5,
        help="the organizer removes shown candidates valued below this",
    )
    parser.add_argument("--local", type=float, default=1.0, help="hidden bonus of a local firm")
    parser.add_argument("--proven", type=float, default=1.0, help="hidden bonus of a scale-proven product")
    parser.add_argument(
        "--gated", action="store_true", help="the bonuses apply only to relevant products (true grade >= 1)"
    )
    parser.add_argument(
        "--rows",
        default="app",
        choices=["app", "judged"],
        help="training rows: the app's (top 30 per judged need, unacted = 0) or the judged pairs only",
    )
    parser.add_argument("--algorithm", default="auto", choices=["auto", "logistic", "lambdarank"])
    parser.add_argument(
        "--no-monotone",
        action="store_true",
        help="drop the models' monotone constraints (matching.learning.MONOTONE), to measure what they do",
    )
    parser.add_argument("--json", default=None, help="also write all numbers to this file")
    args = parser.parse_args(argv)
    args.checkpoints = sorted(int(x) for x in str(args.checkpoints).split(","))
    if args.no_monotone:
        learning.MONOTONE.clear()
    sets = [load_set(args.set1, name="set1")]
    if Path(args.set2).exists():
        sets.append(load_set(args.set2, name="set2"))
    started = time.perf_counter()
    runs, infos = [], []
    for r in range(args.runs):
        rows, info = run_once(sets, args.seed + r, args)
        runs.append(rows)
        infos.append(info)
        print(f"run {r + 1}/{args.runs} done ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    elapsed = time.perf_counter() - started
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        out = {"args": dict(vars(args)), "runs": runs, "info": infos, "features": FEATURES}
        path.write_text(json.dumps(out, ensure_ascii=False, indent=2), encoding="utf-8")
    print(table(runs, args.checkpoints))
    print()
    print(
        f"{args.runs} runs, sets: {', '.join(s.name for s in sets)}; "
        f"{infos[0]['train_needs']} training / {infos[0]['held_out_needs']} held-out needs per run; "
        f"rows: {args.rows}; hidden preference: {'gated' if args.gated else 'additive'}, "
        f"local +{args.local}, proven +{args.proven}; noise {args.noise}"
        f"{'; no monotone constraints' if args.no_monotone else ''}; {elapsed:.0f} s in all."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""How long does a fine-tuning epoch of e5-small take here, and what does it do to held-out needs?

    .venv/bin/python benchmarks/finetune.py                     # 200 pairs, frozen word embedding
    .venv/bin/python benchmarks/finetune.py --unfrozen          # also train the word embedding
    .venv/bin/python benchmarks/finetune.py --pairs 200 --no-eval --threads 2

Pairs (issue 14 §3, synthetic stand-ins for the platform's judgements): every (need, product)
of the dev sets ``seeds/eval`` and ``seeds/eval2`` (its two parts) judged 2 or 3 is a pair (need
text → product text, the engine's :func:`matching.document_text` of the evaluation items, both
with ``passage: `` as the engine encodes them); a product judged 0 for the same need is its hard
negative. The needs of each set are split as the app splits them
(:func:`matching.finetune.split_needs`); ``--pairs`` pairs of the training needs (shuffled, seed
0) train one epoch of :func:`matching.finetune.fine_tune` (batch 16, 128 tokens by default, lr 2e-5).

Measured: the wall time of the epoch (model loading excluded), the optimizer steps, the frozen
and trained parameters, and the peak resident memory; then (unless ``--no-eval``) the dense
nDCG@10 of the base model and of the fine-tuned one on the **held-out** needs of each set (never
trained on), each need ranked against its own set's products. The folder is written to a
temporary directory and deleted.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from matching import document_text  # noqa: E402
from matching import finetune as ft  # noqa: E402
from matching.evaluate import _need_item, _product_item, load_set  # noqa: E402
from matching.models import PASSAGE_PROMPT, QUERY_PROMPT, installed_model  # noqa: E402

SETS = ("seeds/eval", "seeds/eval2")


def load(sets=SETS):
    """Per set: (need texts, product texts, qrels), ids prefixed by the set name."""
    out = []
    for name in sets:
        dev = load_set(ROOT / name)
        needs = {f"{name}:{r['id']}": document_text(_need_item(r, i)) for i, r in enumerate(dev.needs)}
        products = {f"{name}:{r.get('id') or r.get('key')}": document_text(_product_item(r, i))
                    for i, r in enumerate(dev.products)}
        qrels = {f"{name}:{n}": {f"{name}:{p}": g for p, g in judged.items()}
                 for n, judged in dev.qrels.items()}
        out.append((name, needs, products, qrels))
    return out


def pairs_of(needs, products, qrels, keep) -> list[ft.TrainingPair]:
    pairs = []
    for need, judged in sorted(qrels.items()):
        if need not in keep or need not in needs:
            continue
        negatives = sorted(p for p, g in judged.items() if g == 0 and p in products)
        positives = sorted(p for p, g in judged.items() if g >= 2 and p in products)
        for i, product in enumerate(positives):
            negative = products[negatives[i % len(negatives)]] if negatives else None
            pairs.append(ft.TrainingPair(need, product, needs[need], products[product], negative))
    return pairs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=ft.DEFAULT_BATCH_SIZE)
    parser.add_argument("--max-seq-length", type=int, default=ft.DEFAULT_MAX_SEQ_LENGTH)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--unfrozen", action="store_true",
                        help="also time an epoch with the word embedding trained")
    parser.add_argument("--no-eval", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    base = installed_model()
    if base is None:
        print("e5-small is not installed: python -m matching.models install e5-small", file=sys.stderr)
        return 1
    sets = load()
    train_pairs: list[ft.TrainingPair] = []
    held_sets = []
    for name, needs, products, qrels in sets:
        train, held = ft.split_needs(sorted(n for n in qrels if n in needs))
        train_pairs += pairs_of(needs, products, qrels, train)
        held_sets.append((name, {n: needs[n] for n in held}, products, {n: qrels[n] for n in held}))
    random.Random(0).shuffle(train_pairs)
    chosen = train_pairs[: args.pairs]
    load_avg = os.getloadavg()
    report: dict = {"pairs": len(chosen), "available_pairs": len(train_pairs), "cpus": os.cpu_count(),
                    "load_average_before": [round(v, 1) for v in load_avg], "runs": {}}
    tmp = Path(tempfile.mkdtemp(prefix="ft-bench-"))
    try:
        variants = [("frozen", True)] + ([("unfrozen", False)] if args.unfrozen else [])
        for label, freeze in variants:
            result = ft.fine_tune(
                base, chosen, tmp / label, anchor_prompt=PASSAGE_PROMPT, positive_prompt=PASSAGE_PROMPT,
                batch_size=args.batch_size, max_seq_length=args.max_seq_length, threads=args.threads,
                freeze_words=freeze,
            )
            report["runs"][label] = {
                "seconds": result.seconds, "cpu_seconds": result.cpu_seconds, "steps": result.steps,
                "triplets": result.triplets,
                "frozen_parameters": result.frozen_parameters,
                "trainable_parameters": result.trainable_parameters,
                "loss_first_last": [result.losses[0], result.losses[-1]],
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                "load_average_after": [round(v, 1) for v in os.getloadavg()],
            }
            print(f"{label}: {result.seconds:.1f}s for {result.steps} steps ({len(chosen)} pairs, "
                  f"{result.triplets} with a hard negative)", file=sys.stderr)
        if not args.no_eval:
            from matching.encoders import E5SmallEncoder

            reference = E5SmallEncoder(base.parent)
            candidate = ft.FineTunedEncoder(tmp / "frozen", base_name="e5-small", query_prompt=QUERY_PROMPT,
                                            document_prompt=PASSAGE_PROMPT)
            ref_all: dict = {}
            cand_all: dict = {}
            started = time.perf_counter()
            for _name, needs, products, qrels in held_sets:
                ref_all.update(ft.dense_ndcg(reference, needs, products, qrels))
                cand_all.update(ft.dense_ndcg(candidate, needs, products, qrels))
            comparison = ft.compare(ref_all, cand_all)
            report["held_out"] = {**comparison.to_dict(), "seconds": round(time.perf_counter() - started, 1)}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    text = json.dumps(report, ensure_ascii=False, indent=2)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

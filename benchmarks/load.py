"""Throughput, cold starts and memory of the portal under gunicorn, against two anchor apps.

    python benchmarks/load.py [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/test]
                              [--workers 2] [--duration 15] [--model e5-small|offline]

One command (issue 13):

1. creates a fresh database next to ``--database-url`` (``bench_load_<pid>``, dropped at the
   end; a temporary file for ``sqlite:``), migrates it with ``flask db upgrade`` and fills it with
   the synthetic 10k needs / 50k products catalogue of ``benchmarks/portal.py`` (its
   :func:`generate`);
2. builds the indexes the way production does, through the CLI: ``flask matching rebuild``
   (encodes the published entries with ``--model``) and ``flask search rebuild`` when it exists,
   then ``VACUUM ANALYZE`` (autovacuum's work after a bulk load);
3. starts ``MATCHING_PRELOAD=1 OMP_NUM_THREADS=1 gunicorn --preload -w N`` on port 5104, and the
   anchor apps (``benchmarks/load_anchors.py``) under the same settings on 5105 (a template of
   the home page's size) and 5106 (the same plus one ``SELECT 1``);
4. runs ``wrk -t2 -c8 -d<duration>s`` against every page of the issue and both anchors (anchors
   before and after the pages; their mean is the reference) and prints a markdown table;
5. measures page 200 against page 1 of ``/products``, the first search after the workers start,
   the first search after a publish against a warm one, the private memory (USS, from
   ``/proc/<pid>/smaps_rollup``) of each worker after warm-up, and, at ``-w 1``, ``-w 2`` and
   ``-w 4``, a cold start plus a publish under load: any 5xx, socket timeout, request slower
   than gunicorn's 30 s timeout or ``WORKER TIMEOUT`` in gunicorn's log is reported.

Rate limits are switched off in the served app (``RATE_LIMITS=0``): ``RATELIMIT_API`` would
otherwise answer most API requests with 429. wrk sends no cookies and no validators: in the main
table every request after the first of a page is answered from the workers' page cache
(``marketplace/http_cache.py``: one stamp query, no rendering), as a popular public page is in
production. A second pass restarts the app with ``HTTP_PAGE_CACHE_BYTES=0`` so that every request
renders its page (what a page costs after each publication, for a deep page or a new search, and
for signed-in users), and one extra row measures clients that revalidate (304). It is a
measurement script, not a test.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("SECRET_KEY", "benchmark-only")

APP_PORT, PLAIN_PORT, QUERY_PORT = 5104, 5105, 5106
GUNICORN_TIMEOUT = 30
#: Pages of the issue's table: (label, path; ``{opportunity}`` is the first published need),
#: and the target share of the one-query anchor.
PAGES: list[tuple[str, str, float]] = [
    ("/", "/", 0.5),
    ("/opportunities", "/opportunities", 0.3),
    ("/products", "/products", 0.3),
    ("/products?page=200", "/products?page=200", 0.3),
    ("/products?tag=物联网&maturity=pilot", "/products?tag=物联网&maturity=pilot", 0.3),
    ("/search?q=停车", "/search?q=停车", 0.3),
    ("/search?q=养老 智能 监测", "/search?q=养老 智能 监测", 0.3),
    ("/opportunities/<id>", "/opportunities/{opportunity}", 0.5),
    ("/api/v1/search?q=停车&side=products&k=20", "/api/v1/search?q=停车&side=products&k=20", 0.3),
]
SEARCH = "/search?q=停车"
API_SEARCH = "/api/v1/search?q=停车&side=products&k=20"


def encoded(path: str) -> str:
    return quote(path, safe="/?=&")


# -------------------------------------------------------------------- database


def fresh_database(url: str | None, workdir: Path) -> tuple[str, callable]:
    """A new empty database and the function that drops it."""
    if url is None:
        url = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    if url.startswith("sqlite"):
        return f"sqlite:///{workdir / 'load.db'}", lambda: None
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    base = make_url(url)
    if base.drivername == "postgresql":
        base = base.set(drivername="postgresql+psycopg")
    name = f"bench_load_{os.getpid()}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return base.set(database=name).render_as_string(hide_password=False), drop


def flask(env: dict[str, str], *args: str) -> tuple[float, str]:
    """Run ``flask <args>``; (seconds, output). Raises on failure."""
    started = time.perf_counter()
    done = subprocess.run([str(ROOT / ".venv/bin/flask"), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"flask {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return time.perf_counter() - started, done.stdout + done.stderr


def has_command(env: dict[str, str], group: str, command: str) -> bool:
    done = subprocess.run([str(ROOT / ".venv/bin/flask"), group, "--help"], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    return done.returncode == 0 and re.search(rf"^\s+{command}\s", done.stdout, re.M) is not None


def build(env: dict[str, str], args) -> dict[str, object]:
    """Schema, catalogue and indexes; returns what it measured."""
    facts: dict[str, object] = {}
    try:
        facts["migrate_s"], _ = flask(env, "db", "upgrade")
        facts["schema"] = "flask db upgrade"
    except RuntimeError as exc:  # a tree in the middle of a change: say so and go on
        print(f"!! flask db upgrade failed, using db.create_all():\n{str(exc)[-800:]}", file=sys.stderr)
        facts["schema"] = "db.create_all() (flask db upgrade failed)"
    from benchmarks.portal import generate
    from marketplace import create_app
    from marketplace.extensions import db

    app = create_app(app_config(env))
    with app.app_context():
        if facts["schema"] != "flask db upgrade":
            db.create_all()
        started = time.perf_counter()
        facts["rows"] = generate(args.opportunities, args.products, args.seed)
        facts["generate_s"] = time.perf_counter() - started
        facts["first_opportunity"] = first_published_opportunity()
    facts["matching_rebuild_s"], _ = flask(env, "matching", "rebuild")
    if has_command(env, "search", "rebuild"):
        facts["search_rebuild_s"], _ = flask(env, "search", "rebuild")
    facts["analyze_s"] = analyze(env["DATABASE_URL"])
    return facts


def analyze(url: str) -> float:
    """``VACUUM ANALYZE`` (``ANALYZE`` on SQLite) after the bulk load, as autovacuum would do in
    production: the test server may run without it, and with the statistics of empty tables the
    planner scans the 51k-row embedding cache instead of using its key."""
    from sqlalchemy import create_engine, text

    started = time.perf_counter()
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(text("VACUUM ANALYZE" if engine.dialect.name == "postgresql" else "ANALYZE"))
    finally:
        engine.dispose()
    return time.perf_counter() - started


def app_config(env: dict[str, str]) -> dict[str, object]:
    return {"SQLALCHEMY_DATABASE_URI": env["DATABASE_URL"], "MATCHING_INDEX_DIR": env["MATCHING_INDEX_DIR"],
            "MATCHING_MODEL": env["MATCHING_MODEL"], "HUEY_SQLITE_PATH": env["HUEY_SQLITE_PATH"],
            "HUEY_IMMEDIATE": False, "RATE_LIMITS_ENABLED": False}


def first_published_opportunity() -> int:
    from sqlalchemy import func, select

    from marketplace.extensions import db
    from marketplace.models import EntryStatus, Opportunity

    published = Opportunity.status == EntryStatus.PUBLISHED
    return db.session.scalar(select(func.min(Opportunity.id)).where(published))


class Publisher:
    """Publishes small product batches through the service, as an organizer would."""

    def __init__(self, env: dict[str, str]) -> None:
        from marketplace import create_app

        self.app = create_app(app_config(env))
        self.n = 0

    def publish(self, size: int = 20) -> float:
        """Move ``size`` approved products into a new batch and publish it; seconds of the service."""
        from sqlalchemy import select, update

        from marketplace.extensions import db
        from marketplace.models import Batch, BatchStatus, EntryStatus, Product, Role, User
        from marketplace.services import batches

        with self.app.app_context():
            actor = db.session.scalar(select(User).where(User.email == "load-organizer@example.cn"))
            if actor is None:
                actor = User(email="load-organizer@example.cn", name="压测组织方", role=Role.ORGANIZER,
                             password_hash="!", active=True)
                db.session.add(actor)
            self.n += 1
            batch = Batch(kind="product", title=f"压测第{self.n}批产品清单", status=BatchStatus.COLLECTING)
            db.session.add(batch)
            db.session.flush()
            # Setup: approved products first, then drafts and submissions, accepted into the batch.
            waiting = (EntryStatus.APPROVED, EntryStatus.SUBMITTED, EntryStatus.DRAFT)
            ids = list(db.session.scalars(
                select(Product.id).where(Product.status.in_(waiting))
                .order_by(Product.status != EntryStatus.APPROVED, Product.id).limit(size)))
            db.session.execute(update(Product).where(Product.id.in_(ids))
                               .values(batch_id=batch.id, status=EntryStatus.APPROVED))
            db.session.commit()
            started = time.perf_counter()
            batches.publish_batch(actor, batch)
            return time.perf_counter() - started


# -------------------------------------------------------------------- processes


@dataclass
class Server:
    name: str
    port: int
    target: str
    env: dict[str, str]
    workers: int
    log: Path
    process: subprocess.Popen | None = None
    started_s: float = 0.0
    extra: dict[str, str] = field(default_factory=dict)

    def start(self) -> None:
        log = self.log.open("a")
        command = [str(ROOT / ".venv/bin/gunicorn"), "--preload", "-w", str(self.workers), "-b",
                   f"127.0.0.1:{self.port}", "--timeout", str(GUNICORN_TIMEOUT), self.target]
        started = time.perf_counter()
        self.process = subprocess.Popen(command, cwd=ROOT, env={**self.env, **self.extra}, stdout=log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        ready = "/favicon.ico" if self.name == "app" else "/"
        deadline = time.time() + 300
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited; see {self.log}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{ready}", timeout=5) as r:
                    if r.status == 200 and len(self.worker_pids()) == self.workers:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        else:
            raise RuntimeError(f"{self.name} did not start; see {self.log}")
        self.started_s = time.perf_counter() - started

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def worker_pids(self) -> list[int]:
        if self.process is None:
            return []
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            return [int(p) for p in path.read_text().split()]
        except OSError:
            return []


def memory(pid: int) -> dict[str, float]:
    """RSS, PSS and USS (private clean + dirty) of a process, in MB."""
    values: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[-1] == "kB":
            values[parts[0].rstrip(":")] = int(parts[1])
    uss = values.get("Private_Clean", 0) + values.get("Private_Dirty", 0)
    return {"rss": values.get("Rss", 0) / 1024, "pss": values.get("Pss", 0) / 1024, "uss": uss / 1024}


def get(port: int, path: str, headers: dict[str, str] | None = None,
        timeout: float = 60) -> tuple[int, float]:
    """(status, seconds) of one GET."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{encoded(path)}", headers=headers or {})
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        status = 0  # no answer within ``timeout``
    return status, time.perf_counter() - started


def concurrent_gets(port: int, path: str, n: int) -> list[tuple[int, float]]:
    """``n`` simultaneous GETs: with sync workers each idle worker takes one."""
    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        return list(pool.map(lambda _: get(port, path), range(n)))


# -------------------------------------------------------------------- wrk


@dataclass
class WrkResult:
    rps: float
    max_latency_s: float
    non_2xx: int
    timeouts: int
    errors: int
    requests: int


def _seconds(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value).groups()
    return float(number) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]


def wrk(port: int, path: str, duration: int, script: Path | None = None,
        headers: dict[str, str] | None = None) -> WrkResult:
    command = ["wrk", "-t2", "-c8", f"-d{duration}s", "--timeout", f"{GUNICORN_TIMEOUT + 5}s"]
    for key, value in (headers or {}).items():
        command += ["-H", f"{key}: {value}"]
    if script is not None:
        command += ["-s", str(script)]
    command.append(f"http://127.0.0.1:{port}{encoded(path)}")
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    latency = re.search(r"Latency\s+(\S+)\s+(\S+)\s+(\S+)", out)
    sockets = re.search(r"connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return WrkResult(
        rps=float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        max_latency_s=_seconds(latency.group(3)) if latency else 0.0,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        timeouts=int(sockets.group(4)) if sockets else 0,
        errors=sum(int(sockets.group(i)) for i in (1, 2, 3)) if sockets else 0,
        requests=int(re.search(r"(\d+) requests in", out).group(1)),
    )


def rotating_script(paths: list[str], folder: Path) -> Path:
    """A wrk script that cycles through ``paths``."""
    listed = ", ".join(f'"{encoded(p)}"' for p in paths)
    script = folder / "rotate.lua"
    script.write_text(
        f"local paths = {{{listed}}}\nlocal i = 0\n"
        "request = function()\n  i = i % #paths + 1\n  return wrk.format(\"GET\", paths[i])\nend\n"
    )
    return script


# -------------------------------------------------------------------- the run


def warm(port: int, paths: list[str], rounds: int) -> None:
    for _ in range(rounds):
        for path in paths:
            concurrent_gets(port, path, 2)


def timeouts_in_log(log: Path, offset: int) -> int:
    text = log.read_text(errors="replace")[offset:]
    return text.count("WORKER TIMEOUT") + text.count("Traceback")


def worker_check(app: Server, workers: int, paths: list[str], script: Path, publisher: Publisher,
                 duration: int) -> dict[str, object]:
    """A cold start at ``workers`` workers under load, then a publish under load."""
    app.stop()
    app.workers = workers
    offset = app.log.stat().st_size if app.log.exists() else 0
    app.start()
    firsts = concurrent_gets(APP_PORT, SEARCH, workers)  # each fresh worker's first search
    cold = wrk(APP_PORT, "/", duration, script)
    publisher.publish()
    after_publish = concurrent_gets(APP_PORT, SEARCH, workers)
    after = wrk(APP_PORT, "/", max(duration // 2, 5), script)
    uss = [memory(pid)["uss"] for pid in app.worker_pids()]
    singles = firsts + after_publish
    return {
        "workers": workers,
        "first_s": max(s for _, s in firsts),
        "after_publish_s": max(s for _, s in after_publish),
        "single_failures": sum(1 for code, _ in singles if code != 200),
        "requests": cold.requests + after.requests,
        "non_2xx": cold.non_2xx + after.non_2xx,
        "socket_timeouts": cold.timeouts + after.timeouts,
        "max_latency_s": max(cold.max_latency_s, after.max_latency_s),
        "log_timeouts": timeouts_in_log(app.log, offset),
        "uss_mb": max(uss) if uss else float("nan"),
        "rps": (cold.rps + after.rps) / 2,
    }


def main() -> None:  # noqa: C901  (one linear script)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="server to create the throwaway database on (default "
                        "postgresql+psycopg://postgres@127.0.0.1:5432/postgres; sqlite:// for a file)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--duration", type=int, default=15, help="seconds of wrk per page")
    parser.add_argument("--model", default=os.environ.get("MATCHING_MODEL") or "e5-small",
                        help="MATCHING_MODEL of the served app (default e5-small, as in production)")
    parser.add_argument("--opportunities", type=int, default=10_000)
    parser.add_argument("--products", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--skip-worker-check", action="store_true", help="leave out the -w 1/2/4 check")
    parser.add_argument("--skip-render-pass", action="store_true",
                        help="leave out the second pass with the page cache turned off")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install -y wrk)")

    workdir = Path(tempfile.mkdtemp(prefix="bench-load-"))
    url, drop = fresh_database(args.database_url, workdir)
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "FLASK_APP": "wsgi.py",
        "PYTHONPATH": str(ROOT),
        "MATCHING_MODEL": args.model,
        "MATCHING_INDEX_DIR": str(workdir / "index"),
        "HUEY_SQLITE_PATH": str(workdir / "huey.db"),
        "RATE_LIMITS": "0",
        "OMP_NUM_THREADS": "1",
        "MATCHING_PRELOAD": "1",
        "LOAD_ANCHOR_TEMPLATE": str(workdir / "anchor"),
    }
    os.environ.update({k: env[k] for k in ("DATABASE_URL", "MATCHING_MODEL", "MATCHING_INDEX_DIR",
                                           "HUEY_SQLITE_PATH")})
    servers: list[Server] = []
    try:
        print(f"database: {url.rsplit('@', 1)[-1]}   model: {args.model}   workers: {args.workers}")
        facts = build(env, args)
        print("rows: " + ", ".join(f"{k} {v}" for k, v in facts["rows"].items()))
        print(f"schema: {facts['schema']}; generate {facts['generate_s']:.0f} s; "
              f"flask matching rebuild {facts['matching_rebuild_s']:.0f} s"
              + (f"; flask search rebuild {facts['search_rebuild_s']:.0f} s" if "search_rebuild_s" in facts
                 else "; no `flask search rebuild` in this tree"))
        paths = [(label, path.format(opportunity=facts["first_opportunity"]), target)
                 for label, path, target in PAGES]

        app = Server("app", APP_PORT, "wsgi:app", env, args.workers, workdir / "app.log")
        servers.append(app)
        app.start()
        print(f"app started in {app.started_s:.1f} s (gunicorn --preload -w {args.workers})")
        warm(APP_PORT, [p for _, p, _ in paths], 3)

        # The anchors: the home page's HTML as a template with one variable.
        (workdir / "anchor").mkdir()
        home = urllib.request.urlopen(f"http://127.0.0.1:{APP_PORT}/").read().decode()
        (workdir / "anchor" / "page.html").write_text(home.replace("全景江西", "{{ title }}", 1))
        plain = Server("plain", PLAIN_PORT, "benchmarks.load_anchors:plain()", env, args.workers,
                       workdir / "plain.log")
        one_query = Server("one-query", QUERY_PORT, "benchmarks.load_anchors:one_query()", env,
                           args.workers, workdir / "query.log")
        servers += [plain, one_query]
        plain.start()
        one_query.start()
        warm(PLAIN_PORT, ["/"], 5)
        warm(QUERY_PORT, ["/"], 5)

        d = args.duration
        anchors_before = (wrk(PLAIN_PORT, "/", d).rps, wrk(QUERY_PORT, "/", d).rps)
        results = {label: wrk(APP_PORT, path, d) for label, path, _ in paths}
        etag = urllib.request.urlopen(f"http://127.0.0.1:{APP_PORT}/").headers.get("ETag")
        revalidated = wrk(APP_PORT, "/", d, headers={"If-None-Match": etag}) if etag else None
        rendered = {}
        if not args.skip_render_pass:
            app.stop()
            app.extra["HTTP_PAGE_CACHE_BYTES"] = "0"
            app.start()
            warm(APP_PORT, [p for _, p, _ in paths], 3)
            rendered = {label: wrk(APP_PORT, path, d) for label, path, _ in paths}
            app.stop()
            del app.extra["HTTP_PAGE_CACHE_BYTES"]
            app.start()
            warm(APP_PORT, [p for _, p, _ in paths], 3)
        anchors_after = (wrk(PLAIN_PORT, "/", d).rps, wrk(QUERY_PORT, "/", d).rps)
        plain_rps = statistics.mean([anchors_before[0], anchors_after[0]])
        query_rps = statistics.mean([anchors_before[1], anchors_after[1]])
        usage = {pid: memory(pid) for pid in app.worker_pids()}
        plain.stop()
        one_query.stop()

        print(f"\n## wrk -t2 -c8 -d{d}s, gunicorn -w {args.workers}, "
              f"{len(home):,} characters on the home page\n")
        print(f"anchors: template only {plain_rps:,.0f} req/s (runs: {anchors_before[0]:,.0f}, "
              f"{anchors_after[0]:,.0f}); template + SELECT 1 {query_rps:,.0f} req/s "
              f"(runs: {anchors_before[1]:,.0f}, {anchors_after[1]:,.0f})\n")
        print("| page | req/s | share of the one-query anchor | target | met? | rendered every time "
              "(page cache off): req/s | share |")
        print("|---|---|---|---|---|---|---|")
        for label, _, target in paths:
            result = results[label]
            share = result.rps / query_rps
            bad = f" ({result.non_2xx} non-2xx)" if result.non_2xx else ""
            other = rendered.get(label)
            tail = (f"{other.rps:,.0f}{f' ({other.non_2xx} non-2xx)' if other.non_2xx else ''} | "
                    f"{other.rps / query_rps:.0%} |" if other else "– | – |")
            print(f"| `{label}` | {result.rps:,.0f}{bad} | {share:.0%} | ≥ {target:.0%} | "
                  f"{'yes' if share >= target and not result.non_2xx else '**no**'} | {tail}")
        if revalidated is not None:
            print(f"| `/` revalidated (If-None-Match → 304) | {revalidated.rps:,.0f} | "
                  f"{revalidated.rps / query_rps:.0%} | – | – |")

        for name, table in (("page cache", results), ("rendered", rendered)):
            if not table:
                continue
            page1, page200 = table["/products"].rps, table["/products?page=200"].rps
            met = "met" if page200 >= 0.8 * page1 else "NOT met"
            print(f"\n- /products page 200 vs page 1 ({name}): {page200:,.0f} vs {page1:,.0f} req/s "
                  f"({page200 / page1 - 1:+.0%}; target within 20%: {met})")
        for pid, m in sorted(usage.items()):
            print(f"- worker {pid} after warm-up: USS {m['uss']:.0f} MB, PSS {m['pss']:.0f} MB, "
                  f"RSS {m['rss']:.0f} MB (target USS ≤ 250 MB: {'met' if m['uss'] <= 250 else 'NOT met'})")

        # First searches after the workers start.
        app.stop()
        app.start()
        firsts = concurrent_gets(APP_PORT, SEARCH, args.workers)
        api_firsts = concurrent_gets(APP_PORT, API_SEARCH, args.workers)
        worst = max(s for _, s in firsts)
        print(f"- first {SEARCH} in each of {args.workers} fresh workers: "
              + ", ".join(f"{s * 1000:.0f} ms ({code})" for code, s in firsts)
              + f" (target ≤ 500 ms: {'met' if worst <= 0.5 else 'NOT met'}); first API search: "
              + ", ".join(f"{s * 1000:.0f} ms ({code})" for code, s in api_firsts))

        # First search after a publish against a warm one.
        publisher = Publisher(env)
        for path in (SEARCH, API_SEARCH):
            warm(APP_PORT, [path], 5)
            warm_s = statistics.median(get(APP_PORT, path)[1] for _ in range(20))
            publish_s = publisher.publish()
            after = concurrent_gets(APP_PORT, path, args.workers)
            extra = max(s for _, s in after) - warm_s
            print(f"- {path} after publishing 20 products (service {publish_s * 1000:.0f} ms): "
                  + ", ".join(f"{s * 1000:.0f} ms ({code})" for code, s in after)
                  + f" vs warm {warm_s * 1000:.0f} ms: +{extra * 1000:.0f} ms "
                  f"(target ≤ +100 ms: {'met' if extra <= 0.1 else 'NOT met'})")

        if not args.skip_worker_check:
            script = rotating_script([p for _, p, _ in paths], workdir)
            print("\n| workers | first search per fresh worker | first search after a publish | "
                  "wrk requests | 5xx/non-2xx | socket timeouts | max latency | WORKER TIMEOUT / "
                  "tracebacks in log | max USS per worker | req/s (mixed pages) |")
            print("|---|---|---|---|---|---|---|---|---|---|")
            for workers in (1, 2, 4):
                row = worker_check(app, workers, [p for _, p, _ in paths], script, publisher,
                                   max(d // 2, 8))
                failed = f" ({row['single_failures']} failed)" if row["single_failures"] else ""
                print(f"| {workers} | {row['first_s']:.2f} s{failed} | {row['after_publish_s']:.2f} s | "
                      f"{row['requests']:,} | {row['non_2xx']} | {row['socket_timeouts']} | "
                      f"{row['max_latency_s']:.2f} s | {row['log_timeouts']} | {row['uss_mb']:.0f} MB | "
                      f"{row['rps']:,.0f} |")
    finally:
        for server in servers:
            server.stop()
        drop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

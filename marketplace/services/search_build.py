"""Building the portal's keyword index files, outside requests.

:func:`build_search_index` loads the published entries (:func:`load_docs`), tokenises them
(:func:`matching.text.words`) and writes both sides in the format of
:mod:`marketplace.services.search_store` into a new version of the ``search`` index
(:class:`~marketplace.services.index_files.IndexStore`, under ``SEARCH_INDEX_DIR``, default
``MATCHING_INDEX_DIR``). Web workers only open these files (:mod:`marketplace.services.search`).

**Version names are content hashes** of every indexed (id, ``updated_at``, text, metadata) plus
the tokenizer's fingerprint, so a build of unchanged data is recognised and skipped; the pointer
then only records the newer public stamp. The pointer's metadata holds:

* ``stamp``: the ``index_state`` stamp (:func:`public_stamp`) read *before* the entries were
  loaded; a worker that sees the same stamp knows the files are complete;
* ``since``: the build's start minus ``SINCE_SLACK``, as microseconds of naive UTC: a worker
  whose stamp moved looks for rows with ``updated_at >= since`` to find what changed.

**When it runs.** ``index_sync.bump()`` (every change to what is public) marks the session;
once that transaction commits,
the background job ``search.build_index`` is queued (:func:`_queue_after_commit`; immediate
mode, as in the tests, runs it at once in the caller). ``flask search rebuild`` runs it by
hand. Two builds never run at once on a host: a second one finds the lock taken, leaves a
"dirty" mark and returns, and the running build goes round once more when it sees the mark,
so a burst of publications costs at most one extra build.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import click
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from marketplace import jobs, timeutil
from marketplace.extensions import db
from marketplace.models import (
    EntryKind,
    EntryStatus,
    IndexState,
    Opportunity,
    Organization,
    Product,
    ProductField,
    ProductTag,
)
from marketplace.services import index_sync
from marketplace.services.index_files import IndexStore, IndexVersion
from marketplace.services.search_store import FORMAT, Doc, EntryMeta, stamp_micros, write_side
from matching.text import tokenizer_fingerprint, words

logger = logging.getLogger("marketplace.services.search")

INDEX_NAME = "search"
BUILD_JOB = "search.build_index"
BUILD_JOB_TITLE = "更新关键词搜索索引"
SIDES: tuple[str, ...] = (EntryKind.OPPORTUNITY, EntryKind.PRODUCT)
#: How far before a build's start the delta looks for changed rows (long transactions).
SINCE_SLACK = timedelta(minutes=10)
#: Builds with more entries than this record a Job row (organizers see them under /jobs).
RECORD_JOB_ABOVE = 2_000
#: Rows loaded per ``IN (...)`` query.
CHUNK = 500
#: Set by :func:`marketplace.services.index_sync.bump` on the session (entries changed).
_SESSION_FLAG = index_sync.SEARCH_BUILD_FLAG
_MODELS: dict[str, type[Opportunity] | type[Product]] = {
    EntryKind.OPPORTUNITY: Opportunity,
    EntryKind.PRODUCT: Product,
}


# -------------------------------------------------------------------- the public stamp


def public_stamp() -> tuple[int, datetime | None] | None:
    """``(version, updated_at)`` of the public-content counter, None if it was never bumped.

    The timestamp makes the stamp unique even when a database is emptied and the counter
    starts again (as between tests), where the version alone would repeat.
    """
    row = db.session.execute(
        select(IndexState.version, IndexState.updated_at).where(IndexState.name == index_sync.ENTRIES)
    ).first()
    return (row[0], row[1]) if row is not None else None


def stamp_json(stamp: tuple[int, datetime | None] | None) -> list | None:
    """A public stamp as stored in the pointer's metadata."""
    if stamp is None:
        return None
    return [int(stamp[0]), stamp[1].isoformat() if stamp[1] is not None else None]


# -------------------------------------------------------------------- loading entries


def load_docs(kind: str, ids: Sequence[int] | None = None) -> list[Doc]:
    """Index text and metadata of published entries (all, or those among ``ids``), by id."""
    if kind == EntryKind.OPPORTUNITY:
        stmt = (
            select(
                Opportunity.id, Opportunity.title, Opportunity.description,
                Opportunity.field_area, Opportunity.field_category, Opportunity.tier,
                Opportunity.region_city, Opportunity.region_county, Opportunity.batch_id,
                Opportunity.updated_at, Opportunity.deadline, Organization.name,
            )
            .join(Organization, Organization.id == Opportunity.publisher_id)
            .where(Opportunity.status == EntryStatus.PUBLISHED)
            .order_by(Opportunity.id)
        )
        if ids is not None:
            stmt = stmt.where(Opportunity.id.in_(ids))
        return [
            Doc(
                id=row.id,
                # The title is repeated so that a title hit weighs more than a body hit.
                text=" ".join((row.title, row.title, row.description, row.field_category, row.name)),
                meta=EntryMeta(
                    batch_id=row.batch_id, areas=frozenset((row.field_area,)),
                    categories=frozenset((row.field_category,)), city=row.region_city,
                    county=row.region_county, tier=row.tier, deadline=row.deadline,
                ),
                stamp=row.updated_at,
            )
            for row in db.session.execute(stmt)
        ]

    stmt = (
        select(
            Product.id, Product.name, Product.description, Product.maturity,
            Product.region_city, Product.region_county, Product.batch_id, Product.updated_at,
            Organization.name.label("owner_name"),
        )
        .join(Organization, Organization.id == Product.owner_id)
        .where(Product.status == EntryStatus.PUBLISHED)
        .order_by(Product.id)
    )
    field_stmt = (
        select(ProductField.product_id, ProductField.category, ProductField.area)
        .join(Product, Product.id == ProductField.product_id)
        .where(Product.status == EntryStatus.PUBLISHED)
        .order_by(ProductField.product_id, ProductField.category)
    )
    tag_stmt = (
        select(ProductTag.product_id, ProductTag.tag)
        .join(Product, Product.id == ProductTag.product_id)
        .where(Product.status == EntryStatus.PUBLISHED)
        .order_by(ProductTag.product_id, ProductTag.tag)
    )
    if ids is not None:
        stmt = stmt.where(Product.id.in_(ids))
        field_stmt = field_stmt.where(ProductField.product_id.in_(ids))
        tag_stmt = tag_stmt.where(ProductTag.product_id.in_(ids))
    categories: dict[int, list[str]] = {}
    areas: dict[int, set[str]] = {}
    for product_id, category, area in db.session.execute(field_stmt):
        categories.setdefault(product_id, []).append(category)
        areas.setdefault(product_id, set()).add(area)
    tags: dict[int, list[str]] = {}
    for product_id, tag in db.session.execute(tag_stmt):
        tags.setdefault(product_id, []).append(tag)
    docs = []
    for row in db.session.execute(stmt):
        cats = categories.get(row.id, [])
        product_tags = tags.get(row.id, [])
        docs.append(
            Doc(
                id=row.id,
                text=" ".join(
                    (row.name, row.name, row.description, *cats, *product_tags, row.owner_name)
                ),
                meta=EntryMeta(
                    batch_id=row.batch_id, areas=frozenset(areas.get(row.id, ())),
                    categories=frozenset(cats), city=row.region_city, county=row.region_county,
                    maturity=row.maturity, tags=frozenset(product_tags),
                ),
                stamp=row.updated_at,
            )
        )
    return docs


def load_docs_chunked(kind: str, ids: Sequence[int]) -> list[Doc]:
    """:func:`load_docs` for many ids, ``CHUNK`` per query."""
    out: list[Doc] = []
    for start in range(0, len(ids), CHUNK):
        out.extend(load_docs(kind, ids[start : start + CHUNK]))
    return out


# -------------------------------------------------------------------- building


def index_root(config: dict | None = None) -> Path:
    """Where the keyword index versions live."""
    config = config if config is not None else current_app.config
    return Path(config.get("SEARCH_INDEX_DIR") or config["MATCHING_INDEX_DIR"])


def get_store(config: dict | None = None) -> IndexStore:
    return IndexStore(index_root(config), INDEX_NAME)


def _content_hash(docs_by_side: dict[str, list[Doc]]) -> str:
    digest = hashlib.blake2b(digest_size=10)
    digest.update(f"{FORMAT}|{tokenizer_fingerprint()}".encode())
    for kind in SIDES:
        digest.update(f"\x00side:{kind}".encode())
        for doc in docs_by_side[kind]:
            meta = doc.meta
            digest.update(
                "\x1e".join((
                    str(doc.id), str(stamp_micros(doc.stamp)), doc.text, str(meta.batch_id),
                    ",".join(sorted(meta.areas)), ",".join(sorted(meta.categories)), meta.city or "",
                    meta.county or "", meta.tier or "", meta.maturity or "", ",".join(sorted(meta.tags)),
                    meta.deadline.isoformat() if meta.deadline else "",
                )).encode("utf-8")
            )
    return digest.hexdigest()


@dataclass
class BuildReport:
    """Outcome of one :func:`build_search_index`."""

    version: str
    counts: dict[str, int]
    built: bool  # False: the data was unchanged, only the pointer's stamp was refreshed
    seconds: float
    load_seconds: float = 0.0
    tokenize_seconds: float = 0.0
    write_seconds: float = 0.0


def build_search_index(progress=None) -> BuildReport:
    """Build (or confirm) the current version of the keyword index from the database.

    Must not run inside a web request (the job and the CLI call it). ``progress(done, total)``
    is called while tokenising.
    """
    store = get_store()
    started = time.perf_counter()
    since = timeutil.now_naive_utc() - SINCE_SLACK
    stamp = public_stamp()  # before the entries: what is loaded is at least this fresh
    docs_by_side = {kind: load_docs(kind) for kind in SIDES}
    loaded = time.perf_counter()
    version = _content_hash(docs_by_side)
    counts = {kind: len(docs) for kind, docs in docs_by_side.items()}
    meta = {"stamp": stamp_json(stamp), "since": stamp_micros(since), "counts": counts,
            "format": FORMAT, "tokenizer": tokenizer_fingerprint()}
    current = store.current()
    if current is not None and current.version == version:
        if current.meta.get("stamp") != meta["stamp"]:
            meta["built_seconds"] = current.meta.get("built_seconds")
            meta["since"] = current.meta.get("since", meta["since"])
            store.publish(store.new_build(), version, meta)
        db.session.rollback()
        return BuildReport(version, counts, False, time.perf_counter() - started, loaded - started)
    db.session.rollback()  # release the read transaction while tokenising

    total = sum(counts.values())
    done = 0
    tokens: dict[str, list[list[str]]] = {}
    for kind in SIDES:
        side_tokens = []
        for doc in docs_by_side[kind]:
            side_tokens.append(words(doc.text))
            done += 1
            if progress is not None and done % 1000 == 0:
                progress(done, total)
        tokens[kind] = side_tokens
    if progress is not None:
        progress(total, total)
    tokenized = time.perf_counter()
    build = store.new_build()
    try:
        for kind in SIDES:
            write_side(build / kind, docs_by_side[kind], tokens[kind])
        meta["built_seconds"] = round(time.perf_counter() - started, 3)
        store.publish(build, version, meta)
    except BaseException:
        store.discard(build)
        raise
    finished = time.perf_counter()
    logger.info("search: built keyword index %s (%s) in %.1fs", version, counts, finished - started)
    return BuildReport(version, counts, True, finished - started, loaded - started,
                       tokenized - loaded, finished - tokenized)


def run_build_job() -> BuildReport | None:
    """The job's body: build under the host's build lock; None when another build holds it
    (that build goes round once more, see the module docstring)."""
    from marketplace.services import jobs as job_records

    root = index_root()
    root.mkdir(parents=True, exist_ok=True)
    dirty = root / f".{INDEX_NAME}.dirty"
    with open(root / f".{INDEX_NAME}.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            dirty.touch()
            logger.info("search: a build is already running; it will go round once more")
            return None
        try:
            report = None
            for _ in range(3):
                dirty.unlink(missing_ok=True)
                record = job_records.RecordedProgress(BUILD_JOB, BUILD_JOB_TITLE)
                try:
                    report = build_search_index(_JobRowProgress(record))
                except BaseException as exc:
                    record.finish(exc, "更新关键词搜索索引时出错；当前索引仍可使用")
                    raise
                record.finish()
                if not dirty.exists():
                    break
            return report
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


class _JobRowProgress:
    """``progress(done, total)`` that reports to a Job row, only for builds bigger than
    ``RECORD_JOB_ABOVE`` (the small builds after each publication leave no row)."""

    def __init__(self, record) -> None:
        self._record = record
        self._callback = None

    def __call__(self, done: int, total: int) -> None:
        if total <= RECORD_JOB_ABOVE:
            return
        if self._callback is None:
            from marketplace.services import jobs as job_records

            self._callback = job_records.as_callback(self._record)
        self._callback(done, total)


@jobs.job(BUILD_JOB)
def build_index_job() -> None:
    """Background job: bring the keyword index files up to date with the database."""
    run_build_job()


# -------------------------------------------------------------------- queueing


@event.listens_for(Session, "after_commit")
def _queue_after_commit(session: Session) -> None:
    if session.info.pop(_SESSION_FLAG, False):
        queue_build()


@event.listens_for(Session, "after_soft_rollback")
def _forget_rolled_back(session: Session, previous_transaction) -> None:
    session.info.pop(_SESSION_FLAG, None)


def queue_build() -> bool:
    """Queue the build job (immediate mode: run it now). Never fails the caller; returns
    whether it was queued."""
    try:
        if not current_app.config.get("SEARCH_BUILD_ON_CHANGE", True):
            return False
        jobs.enqueue(BUILD_JOB)
    except Exception:
        logger.exception("search: could not queue the keyword index build")
        return False
    return True


# -------------------------------------------------------------------- CLI

search_cli = AppGroup("search", help="门户关键词搜索索引 (portal keyword index).")


@search_cli.command("rebuild")
def rebuild_command() -> None:
    """Build the keyword index files now (skipped when nothing changed)."""
    with click.progressbar(length=1, label="分词") as bar:
        state = {"total": None}

        def progress(done: int, total: int) -> None:
            if state["total"] != total:
                state["total"] = bar.length = total
            bar.update(done - bar.pos)

        report = build_search_index(progress)
    counts = ", ".join(f"{k} {v}" for k, v in report.counts.items())
    verb = "built" if report.built else "unchanged, pointer refreshed"
    click.echo(f"search index {report.version}: {verb} ({counts}) in {report.seconds:.1f}s")


@search_cli.command("status")
def status_command() -> None:
    """Show the current version of the keyword index files."""
    current: IndexVersion | None = get_store().current()
    if current is None:
        click.echo("no keyword index built yet (flask search rebuild)")
        return
    click.echo(f"version {current.version} at {current.path}")
    for key in ("counts", "stamp", "built_seconds"):
        click.echo(f"  {key}: {current.meta.get(key)}")
    click.echo(f"  current public stamp: {stamp_json(public_stamp())}")

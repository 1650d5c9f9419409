"""The encoding and index-building job: corpus entries are encoded and the engine's index
versions are built in the background, never in a request.

When what is public changes (a batch is published, an edit approved), the service that made
the change calls :func:`request_encoding`; once its transaction commits, the job
``matching.encode_entries`` is queued (:func:`_queue_after_commit`, as the mail outbox does).
A web worker that indexes a published entry without a cached vector also queues it, once per
entry, as a safety net.

The job (:func:`encode_missing`) looks for the published entries whose (kind, id, text hash,
encoder fingerprint) has no row in the embedding cache, encodes them in batches and stores
every batch in its own transaction. It is idempotent and resumable: a rerun finds nothing
to do, and a consumer killed mid-job leaves whole batches behind, which the next run skips.
When it has stored anything it bumps the ``vectors`` row of ``index_state``, so every worker
refreshes on its next request and swaps the entries' zero vectors for the real ones; during a
long run it also bumps every ``BUMP_EVERY`` seconds, so a big batch becomes dense-searchable
progressively.

Progress goes to the log (``marketplace.services.matching``) and, for a run that has anything
to encode, to a ``Job`` row (kind ``matching.encode_entries``, 「更新匹配索引向量」) that
organizers see with a progress bar under /jobs (:class:`marketplace.services.jobs.RecordedProgress`;
a run with nothing to do leaves no row).

After encoding, the job builds a new engine version (:meth:`MatchingService.build_version`:
BM25, HNSW and items written as memory-mappable files under ``MATCHING_INDEX_DIR`` and
published atomically) when the published entries differ from the current version, which folds
the workers' in-memory deltas in. A worker with no version at all queues this same job.

**Precision.** The job encodes with :func:`matching.encoders.background_encoder` of the
writer encoder: with e5-small and ``MATCHING_ENCODE_PRECISION`` ``auto`` (the default) or
``bf16``, documents run on torch in bfloat16, 1.5-1.8x faster than float32 on a CPU with
``avx512_bf16``, with vectors within cosine 0.999 of float32 that keep its fingerprint (why:
:class:`matching.encoders.E5SmallEncoder`). Only this job does that; web workers encode
queries in float32 and never load the bf16 model. It lives in the consumer's process (about
250 MB of bf16 weights plus torch), loaded on the first run. Threads: torch uses
``$OMP_NUM_THREADS`` when set, else one thread per core; the consumer's worker threads share
that one pool, so ``flask jobs consume`` should run without ``OMP_NUM_THREADS=1`` (which the
web workers use) to encode on every core.

The offline encoder needs a fitted state before it can encode. When no version holds one
(nothing was ever built), the job runs a full :meth:`MatchingService.rebuild`, which fits it
on the published corpus, encodes everything and publishes a version.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from flask import current_app, has_app_context
from sqlalchemy import event
from sqlalchemy.orm import Session

from marketplace import jobs
from marketplace.extensions import db
from marketplace.services import index_sync
from marketplace.services.matching import cache
from marketplace.services.matching.items import SIDES, load_published_items
from marketplace.services.matching.service import IN_ENCODING_JOB, VECTORS, MatchingService, Progress
from matching.encoders import background_encoder

logger = logging.getLogger("marketplace.services.matching")

ENCODE_JOB = "matching.encode_entries"
ENCODE_JOB_TITLE = "更新匹配索引向量"
#: During a long run, bump the index version at most this often (seconds).
BUMP_EVERY = 30.0
_SESSION_FLAG = "matching_encoding_requested"


@dataclass
class EncodeReport:
    """Outcome of one run of the encoding job."""

    encoder_name: str
    fingerprint: str | None
    published: int
    missing: int
    encoded: int
    seconds: float
    #: The offline encoder had no fitted state: a full rebuild fitted it and encoded everything.
    rebuilt: bool = False
    #: ``fp32`` or ``bf16``: how the documents were encoded (MATCHING_ENCODE_PRECISION).
    precision: str = "fp32"

    @property
    def rate(self) -> float:
        """Entries encoded per second."""
        return self.encoded / self.seconds if self.seconds > 0 else 0.0


# ---------------------------------------------------------------- queueing


def request_encoding() -> None:
    """Ask for the encoding job once the current transaction commits (what is public changed)."""
    db.session.info[_SESSION_FLAG] = True


@event.listens_for(Session, "after_commit")
def _queue_after_commit(session: Session) -> None:
    if session.info.pop(_SESSION_FLAG, False):
        queue_now()


@event.listens_for(Session, "after_soft_rollback")
def _forget_rolled_back(session: Session, previous_transaction) -> None:
    session.info.pop(_SESSION_FLAG, None)


def queue_now() -> bool:
    """Queue the job (in immediate mode: run it now). Returns whether it ran already.

    Never fails the caller: a missed job is queued again by the next worker that indexes an
    entry without its vector, and ``flask matching encode`` runs it by hand."""
    try:
        jobs.enqueue(ENCODE_JOB)
    except Exception:
        logger.exception("matching: could not queue the encoding job")
        return False
    return bool(jobs.get_queue().huey.immediate)


@jobs.job(ENCODE_JOB)
def encode_entries_job() -> None:
    """Background job: encode the published entries the embedding cache lacks."""
    from marketplace.services import jobs as job_records
    from marketplace.services.matching.reports import get_service

    token = IN_ENCODING_JOB.set(True)
    record = job_records.RecordedProgress(ENCODE_JOB, ENCODE_JOB_TITLE)
    try:
        service = get_service()
        report = encode_missing(service, progress=job_records.as_callback(record))
        if service.enabled and not report.rebuilt:
            service.build_version()  # fold the delta in: a new engine version, if anything changed
    except BaseException as exc:
        record.finish(exc, "更新匹配索引向量时出错；已保存的向量不会丢失，下次运行会继续")
        raise
    else:
        record.finish()
    finally:
        IN_ENCODING_JOB.reset(token)


# ---------------------------------------------------------------- the work


def encode_missing(
    service: MatchingService, progress: Progress | None = None, batch_size: int = cache.ENCODE_BATCH
) -> EncodeReport:
    """Encode and store the vectors of the published entries that have none (see the module
    docstring). Must not run on the request path."""
    if not service.may_encode_corpus():
        raise RuntimeError("corpus entries are encoded by the background job, never in a request")
    started = time.perf_counter()
    if not service.enabled:
        return EncodeReport("-", None, 0, 0, 0, 0.0)
    encoder = service.writer_encoder()
    if encoder is None:
        logger.info("matching.encode: the offline encoder has no fitted state yet; running a full rebuild")
        build = service.rebuild(refit=True, progress=progress, prune=False)
        seconds = time.perf_counter() - started
        logger.info("matching.encode: rebuilt, %d vectors encoded in %.1fs", build.encoded, seconds)
        return EncodeReport(
            build.encoder_name,
            build.fingerprint,
            sum(build.counts.values()),
            build.encoded,
            build.encoded,
            seconds,
            rebuilt=True,
        )
    items = [item for side in SIDES for item in load_published_items(side)]
    todo = cache.missing_items(items, encoder)
    precision = "fp32"
    if todo:
        # Same fingerprint and dimension as ``encoder`` (see the module docstring).
        encoder = background_encoder(encoder, _configured_precision())
        precision = getattr(encoder, "precision", "fp32")
    logger.info(
        "matching.encode: %d of %d published entries need a vector (%s, %s)",
        len(todo),
        len(items),
        encoder.name,
        precision,
    )
    if progress is not None:
        progress(0, len(todo))
    done = 0
    last_bump = time.monotonic()
    for start in range(0, len(todo), batch_size):
        batch = todo[start : start + batch_size]
        cache.encode_and_store(batch, encoder, batch_size=batch_size)  # committed
        done += len(batch)
        elapsed = time.perf_counter() - started
        rate = done / elapsed if elapsed else 0.0
        logger.info("matching.encode: %d/%d stored (%.1f entries/s)", done, len(todo), rate)
        if progress is not None:
            progress(done, len(todo))
        if done < len(todo) and time.monotonic() - last_bump >= BUMP_EVERY:
            _bump()
            last_bump = time.monotonic()
    if todo:
        _bump()
    seconds = time.perf_counter() - started
    return EncodeReport(
        encoder.name, encoder.fingerprint, len(items), len(todo), done, seconds, precision=precision
    )


def _configured_precision() -> str | None:
    """``MATCHING_ENCODE_PRECISION`` of the app (``None``: the environment, else ``auto``)."""
    return current_app.config.get("MATCHING_ENCODE_PRECISION") if has_app_context() else None


def _bump() -> None:
    """Tell every worker to refresh (its pending entries now have vectors)."""
    index_sync.bump(VECTORS)
    db.session.commit()

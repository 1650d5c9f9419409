"""后台任务 records: the one writer of :class:`~marketplace.models.Job` rows.

A long piece of work (an import, index encoding) runs in the Huey consumer; its ``Job`` row is
what the user sees of it: kind, who started it, status, progress (``done`` of ``total``), a
message, and the result or the error.

Life of a tracked job (``@tracked_job(kind)`` in :mod:`marketplace.jobs`), declared as data in
:data:`TRANSITIONS`::

    queued ──start──> running ──succeed──> succeeded
      ^                  │
      │                  ├──fail──────> failed      (the function raised)
      └──retry── failed <┘──interrupt──            (the stale sweep: its consumer died)

:func:`create` writes the row (queued) and commits; :func:`submit` queues the registered job of
that kind with the row's id (in immediate mode it runs at once, in the caller's process). The
worker (:func:`run_tracked`) marks the row running (``started_at``, ``attempts`` + 1,
``heartbeat_at``) and commits, then calls the function with the job and a :class:`Progress`.

**Jobs are transactional.** The function does its writes in the job's session and does not
commit; on return the worker writes ``succeeded`` and the result *in the same transaction* as the
function's changes, so the work and its "done" become visible together. On any exception the
session is rolled back (nothing uncommitted is written) and the row is marked ``failed`` with a
Chinese message for the user: the text of a domain error (:class:`DomainError` and its
subclasses such as the imports' ``ImportValidationError``, or a WTForms ``ValidationError``),
otherwise 「任务执行出错，未写入任何更改」; the ``error`` column keeps the
technical detail and the traceback goes to the log. The exception is not re-raised, so Huey
never retries blindly; a user (or an organizer) retries a failed job from its page. A job that
must commit as it goes (the encoding job stores whole batches) has to be idempotent instead.

**Progress that users see during a job.** An import keeps one write transaction open while it
reports progress, and on SQLite no second connection may write while that transaction holds
the database lock. So progress never goes through the job's transaction:

* every report is put into the queue's key-value store (the Huey storage: the SQLite queue file
  by default, Redis when ``REDIS_URL`` is set, memory in immediate mode) under
  ``job-progress:<id>``, at most every :data:`LIVE_INTERVAL` seconds (≤ 2 writes per second);
  the status endpoint and the pages merge it into what the row says (:func:`snapshot`);
* the row itself (``done``, ``total``, ``message``, ``heartbeat_at``) is written at the start and
  at the end, and during the run at most every :data:`ROW_INTERVAL` seconds through a *separate*
  connection, only when that cannot block: on PostgreSQL always, guarded by
  ``FOR UPDATE SKIP LOCKED`` (a row the job's own transaction has locked is skipped, never waited
  for); on SQLite only while the job's session holds no write in its open transaction (tracked by
  session events) and with a zero busy timeout, so a momentary lock skips the flush.

**A killed consumer.** While a job runs outside immediate mode, a heartbeat thread refreshes the
live record every :func:`heartbeat_seconds`, so the record proves the worker is alive even while
the row cannot be written. :func:`sweep_stale` (a periodic job, and run when a consumer starts)
marks ``failed`` with 「后台进程中断，任务未完成，未写入任何更改」 every running job whose last sign
of life, row or live record, is older than ``JOB_STALE_SECONDS`` (600). The message is true
because jobs are transactional (above): a consumer killed mid-job never committed the work.
If such a job somehow finishes after being swept, its final update finds the row no longer
running and rolls the work back, so the row and the data never disagree.

**Who sees a job** (:func:`can`): the user who started it (``actor``) and organizers/admins.
Colleagues in ``job.organization`` do not: a job's result can hold an uploaded file's rows,
which stay with the uploader and the organizers, as the import pages decide. Jobs without an
actor (index encoding) are seen by organizers only.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import click
from flask import current_app
from flask_sqlalchemy.pagination import Pagination
from sqlalchemy import event, func, select, update
from sqlalchemy.orm import Session, selectinload

from marketplace import timeutil
from marketplace.extensions import db
from marketplace.models import Job, JobStatus, Organization, StoredFile, User
from marketplace.services.errors import DomainError, InvalidTransition, NotFound, PermissionDenied

logger = logging.getLogger("marketplace.jobs")

FAILED_MESSAGE = "任务执行出错，未写入任何更改"
INTERRUPTED_MESSAGE = "后台进程中断，任务未完成，未写入任何更改"
DEFAULT_STALE_SECONDS = 600
#: Seconds between two writes of the live progress record (≤ 2 per second).
LIVE_INTERVAL = 0.5
#: Seconds between two flushes of the progress to the Job row during a run.
ROW_INTERVAL = 2.0
LIVE_KEY = "job-progress:{}"
MAX_MESSAGE = 500
MAX_TITLE = 200

WORKER = "worker"
SWEEP = "sweep"
OWNER = "owner"

#: What the pages call each kind of job (other kinds show their name).
KIND_LABELS = {
    "matching.encode_entries": "匹配索引向量",
    "imports.preview": "导入预览",
    "imports.apply": "确认导入",
    "matching.learn": "训练学习排序模型",
    "matching.finetune": "微调语义模型",
    "search.build_index": "关键词索引构建",
}


@dataclass(frozen=True)
class Transition:
    """One step of a job's life."""

    action: str
    sources: frozenset[str]
    target: str
    who: str
    label: str


TRANSITIONS: dict[str, Transition] = {
    t.action: t
    for t in (
        Transition("start", frozenset({JobStatus.QUEUED}), JobStatus.RUNNING, WORKER, "开始执行"),
        Transition("succeed", frozenset({JobStatus.RUNNING}), JobStatus.SUCCEEDED, WORKER, "完成"),
        Transition("fail", frozenset({JobStatus.RUNNING}), JobStatus.FAILED, WORKER, "失败"),
        Transition("interrupt", frozenset({JobStatus.RUNNING}), JobStatus.FAILED, SWEEP, "标记为中断"),
        Transition("retry", frozenset({JobStatus.FAILED}), JobStatus.QUEUED, OWNER, "重新运行"),
    )
}


def _now() -> datetime:
    return timeutil.now_naive_utc()


def _clock() -> float:
    """The throttle's clock (monotonic seconds)."""
    return time.monotonic()


# ---------------------------------------------------------------- progress


class Progress(Protocol):
    """What a long function receives to report how far it got."""

    def start(self, total: int | None, message: str = "") -> None: ...

    def advance(self, n: int = 1, message: str | None = None) -> None: ...

    def set_message(self, message: str) -> None: ...


class NullProgress:
    """A progress that records nothing (tests, inline calls)."""

    def start(self, total: int | None, message: str = "") -> None:
        pass

    def advance(self, n: int = 1, message: str | None = None) -> None:
        pass

    def set_message(self, message: str) -> None:
        pass


class ClickProgress:
    """A ``click.progressbar`` for CLI commands, opened on :meth:`start` with a known total.

    Use it as a context manager (or call :meth:`close`) so the bar ends its line::

        with ClickProgress("导入产品") as progress:
            imports.apply(..., progress=progress)
    """

    def __init__(self, label: str, *, file: Any = None) -> None:
        self.label = label
        self.file = file
        self.message = ""
        self._bar: Any = None

    def start(self, total: int | None, message: str = "") -> None:
        self.close()
        if message:
            self.message = message
        if total:
            self._bar = click.progressbar(length=total, label=self.label, file=self.file, show_pos=True)
            self._bar.__enter__()
        elif message:
            click.echo(f"{self.label}: {message}", file=self.file, err=self.file is None)

    def advance(self, n: int = 1, message: str | None = None) -> None:
        if message is not None:
            self.message = message
        if self._bar is not None:
            self._bar.update(n)

    def set_message(self, message: str) -> None:
        self.message = message

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None

    def __enter__(self) -> ClickProgress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def as_callback(progress: Progress) -> Callable[[int, int], None]:
    """Adapt a :class:`Progress` to the ``progress(done, total)`` callables of the matching
    service (absolute counts; a new total restarts the bar)."""
    state = {"total": None, "done": 0}

    def report(done: int, total: int) -> None:
        if total != state["total"]:
            state["total"], state["done"] = total, 0
            progress.start(total)
        if done > state["done"]:
            progress.advance(done - state["done"])
            state["done"] = done

    return report


# ---------------------------------------------------------------- the live record


def _store():
    from marketplace import jobs

    return jobs.get_queue().huey


def live_record(job_id: int) -> dict | None:
    """The live progress record of a running job (None when there is none or the store fails)."""
    try:
        value = _store().get(LIVE_KEY.format(job_id), peek=True)
    except Exception:
        logger.exception("jobs: could not read the live progress of job %s", job_id)
        return None
    return value if isinstance(value, dict) else None


def _put_live(job_id: int, record: dict, huey: Any = None) -> None:
    try:
        (huey or _store()).put(LIVE_KEY.format(job_id), record)
    except Exception:
        logger.exception("jobs: could not store the live progress of job %s", job_id)


def _drop_live(job_id: int) -> None:
    try:
        _store().delete(LIVE_KEY.format(job_id))
    except Exception:
        logger.exception("jobs: could not delete the live progress of job %s", job_id)


# Which sessions hold a write in their open transaction (the SQLite flush guard).
_WROTE = "jobs_wrote_in_transaction"


@event.listens_for(Session, "after_flush")
def _flushed(session: Session, flush_context) -> None:
    session.info[_WROTE] = True


@event.listens_for(Session, "do_orm_execute")
def _executed(state) -> None:
    if not state.is_select:
        state.session.info[_WROTE] = True


@event.listens_for(Session, "after_transaction_end")
def _transaction_ended(session: Session, transaction) -> None:
    if transaction.parent is None:
        session.info.pop(_WROTE, None)


class JobProgress:
    """The :class:`Progress` a tracked job receives (see the module docstring)."""

    def __init__(self, job: Job, session: Session) -> None:
        self.job_id = job.id
        self.done = job.done or 0
        self.total = job.total
        self.message = job.message or ""
        self.session = session
        self.engine = session.get_bind()
        self.huey = _store()  # the heartbeat thread has no app context
        self._last_live = 0.0
        self._last_row = _clock()
        #: When the live record was last written (by a report or the heartbeat thread).
        self._last_beat = _clock()
        #: A report was throttled: the heartbeat thread writes it within LIVE_INTERVAL.
        self.unsent = False
        self._lock = threading.Lock()

    # The Progress protocol.
    def start(self, total: int | None, message: str = "") -> None:
        self.total = max(0, int(total)) if total is not None else None
        self.done = 0
        if message:
            self.message = message[:MAX_MESSAGE]
        self._report(force=True)

    def advance(self, n: int = 1, message: str | None = None) -> None:
        self.done += int(n)
        if message is not None:
            self.message = message[:MAX_MESSAGE]
        self._report()

    def set_message(self, message: str) -> None:
        self.message = (message or "")[:MAX_MESSAGE]
        self._report()

    # Writing it down.
    def record(self) -> dict:
        return {
            "done": self.done,
            "total": self.total,
            "message": self.message,
            "heartbeat": timeutil.now_utc().timestamp(),
        }

    def beat(self) -> None:
        """Refresh the live record (the heartbeat thread calls this)."""
        with self._lock:
            self.unsent = False
            self._last_beat = _clock()
            _put_live(self.job_id, self.record(), self.huey)

    def due(self, interval: float) -> bool:
        """Whether the heartbeat thread should write now: a throttled report waits, or the
        record is ``interval`` seconds old."""
        return self.unsent or _clock() - self._last_beat >= interval

    def _report(self, force: bool = False) -> None:
        now = _clock()
        if force or now - self._last_live >= LIVE_INTERVAL:
            self._last_live = now
            self.beat()
        else:
            # Throttled. Without a later report (a job that reports, then works for a long
            # time) users would see it only at the next heartbeat, up to 30 s later.
            self.unsent = True
        if force or now - self._last_row >= ROW_INTERVAL:
            self._last_row = now
            self.flush_row()

    def flush_row(self) -> bool:
        """Write the progress to the row through a separate connection, if that cannot block."""
        if not _may_write_beside(self.session, self.engine):
            return False
        sqlite = self.engine.dialect.name == "sqlite"
        locked = select(Job.id).where(Job.id == self.job_id).with_for_update(skip_locked=True)
        statement = (
            update(Job)
            .where(Job.id == self.job_id, Job.status == JobStatus.RUNNING, Job.id.in_(locked))
            .values(done=self.done, total=self.total, message=self.message, heartbeat_at=_now())
            .execution_options(synchronize_session=False)
        )
        try:
            with self.engine.connect() as connection:
                previous = None
                if sqlite:
                    previous = connection.exec_driver_sql("PRAGMA busy_timeout").scalar()
                    connection.exec_driver_sql("PRAGMA busy_timeout = 0")
                try:
                    connection.execute(statement)
                    connection.commit()
                finally:
                    if sqlite:
                        connection.rollback()
                        connection.exec_driver_sql(f"PRAGMA busy_timeout = {int(previous or 5000)}")
        except Exception as exc:  # the database was busy: the live record carries the progress
            logger.debug("jobs: progress of job %s not flushed to its row: %s", self.job_id, exc)
            return False
        return True


def _may_write_beside(session: Session, engine) -> bool:
    if engine.dialect.name != "sqlite":
        return True  # PostgreSQL: SKIP LOCKED never waits
    if engine.url.database in (None, "", ":memory:"):
        return False  # one shared connection: a "separate" write would commit the job's work
    return not session.info.get(_WROTE)


def heartbeat_seconds() -> float:
    """How often a running job refreshes its live record (well inside the stale limit)."""
    return max(1.0, min(30.0, stale_seconds() / 4))


def stale_seconds() -> float:
    return float(current_app.config.get("JOB_STALE_SECONDS") or DEFAULT_STALE_SECONDS)


class Heartbeat:
    """A daemon thread that calls ``progress.beat()`` every ``interval`` seconds until stopped,
    and within :data:`LIVE_INTERVAL` of a report the throttle held back (the trailing edge)."""

    def __init__(self, progress: JobProgress, interval: float) -> None:
        self.progress = progress
        self.interval = interval
        self._stop = threading.Event()
        name = f"job-{progress.job_id}-heartbeat"
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        tick = min(self.interval, LIVE_INTERVAL)
        while not self._stop.wait(tick):
            if self.progress.due(self.interval):
                self.progress.beat()

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


# ---------------------------------------------------------------- creating and queueing


def create(
    kind: str,
    *,
    title: str,
    actor: User | None = None,
    organization: Organization | None = None,
    file: StoredFile | None = None,
    params: dict | None = None,
    total: int | None = None,
) -> Job:
    """A queued job row for ``kind`` (commits). ``params`` must be JSON-safe."""
    job = Job(
        kind=kind,
        title=(title or kind)[:MAX_TITLE],
        status=JobStatus.QUEUED,
        actor_id=actor.id if actor is not None else None,
        organization_id=organization.id if organization is not None else None,
        file_id=file.id if file is not None else None,
        params=_json_safe(params or {}),
        total=total,
        done=0,
        message="",
        attempts=0,
        created_at=_now(),
    )
    db.session.add(job)
    db.session.commit()
    return job


def submit(job: Job) -> Job:
    """Queue the tracked job named ``job.kind`` with ``job.id`` (in immediate mode it runs now,
    and the returned job shows its outcome)."""
    from marketplace import jobs

    if not jobs.is_tracked(job.kind):
        raise LookupError(f"no tracked job is registered as {job.kind!r}")
    jobs.enqueue(job.kind, job.id)
    if jobs.get_queue().huey.immediate:
        db.session.refresh(job)
    return job


def retry(user: User, job: Job) -> Job:
    """Queue a failed job again (its owner or an organizer)."""
    from marketplace import jobs

    if not can_view(user, job):
        raise PermissionDenied("只有任务发起人或组织方可以重新运行失败的任务")
    if job.status not in TRANSITIONS["retry"].sources or not jobs.is_tracked(job.kind):
        raise InvalidTransition("该任务当前状态不能重新运行")
    updated = db.session.execute(
        update(Job)
        .where(Job.id == job.id, Job.status.in_(TRANSITIONS["retry"].sources))
        .values(
            status=TRANSITIONS["retry"].target, done=0, message="", error=None, result=None,
            started_at=None, heartbeat_at=None, finished_at=None,
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    if not updated:
        db.session.rollback()
        raise InvalidTransition("该任务当前状态不能重新运行")
    db.session.commit()
    db.session.refresh(job)
    return submit(job)


# ---------------------------------------------------------------- running


def run_tracked(job_id: int, func: Callable[[Job, Progress], dict | None]) -> None:
    """The worker side of a tracked job (see the module docstring)."""
    job = _claim(job_id)
    if job is None:
        return
    progress = JobProgress(job, db.session)
    progress.beat()
    heartbeat = None
    if not _immediate():
        heartbeat = Heartbeat(progress, heartbeat_seconds())
        heartbeat.__enter__()
    try:
        result = func(job, progress)
        payload = _json_safe(result) if result is not None else None
    except BaseException as exc:
        if heartbeat is not None:
            heartbeat.__exit__(None, None, None)
        db.session.rollback()
        message = user_message(exc)
        if isinstance(exc, Exception):
            logger.exception("jobs: job %s (%s) failed", job_id, job.kind)
        else:
            logger.warning("jobs: job %s (%s) interrupted by %r", job_id, job.kind, exc)
            message = INTERRUPTED_MESSAGE
        _finish_failed(job_id, progress, message, _technical(exc))
        if not isinstance(exc, Exception):
            raise
        return
    if heartbeat is not None:
        heartbeat.__exit__(None, None, None)
    try:
        finished = _finish(db.session(), job_id, progress, JobStatus.SUCCEEDED, result=payload)
    except Exception as exc:  # the commit of the function's work failed
        db.session.rollback()
        logger.exception("jobs: job %s (%s) could not be committed", job_id, job.kind)
        _finish_failed(job_id, progress, user_message(exc), _technical(exc))
        return
    if finished:
        logger.info("jobs: job %s (%s) succeeded", job_id, job.kind)


def _immediate() -> bool:
    from marketplace import jobs

    return bool(jobs.get_queue().huey.immediate)


def _claim(job_id: int) -> Job | None:
    """Mark a queued job running and commit; None if it is gone or not queued any more."""
    now = _now()
    start = TRANSITIONS["start"]
    claimed = db.session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status.in_(start.sources))
        .values(
            status=start.target, started_at=now, heartbeat_at=now, attempts=Job.attempts + 1,
            done=0, message="", error=None, result=None, finished_at=None,
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.commit()
    if not claimed:
        logger.warning("jobs: job %s is missing or not queued; not run", job_id)
        return None
    return db.session.get(Job, job_id, populate_existing=True)


def _finish(session: Session, job_id: int, progress: JobProgress, status: str, *, result: Any = None,
            message: str | None = None, error: str | None = None) -> bool:
    """Write the end of a run in the current transaction and commit it; False (and a rollback)
    when the row was no longer running (swept as stale)."""
    now = _now()
    done = progress.done
    if status == JobStatus.SUCCEEDED and progress.total is not None:
        done = max(done, progress.total)
    values: dict[str, Any] = {
        "status": status, "done": done, "total": progress.total,
        "message": (progress.message if message is None else message)[:MAX_MESSAGE],
        "heartbeat_at": now, "finished_at": now, "error": error,
    }
    if status == JobStatus.SUCCEEDED:
        values["result"] = result
    updated = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.RUNNING)
        .values(**values)
        .execution_options(synchronize_session=False)
    ).rowcount
    if not updated:
        session.rollback()
        logger.error("jobs: job %s was swept as stale before its end; its work was rolled back", job_id)
        _drop_live(job_id)
        return False
    session.commit()
    _drop_live(job_id)
    return True


def _finish_failed(job_id: int, progress: JobProgress, message: str, error: str) -> None:
    try:
        _finish(db.session(), job_id, progress, JobStatus.FAILED, message=message, error=error)
    except Exception:
        db.session.rollback()
        logger.exception("jobs: could not record the failure of job %s", job_id)


def user_message(exc: BaseException) -> str:
    """The Chinese message a failed job shows (see the module docstring)."""
    from wtforms.validators import ValidationError

    if isinstance(exc, DomainError) and exc.message:
        return exc.message[:MAX_MESSAGE]
    if isinstance(exc, ValidationError) and str(exc).strip():
        return str(exc).strip()[:MAX_MESSAGE]
    return FAILED_MESSAGE


def _technical(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)).strip()[-20000:]


def _json_safe(value: Any) -> Any:
    """``value`` as stored in a JSON column; refuses what JSON cannot hold."""
    return json.loads(json.dumps(value, ensure_ascii=False))


# ---------------------------------------------------------------- inline recording


class RecordedProgress:
    """A :class:`Progress` for work that is not a tracked job (the encoding job): the row is
    created on the first :meth:`start` with a non-zero total, so runs with nothing to do leave
    no row. Rows are written through separate short transactions (the work commits its own
    batches and must be idempotent)."""

    def __init__(self, kind: str, title: str) -> None:
        self.kind = kind
        self.title = title
        self.job: Job | None = None
        self._inner: JobProgress | None = None
        self._session: Session | None = None

    def start(self, total: int | None, message: str = "") -> None:
        if self._inner is None:
            if not total:
                return
            self._session = Session(db.engine, expire_on_commit=False)
            now = _now()
            job = Job(kind=self.kind, title=self.title, status=JobStatus.RUNNING, params={}, done=0,
                      total=total, message="", attempts=1, created_at=now, started_at=now, heartbeat_at=now)
            self._session.add(job)
            self._session.commit()
            self.job = job
            self._inner = JobProgress(job, self._session)
        self._inner.start(total, message)

    def advance(self, n: int = 1, message: str | None = None) -> None:
        if self._inner is not None:
            self._inner.advance(n, message)

    def set_message(self, message: str) -> None:
        if self._inner is not None:
            self._inner.set_message(message)

    def finish(self, error: BaseException | None = None, failure_message: str = FAILED_MESSAGE) -> None:
        if self._inner is None or self._session is None:
            return
        try:
            if error is None:
                _finish(self._session, self._inner.job_id, self._inner, JobStatus.SUCCEEDED)
            else:
                _finish(self._session, self._inner.job_id, self._inner, JobStatus.FAILED,
                        message=failure_message, error=_technical(error))
        except Exception:
            logger.exception("jobs: could not record the end of %s", self.kind)
        finally:
            self._session.close()


# ---------------------------------------------------------------- the stale sweep


def sweep_stale() -> list[int]:
    """Mark failed the running jobs whose worker stopped giving signs of life; their ids."""
    seconds = stale_seconds()
    now = _now()
    cutoff = now - timedelta(seconds=seconds)
    last_sign = func.coalesce(Job.heartbeat_at, Job.started_at, Job.created_at)
    candidates = db.session.scalars(
        select(Job).where(Job.status.in_(TRANSITIONS["interrupt"].sources), last_sign < cutoff)
    ).all()
    swept = []
    for job in candidates:
        live = live_record(job.id)
        if live and live.get("heartbeat") and live["heartbeat"] >= cutoff.replace(tzinfo=UTC).timestamp():
            continue  # alive: the row could not be written, the live record was
        last = job.heartbeat_at or job.started_at or job.created_at
        updated = db.session.execute(
            update(Job)
            .where(Job.id == job.id, Job.status.in_(TRANSITIONS["interrupt"].sources))
            .values(
                status=TRANSITIONS["interrupt"].target,
                message=INTERRUPTED_MESSAGE,
                error=f"no sign of life for more than {int(seconds)} s (last at {last:%Y-%m-%d %H:%M:%S} "
                "UTC); the consumer was probably killed",
                finished_at=now,
            )
            .execution_options(synchronize_session=False)
        ).rowcount
        if updated:
            swept.append(job.id)
    db.session.commit()
    for job_id in swept:
        logger.warning("jobs: job %s marked failed: no heartbeat for %ss (consumer stopped)", job_id, seconds)
        _drop_live(job_id)
    return swept


# ---------------------------------------------------------------- permissions and pages


def can(user: User | None, action: str, job: Job) -> bool:
    """May ``user`` do ``action`` (view, retry) on ``job``? (see the module docstring)"""
    if user is None or not getattr(user, "is_authenticated", False):
        return False
    owner = user.is_staff or (job.actor_id is not None and job.actor_id == user.id)
    if action == "view":
        return owner
    if action == "retry":
        from marketplace import jobs

        return owner and job.status in TRANSITIONS["retry"].sources and jobs.is_tracked(job.kind)
    return False


def kind_label(kind: str) -> str:
    return KIND_LABELS.get(kind, kind)


def can_view(user: User | None, job: Job) -> bool:
    return can(user, "view", job)


def get_job(user: User, job_id: int) -> Job:
    """A job ``user`` may see, or NotFound / PermissionDenied."""
    job = db.session.get(Job, job_id)
    if job is None:
        raise NotFound("任务不存在")
    if not can_view(user, job):
        raise PermissionDenied("没有权限查看该任务")
    return job


def visible_jobs(
    user: User, *, page: int, per_page: int = 20, kind: str | None = None, status: str | None = None
) -> Pagination:
    """The jobs ``user`` may see, newest first: their own; organizers every job, with filters."""
    stmt = select(Job).options(selectinload(Job.actor), selectinload(Job.organization))
    if not user.is_staff:
        stmt = stmt.where(Job.actor_id == user.id)
    if kind:
        stmt = stmt.where(Job.kind == kind)
    if status:
        stmt = stmt.where(Job.status == status)
    stmt = stmt.order_by(Job.created_at.desc(), Job.id.desc())
    return db.paginate(stmt, page=page, per_page=per_page, error_out=False)


def kinds_seen(user: User) -> list[str]:
    """The job kinds in the filter of the list page."""
    stmt = select(Job.kind).distinct().order_by(Job.kind)
    if not user.is_staff:
        stmt = stmt.where(Job.actor_id == user.id)
    return list(db.session.scalars(stmt))


def recent(limit: int = 20, status: str | None = None) -> list[Job]:
    """The newest jobs (``flask jobs list``)."""
    stmt = select(Job).options(selectinload(Job.actor)).order_by(Job.created_at.desc(), Job.id.desc())
    if status:
        stmt = stmt.where(Job.status == status)
    return list(db.session.scalars(stmt.limit(limit)))


@dataclass(frozen=True)
class Snapshot:
    """A job as the pages and the status endpoint show it (the row merged with live progress)."""

    id: int
    kind: str
    title: str
    status: str
    status_label: str
    done: int
    total: int | None
    message: str
    result: dict | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    elapsed_seconds: int | None
    attempts: int

    @property
    def finished(self) -> bool:
        return self.status in (JobStatus.SUCCEEDED, JobStatus.FAILED)

    @property
    def percent(self) -> int | None:
        if not self.total:
            return 100 if self.finished else None
        return max(0, min(100, round(100 * self.done / self.total)))

    @property
    def url(self) -> str | None:
        """The result's link (only a path on this site) once the job succeeded."""
        url = (self.result or {}).get("url") if self.status == JobStatus.SUCCEEDED else None
        return url if isinstance(url, str) and url.startswith("/") and not url.startswith("//") else None

    @property
    def elapsed(self) -> str:
        """Time spent running, in Chinese (「1分05秒」)."""
        return format_elapsed(self.elapsed_seconds)

    @property
    def summary(self) -> str | None:
        summary = (self.result or {}).get("summary")
        return summary if isinstance(summary, str) else None

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "kind": self.kind,
            "title": self.title,
            "status": self.status,
            "status_label": self.status_label,
            "finished": self.finished,
            "done": self.done,
            "total": self.total,
            "percent": self.percent,
            "message": self.message,
            "elapsed_seconds": self.elapsed_seconds,
            "elapsed": self.elapsed,
            "created_at": _iso(self.created_at),
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "attempts": self.attempts,
            "summary": self.summary,
            "url": self.url,
            "result": self.result,
        }


def snapshot(job: Job) -> Snapshot:
    done, total, message = job.done or 0, job.total, job.message or ""
    if job.status == JobStatus.RUNNING:
        live = live_record(job.id)
        started = job.started_at.replace(tzinfo=UTC).timestamp() if job.started_at else None
        if live and (started is None or (live.get("heartbeat") or 0) >= started):  # not an earlier run's
            done, total = int(live.get("done") or 0), live.get("total")
            message = live.get("message") or message
    elapsed = None
    if job.started_at is not None:
        end = job.finished_at or _now()
        elapsed = max(0, int((end - job.started_at).total_seconds()))
    return Snapshot(
        id=job.id, kind=job.kind, title=job.title, status=job.status, status_label=job.status_label,
        done=done, total=total, message=message,
        result=job.result if job.status == JobStatus.SUCCEEDED else None,
        created_at=job.created_at, started_at=job.started_at, finished_at=job.finished_at,
        elapsed_seconds=elapsed, attempts=job.attempts or 0,
    )


def format_elapsed(seconds: int | None) -> str:
    if seconds is None:
        return ""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}小时{minutes}分{secs}秒"
    if minutes:
        return f"{minutes}分{secs}秒"
    return f"{secs}秒"


def _iso(value: datetime | None) -> str | None:
    return timeutil.to_local(value).isoformat(timespec="seconds") if value is not None else None

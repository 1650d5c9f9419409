"""Background jobs (后台任务) with Huey.

Each app gets one Huey instance, built from its config in :func:`init_app` and kept in
``app.extensions["jobs"]`` (a :class:`JobQueue`):

* ``REDIS_URL`` set: :class:`huey.RedisHuey` on that Redis;
* otherwise :class:`huey.SqliteHuey` in ``HUEY_SQLITE_PATH`` (default ``<instance>/huey.db``),
  embedded, nothing to start;
* ``HUEY_IMMEDIATE`` (default: on when ``TESTING``) runs every enqueued job at once, in the
  caller's process, on in-memory storage. The test suite uses it.

Jobs report through the database (and the log), not through Huey results, which are
switched off so that nothing piles up in the queue storage.

**Tracked jobs** (:func:`tracked_job`) are the long work a user waits for (an import, index
encoding): each run has a :class:`~marketplace.models.Job` row with status and progress that
the pages (``/jobs``) and the CLI show. Create the row and queue the job through the service::

    from marketplace.services import jobs as job_records
    job = job_records.create("imports.preview", title="导入预览：products.xlsx", actor=user, params={...})
    job_records.submit(job)          # queues the tracked job named job.kind with job.id

    @tracked_job("imports.preview")
    def run_preview(job: Job, progress: Progress) -> dict | None:
        ...                          # returns the JSON result (it may carry a "url" to link to)

The wrapper (:func:`marketplace.services.jobs.run_tracked`) marks the row running, calls the
function, and marks it succeeded (in the same transaction as the function's writes) or failed
(after a rollback); see that module for progress, heartbeats and the stale sweep.

Modules that register jobs are listed in :data:`TASK_MODULES`; :func:`init_app` imports them
before it builds the queue.

Jobs are plain functions registered with :func:`job` (see :mod:`marketplace.jobs.tasks`). Every
job runs inside its own app context of the app that built the queue, so it gets its own
database session, as a request does. The consumer process builds that app once through the
factory: ``flask jobs consume`` (``FLASK_APP=wsgi.py``) loads ``wsgi.create_app()`` and runs a
Huey consumer on its queue; ``./manage.sh demo`` starts it beside the web server.

Enqueue by name from anywhere inside an app context::

    from marketplace import jobs
    jobs.enqueue(jobs.tasks.DRAIN_OUTBOX)
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask, current_app
from huey import Huey, RedisHuey, SqliteHuey
from huey.api import TaskWrapper

logger = logging.getLogger(__name__)

EXTENSION_KEY = "jobs"
QUEUE_NAME = "marketplace"

#: Builds a Huey periodic-task test (``huey.crontab(...)``) from the app config.
Schedule = Callable[[dict[str, Any]], Callable]


@dataclass(frozen=True)
class JobSpec:
    name: str
    func: Callable[..., Any]
    schedule: Schedule | None = None


_REGISTRY: dict[str, JobSpec] = {}
#: The names of the registered tracked jobs (:func:`tracked_job`).
_TRACKED: set[str] = set()

#: Modules whose import registers jobs (add yours here).
TASK_MODULES: tuple[str, ...] = (
    "marketplace.jobs.tasks", "marketplace.imports.tasks", "marketplace.jobs.learning",
    "marketplace.jobs.finetune",
    "marketplace.services.search_build",
)


def job(name: str, schedule: Schedule | None = None) -> Callable[[Callable], Callable]:
    """Register ``func`` as the background job ``name``; ``schedule`` makes it periodic too.

    The function itself is returned unchanged, so it can still be called inline.
    """

    def decorator(func: Callable) -> Callable:
        known = _REGISTRY.get(name)
        if known is not None and known.func is not func and _qualname(known.func) != _qualname(func):
            raise RuntimeError(f"job {name!r} is already registered")
        _REGISTRY[name] = JobSpec(name, func, schedule)
        return func

    return decorator


def tracked_job(name: str) -> Callable[[Callable], Callable]:
    """Register ``func(job, progress) -> dict | None`` as the tracked job ``name``.

    The queued task takes the Job's id; :func:`marketplace.services.jobs.run_tracked` runs it.
    The function itself is returned unchanged, so tests can call it with a ``NullProgress``.
    """

    def decorator(func: Callable) -> Callable:
        @functools.wraps(func)
        def run(job_id: int) -> None:
            from marketplace.services import jobs as job_records

            job_records.run_tracked(job_id, func)

        job(name)(run)
        _TRACKED.add(name)
        return func

    return decorator


def is_tracked(name: str) -> bool:
    """Whether ``name`` is a registered tracked job (one that takes a Job id)."""
    return name in _TRACKED


def _qualname(func: Callable) -> str:
    """Where a function was defined (a module imported twice re-registers the same job)."""
    return f"{func.__module__}.{func.__qualname__}"


class JobQueue:
    """The Huey instance of one app and its registered tasks, by job name."""

    def __init__(self, huey: Huey, tasks: dict[str, TaskWrapper]) -> None:
        self.huey = huey
        self.tasks = tasks

    def enqueue(self, name: str, *args: Any, **kwargs: Any) -> None:
        """Queue job ``name`` (in immediate mode: run it now)."""
        try:
            task = self.tasks[name]
        except KeyError:
            raise LookupError(f"unknown job {name!r}") from None
        task(*args, **kwargs)


def create_huey(config: dict[str, Any]) -> Huey:
    """The Huey instance the config asks for (see the module docstring)."""
    immediate = config.get("HUEY_IMMEDIATE")
    if immediate is None:
        immediate = bool(config.get("TESTING"))
    redis_url = config.get("REDIS_URL")
    if redis_url:
        return RedisHuey(QUEUE_NAME, results=False, url=redis_url, immediate=bool(immediate))
    path = Path(config["HUEY_SQLITE_PATH"])
    if not immediate:
        path.parent.mkdir(parents=True, exist_ok=True)
    return SqliteHuey(QUEUE_NAME, results=False, filename=str(path), immediate=bool(immediate))


def _in_app_context(app: Flask, func: Callable) -> Callable:
    @functools.wraps(func)
    def run(*args: Any, **kwargs: Any) -> Any:
        with app.app_context():
            return func(*args, **kwargs)

    return run


def init_app(app: Flask) -> JobQueue:
    """Build the app's Huey instance and register every job on it (once per app)."""
    if EXTENSION_KEY in app.extensions:
        raise RuntimeError("the job queue is already registered on this app")
    import importlib

    from marketplace.jobs.cli import jobs_cli

    for module in TASK_MODULES:
        importlib.import_module(module)  # registers its jobs

    huey = create_huey(app.config)
    wrappers: dict[str, TaskWrapper] = {}
    for spec in _REGISTRY.values():
        bound = _in_app_context(app, spec.func)
        if spec.schedule is not None:
            wrappers[spec.name] = huey.periodic_task(spec.schedule(app.config), name=spec.name)(bound)
        else:
            wrappers[spec.name] = huey.task(name=spec.name)(bound)
    queue = JobQueue(huey, wrappers)
    app.extensions[EXTENSION_KEY] = queue
    app.cli.add_command(jobs_cli)
    return queue


def get_queue() -> JobQueue:
    return current_app.extensions[EXTENSION_KEY]


def enqueue(name: str, *args: Any, **kwargs: Any) -> None:
    """Queue job ``name`` on the current app's queue."""
    get_queue().enqueue(name, *args, **kwargs)

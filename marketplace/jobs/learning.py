"""The learned re-ranker's jobs: ``matching.learn`` (tracked: the organizers' button, ``flask
matching learn --queue``) and ``matching.learn_nightly`` (periodic), which queues the former
every night at ``MATCHING_LEARN_HOUR`` o'clock in ``DISPLAY_TIMEZONE`` (03:00 Beijing time by
default; ``-1`` switches it off) when new judgements were recorded since the last trained model.
"""

from __future__ import annotations

from typing import Any

from flask import current_app
from sqlalchemy import select

from marketplace.extensions import db
from marketplace.jobs import job, tracked_job
from marketplace.jobs.tasks import daily_digest_time
from marketplace.models import Job, RankingKind, RankingModel, User
from marketplace.services import jobs as job_records
from marketplace.services import judgements
from marketplace.services.matching import learning

LEARN_NIGHTLY = "matching.learn_nightly"


def nightly_time(config: dict[str, Any]):
    """``MATCHING_LEARN_HOUR`` local time as a UTC crontab; never when it is negative."""
    hour = int(config.get("MATCHING_LEARN_HOUR", 3))
    if hour < 0:
        return lambda _moment: False
    return daily_digest_time({"NOTIFY_DIGEST_HOUR": hour})


def _page_path() -> str:
    adapter = current_app.url_map.bind("", script_name=current_app.config.get("APPLICATION_ROOT") or "/")
    return adapter.build("matching.learning")


@tracked_job(learning.LEARN_JOB)
def run_learn(job: Job, progress: job_records.Progress) -> dict:
    """Train, evaluate and store a re-ranker (see :func:`learning.learn`)."""
    actor = db.session.get(User, job.actor_id) if job.actor_id else None
    try:
        model = learning.learn(actor, progress, job_id=job.id)
    except learning.NotEnoughJudgements as exc:
        progress.set_message(exc.message)
        return {"trained": False, "summary": exc.message, "url": _page_path()}
    summary = f"学习排序模型 {model.version}（{model.status_label}）：{model.reason}"
    progress.set_message(summary[:200])
    return {"trained": True, "model": model.version, "status": model.status, "summary": summary,
            "url": _page_path()}


def new_judgements_since_last_model() -> bool:
    """Whether some judgement was decided after the last re-ranker was trained (or none was)."""
    last = db.session.scalar(
        select(RankingModel.created_at).where(RankingModel.kind == RankingKind.RERANKER)
        .order_by(RankingModel.id.desc()).limit(1)
    )
    return bool(judgements.collect(since=last)) if last is not None else bool(judgements.collect())


@job(LEARN_NIGHTLY, schedule=nightly_time)
def learn_nightly() -> None:
    """Queue the tracked ``matching.learn`` job when there is something new to learn from."""
    if new_judgements_since_last_model():
        job_records.submit(job_records.create(learning.LEARN_JOB, title=learning.LEARN_JOB_TITLE))

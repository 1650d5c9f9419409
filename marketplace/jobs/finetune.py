"""The encoder fine-tune's jobs: ``matching.finetune`` (tracked: ``flask matching finetune
--queue``) and ``matching.finetune_nightly`` (periodic), which queues the former every night at
``MATCHING_FINETUNE_HOUR`` o'clock in ``DISPLAY_TIMEZONE`` (04:00 Beijing time by default, an
hour after the re-ranker; ``-1`` switches it off) when there are at least
``MATCHING_FINETUNE_MIN_PAIRS`` positive pairs and they grew since the last fine-tune
(:func:`marketplace.services.matching.finetune.new_pairs_since_last_model`).
"""

from __future__ import annotations

from typing import Any

from marketplace.extensions import db
from marketplace.jobs import job, tracked_job
from marketplace.jobs.learning import nightly_time
from marketplace.models import Job, User
from marketplace.services import jobs as job_records
from marketplace.services.matching import finetune

FINETUNE_NIGHTLY = "matching.finetune_nightly"


def finetune_time(config: dict[str, Any]):
    """``MATCHING_FINETUNE_HOUR`` local time as a UTC crontab; never when it is negative."""
    return nightly_time({"MATCHING_LEARN_HOUR": int(config.get("MATCHING_FINETUNE_HOUR", 4))})


@tracked_job(finetune.FINETUNE_JOB)
def run_finetune(job: Job, progress: job_records.Progress) -> dict:
    """Fine-tune, evaluate, store and perhaps switch the encoder (see :func:`finetune.finetune`)."""
    actor = db.session.get(User, job.actor_id) if job.actor_id else None
    params = job.params or {}
    try:
        model = finetune.finetune(
            actor, progress, min_pairs_override=params.get("min_pairs"), epochs=int(params.get("epochs", 1)),
            force=bool(params.get("force")), job_id=job.id,
        )
    except (finetune.NotEnoughPairs, finetune.FineTuneRefused) as exc:
        progress.set_message(exc.message)
        return {"trained": False, "summary": exc.message}
    summary = f"微调语义模型 {model.version}（{model.status_label}）：{model.reason}"
    progress.set_message(summary[:200])
    return {"trained": True, "model": model.version, "status": model.status, "summary": summary}


@job(FINETUNE_NIGHTLY, schedule=finetune_time)
def finetune_nightly() -> None:
    """Queue the tracked ``matching.finetune`` job when there are enough new pairs."""
    if finetune.new_pairs_since_last_model():
        finetune.queue_finetune(None)

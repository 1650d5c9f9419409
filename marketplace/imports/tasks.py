"""The two background jobs of a web import, and the steps that start them.

1. :func:`start_preview` stores the uploaded file (upload rules, purpose ``import``) and queues
   ``imports.preview``; the job reads the file, runs :func:`services.imports.preview` and keeps the
   JSON preview as its result, which links to the preview page ``/imports/<job id>``.
2. :func:`start_apply` (「确认导入」, only when the preview found no error) queues ``imports.apply``
   with the same stored file; the job runs :func:`services.imports.apply`, which validates again
   and writes all rows in one transaction or nothing. Its result links to ``/imports/<job id>``
   too, where the summary of what was written is shown.

Both jobs run as their ``actor`` (the uploader): the service's permission rules apply in the
worker exactly as they do in the request. Nothing here touches the request.
"""

from __future__ import annotations

from typing import Any, BinaryIO

from flask import current_app
from sqlalchemy import select

from marketplace.extensions import db
from marketplace.jobs import tracked_job
from marketplace.models import Batch, Job, JobStatus, User
from marketplace.services import imports, spreadsheets, uploads
from marketplace.services import jobs as job_records
from marketplace.services.errors import DomainError, InvalidTransition, NotFound, PermissionDenied

PREVIEW_JOB = "imports.preview"
APPLY_JOB = "imports.apply"
JOB_KINDS = (PREVIEW_JOB, APPLY_JOB)
UPLOAD_PURPOSE = "import"


def upload_policy() -> uploads.UploadPolicy:
    """XLSX or CSV up to ``IMPORT_MAX_BYTES`` (the importer's own limit)."""
    limit = spreadsheets.Limits.from_config().max_bytes
    return uploads.UploadPolicy(
        purpose=UPLOAD_PURPOSE, types=frozenset({uploads.XLSX, uploads.CSV}), max_mb=limit / 1024 / 1024
    )


def _path(endpoint: str, **values: Any) -> str:
    """A site path built without a request (jobs run in the worker)."""
    adapter = current_app.url_map.bind("", script_name=current_app.config.get("APPLICATION_ROOT") or "/")
    return adapter.build(endpoint, values)


def batch_or_none(job: Job) -> Batch | None:
    """The batch an import goes into, if it still exists (for the pages)."""
    batch_id = (job.params or {}).get("batch_id")
    return db.session.get(Batch, int(batch_id)) if batch_id is not None else None


def _batch_of(job: Job) -> Batch | None:
    batch_id = (job.params or {}).get("batch_id")
    if batch_id is None:
        return None
    batch = db.session.get(Batch, int(batch_id))
    if batch is None:
        raise NotFound("导入的批次已不存在")
    return batch


def _file_bytes(job: Job) -> bytes:
    if job.file is None:
        raise NotFound("导入文件已被删除，请重新上传")
    return uploads.open_file(job.file).read_bytes()


# ---------------------------------------------------------------- starting


def start_preview(actor: User, kind: str, batch: Batch | None, stream: BinaryIO, filename: str | None) -> Job:
    """Store the file and queue its preview; raises PermissionDenied or ValidationFailed (``file``)."""
    kind = spreadsheets.normalize_kind(kind)
    if not imports.can_import(actor, kind, batch):
        raise PermissionDenied("没有权限导入该清单" if batch is None else "没有权限导入该批次")
    stored = uploads.store(stream, filename, upload_policy(), actor.organization_id, actor, field="file")
    try:
        db.session.flush()
        job = job_records.create(
            PREVIEW_JOB,
            title=f"导入预览：{spreadsheets.KIND_LABELS[kind]}（{stored.original_name}）",
            actor=actor,
            organization=actor.organization,
            file=stored,
            params={"kind": kind, "batch_id": batch.id if batch is not None else None},
        )
    except Exception:
        db.session.rollback()
        uploads.remove_file(stored)
        raise
    return job_records.submit(job)


def apply_job_of(preview_job: Job) -> Job | None:
    """The newest apply job started from this preview (same file), if any."""
    if preview_job.file_id is None:
        return None
    return db.session.scalar(
        select(Job)
        .where(Job.kind == APPLY_JOB, Job.file_id == preview_job.file_id)
        .order_by(Job.id.desc())
        .limit(1)
    )


def confirm_problem(user: User, preview_job: Job) -> DomainError | None:
    """Why ``user`` may not confirm this preview (「确认导入」), or None: only the uploader, once
    the preview succeeded without errors and was not applied yet (a failed apply may be
    confirmed again), while they may still import into that target."""
    if preview_job.kind != PREVIEW_JOB:
        return NotFound("导入预览不存在")
    if preview_job.actor_id is None or preview_job.actor_id != getattr(user, "id", None):
        return PermissionDenied("只有上传文件的用户可以确认导入")
    preview = preview_of(preview_job)
    if preview is None:
        return InvalidTransition("预览尚未完成")
    if not preview.ok:
        return InvalidTransition("文件中有错误，未写入任何数据；请修改后重新上传")
    if not preview.counts[imports.CREATE] and not preview.counts[imports.UPDATE]:
        return InvalidTransition("文件中的数据与平台现有数据一致，无需导入")
    applied = apply_job_of(preview_job)
    if applied is not None and applied.status != JobStatus.FAILED:
        return InvalidTransition("该文件已确认导入，请勿重复提交")
    batch_id = (preview_job.params or {}).get("batch_id")
    batch = batch_or_none(preview_job)
    if batch_id is not None and batch is None:
        return NotFound("导入的批次已不存在")
    if batch is not None and not batch.is_open:
        return InvalidTransition("该批次已发布，不能再导入条目；请重新上传并选择征集中的批次")
    if not imports.can_import(user, preview_job.params["kind"], batch):
        return PermissionDenied("没有权限导入该清单")
    return None


def can_confirm(user: User, preview_job: Job) -> bool:
    return confirm_problem(user, preview_job) is None


def start_apply(actor: User, preview_job: Job) -> Job:
    """Queue the import of a previewed file with the same stored file (see :func:`confirm_problem`)."""
    problem = confirm_problem(actor, preview_job)
    if problem is not None:
        raise problem
    kind = preview_job.params["kind"]
    job = job_records.create(
        APPLY_JOB,
        title=f"确认导入：{spreadsheets.KIND_LABELS[kind]}（{preview_job.file.original_name}）",
        actor=actor,
        organization=actor.organization,
        file=preview_job.file,
        params={**preview_job.params, "preview_job_id": preview_job.id},
    )
    return job_records.submit(job)


# ---------------------------------------------------------------- reading results


def import_job(user: User, job_id: int) -> Job:
    """An import job ``user`` may see (the uploader and organizers), else NotFound/PermissionDenied."""
    job = db.session.get(Job, job_id)
    if job is None or job.kind not in JOB_KINDS:
        raise NotFound("导入任务不存在")
    if not job_records.can_view(user, job):
        raise PermissionDenied("只有上传人和组织方可以查看该导入")
    return job


def preview_of(job: Job) -> imports.Preview | None:
    """The preview a succeeded preview job carries."""
    data = (job.result or {}).get("preview") if job.status == JobStatus.SUCCEEDED else None
    return imports.Preview.from_dict(data) if data else None


# ---------------------------------------------------------------- the jobs


@tracked_job(PREVIEW_JOB)
def run_preview(job: Job, progress: job_records.Progress) -> dict:
    """Read and check the file; the result is the preview (rows, errors, near-duplicates)."""
    preview = imports.preview(
        job.params["kind"], _file_bytes(job), job.file.original_name, actor=job.actor,
        batch=_batch_of(job), progress=progress,
    )
    if preview.file_errors:
        summary = "文件无法导入：" + "；".join(preview.file_errors)
    else:
        summary = _counts_text(preview.counts) + ("，请确认导入" if preview.ok else "，请修改后重新上传")
    return {"url": _path("imports.preview", id=job.id), "summary": summary, "preview": preview.to_dict()}


@tracked_job(APPLY_JOB)
def run_apply(job: Job, progress: job_records.Progress) -> dict:
    """Write the file's rows, all or nothing: the service checks every row again and raises when
    any is invalid; the job commits the work together with its result."""
    summary = imports.apply(
        job.params["kind"], _file_bytes(job), job.file.original_name, actor=job.actor,
        batch=_batch_of(job), progress=progress, commit=False,
    )
    return {
        "url": _path("imports.preview", id=job.id),
        "summary": "导入完成：" + summary.describe(),
        "applied": summary.to_dict(),
    }


def _counts_text(counts: dict[str, int]) -> str:
    return "，".join(f"{label}{counts.get(action, 0)}行" for action, label in imports.ACTION_LABELS.items())

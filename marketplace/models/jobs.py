"""Background job records (后台任务): what the user sees of a job while and after it runs.

Huey carries the work; a :class:`Job` row carries its story: the kind, who started it, its
status, progress (``done`` of ``total``), a message, and the result or error. The service
(:mod:`marketplace.services.jobs`) is the only writer.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from marketplace.extensions import db
from marketplace.models.accounts import Organization, User
from marketplace.models.base import utcnow
from marketplace.models.enums import LabelledEnum


class JobStatus(LabelledEnum):
    QUEUED = "queued", "排队中"
    RUNNING = "running", "进行中"
    SUCCEEDED = "succeeded", "已完成"
    FAILED = "failed", "失败"


FINISHED_JOB_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED})


class Job(db.Model):
    __tablename__ = "job"
    __table_args__ = (
        Index("ix_job_actor_created", "actor_id", "created_at"),
        Index("ix_job_status_created", "status", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: The registered job name, e.g. ``imports.preview`` or ``matching.encode_entries``.
    kind: Mapped[str] = mapped_column(String(60), index=True)
    #: What the user sees, in Chinese (「导入产品清单：products.xlsx」).
    title: Mapped[str] = mapped_column(String(200), default="")
    status: Mapped[str] = mapped_column(String(20), default=JobStatus.QUEUED)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    organization_id: Mapped[int | None] = mapped_column(ForeignKey("organization.id", ondelete="SET NULL"))
    #: An input file (an uploaded spreadsheet to import), through the upload rules.
    file_id: Mapped[int | None] = mapped_column(ForeignKey("stored_file.id", ondelete="SET NULL"))
    done: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int | None] = mapped_column(Integer)
    message: Mapped[str] = mapped_column(String(500), default="")
    #: The job's arguments (JSON-safe), so that a retried job can run again.
    params: Mapped[dict] = mapped_column(JSON, default=dict)
    result: Mapped[dict | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    #: Last sign of life from the worker running it; a running job whose heartbeat is old was
    #: killed with its consumer and is marked failed (see the service).
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)

    actor: Mapped[User | None] = relationship()
    organization: Mapped[Organization | None] = relationship()
    file: Mapped[StoredFile | None] = relationship("StoredFile")  # noqa: F821

    @property
    def status_label(self) -> str:
        return JobStatus.label_of(self.status)

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_JOB_STATUSES

    @property
    def percent(self) -> int | None:
        """Progress in whole percent, or None when the total is not known yet."""
        if not self.total:
            return 100 if self.is_finished else None
        return max(0, min(100, round(100 * self.done / self.total)))

    def __repr__(self) -> str:
        return f"<Job {self.id} {self.kind} {self.status}>"

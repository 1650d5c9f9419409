"""In-app notifications (站内通知), email preferences, the email outbox and match alerts."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from marketplace import timeutil
from marketplace.extensions import db
from marketplace.models.accounts import User
from marketplace.models.enums import LabelledEnum


class NotificationKind(LabelledEnum):
    RESPONSE_NEW = "response_new", "新的答题"
    RESPONSE_STATUS = "response_status", "答题状态变化"
    CONSORTIUM_INVITE = "consortium_invite", "联合体邀请"
    CONSORTIUM_ANSWER = "consortium_answer", "联合体邀请答复"
    ENTRY_RETURNED = "entry_returned", "条目被退回"
    ENTRY_APPROVED = "entry_approved", "条目审核通过"
    ENTRY_PUBLISHED = "entry_published", "条目已发布"
    DEADLINE_SOON = "deadline_soon", "关注的需求即将截止"
    NEW_MATCH = "new_match", "新的匹配需求"
    EVENT_INVITATION = "event_invitation", "活动对接邀请"
    INVITATION_ANSWER = "invitation_answer", "对接邀请答复"
    REGISTRATION_STATUS = "registration_status", "活动报名状态"
    ORG_IDENTITY = "org_identity", "单位名称或信用代码变更审核"
    STAGE_CHANGED = "stage_changed", "场景阶段变化"
    SIGNING = "signing", "项目签约"
    LAB_LINK = "lab_link", "实验室对接"
    DESIGNATION = "designation", "十百千认定"


class OutboxStatus(LabelledEnum):
    PENDING = "pending", "待发送"
    SENDING = "sending", "发送中"
    SENT = "sent", "已发送"
    FAILED = "failed", "发送失败"


class Notification(db.Model):
    """One message to one user. Written in the same transaction as the change it reports."""

    __tablename__ = "notification"
    __table_args__ = (
        Index("ix_notification_user_created", "user_id", "created_at"),
        Index("ix_notification_user_read", "user_id", "read_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(30))
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text, default="")
    #: An internal path (``/my/opportunities/3``), never an external address.
    url: Mapped[str] = mapped_column(String(500), default="")
    read_at: Mapped[datetime | None] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=timeutil.now_naive_utc)

    user: Mapped[User] = relationship()

    @property
    def kind_label(self) -> str:
        return NotificationKind.label_of(self.kind)

    @property
    def is_read(self) -> bool:
        return self.read_at is not None


class NotificationPreference(db.Model):
    """Whether a user gets email for one notification kind. No row means yes."""

    __tablename__ = "notification_preference"

    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(30), primary_key=True)
    email_enabled: Mapped[bool] = mapped_column(Boolean, default=True)


class EmailOutbox(db.Model):
    """An email waiting to be sent (or sent, or given up on) by the outbox drain job.

    The message is complete here (recipient, subject, body), so sending needs no other row.
    ``lease_token``/``lease_until`` mark the rows a drain has claimed; a lease that ran out
    (the consumer died) makes the row claimable again.
    """

    __tablename__ = "email_outbox"
    __table_args__ = (Index("ix_email_outbox_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    notification_id: Mapped[int | None] = mapped_column(
        ForeignKey("notification.id", ondelete="SET NULL"), index=True
    )
    recipient: Mapped[str] = mapped_column(String(120))
    subject: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), default=OutboxStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime, default=timeutil.now_naive_utc)
    lease_token: Mapped[str | None] = mapped_column(String(32), index=True)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=timeutil.now_naive_utc)

    notification: Mapped[Notification | None] = relationship()

    @property
    def status_label(self) -> str:
        return OutboxStatus.label_of(self.status)


class MatchAlert(db.Model):
    """A user was told about a need by a matching digest (deadline_soon or new_match).

    The unique constraint makes a rerun, or two consumers running the same digest, unable to
    tell a user about the same need twice for the same reason.
    """

    __tablename__ = "match_alert"
    __table_args__ = (
        UniqueConstraint("user_id", "kind", "opportunity_id", name="uq_match_alert_user_kind_need"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(30))
    opportunity_id: Mapped[int] = mapped_column(ForeignKey("opportunity.id", ondelete="CASCADE"), index=True)
    notification_id: Mapped[int | None] = mapped_column(ForeignKey("notification.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=timeutil.now_naive_utc)

    notification: Mapped[Notification | None] = relationship()

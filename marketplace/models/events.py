"""Events (活动), registrations (报名), shortlists (对接名单) and the 1:1 meeting tables.

The workflows (who may do what, from which status) are declared as data in
:mod:`marketplace.services.events` and :mod:`marketplace.services.shortlists`.

Every timestamp is naive UTC (:func:`marketplace.models.base.utcnow`); dates a user types (the
registration deadline) are Beijing dates, closed at 23:59:59 Beijing time.

``ShortlistDecision`` is append-only: it records every human decision on a shortlist, with a
snapshot of what the matching engine proposed at that moment for that firm. It is the training
signal of a later learning-to-rank issue; never update or delete its rows.

``MeetingPlan`` and ``Meeting`` are the tables of the 1:1 对接洽谈 scheduler. They are created
here (one migration for the whole events domain); the scheduler and its pages are built on them
later.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from marketplace.extensions import db
from marketplace.models.accounts import Organization, User
from marketplace.models.base import utcnow
from marketplace.models.entries import Opportunity, Product
from marketplace.models.enums import LabelledEnum


class EventKind(LabelledEnum):
    RELEASE = "release", "清单发布会"
    ROADSHOW = "roadshow", "产品路演"
    SALON = "salon", "场景沙龙"
    MATCHMAKING = "matchmaking", "供需对接会"
    SIGNING = "signing", "项目签约"


class EventStatus(LabelledEnum):
    DRAFT = "draft", "筹备中"
    OPEN = "open", "报名中"
    FINISHED = "finished", "已结束"
    CANCELLED = "cancelled", "已取消"


class RegistrationStatus(LabelledEnum):
    PENDING = "pending", "待确认"
    CONFIRMED = "confirmed", "已确认"
    DECLINED = "declined", "未通过"
    CANCELLED = "cancelled", "已取消"


class ShortlistSource(LabelledEnum):
    """How a firm got onto a shortlist (an entry may have several)."""

    RECOMMENDED = "recommended", "推荐"
    RESPONDED = "responded", "已答题"
    REGISTERED = "registered", "已报名"
    ADDED = "added", "手动添加"


class EventInvitationStatus(LabelledEnum):
    NONE = "none", "未邀请"
    INVITED = "invited", "待答复"
    CONFIRMED = "confirmed", "确认参加"
    DECLINED = "declined", "婉拒"


class DeclineReason(LabelledEnum):
    MISMATCH = "mismatch", "不匹配"
    SCHEDULE = "schedule", "时间冲突"
    OTHER = "other", "其他"


class DecisionAction(LabelledEnum):
    ADDED = "added", "加入名单"
    REMOVED = "removed", "移出名单"
    MOVED = "moved", "调整顺序"
    PINNED = "pinned", "置顶"
    UNPINNED = "unpinned", "取消置顶"
    NOTED = "noted", "备注"
    INVITED = "invited", "发出邀请"
    CONFIRMED = "confirmed", "确认参加"
    DECLINED = "declined", "婉拒"
    PUBLISHER_REQUESTED = "publisher_requested", "发布单位希望洽谈"
    PUBLISHER_UNREQUESTED = "publisher_unrequested", "发布单位取消洽谈意向"
    #: Written by the 1:1 meeting scheduler (met) and by signings (services/lifecycle.py): a
    #: signing appends ``signed`` for each signing firm on a shortlist of its need, and
    #: ``unsigned`` when the signing is deleted or the firm is taken off it.
    MET = "met", "已洽谈"
    SIGNED = "signed", "已签约"
    UNSIGNED = "unsigned", "撤销签约"


class MeetingStatus(LabelledEnum):
    SCHEDULED = "scheduled", "已排期"
    HELD = "held", "已洽谈"
    CANCELLED = "cancelled", "已取消"
    NO_SHOW = "no_show", "未到场"


class MeetingSource(LabelledEnum):
    AUTO = "auto", "自动排期"
    MANUAL = "manual", "手动安排"


class Event(db.Model):
    """An event run by the organizers: 清单发布会, 产品路演, 场景沙龙, 供需对接会 or 项目签约."""

    __tablename__ = "event"
    __table_args__ = (Index("ix_event_status_starts", "status", "starts_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    title: Mapped[str] = mapped_column(String(120))
    status: Mapped[str] = mapped_column(String(20), default=EventStatus.DRAFT)
    starts_at: Mapped[datetime] = mapped_column(DateTime)
    ends_at: Mapped[datetime | None] = mapped_column(DateTime)
    venue: Mapped[str] = mapped_column(String(200), default="")
    #: http(s) only, checked by the service.
    online_url: Mapped[str] = mapped_column(String(500), default="")
    capacity: Mapped[int] = mapped_column(Integer)
    #: A Beijing date: registration closes at 23:59:59 Beijing time on that day.
    registration_deadline: Mapped[date] = mapped_column(Date)
    description: Mapped[str] = mapped_column(Text, default="")
    cancel_reason: Mapped[str | None] = mapped_column(Text)
    published_at: Mapped[datetime | None] = mapped_column(DateTime)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    featured: Mapped[list[EventOpportunity]] = relationship(
        back_populates="event", cascade="all, delete-orphan",
        order_by="(EventOpportunity.position, EventOpportunity.opportunity_id)",
    )
    registrations: Mapped[list[Registration]] = relationship(
        back_populates="event", cascade="all, delete-orphan", order_by="Registration.id"
    )
    created_by: Mapped[User | None] = relationship()

    @property
    def kind_label(self) -> str:
        return EventKind.label_of(self.kind)

    @property
    def status_label(self) -> str:
        return EventStatus.label_of(self.status)

    @property
    def is_published(self) -> bool:
        return self.status in (EventStatus.OPEN, EventStatus.FINISHED)

    @property
    def confirmed_count(self) -> int:
        return sum(1 for r in self.registrations if r.status == RegistrationStatus.CONFIRMED)

    @property
    def seats_left(self) -> int:
        return max(self.capacity - self.confirmed_count, 0)


class EventOpportunity(db.Model):
    """A published need featured at an event."""

    __tablename__ = "event_opportunity"

    event_id: Mapped[int] = mapped_column(ForeignKey("event.id", ondelete="CASCADE"), primary_key=True)
    opportunity_id: Mapped[int] = mapped_column(ForeignKey("opportunity.id"), primary_key=True, index=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    added_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    added_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    event: Mapped[Event] = relationship(back_populates="featured")
    opportunity: Mapped[Opportunity] = relationship()


class Registration(db.Model):
    """A firm's registration (报名) for an event. One row per (event, organization): a firm
    that cancelled and registers again reuses its row."""

    __tablename__ = "registration"
    __table_args__ = (
        UniqueConstraint("event_id", "organization_id", name="uq_registration_event_org"),
        Index("ix_registration_event_status", "event_id", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("event.id", ondelete="CASCADE"))
    organization_id: Mapped[int] = mapped_column(ForeignKey("organization.id"), index=True)
    status: Mapped[str] = mapped_column(String(20), default=RegistrationStatus.PENDING)
    note: Mapped[str] = mapped_column(String(500), default="")
    #: The organizer's reason when declining (the firm sees it).
    decision_reason: Mapped[str | None] = mapped_column(Text)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime)
    cancelled_at: Mapped[datetime | None] = mapped_column(DateTime)

    event: Mapped[Event] = relationship(back_populates="registrations")
    organization: Mapped[Organization] = relationship()
    product_rows: Mapped[list[RegistrationProduct]] = relationship(
        cascade="all, delete-orphan", order_by="RegistrationProduct.product_id"
    )

    @property
    def status_label(self) -> str:
        return RegistrationStatus.label_of(self.status)

    @property
    def products(self) -> list[Product]:
        return [row.product for row in self.product_rows]

    @property
    def product_ids(self) -> list[int]:
        return [row.product_id for row in self.product_rows]


class RegistrationProduct(db.Model):
    """A product the firm brings to the event."""

    __tablename__ = "registration_product"

    registration_id: Mapped[int] = mapped_column(
        ForeignKey("registration.id", ondelete="CASCADE"), primary_key=True
    )
    product_id: Mapped[int] = mapped_column(ForeignKey("product.id"), primary_key=True, index=True)

    product: Mapped[Product] = relationship()


class Shortlist(db.Model):
    """The 对接名单 of one featured need at one event.

    ``proposal`` is the merged proposal computed when the organizer opened it (engine top
    candidates, responding and registered firms, grouped by firm); see
    :func:`marketplace.services.shortlists.propose`.
    """

    __tablename__ = "shortlist"
    __table_args__ = (UniqueConstraint("event_id", "opportunity_id", name="uq_shortlist_event_need"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("event.id", ondelete="CASCADE"), index=True)
    opportunity_id: Mapped[int] = mapped_column(ForeignKey("opportunity.id"), index=True)
    target_size: Mapped[int] = mapped_column(Integer, default=8)
    note: Mapped[str] = mapped_column(Text, default="")
    proposal: Mapped[dict] = mapped_column(JSON, default=dict)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    event: Mapped[Event] = relationship()
    opportunity: Mapped[Opportunity] = relationship()
    entries: Mapped[list[ShortlistEntry]] = relationship(
        back_populates="shortlist", cascade="all, delete-orphan",
        order_by="(ShortlistEntry.pinned.desc(), ShortlistEntry.position, ShortlistEntry.id)",
    )


class ShortlistEntry(db.Model):
    """One firm on a shortlist, with the products shown under it and its invitation.

    The displayed order is pinned entries first, then ``position`` (see ``Shortlist.entries``).
    ``products`` is a JSON list of ``{"id", "score", "reason"}`` (score and 推荐理由 for this need,
    computed when the firm was put on the list); ``sources`` lists :class:`ShortlistSource` codes.
    """

    __tablename__ = "shortlist_entry"
    __table_args__ = (
        UniqueConstraint("shortlist_id", "organization_id", name="uq_shortlist_entry_org"),
        Index("ix_shortlist_entry_org_invitation", "organization_id", "invitation_status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    shortlist_id: Mapped[int] = mapped_column(ForeignKey("shortlist.id", ondelete="CASCADE"))
    organization_id: Mapped[int] = mapped_column(ForeignKey("organization.id"))
    position: Mapped[int] = mapped_column(Integer, default=0)
    pinned: Mapped[bool] = mapped_column(Boolean, default=False)
    note: Mapped[str] = mapped_column(String(500), default="")
    sources: Mapped[list[str]] = mapped_column(JSON, default=list)
    products: Mapped[list[dict]] = mapped_column(JSON, default=list)
    #: The best product score for the need when the firm was put on the list (None: no product).
    score: Mapped[float | None] = mapped_column()
    publisher_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    invitation_status: Mapped[str] = mapped_column(String(20), default=EventInvitationStatus.NONE)
    invited_at: Mapped[datetime | None] = mapped_column(DateTime)
    answered_at: Mapped[datetime | None] = mapped_column(DateTime)
    decline_reason: Mapped[str | None] = mapped_column(String(20))
    decline_detail: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    shortlist: Mapped[Shortlist] = relationship(back_populates="entries")
    organization: Mapped[Organization] = relationship()

    @property
    def product_ids(self) -> list[int]:
        return [int(p["id"]) for p in self.products or []]

    @property
    def invitation_label(self) -> str:
        return EventInvitationStatus.label_of(self.invitation_status)

    @property
    def source_labels(self) -> list[str]:
        return [ShortlistSource.label_of(s) for s in self.sources or []]

    @property
    def decline_label(self) -> str:
        label = DeclineReason.label_of(self.decline_reason) if self.decline_reason else ""
        if self.decline_detail:
            return f"{label}：{self.decline_detail}" if label else self.decline_detail
        return label


class ShortlistDecision(db.Model):
    """One decision on a shortlist, as it happened (append-only).

    ``engine`` is what the matching engine proposed for this firm at that moment::

        {"rank": 3,                 # the firm's rank among firms in the engine's top k (None: not in it)
         "k": 30, "encoder": "offline",
         "score": 0.71,             # its best product score for the need (None: no published product)
         "products": [{"id": 12, "rank": 4, "score": 0.71, "breakdown": {...},
                       "matched_terms": [...], "reason": "推荐理由：…"}]}

    ``from_rank``/``to_rank`` are 1-based positions in the displayed list (None when the firm was
    not on, or left, the list).
    """

    __tablename__ = "shortlist_decision"
    __table_args__ = (
        Index("ix_shortlist_decision_shortlist", "shortlist_id", "id"),
        Index("ix_shortlist_decision_org", "organization_id", "action"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    shortlist_id: Mapped[int] = mapped_column(ForeignKey("shortlist.id", ondelete="CASCADE"))
    organization_id: Mapped[int] = mapped_column(ForeignKey("organization.id"))
    product_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    action: Mapped[str] = mapped_column(String(30))
    from_rank: Mapped[int | None] = mapped_column(Integer)
    to_rank: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text, default="")
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    engine: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    organization: Mapped[Organization] = relationship()
    actor: Mapped[User | None] = relationship()

    @property
    def action_label(self) -> str:
        return DecisionAction.label_of(self.action)


class MeetingPlan(db.Model):
    """The frame of an event's 1:1 对接洽谈 schedule (one per event), for the scheduler.

    ``sessions`` is a JSON list of half-days, each with naive-UTC ISO datetimes::

        [{"start": "2026-12-16T06:30:00", "end": "2026-12-16T09:30:00",
          "breaks": [{"start": "2026-12-16T08:00:00", "end": "2026-12-16T08:15:00"}]}]

    A session is cut into slots of ``slot_minutes``; ``tables`` meetings run in parallel; a firm
    has at most ``max_meetings_per_firm`` meetings and a need at most ``max_meetings_per_need``.
    """

    __tablename__ = "meeting_plan"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("event.id", ondelete="CASCADE"), unique=True)
    sessions: Mapped[list[dict]] = mapped_column(JSON, default=list)
    slot_minutes: Mapped[int] = mapped_column(Integer, default=20)
    tables: Mapped[int] = mapped_column(Integer, default=10)
    max_meetings_per_firm: Mapped[int] = mapped_column(Integer, default=4)
    max_meetings_per_need: Mapped[int] = mapped_column(Integer, default=8)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    event: Mapped[Event] = relationship()


class Meeting(db.Model):
    """One 1:1 对接洽谈: a need's publisher meets a firm at a table in a time slot.

    ``shortlist_entry_id`` links the meeting to the shortlist decision that led to it (it is kept
    as NULL if the entry is later removed); ``opportunity_id`` and ``organization_id`` say who
    meets whom on their own. ``source`` is ``auto`` (the scheduler) or ``manual``.
    """

    __tablename__ = "meeting"
    __table_args__ = (
        Index("ix_meeting_event_start", "event_id", "starts_at"),
        Index("ix_meeting_org", "organization_id", "starts_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("event.id", ondelete="CASCADE"))
    shortlist_entry_id: Mapped[int | None] = mapped_column(
        ForeignKey("shortlist_entry.id", ondelete="SET NULL"), index=True
    )
    opportunity_id: Mapped[int] = mapped_column(ForeignKey("opportunity.id"), index=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organization.id"))
    table_number: Mapped[int | None] = mapped_column(Integer)
    starts_at: Mapped[datetime] = mapped_column(DateTime)
    ends_at: Mapped[datetime] = mapped_column(DateTime)
    status: Mapped[str] = mapped_column(String(20), default=MeetingStatus.SCHEDULED)
    source: Mapped[str] = mapped_column(String(10), default=MeetingSource.AUTO)
    note: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    event: Mapped[Event] = relationship()
    shortlist_entry: Mapped[ShortlistEntry | None] = relationship()
    opportunity: Mapped[Opportunity] = relationship()
    organization: Mapped[Organization] = relationship()

    @property
    def status_label(self) -> str:
        return MeetingStatus.label_of(self.status)

"""List entries (机会清单 / 产品清单), batches and the revisions of published entries."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, declared_attr, mapped_column, relationship

from marketplace import timeutil
from marketplace.extensions import db
from marketplace.models.accounts import Organization, User
from marketplace.models.base import utcnow
from marketplace.models.enums import (
    BatchStatus,
    CooperationMode,
    EntryKind,
    EntryStatus,
    Maturity,
    RevisionStatus,
    ScenarioStage,
    Tier,
)


def _money(value: Decimal | None) -> str | None:
    """``Decimal('50.00')`` → ``'50'``, ``Decimal('12.50')`` → ``'12.5'``."""
    return None if value is None else format(value.normalize(), "f")


class Batch(db.Model):
    """A numbered list publication, e.g. 「2026年第一批机会清单」."""

    __tablename__ = "batch"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(20), index=True)
    title: Mapped[str] = mapped_column(String(100), unique=True)
    status: Mapped[str] = mapped_column(String(20), default=BatchStatus.COLLECTING)
    description: Mapped[str] = mapped_column(Text, default="")
    published_on: Mapped[date | None] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    @property
    def kind_label(self) -> str:
        return EntryKind.label_of(self.kind)

    @property
    def status_label(self) -> str:
        return BatchStatus.label_of(self.status)

    @property
    def is_open(self) -> bool:
        return self.status == BatchStatus.COLLECTING


class EntryMixin:
    """Columns and behaviour shared by opportunities and products."""

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    description: Mapped[str] = mapped_column(Text)
    region_city: Mapped[str] = mapped_column(String(20))
    region_county: Mapped[str | None] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), default=EntryStatus.DRAFT)
    review_comment: Mapped[str | None] = mapped_column(Text)
    submitted_at: Mapped[datetime | None] = mapped_column(DateTime)
    published_at: Mapped[datetime | None] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    @declared_attr
    def batch_id(cls) -> Mapped[int | None]:
        return mapped_column(ForeignKey("batch.id"), index=True)

    @declared_attr
    def batch(cls) -> Mapped[Batch | None]:
        return relationship(Batch)

    @declared_attr
    def created_by_id(cls) -> Mapped[int | None]:
        return mapped_column(ForeignKey("user.id"))

    @declared_attr
    def created_by(cls) -> Mapped[User | None]:
        return relationship(User)

    @property
    def status_label(self) -> str:
        return EntryStatus.label_of(self.status)

    @property
    def is_public(self) -> bool:
        return self.status == EntryStatus.PUBLISHED

    @property
    def region_label(self) -> str:
        return self.region_city + (self.region_county or "")


class Opportunity(EntryMixin, db.Model):
    """A scenario need (机会清单 entry)."""

    __tablename__ = "opportunity"
    kind = EntryKind.OPPORTUNITY
    __table_args__ = (
        CheckConstraint(
            "budget_min IS NULL OR budget_max IS NULL OR budget_min <= budget_max",
            name="budget_range",
        ),
        # The public list (services.portal): every filter column between the status and the
        # list order (published_at, id), so a filtered page is one ordered index range and a
        # page number an index-only OFFSET.
        Index("ix_opportunity_status_published", "status", "published_at", "id"),
        Index("ix_opportunity_status_batch", "status", "batch_id", "published_at", "id"),
        Index("ix_opportunity_status_area", "status", "field_area", "published_at", "id"),
        Index("ix_opportunity_status_category", "status", "field_category", "published_at", "id"),
        Index("ix_opportunity_status_city", "status", "region_city", "published_at", "id"),
        Index("ix_opportunity_status_county", "status", "region_county", "published_at", "id"),
        Index("ix_opportunity_status_tier", "status", "tier", "published_at", "id"),
        Index("ix_opportunity_publisher", "publisher_id", "status"),
        # Batch pages list a batch's entries by id.
        Index("ix_opportunity_batch_status", "batch_id", "status", "id"),
        # The matching delta reads the rows changed since an index version was built.
        Index("ix_opportunity_updated", "updated_at"),
    )

    title: Mapped[str] = mapped_column(String(120))
    field_area: Mapped[str] = mapped_column(String(20))
    field_category: Mapped[str] = mapped_column(String(20))
    tier: Mapped[str] = mapped_column(String(20))
    publisher_id: Mapped[int] = mapped_column(ForeignKey("organization.id"))
    budget_min: Mapped[Decimal | None] = mapped_column(Numeric(12, 2))
    budget_max: Mapped[Decimal | None] = mapped_column(Numeric(12, 2))
    cooperation_modes: Mapped[list[str]] = mapped_column(JSON, default=list)
    deadline: Mapped[date | None] = mapped_column(Date)
    contact_name: Mapped[str] = mapped_column(String(50), default="")
    contact_phone: Mapped[str] = mapped_column(String(30), default="")
    #: The need's lifecycle stage (:class:`ScenarioStage`); history in ``StageChange``.
    stage: Mapped[str] = mapped_column(
        String(20), default=ScenarioStage.PUBLISHED, server_default=ScenarioStage.PUBLISHED.value, index=True
    )
    stage_changed_at: Mapped[datetime | None] = mapped_column(DateTime)

    publisher: Mapped[Organization] = relationship()

    @property
    def owner_id(self) -> int:
        return self.publisher_id

    @property
    def owner(self) -> Organization:
        return self.publisher

    @property
    def display_name(self) -> str:
        return self.title

    @property
    def tier_label(self) -> str:
        return Tier.label_of(self.tier)

    @property
    def stage_label(self) -> str:
        return ScenarioStage.label_of(self.stage or ScenarioStage.PUBLISHED)

    @property
    def cooperation_labels(self) -> list[str]:
        return [CooperationMode.label_of(m) for m in self.cooperation_modes or []]

    @property
    def budget_label(self) -> str:
        lo, hi = _money(self.budget_min), _money(self.budget_max)
        if lo is None and hi is None:
            return "面议"
        if lo is not None and hi is not None:
            return f"{lo}–{hi} 万元" if lo != hi else f"{lo} 万元"
        return f"不低于 {lo} 万元" if lo is not None else f"不超过 {hi} 万元"

    @property
    def categories(self) -> list[str]:
        return [self.field_category]

    @property
    def is_open(self) -> bool:
        """征集中: published, and its deadline day (Beijing time) is not over."""
        return self.status == EntryStatus.PUBLISHED and not timeutil.deadline_passed(self.deadline)

    @property
    def days_left(self) -> int | None:
        return timeutil.days_left(self.deadline)


class ProductField(db.Model):
    """One 应用领域 category served by a product (a product may serve several)."""

    __tablename__ = "product_field"
    __table_args__ = (
        # The product list's category / area filters probe these (value, product_id) pairs.
        Index("ix_product_field_category", "category", "product_id"),
        Index("ix_product_field_area", "area", "product_id"),
    )

    product_id: Mapped[int] = mapped_column(
        ForeignKey("product.id", ondelete="CASCADE"), primary_key=True
    )
    category: Mapped[str] = mapped_column(String(20), primary_key=True)
    area: Mapped[str] = mapped_column(String(20))


class ProductTag(db.Model):
    """A technology tag of a product."""

    __tablename__ = "product_tag"
    __table_args__ = (Index("ix_product_tag_tag", "tag", "product_id"),)

    product_id: Mapped[int] = mapped_column(
        ForeignKey("product.id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(String(20), primary_key=True)


class Product(EntryMixin, db.Model):
    """A product or solution (产品清单 entry)."""

    __tablename__ = "product"
    kind = EntryKind.PRODUCT
    __table_args__ = (
        # The public list, as for opportunities; tags, areas and categories are filtered
        # through the join tables' (value, product_id) indexes.
        Index("ix_product_status_published", "status", "published_at", "id"),
        Index("ix_product_status_batch", "status", "batch_id", "published_at", "id"),
        Index("ix_product_status_maturity", "status", "maturity", "published_at", "id"),
        Index("ix_product_status_city", "status", "region_city", "published_at", "id"),
        Index("ix_product_status_county", "status", "region_county", "published_at", "id"),
        Index("ix_product_owner", "owner_id", "status"),
        Index("ix_product_batch_status", "batch_id", "status", "id"),
        # The matching delta reads the rows changed since an index version was built.
        Index("ix_product_updated", "updated_at"),
    )

    name: Mapped[str] = mapped_column(String(120))
    owner_id: Mapped[int] = mapped_column(ForeignKey("organization.id"))
    maturity: Mapped[str] = mapped_column(String(20))
    cases: Mapped[str] = mapped_column(Text, default="")

    owner: Mapped[Organization] = relationship()
    field_rows: Mapped[list[ProductField]] = relationship(
        cascade="all, delete-orphan", order_by=ProductField.category
    )
    tag_rows: Mapped[list[ProductTag]] = relationship(
        cascade="all, delete-orphan", order_by=ProductTag.tag
    )

    @property
    def title(self) -> str:
        return self.name

    @property
    def display_name(self) -> str:
        return self.name

    @property
    def categories(self) -> list[str]:
        return [f.category for f in self.field_rows]

    @property
    def areas(self) -> list[str]:
        return sorted({f.area for f in self.field_rows})

    @property
    def tags(self) -> list[str]:
        return [t.tag for t in self.tag_rows]

    @property
    def maturity_label(self) -> str:
        return Maturity.label_of(self.maturity)


class EntryRevision(db.Model):
    """A pending change to a published entry.

    The entry row keeps the last approved (public) content; the revision holds the owner's
    edited fields until an organizer approves it, at which point they are copied onto the entry.
    """

    __tablename__ = "entry_revision"
    __table_args__ = (Index("ix_entry_revision_entry", "entry_kind", "entry_id", "status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    entry_kind: Mapped[str] = mapped_column(String(20))
    entry_id: Mapped[int] = mapped_column(Integer)
    data: Mapped[dict] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(20), default=RevisionStatus.SUBMITTED, index=True)
    review_comment: Mapped[str | None] = mapped_column(Text)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    reviewed_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    reviewed_at: Mapped[datetime | None] = mapped_column(DateTime)

    created_by: Mapped[User | None] = relationship(foreign_keys=[created_by_id])

    @property
    def status_label(self) -> str:
        return RevisionStatus.label_of(self.status)

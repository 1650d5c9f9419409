"""The scenario lifecycle, signings (项目签约), labs (实验室) and the 十百千 programme.

* ``StageChange``: one step of a published need through 机会发布 → 创新研发 → 孵化试点 →
  示范推广 (or 终止); the current stage is ``Opportunity.stage``. Append-only.
* ``Signing``: a 项目签约 on a need, with the firms (``SigningParty``), the products
  (``SigningProduct``), the amount in 万元, the date and optionally the event.
* ``Lab``: an organisation designated 创新应用实验室 or 未来场景实验室; ``LabLink`` ties a need in
  创新研发 or 孵化试点 to a lab that validates it.
* ``Designation``: a 十百千 designation: 应用场景示范区 (a region or park, with its needs in
  ``DesignationOpportunity``), 应用场景示范项目 (a need in 示范推广, delivering firms in
  ``DesignationOrganization``) or 高成长性企业 (an organisation).
* ``ProgrammeTarget``: the programme's targets per year, or cumulative up to a year.

Workflows (who may do what from which state) are declared as data in
``services/lifecycle.py`` and ``services/programme.py``. Dates a user types are Beijing dates;
timestamps are naive UTC.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from marketplace.extensions import db
from marketplace.models.accounts import Organization, User
from marketplace.models.base import utcnow
from marketplace.models.entries import Opportunity, Product
from marketplace.models.enums import LabelledEnum, ScenarioStage
from marketplace.models.events import Event
from marketplace.models.responses import Consortium
from marketplace.models.uploads import StoredFile


class StageChange(db.Model):
    """One step of a need's lifecycle: who moved it, when, why, with what evidence."""

    __tablename__ = "stage_change"
    __table_args__ = (Index("ix_stage_change_opportunity", "opportunity_id", "happened_on", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    opportunity_id: Mapped[int] = mapped_column(ForeignKey("opportunity.id", ondelete="CASCADE"))
    from_stage: Mapped[str] = mapped_column(String(20))
    to_stage: Mapped[str] = mapped_column(String(20), index=True)
    #: The Beijing date the step happened (typed by the user, not later than today).
    happened_on: Mapped[date] = mapped_column(Date)
    #: Private: the publisher, the delivering firms and organizers only.
    note: Mapped[str] = mapped_column(Text, default="")
    evidence_file_id: Mapped[int | None] = mapped_column(ForeignKey("stored_file.id", ondelete="SET NULL"))
    #: The signing that caused the step, when one did.
    signing_id: Mapped[int | None] = mapped_column(ForeignKey("signing.id", ondelete="SET NULL"))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    opportunity: Mapped[Opportunity] = relationship()
    evidence_file: Mapped[StoredFile | None] = relationship()
    actor: Mapped[User | None] = relationship()

    @property
    def from_label(self) -> str:
        return ScenarioStage.label_of(self.from_stage)

    @property
    def to_label(self) -> str:
        return ScenarioStage.label_of(self.to_stage)


class Signing(db.Model):
    """A 项目签约: the need's publisher signs with one or more firms (or a consortium)."""

    __tablename__ = "signing"
    __table_args__ = (
        CheckConstraint("amount_wan IS NULL OR amount_wan >= 0", name="signing_amount_positive"),
        Index("ix_signing_signed_on", "signed_on"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    opportunity_id: Mapped[int] = mapped_column(ForeignKey("opportunity.id", ondelete="CASCADE"), index=True)
    event_id: Mapped[int | None] = mapped_column(ForeignKey("event.id", ondelete="SET NULL"), index=True)
    consortium_id: Mapped[int | None] = mapped_column(ForeignKey("consortium.id", ondelete="SET NULL"))
    #: 万元; None when not disclosed.
    amount_wan: Mapped[Decimal | None] = mapped_column(Numeric(14, 2))
    signed_on: Mapped[date] = mapped_column(Date)
    #: Public summary of what was signed (项目名称/签约内容).
    title: Mapped[str] = mapped_column(String(200))
    #: Private: the publisher, the parties and organizers only.
    note: Mapped[str] = mapped_column(Text, default="")
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    opportunity: Mapped[Opportunity] = relationship()
    event: Mapped[Event | None] = relationship()
    consortium: Mapped[Consortium | None] = relationship()
    created_by: Mapped[User | None] = relationship()
    parties: Mapped[list[SigningParty]] = relationship(
        back_populates="signing", cascade="all, delete-orphan", order_by="SigningParty.id"
    )
    products: Mapped[list[SigningProduct]] = relationship(
        back_populates="signing", cascade="all, delete-orphan", order_by="SigningProduct.id"
    )


class SigningParty(db.Model):
    """A firm that signed (the publisher is the need's publisher and is not repeated here)."""

    __tablename__ = "signing_party"
    __table_args__ = (UniqueConstraint("signing_id", "organization_id", name="uq_signing_party"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    signing_id: Mapped[int] = mapped_column(ForeignKey("signing.id", ondelete="CASCADE"))
    organization_id: Mapped[int] = mapped_column(
        ForeignKey("organization.id", ondelete="CASCADE"), index=True
    )

    signing: Mapped[Signing] = relationship(back_populates="parties")
    organization: Mapped[Organization] = relationship()


class SigningProduct(db.Model):
    __tablename__ = "signing_product"
    __table_args__ = (UniqueConstraint("signing_id", "product_id", name="uq_signing_product"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    signing_id: Mapped[int] = mapped_column(ForeignKey("signing.id", ondelete="CASCADE"))
    product_id: Mapped[int] = mapped_column(ForeignKey("product.id", ondelete="CASCADE"), index=True)

    signing: Mapped[Signing] = relationship(back_populates="products")
    product: Mapped[Product] = relationship()


class LabKind(LabelledEnum):
    INNOVATION = "innovation", "创新应用实验室"
    FUTURE = "future", "未来场景实验室"


class LabService(LabelledEnum):
    TESTING = "testing", "测试验证"
    PILOT_SCALE = "pilot_scale", "中试熟化"
    STANDARDS = "standards", "标准检测"
    SIMULATION = "simulation", "场景仿真"
    DATA = "data", "数据开放"
    TRAINING = "training", "人才培训"


class Lab(db.Model):
    """An organisation designated as a lab of one kind by an organizer."""

    __tablename__ = "lab"
    __table_args__ = (UniqueConstraint("organization_id", "kind", name="uq_lab_org_kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organization.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(String(120))
    #: 应用领域 categories (the same vocabulary as ``Opportunity.field_category``).
    focus_fields: Mapped[list[str]] = mapped_column(JSON, default=list)
    #: :class:`LabService` values.
    services: Mapped[list[str]] = mapped_column(JSON, default=list)
    intro: Mapped[str] = mapped_column(Text, default="")
    designated_on: Mapped[date] = mapped_column(Date)
    designated_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    organization: Mapped[Organization] = relationship()
    designated_by: Mapped[User | None] = relationship()
    links: Mapped[list[LabLink]] = relationship(back_populates="lab", cascade="all, delete-orphan")

    @property
    def kind_label(self) -> str:
        return LabKind.label_of(self.kind)

    @property
    def service_labels(self) -> list[str]:
        return [LabService.label_of(s) for s in self.services or []]


class LabLink(db.Model):
    """A need validated by a lab (linked while the need is in 创新研发 or 孵化试点)."""

    __tablename__ = "lab_link"
    __table_args__ = (UniqueConstraint("lab_id", "opportunity_id", name="uq_lab_link"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    lab_id: Mapped[int] = mapped_column(ForeignKey("lab.id", ondelete="CASCADE"))
    opportunity_id: Mapped[int] = mapped_column(ForeignKey("opportunity.id", ondelete="CASCADE"), index=True)
    #: The service the lab gives this need (a :class:`LabService` value).
    service: Mapped[str] = mapped_column(String(20), default=LabService.TESTING)
    linked_on: Mapped[date] = mapped_column(Date)
    #: Private, like stage notes.
    note: Mapped[str] = mapped_column(Text, default="")
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    lab: Mapped[Lab] = relationship(back_populates="links")
    opportunity: Mapped[Opportunity] = relationship()

    @property
    def service_label(self) -> str:
        return LabService.label_of(self.service)


class DesignationKind(LabelledEnum):
    ZONE = "zone", "应用场景示范区"
    PROJECT = "project", "应用场景示范项目"
    FIRM = "firm", "高成长性企业"


class DesignationStatus(LabelledEnum):
    RECOMMENDED = "recommended", "推荐"
    REVIEWING = "reviewing", "评审中"
    APPROVED = "approved", "已认定"
    REJECTED = "rejected", "未通过"
    #: Taken back by its recommender (or an organizer) while still 推荐; kept for the record.
    WITHDRAWN = "withdrawn", "已撤回"


class Designation(db.Model):
    """A 十百千 designation. Which subject columns are set depends on the kind:

    * zone: ``name`` (the region or park), ``region_city``/``region_county``, needs in
      ``opportunities``;
    * project: ``opportunity_id`` (a need in 示范推广), delivering firms in ``organizations``;
    * firm: ``organization_id``.
    """

    __tablename__ = "designation"
    __table_args__ = (
        Index("ix_designation_kind_year_status", "kind", "year", "status"),
        Index("ix_designation_opportunity", "opportunity_id"),
        Index("ix_designation_organization", "organization_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    year: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), default=DesignationStatus.RECOMMENDED)
    name: Mapped[str] = mapped_column(String(200))
    region_city: Mapped[str | None] = mapped_column(String(20))
    region_county: Mapped[str | None] = mapped_column(String(20))
    opportunity_id: Mapped[int | None] = mapped_column(ForeignKey("opportunity.id", ondelete="CASCADE"))
    organization_id: Mapped[int | None] = mapped_column(ForeignKey("organization.id", ondelete="CASCADE"))
    #: Public summary (推荐理由/主要成效).
    description: Mapped[str] = mapped_column(Text, default="")
    evidence_file_id: Mapped[int | None] = mapped_column(ForeignKey("stored_file.id", ondelete="SET NULL"))
    recommended_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    #: The organizer who approved or rejected it.
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    decided_at: Mapped[datetime | None] = mapped_column(DateTime)
    decision_note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    opportunity: Mapped[Opportunity | None] = relationship(foreign_keys=[opportunity_id])
    organization: Mapped[Organization | None] = relationship(foreign_keys=[organization_id])
    evidence_file: Mapped[StoredFile | None] = relationship()
    recommended_by: Mapped[User | None] = relationship(foreign_keys=[recommended_by_id])
    decided_by: Mapped[User | None] = relationship(foreign_keys=[decided_by_id])
    opportunities: Mapped[list[DesignationOpportunity]] = relationship(
        back_populates="designation", cascade="all, delete-orphan"
    )
    organizations: Mapped[list[DesignationOrganization]] = relationship(
        back_populates="designation", cascade="all, delete-orphan"
    )

    @property
    def kind_label(self) -> str:
        return DesignationKind.label_of(self.kind)

    @property
    def status_label(self) -> str:
        return DesignationStatus.label_of(self.status)


class DesignationOpportunity(db.Model):
    """A need inside a demonstration zone."""

    __tablename__ = "designation_opportunity"
    __table_args__ = (
        UniqueConstraint("designation_id", "opportunity_id", name="uq_designation_opportunity"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    designation_id: Mapped[int] = mapped_column(ForeignKey("designation.id", ondelete="CASCADE"))
    opportunity_id: Mapped[int] = mapped_column(ForeignKey("opportunity.id", ondelete="CASCADE"), index=True)

    designation: Mapped[Designation] = relationship(back_populates="opportunities")
    opportunity: Mapped[Opportunity] = relationship()


class DesignationOrganization(db.Model):
    """A delivering firm of a demonstration project."""

    __tablename__ = "designation_organization"
    __table_args__ = (
        UniqueConstraint("designation_id", "organization_id", name="uq_designation_organization"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    designation_id: Mapped[int] = mapped_column(ForeignKey("designation.id", ondelete="CASCADE"))
    organization_id: Mapped[int] = mapped_column(
        ForeignKey("organization.id", ondelete="CASCADE"), index=True
    )

    designation: Mapped[Designation] = relationship(back_populates="organizations")
    organization: Mapped[Organization] = relationship()


class ProgrammeTarget(db.Model):
    """A target of the programme: ``target`` designations of ``kind`` in ``year`` or, when
    ``cumulative``, in total up to the end of ``year`` (the Jiangxi plan: 50 zones, 300
    projects and 3000 firms by 2025; 10 zones and 60 projects a year)."""

    __tablename__ = "programme_target"
    __table_args__ = (
        UniqueConstraint("year", "kind", "cumulative", name="uq_programme_target"),
        CheckConstraint("target >= 0", name="programme_target_positive"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    year: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(20))
    cumulative: Mapped[bool] = mapped_column(Boolean, default=False)
    target: Mapped[int] = mapped_column(Integer)
    updated_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    @property
    def kind_label(self) -> str:
        return DesignationKind.label_of(self.kind)

"""企业答题 (``Response``) and 场景建设联合体 (``Consortium``).

The workflows themselves (who may do what, from which status) are declared as data in
:mod:`marketplace.services.responses`.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from marketplace.extensions import db
from marketplace.models.accounts import Organization, User
from marketplace.models.base import utcnow
from marketplace.models.entries import Opportunity, Product, _money
from marketplace.models.enums import LabelledEnum
from marketplace.models.uploads import StoredFile


class ResponseStatus(LabelledEnum):
    DRAFT = "draft", "草稿"
    SUBMITTED = "submitted", "已提交"
    SHORTLISTED = "shortlisted", "入围"
    SELECTED = "selected", "选定"
    REJECTED = "rejected", "未选定"
    WITHDRAWN = "withdrawn", "已撤回"


class ConsortiumRole(LabelledEnum):
    LEAD = "lead", "牵头单位"
    TECHNOLOGY = "technology", "技术支撑"
    PRODUCT = "product", "产品供应"
    OPERATION = "operation", "运营服务"
    APPLICATION = "application", "应用单位"
    OTHER = "other", "其他"


class InvitationStatus(LabelledEnum):
    INVITED = "invited", "待答复"
    ACCEPTED = "accepted", "已接受"
    DECLINED = "declined", "已谢绝"


class ResponseProduct(db.Model):
    """A product used in a response."""

    __tablename__ = "response_product"

    response_id: Mapped[int] = mapped_column(
        ForeignKey("response.id", ondelete="CASCADE"), primary_key=True
    )
    product_id: Mapped[int] = mapped_column(ForeignKey("product.id"), primary_key=True, index=True)

    product: Mapped[Product] = relationship()


class Response(db.Model):
    """A firm's (or a consortium's) answer to a published need."""

    __tablename__ = "response"
    __table_args__ = (
        # One live (not withdrawn) response per organization per need, enforced by the database.
        Index(
            "uq_response_live",
            "opportunity_id",
            "organization_id",
            unique=True,
            sqlite_where=text("status != 'withdrawn'"),
            postgresql_where=text("status != 'withdrawn'"),
        ),
        Index("ix_response_opportunity_status", "opportunity_id", "status"),
        Index("ix_response_organization_status", "organization_id", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    opportunity_id: Mapped[int] = mapped_column(ForeignKey("opportunity.id"))
    #: The answering organization; for a consortium, its lead.
    organization_id: Mapped[int] = mapped_column(ForeignKey("organization.id"))
    consortium_id: Mapped[int | None] = mapped_column(ForeignKey("consortium.id"), index=True)
    status: Mapped[str] = mapped_column(String(20), default=ResponseStatus.DRAFT)
    summary: Mapped[str] = mapped_column(Text)
    delivery_plan: Mapped[str] = mapped_column(Text, default="")
    quote: Mapped[Decimal | None] = mapped_column(Numeric(12, 2))
    contact_name: Mapped[str] = mapped_column(String(50))
    contact_phone: Mapped[str] = mapped_column(String(30))
    attachment_id: Mapped[int | None] = mapped_column(ForeignKey("stored_file.id", ondelete="SET NULL"))
    review_comment: Mapped[str | None] = mapped_column(Text)
    reviewed_at: Mapped[datetime | None] = mapped_column(DateTime)
    reviewed_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    submitted_at: Mapped[datetime | None] = mapped_column(DateTime)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    opportunity: Mapped[Opportunity] = relationship()
    organization: Mapped[Organization] = relationship()
    consortium: Mapped[Consortium | None] = relationship(back_populates="responses")
    attachment: Mapped[StoredFile | None] = relationship()
    product_rows: Mapped[list[ResponseProduct]] = relationship(
        cascade="all, delete-orphan", order_by=ResponseProduct.product_id
    )
    created_by: Mapped[User | None] = relationship(foreign_keys=[created_by_id])

    @property
    def products(self) -> list[Product]:
        return [row.product for row in self.product_rows]

    @property
    def product_ids(self) -> list[int]:
        return [row.product_id for row in self.product_rows]

    @property
    def status_label(self) -> str:
        return ResponseStatus.label_of(self.status)

    @property
    def quote_label(self) -> str:
        value = _money(self.quote)
        return "—" if value is None else f"{value} 万元"

    @property
    def respondent_name(self) -> str:
        """The firm's name, or the consortium's name with its lead."""
        if self.consortium is not None:
            return f"{self.consortium.name}（牵头：{self.organization.name}）"
        return self.organization.name


class Consortium(db.Model):
    """A 场景建设联合体 formed by a lead organization to answer one need."""

    __tablename__ = "consortium"
    __table_args__ = (
        UniqueConstraint("opportunity_id", "lead_organization_id", name="uq_consortium_lead"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    opportunity_id: Mapped[int] = mapped_column(ForeignKey("opportunity.id"), index=True)
    lead_organization_id: Mapped[int] = mapped_column(ForeignKey("organization.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    opportunity: Mapped[Opportunity] = relationship()
    lead: Mapped[Organization] = relationship()
    members: Mapped[list[ConsortiumMember]] = relationship(
        back_populates="consortium", cascade="all, delete-orphan", order_by="ConsortiumMember.id"
    )
    responses: Mapped[list[Response]] = relationship(back_populates="consortium")

    @property
    def pending(self) -> list[ConsortiumMember]:
        return [m for m in self.members if m.status == InvitationStatus.INVITED]

    @property
    def accepted(self) -> list[ConsortiumMember]:
        return [m for m in self.members if m.status == InvitationStatus.ACCEPTED]

    @property
    def accepted_organization_ids(self) -> list[int]:
        return [m.organization_id for m in self.accepted]

    @property
    def ready(self) -> bool:
        """Every invited member has answered and at least one besides the lead accepted."""
        others = [m for m in self.accepted if m.role != ConsortiumRole.LEAD]
        return not self.pending and bool(others)


class ConsortiumMember(db.Model):
    """An organization in a consortium, with its role and its answer to the invitation."""

    __tablename__ = "consortium_member"
    __table_args__ = (
        UniqueConstraint("consortium_id", "organization_id", name="uq_consortium_member"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    consortium_id: Mapped[int] = mapped_column(ForeignKey("consortium.id", ondelete="CASCADE"))
    organization_id: Mapped[int] = mapped_column(ForeignKey("organization.id"), index=True)
    role: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), default=InvitationStatus.INVITED)
    note: Mapped[str] = mapped_column(String(200), default="")
    invited_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    answered_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    invited_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    answered_at: Mapped[datetime | None] = mapped_column(DateTime)

    consortium: Mapped[Consortium] = relationship(back_populates="members")
    organization: Mapped[Organization] = relationship()

    @property
    def role_label(self) -> str:
        return ConsortiumRole.label_of(self.role)

    @property
    def status_label(self) -> str:
        return InvitationStatus.label_of(self.status)

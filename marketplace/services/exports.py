"""Exports of the lists to XLSX and CSV, in exactly the import template's columns.

:func:`export_query` returns the rows of a list as a page shows them, with that page's
visibility rules (:func:`can_export` is the permission function the pages, the API and the CLI
ask); :func:`export_file` writes them. An exported file imports back with every row 无变化.

Scopes:

==========  ===================================================================  ================
scope       rows                                                                  who
==========  ===================================================================  ================
public      published entries only, through the portal's own list queries         anyone
            (:func:`portal.opportunity_query` / :func:`portal.product_query`)
mine        every entry of the user's organization, whatever its status          its members
all         every entry (optionally by status and batch), or every organization  organizers
==========  ===================================================================  ================

The public export holds what the public pages show to the same viewer: an opportunity's
联系人/联系电话 only where :func:`contacts.can_view_contact` lets the viewer see them on the page
(blank otherwise, so such a file does not import back); drafts and unpublished entries never are.
Organizations (with their contact details) are exported by organizers only. The CLI is trusted
(``trusted=True``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, exists, or_, select
from sqlalchemy.orm import joinedload, selectinload

from marketplace.extensions import db
from marketplace.models import (
    Batch,
    BatchStatus,
    EntryStatus,
    Opportunity,
    Organization,
    OrgKind,
    Product,
    ProductField,
    ProductTag,
    User,
)
from marketplace.services import contacts, portal
from marketplace.services import search as search_service
from marketplace.services import spreadsheets as sheets
from marketplace.services.errors import PermissionDenied, ValidationFailed
from marketplace.services.search import EntryFilters
from marketplace.services.spreadsheets import OPPORTUNITIES, ORGANIZATIONS, PRODUCTS, normalize_kind

FORMATS = ("xlsx", "csv")
CONTENT_TYPES = {
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "csv": "text/csv; charset=utf-8",
}
SCOPES = ("public", "mine", "all")
ENTRY_STATUSES = frozenset(s.value for s in EntryStatus)
#: A keyword export returns at most this many ranked hits.
MAX_EXPORT_ROWS = 20_000


@dataclass
class ExportFilters:
    """What a list page filters on. ``entries`` are the portal's filters (also applied to the
    back-office scopes); ``status`` only in the back office; the rest are the organization list's."""

    entries: EntryFilters = field(default_factory=EntryFilters)
    status: str | None = None
    #: Organizations: 已认证 (True) / 待认证 (False).
    verified: bool | None = None
    org_kind: str | None = None
    #: Entries: the list's keyword (public: ranked like the page; back office: part of the
    #: title/name). Organizations: part of the name or the credit code.
    q: str | None = None


def can_export(user: User | None, kind: str, scope: str = "public") -> bool:
    """Whether ``user`` may export ``kind`` with ``scope`` (see the module docstring)."""
    kind = normalize_kind(kind)
    authenticated = user is not None and getattr(user, "is_authenticated", False)
    staff = authenticated and user.is_staff
    if scope == "all":
        return bool(staff)
    if kind == ORGANIZATIONS:
        return False
    if scope == "mine":
        return bool(authenticated and user.organization_id is not None)
    return scope == "public"


def export_query(kind: str, user: User | None, filters: ExportFilters | None = None,
                 scope: str = "public") -> list[Any]:
    """The rows of a list as the page shows them to ``user`` (raises PermissionDenied)."""
    kind = normalize_kind(kind)
    if scope not in SCOPES:
        raise ValidationFailed({"scope": "导出范围无效"})
    if not can_export(user, kind, scope):
        raise PermissionDenied("没有导出该清单的权限")
    return query_rows(kind, filters or ExportFilters(), scope,
                      organization_id=user.organization_id if scope == "mine" else None)


def query_rows(kind: str, filters: ExportFilters, scope: str,
               organization_id: int | None = None) -> list[Any]:
    """The rows without a permission check: for :func:`export_query` and the trusted CLI."""
    kind = normalize_kind(kind)
    if filters.status is not None and filters.status not in ENTRY_STATUSES:
        raise ValidationFailed({"status": "状态无效"})
    if kind == ORGANIZATIONS:
        return list(db.session.scalars(organization_query(filters)))
    if scope == "public":
        if filters.status not in (None, EntryStatus.PUBLISHED):
            return []
        q = (filters.q or "").strip()
        if q:  # the page's ranked keyword search, every hit
            side = "opportunity" if kind == OPPORTUNITIES else "product"
            return list(search_service.search(side, q, filters.entries, 1, MAX_EXPORT_ROWS).items)
        stmt = (portal.opportunity_query if kind == OPPORTUNITIES else portal.product_query)(filters.entries)
        return [] if stmt is None else list(db.session.scalars(stmt))
    stmt = _back_office_query(kind, filters, organization_id)
    return [] if stmt is None else list(db.session.scalars(stmt))


def batch_rows(user: User | None, batch: Batch) -> list[Any]:
    """A batch's entries: its published ones for everyone once it is published; every entry
    for organizers."""
    kind = OPPORTUNITIES if batch.kind == "opportunity" else PRODUCTS
    filters = ExportFilters(entries=EntryFilters(batch_id=batch.id))
    if can_export(user, kind, "all"):
        return query_rows(kind, filters, "all")
    if batch.status != BatchStatus.PUBLISHED:
        raise PermissionDenied("批次尚未发布")
    return query_rows(kind, filters, "public")


def _back_office_query(kind: str, filters: ExportFilters, organization_id: int | None) -> Select | None:
    f = filters.entries
    if kind == OPPORTUNITIES:
        if f.maturity is not None or f.tag is not None:
            return None
        model = Opportunity
        stmt = select(Opportunity).options(joinedload(Opportunity.publisher))
        if organization_id is not None:
            stmt = stmt.where(Opportunity.publisher_id == organization_id)
        if f.area is not None:
            stmt = stmt.where(Opportunity.field_area == f.area)
        if f.category is not None:
            stmt = stmt.where(Opportunity.field_category == f.category)
        if f.tier is not None:
            stmt = stmt.where(Opportunity.tier == f.tier)
        if f.state == "open":
            stmt = stmt.where(portal.open_condition())
        elif f.state == "closed":
            stmt = stmt.where(~portal.open_condition())
    else:
        if f.tier is not None:
            return None
        model = Product
        stmt = select(Product).options(
            joinedload(Product.owner), selectinload(Product.field_rows), selectinload(Product.tag_rows)
        )
        if organization_id is not None:
            stmt = stmt.where(Product.owner_id == organization_id)
        if f.area is not None or f.category is not None:
            serves = ProductField.product_id == Product.id
            if f.area is not None:
                serves = serves & (ProductField.area == f.area)
            if f.category is not None:
                serves = serves & (ProductField.category == f.category)
            stmt = stmt.where(exists().where(serves))
        if f.tag is not None:
            stmt = stmt.where(exists().where(ProductTag.product_id == Product.id, ProductTag.tag == f.tag))
        if f.maturity is not None:
            stmt = stmt.where(Product.maturity == f.maturity)
    if f.batch_id is not None:
        stmt = stmt.where(model.batch_id == f.batch_id)
    if f.city is not None:
        stmt = stmt.where(model.region_city == f.city)
    if f.county is not None:
        stmt = stmt.where(model.region_county == f.county)
    if filters.status is not None:
        stmt = stmt.where(model.status == filters.status)
    q = (filters.q or "").strip()
    if q:
        title = Opportunity.title if model is Opportunity else Product.name
        stmt = stmt.where(title.contains(q, autoescape=True))
    return stmt.order_by(model.id)


def organization_query(filters: ExportFilters) -> Select:
    """Organizations as the admin list filters them (verified, kind, name or credit code)."""
    stmt = select(Organization).order_by(Organization.id)
    if filters.verified is not None:
        stmt = stmt.where(Organization.verified.is_(filters.verified))
    if filters.org_kind:
        if filters.org_kind not in {k.value for k in OrgKind}:
            raise ValidationFailed({"kind": "单位类型无效"})
        stmt = stmt.where(Organization.kind == filters.org_kind)
    q = (filters.q or "").strip()
    if q:
        stmt = stmt.where(
            or_(
                Organization.name.contains(q, autoescape=True),
                Organization.credit_code.contains(q.upper(), autoescape=True),
            )
        )
    return stmt


CONTACT_KEYS = ("contact_name", "contact_phone")


def export_file(kind: str, rows: list[Any], fmt: str, viewer: User | None = None, *,
                trusted: bool = False) -> bytes:
    """The rows as an XLSX or a CSV (UTF-8 with BOM) in the template's columns.

    Unless ``trusted``, the contact details of an opportunity are left blank where ``viewer``
    may not see them on its page (:func:`contacts.can_view_contact`)."""
    kind = normalize_kind(kind)
    if fmt not in FORMATS:
        raise ValidationFailed({"format": "导出格式应为 xlsx 或 csv"})
    records = []
    for row in rows:
        values = sheets.row_values(kind, row)
        if kind == OPPORTUNITIES and not trusted and not contacts.can_view_contact(viewer, row):
            values.update(dict.fromkeys(CONTACT_KEYS, ""))
        records.append(values)
    if fmt == "xlsx":
        return sheets.write_xlsx(kind, records)
    return sheets.write_csv(kind, records)


def export_filename(kind: str, fmt: str, batch: Batch | None = None) -> str:
    """「产品清单.xlsx」, or the batch's title for a batch."""
    kind = normalize_kind(kind)
    base = batch.title if batch is not None else sheets.KIND_LABELS[kind]
    return f"{base}.{fmt}"

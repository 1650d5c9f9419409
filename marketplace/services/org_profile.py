"""The public organisation page (单位主页, ``/organizations/<id>``): what anyone may see of a
verified organisation.

Shown: name, kind, city/county, the verified badge, the introduction, its approved (public)
十百千 designations (高成长性企业; 示范项目 it delivers or published), the titles and dates of the
signings on its published needs or with it as a party, and its published products or published
needs. Never shown: drafts and anything unpublished, signing notes and amounts, stage notes,
designation notes and evidence, pending name changes, the credit-code licence, and the contact
details unless :func:`services.contacts.can_view_contact` allows them for this viewer (logged-in
members of verified organisations, its own members, organizers).

An organisation that is not verified has no public page (404), whatever it has published.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from types import SimpleNamespace
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import selectinload

from marketplace.extensions import db
from marketplace.models import (
    Designation,
    DesignationKind,
    DesignationOrganization,
    DesignationStatus,
    EntryStatus,
    Opportunity,
    Organization,
    Product,
    Signing,
    SigningParty,
)
from marketplace.services import contacts
from marketplace.services.errors import NotFound

#: At most this many products / needs / signings are listed (newest first).
LIST_LIMIT = 50


@dataclass(frozen=True)
class PublicDesignation:
    kind_label: str
    year: int
    name: str
    #: A 示范项目's need (published), for the link.
    opportunity_id: int | None


@dataclass(frozen=True)
class PublicSigning:
    title: str
    signed_on: date
    opportunity_id: int
    opportunity_title: str
    #: 发布单位 (the need's publisher) or 签约企业 (a party).
    role: str


@dataclass
class Profile:
    organization: Organization
    designations: list[PublicDesignation]
    signings: list[PublicSigning]
    products: list[Product]
    needs: list[Opportunity]
    #: The contact details, or None when this viewer may not see them.
    contact: dict[str, str] | None
    hidden_note: str = contacts.HIDDEN_NOTE


def get_public_organization(organization_id: int) -> Organization:
    organization = db.session.get(Organization, organization_id) if 0 < organization_id < 2**31 else None
    if organization is None or not organization.verified:
        raise NotFound("单位不存在或尚未公开")
    return organization


def _designations(org_id: int) -> list[PublicDesignation]:
    published_need = select(Opportunity.id).where(Opportunity.status == EntryStatus.PUBLISHED)
    delivered = select(DesignationOrganization.designation_id).where(
        DesignationOrganization.organization_id == org_id)
    published_by = select(Opportunity.id).where(Opportunity.publisher_id == org_id,
                                                Opportunity.status == EntryStatus.PUBLISHED)
    rows = db.session.scalars(
        select(Designation)
        .where(
            Designation.status == DesignationStatus.APPROVED,
            or_(
                (Designation.kind == DesignationKind.FIRM) & (Designation.organization_id == org_id),
                (Designation.kind == DesignationKind.PROJECT)
                & Designation.opportunity_id.in_(published_need)
                & (Designation.id.in_(delivered) | Designation.opportunity_id.in_(published_by)),
            ),
        )
        .order_by(Designation.year.desc(), Designation.kind, Designation.id)
    )
    return [PublicDesignation(d.kind_label, d.year, d.name,
                              d.opportunity_id if d.kind == DesignationKind.PROJECT else None) for d in rows]


def _signings(org_id: int) -> list[PublicSigning]:
    party = select(SigningParty.signing_id).where(SigningParty.organization_id == org_id)
    rows = db.session.execute(
        select(Signing.title, Signing.signed_on, Opportunity.id, Opportunity.title, Opportunity.publisher_id)
        .join(Opportunity, Opportunity.id == Signing.opportunity_id)
        .where(Opportunity.status == EntryStatus.PUBLISHED,
               or_(Opportunity.publisher_id == org_id, Signing.id.in_(party)))
        .order_by(Signing.signed_on.desc(), Signing.id.desc())
        .limit(LIST_LIMIT)
    )
    return [PublicSigning(title, day, oid, otitle, "发布单位" if publisher == org_id else "签约企业")
            for title, day, oid, otitle, publisher in rows]


def profile(viewer: Any, organization_id: int) -> Profile:
    """The public page of a verified organisation as ``viewer`` (None: anonymous) sees it."""
    organization = get_public_organization(organization_id)
    products = list(db.session.scalars(
        select(Product).where(Product.owner_id == organization.id, Product.status == EntryStatus.PUBLISHED)
        .options(selectinload(Product.field_rows))
        .order_by(Product.published_at.desc(), Product.id.desc()).limit(LIST_LIMIT)))
    needs = list(db.session.scalars(
        select(Opportunity).where(Opportunity.publisher_id == organization.id,
                                  Opportunity.status == EntryStatus.PUBLISHED)
        .order_by(Opportunity.published_at.desc(), Opportunity.id.desc()).limit(LIST_LIMIT)))
    contact = None
    if contacts.can_view_contact(viewer, SimpleNamespace(owner_id=organization.id)):
        contact = {"联系人": organization.contact_name, "电话": organization.contact_phone,
                   "邮箱": organization.contact_email, "地址": organization.address}
        contact = {k: v for k, v in contact.items() if v}
    return Profile(organization=organization, designations=_designations(organization.id),
                   signings=_signings(organization.id), products=products, needs=needs, contact=contact)

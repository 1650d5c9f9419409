"""Loading the demo data in ``seeds/`` idempotently.

Natural keys: organizations by credit code, batches by title, opportunities by
(publisher, title), products by (owner, name), users by email. Existing rows are left as they
are, so running the loader twice changes nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path

from sqlalchemy import select

from marketplace.extensions import db
from marketplace.models import (
    AuditEvent,
    Batch,
    EntryStatus,
    Opportunity,
    Organization,
    Product,
    ProductField,
    ProductTag,
    User,
)
from marketplace.models.base import utcnow
from marketplace.reference import load_reference
from marketplace.services import index_sync


@dataclass
class SeedReport:
    created: dict[str, int] = field(default_factory=dict)
    demo_accounts: list[tuple[str, str, str]] = field(default_factory=list)

    def add(self, kind: str, n: int = 1) -> None:
        self.created[kind] = self.created.get(kind, 0) + n

    @property
    def changed(self) -> bool:
        return any(self.created.values())


def _read_list(folder: Path) -> list[dict]:
    records: list[dict] = []
    for path in sorted(folder.glob("*.json")):
        records.extend(json.loads(path.read_text(encoding="utf-8")))
    return records


def _stamp(day: date | None, offset_days: int) -> datetime:
    base = datetime.combine(day or date(2026, 10, 1), time(9, 30))
    return base - timedelta(days=offset_days)


def load_seeds(seeds_dir: str) -> SeedReport:
    root = Path(seeds_dir)
    ref = load_reference(seeds_dir)
    report = SeedReport()

    orgs = {o.credit_code: o for o in db.session.scalars(select(Organization))}
    by_name: dict[str, Organization] = {o.name: o for o in orgs.values()}
    for rec in _read_list(root / "organizations"):
        if rec["credit_code"] in orgs:
            continue
        org = Organization(
            name=rec["name"], kind=rec["kind"], credit_code=rec["credit_code"],
            region_city=rec["region_city"], region_county=rec.get("region_county"),
            contact_name=rec.get("contact_name", ""), contact_phone=rec.get("contact_phone", ""),
            contact_email=rec.get("contact_email", ""), address=rec.get("address", ""),
            intro=rec.get("intro", ""), verified=bool(rec.get("verified", True)),
            verified_at=datetime(2026, 2, 20, 10) if rec.get("verified", True) else None,
            created_at=datetime(2026, 2, 10, 9),
        )
        db.session.add(org)
        orgs[org.credit_code] = by_name[org.name] = org
        report.add("organizations")

    batches = {b.title: b for b in db.session.scalars(select(Batch))}
    for rec in json.loads((root / "batches.json").read_text(encoding="utf-8")):
        if rec["title"] in batches:
            continue
        published_on = date.fromisoformat(rec["published_on"]) if rec.get("published_on") else None
        batch = Batch(
            title=rec["title"], kind=rec["kind"], status=rec["status"],
            published_on=published_on, description=rec.get("description", ""),
            created_at=_stamp(published_on, 60),
        )
        db.session.add(batch)
        batches[batch.title] = batch
        report.add("batches")
    db.session.flush()

    existing_opps = set(db.session.execute(select(Opportunity.publisher_id, Opportunity.title)))
    for i, rec in enumerate(_read_list(root / "opportunities")):
        publisher = by_name[rec["publisher"]]
        if (publisher.id, rec["title"]) in existing_opps:
            continue
        batch = batches.get(rec.get("batch") or "")
        status = rec["status"]
        published_on = batch.published_on if batch is not None else None
        opp = Opportunity(
            title=rec["title"], description=rec["description"], publisher_id=publisher.id,
            field_category=rec["field_category"], field_area=ref.area_of(rec["field_category"]),
            tier=rec["tier"], region_city=rec["region_city"], region_county=rec.get("region_county"),
            budget_min=Decimal(str(rec["budget_min"])) if rec.get("budget_min") is not None else None,
            budget_max=Decimal(str(rec["budget_max"])) if rec.get("budget_max") is not None else None,
            cooperation_modes=rec.get("cooperation_modes") or [],
            deadline=date.fromisoformat(rec["deadline"]) if rec.get("deadline") else None,
            contact_name=rec.get("contact_name", ""), contact_phone=rec.get("contact_phone", ""),
            status=status, batch_id=batch.id if batch is not None else None,
            review_comment=rec.get("review_comment"),
        )
        _timestamps(opp, status, published_on, i)
        db.session.add(opp)
        existing_opps.add((publisher.id, rec["title"]))
        report.add("opportunities")

    existing_products = set(db.session.execute(select(Product.owner_id, Product.name)))
    for i, rec in enumerate(_read_list(root / "products")):
        owner = by_name[rec["owner"]]
        if (owner.id, rec["name"]) in existing_products:
            continue
        batch = batches.get(rec.get("batch") or "")
        status = rec["status"]
        product = Product(
            name=rec["name"], description=rec["description"], owner_id=owner.id,
            maturity=rec["maturity"], cases=rec.get("cases") or "",
            region_city=rec["region_city"], region_county=rec.get("region_county"),
            status=status, batch_id=batch.id if batch is not None else None,
            review_comment=rec.get("review_comment"),
            field_rows=[ProductField(category=c, area=ref.area_of(c)) for c in dict.fromkeys(rec["fields"])],
            tag_rows=[ProductTag(tag=t) for t in dict.fromkeys(rec.get("tags") or [])],
        )
        _timestamps(product, status, batch.published_on if batch is not None else None, i)
        db.session.add(product)
        existing_products.add((owner.id, rec["name"]))
        report.add("products")

    users_file = root / "users.json"
    if users_file.exists():
        for rec in json.loads(users_file.read_text(encoding="utf-8")):
            report.demo_accounts.append((rec["email"], rec["password"], rec["description"]))
            if db.session.scalar(select(User.id).where(User.email == rec["email"].lower())):
                continue
            user = User(
                email=rec["email"].lower(), name=rec["name"], phone=rec.get("phone", ""),
                role=rec["role"],
                organization=by_name[rec["organization"]] if rec.get("organization") else None,
            )
            user.set_password(rec["password"])
            db.session.add(user)
            report.add("users")
        db.session.flush()
        from marketplace.services.accounts import ensure_org_admins

        ensure_org_admins()  # the earliest user of each organization is its 管理员

    responses_file = root / "responses.json"
    if responses_file.exists():
        db.session.flush()
        _load_responses(json.loads(responses_file.read_text(encoding="utf-8")), by_name, report)

    events_file = root / "events.json"
    if events_file.exists():
        from marketplace.services.event_seeds import load_events

        db.session.flush()
        load_events(json.loads(events_file.read_text(encoding="utf-8")), by_name, report)

    programme_file = root / "programme.json"
    if programme_file.exists():
        from marketplace.services.programme_seeds import load_programme

        db.session.flush()
        load_programme(json.loads(programme_file.read_text(encoding="utf-8")), by_name, report)

    if report.changed:
        index_sync.bump()
    db.session.commit()
    return report


class SeedError(ValueError):
    """A seed file refers to something that does not exist or breaks a rule."""


def _load_responses(data: dict, by_name: dict[str, Organization], report: SeedReport) -> None:
    """Consortia and responses from ``responses.json`` (natural keys: a consortium's (need,
    lead); a response's (need, organization, withdrawn or not)), with the notifications their
    history would have produced. Rows that exist are left alone."""
    from marketplace.models import (
        Consortium,
        ConsortiumMember,
        ConsortiumRole,
        InvitationStatus,
        Notification,
        Response,
        ResponseProduct,
        ResponseStatus,
    )
    from marketplace.services import notifications

    now = utcnow()
    needs = {o.title: o for o in db.session.scalars(select(Opportunity))}
    products = {(p.owner_id, p.name): p for p in db.session.scalars(select(Product))}

    def org(name: str) -> Organization:
        if name not in by_name:
            raise SeedError(f"responses.json: unknown organization {name!r}")
        return by_name[name]

    def need(title: str) -> Opportunity:
        found = needs.get(title)
        if found is None or found.status != EntryStatus.PUBLISHED:
            raise SeedError(f"responses.json: {title!r} is not a published opportunity")
        return found

    def tell(organization_id: int, kind: str, title: str, body: str, url: str, when: datetime) -> None:
        for user in db.session.scalars(select(User).where(User.organization_id == organization_id)):
            db.session.add(Notification(
                user_id=user.id, kind=kind, title=title, body=body, url=url, created_at=when,
                read_at=when + timedelta(hours=3) if now - when > timedelta(days=4) else None,
            ))
            report.add("notifications")

    consortia: dict[str, Consortium] = {}
    existing = {(c.opportunity_id, c.lead_organization_id): c for c in db.session.scalars(select(Consortium))}
    for i, rec in enumerate(data.get("consortia", [])):
        opportunity, lead = need(rec["opportunity"]), org(rec["lead"])
        found = existing.get((opportunity.id, lead.id))
        if found is not None:
            consortia[rec["name"]] = found
            continue
        created = now - timedelta(days=20 - i, hours=3)
        consortium = Consortium(opportunity_id=opportunity.id, lead_organization_id=lead.id, name=rec["name"],
                                created_at=created)
        consortium.members.append(ConsortiumMember(
            organization_id=lead.id, role=ConsortiumRole.LEAD, status=InvitationStatus.ACCEPTED,
            invited_at=created, answered_at=created,
        ))
        db.session.add(consortium)
        db.session.flush()
        url = notifications.path_for("responses.consortium", id=consortium.id)
        for j, member_rec in enumerate(rec["members"]):
            member = org(member_rec["organization"])
            invited = created + timedelta(hours=1 + j)
            pending = member_rec["status"] == InvitationStatus.INVITED
            answered = None if pending else invited + timedelta(days=1)
            row = ConsortiumMember(
                organization_id=member.id, role=ConsortiumRole(member_rec["role"]),
                status=InvitationStatus(member_rec["status"]), note=member_rec.get("note", ""),
                invited_at=invited, answered_at=answered,
            )
            consortium.members.append(row)
            tell(member.id, "consortium_invite", f"联合体邀请：{consortium.name}",
                 f"「{lead.name}」邀请贵单位作为{row.role_label}加入「{consortium.name}」，"
                 f"共同答复需求「{opportunity.title}」。", url, invited)
            if answered is not None:
                verb = "接受" if row.status == InvitationStatus.ACCEPTED else "谢绝"
                tell(lead.id, "consortium_answer", f"联合体邀请已{verb}：{member.name}",
                     f"「{member.name}」{verb}了加入「{consortium.name}」的邀请。", url, answered)
        consortia[rec["name"]] = consortium
        report.add("consortia")
    db.session.flush()

    keys = {
        (r.opportunity_id, r.organization_id, r.status == ResponseStatus.WITHDRAWN)
        for r in db.session.scalars(select(Response))
    }
    for rec in data.get("responses", []):
        opportunity, respondent = need(rec["opportunity"]), org(rec["organization"])
        status = ResponseStatus(rec["status"])
        key = (opportunity.id, respondent.id, status == ResponseStatus.WITHDRAWN)
        if key in keys:
            continue
        consortium = consortia[rec["consortium"]] if rec.get("consortium") else None
        owners = {respondent.id} | (set(consortium.accepted_organization_ids) if consortium else set())
        product_rows = []
        for name in rec["products"]:
            product = next((products[(o, name)] for o in owners if (o, name) in products), None)
            if product is None or product.status != EntryStatus.PUBLISHED:
                raise SeedError(f"responses.json: {name!r} is not a published product of {respondent.name}")
            product_rows.append(ResponseProduct(product_id=product.id))
        submitted = now - timedelta(days=rec.get("days_ago", 5), hours=2)
        response = Response(
            opportunity_id=opportunity.id, organization_id=respondent.id,
            consortium_id=consortium.id if consortium else None, status=status,
            summary=rec["summary"], delivery_plan=rec.get("delivery_plan", ""),
            quote=Decimal(str(rec["quote"])) if rec.get("quote") is not None else None,
            contact_name=rec["contact_name"], contact_phone=rec["contact_phone"],
            review_comment=rec.get("review_comment"), product_rows=product_rows,
            created_at=submitted - timedelta(days=1), updated_at=submitted,
            submitted_at=None if status == ResponseStatus.DRAFT else submitted,
        )
        db.session.add(response)
        db.session.flush()
        keys.add(key)
        report.add("responses")
        if response.submitted_at is None:
            continue
        url = notifications.path_for("responses.detail", id=response.id)
        name = f"{consortium.name}（牵头：{respondent.name}）" if consortium else respondent.name
        history = [("response.submit", f"提交对「{opportunity.title}」的答题", submitted)]
        tell(opportunity.publisher_id, "response_new", f"新的答题：{name}",
             f"「{name}」答复了贵单位发布的需求「{opportunity.title}」。", url, submitted)
        if status in (ResponseStatus.SHORTLISTED, ResponseStatus.SELECTED, ResponseStatus.REJECTED):
            reviewed = min(submitted + timedelta(days=2), now - timedelta(hours=1))
            response.reviewed_at = response.updated_at = reviewed
            body = f"您对「{opportunity.title}」的答题状态变为「{response.status_label}」。"
            if response.review_comment:
                body += f"意见：{response.review_comment}"
            for org_id in sorted(owners):
                tell(org_id, "response_status", f"答题{response.status_label}：{opportunity.title}",
                     body, url, reviewed)
            comment = f"：{response.review_comment[:200]}" if response.review_comment else ""
            step = {"shortlisted": "shortlist", "selected": "select", "rejected": "reject"}[status.value]
            history.append((f"response.{step}", f"{response.status_label}{comment}", reviewed))
        elif status == ResponseStatus.WITHDRAWN:
            history.append(("response.withdraw", "撤回答题", min(submitted + timedelta(days=3), now)))
        for action, summary, when in history:
            db.session.add(AuditEvent(action=action, object_type="response", object_id=response.id,
                                      summary=summary, created_at=when))


def _timestamps(entry, status: str, published_on: date | None, i: int) -> None:
    """Plausible, deterministic timestamps for a seeded entry."""
    offset = 10 + i % 25
    if status == EntryStatus.PUBLISHED and published_on is not None:
        entry.published_at = _stamp(published_on, 0)
        entry.submitted_at = _stamp(published_on, offset)
        entry.created_at = entry.updated_at = _stamp(published_on, offset + 3)
    else:
        created = _stamp(date(2026, 11, 10), offset)
        entry.created_at = entry.updated_at = created
        if status in (EntryStatus.SUBMITTED, EntryStatus.APPROVED, EntryStatus.RETURNED):
            entry.submitted_at = created + timedelta(days=2)
    if entry.created_at > utcnow():
        entry.created_at = entry.updated_at = utcnow()

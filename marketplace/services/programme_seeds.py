"""Loading ``seeds/programme.json``: the issue-10 demo data (scenario lifecycle, signings, labs,
十百千 designations and programme targets), with the audit events and notifications their
history would have produced.

Called by :func:`marketplace.services.seeding.load_seeds` after the responses and events.
Natural keys, so that loading twice changes nothing: organisations by credit code, signings
by (need, title), a need's stage history as a whole (a need that has any step is left alone),
labs by (organisation, kind), lab links by (lab, need), designations by (kind, year, name),
targets by (year, kind, cumulative).

Dates are days before the Beijing day the seeds are loaded (``days_ago``, or the event's day
for a signing at an event) or absolute Beijing dates (``on`` for a step, ``signed_on`` for a
signing: the needs of the 2023–2025 batches, whose history spans several years), clamped so that
no step precedes the need's publication or the step before it, nor follows today. A seeded
signing whose firm was on a shortlist of its need before the signing appends the ``signed``
shortlist decision the service would have written (engine snapshot ``{"seeded": true}``).
The rules of the services are checked while loading (:class:`ProgrammeSeedError`):
a need leaves 机会发布 with a selected response or an organizer's decision with a note, steps
follow :data:`services.lifecycle.TRANSITIONS`, signing parties are verified firms and their
products belong to them, lab links fall in 创新研发 or 孵化试点, a project designation is on a
need in 示范推广.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from marketplace import timeutil
from marketplace.extensions import db
from marketplace.models import (
    AuditEvent,
    Consortium,
    DecisionAction,
    Designation,
    DesignationKind,
    DesignationOpportunity,
    DesignationOrganization,
    DesignationStatus,
    EntryStatus,
    Event,
    Lab,
    LabKind,
    LabLink,
    LabService,
    Notification,
    NotificationKind,
    Opportunity,
    Organization,
    Product,
    ProgrammeTarget,
    Role,
    ScenarioStage,
    ShortlistDecision,
    Signing,
    SigningParty,
    SigningProduct,
    StageChange,
    User,
)
from marketplace.models.base import utcnow
from marketplace.models.enums import PRODUCT_OWNER_KINDS
from marketplace.services import lifecycle
from marketplace.services.events import local_datetime_to_utc
from marketplace.services.labs import LAB_ORG_KINDS

#: The time of day (Beijing) at which a seeded step, signing or link is recorded.
_RECORDED_AT = time(10, 0)


class ProgrammeSeedError(ValueError):
    """``programme.json`` refers to something that does not exist or breaks a rule."""


class _Loader:
    def __init__(self, data: dict, by_name: dict[str, Organization], report: Any) -> None:
        self.data = data
        self.by_name = by_name
        self.report = report
        self.today = timeutil.local_today()
        self.now = utcnow()
        self.needs = {o.title: o for o in db.session.scalars(select(Opportunity))}
        self.products = {(p.owner_id, p.name): p for p in db.session.scalars(select(Product))}
        self.events = {e.title: e for e in db.session.scalars(select(Event))}
        self.organizer = db.session.scalar(
            select(User).where(User.role == Role.ORGANIZER).order_by(User.id).limit(1)
        )
        self.signings: dict[str, Signing] = {}

    # ------------------------------------------------------------ lookups

    def fail(self, message: str) -> None:
        raise ProgrammeSeedError(f"programme.json: {message}")

    def org(self, name: str) -> Organization:
        found = self.by_name.get(name)
        if found is None:
            self.fail(f"unknown organization {name!r}")
        return found

    def need(self, title: str) -> Opportunity:
        found = self.needs.get(title)
        if found is None or found.status != EntryStatus.PUBLISHED:
            self.fail(f"{title!r} is not a published opportunity")
        return found

    def product(self, owners: set[int], name: str) -> Product:
        found = next((self.products[(o, name)] for o in sorted(owners) if (o, name) in self.products), None)
        if found is None or found.status != EntryStatus.PUBLISHED:
            self.fail(f"{name!r} is not a published product of the signing parties")
        return found

    def day(self, days_ago: int, not_before: date | None) -> date:
        day = self.today - timedelta(days=days_ago)
        return max(day, not_before) if not_before is not None else day

    def dated(self, rec: dict, key: str, not_before: date | None) -> date:
        """``rec[key]`` (an ISO date) if given, else ``rec["days_ago"]``; never before
        ``not_before`` nor after today."""
        if rec.get(key):
            day = min(date.fromisoformat(rec[key]), self.today)
            return max(day, not_before) if not_before is not None else day
        return self.day(rec["days_ago"], not_before)

    def stamp(self, day: date) -> datetime:
        return min(local_datetime_to_utc(day, _RECORDED_AT), self.now)

    def actor(self, who: str, opportunity: Opportunity) -> User | None:
        if who == "organizer":
            return self.organizer
        if who == "publisher":
            return db.session.scalar(
                select(User)
                .where(User.organization_id == opportunity.publisher_id)
                .order_by(User.id)
                .limit(1)
            )
        self.fail(f"actor must be 'organizer' or 'publisher', not {who!r}")
        return None

    def tell(
        self, organization_ids: set[int], kind: str, title: str, body: str, url: str, when: datetime
    ) -> None:
        users = db.session.scalars(select(User).where(User.organization_id.in_(organization_ids)))
        for user in users:
            db.session.add(
                Notification(
                    user_id=user.id,
                    kind=kind,
                    title=title,
                    body=body,
                    url=url,
                    created_at=when,
                    read_at=when + timedelta(hours=5) if self.now - when > timedelta(days=4) else None,
                )
            )
            self.report.add("notifications")

    def audit(self, actor: User | None, action: str, obj: Any, summary: str, when: datetime) -> None:
        db.session.add(
            AuditEvent(
                actor_id=actor.id if actor else None,
                action=action,
                object_type=obj.__tablename__,
                object_id=obj.id,
                summary=summary,
                created_at=when,
            )
        )

    # ------------------------------------------------------------ sections

    def organizations(self) -> None:
        codes = set(db.session.scalars(select(Organization.credit_code)))
        for rec in self.data.get("organizations", []):
            if rec["credit_code"] in codes:
                continue
            org = Organization(
                name=rec["name"],
                kind=rec["kind"],
                credit_code=rec["credit_code"],
                region_city=rec["region_city"],
                region_county=rec.get("region_county"),
                contact_name=rec.get("contact_name", ""),
                contact_phone=rec.get("contact_phone", ""),
                contact_email=rec.get("contact_email", ""),
                address=rec.get("address", ""),
                intro=rec.get("intro", ""),
                verified=True,
                verified_at=datetime(2025, 5, 20, 2),
                created_at=datetime(2025, 5, 12, 1),
            )
            db.session.add(org)
            self.by_name[org.name] = org
            codes.add(org.credit_code)
            self.report.add("organizations")
        db.session.flush()

    def signing_records(self) -> None:
        existing = {(s.opportunity_id, s.title): s for s in db.session.scalars(select(Signing))}
        for rec in self.data.get("signings", []):
            opportunity = self.need(rec["opportunity"])
            found = existing.get((opportunity.id, rec["title"]))
            if found is not None:
                self.signings[rec["title"]] = found
                continue
            event = None
            if rec.get("event"):
                event = self.events.get(rec["event"])
                if event is None or event.kind not in lifecycle.SIGNING_EVENT_KINDS:
                    self.fail(f"{rec['event']!r} is not a signing or matchmaking event")
                day = max(timeutil.to_local(event.starts_at).date(), lifecycle.published_day(opportunity))
            else:
                day = self.dated(rec, "signed_on", lifecycle.published_day(opportunity))
            parties = [self.org(name) for name in rec.get("parties", [])]
            consortium = None
            if rec.get("consortium"):
                consortium = db.session.scalar(
                    select(Consortium).where(
                        Consortium.name == rec["consortium"], Consortium.opportunity_id == opportunity.id
                    )
                )
                if consortium is None or consortium not in lifecycle.consortium_choices(opportunity):
                    self.fail(f"{rec['consortium']!r} is not a consortium with a selected response")
                members = [self.org_by_id(i) for i in consortium.accepted_organization_ids]
                parties = list(dict.fromkeys([*members, *parties]))
            if not parties or any(
                p.id == opportunity.publisher_id or not p.verified or p.kind not in PRODUCT_OWNER_KINDS
                for p in parties
            ):
                self.fail(
                    f"signing {rec['title']!r}: parties must be verified firms other than the publisher"
                )
            owners = {p.id for p in parties}
            signing = Signing(
                opportunity=opportunity,
                event_id=event.id if event else None,
                consortium_id=consortium.id if consortium else None,
                amount_wan=Decimal(str(rec["amount_wan"])) if rec.get("amount_wan") is not None else None,
                signed_on=day,
                title=rec["title"],
                note=rec.get("note", ""),
                created_by_id=self.organizer.id if self.organizer else None,
                created_at=self.stamp(day),
                parties=[SigningParty(organization_id=p.id) for p in parties],
                products=[
                    SigningProduct(product_id=self.product(owners, n).id) for n in rec.get("products", [])
                ],
            )
            db.session.add(signing)
            db.session.flush()
            self.signings[rec["title"]] = signing
            self.report.add("signings")
            when = self.stamp(day)
            self.signed_decisions(signing, when)
            self.audit(
                self.organizer,
                "signing.create",
                signing,
                f"登记签约「{signing.title}」（{day:%Y-%m-%d}），需求「{opportunity.title}」",
                when,
            )
            self.tell(
                {opportunity.publisher_id, *owners},
                NotificationKind.SIGNING,
                f"项目签约：{signing.title}",
                f"需求「{opportunity.title}」于 {day:%Y-%m-%d} 签约，签约企业："
                + "、".join(p.name for p in parties)
                + "。",
                lifecycle.need_path(opportunity),
                when,
            )

    def signed_decisions(self, signing: Signing, when: datetime) -> None:
        """The ``signed`` decisions of :func:`services.lifecycle.record_signing`, for the
        shortlists that existed when the signing took place."""
        for (shortlist_id, organization_id), (entry, product_ids) in sorted(
            lifecycle._shortlist_claims(signing).items()
        ):
            if entry.shortlist.created_at > when:
                continue
            shown = sorted(entry.shortlist.entries, key=lambda e: (not e.pinned, e.position, e.id))
            rank = shown.index(entry) + 1
            db.session.add(
                ShortlistDecision(
                    shortlist_id=shortlist_id,
                    organization_id=organization_id,
                    product_ids=list(product_ids),
                    action=DecisionAction.SIGNED.value,
                    from_rank=rank,
                    to_rank=rank,
                    reason=f"项目签约：{signing.title}（{signing.signed_on:%Y-%m-%d}）",
                    actor_id=self.organizer.id if self.organizer else None,
                    engine={"seeded": True},
                    created_at=when,
                )
            )
            self.report.add("shortlist decisions")

    def org_by_id(self, organization_id: int) -> Organization:
        return db.session.get(Organization, organization_id)

    def stages(self) -> None:
        with_history = set(db.session.scalars(select(StageChange.opportunity_id).distinct()))
        for rec in self.data.get("stages", []):
            opportunity = self.need(rec["opportunity"])
            if opportunity.id in with_history:
                continue
            previous = lifecycle.published_day(opportunity)
            for step_rec in rec["steps"]:
                stage = opportunity.stage or ScenarioStage.PUBLISHED
                target = ScenarioStage(step_rec["to"])
                step = next(
                    (t for t in lifecycle.TRANSITIONS.values() if stage in t.sources and t.target == target),
                    None,
                )
                if step is None:
                    self.fail(f"{opportunity.title!r}: no step from {stage} to {target}")
                who = step_rec.get("actor", "publisher")
                role = lifecycle.ORGANIZER if who == "organizer" else lifecycle.PUBLISHER
                if role not in step.who:
                    self.fail(f"{opportunity.title!r}: a {who} may not {step.action}")
                note = step_rec.get("note", "")
                # A signing moves a need by itself (services.lifecycle.record_signing); any other
                # step out of 机会发布 needs a selected response or an organizer's decision.
                if (
                    stage == ScenarioStage.PUBLISHED
                    and not step_rec.get("signing")
                    and not lifecycle.has_selected_response(opportunity.id)
                ):
                    if who != "organizer" or not note:
                        self.fail(
                            f"{opportunity.title!r}: leaving 机会发布 without a selected response "
                            "needs an organizer's decision with a note"
                        )
                if step.needs_note and not note:
                    self.fail(f"{opportunity.title!r}: {step.action} needs a note")
                signing = None
                if step_rec.get("signing"):
                    signing = self.signings.get(step_rec["signing"])
                    if signing is None or signing.opportunity_id != opportunity.id:
                        self.fail(f"{opportunity.title!r}: unknown signing {step_rec['signing']!r}")
                    day = max(signing.signed_on, previous)
                    note = note or f"项目签约：{signing.title}"
                else:
                    day = self.dated(step_rec, "on", previous)
                actor = self.actor(who, opportunity)
                change = StageChange(
                    opportunity=opportunity,
                    from_stage=stage,
                    to_stage=target,
                    happened_on=day,
                    note=note,
                    signing_id=signing.id if signing else None,
                    actor_id=actor.id if actor else None,
                    created_at=self.stamp(day),
                )
                db.session.add(change)
                opportunity.stage = target
                opportunity.stage_changed_at = timeutil.start_of_local_day(day).replace(tzinfo=None)
                db.session.flush()
                self.report.add("stage_changes")
                when = self.stamp(day)
                self.audit(
                    actor,
                    f"opportunity.stage.{step.action}",
                    opportunity,
                    f"{change.from_label} → {change.to_label}（{day:%Y-%m-%d}）",
                    when,
                )
                orgs = {opportunity.publisher_id} | lifecycle.delivering_organization_ids(opportunity.id)
                self.tell(
                    orgs,
                    NotificationKind.STAGE_CHANGED,
                    f"场景进入「{change.to_label}」：{opportunity.title}",
                    f"「{opportunity.title}」于 {day:%Y-%m-%d} 由「{change.from_label}」进入"
                    f"「{change.to_label}」阶段。",
                    lifecycle.need_path(opportunity),
                    when,
                )
                previous = day

    def labs(self) -> None:
        existing = {(lab.organization_id, lab.kind): lab for lab in db.session.scalars(select(Lab))}
        by_name: dict[str, Lab] = {lab.name: lab for lab in existing.values()}
        for rec in self.data.get("labs", []):
            org = self.org(rec["organization"])
            kind = LabKind(rec["kind"])
            if (org.id, kind.value) in existing:
                continue
            if org.kind not in LAB_ORG_KINDS or not org.verified:
                self.fail(f"{org.name!r} cannot be designated a lab")
            services = [LabService(s).value for s in rec["services"]]
            lab = Lab(
                organization_id=org.id,
                kind=kind.value,
                name=rec["name"],
                focus_fields=rec["focus_fields"],
                services=services,
                intro=rec.get("intro", ""),
                designated_on=date.fromisoformat(rec["designated_on"]),
                designated_by_id=self.organizer.id if self.organizer else None,
                active=True,
                created_at=local_datetime_to_utc(date.fromisoformat(rec["designated_on"]), _RECORDED_AT),
            )
            db.session.add(lab)
            db.session.flush()
            existing[(org.id, kind.value)] = by_name[lab.name] = lab
            self.report.add("labs")
            self.audit(
                self.organizer,
                "lab.designate",
                lab,
                f"认定「{org.name}」为{lab.kind_label}「{lab.name}」",
                lab.created_at,
            )
        links = set(db.session.execute(select(LabLink.lab_id, LabLink.opportunity_id)))
        for rec in self.data.get("lab_links", []):
            lab = by_name.get(rec["lab"])
            if lab is None:
                self.fail(f"unknown lab {rec['lab']!r}")
            opportunity = self.need(rec["opportunity"])
            if (lab.id, opportunity.id) in links:
                continue
            day = self.day(rec["days_ago"], lifecycle.published_day(opportunity))
            if self.stage_on(opportunity, day) not in lifecycle.LAB_STAGES:
                self.fail(f"{opportunity.title!r} is not in 创新研发 or 孵化试点 on {day}")
            service = LabService(rec["service"]).value
            if service not in lab.services:
                self.fail(f"{lab.name!r} does not offer {service}")
            link = LabLink(
                lab_id=lab.id,
                opportunity_id=opportunity.id,
                service=service,
                linked_on=day,
                note=rec.get("note", ""),
                created_by_id=self.organizer.id if self.organizer else None,
                created_at=self.stamp(day),
            )
            db.session.add(link)
            links.add((lab.id, opportunity.id))
            self.report.add("lab_links")
            when = self.stamp(day)
            self.audit(
                self.organizer,
                "lab.link",
                opportunity,
                f"对接实验室「{lab.name}」（{link.service_label}）",
                when,
            )
            orgs = {opportunity.publisher_id, lab.organization_id} | lifecycle.delivering_organization_ids(
                opportunity.id
            )
            self.tell(
                orgs,
                NotificationKind.LAB_LINK,
                f"实验室对接：{opportunity.title}",
                f"「{opportunity.title}」已对接{lab.kind_label}「{lab.name}」，服务内容：{link.service_label}。",
                lifecycle.need_path(opportunity),
                when,
            )

    @staticmethod
    def stage_on(opportunity: Opportunity, day: date) -> str:
        """The need's stage at the end of ``day`` (from its history)."""
        stage = ScenarioStage.PUBLISHED.value
        for change in lifecycle.stage_changes(opportunity.id):
            if change.happened_on <= day:
                stage = change.to_stage
        return stage

    def designations(self) -> None:
        existing = set(db.session.execute(select(Designation.kind, Designation.year, Designation.name)))
        for rec in self.data.get("designations", []):
            kind = DesignationKind(rec["kind"])
            status = DesignationStatus(rec["status"])
            name = rec.get("name") or rec.get("organization")
            if (kind.value, rec["year"], name) in existing:
                continue
            designation = Designation(
                kind=kind.value,
                year=rec["year"],
                status=status.value,
                name=name,
                description=rec.get("description", ""),
                decision_note=rec.get("decision_note", ""),
                recommended_by_id=self.organizer.id if self.organizer else None,
            )
            created = local_datetime_to_utc(date(rec["year"], 3, 15), _RECORDED_AT)
            if kind == DesignationKind.ZONE:
                designation.region_city = rec["region_city"]
                designation.region_county = rec.get("region_county")
                designation.opportunities = [
                    DesignationOpportunity(opportunity_id=self.need(t).id)
                    for t in rec.get("opportunities", [])
                ]
            elif kind == DesignationKind.PROJECT:
                opportunity = self.need(rec["opportunity"])
                if opportunity.stage != ScenarioStage.DEMONSTRATION:
                    self.fail(f"project {name!r}: {opportunity.title!r} is not in 示范推广")
                designation.opportunity_id = opportunity.id
                designation.region_city = opportunity.region_city
                designation.region_county = opportunity.region_county
                designation.organizations = [
                    DesignationOrganization(organization_id=i)
                    for i in sorted(lifecycle.delivering_organization_ids(opportunity.id))
                ]
                reached = max(c.happened_on for c in lifecycle.stage_changes(opportunity.id))
                created = self.stamp(min(reached + timedelta(days=3), self.today))
            else:
                org = self.org(rec["organization"])
                if org.kind not in PRODUCT_OWNER_KINDS:
                    self.fail(f"{org.name!r} is not a firm")
                designation.organization_id = org.id
                designation.region_city = org.region_city
                designation.region_county = org.region_county
            designation.created_at = created
            if status in (DesignationStatus.APPROVED, DesignationStatus.REJECTED):
                designation.decided_by_id = self.organizer.id if self.organizer else None
                designation.decided_at = min(created + timedelta(days=75), self.now)
            designation.updated_at = designation.decided_at or created
            db.session.add(designation)
            db.session.flush()
            existing.add((kind.value, rec["year"], name))
            self.report.add("designations")
            self.audit(
                self.organizer,
                "designation.create",
                designation,
                f"推荐{designation.kind_label}「{designation.name}」（{designation.year}年）",
                created,
            )
            if designation.decided_at is not None:
                self.audit(
                    self.organizer,
                    f"designation.{'approve' if status == 'approved' else 'reject'}",
                    designation,
                    f"{designation.status_label}：{designation.decision_note}",
                    designation.decided_at,
                )

    def targets(self) -> None:
        existing = set(
            db.session.execute(select(ProgrammeTarget.year, ProgrammeTarget.kind, ProgrammeTarget.cumulative))
        )
        for rec in self.data.get("targets", []):
            key = (rec["year"], DesignationKind(rec["kind"]).value, bool(rec["cumulative"]))
            if key in existing:
                continue
            db.session.add(
                ProgrammeTarget(
                    year=key[0],
                    kind=key[1],
                    cumulative=key[2],
                    target=rec["target"],
                    updated_by_id=self.organizer.id if self.organizer else None,
                )
            )
            existing.add(key)
            self.report.add("targets")


def load_programme(data: dict, by_name: dict[str, Organization], report: Any) -> None:
    """Create what ``data`` describes and does not exist yet (``report.add(kind, n)`` counts)."""
    loader = _Loader(data, by_name, report)
    loader.organizations()
    loader.signing_records()
    loader.stages()
    loader.labs()
    loader.designations()
    loader.targets()
    db.session.flush()

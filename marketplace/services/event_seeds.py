"""Loading ``seeds/events.json``: events, featured needs, registrations, shortlists with their
invitations, the 1:1 meeting plan and meetings, and the decisions and notifications that history
would have produced.

Called by :func:`marketplace.services.seeding.load_seeds`. Natural key: the event's title; an
event that exists is left alone, so loading twice changes nothing. Dates are offsets in days
from the Beijing day the seeds are loaded, so the demo salon is always open for registration.

Seeds never run the matching engine (loading must not depend on an encoder): the engine
snapshot of a seeded decision is ``{"seeded": true}``, and the shortlist page scores the
products live. Seeded meetings are checked with :func:`marketplace.scheduling.validate`; each
meeting marked held appends a seeded ``met`` decision.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any

from sqlalchemy import select

from marketplace import scheduling, timeutil
from marketplace.extensions import db
from marketplace.models import (
    AuditEvent,
    DecisionAction,
    EntryStatus,
    Event,
    EventInvitationStatus,
    EventKind,
    EventOpportunity,
    EventStatus,
    Meeting,
    MeetingPlan,
    MeetingSource,
    MeetingStatus,
    Notification,
    NotificationKind,
    Opportunity,
    Organization,
    Product,
    Registration,
    RegistrationProduct,
    RegistrationStatus,
    Response,
    Shortlist,
    ShortlistDecision,
    ShortlistEntry,
    ShortlistSource,
    User,
)
from marketplace.models.base import utcnow
from marketplace.services import meetings as meeting_service
from marketplace.services import notifications
from marketplace.services.events import LIVE_REGISTRATION, local_datetime_to_utc
from marketplace.services.shortlists import RESPONDED


class EventSeedError(ValueError):
    """``events.json`` refers to something that does not exist or breaks a rule."""


def load_events(data: dict, by_name: dict[str, Organization], report: Any) -> None:
    """Create the events of ``data`` that do not exist yet (``report.add(kind, n)`` counts)."""
    existing = set(db.session.scalars(select(Event.title)))
    needs = {o.title: o for o in db.session.scalars(select(Opportunity))}
    products = {(p.owner_id, p.name): p for p in db.session.scalars(select(Product))}
    today = timeutil.local_today()
    now = utcnow()

    def org(name: str) -> Organization:
        if name not in by_name:
            raise EventSeedError(f"events.json: unknown organization {name!r}")
        return by_name[name]

    def need(title: str) -> Opportunity:
        found = needs.get(title)
        if found is None or found.status != EntryStatus.PUBLISHED:
            raise EventSeedError(f"events.json: {title!r} is not a published opportunity")
        return found

    def product_ids(organization: Organization, names: list[str]) -> list[int]:
        ids = []
        for name in names:
            product = products.get((organization.id, name))
            if product is None or product.status != EntryStatus.PUBLISHED:
                raise EventSeedError(
                    f"events.json: {name!r} is not a published product of {organization.name}"
                )
            ids.append(product.id)
        return ids

    def tell(organization_id: int, kind: str, title: str, body: str, url: str, when: datetime) -> None:
        for user in db.session.scalars(select(User).where(User.organization_id == organization_id)):
            db.session.add(Notification(
                user_id=user.id, kind=kind, title=title, body=body, url=url, created_at=when,
                read_at=when + timedelta(hours=2) if now - when > timedelta(days=4) else None,
            ))
            report.add("notifications")

    for rec in data.get("events", []):
        if rec["title"] in existing:
            continue
        status = EventStatus(rec["status"])
        day = today + timedelta(days=rec["day_offset"])
        starts_at = local_datetime_to_utc(day, time.fromisoformat(rec["start"]))
        ends_at = local_datetime_to_utc(day, time.fromisoformat(rec["end"])) if rec.get("end") else None
        created = min(now, starts_at) - timedelta(days=30)
        published = created + timedelta(days=2) if status != EventStatus.DRAFT else None
        event = Event(
            kind=EventKind(rec["kind"]).value, title=rec["title"], status=status.value,
            starts_at=starts_at, ends_at=ends_at, venue=rec.get("venue", ""),
            online_url=rec.get("online_url", ""), capacity=rec["capacity"],
            registration_deadline=today + timedelta(days=rec["registration_deadline_offset"]),
            description=rec.get("description", ""), published_at=published,
            created_at=created, updated_at=published or created,
        )
        for position, title in enumerate(rec.get("needs", []), start=1):
            opportunity = need(title)
            event.featured.append(EventOpportunity(opportunity_id=opportunity.id, position=position,
                                                   added_at=created + timedelta(hours=position)))
        db.session.add(event)
        db.session.flush()
        existing.add(event.title)
        report.add("events")
        url = notifications.path_for("events.detail", id=event.id)
        history = [("event.create", f"创建{event.kind_label}「{event.title}」", created)]
        if published is not None:
            history.append(("event.open", "发布并开放报名", published))
        if status == EventStatus.FINISHED:
            history.append(("event.finish", "结束活动", (ends_at or starts_at) + timedelta(hours=1)))
        for action, summary, when in history:
            db.session.add(AuditEvent(action=action, object_type="event", object_id=event.id,
                                      summary=summary, created_at=when))

        for i, reg in enumerate(rec.get("registrations", [])):
            organization = org(reg["organization"])
            reg_status = RegistrationStatus(reg["status"])
            registered = (published or created) + timedelta(days=1, hours=i)
            registration = Registration(
                event_id=event.id, organization_id=organization.id, status=reg_status.value,
                note=reg.get("note", ""), decision_reason=reg.get("reason"), created_at=registered,
                product_rows=[RegistrationProduct(product_id=pid)
                              for pid in product_ids(organization, reg.get("products", []))],
            )
            if reg_status in (RegistrationStatus.CONFIRMED, RegistrationStatus.DECLINED):
                registration.decided_at = registered + timedelta(days=1)
                body = f"贵单位报名参加「{event.title}」的状态变为「{registration.status_label}」。"
                if registration.decision_reason:
                    body += f"原因：{registration.decision_reason}"
                title = f"活动报名{registration.status_label}：{event.title}"
                tell(organization.id, NotificationKind.REGISTRATION_STATUS, title, body, url,
                     registration.decided_at)
            db.session.add(registration)
            report.add("registrations")
        db.session.flush()
        if sum(r.status == RegistrationStatus.CONFIRMED for r in event.registrations) > event.capacity:
            raise EventSeedError(f"events.json: {event.title!r} confirms more firms than its capacity")

        registered_ids = {r.organization_id for r in event.registrations if r.status in LIVE_REGISTRATION}
        for rec_list in rec.get("shortlists", []):
            _load_shortlist(event, need(rec_list["opportunity"]), rec_list, org, product_ids, registered_ids,
                            tell, report)
        if rec.get("meeting_plan"):
            _load_meetings(event, day, rec["meeting_plan"], rec.get("meetings", []), org, need, report)


def _load_shortlist(event, opportunity, rec, org, product_ids, registered_ids, tell, report) -> None:
    if opportunity.id not in {f.opportunity_id for f in event.featured}:
        raise EventSeedError(f"events.json: {opportunity.title!r} is not featured at {event.title!r}")
    responded = set(db.session.scalars(
        select(Response.organization_id).where(Response.opportunity_id == opportunity.id,
                                               Response.status.in_(RESPONDED))
    ))
    opened = (event.published_at or event.created_at) + timedelta(days=3)
    shortlist = Shortlist(
        event_id=event.id, opportunity_id=opportunity.id, target_size=rec.get("target_size", 8),
        note=rec.get("note", ""), proposal={"seeded": True}, created_at=opened, updated_at=opened,
    )
    db.session.add(shortlist)
    db.session.flush()
    report.add("shortlists")

    def decide(
        entry: ShortlistEntry, action: DecisionAction, rank: int, when: datetime, reason: str = ""
    ) -> None:
        db.session.add(ShortlistDecision(
            shortlist_id=shortlist.id, organization_id=entry.organization_id, product_ids=entry.product_ids,
            action=action.value, from_rank=rank, to_rank=rank, reason=reason, engine={"seeded": True},
            created_at=when,
        ))
        report.add("shortlist decisions")

    pinned = [e for e in rec["entries"] if e.get("pinned")]
    ordered = pinned + [e for e in rec["entries"] if not e.get("pinned")]
    for rank, item in enumerate(ordered, start=1):
        organization = org(item["organization"])
        sources = [ShortlistSource.RECOMMENDED.value] if item.get("recommended") else []
        if organization.id in responded:
            sources.append(ShortlistSource.RESPONDED.value)
        if organization.id in registered_ids:
            sources.append(ShortlistSource.REGISTERED.value)
        if not sources:
            sources = [ShortlistSource.ADDED.value]
        entry = ShortlistEntry(
            shortlist_id=shortlist.id, organization_id=organization.id, position=rank,
            pinned=bool(item.get("pinned")), note=item.get("note", ""), sources=sources,
            products=[{"id": pid, "score": None, "reason": ""}
                      for pid in product_ids(organization, item.get("products", []))],
            publisher_requested=bool(item.get("publisher_requested")),
            invitation_status=EventInvitationStatus(item.get("invitation", "none")).value,
            decline_reason=item.get("decline_reason"), decline_detail=item.get("decline_detail"),
            created_at=opened,
        )
        db.session.add(entry)
        db.session.flush()
        step = opened + timedelta(hours=rank)
        if entry.pinned:
            decide(entry, DecisionAction.PINNED, rank, step)
        if entry.note:
            decide(entry, DecisionAction.NOTED, rank, step, entry.note)
        if entry.publisher_requested:
            decide(entry, DecisionAction.PUBLISHER_REQUESTED, rank, opened + timedelta(days=2, hours=rank))
        if entry.invitation_status == EventInvitationStatus.NONE:
            continue
        entry.invited_at = opened + timedelta(days=1)
        decide(entry, DecisionAction.INVITED, rank, entry.invited_at)
        url = notifications.path_for("events.invitation", id=entry.id)
        tell(organization.id, NotificationKind.EVENT_INVITATION, f"对接邀请：{event.title}",
             f"组织方邀请贵单位参加「{event.title}」，就需求「{opportunity.title}」"
             f"（{opportunity.publisher.name}）进行对接。请确认是否参加。", url, entry.invited_at)
        if entry.invitation_status in (EventInvitationStatus.CONFIRMED, EventInvitationStatus.DECLINED):
            entry.answered_at = entry.invited_at + timedelta(days=1, hours=rank)
            action = (DecisionAction.CONFIRMED if entry.invitation_status == EventInvitationStatus.CONFIRMED
                      else DecisionAction.DECLINED)
            decide(entry, action, rank, entry.answered_at, entry.decline_label)
    db.session.flush()


def _load_meetings(event, day, rec_plan, rec_meetings, org, need, report) -> None:
    """The event's meeting plan (times on the event day, Beijing) and its meetings."""
    def at(clock: str) -> datetime:
        return local_datetime_to_utc(day, time.fromisoformat(clock))

    sessions = [
        {"name": s.get("name", ""), "start": at(s["start"]).isoformat(), "end": at(s["end"]).isoformat(),
         "breaks": [{"name": b.get("name", "茶歇"), "start": at(b["start"]).isoformat(),
                     "end": at(b["end"]).isoformat()} for b in s.get("breaks", [])]}
        for s in rec_plan["sessions"]
    ]
    row = MeetingPlan(
        event_id=event.id, sessions=sessions, slot_minutes=rec_plan["slot_minutes"],
        tables=rec_plan["tables"],
        max_meetings_per_firm=rec_plan.get("max_meetings_per_firm"),
        max_meetings_per_need=rec_plan.get("max_meetings_per_need"),
        created_at=event.created_at, updated_at=event.created_at,
    )
    db.session.add(row)
    plan = meeting_service.to_plan(row)
    entries = {
        (e.shortlist.opportunity_id, e.organization_id): e
        for e in db.session.scalars(
            select(ShortlistEntry).join(Shortlist).where(Shortlist.event_id == event.id)
        )
    }
    length = timedelta(minutes=row.slot_minutes)
    placed: list[tuple[Meeting, ShortlistEntry]] = []
    for item in rec_meetings:
        opportunity, organization = need(item["opportunity"]), org(item["organization"])
        entry = entries.get((opportunity.id, organization.id))
        if entry is None or entry.invitation_status != EventInvitationStatus.CONFIRMED:
            raise EventSeedError(f"events.json: {organization.name!r} has no confirmed invitation for "
                                 f"{opportunity.title!r} at {event.title!r}")
        start = at(item["start"])
        meeting = Meeting(
            event_id=event.id, shortlist_entry_id=entry.id, opportunity_id=opportunity.id,
            organization_id=organization.id, table_number=item["table"], starts_at=start,
            ends_at=start + length, status=MeetingStatus(item.get("status", "scheduled")).value,
            source=MeetingSource(item.get("source", "auto")).value, note=item.get("note", ""),
            created_at=event.created_at + timedelta(days=10), updated_at=start + length,
        )
        placed.append((meeting, entry))
    problems = scheduling.validate(plan, [
        scheduling.Meeting(
            need_id=m.opportunity_id, publisher_id=e.shortlist.opportunity.publisher_id,
            firm_id=m.organization_id, start=m.starts_at.replace(tzinfo=UTC), table=m.table_number,
            need_title=e.shortlist.opportunity.title, firm_name=e.organization.name,
        )
        for m, e in placed
    ])
    if problems:
        raise EventSeedError(f"events.json: the meetings of {event.title!r} break rules: "
                             + "；".join(v.message for v in problems))
    for meeting, entry in placed:
        db.session.add(meeting)
        report.add("meetings")
        if meeting.status != MeetingStatus.HELD:
            continue
        ordered = sorted(entry.shortlist.entries, key=lambda e: (not e.pinned, e.position, e.id))
        rank = ordered.index(entry) + 1
        when = timeutil.to_local(meeting.starts_at)
        db.session.add(ShortlistDecision(
            shortlist_id=entry.shortlist_id, organization_id=entry.organization_id,
            product_ids=entry.product_ids, action=DecisionAction.MET.value, from_rank=rank, to_rank=rank,
            reason=f"1:1 洽谈 {when:%m-%d %H:%M} 第 {meeting.table_number} 号桌", engine={"seeded": True},
            created_at=meeting.ends_at,
        ))
        report.add("shortlist decisions")
    db.session.flush()

"""活动: the event and registration workflows, Beijing-time deadlines, capacity, drafts never
public, the permission matrix over roles, forms keeping input, malformed input never a 500."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from marketplace import timeutil
from marketplace.models import (
    AuditEvent,
    EntryStatus,
    Event,
    EventStatus,
    Notification,
    OrgKind,
    Registration,
    RegistrationStatus,
)
from marketplace.services import events as service
from marketplace.services import shortlists
from marketplace.services.errors import (
    InvalidTransition,
    NotFound,
    PermissionDenied,
    ValidationFailed,
)

BEIJING = ZoneInfo("Asia/Shanghai")


class Clock:
    """Freezes :func:`marketplace.timeutil.now_utc` at a Beijing wall-clock time."""

    def __init__(self, monkeypatch):
        self._monkeypatch = monkeypatch

    def set(self, beijing: str) -> datetime:
        value = datetime.fromisoformat(beijing).replace(tzinfo=BEIJING).astimezone(UTC)
        self._monkeypatch.setattr(timeutil, "now_utc", lambda: value)
        return value


@pytest.fixture
def clock(monkeypatch) -> Clock:
    c = Clock(monkeypatch)
    c.set("2026-12-01 10:00:00")
    return c


def event_data(**overrides) -> dict:
    data = {
        "kind": "salon",
        "title": "智慧交通场景沙龙（南昌站）",
        "day": date(2026, 12, 16),
        "start_time": time(14, 0),
        "end_time": time(17, 30),
        "venue": "南昌市红谷滩区赣江新区数字经济产业园A座3楼报告厅",
        "online_url": "https://meeting.example.cn/jxcj-1216",
        "capacity": 2,
        "registration_deadline": date(2026, 12, 12),
        "description": "围绕中心城区停车诱导、公交调度等场景，邀请需求单位与企业面对面交流。",
    }
    data.update(overrides)
    return data


def form_fields(**overrides) -> dict:
    """The same event as the HTML form posts it."""
    data = {
        "kind": "salon", "title": "智慧交通场景沙龙（南昌站）", "day": "2026-12-16",
        "start_time": "14:00", "end_time": "17:30", "venue": "南昌市红谷滩区数字经济产业园",
        "online_url": "", "capacity": "30", "registration_deadline": "2026-12-12",
        "description": "围绕停车诱导场景的沙龙。",
    }
    data.update(overrides)
    return data


class World:
    pass


@pytest.fixture
def world(make, clock):
    w = World()
    w.publisher = make.org(kind=OrgKind.GOVERNMENT, name="南昌市交通运输局")
    w.firm = make.org(kind=OrgKind.ENTERPRISE, name="江西云眸智能科技有限公司")
    w.other_firm = make.org(kind=OrgKind.ENTERPRISE, name="赣州数智物联有限公司")
    w.third_firm = make.org(kind=OrgKind.RESEARCH, name="江西省智能交通研究院")
    w.publisher_user = make.user(w.publisher)
    w.firm_user = make.user(w.firm)
    w.other_firm_user = make.user(w.other_firm)
    w.third_user = make.user(w.third_firm)
    w.organizer = make.organizer()
    w.admin = make.admin()
    w.need = make.opportunity(w.publisher, status=EntryStatus.PUBLISHED, deadline=date(2026, 12, 31))
    w.product = make.product(w.firm, status=EntryStatus.PUBLISHED, name="高位视频智慧泊位管理系统")
    w.other_product = make.product(w.other_firm, status=EntryStatus.PUBLISHED, name="城市停车诱导屏系统")
    w.event = service.create_event(w.organizer, event_data())
    return w


def opened(w) -> Event:
    service.add_need(w.organizer, w.event, w.need.id)
    return service.transition_event(w.organizer, w.event, "open")


# ---------------------------------------------------------------- creating events


def test_an_organizer_creates_a_draft_in_beijing_time(world):
    event = world.event
    assert event.status == EventStatus.DRAFT and event.published_at is None
    assert event.starts_at == datetime(2026, 12, 16, 6, 0)  # 14:00 Beijing is 06:00 UTC
    assert event.ends_at == datetime(2026, 12, 16, 9, 30)
    assert service.form_values(event)["start_time"] == time(14, 0)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"kind": "party"}, "kind"),
        ({"title": "短"}, "title"),
        ({"title": "沙龙\x00"}, "title"),
        ({"online_url": "javascript:alert(1)"}, "online_url"),
        ({"online_url": "ftp://example.cn/x"}, "online_url"),
        ({"online_url": "https://"}, "online_url"),
        ({"venue": "", "online_url": ""}, "venue"),
        ({"capacity": 0}, "capacity"),
        ({"capacity": 10**9}, "capacity"),
        ({"capacity": None}, "capacity"),
        ({"end_time": time(13, 0)}, "end_time"),
        ({"registration_deadline": date(2026, 12, 17)}, "registration_deadline"),
        ({"day": None}, "day"),
        ({"description": "字" * 5001}, "description"),
    ],
)
def test_event_fields_are_checked(world, overrides, field):
    with pytest.raises(ValidationFailed) as info:
        service.create_event(world.organizer, event_data(**overrides))
    assert field in info.value.errors


def test_an_online_only_event_needs_no_venue(world):
    event = service.create_event(world.organizer, event_data(venue="", online_url="http://live.example.cn/a"))
    assert event.online_url == "http://live.example.cn/a"


@pytest.mark.parametrize("who", ["firm_user", "publisher_user"])
def test_only_organizers_create_events(world, who):
    with pytest.raises(PermissionDenied):
        service.create_event(getattr(world, who), event_data())


def test_capacity_cannot_drop_below_confirmed_registrations(world):
    opened(world)
    registration = service.register(world.firm_user, world.event)
    service.transition_registration(world.organizer, registration, "confirm")
    with pytest.raises(ValidationFailed) as info:
        service.update_event(world.organizer, world.event, event_data(capacity=0))
    assert "capacity" in info.value.errors


# ---------------------------------------------------------------- the event state machine

EVENT_MATRIX = [
    (source, action, source in service.EVENT_TRANSITIONS[action].sources)
    for source in ("draft", "open", "finished", "cancelled")
    for action in service.EVENT_TRANSITIONS
]


@pytest.mark.parametrize(("source", "action", "allowed"), EVENT_MATRIX)
def test_event_transitions(world, db, source, action, allowed):
    world.event.status = source
    db.session.commit()
    if allowed:
        service.transition_event(world.organizer, world.event, action)
        assert world.event.status == service.EVENT_TRANSITIONS[action].target
    else:
        with pytest.raises(InvalidTransition):
            service.transition_event(world.organizer, world.event, action)
        assert world.event.status == source


def test_the_transition_table_is_the_documented_one():
    table = {a: (sorted(t.sources), t.target) for a, t in service.EVENT_TRANSITIONS.items()}
    assert table == {
        "open": (["draft"], "open"),
        "finish": (["open"], "finished"),
        "cancel": (["draft", "open"], "cancelled"),
    }


def test_an_event_cannot_open_after_its_registration_deadline(world, clock):
    clock.set("2026-12-13 00:00:01")
    with pytest.raises(InvalidTransition, match="报名截止日期已过"):
        service.transition_event(world.organizer, world.event, "open")


@pytest.mark.parametrize("who", ["firm_user", "publisher_user"])
def test_only_organizers_move_events(world, who):
    with pytest.raises(PermissionDenied):
        service.transition_event(getattr(world, who), world.event, "open")


def test_cancelling_tells_registered_and_invited_firms(world, db):
    opened(world)
    service.register(world.firm_user, world.event)
    shortlist = shortlists.open_shortlist(world.organizer, world.event, world.need.id)
    entry = next(e for e in shortlist.entries if e.organization_id == world.other_firm.id)
    shortlists.invite(world.organizer, shortlist, [entry.id])
    service.transition_event(world.organizer, world.event, "cancel", "场地临时调整")
    notes = db.session.scalars(select(Notification).where(Notification.title.contains("活动已取消"))).all()
    assert {n.user_id for n in notes} == {world.firm_user.id, world.other_firm_user.id}
    assert all("场地临时调整" in n.body for n in notes)


# ---------------------------------------------------------------- drafts are never public


def test_drafts_never_appear_publicly(world, client, make):
    published = service.create_event(world.organizer, event_data(title="2026年第二批机会清单发布会"))
    service.transition_event(world.organizer, published, "open")
    for url in ("/events/", "/", "/api/v1/search?q=沙龙&side=opportunities"):
        body = client.get(url).get_data(as_text=True)
        assert world.event.title not in body, url
    assert "2026年第二批机会清单发布会" in client.get("/events/").get_data(as_text=True)
    assert client.get(f"/events/{world.event.id}").status_code == 404
    assert client.get(f"/events/{published.id}").status_code == 200


@pytest.mark.parametrize("role", ["firm_user", "publisher_user"])
def test_drafts_are_404_for_logged_in_members_too(world, client, auth, role):
    auth.login(getattr(world, role))
    assert client.get(f"/events/{world.event.id}").status_code == 404
    assert world.event.title not in client.get("/events/").get_data(as_text=True)


def test_the_list_puts_upcoming_first_then_past(world, clock, db):
    opened(world)
    past = service.create_event(world.organizer, event_data(title="2026年供需对接会（赣州）",
                                                            day=date(2026, 12, 2),
                                                            registration_deadline=date(2026, 12, 1)))
    service.transition_event(world.organizer, past, "open")
    later = service.create_event(world.organizer, event_data(title="智慧水利产品路演", day=date(2027, 1, 8),
                                                             registration_deadline=date(2027, 1, 5)))
    service.transition_event(world.organizer, later, "open")
    clock.set("2026-12-03 09:00:00")
    service.transition_event(world.organizer, past, "finish")
    upcoming, gone = service.public_events()
    assert [e.id for e in upcoming] == [world.event.id, later.id]
    assert [e.id for e in gone] == [past.id]
    assert service.upcoming_events(1) == [world.event]


def test_a_cancelled_published_event_keeps_its_page_but_leaves_the_list(world, client):
    opened(world)
    service.transition_event(world.organizer, world.event, "cancel", "因故延期")
    assert "因故延期" in client.get(f"/events/{world.event.id}").get_data(as_text=True)
    assert world.event.title not in client.get("/events/").get_data(as_text=True)


def test_the_home_page_shows_upcoming_events(world, client):
    opened(world)
    assert world.event.title in client.get("/").get_data(as_text=True)


# ---------------------------------------------------------------- featured needs


def test_featured_needs_come_from_published_needs_or_a_batch(world, make, db):
    batch = make.batch(status="published")
    in_batch = [make.opportunity(world.publisher, status=EntryStatus.PUBLISHED, batch=batch, title=f"需求{i}")
                for i in range(3)]
    make.opportunity(world.publisher, status=EntryStatus.SUBMITTED, batch=batch, title="未发布需求")
    draft = make.opportunity(world.publisher, status=EntryStatus.DRAFT, title="草稿需求")
    service.add_need(world.organizer, world.event, world.need.id)
    assert service.add_batch(world.organizer, world.event, batch.id) == 3
    assert service.add_batch(world.organizer, world.event, batch.id) == 0
    assert [f.opportunity_id for f in world.event.featured] == [world.need.id] + [o.id for o in in_batch]
    with pytest.raises(ValidationFailed):
        service.add_need(world.organizer, world.event, draft.id)
    with pytest.raises(ValidationFailed):
        service.add_need(world.organizer, world.event, world.need.id)
    service.remove_need(world.organizer, world.event, in_batch[0].id)
    assert in_batch[0].id not in [f.opportunity_id for f in world.event.featured]


def test_search_finds_published_needs_not_yet_featured(world, make):
    make.opportunity(world.publisher, status=EntryStatus.DRAFT, title="停车草稿需求")
    assert [o.id for o in service.search_needs(world.event, "停车")] == [world.need.id]
    service.add_need(world.organizer, world.event, world.need.id)
    assert service.search_needs(world.event, "停车") == []
    assert service.search_needs(world.event, "%") == []
    assert service.search_needs(world.event, "\x00") == []


def test_a_need_with_a_shortlist_cannot_be_removed(world):
    opened(world)
    shortlists.open_shortlist(world.organizer, world.event, world.need.id)
    with pytest.raises(InvalidTransition, match="对接名单"):
        service.remove_need(world.organizer, world.event, world.need.id)


# ---------------------------------------------------------------- registrations


def test_a_firm_registers_with_a_note_and_products(world, db):
    opened(world)
    registration = service.register(world.firm_user, world.event, "拟派2人参加", [world.product.id])
    assert registration.status == RegistrationStatus.PENDING
    assert registration.product_ids == [world.product.id] and registration.note == "拟派2人参加"


@pytest.mark.parametrize(
    ("kind", "verified", "message"),
    [
        (OrgKind.GOVERNMENT, True, "政府部门不能报名"),
        (OrgKind.SOE, True, "国有企业不能报名"),
        (OrgKind.ENTERPRISE, False, "尚未通过组织方认证"),
    ],
)
def test_who_may_not_register(world, make, kind, verified, message):
    opened(world)
    user = make.user(make.org(kind=kind, verified=verified))
    with pytest.raises(PermissionDenied, match=message):
        service.register(user, world.event)


def test_organizers_cannot_register(world):
    opened(world)
    with pytest.raises(PermissionDenied):
        service.register(world.organizer, world.event)


@pytest.mark.parametrize(
    ("beijing", "allowed"),
    [("2026-12-12 23:59:59", True), ("2026-12-13 00:00:00", False), ("2026-12-13 07:59:59", False)],
)
def test_registration_closes_at_the_end_of_the_deadline_day_in_beijing(world, clock, beijing, allowed):
    opened(world)
    clock.set(beijing)
    if allowed:
        assert service.register(world.firm_user, world.event).status == RegistrationStatus.PENDING
    else:
        with pytest.raises(InvalidTransition, match="报名已于 2026-12-12 截止"):
            service.register(world.firm_user, world.event)


@pytest.mark.parametrize("status", ["draft", "finished", "cancelled"])
def test_only_open_events_take_registrations(world, db, status):
    world.event.status = status
    db.session.commit()
    with pytest.raises(InvalidTransition):
        service.register(world.firm_user, world.event)


def test_products_must_be_the_firms_own_published_products(world, make):
    opened(world)
    draft = make.product(world.firm, status=EntryStatus.DRAFT)
    for ids in ([world.other_product.id], [draft.id], ["abc"], ["99999999999999999999"]):
        with pytest.raises(ValidationFailed) as info:
            service.register(world.firm_user, world.event, "", ids)
        assert "product_ids" in info.value.errors


def test_one_registration_per_firm_and_a_cancelled_one_can_be_renewed(world, make):
    opened(world)
    first = service.register(world.firm_user, world.event)
    with pytest.raises(InvalidTransition, match="已报名"):
        service.register(make.user(world.firm), world.event)
    service.transition_registration(world.firm_user, first, "cancel")
    assert first.status == RegistrationStatus.CANCELLED
    again = service.register(world.firm_user, world.event, "改派1人参加")
    assert again.id == first.id and again.status == RegistrationStatus.PENDING


REGISTRATION_MATRIX = [
    (source, action, source in service.REGISTRATION_TRANSITIONS[action].sources)
    for source in ("pending", "confirmed", "declined", "cancelled")
    for action in service.REGISTRATION_TRANSITIONS
]


@pytest.mark.parametrize(("source", "action", "allowed"), REGISTRATION_MATRIX)
def test_registration_transitions(world, db, source, action, allowed):
    opened(world)
    registration = service.register(world.firm_user, world.event)
    registration.status = source
    db.session.commit()
    actor = world.firm_user if service.REGISTRATION_TRANSITIONS[action].who == "firm" else world.organizer
    if allowed:
        service.transition_registration(actor, registration, action, "名额有限，优先交通领域企业")
        assert registration.status == service.REGISTRATION_TRANSITIONS[action].target
    else:
        with pytest.raises(InvalidTransition):
            service.transition_registration(actor, registration, action, "原因")
        assert registration.status == source


def test_declining_needs_a_reason_that_the_firm_is_told(world, db):
    opened(world)
    registration = service.register(world.firm_user, world.event)
    with pytest.raises(ValidationFailed) as info:
        service.transition_registration(world.organizer, registration, "decline", "  ")
    assert "reason" in info.value.errors
    service.transition_registration(world.organizer, registration, "decline", "本场聚焦交通场景")
    note = db.session.scalars(select(Notification).where(Notification.user_id == world.firm_user.id)).one()
    assert note.kind == "registration_status" and "未通过" in note.title and "本场聚焦交通场景" in note.body


def test_confirming_notifies_the_firm(world, db):
    opened(world)
    registration = service.register(world.firm_user, world.event)
    service.transition_registration(world.organizer, registration, "confirm")
    note = db.session.scalars(select(Notification).where(Notification.user_id == world.firm_user.id)).one()
    assert "已确认" in note.title


def test_capacity_counts_confirmed_registrations_and_is_enforced_at_confirmation(world, make):
    opened(world)  # capacity 2
    users = (world.firm_user, world.other_firm_user, world.third_user)
    regs = [service.register(u, world.event) for u in users]
    service.transition_registration(world.organizer, regs[0], "confirm")
    service.transition_registration(world.organizer, regs[1], "confirm")
    assert world.event.confirmed_count == 2 and world.event.seats_left == 0
    with pytest.raises(InvalidTransition, match="名额已满"):
        service.transition_registration(world.organizer, regs[2], "confirm")
    assert regs[2].status == RegistrationStatus.PENDING
    service.transition_registration(world.other_firm_user, regs[1], "cancel")
    service.transition_registration(world.organizer, regs[2], "confirm")
    assert world.event.confirmed_count == 2


def test_a_firm_cannot_cancel_after_the_event_started(world, clock):
    opened(world)
    registration = service.register(world.firm_user, world.event)
    clock.set("2026-12-16 14:00:00")
    with pytest.raises(InvalidTransition, match="活动已开始"):
        service.transition_registration(world.firm_user, registration, "cancel")


def test_another_firm_cannot_cancel(world):
    opened(world)
    registration = service.register(world.firm_user, world.event)
    with pytest.raises(PermissionDenied):
        service.transition_registration(world.other_firm_user, registration, "cancel")


def test_steps_are_audited(world, db):
    opened(world)
    registration = service.register(world.firm_user, world.event)
    service.transition_registration(world.organizer, registration, "confirm")
    actions = db.session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)).all()
    assert actions == ["event.create", "event.add_need", "event.open", "registration.create",
                       "registration.confirm"]


# ---------------------------------------------------------------- pages: the permission matrix

ROLES = ["anonymous", "firm_user", "other_firm_user", "publisher_user", "organizer", "admin"]


def _login(auth, world, role):
    if role != "anonymous":
        auth.login(getattr(world, role))


@pytest.fixture
def stage(world):
    """An open event with the need featured, the firm registered and invited from its shortlist."""
    opened(world)
    world.registration = service.register(world.firm_user, world.event, "", [world.product.id])
    world.draft = service.create_event(world.organizer, event_data(title="VR+教育产品路演", kind="roadshow"))
    world.shortlist = shortlists.open_shortlist(world.organizer, world.event, world.need.id)
    world.entry = next(e for e in world.shortlist.entries if e.organization_id == world.firm.id)
    shortlists.invite(world.organizer, world.shortlist, [world.entry.id])
    return world


STAFF_ONLY = {"anonymous": 302, "firm_user": 403, "other_firm_user": 403, "publisher_user": 403,
              "organizer": 200, "admin": 200}
PAGES = {
    "list": (lambda w: "/events/", dict.fromkeys(ROLES, 200)),
    "open event": (lambda w: f"/events/{w.event.id}", dict.fromkeys(ROLES, 200)),
    "draft event": (lambda w: f"/events/{w.draft.id}",
                    {"anonymous": 404, "firm_user": 404, "other_firm_user": 404, "publisher_user": 404,
                     "organizer": 200, "admin": 200}),
    "manage list": (lambda w: "/events/manage", STAFF_ONLY),
    "new": (lambda w: "/events/new", STAFF_ONLY),
    "manage": (lambda w: f"/events/{w.event.id}/manage", STAFF_ONLY),
    "manage draft": (lambda w: f"/events/{w.draft.id}/manage",
                     {**STAFF_ONLY, "firm_user": 404, "other_firm_user": 404, "publisher_user": 404}),
    "edit": (lambda w: f"/events/{w.event.id}/edit", STAFF_ONLY),
    "register": (lambda w: f"/events/{w.event.id}/register",
                 {"anonymous": 302, "firm_user": 409, "other_firm_user": 200, "publisher_user": 403,
                  "organizer": 403, "admin": 403}),
    "mine": (lambda w: "/events/mine",
             {"anonymous": 302, "firm_user": 200, "other_firm_user": 200, "publisher_user": 200,
              "organizer": 403, "admin": 403}),
    "shortlist": (lambda w: f"/events/shortlists/{w.shortlist.id}",
                  {"anonymous": 302, "firm_user": 404, "other_firm_user": 404, "publisher_user": 200,
                   "organizer": 200, "admin": 200}),
    "invitation": (lambda w: f"/events/invitations/{w.entry.id}",
                   {"anonymous": 302, "firm_user": 200, "other_firm_user": 404, "publisher_user": 404,
                    "organizer": 200, "admin": 200}),
}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("page", list(PAGES))
def test_page_permission_matrix(stage, client, auth, role, page):
    url, expected = PAGES[page]
    _login(auth, stage, role)
    assert client.get(url(stage)).status_code == expected[role]


#: (role) → (HTTP status, whether the step happened) for each POST.
ACTIONS = {
    "finish event": (
        lambda w: f"/events/{w.event.id}/finish", {},
        lambda w: w.event.status == "finished",
        {"anonymous": (302, False), "firm_user": (403, False), "other_firm_user": (403, False),
         "publisher_user": (403, False), "organizer": (302, True), "admin": (302, True)},
    ),
    "confirm registration": (
        lambda w: f"/events/registrations/{w.registration.id}/confirm", {},
        lambda w: w.registration.status == "confirmed",
        {"anonymous": (302, False), "firm_user": (403, False), "other_firm_user": (404, False),
         "publisher_user": (404, False), "organizer": (302, True), "admin": (302, True)},
    ),
    "cancel registration": (
        lambda w: f"/events/registrations/{w.registration.id}/cancel", {},
        lambda w: w.registration.status == "cancelled",
        {"anonymous": (302, False), "firm_user": (302, True), "other_firm_user": (404, False),
         "publisher_user": (404, False), "organizer": (403, False), "admin": (403, False)},
    ),
    "pin entry": (
        lambda w: f"/events/shortlists/entries/{w.entry.id}/pin", {},
        lambda w: w.entry.pinned,
        {"anonymous": (302, False), "firm_user": (404, False), "other_firm_user": (404, False),
         "publisher_user": (403, False), "organizer": (302, True), "admin": (302, True)},
    ),
    "publisher request": (
        lambda w: f"/events/shortlists/entries/{w.entry.id}/request", {},
        lambda w: w.entry.publisher_requested,
        {"anonymous": (302, False), "firm_user": (404, False), "other_firm_user": (404, False),
         "publisher_user": (302, True), "organizer": (403, False), "admin": (403, False)},
    ),
    "invite": (
        lambda w: f"/events/shortlists/{w.shortlist.id}/invite", {},
        lambda w: sum(e.invitation_status == "invited" for e in w.shortlist.entries) > 1,
        {"anonymous": (302, False), "firm_user": (404, False), "other_firm_user": (404, False),
         "publisher_user": (403, False), "organizer": (302, True), "admin": (302, True)},
    ),
    "confirm invitation": (
        lambda w: f"/events/invitations/{w.entry.id}/confirm", {},
        lambda w: w.entry.invitation_status == "confirmed",
        {"anonymous": (302, False), "firm_user": (302, True), "other_firm_user": (404, False),
         "publisher_user": (404, False), "organizer": (403, False), "admin": (403, False)},
    ),
    "decline invitation": (
        lambda w: f"/events/invitations/{w.entry.id}/decline", {"reason": "schedule"},
        lambda w: w.entry.invitation_status == "declined",
        {"anonymous": (302, False), "firm_user": (302, True), "other_firm_user": (404, False),
         "publisher_user": (404, False), "organizer": (403, False), "admin": (403, False)},
    ),
    "add need": (
        lambda w: f"/events/{w.event.id}/needs/add", {"opportunity_id": "0"},
        lambda w: False,
        {"anonymous": (302, False), "firm_user": (403, False), "other_firm_user": (403, False),
         "publisher_user": (403, False), "organizer": (302, False), "admin": (302, False)},
    ),
}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("action", list(ACTIONS))
def test_action_permission_matrix(stage, client, auth, db, role, action):
    url, data, happened, expected = ACTIONS[action]
    _login(auth, stage, role)
    reply = auth.post(url(stage), data)
    code, done = expected[role]
    assert reply.status_code == code
    db.session.expire_all()
    assert happened(stage) is done


@pytest.mark.parametrize(
    ("role", "expected"),
    [("anonymous", False), ("firm_user", False), ("other_firm_user", False), ("publisher_user", False),
     ("organizer", True), ("admin", True)],
)
def test_service_permission_function_for_managing(stage, role, expected):
    user = None if role == "anonymous" else getattr(stage, role)
    assert service.can(user, "manage", stage.event) is expected
    assert service.can(user, "manage", stage.shortlist) is expected
    assert service.can(user, "create", Event) is expected


def test_a_post_without_csrf_token_is_refused(stage, client, auth):
    auth.login(stage.organizer)
    assert client.post(f"/events/{stage.event.id}/finish", data={}).status_code == 400
    assert stage.event.status == "open"


# ---------------------------------------------------------------- pages: forms and journeys


def test_an_organizer_creates_an_event_through_the_form(world, client, auth, db):
    auth.login(world.organizer)
    reply = auth.post("/events/new", form_fields())
    assert reply.status_code == 302
    event = db.session.scalars(select(Event).order_by(Event.id.desc())).first()
    assert event.title == "智慧交通场景沙龙（南昌站）" and event.capacity == 30
    assert event.starts_at == datetime(2026, 12, 16, 6, 0)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"online_url": "javascript:alert(1)"}, "线上链接须以 http:// 或 https:// 开头"),
        ({"venue": "", "online_url": ""}, "请填写举办地点或线上链接"),
        ({"registration_deadline": "2026-12-20"}, "报名截止日期不能晚于活动日期"),
        ({"capacity": "0"}, "名额应为1–100000"),
        ({"capacity": "abc"}, "名额"),
        ({"end_time": "13:00"}, "结束时间应晚于开始时间"),
        ({"day": "2026-13-45"}, "日期"),
    ],
)
def test_event_form_errors_are_chinese_and_keep_the_input(world, client, auth, db, overrides, message):
    auth.login(world.organizer)
    before = db.session.scalar(select(func.count()).select_from(Event))
    reply = auth.post("/events/new", form_fields(description="保留这段活动介绍文字", **overrides))
    html = reply.get_data(as_text=True)
    assert reply.status_code == 400
    assert message in html
    assert "保留这段活动介绍文字" in html
    assert db.session.scalar(select(func.count()).select_from(Event)) == before


def test_a_firm_registers_through_the_page(world, client, auth, db):
    opened(world)
    auth.login(world.firm_user)
    page = client.get(f"/events/{world.event.id}").get_data(as_text=True)
    assert "我要报名" in page and world.need.title in page
    form = client.get(f"/events/{world.event.id}/register").get_data(as_text=True)
    assert world.product.name in form and world.other_product.name not in form
    reply = auth.post(f"/events/{world.event.id}/register",
                      {"note": "拟派2人", "product_ids": [str(world.product.id)]})
    assert reply.status_code == 302
    registration = db.session.scalars(select(Registration)).one()
    assert registration.product_ids == [world.product.id]
    mine = client.get("/events/mine").get_data(as_text=True)
    assert world.event.title in mine and "待确认" in mine


@pytest.mark.parametrize("product_ids", [["abc"], ["99999999999999999999"], ["-1"]])
def test_malformed_registration_input_is_a_form_error(world, client, auth, db, product_ids):
    opened(world)
    auth.login(world.firm_user)
    reply = auth.post(f"/events/{world.event.id}/register", {"note": "保留说明", "product_ids": product_ids})
    assert reply.status_code == 400
    assert "保留说明" in reply.get_data(as_text=True)
    assert db.session.scalar(select(func.count()).select_from(Registration)) == 0


def test_the_organizer_declines_with_a_reason_from_the_manage_page(world, client, auth):
    opened(world)
    registration = service.register(world.firm_user, world.event)
    auth.login(world.organizer)
    page = client.get(f"/events/{world.event.id}/manage").get_data(as_text=True)
    assert world.firm.name in page and "不予通过" in page
    reply = auth.post(f"/events/registrations/{registration.id}/decline", {"reason": ""})
    assert reply.status_code == 302 and registration.status == "pending"
    auth.post(f"/events/registrations/{registration.id}/decline", {"reason": "本场聚焦交通"})
    assert registration.status == "declined" and registration.decision_reason == "本场聚焦交通"


def test_the_organizer_searches_and_adds_needs_on_the_manage_page(world, client, auth, make):
    batch = make.batch(status="published")
    make.opportunity(world.publisher, status=EntryStatus.PUBLISHED, batch=batch, title="公交调度优化")
    auth.login(world.organizer)
    page = client.get(f"/events/{world.event.id}/manage?q=停车").get_data(as_text=True)
    assert world.need.title in page and "加入" in page
    reply = auth.post(f"/events/{world.event.id}/needs/add", {"opportunity_id": str(world.need.id)})
    assert reply.status_code == 302
    assert auth.post(f"/events/{world.event.id}/needs/batch", {"batch_id": str(batch.id)}).status_code == 302
    assert len(world.event.featured) == 2


@pytest.mark.parametrize(
    "url",
    ["/events/99999999999", "/events/2147483647", "/events/2147483647/manage",
     "/events/shortlists/2147483647", "/events/invitations/2147483647", "/events/-1"],
)
def test_huge_and_missing_ids_are_404(world, client, auth, url):
    auth.login(world.organizer)
    assert client.get(url).status_code == 404


@pytest.mark.parametrize(
    ("url", "data"),
    [
        ("/events/{e}/needs/add", {"opportunity_id": "99999999999999999999"}),
        ("/events/{e}/needs/add", {"opportunity_id": "abc\x00"}),
        ("/events/{e}/needs/add", {"opportunity_id": "2147483647"}),
        ("/events/{e}/needs/batch", {"batch_id": "99999999999999999999"}),
        ("/events/{e}/needs/batch", {"batch_id": "\x00"}),
        ("/events/{e}/cancel", {"reason": "原因\x00"}),
        ("/events/{e}/needs/2147483647/remove", {}),
        ("/events/{e}/needs/2147483647/shortlist", {}),
    ],
)
def test_malformed_organizer_posts_are_4xx_or_redirects_never_500(world, client, auth, url, data):
    auth.login(world.organizer)
    reply = auth.post(url.format(e=world.event.id), data)
    assert reply.status_code in (302, 400, 404, 409)


def test_the_search_box_survives_junk(world, client, auth):
    auth.login(world.organizer)
    for q in ("\x01", "%%%", "字" * 500, "' OR 1=1 --"):
        assert client.get(f"/events/{world.event.id}/manage", query_string={"q": q}).status_code == 200
    # A NUL is refused for the whole site (marketplace/security.py).
    assert client.get(f"/events/{world.event.id}/manage", query_string={"q": "\x00"}).status_code == 400


def test_visible_event_hides_drafts_as_not_found(world):
    assert service.visible_event(world.organizer, world.event.id) is world.event
    with pytest.raises(NotFound):
        service.visible_event(None, world.event.id)
    with pytest.raises(NotFound):
        service.visible_event(world.firm_user, world.event.id)

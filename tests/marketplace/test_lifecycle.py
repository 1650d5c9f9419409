"""场景生命周期: the transition table, who may take each step, the precondition, Beijing-date
rules, notifications, evidence and the public/private split of the need's timeline.

The ``world``, ``clock`` and role helpers are shared with test_signings.py and test_labs.py.
"""

from __future__ import annotations

import io
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
from flask import g
from sqlalchemy import func, select

from marketplace import timeutil
from marketplace.models import (
    AuditEvent,
    Consortium,
    ConsortiumMember,
    ConsortiumRole,
    EntryStatus,
    InvitationStatus,
    Notification,
    NotificationKind,
    OrgKind,
    ScenarioStage,
    StageChange,
)
from marketplace.services import lifecycle as service
from marketplace.services.errors import InvalidTransition, NotFound, PermissionDenied, ValidationFailed
from marketplace.services.responses import Upload
from tests.conftest import AuthActions

BEIJING = ZoneInfo("Asia/Shanghai")
#: 2026-03-28 09:30 Beijing: the day the need was published.
PUBLISHED_AT = datetime(2026, 3, 28, 1, 30)
PUBLISHED_DAY = date(2026, 3, 28)
TODAY = date(2026, 12, 1)
PDF = b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
SECRET = "专家评审意见：试点水库选址需避开汛期施工"

ROLES = (
    "anonymous",
    "publisher_user",
    "firm_user",
    "partner_user",
    "other_firm_user",
    "other_gov_user",
    "organizer",
    "admin",
)
#: Roles that see notes, actors and evidence: the publisher, the delivering firms, organizers.
INSIDERS = {"publisher_user", "firm_user", "partner_user", "organizer", "admin"}


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


class World:
    def user(self, role: str):
        return None if role == "anonymous" else getattr(self, role)


@pytest.fixture
def world(make, db, clock):
    """A published need of 修水县水利局 with a selected response of 江西泓川水利 (whose consortium
    partner accepted), another firm, another department, an organizer and an admin."""
    w = World()
    w.publisher = make.org(kind=OrgKind.GOVERNMENT, name="修水县水利局")
    w.firm = make.org(kind=OrgKind.ENTERPRISE, name="江西泓川水利科技有限公司")
    w.partner = make.org(kind=OrgKind.ENTERPRISE, name="鹰潭感知物联技术有限公司")
    w.other_firm = make.org(kind=OrgKind.ENTERPRISE, name="赣州数智物联有限公司")
    w.other_gov = make.org(kind=OrgKind.GOVERNMENT, name="九江市生态环境局")
    w.publisher_user = make.user(w.publisher, name="王建国")
    w.firm_user = make.user(w.firm)
    w.partner_user = make.user(w.partner)
    w.other_firm_user = make.user(w.other_firm)
    w.other_gov_user = make.user(w.other_gov)
    w.organizer = make.organizer()
    w.admin = make.admin()
    w.need = make.opportunity(
        w.publisher,
        status=EntryStatus.PUBLISHED,
        published_at=PUBLISHED_AT,
        title="小型水库雨水情测报和大坝安全监测设施建设",
        field_category="智慧水利",
        field_area="数字治理",
    )
    w.product = make.product(
        w.firm, status=EntryStatus.PUBLISHED, name="小型水库雨水情测报与大坝安全监测一体化设施"
    )
    w.partner_product = make.product(w.partner, status=EntryStatus.PUBLISHED, name="北斗高精度形变监测终端")
    w.other_product = make.product(w.other_firm, status=EntryStatus.PUBLISHED, name="河湖水质浮标监测系统")
    w.consortium = Consortium(
        opportunity_id=w.need.id, lead_organization_id=w.firm.id, name="修水水库安全监测联合体"
    )
    w.consortium.members = [
        ConsortiumMember(
            organization_id=w.firm.id, role=ConsortiumRole.LEAD, status=InvitationStatus.ACCEPTED
        ),
        ConsortiumMember(
            organization_id=w.partner.id, role=ConsortiumRole.PRODUCT, status=InvitationStatus.ACCEPTED
        ),
        ConsortiumMember(
            organization_id=w.other_firm.id, role=ConsortiumRole.OTHER, status=InvitationStatus.DECLINED
        ),
    ]
    db.session.add(w.consortium)
    db.session.commit()
    w.response = make.response(w.need, w.firm, [w.product], status="selected", consortium_id=w.consortium.id)
    make.response(w.need, w.other_firm, [w.other_product], status="rejected")
    return w


def at_stage(db, need, stage: str, day: date = date(2026, 6, 1)) -> None:
    """Put a need at ``stage`` (with a step dated ``day``) without going through the service."""
    if stage != ScenarioStage.PUBLISHED:
        db.session.add(
            StageChange(opportunity_id=need.id, from_stage="published", to_stage=stage, happened_on=day)
        )
    need.stage = stage
    db.session.commit()


def login_as(app, world, role: str):
    """A fresh client logged in as ``role`` (sharing the test's app context, hence the g.pops)."""
    client = app.test_client()
    g.pop("_login_user", None)
    g.pop("csrf_token", None)
    auth = AuthActions(client)
    if role != "anonymous":
        assert auth.login(world.user(role)).status_code == 302
    return client, auth


# ---------------------------------------------------------------- the table


def test_the_transition_table_is_the_documented_lifecycle():
    table = {a: (set(t.sources), t.target, set(t.who)) for a, t in service.TRANSITIONS.items()}
    assert table == {
        "start_rnd": ({"published"}, "rnd", {"organizer", "publisher"}),
        "start_pilot": ({"rnd"}, "pilot", {"organizer", "publisher"}),
        "demonstrate": ({"pilot"}, "demonstration", {"organizer"}),
        "terminate": ({"published", "rnd", "pilot"}, "terminated", {"organizer", "publisher"}),
    }


def _role_kind(role: str) -> str | None:
    return {"organizer": "organizer", "admin": "organizer", "publisher_user": "publisher"}.get(role)


STEP_CASES = [(action, role) for action in service.TRANSITIONS for role in ROLES]


@pytest.mark.parametrize(("action", "role"), STEP_CASES)
def test_who_may_take_each_step(world, db, action, role):
    step = service.TRANSITIONS[action]
    source = sorted(step.sources)[0]
    at_stage(db, world.need, source)
    user = world.user(role)
    allowed = _role_kind(role) in step.who
    assert service.can(user, action, world.need) is allowed
    if allowed:
        change = service.change_stage(user, world.need, action, TODAY, "经现场核查推进")
        assert world.need.stage == step.target and change.to_stage == step.target
    else:
        with pytest.raises(PermissionDenied):
            service.change_stage(user, world.need, action, TODAY, "经现场核查推进")
        assert world.need.stage == source


STATE_CASES = [
    (action, stage)
    for action, step in service.TRANSITIONS.items()
    for stage in ScenarioStage
    if stage not in step.sources
]


@pytest.mark.parametrize(("action", "stage"), STATE_CASES)
def test_steps_are_refused_from_other_stages(world, db, action, stage):
    at_stage(db, world.need, stage)
    assert not service.can(world.organizer, action, world.need)
    with pytest.raises(InvalidTransition, match="阶段的场景不能"):
        service.change_stage(world.organizer, world.need, action, TODAY, "说明")
    assert world.need.stage == stage


def test_a_need_that_is_not_published_has_no_lifecycle(world, db, make):
    draft = make.opportunity(world.publisher, status=EntryStatus.WITHDRAWN)
    with pytest.raises(InvalidTransition, match="未公开发布"):
        service.change_stage(world.organizer, draft, "start_rnd", TODAY, "说明")


# ---------------------------------------------------------------- the precondition


@pytest.fixture
def unanswered(world, make):
    """A published need of the same publisher without any selected response."""
    return make.opportunity(
        world.publisher,
        status=EntryStatus.PUBLISHED,
        published_at=PUBLISHED_AT,
        title="全县小型水库安全运行智能监测预警平台",
    )


@pytest.mark.parametrize("action", ["start_rnd", "terminate"])
def test_the_publisher_needs_a_selected_response_to_leave_the_published_stage(world, unanswered, action):
    assert not service.can(world.publisher_user, action, unanswered)
    with pytest.raises(InvalidTransition, match="还没有选定的答题单位"):
        service.change_stage(world.publisher_user, unanswered, action, TODAY, "说明")


def test_an_organizer_may_decide_without_a_selected_response_but_must_say_why(world, unanswered):
    with pytest.raises(ValidationFailed) as exc:
        service.change_stage(world.organizer, unanswered, "start_rnd", TODAY, "  ")
    assert exc.value.errors == {"note": "请填写决定说明"}
    assert unanswered.stage == ScenarioStage.PUBLISHED
    change = service.change_stage(
        world.organizer, unanswered, "start_rnd", TODAY, "经专家论证，由组织方决定推进"
    )
    assert unanswered.stage == ScenarioStage.RND and change.note.startswith("经专家论证")


def test_with_a_selected_response_the_note_is_optional(world):
    change = service.change_stage(world.publisher_user, world.need, "start_rnd", TODAY, "")
    assert change.note == "" and world.need.stage == ScenarioStage.RND


def test_terminating_always_needs_a_reason(world):
    with pytest.raises(ValidationFailed) as exc:
        service.change_stage(world.publisher_user, world.need, "terminate", TODAY, "")
    assert exc.value.errors == {"note": "请填写终止原因"}


# ---------------------------------------------------------------- dates


@pytest.mark.parametrize(
    ("beijing_now", "day", "ok"),
    [
        ("2026-12-01 10:00:00", date(2026, 12, 1), True),
        ("2026-12-01 10:00:00", date(2026, 12, 2), False),
        ("2026-12-01 23:30:00", date(2026, 12, 2), False),  # 15:30 UTC: still the 1st in Beijing
        ("2026-12-02 00:30:00", date(2026, 12, 2), True),  # 16:30 UTC on the 1st: the 2nd in Beijing
    ],
)
def test_a_step_is_not_dated_in_the_future_in_beijing_time(world, clock, beijing_now, day, ok):
    clock.set(beijing_now)
    if ok:
        assert service.change_stage(world.publisher_user, world.need, "start_rnd", day).happened_on == day
    else:
        with pytest.raises(ValidationFailed) as exc:
            service.change_stage(world.publisher_user, world.need, "start_rnd", day)
        assert "不能晚于今天" in exc.value.errors["happened_on"]


def test_the_first_step_is_not_before_the_publication_day(world):
    with pytest.raises(ValidationFailed) as exc:
        service.change_stage(world.publisher_user, world.need, "start_rnd", date(2026, 3, 27))
    assert exc.value.errors["happened_on"] == "日期不能早于需求发布日期（2026-03-28）"
    assert service.change_stage(world.publisher_user, world.need, "start_rnd", PUBLISHED_DAY)


def test_a_step_is_not_before_the_previous_step(world):
    service.change_stage(world.publisher_user, world.need, "start_rnd", date(2026, 7, 10))
    with pytest.raises(ValidationFailed) as exc:
        service.change_stage(world.publisher_user, world.need, "start_pilot", date(2026, 7, 9))
    assert exc.value.errors["happened_on"] == "日期不能早于上一阶段日期（2026-07-10）"
    assert service.change_stage(world.publisher_user, world.need, "start_pilot", date(2026, 7, 10))


@pytest.mark.parametrize("value", [None, "2026-07-01", datetime(2026, 7, 1, 8)])
def test_a_step_needs_a_real_date(world, value):
    with pytest.raises(ValidationFailed) as exc:
        service.change_stage(world.publisher_user, world.need, "start_rnd", value)
    assert exc.value.errors["happened_on"] == "请填写有效的日期"


def test_a_step_is_recorded_moves_the_need_and_is_audited(world, db):
    change = service.change_stage(
        world.publisher_user, world.need, "start_rnd", date(2026, 7, 10), "签订技术协议"
    )
    db.session.expire_all()
    assert (change.from_stage, change.to_stage, change.actor_id) == (
        "published",
        "rnd",
        world.publisher_user.id,
    )
    assert world.need.stage == "rnd"
    # The stage changed at the start of the Beijing day (naive UTC).
    assert world.need.stage_changed_at == datetime(2026, 7, 9, 16, 0)
    event = db.session.scalars(select(AuditEvent).where(AuditEvent.object_type == "opportunity")).one()
    assert event.action == "opportunity.stage.start_rnd" and "机会发布 → 创新研发" in event.summary


# ---------------------------------------------------------------- delivering firms and notifications


def test_delivering_firms_are_selected_respondents_accepted_partners_and_signing_parties(world, make, db):
    from marketplace.models import Signing, SigningParty

    assert service.delivering_organization_ids(world.need.id) == {world.firm.id, world.partner.id}
    third = make.org(kind=OrgKind.SERVICE, name="江西省数字经济服务促进会")
    db.session.add(
        Signing(
            opportunity_id=world.need.id,
            signed_on=date(2026, 7, 1),
            title="监测设施建设项目",
            parties=[SigningParty(organization_id=third.id)],
        )
    )
    db.session.commit()
    assert service.delivering_organization_ids(world.need.id) == {world.firm.id, world.partner.id, third.id}
    assert [o.name for o in service.delivering_organizations(world.need)] == sorted(
        [world.firm.name, world.partner.name, third.name]
    )


def test_a_step_notifies_the_publisher_and_the_delivering_firms(world, db, make):
    colleague = make.user(world.publisher)
    service.change_stage(world.publisher_user, world.need, "start_rnd", TODAY)
    rows = db.session.scalars(select(Notification)).all()
    assert {n.user_id for n in rows} == {colleague.id, world.firm_user.id, world.partner_user.id}
    assert {n.kind for n in rows} == {NotificationKind.STAGE_CHANGED}
    assert all("创新研发" in n.title and n.url == f"/opportunities/{world.need.id}" for n in rows)


# ---------------------------------------------------------------- evidence


def _evidence(data: bytes, name: str) -> Upload:
    return Upload(stream=io.BytesIO(data), filename=name)


@pytest.mark.parametrize(("data", "name"), [(PDF, "验收报告.pdf"), (PNG, "现场照片.png")])
def test_evidence_may_be_a_pdf_or_an_image(world, data, name):
    change = service.change_stage(
        world.publisher_user, world.need, "start_rnd", TODAY, "", _evidence(data, name)
    )
    assert change.evidence_file.original_name == name
    assert change.evidence_file.purpose == "stage_evidence"


def test_evidence_of_another_type_is_refused_and_nothing_is_recorded(world, db):
    with pytest.raises(ValidationFailed) as exc:
        service.change_stage(
            world.publisher_user,
            world.need,
            "start_rnd",
            TODAY,
            "",
            _evidence(b"MZ\x90\x00fake exe", "报告.pdf"),
        )
    assert "只接受" in exc.value.errors["evidence"]
    assert db.session.scalar(select(func.count()).select_from(StageChange)) == 0
    assert world.need.stage == "published"


@pytest.mark.parametrize("role", ROLES)
def test_evidence_downloads_for_insiders_only(app, world, role):
    change = service.change_stage(
        world.publisher_user, world.need, "start_rnd", TODAY, "", _evidence(PDF, "验收报告.pdf")
    )
    client, _ = login_as(app, world, role)
    reply = client.get(f"/lifecycle/stage-changes/{change.id}/evidence")
    expected = 302 if role == "anonymous" else (200 if role in INSIDERS else 404)
    assert reply.status_code == expected
    if expected == 200:
        assert reply.data == PDF
        assert reply.headers["X-Content-Type-Options"] == "nosniff"
        assert reply.headers["Content-Disposition"].startswith("attachment")


def test_evidence_of_a_step_without_evidence_is_a_404(world):
    change = service.change_stage(world.publisher_user, world.need, "start_rnd", TODAY)
    with pytest.raises(NotFound):
        service.evidence_file(world.organizer, change.id)


# ---------------------------------------------------------------- the timeline: public and private


@pytest.fixture
def history(world, db):
    """A need with a private note, evidence, a signing note and a lab link note."""
    from marketplace.models import Lab, LabLink, Signing, SigningParty

    service.change_stage(
        world.publisher_user,
        world.need,
        "start_rnd",
        date(2026, 7, 10),
        SECRET,
        _evidence(PDF, "专家评审意见.pdf"),
    )
    db.session.add(
        Signing(
            opportunity_id=world.need.id,
            signed_on=date(2026, 7, 12),
            title="修水县水库监测设施建设项目",
            note="合同价款分三期支付",
            amount_wan=386,
            parties=[SigningParty(organization_id=world.firm.id)],
        )
    )
    lab = Lab(
        organization_id=world.partner.id,
        kind="innovation",
        name="江西省智能制造创新应用实验室",
        focus_fields=["智慧水利"],
        services=["testing"],
        designated_on=date(2025, 6, 18),
    )
    db.session.add(
        LabLink(
            lab=lab,
            opportunity_id=world.need.id,
            service="testing",
            linked_on=date(2026, 7, 20),
            note="用历史汛期数据回放测试",
        )
    )
    db.session.commit()
    return world


@pytest.mark.parametrize("role", ROLES)
def test_the_need_page_shows_stages_to_all_and_notes_to_insiders(app, history, role):
    client, _ = login_as(app, history, role)
    html = client.get(f"/opportunities/{history.need.id}").get_data(as_text=True)
    assert "场景进展：创新研发" in html and "2026-07-10" in html
    assert "项目签约：修水县水库监测设施建设项目" in html and "386 万元" in html
    assert "对接实验室：江西省智能制造创新应用实验室" in html
    private = (
        SECRET,
        "专家评审意见.pdf",
        "合同价款分三期支付",
        "用历史汛期数据回放测试",
        history.publisher_user.name,
    )
    for text in private:
        assert (text in html) is (role in INSIDERS), text
    assert ("阶段、签约与实验室" in html) is (role in INSIDERS)


def test_the_timeline_service_leaves_private_fields_out_for_the_public(history):
    public = service.timeline(None, history.need)
    assert not public.private and all(item.private == {} for item in public.items)
    insider = service.timeline(history.firm_user, history.need)
    assert insider.private and any(item.private.get("note") == SECRET for item in insider.items)
    assert [i.kind for i in public.items] == ["stage", "stage", "signing", "lab"]


def test_the_public_api_carries_no_notes(client, history):
    body = client.get("/api/v1/opportunities").get_data(as_text=True)
    assert history.need.title in body
    assert SECRET not in body and "合同价款分三期支付" not in body


def test_the_timeline_of_an_unpublished_need_does_not_exist(world, make):
    draft = make.opportunity(world.publisher, status=EntryStatus.SUBMITTED)
    with pytest.raises(NotFound):
        service.timeline(world.organizer, draft)


# ---------------------------------------------------------------- the management page


@pytest.mark.parametrize("role", ROLES)
def test_who_opens_the_management_page(app, world, role):
    client, _ = login_as(app, world, role)
    reply = client.get(f"/lifecycle/opportunities/{world.need.id}")
    assert reply.status_code == (302 if role == "anonymous" else 200 if role in INSIDERS else 404)


def test_the_management_page_of_an_unpublished_need_is_a_404_even_for_organizers(app, world, make):
    draft = make.opportunity(world.publisher, status=EntryStatus.APPROVED)
    client, _ = login_as(app, world, "organizer")
    assert client.get(f"/lifecycle/opportunities/{draft.id}").status_code == 404


@pytest.mark.parametrize(
    ("role", "stage", "forms"),
    [
        ("publisher_user", "rnd", {"start_pilot", "terminate"}),
        ("publisher_user", "pilot", {"terminate"}),
        ("organizer", "pilot", {"demonstrate", "terminate"}),
        ("organizer", "demonstration", set()),
        ("firm_user", "rnd", set()),
    ],
)
def test_the_page_offers_the_steps_the_table_allows(app, world, db, role, stage, forms):
    at_stage(db, world.need, stage)
    client, _ = login_as(app, world, role)
    html = client.get(f"/lifecycle/opportunities/{world.need.id}").get_data(as_text=True)
    assert {a for a in service.TRANSITIONS if f'id="stage-{a}"' in html} == forms


def test_the_publisher_takes_a_step_through_the_form(app, world, db):
    client, auth = login_as(app, world, "publisher_user")
    reply = auth.post(
        f"/lifecycle/opportunities/{world.need.id}/stage/start_rnd",
        {
            "start_rnd-happened_on": "2026-07-10",
            "start_rnd-note": "签订技术协议",
            "start_rnd-evidence": (io.BytesIO(PDF), "协议.pdf"),
        },
        content_type="multipart/form-data",
    )
    assert reply.status_code == 302
    db.session.expire_all()
    change = db.session.scalars(select(StageChange)).one()
    assert (change.to_stage, change.happened_on, change.note) == ("rnd", date(2026, 7, 10), "签订技术协议")
    assert change.evidence_file.original_name == "协议.pdf"


def test_a_future_date_is_shown_beside_the_field_and_the_input_is_kept(app, world, db):
    client, auth = login_as(app, world, "publisher_user")
    reply = auth.post(
        f"/lifecycle/opportunities/{world.need.id}/stage/start_rnd",
        {"start_rnd-happened_on": "2026-12-02", "start_rnd-note": "签订技术协议"},
    )
    html = reply.get_data(as_text=True)
    assert reply.status_code == 400
    assert "日期不能晚于今天（北京时间）" in html and "签订技术协议" in html and 'value="2026-12-02"' in html
    assert db.session.scalar(select(func.count()).select_from(StageChange)) == 0


@pytest.mark.parametrize("value", ["2026-13-45", "abc", ""])
def test_a_malformed_date_is_a_form_error_not_a_500(app, world, value):
    client, auth = login_as(app, world, "publisher_user")
    reply = auth.post(
        f"/lifecycle/opportunities/{world.need.id}/stage/start_rnd", {"start_rnd-happened_on": value}
    )
    assert reply.status_code == 400


def test_a_post_without_csrf_token_is_refused(app, world):
    client, _ = login_as(app, world, "publisher_user")
    reply = client.post(
        f"/lifecycle/opportunities/{world.need.id}/stage/start_rnd",
        data={"start_rnd-happened_on": "2026-07-10"},
    )
    assert reply.status_code == 400
    assert world.need.stage == "published"


@pytest.mark.parametrize(
    ("role", "status"), [("firm_user", 403), ("other_firm_user", 404), ("anonymous", 302)]
)
def test_others_cannot_post_a_step(app, world, role, status):
    client, auth = login_as(app, world, role)
    reply = auth.post(
        f"/lifecycle/opportunities/{world.need.id}/stage/start_rnd", {"start_rnd-happened_on": "2026-07-10"}
    )
    assert reply.status_code == status
    assert world.need.stage == "published"


def test_a_publisher_without_a_selected_response_is_told_why_it_cannot_move_on(app, world, unanswered):
    client, _ = login_as(app, world, "publisher_user")
    html = client.get(f"/lifecycle/opportunities/{unanswered.id}").get_data(as_text=True)
    assert 'id="stage-start_rnd"' not in html
    assert "进入创新研发：该需求还没有选定的答题单位" in html

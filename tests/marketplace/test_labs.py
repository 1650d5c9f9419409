"""创新应用实验室 / 未来场景实验室: designation by organizers, deactivation, links to needs in
创新研发 or 孵化试点, the public directory and the lab page (titles and stages only)."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import func, select

from marketplace.models import (
    AuditEvent,
    Lab,
    LabLink,
    Notification,
    NotificationKind,
    OrgKind,
)
from marketplace.services import labs as service
from marketplace.services.errors import InvalidTransition, NotFound, PermissionDenied, ValidationFailed
from tests.marketplace import test_lifecycle as base
from tests.marketplace.test_lifecycle import ROLES, at_stage, login_as

clock = base.clock
world = base.world
LINK_NOTE = "用历史汛期数据回放测试告警时延"


@pytest.fixture
def institute(make):
    return make.org(kind=OrgKind.RESEARCH, name="江西省智能制造技术研究院", region_city="南昌市")


def lab_data(organization, **overrides) -> dict:
    values = {
        "organization_id": organization.id,
        "kind": "innovation",
        "name": "江西省智能制造创新应用实验室",
        "designated_on": date(2025, 6, 18),
        "focus_fields": ["生产制造", "智慧水利"],
        "services": ["testing", "pilot_scale"],
        "intro": "依托研究院的机器视觉检测验证线和工业数字孪生仿真环境。",
    }
    values.update(overrides)
    return values


@pytest.fixture
def lab(world, institute):
    return service.designate(world.organizer, lab_data(institute))


# ---------------------------------------------------------------- designation


@pytest.mark.parametrize("role", ROLES)
def test_only_organizers_designate_labs(world, institute, db, role):
    user = world.user(role)
    allowed = role in ("organizer", "admin")
    assert service.can(user, "designate", None) is allowed
    if allowed:
        created = service.designate(user, lab_data(institute))
        assert created.active and created.designated_by_id == user.id
        assert db.session.scalars(select(AuditEvent.action)).all() == ["lab.designate"]
    else:
        with pytest.raises(PermissionDenied):
            service.designate(user, lab_data(institute))


@pytest.mark.parametrize("kind", [OrgKind.RESEARCH, OrgKind.INSTITUTION, OrgKind.SERVICE, OrgKind.ENTERPRISE])
def test_labs_may_be_institutes_institutions_service_organisations_or_firms(world, make, kind):
    org = make.org(kind=kind)
    assert service.designate(world.organizer, lab_data(org)).organization_id == org.id


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"kind": "other"}, "kind", "请选择实验室类型"),
        ({"name": "实验室"}, "name", "实验室名称应为4到120个字"),
        ({"focus_fields": []}, "focus_fields", "请至少选择一个聚焦领域"),
        ({"focus_fields": ["元宇宙"]}, "focus_fields", "聚焦领域无效"),
        ({"services": []}, "services", "请至少选择一项服务"),
        ({"services": ["consulting"]}, "services", "服务内容无效"),
        ({"designated_on": date(2026, 12, 2)}, "designated_on", "认定日期不能晚于今天（北京时间）"),
        ({"designated_on": None}, "designated_on", "请填写有效的认定日期"),
    ],
)
def test_lab_fields_are_checked(world, institute, overrides, field, message):
    with pytest.raises(ValidationFailed) as exc:
        service.designate(world.organizer, lab_data(institute, **overrides))
    assert exc.value.errors[field] == message


@pytest.mark.parametrize(
    ("kind", "verified"), [(OrgKind.GOVERNMENT, True), (OrgKind.SOE, True), (OrgKind.RESEARCH, False)]
)
def test_departments_state_firms_and_unverified_organisations_are_not_labs(world, make, kind, verified):
    org = make.org(kind=kind, verified=verified)
    with pytest.raises(ValidationFailed) as exc:
        service.designate(world.organizer, lab_data(org))
    assert "organization_id" in exc.value.errors


def test_one_lab_of_each_kind_per_organisation(world, institute, lab):
    with pytest.raises(ValidationFailed) as exc:
        service.designate(world.organizer, lab_data(institute))
    assert exc.value.errors["kind"] == "该单位已被认定为创新应用实验室"
    future = service.designate(
        world.organizer, lab_data(institute, kind="future", name="江西未来制造场景实验室")
    )
    assert future.kind_label == "未来场景实验室"


def test_deactivated_labs_leave_the_directory_and_their_page_is_for_organizers(world, lab):
    service.set_active(world.organizer, lab, False)
    assert service.directory(service.LabFilters()) == []
    with pytest.raises(NotFound):
        service.visible_lab(None, lab.id)
    with pytest.raises(NotFound):
        service.visible_lab(world.publisher_user, lab.id)
    assert service.visible_lab(world.organizer, lab.id) is lab
    with pytest.raises(InvalidTransition, match="已停用"):
        service.set_active(world.organizer, lab, False)
    service.set_active(world.admin, lab, True)
    assert service.directory(service.LabFilters()) == [lab]


def test_members_cannot_deactivate_labs(world, lab):
    with pytest.raises(PermissionDenied):
        service.set_active(world.publisher_user, lab, False)
    assert lab.active


# ---------------------------------------------------------------- the directory


@pytest.fixture
def labs(world, make, lab):
    gannan = make.org(
        kind=OrgKind.RESEARCH, name="江西理工大学矿山安全与应急技术研究院", region_city="赣州市"
    )
    future = service.designate(
        world.organizer,
        lab_data(
            gannan,
            kind="future",
            name="赣南城市安全未来场景实验室",
            focus_fields=["应急管理"],
            services=["simulation"],
        ),
    )
    return lab, future


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({}, {"江西省智能制造创新应用实验室", "赣南城市安全未来场景实验室"}),
        ({"kind": "future"}, {"赣南城市安全未来场景实验室"}),
        ({"field": "生产制造"}, {"江西省智能制造创新应用实验室"}),
        ({"city": "赣州市"}, {"赣南城市安全未来场景实验室"}),
        ({"city": "赣州市", "kind": "innovation"}, set()),
    ],
)
def test_the_directory_filters_by_kind_field_and_city(labs, filters, expected):
    assert {lab.name for lab in service.directory(service.LabFilters(**filters))} == expected


def test_the_directory_page_filters_and_ignores_junk(client, labs):
    html = client.get("/labs?kind=future").get_data(as_text=True)
    assert "赣南城市安全未来场景实验室" in html and "江西省智能制造创新应用实验室" not in html
    reply = client.get("/labs?kind=%00&field=" + "x" * 500 + "&city=火星")
    assert reply.status_code in (200, 400)


# ---------------------------------------------------------------- links


def link_data(lab, **overrides) -> dict:
    values = {"lab_id": lab.id, "service": "testing", "linked_on": date(2026, 8, 1), "note": LINK_NOTE}
    values.update(overrides)
    return values


@pytest.mark.parametrize(
    ("stage", "ok"),
    [("published", False), ("rnd", True), ("pilot", True), ("demonstration", False), ("terminated", False)],
)
def test_needs_are_linked_in_rnd_or_pilot_only(world, db, lab, stage, ok):
    at_stage(db, world.need, stage)
    if ok:
        assert service.link(world.publisher_user, world.need, link_data(lab)).lab_id == lab.id
    else:
        with pytest.raises(InvalidTransition, match="创新研发"):
            service.link(world.publisher_user, world.need, link_data(lab))


@pytest.mark.parametrize("role", ROLES)
def test_who_links_a_need_to_a_lab(world, db, lab, role):
    at_stage(db, world.need, "rnd")
    user = world.user(role)
    allowed = role in ("publisher_user", "organizer", "admin")
    assert service.can(user, "link_lab", world.need) is allowed
    if allowed:
        service.link(user, world.need, link_data(lab))
    else:
        with pytest.raises(PermissionDenied):
            service.link(user, world.need, link_data(lab))
    assert db.session.scalar(select(func.count()).select_from(LabLink)) == (1 if allowed else 0)


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"service": "simulation"}, "service", "「江西省智能制造创新应用实验室」不提供「场景仿真」服务"),
        ({"service": "x"}, "service", "请选择服务内容"),
        ({"lab_id": 999999}, "lab_id", "请选择运行中的实验室"),
        ({"linked_on": date(2026, 12, 2)}, "linked_on", "对接日期不能晚于今天（北京时间）"),
        ({"linked_on": date(2026, 3, 1)}, "linked_on", "对接日期不能早于需求发布日期（2026-03-28）"),
    ],
)
def test_link_fields_are_checked(world, db, lab, overrides, field, message):
    at_stage(db, world.need, "rnd")
    with pytest.raises(ValidationFailed) as exc:
        service.link(world.organizer, world.need, link_data(lab, **overrides))
    assert exc.value.errors[field] == message


def test_an_inactive_lab_takes_no_new_needs_and_a_need_links_once(world, db, lab):
    at_stage(db, world.need, "rnd")
    service.link(world.organizer, world.need, link_data(lab))
    with pytest.raises(ValidationFailed, match="已对接这个实验室"):
        service.link(world.organizer, world.need, link_data(lab))
    service.set_active(world.organizer, lab, False)
    with pytest.raises(ValidationFailed, match="运行中的实验室"):
        service.link(world.organizer, world.need, link_data(lab))


def test_a_link_notifies_the_publisher_the_lab_and_the_delivering_firms(world, db, make, lab, institute):
    at_stage(db, world.need, "rnd")
    lab_user = make.user(institute)
    service.link(world.organizer, world.need, link_data(lab))
    rows = db.session.scalars(select(Notification)).all()
    assert {n.user_id for n in rows} == {
        world.publisher_user.id,
        lab_user.id,
        world.firm_user.id,
        world.partner_user.id,
    }
    assert {n.kind for n in rows} == {NotificationKind.LAB_LINK}


@pytest.mark.parametrize("role", ROLES[1:])
def test_who_removes_a_link(world, db, lab, role):
    at_stage(db, world.need, "rnd")
    row = service.link(world.organizer, world.need, link_data(lab))
    user = world.user(role)
    if role in ("publisher_user", "organizer", "admin"):
        service.unlink(user, row)
        assert db.session.scalar(select(func.count()).select_from(LabLink)) == 0
    else:
        with pytest.raises(PermissionDenied):
            service.unlink(user, row)


# ---------------------------------------------------------------- pages


@pytest.mark.parametrize("role", ROLES)
def test_the_lab_page_shows_titles_and_stages_but_never_notes(app, world, db, lab, role):
    at_stage(db, world.need, "pilot")
    service.link(world.organizer, world.need, link_data(lab))
    client, _ = login_as(app, world, role)
    html = client.get(f"/labs/{lab.id}").get_data(as_text=True)
    assert world.need.title in html and "孵化试点" in html
    assert LINK_NOTE not in html


def test_an_unpublished_need_is_not_listed_on_the_lab_page(client, world, db, lab):
    at_stage(db, world.need, "rnd")
    service.link(world.organizer, world.need, link_data(lab))
    world.need.status = "withdrawn"
    db.session.commit()
    assert world.need.title not in client.get(f"/labs/{lab.id}").get_data(as_text=True)


@pytest.mark.parametrize(
    ("role", "status"),
    [("anonymous", 302), ("publisher_user", 403), ("firm_user", 403), ("organizer", 200), ("admin", 200)],
)
def test_who_opens_the_lab_management_pages(app, world, lab, role, status):
    client, _ = login_as(app, world, role)
    assert client.get("/labs/new").status_code == status
    assert client.get("/labs/manage").status_code == status
    assert client.get(f"/labs/{lab.id}/edit").status_code == status


def test_an_organizer_designates_a_lab_through_the_form(app, world, db, institute):
    client, auth = login_as(app, world, "organizer")
    reply = auth.post(
        "/labs/new",
        {
            "organization_id": str(institute.id),
            "kind": "innovation",
            "name": "江西省智能制造创新应用实验室",
            "designated_on": "2025-06-18",
            "focus_fields": ["生产制造"],
            "services": ["testing", "standards"],
            "intro": "面向钢铁、有色、锂电等产业提供方案验证。",
        },
    )
    assert reply.status_code == 302
    lab = db.session.scalars(select(Lab)).one()
    assert lab.services == ["testing", "standards"] and lab.focus_fields == ["生产制造"]


def test_a_bad_lab_form_is_a_400_with_messages(app, world, db, institute):
    client, auth = login_as(app, world, "organizer")
    reply = auth.post("/labs/new", {"organization_id": "abc", "kind": "innovation", "name": "实验"})
    html = reply.get_data(as_text=True)
    assert reply.status_code == 400
    assert "请选择已认证的单位" in html and "实验室名称应为4–120个字" in html
    assert db.session.scalar(select(func.count()).select_from(Lab)) == 0


def test_the_organizer_deactivates_a_lab_through_the_page(app, world, db, lab):
    client, auth = login_as(app, world, "organizer")
    assert auth.post(f"/labs/{lab.id}/deactivate").status_code == 302
    db.session.expire_all()
    assert not db.session.get(Lab, lab.id).active
    client2, _ = login_as(app, world, "anonymous")
    assert client2.get(f"/labs/{lab.id}").status_code == 404


def test_the_publisher_links_through_the_management_page(app, world, db, lab):
    at_stage(db, world.need, "rnd")
    client, auth = login_as(app, world, "publisher_user")
    reply = auth.post(
        f"/lifecycle/opportunities/{world.need.id}/labs",
        {"lab_id": str(lab.id), "service": "testing", "linked_on": "2026-08-01", "note": LINK_NOTE},
    )
    assert reply.status_code == 302
    assert db.session.scalars(select(LabLink)).one().note == LINK_NOTE


def test_the_nav_links_to_the_lab_directory(client):
    assert 'href="/labs"' in client.get("/").get_data(as_text=True)


def test_anonymous_lab_page_sets_no_cookie_and_is_cacheable(client, lab):
    response = client.get(f"/labs/{lab.id}")
    assert response.status_code == 200
    assert lab.name in response.get_data(as_text=True)
    assert "Set-Cookie" not in response.headers
    assert response.cache_control.public and response.headers["ETag"].startswith('W/"')
    again = client.get(f"/labs/{lab.id}", headers={"If-None-Match": response.headers["ETag"]})
    assert again.status_code == 304


def test_organizer_still_gets_the_lab_actions_with_a_csrf_token(app, world, lab):
    html = login_as(app, world, "organizer")[0].get(f"/labs/{lab.id}").get_data(as_text=True)
    assert "停用" in html and 'name="csrf_token"' in html

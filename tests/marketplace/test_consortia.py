"""场景建设联合体: forming, invitations, answers, submission rules and who may do what."""

from __future__ import annotations

import pytest
from flask import g
from sqlalchemy import select

from marketplace.models import (
    ConsortiumRole,
    EntryStatus,
    InvitationStatus,
    Notification,
    OrgKind,
    ResponseStatus,
)
from marketplace.services import responses as service
from marketplace.services.errors import InvalidTransition, NotFound, PermissionDenied, ValidationFailed
from tests.conftest import AuthActions
from tests.marketplace.test_responses import clock, form_data  # noqa: F401  (fixtures)


class World:
    pass


@pytest.fixture
def world(make, clock):  # noqa: F811
    w = World()
    w.publisher = make.org(kind=OrgKind.GOVERNMENT, name="上饶市城市管理局")
    w.lead = make.org(kind=OrgKind.ENTERPRISE, name="江西赣云数字科技有限公司")
    w.partner = make.org(kind=OrgKind.RESEARCH, name="南昌大学信息工程学院")
    w.operator = make.org(kind=OrgKind.SERVICE, name="上饶城投运营服务有限公司")
    w.outsider = make.org(kind=OrgKind.ENTERPRISE, name="萍乡工控自动化有限公司")
    w.other_gov = make.org(kind=OrgKind.GOVERNMENT, name="鹰潭市数据局")
    w.unverified = make.org(kind=OrgKind.ENTERPRISE, verified=False, name="新余未认证科技有限公司")
    for name in ("publisher", "lead", "partner", "operator", "outsider", "other_gov"):
        setattr(w, f"{name}_user", make.user(getattr(w, name)))
    w.organizer = make.organizer()
    w.need = make.opportunity(w.publisher, status=EntryStatus.PUBLISHED, title="城区垃圾分类智能督导")
    w.lead_product = make.product(w.lead, status=EntryStatus.PUBLISHED, name="垃圾分类AI督导平台")
    w.partner_product = make.product(w.partner, status=EntryStatus.PUBLISHED, name="厨余垃圾识别算法")
    w.operator_product = make.product(w.operator, status=EntryStatus.PUBLISHED, name="社区运营服务包")
    w.consortium = service.create_consortium(w.lead_user, w.need, "上饶垃圾分类督导联合体")
    return w


def test_the_lead_is_a_member_from_the_start(world):
    [lead] = world.consortium.members
    assert lead.organization_id == world.lead.id and lead.role == ConsortiumRole.LEAD
    assert lead.status == InvitationStatus.ACCEPTED
    assert not world.consortium.ready


def test_one_consortium_per_lead_per_need(world):
    with pytest.raises(Exception, match="已为该需求牵头"):
        service.create_consortium(world.lead_user, world.need, "第二个联合体")


@pytest.mark.parametrize("who", ["publisher_user", "other_gov_user"])
def test_government_units_cannot_lead(world, who):
    with pytest.raises(PermissionDenied):
        service.create_consortium(getattr(world, who), world.need, "政府牵头的联合体")


def test_invite_by_name_or_credit_code_and_notify(world, db):
    member = service.invite(world.lead_user, world.consortium, world.partner.name, "technology", "算法支撑")
    service.invite(world.lead_user, world.consortium, world.other_gov.credit_code, "application")
    assert member.status == InvitationStatus.INVITED
    assert {m.organization_id for m in world.consortium.members} == {world.lead.id, world.partner.id,
                                                                    world.other_gov.id}
    note = db.session.scalars(select(Notification).where(Notification.user_id == world.partner_user.id)).one()
    assert note.kind == "consortium_invite" and world.consortium.name in note.title


@pytest.mark.parametrize(
    ("query", "role", "field"),
    [
        ("不存在的单位", "technology", "organization"),
        ("新余未认证科技有限公司", "technology", "organization"),
        ("江西赣云数字科技有限公司", "technology", "organization"),  # the lead itself
        ("南昌大学信息工程学院", "lead", "role"),
        ("南昌大学信息工程学院", "boss", "role"),
    ],
)
def test_bad_invitations_are_refused(world, query, role, field):
    with pytest.raises(ValidationFailed) as info:
        service.invite(world.lead_user, world.consortium, query, role)
    assert field in info.value.errors


def test_an_organization_is_invited_once(world):
    service.invite(world.lead_user, world.consortium, world.partner.name, "technology")
    with pytest.raises(ValidationFailed, match="已在联合体中"):
        service.invite(world.lead_user, world.consortium, world.partner.name, "product")


@pytest.mark.parametrize("who", ["partner_user", "outsider_user", "publisher_user", "organizer"])
def test_only_the_lead_invites(world, who):
    with pytest.raises(PermissionDenied):
        service.invite(getattr(world, who), world.consortium, world.operator.name, "operation")


def test_answers_notify_the_lead(world, db):
    member = service.invite(world.lead_user, world.consortium, world.partner.name, "technology")
    service.answer(world.partner_user, member, accept=True)
    assert member.status == InvitationStatus.ACCEPTED
    note = db.session.scalars(select(Notification).where(Notification.user_id == world.lead_user.id)).one()
    assert note.kind == "consortium_answer" and "接受" in note.title
    with pytest.raises(InvalidTransition):
        service.answer(world.partner_user, member, accept=False)


@pytest.mark.parametrize("who", ["lead_user", "operator_user", "outsider_user", "organizer"])
def test_only_the_invited_organization_answers(world, who):
    member = service.invite(world.lead_user, world.consortium, world.partner.name, "technology")
    with pytest.raises(PermissionDenied):
        service.answer(getattr(world, who), member, accept=True)


def test_products_of_accepted_members_only(world):
    partner = service.invite(world.lead_user, world.consortium, world.partner.name, "technology")
    service.invite(world.lead_user, world.consortium, world.operator.name, "operation")
    choices = {p.id for p in service.product_choices(world.lead, world.consortium)}
    assert choices == {world.lead_product.id}
    service.answer(world.partner_user, partner, accept=True)
    choices = {p.id for p in service.product_choices(world.lead, world.consortium)}
    assert choices == {world.lead_product.id, world.partner_product.id}


def test_submission_waits_for_every_answer_and_one_acceptance(world):
    partner = service.invite(world.lead_user, world.consortium, world.partner.name, "technology")
    operator = service.invite(world.lead_user, world.consortium, world.operator.name, "operation")
    service.answer(world.partner_user, partner, accept=True)
    response = service.start_response(
        world.lead_user, world.need, form_data([world.lead_product.id, world.partner_product.id]),
        consortium=world.consortium,
    )
    with pytest.raises(InvalidTransition, match="未答复"):
        service.transition(world.lead_user, response, "submit")
    service.answer(world.operator_user, operator, accept=False)
    service.transition(world.lead_user, response, "submit")
    assert response.status == ResponseStatus.SUBMITTED
    assert response.consortium_id == world.consortium.id
    # Membership is frozen once submitted.
    with pytest.raises(InvalidTransition):
        service.invite(world.lead_user, world.consortium, world.outsider.name, "other")


def test_declines_alone_do_not_make_a_consortium(world):
    partner = service.invite(world.lead_user, world.consortium, world.partner.name, "technology")
    service.answer(world.partner_user, partner, accept=False)
    response = service.start_response(world.lead_user, world.need, form_data([world.lead_product.id]),
                                      consortium=world.consortium)
    with pytest.raises(InvalidTransition, match="尚无成员接受"):
        service.transition(world.lead_user, response, "submit")


def test_the_lead_revokes_a_pending_invitation(world, db):
    member = service.invite(world.lead_user, world.consortium, world.partner.name, "technology")
    service.revoke(world.lead_user, member)
    assert [m.organization_id for m in world.consortium.members] == [world.lead.id]


def test_accepted_members_cannot_be_revoked(world):
    member = service.invite(world.lead_user, world.consortium, world.partner.name, "technology")
    service.answer(world.partner_user, member, accept=True)
    with pytest.raises(InvalidTransition):
        service.revoke(world.lead_user, member)


def test_no_changes_after_the_deadline(world, clock):  # noqa: F811
    world.need.deadline = world.need.deadline.replace(year=2026, month=12, day=31)
    clock.set("2027-01-01 00:00:01")
    with pytest.raises(InvalidTransition, match="截止"):
        service.invite(world.lead_user, world.consortium, world.partner.name, "technology")


def test_accepted_members_see_the_consortium_response(world):
    partner = service.invite(world.lead_user, world.consortium, world.partner.name, "technology")
    service.answer(world.partner_user, partner, accept=True)
    response = service.start_response(world.lead_user, world.need, form_data([world.partner_product.id]),
                                      consortium=world.consortium, submit_now=True)
    assert service.can(world.partner_user, "view", response)
    assert not service.can(world.partner_user, "edit", response)
    assert not service.can(world.outsider_user, "view", response)
    assert response in service.my_responses(world.partner_user)
    assert service.can(world.publisher_user, "view", response)
    assert "上饶垃圾分类督导联合体" in response.respondent_name


# ---------------------------------------------------------------- pages

ROLES = ["anonymous", "lead_user", "partner_user", "outsider_user", "publisher_user", "other_gov_user",
         "organizer"]


def _as(app, world, role):
    client = app.test_client()
    g.pop("_login_user", None)
    g.pop("csrf_token", None)
    auth = AuthActions(client)
    if role != "anonymous":
        auth.login(getattr(world, role))
    return client, auth


@pytest.mark.parametrize("role", ROLES)
def test_who_sees_the_consortium_page(world, app, role):
    service.invite(world.lead_user, world.consortium, world.partner.name, "technology")
    client, _ = _as(app, world, role)
    reply = client.get(f"/responses/consortia/{world.consortium.id}")
    expected = {"anonymous": 302, "lead_user": 200, "partner_user": 200, "organizer": 200}.get(role, 404)
    assert reply.status_code == expected


@pytest.mark.parametrize("role", ROLES)
def test_who_may_invite_through_the_page(world, app, role):
    client, auth = _as(app, world, role)
    reply = auth.post(f"/responses/consortia/{world.consortium.id}/invite",
                      {"organization": world.operator.name, "role": "operation"})
    invited = any(m.organization_id == world.operator.id for m in world.consortium.members)
    if role == "lead_user":
        assert reply.status_code == 302 and invited
    else:
        assert not invited
        assert reply.status_code == {"anonymous": 302, "organizer": 403}.get(role, 404)


@pytest.mark.parametrize("role", ROLES)
def test_who_may_accept_an_invitation_through_the_page(world, app, role, db):
    member = service.invite(world.lead_user, world.consortium, world.partner.name, "technology")
    client, auth = _as(app, world, role)
    auth.post(f"/responses/consortia/members/{member.id}/accept")
    db.session.refresh(member)
    expected = InvitationStatus.ACCEPTED if role == "partner_user" else InvitationStatus.INVITED
    assert member.status == expected


def test_invite_form_errors_keep_input(world, app):
    client, auth = _as(app, world, "lead_user")
    reply = auth.post(f"/responses/consortia/{world.consortium.id}/invite",
                      {"organization": "查无此单位有限公司", "role": "operation", "note": "负责运营"})
    html = reply.get_data(as_text=True)
    assert reply.status_code == 400
    assert "未找到该单位" in html and "查无此单位有限公司" in html and "负责运营" in html


def test_a_non_member_cannot_use_someone_elses_consortium(world):
    other = service.create_consortium(world.outsider_user, world.need, "萍乡联合体")
    with pytest.raises(PermissionDenied):
        service.start_response(world.lead_user, world.need, form_data([world.lead_product.id]),
                               consortium=other)
    with pytest.raises(NotFound):
        service.visible_consortium(world.lead_user, other.id)

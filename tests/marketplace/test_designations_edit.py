"""Editing and withdrawing a 十百千 recommendation while it is still 推荐: who may, from which
status, what changes, the audit, notifications and labels, and the pages."""

from __future__ import annotations

import io

import pytest
from sqlalchemy import select

from marketplace.admin.routes import action_label
from marketplace.models import (
    AuditEvent,
    Designation,
    DesignationKind,
    DesignationStatus,
    EntryStatus,
    Notification,
    OrgKind,
    ScenarioStage,
)
from marketplace.services import programme as service
from marketplace.services.errors import InvalidTransition, NotFound, PermissionDenied, ValidationFailed
from tests.marketplace.test_designations import PDF, ROLES, _designation, _login, _user, world  # noqa: F401

STATUSES = list(DesignationStatus)


@pytest.fixture
def application(world):  # noqa: F811
    """The firm's own application (recommended by its member)."""
    return _designation(world, recommended_by_id=world.firm_user.id, description="营收三年增长40%。")


def _notes(db, user) -> list[Notification]:
    return list(db.session.scalars(select(Notification).where(Notification.user_id == user.id)))


# ---------------------------------------------------------------- the table


def test_withdraw_is_in_the_table_from_recommended_only():
    step = service.TRANSITIONS["withdraw"]
    assert step.sources == {DesignationStatus.RECOMMENDED}
    assert step.target == DesignationStatus.WITHDRAWN == "withdrawn"
    assert DesignationStatus.label_of("withdrawn") == "已撤回"
    assert DesignationStatus.WITHDRAWN not in service.LIVE


@pytest.mark.parametrize("status", STATUSES)
def test_the_recommender_withdraws_only_a_recommended_designation(world, application, status):  # noqa: F811
    application.status = status
    service.db.session.commit()
    if status == DesignationStatus.RECOMMENDED:
        service.apply(world.firm_user, application, "withdraw", note="今年营收未达申报条件")
        assert application.status == DesignationStatus.WITHDRAWN
        assert application.decided_by_id is None and application.decided_at is None
    else:
        with pytest.raises(InvalidTransition):
            service.apply(world.firm_user, application, "withdraw")
        assert application.status == status


@pytest.mark.parametrize("status", STATUSES)
def test_the_recommender_edits_only_a_recommended_designation(world, application, status):  # noqa: F811
    application.status = status
    service.db.session.commit()
    data = {"year": 2026, "description": "营收三年增长45%，研发投入占比12%。"}
    if status == DesignationStatus.RECOMMENDED:
        service.update(world.firm_user, application, data)
        assert application.description.startswith("营收三年增长45%")
    else:
        with pytest.raises(InvalidTransition, match="只有「推荐」状态可以修改"):
            service.update(world.firm_user, application, data)


# ---------------------------------------------------------------- who


@pytest.mark.parametrize("role", ROLES)
def test_who_may_edit_and_withdraw_an_organizers_recommendation(world, role):  # noqa: F811
    designation = _designation(world)  # recommended by the organizer, about the firm
    user = _user(world, role)
    allowed = role in ("organizer", "admin")
    assert service.can(user, "edit", designation) is allowed
    assert service.can(user, "withdraw", designation) is allowed
    if not allowed:
        expected = NotFound if role in ("anonymous", "other_user", "publisher_user") else PermissionDenied
        with pytest.raises(expected):
            service.update(user, designation, {"year": 2026, "description": "改"})
        with pytest.raises(expected):
            service.apply(user, designation, "withdraw")
        assert designation.status == DesignationStatus.RECOMMENDED


@pytest.mark.parametrize("role", ROLES)
def test_who_may_edit_and_withdraw_a_firms_own_application(world, application, role):  # noqa: F811
    user = _user(world, role)
    allowed = role in ("firm_user", "organizer", "admin")
    assert service.can(user, "edit", application) is allowed
    assert service.can(user, "withdraw", application) is allowed


def test_a_colleague_of_the_recommender_may_not_withdraw(world, application, make):  # noqa: F811
    colleague = make.user(world.firm)
    assert service.can(colleague, "view", application)
    with pytest.raises(PermissionDenied, match="推荐人或组织方"):
        service.apply(colleague, application, "withdraw")


def test_a_recommender_who_left_the_firm_may_not_edit(world, application, make):  # noqa: F811
    world.firm_user.organization_id = world.other.id
    service.db.session.commit()
    assert not service.can(world.firm_user, "edit", application)
    assert not service.can(world.firm_user, "withdraw", application)


def test_the_recommender_still_may_not_review_or_decide(world, application):  # noqa: F811
    for action in ("review", "approve", "reject"):
        with pytest.raises(PermissionDenied):
            service.apply(world.firm_user, application, action, note="同意")


# ---------------------------------------------------------------- what an edit changes


def test_an_organizer_edits_a_zone_and_its_needs(world, make):  # noqa: F811
    designation = _designation(world, kind=DesignationKind.ZONE)
    other_need = make.opportunity(world.publisher, status=EntryStatus.PUBLISHED, title="九龙湖新城智慧灯杆",
                                  region_city="南昌市")
    service.update(world.organizer, designation, {
        "year": 2025, "name": "南昌高新区数字经济应用场景示范区（扩区）", "region_city": "南昌市",
        "region_county": None, "need_ids": f"{other_need.id}", "description": "新增九龙湖片区。",
    })
    found = service.db.session.get(Designation, designation.id)
    assert (found.kind, found.year, found.name) == ("zone", 2025, "南昌高新区数字经济应用场景示范区（扩区）")
    assert [row.opportunity_id for row in found.opportunities] == [other_need.id]
    audit = service.db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == "designation.update")).one()
    assert "年度" in audit.summary and "名称" in audit.summary and "区内场景需求" in audit.summary


def test_the_kind_never_changes_and_a_member_cannot_change_the_subject(world, application):  # noqa: F811
    service.update(world.firm_user, application, {
        "kind": "zone", "year": 2025, "description": "改", "organization": world.other.name})
    assert application.kind == DesignationKind.FIRM and application.organization_id == world.firm.id
    assert application.year == 2025


def test_an_edit_is_checked_like_a_recommendation(world, make):  # noqa: F811
    designation = _designation(world)
    _designation(world, organization_id=world.partner.id, name=world.partner.name)
    with pytest.raises(ValidationFailed) as exc:
        service.update(world.organizer, designation, {"year": 1999, "organization": world.partner.name})
    assert set(exc.value.errors) == {"year", "organization"}
    # Its own subject is not a duplicate of itself.
    service.update(world.organizer, designation, {"year": 2026, "organization": world.firm.credit_code})


def test_a_project_edit_may_pick_another_need_in_demonstration(world, make):  # noqa: F811
    designation = _designation(world, kind=DesignationKind.PROJECT)
    need = make.opportunity(world.publisher, status=EntryStatus.PUBLISHED, title="象湖智慧公园示范",
                            stage=ScenarioStage.DEMONSTRATION)
    assert world.need in service.project_candidates(keep=designation)
    assert world.need not in service.project_candidates()
    service.update(world.organizer, designation, {"year": 2026, "opportunity_id": need.id})
    assert designation.opportunity_id == need.id and designation.name == "象湖智慧公园示范"
    assert designation.organizations == []  # the new need has no delivering firm


def test_an_edit_replaces_the_evidence(world, application):  # noqa: F811
    service.update(world.firm_user, application, {"year": 2026, "description": "附材料"},
                   (io.BytesIO(PDF), "审计报告.pdf"))
    assert application.evidence_file.original_name == "审计报告.pdf"


def test_a_withdrawn_subject_may_be_recommended_again(world, application):  # noqa: F811
    service.apply(world.firm_user, application, "withdraw")
    assert service.self_recommend_problem(world.firm_user) is None


# ---------------------------------------------------------------- audit, notifications, labels


def test_withdrawing_is_audited_with_a_chinese_label_and_notifies(world, application, db):  # noqa: F811
    service.apply(world.firm_user, application, "withdraw", note="材料不全，明年再报")
    audit = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "designation.withdraw")).one()
    assert audit.actor_id == world.firm_user.id and "推荐 → 已撤回" in audit.summary
    assert action_label("designation.withdraw") == "十百千认定：撤回推荐"
    assert action_label("designation.update") == "修改十百千推荐"
    staff = _notes(db, world.organizer)
    assert any("已撤回" in n.title and "材料不全" in n.body for n in staff)
    assert not any("已撤回" in n.title for n in _notes(db, world.firm_user))  # not told of its own act


def test_an_organizers_withdrawal_notifies_the_firm(world, db):  # noqa: F811
    designation = _designation(world)
    service.apply(world.organizer, designation, "withdraw")
    assert any("已撤回" in n.title for n in _notes(db, world.firm_user))


def test_an_edit_is_audited_and_notifies(world, application, db):  # noqa: F811
    service.update(world.firm_user, application, {"year": 2026, "description": "补充研发投入数据"})
    audit = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "designation.update")).one()
    assert "推荐理由" in audit.summary and audit.actor_id == world.firm_user.id
    assert any("修改" in n.title for n in _notes(db, world.organizer))
    service.apply(world.firm_user, application, "withdraw")
    designation = _designation(world)  # the organizer's recommendation of the same firm
    service.update(world.organizer, designation, {"year": 2025, "organization": world.firm.name})
    assert any(n.title.endswith("已修改") for n in _notes(db, world.firm_user))


def test_the_dashboard_status_figure_leaves_withdrawn_out(world, application):  # noqa: F811
    from marketplace.services import dashboard

    service.apply(world.firm_user, application, "withdraw")
    fig = dashboard.designations_by_status(dashboard.Filters())
    assert "已撤回" not in fig.headers and all(sum(row[1:]) == 0 for row in fig.rows)


# ---------------------------------------------------------------- pages


def test_the_member_edits_the_application_through_the_form(client, world, application):  # noqa: F811
    auth = _login(client, world, "firm_user")
    page = client.get(f"/programme/designations/{application.id}")
    html = page.get_data(as_text=True)
    assert "修改推荐" in html and f"/designations/{application.id}/withdraw" in html
    form = client.get(f"/programme/designations/{application.id}/edit").get_data(as_text=True)
    assert "营收三年增长40%。" in form and "保存修改" in form
    reply = auth.post(f"/programme/designations/{application.id}/edit",
                      data={"year": "2026", "description": "营收三年增长50%。"})
    assert reply.status_code == 302
    assert service.db.session.get(Designation, application.id).description == "营收三年增长50%。"


def test_a_bad_edit_is_a_400_with_the_message(client, world, application):  # noqa: F811
    auth = _login(client, world, "firm_user")
    reply = auth.post(f"/programme/designations/{application.id}/edit",
                      data={"year": "1800", "description": ""})
    assert reply.status_code == 400
    html = reply.get_data(as_text=True)
    assert "年度应为" in html or "年度应在" in html


def test_the_organizer_edits_a_zone_through_the_form(client, world):  # noqa: F811
    designation = _designation(world, kind=DesignationKind.ZONE)
    auth = _login(client, world, "organizer")
    form = client.get(f"/programme/designations/{designation.id}/edit").get_data(as_text=True)
    assert "南昌高新区数字经济应用场景示范区" in form and str(world.need.id) in form
    reply = auth.post(f"/programme/designations/{designation.id}/edit", data={
        "year": "2026", "name": "南昌高新区应用场景示范区", "region_city": "南昌市", "region_county": "",
        "need_ids": str(world.need.id), "description": "改名"})
    assert reply.status_code == 302
    assert service.db.session.get(Designation, designation.id).name == "南昌高新区应用场景示范区"


def test_the_member_withdraws_through_the_page(client, world, application):  # noqa: F811
    auth = _login(client, world, "firm_user")
    reply = auth.post(f"/programme/designations/{application.id}/withdraw", data={"note": ""})
    assert reply.status_code == 302
    assert service.db.session.get(Designation, application.id).status == "withdrawn"
    html = client.get(f"/programme/designations/{application.id}").get_data(as_text=True)
    assert "已撤回" in html and "修改推荐" not in html


@pytest.mark.parametrize("role", ["anonymous", "other_user", "publisher_user"])
def test_outsiders_cannot_open_the_edit_form(client, world, application, role):  # noqa: F811
    _login(client, world, role)
    reply = client.get(f"/programme/designations/{application.id}/edit")
    assert reply.status_code in (302, 404)


def test_the_edit_form_after_review_is_refused(client, world, application):  # noqa: F811
    application.status = DesignationStatus.REVIEWING
    service.db.session.commit()
    _login(client, world, "firm_user")
    assert client.get(f"/programme/designations/{application.id}/edit").status_code == 409


def test_edit_and_withdraw_need_the_csrf_token(client, world, application):  # noqa: F811
    _login(client, world, "firm_user")
    assert client.post(f"/programme/designations/{application.id}/edit",
                       data={"year": "2026", "description": "x"}).status_code == 400
    assert client.post(f"/programme/designations/{application.id}/withdraw").status_code == 400
    assert service.db.session.get(Designation, application.id).status == "recommended"


def test_a_firm_member_of_another_kind_is_never_the_recommender(world, make):  # noqa: F811
    gov_user = make.user(make.org(OrgKind.GOVERNMENT, name="南昌市工信局"))
    designation = _designation(world, recommended_by_id=gov_user.id)
    assert not service.can(gov_user, "edit", designation)

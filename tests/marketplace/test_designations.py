"""十百千 designations: the workflow table, subject rules, permissions, pages, badges and targets."""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import date

import pytest
from flask import g
from sqlalchemy import event, select

from marketplace.models import (
    AuditEvent,
    Designation,
    DesignationKind,
    DesignationOpportunity,
    DesignationOrganization,
    DesignationStatus,
    EntryStatus,
    Notification,
    Opportunity,
    Organization,
    OrgKind,
    ProgrammeTarget,
    ResponseStatus,
    ScenarioStage,
    Signing,
    SigningParty,
    User,
)
from marketplace.services import programme as service
from marketplace.services.errors import InvalidTransition, NotFound, PermissionDenied, ValidationFailed
from tests.conftest import AuthActions

PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
ROLES = ("anonymous", "firm_user", "other_user", "publisher_user", "organizer", "admin")


@dataclass
class World:
    publisher: Organization
    publisher_user: User
    firm: Organization
    firm_user: User
    partner: Organization
    other: Organization
    other_user: User
    organizer: User
    admin: User
    need: Opportunity


@pytest.fixture
def world(make) -> World:
    publisher = make.org(OrgKind.GOVERNMENT, name="南昌市数据局")
    firm = make.org(OrgKind.ENTERPRISE, name="江西智联科技有限公司", region_city="南昌市")
    partner = make.org(OrgKind.ENTERPRISE, name="江西数创信息技术有限公司", region_city="九江市")
    other = make.org(OrgKind.ENTERPRISE, name="赣州慧通软件有限公司", region_city="赣州市")
    need = make.opportunity(publisher, status=EntryStatus.PUBLISHED, title="红谷滩区智慧停车示范",
                            stage=ScenarioStage.DEMONSTRATION)
    make.response(need, firm, status=ResponseStatus.SELECTED)
    signing = Signing(opportunity_id=need.id, signed_on=date(2026, 5, 20), title="智慧停车一期")
    signing.parties = [SigningParty(organization_id=partner.id)]
    make.db.session.add(signing)
    make.db.session.commit()
    return World(
        publisher=publisher, publisher_user=make.user(publisher), firm=firm, firm_user=make.user(firm),
        partner=partner, other=other, other_user=make.user(other), organizer=make.organizer(),
        admin=make.admin(), need=need,
    )


def _user(world: World, role: str) -> User | None:
    return None if role == "anonymous" else getattr(world, role)


def _designation(world: World, kind: str = DesignationKind.FIRM, status: str = DesignationStatus.RECOMMENDED,
                 **kw) -> Designation:
    values = dict(kind=kind, year=2026, status=status, name=world.firm.name, organization_id=world.firm.id,
                  description="营收连续三年增长超过30%。", decision_note="内部评审意见",
                  recommended_by_id=world.organizer.id)
    if kind == DesignationKind.PROJECT:
        values.update(name=world.need.title, organization_id=None, opportunity_id=world.need.id)
    if kind == DesignationKind.ZONE:
        values.update(name="南昌高新区数字经济应用场景示范区", organization_id=None, region_city="南昌市")
    values.update(kw)
    found = Designation(**values)
    if kind == DesignationKind.PROJECT:
        found.organizations = [DesignationOrganization(organization_id=world.firm.id)]
    if kind == DesignationKind.ZONE:
        found.opportunities = [DesignationOpportunity(opportunity_id=world.need.id)]
    service.db.session.add(found)
    service.db.session.commit()
    return found


def _login(client, world: World, role: str) -> AuthActions:
    auth = AuthActions(client)
    g.pop("_login_user", None)
    g.pop("csrf_token", None)
    user = _user(world, role)
    if user is not None:
        auth.login(user)
    return auth


# ---------------------------------------------------------------- the workflow table


CASES = [(action, status) for action in service.TRANSITIONS for status in DesignationStatus]


@pytest.mark.parametrize(("action", "status"), CASES, ids=[f"{a}-{s}" for a, s in CASES])
def test_every_step_is_allowed_exactly_from_its_sources(world, action, status):
    designation = _designation(world, status=status)
    step = service.TRANSITIONS[action]
    if status in step.sources:
        service.apply(world.organizer, designation, action, note="材料齐全，同意。")
        assert designation.status == step.target
    else:
        with pytest.raises(InvalidTransition):
            service.apply(world.organizer, designation, action, note="材料齐全，同意。")
        assert designation.status == status


@pytest.mark.parametrize("role", ["anonymous", "firm_user", "other_user", "publisher_user"])
@pytest.mark.parametrize("action", list(service.TRANSITIONS))
def test_only_organizers_take_workflow_steps(world, role, action):
    step = service.TRANSITIONS[action]
    designation = _designation(world, status=next(iter(step.sources)))
    with pytest.raises((PermissionDenied, NotFound)):
        service.apply(_user(world, role), designation, action, note="同意")


def test_admin_may_take_workflow_steps(world):
    designation = _designation(world, status=DesignationStatus.REVIEWING)
    service.apply(world.admin, designation, "approve")
    assert designation.status == DesignationStatus.APPROVED
    assert designation.decided_by_id == world.admin.id


def test_approval_records_the_deciding_organizer_and_time(world):
    designation = _designation(world, status=DesignationStatus.REVIEWING)
    service.apply(world.organizer, designation, "approve", note="符合认定条件")
    assert (designation.decided_by_id, designation.decision_note) == (world.organizer.id, "符合认定条件")
    assert designation.decided_at is not None


def test_rejecting_needs_a_note(world):
    designation = _designation(world, status=DesignationStatus.REVIEWING)
    with pytest.raises(ValidationFailed) as caught:
        service.apply(world.organizer, designation, "reject", note="  ")
    assert "note" in caught.value.errors
    assert designation.status == DesignationStatus.REVIEWING


def test_every_step_is_audited_and_notifies_the_firm(world, db):
    designation = _designation(world)
    for action in ("review", "approve"):
        service.apply(world.organizer, designation, action)
    actions = db.session.scalars(select(AuditEvent.action).where(AuditEvent.object_type == "designation",
                                                                 AuditEvent.object_id == designation.id))
    assert sorted(actions) == ["designation.approve", "designation.review"]
    titles = list(db.session.scalars(
        select(Notification.title).where(Notification.user_id == world.firm_user.id)))
    assert len(titles) == 2 and "已认定" in titles[-1]
    assert db.session.scalar(select(Notification).where(Notification.user_id == world.other_user.id)) is None


def test_project_steps_notify_the_publisher_and_delivering_firms(world, db):
    designation = _designation(world, kind=DesignationKind.PROJECT)
    service.apply(world.organizer, designation, "review")
    notified = set(db.session.scalars(select(Notification.user_id)))
    assert notified == {world.publisher_user.id, world.firm_user.id}


# ---------------------------------------------------------------- recommending: subject rules


def test_organizer_recommends_a_zone_with_its_needs(world):
    found = service.recommend(world.organizer, {
        "kind": "zone", "year": 2026, "name": "南昌高新区数字经济应用场景示范区", "region_city": "南昌市",
        "region_county": "", "need_ids": f"{world.need.id}", "description": "集聚场景30余个。"})
    assert found.status == DesignationStatus.RECOMMENDED
    assert [row.opportunity_id for row in found.opportunities] == [world.need.id]
    assert found.recommended_by_id == world.organizer.id


@pytest.mark.parametrize(("change", "field"), [
    ({"name": ""}, "name"),
    ({"region_city": "上海市"}, "region_city"),
    ({"region_county": "章贡区"}, "region_city"),
    ({"need_ids": "abc"}, "need_ids"),
    ({"need_ids": "999999"}, "need_ids"),
    ({"region_city": "赣州市"}, "need_ids"),
    ({"year": 1999}, "year"),
    ({"year": "x"}, "year"),
])
def test_zone_rules(world, change, field):
    data = {"kind": "zone", "year": 2026, "name": "南昌高新区示范区", "region_city": "南昌市",
            "need_ids": str(world.need.id), **change}
    with pytest.raises(ValidationFailed) as caught:
        service.recommend(world.organizer, data)
    assert field in caught.value.errors


def test_zone_needs_must_be_published(world, make):
    draft = make.opportunity(world.publisher, status=EntryStatus.DRAFT)
    with pytest.raises(ValidationFailed) as caught:
        service.recommend(world.organizer, {"kind": "zone", "year": 2026, "name": "示范区",
                                            "region_city": "南昌市", "need_ids": str(draft.id)})
    assert "未公开" in caught.value.errors["need_ids"]


def test_project_records_its_delivering_firms(world):
    found = service.recommend(world.organizer, {"kind": "project", "year": 2026,
                                                "opportunity_id": world.need.id})
    assert found.name == world.need.title
    assert sorted(row.organization_id for row in found.organizations) == sorted(
        [world.firm.id, world.partner.id])


@pytest.mark.parametrize("stage", [ScenarioStage.PUBLISHED, ScenarioStage.RND, ScenarioStage.PILOT,
                                   ScenarioStage.TERMINATED])
def test_project_need_must_be_in_demonstration(world, db, stage):
    world.need.stage = stage
    db.session.commit()
    with pytest.raises(ValidationFailed) as caught:
        service.recommend(world.organizer, {"kind": "project", "year": 2026, "opportunity_id": world.need.id})
    assert "示范推广" in caught.value.errors["opportunity_id"]


def test_project_need_must_be_published(world, db):
    world.need.status = EntryStatus.WITHDRAWN
    db.session.commit()
    with pytest.raises(ValidationFailed):
        service.recommend(world.organizer, {"kind": "project", "year": 2026, "opportunity_id": world.need.id})


@pytest.mark.parametrize("value", ["江西智联科技有限公司", "credit"])
def test_firm_found_by_name_or_credit_code(world, value):
    value = world.firm.credit_code if value == "credit" else value
    found = service.recommend(world.organizer, {"kind": "firm", "year": 2026, "organization": value})
    assert found.organization_id == world.firm.id


@pytest.mark.parametrize(("kind", "verified", "message"), [
    (OrgKind.GOVERNMENT, True, "不能认定"),
    (OrgKind.RESEARCH, True, "不能认定"),
    (OrgKind.ENTERPRISE, False, "尚未通过"),
])
def test_firm_must_be_a_verified_enterprise(make, world, kind, verified, message):
    org = make.org(kind, verified=verified)
    with pytest.raises(ValidationFailed) as caught:
        service.recommend(world.organizer, {"kind": "firm", "year": 2026, "organization": org.name})
    assert message in caught.value.errors["organization"]


def test_a_live_designation_cannot_be_recommended_twice(world):
    _designation(world, status=DesignationStatus.APPROVED, year=2024)
    with pytest.raises(ValidationFailed) as caught:
        service.recommend(world.organizer, {"kind": "firm", "year": 2026, "organization": world.firm.name})
    assert "已有" in caught.value.errors["organization"]


def test_a_rejected_subject_may_be_recommended_again(world):
    _designation(world, status=DesignationStatus.REJECTED, year=2025)
    found = service.recommend(world.organizer, {"kind": "firm", "year": 2026,
                                                "organization": world.firm.name})
    assert found.status == DesignationStatus.RECOMMENDED


def test_members_may_not_recommend_for_others(world):
    with pytest.raises(PermissionDenied):
        service.recommend(world.publisher_user, {"kind": "zone", "year": 2026, "name": "示范区",
                                                 "region_city": "南昌市"})


def test_a_verified_enterprise_applies_for_itself_only(world):
    found = service.recommend(world.firm_user, {"kind": "zone", "year": 2026,
                                                "organization": world.other.name,
                                                "description": "近三年营收年均增长45%。"})
    assert (found.kind, found.organization_id) == (DesignationKind.FIRM, world.firm.id)


def test_an_application_notifies_the_organizers(world, db):
    service.recommend(world.firm_user, {"year": 2026, "description": "营收三年翻番。"})
    notified = set(db.session.scalars(select(Notification.user_id)))
    assert notified == {world.organizer.id, world.admin.id}


@pytest.mark.parametrize("kind", [OrgKind.GOVERNMENT, OrgKind.RESEARCH])
def test_non_enterprises_cannot_apply(make, kind):
    member = make.user(make.org(kind))
    assert not service.can(member, "self_recommend", Designation)


def test_unverified_enterprise_cannot_apply(make):
    member = make.user(make.org(OrgKind.ENTERPRISE, verified=False))
    assert "尚未通过" in service.problem(member, "self_recommend", Designation)


def test_evidence_is_stored_through_the_upload_rules(world):
    found = service.recommend(world.organizer, {"kind": "firm", "year": 2026,
                                                "organization": world.firm.name},
                              evidence=(io.BytesIO(PDF), "认定材料.pdf"))
    assert found.evidence_file.content_type == "application/pdf"
    with pytest.raises(ValidationFailed) as caught:
        service.recommend(world.organizer, {"kind": "firm", "year": 2026, "organization": world.other.name},
                          evidence=(io.BytesIO(b"<html>not a pdf</html>"), "x.pdf"))
    assert "evidence" in caught.value.errors


# ---------------------------------------------------------------- pages: permission matrix


def _status(client, world, role, method, url, data=None):
    auth = _login(client, world, role)
    if method == "GET":
        return client.get(url).status_code
    return auth.post(url, data or {}).status_code


PAGE_MATRIX = {
    # url builder, method, expected per role (anonymous, firm, other, publisher, organizer, admin)
    "list": (lambda w, d: "/programme/designations", "GET", (302, 200, 200, 200, 200, 200)),
    "new": (lambda w, d: "/programme/designations/new?kind=zone", "GET", (302, 403, 403, 403, 200, 200)),
    "new project": (lambda w, d: "/programme/designations/new?kind=project", "GET",
                    (302, 403, 403, 403, 200, 200)),
    "new firm": (lambda w, d: "/programme/designations/new?kind=firm", "GET", (302, 403, 403, 403, 200, 200)),
    "apply": (lambda w, d: "/programme/designations/apply", "GET", (302, 200, 200, 403, 403, 403)),
    "detail": (lambda w, d: f"/programme/designations/{d.id}", "GET", (302, 200, 404, 200, 200, 200)),
    "evidence": (lambda w, d: f"/programme/designations/{d.id}/evidence", "GET",
                 (302, 200, 404, 200, 200, 200)),
    "review": (lambda w, d: f"/programme/designations/{d.id}/review", "POST", (302, 403, 404, 403, 302, 302)),
    "targets": (lambda w, d: "/programme/targets", "GET", (302, 403, 403, 403, 200, 200)),
    "dashboard": (lambda w, d: "/programme/dashboard", "GET", (302, 403, 403, 403, 200, 200)),
    "dashboard csv": (lambda w, d: "/programme/dashboard/funnel.csv", "GET", (302, 403, 403, 403, 200, 200)),
    "dashboard xlsx": (lambda w, d: "/programme/dashboard.xlsx", "GET", (302, 403, 403, 403, 200, 200)),
    "achievements": (lambda w, d: "/achievements", "GET", (200, 200, 200, 200, 200, 200)),
}
MATRIX_CASES = [(page, role, expected[i]) for page, (_, _, expected) in PAGE_MATRIX.items()
                for i, role in enumerate(ROLES)]


@pytest.mark.parametrize(("page", "role", "expected"), MATRIX_CASES,
                         ids=[f"{p}-{r}" for p, r, _ in MATRIX_CASES])
def test_page_permission_matrix(app, world, page, role, expected):
    """The designation concerns the firm and the need's publisher (a project it delivers)."""
    designation = service.recommend(world.organizer, {"kind": "project", "year": 2026,
                                                      "opportunity_id": world.need.id},
                                    evidence=(io.BytesIO(PDF), "材料.pdf"))
    url_of, method, _ = PAGE_MATRIX[page]
    assert _status(app.test_client(), world, role, method, url_of(world, designation)) == expected


def test_member_list_shows_only_designations_of_its_organisation(client, world, make):
    _designation(world, name="江西智联科技有限公司")
    elsewhere = _designation(world, organization_id=world.other.id, name="赣州慧通软件有限公司")
    _login(client, world, "firm_user")
    html = client.get("/programme/designations").get_data(as_text=True)
    assert "江西智联科技有限公司" in html and elsewhere.name not in html


def test_organizer_list_filters_by_kind_year_status_and_city(client, world):
    _designation(world, year=2025)
    _designation(world, kind=DesignationKind.ZONE, status=DesignationStatus.APPROVED)
    _login(client, world, "organizer")
    html = client.get("/programme/designations?kind=zone&year=2026&status=approved&city=南昌市").get_data(
        as_text=True)
    assert "南昌高新区数字经济应用场景示范区" in html and "江西智联科技有限公司" not in html
    assert "江西智联科技有限公司" in client.get("/programme/designations?city=南昌市").get_data(as_text=True)
    assert "没有符合条件" in client.get("/programme/designations?city=赣州市").get_data(as_text=True)


def test_unknown_filter_values_are_ignored(client, world):
    _login(client, world, "organizer")
    assert client.get("/programme/designations?kind=x&year=abc&status=done&city=上海市").status_code == 200


def test_organizer_recommends_through_the_form_with_evidence(client, world, db):
    auth = _login(client, world, "organizer")
    reply = auth.post("/programme/designations/new?kind=firm", {
        "year": "2026", "organization": world.firm.credit_code, "description": "高成长",
        "evidence": (io.BytesIO(PDF), "证明.pdf")}, content_type="multipart/form-data")
    assert reply.status_code == 302
    found = db.session.scalar(select(Designation))
    assert found.organization_id == world.firm.id and found.evidence_file is not None


def test_form_errors_keep_input_and_answer_400(client, world):
    auth = _login(client, world, "organizer")
    reply = auth.post("/programme/designations/new?kind=zone", {
        "year": "2026", "name": "南昌VR产业基地示范区", "region_city": "南昌市", "need_ids": "12a"})
    html = reply.get_data(as_text=True)
    assert reply.status_code == 400
    assert "不是有效的需求编号" in html and "南昌VR产业基地示范区" in html


def test_project_form_lists_only_needs_in_demonstration(client, world, make):
    make.opportunity(world.publisher, status=EntryStatus.PUBLISHED, title="仍在研发的场景",
                     stage=ScenarioStage.RND)
    _login(client, world, "organizer")
    html = client.get("/programme/designations/new?kind=project").get_data(as_text=True)
    assert world.need.title in html and "仍在研发的场景" not in html


def test_decisions_through_the_page(client, world, db):
    designation = _designation(world)
    auth = _login(client, world, "organizer")
    assert auth.post(f"/programme/designations/{designation.id}/review").status_code == 302
    assert auth.post(f"/programme/designations/{designation.id}/reject", {"note": ""}).status_code == 302
    db.session.refresh(designation)
    assert designation.status == DesignationStatus.REVIEWING
    auth.post(f"/programme/designations/{designation.id}/reject", {"note": "成长性指标不足"})
    db.session.refresh(designation)
    assert (designation.status, designation.decision_note) == (DesignationStatus.REJECTED, "成长性指标不足")


def test_a_refused_step_is_a_message_not_an_error(client, world):
    designation = _designation(world, status=DesignationStatus.APPROVED)
    auth = _login(client, world, "organizer")
    reply = auth.post(f"/programme/designations/{designation.id}/review", follow_redirects=True)
    assert reply.status_code == 200 and "不能开始评审" in reply.get_data(as_text=True)


def test_decision_without_csrf_is_400(client, world):
    designation = _designation(world)
    _login(client, world, "organizer")
    assert client.post(f"/programme/designations/{designation.id}/review").status_code == 400


def test_unknown_action_is_404(client, world):
    designation = _designation(world)
    auth = _login(client, world, "organizer")
    assert auth.post(f"/programme/designations/{designation.id}/publish").status_code == 404


def test_buttons_follow_the_table(client, world):
    designation = _designation(world, status=DesignationStatus.REVIEWING)
    _login(client, world, "organizer")
    html = client.get(f"/programme/designations/{designation.id}").get_data(as_text=True)
    for action, step in service.TRANSITIONS.items():
        assert (f"/designations/{designation.id}/{action}\"" in html) == (designation.status in step.sources)


def test_members_see_the_decision_note_of_their_designation(client, world):
    designation = _designation(world, status=DesignationStatus.REJECTED, decision_note="研发投入占比不足")
    _login(client, world, "firm_user")
    html = client.get(f"/programme/designations/{designation.id}").get_data(as_text=True)
    assert "研发投入占比不足" in html and "formaction" not in html


# ---------------------------------------------------------------- public badges


def test_an_approved_firm_shows_a_badge_on_its_product_pages(client, world, make):
    product = make.product(world.firm, status=EntryStatus.PUBLISHED)
    designation = _designation(world, status=DesignationStatus.REVIEWING)
    assert "高成长性企业" not in client.get(f"/products/{product.id}").get_data(as_text=True)
    service.apply(world.organizer, designation, "approve")
    assert "2026年高成长性企业" in client.get(f"/products/{product.id}").get_data(as_text=True)


def test_an_approved_project_and_zone_show_badges_on_the_need_page(client, world):
    _designation(world, kind=DesignationKind.PROJECT, status=DesignationStatus.APPROVED)
    _designation(world, kind=DesignationKind.ZONE, status=DesignationStatus.APPROVED, year=2025)
    html = client.get(f"/opportunities/{world.need.id}").get_data(as_text=True)
    assert "2026年应用场景示范项目" in html and "2025年应用场景示范区" in html
    assert "内部评审意见" not in html


def test_delivering_firms_of_an_approved_project_get_its_badge(world):
    _designation(world, kind=DesignationKind.PROJECT, status=DesignationStatus.APPROVED)
    badges = service.badges_for_organizations([world.firm.id, world.other.id])
    assert [b.kind for b in badges[world.firm.id]] == [DesignationKind.PROJECT]
    assert world.other.id not in badges


def test_badges_of_a_withdrawn_need_are_not_shown_for_its_firms(world, db):
    _designation(world, kind=DesignationKind.PROJECT, status=DesignationStatus.APPROVED)
    world.need.status = EntryStatus.WITHDRAWN
    db.session.commit()
    assert service.badges_for_organizations([world.firm.id]) == {}


def _count_queries(db, work) -> int:
    seen = []
    listener = lambda *args: seen.append(args[2])  # noqa: E731
    event.listen(db.engine, "before_cursor_execute", listener)
    try:
        work()
    finally:
        event.remove(db.engine, "before_cursor_execute", listener)
    return len(seen)


def test_badges_take_one_query_each(world, db):
    _designation(world, status=DesignationStatus.APPROVED)
    _designation(world, kind=DesignationKind.PROJECT, status=DesignationStatus.APPROVED)
    _designation(world, kind=DesignationKind.ZONE, status=DesignationStatus.APPROVED)
    need_id, org_ids = world.need.id, [world.firm.id, world.partner.id]
    db.session.expire_all()
    assert _count_queries(db, lambda: service.badges_for_opportunity(need_id)) == 1
    assert _count_queries(db, lambda: service.badges_for_organizations(org_ids)) == 1


# ---------------------------------------------------------------- targets


def test_targets_are_saved_and_updated_in_place(world, db):
    service.save_target(world.organizer, {"year": 2026, "kind": "zone", "target": 12, "cumulative": False})
    service.save_target(world.organizer, {"year": 2026, "kind": "zone", "target": 15, "cumulative": False})
    service.save_target(world.organizer, {"year": 2026, "kind": "zone", "target": 70, "cumulative": True})
    rows = sorted((t.cumulative, t.target) for t in service.targets())
    assert rows == [(False, 15), (True, 70)]
    assert db.session.scalar(
        select(AuditEvent).where(AuditEvent.action == "programme_target.save")) is not None


@pytest.mark.parametrize(("change", "field"), [({"target": -1}, "target"), ({"target": "x"}, "target"),
                                               ({"kind": "lab"}, "kind"), ({"year": 3000}, "year")])
def test_target_validation(world, change, field):
    with pytest.raises(ValidationFailed) as caught:
        service.save_target(world.organizer, {"year": 2026, "kind": "zone", "target": 5, **change})
    assert field in caught.value.errors


def test_default_targets_are_the_jiangxi_plan_and_keep_existing_ones(world, db):
    service.save_target(world.organizer, {"year": 2025, "kind": "firm", "target": 2500, "cumulative": True})
    added = service.load_default_targets(world.organizer)
    assert added == len(service.DEFAULT_TARGETS) - 1
    cumulative = {t.kind: t.target for t in service.targets() if t.cumulative}
    assert cumulative == {"zone": 50, "project": 300, "firm": 2500}
    annual = {(t.year, t.kind): t.target for t in service.targets() if not t.cumulative}
    assert annual[(2022, "zone")] == 10 and annual[(2025, "project")] == 60
    assert service.load_default_targets(world.organizer) == 0


def test_targets_page_saves_and_deletes(client, world, db):
    auth = _login(client, world, "organizer")
    reply = auth.post("/programme/targets", {"year": "2026", "kind": "project", "scope": "annual",
                                             "target": "66"})
    assert reply.status_code == 302
    target = db.session.scalar(select(ProgrammeTarget))
    assert (target.year, target.kind, target.cumulative, target.target) == (2026, "project", False, 66)
    assert auth.post(f"/programme/targets/{target.id}/delete").status_code == 302
    assert db.session.scalar(select(ProgrammeTarget)) is None


def test_targets_page_shows_errors_beside_fields(client, world):
    auth = _login(client, world, "organizer")
    reply = auth.post("/programme/targets", {"year": "2026", "kind": "project", "scope": "annual",
                                             "target": "-5"})
    assert reply.status_code == 400 and "目标应为" in reply.get_data(as_text=True)


@pytest.mark.parametrize("role", ["firm_user", "publisher_user"])
def test_members_cannot_change_targets(app, world, role):
    client = app.test_client()
    auth = _login(client, world, role)
    assert auth.post("/programme/targets/defaults").status_code == 403
    assert service.targets() == []

"""企业答题: the response workflow, deadlines in Beijing time, attachments, privacy and permissions."""

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
    EntryStatus,
    Notification,
    OrgKind,
    Response,
    ResponseStatus,
    StoredFile,
)
from marketplace.services import responses as service
from marketplace.services import uploads
from marketplace.services.errors import (
    DomainError,
    InvalidTransition,
    NotFound,
    PermissionDenied,
    ValidationFailed,
)
from tests.conftest import AuthActions
from tests.factories import RESPONSE_SUMMARY

BEIJING = ZoneInfo("Asia/Shanghai")
DEADLINE = date(2026, 12, 31)

#: A complete, valid one-page PDF (header, catalog, pages, xref, trailer).
PDF = (
    b"%PDF-1.4\n"
    b"1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
    b"2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
    b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 200 200]>>endobj\n"
    b"xref\n0 4\n0000000000 65535 f \n0000000009 00000 n \n0000000052 00000 n \n0000000101 00000 n \n"
    b"trailer<</Size 4/Root 1 0 R>>\nstartxref\n165\n%%EOF\n"
)
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


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
    pass


@pytest.fixture
def world(make, clock):
    w = World()
    w.publisher = make.org(kind=OrgKind.GOVERNMENT, name="南昌市交通运输局")
    w.firm = make.org(kind=OrgKind.ENTERPRISE, name="江西云眸智能科技有限公司")
    w.other_firm = make.org(kind=OrgKind.ENTERPRISE, name="赣州数智物联有限公司")
    w.other_gov = make.org(kind=OrgKind.GOVERNMENT, name="九江市生态环境局")
    w.publisher_user = make.user(w.publisher)
    w.firm_user = make.user(w.firm)
    w.other_firm_user = make.user(w.other_firm)
    w.other_gov_user = make.user(w.other_gov)
    w.organizer = make.organizer()
    w.admin = make.admin()
    w.need = make.opportunity(w.publisher, status=EntryStatus.PUBLISHED, deadline=DEADLINE)
    w.product = make.product(w.firm, status=EntryStatus.PUBLISHED)
    w.other_product = make.product(w.other_firm, status=EntryStatus.PUBLISHED, name="河湖水质浮标监测系统")
    return w


def form_data(product_ids, **overrides) -> dict:
    """The fields of the answer form (``product_ids`` may be overridden too)."""
    data = {
        "summary": RESPONSE_SUMMARY,
        "delivery_plan": "第1月完成现场勘查，第2–3月部署试点，第4月验收。",
        "quote": "88.5",
        "contact_name": "李工",
        "contact_phone": "13800000000",
        "product_ids": [str(i) for i in product_ids],
    }
    data.update(overrides)
    data["product_ids"] = [str(i) for i in data["product_ids"]]
    return data


def submitted(w) -> Response:
    return service.start_response(w.firm_user, w.need, form_data([w.product.id]), submit_now=True)


# ---------------------------------------------------------------- Beijing-time deadlines


@pytest.mark.parametrize(
    ("beijing", "is_open"),
    [
        ("2026-12-31 00:00:00", True),
        ("2026-12-31 23:59:59", True),
        ("2027-01-01 00:00:00", False),
        ("2027-01-01 07:59:59", False),  # still 2026-12-31 in UTC
    ],
)
def test_a_need_is_open_until_the_end_of_its_deadline_day_in_beijing(world, clock, beijing, is_open):
    clock.set(beijing)
    assert world.need.is_open is is_open


def test_days_left_counts_beijing_days(world, clock):
    clock.set("2026-12-26 23:30:00")  # 15:30 UTC on the 26th
    assert world.need.days_left == 5
    clock.set("2026-12-27 00:30:00")  # still the 26th in UTC
    assert world.need.days_left == 4


def test_a_need_without_deadline_stays_open(world, clock, make):
    need = make.opportunity(world.publisher, status=EntryStatus.PUBLISHED, deadline=None)
    clock.set("2035-01-01 12:00:00")
    assert need.is_open


# ---------------------------------------------------------------- starting and submitting


def test_a_firm_saves_a_draft_then_submits(world, db):
    response = service.start_response(world.firm_user, world.need, form_data([world.product.id]))
    assert response.status == ResponseStatus.DRAFT
    assert response.quote == pytest.approx(88.5)
    assert db.session.scalar(select(func.count()).select_from(Notification)) == 0
    service.transition(world.firm_user, response, "submit")
    assert response.status == ResponseStatus.SUBMITTED and response.submitted_at is not None
    note = db.session.scalars(select(Notification)).one()
    assert note.user_id == world.publisher_user.id
    assert note.kind == "response_new" and world.firm.name in note.title
    actions = db.session.scalars(
        select(AuditEvent.action).where(AuditEvent.object_type == "response").order_by(AuditEvent.id)
    ).all()
    assert actions == ["response.create", "response.submit"]


def test_submitting_at_2359_beijing_on_the_deadline_day_is_accepted(world, clock):
    clock.set("2026-12-31 23:59:30")
    assert submitted(world).status == ResponseStatus.SUBMITTED


def test_submitting_one_second_after_midnight_beijing_is_refused(world, clock):
    response = service.start_response(world.firm_user, world.need, form_data([world.product.id]))
    clock.set("2027-01-01 00:00:01")
    with pytest.raises(InvalidTransition, match="截止"):
        service.transition(world.firm_user, response, "submit")
    assert response.status == ResponseStatus.DRAFT


def test_no_new_response_after_the_deadline(world, clock):
    clock.set("2027-01-01 00:00:01")
    with pytest.raises(InvalidTransition, match="截止"):
        service.start_response(world.firm_user, world.need, form_data([world.product.id]))


@pytest.mark.parametrize(
    ("kind", "verified", "message"),
    [
        (OrgKind.GOVERNMENT, True, "政府部门不能答题"),
        (OrgKind.INSTITUTION, True, "事业单位不能答题"),
        (OrgKind.SOE, True, "国有企业不能答题"),
        (OrgKind.ENTERPRISE, False, "尚未通过组织方认证"),
    ],
)
def test_who_may_not_answer(world, make, kind, verified, message):
    org = make.org(kind=kind, verified=verified)
    user = make.user(org)
    with pytest.raises(PermissionDenied, match=message):
        service.start_response(user, world.need, form_data([world.product.id]))


@pytest.mark.parametrize("kind", [OrgKind.ENTERPRISE, OrgKind.RESEARCH, OrgKind.SERVICE])
def test_firms_institutes_and_service_organizations_may_answer(world, make, kind):
    org = make.org(kind=kind)
    product = make.product(org, status=EntryStatus.PUBLISHED)
    response = service.start_response(make.user(org), world.need, form_data([product.id]), submit_now=True)
    assert response.status == ResponseStatus.SUBMITTED


def test_unpublished_needs_cannot_be_answered(world, make):
    draft_need = make.opportunity(world.publisher, status=EntryStatus.SUBMITTED)
    with pytest.raises(DomainError):
        service.start_response(world.firm_user, draft_need, form_data([world.product.id]))


def test_one_live_response_per_organization_per_need(world, make):
    first = submitted(world)
    colleague = make.user(world.firm)
    with pytest.raises(InvalidTransition, match="已答复"):
        service.start_response(colleague, world.need, form_data([world.product.id]))
    service.transition(world.firm_user, first, "withdraw")
    again = service.start_response(colleague, world.need, form_data([world.product.id]))
    assert again.id != first.id


def test_the_database_refuses_a_second_live_response(world, make, db):
    from sqlalchemy.exc import IntegrityError

    make.response(world.need, world.firm, [world.product], status="submitted")
    with pytest.raises(IntegrityError):
        make.response(world.need, world.firm, [world.product], status="draft")
    db.session.rollback()


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"summary": "太短了"}, "summary"),
        ({"summary": "字" * 3001}, "summary"),
        ({"quote": "-1"}, "quote"),
        ({"quote": "abc"}, "quote"),
        ({"contact_phone": ""}, "contact_phone"),
        ({"product_ids": []}, "product_ids"),
        ({"summary": RESPONSE_SUMMARY + "\x00"}, "summary"),
    ],
)
def test_response_fields_are_checked(world, overrides, field):
    with pytest.raises(ValidationFailed) as info:
        data = form_data([world.product.id])
        data.update(overrides)
        service.start_response(world.firm_user, world.need, data)
    assert field in info.value.errors


def test_only_the_organizations_own_published_products(world, make):
    draft_product = make.product(world.firm, status=EntryStatus.DRAFT)
    for ids in ([world.other_product.id], [draft_product.id]):
        with pytest.raises(ValidationFailed) as info:
            service.start_response(world.firm_user, world.need, form_data(ids))
        assert "product_ids" in info.value.errors


# ---------------------------------------------------------------- editing and withdrawing


def test_a_submitted_response_can_be_edited_until_the_deadline(world, clock):
    response = submitted(world)
    service.update_response(world.firm_user, response, form_data([world.product.id], quote="120"))
    assert str(response.quote) == "120.00"
    clock.set("2027-01-01 00:00:01")
    with pytest.raises(InvalidTransition, match="截止"):
        service.update_response(world.firm_user, response, form_data([world.product.id], quote="130"))


def test_a_draft_stays_editable_after_the_deadline(world, clock):
    response = service.start_response(world.firm_user, world.need, form_data([world.product.id]))
    clock.set("2027-02-01 09:00:00")
    service.update_response(world.firm_user, response, form_data([world.product.id], quote="1"))
    assert str(response.quote) == "1.00"


@pytest.mark.parametrize(
    ("status", "after_deadline", "allowed"),
    [
        ("draft", False, True),
        ("draft", True, True),
        ("submitted", False, True),
        ("submitted", True, False),
        ("shortlisted", False, True),
        ("shortlisted", True, False),
        ("selected", False, False),
        ("rejected", False, False),
        ("withdrawn", False, False),
    ],
)
def test_withdraw_matrix(world, make, clock, status, after_deadline, allowed):
    response = make.response(world.need, world.firm, [world.product], status=status)
    if after_deadline:
        clock.set("2027-01-01 00:00:01")
    if allowed:
        service.transition(world.firm_user, response, "withdraw")
        assert response.status == ResponseStatus.WITHDRAWN
    else:
        with pytest.raises(InvalidTransition):
            service.transition(world.firm_user, response, "withdraw")
        assert response.status == status


# ---------------------------------------------------------------- the publisher's decisions

REVIEW_MATRIX = [
    (source, action, source in service.TRANSITIONS[action].sources)
    for source in ("draft", "submitted", "shortlisted", "selected", "rejected", "withdrawn")
    for action in ("shortlist", "select", "reject")
]


@pytest.mark.parametrize(("source", "action", "allowed"), REVIEW_MATRIX)
def test_review_transitions(world, make, source, action, allowed):
    response = make.response(world.need, world.firm, [world.product], status=source)
    if allowed:
        service.transition(world.publisher_user, response, action, "方案贴合度高，请准备现场路演")
        assert response.status == service.TRANSITIONS[action].target
        assert response.review_comment == "方案贴合度高，请准备现场路演"
    else:
        with pytest.raises((InvalidTransition, PermissionDenied)):
            service.transition(world.publisher_user, response, action)
        assert response.status == source


def test_reviews_work_after_the_deadline(world, clock):
    response = submitted(world)
    clock.set("2027-03-01 10:00:00")
    service.transition(world.publisher_user, response, "shortlist")
    service.transition(world.publisher_user, response, "select", "请于下周签约")
    assert response.status == ResponseStatus.SELECTED


def test_the_firm_is_told_of_a_decision_with_its_comment(world, db):
    response = submitted(world)
    service.transition(world.organizer, response, "reject", "预算超出本项目上限")
    note = db.session.scalars(
        select(Notification).where(Notification.user_id == world.firm_user.id)
    ).one()
    assert note.kind == "response_status"
    assert "未选定" in note.title and "预算超出本项目上限" in note.body


@pytest.mark.parametrize("who", ["firm_user", "other_firm_user", "other_gov_user"])
def test_only_the_publisher_and_organizers_review(world, who):
    response = submitted(world)
    with pytest.raises(PermissionDenied):
        service.transition(getattr(world, who), response, "select")


def test_the_firm_cannot_submit_for_another_firm(world):
    response = service.start_response(world.firm_user, world.need, form_data([world.product.id]))
    with pytest.raises(PermissionDenied):
        service.transition(world.other_firm_user, response, "submit")


def test_publisher_table_has_match_scores_and_hides_drafts(world, make):
    submitted(world)
    other = make.response(world.need, world.other_firm, [world.other_product], status="draft")
    rows = service.responses_for_opportunity(world.publisher_user, world.need)
    assert [row.response.organization_id for row in rows] == [world.firm.id]
    assert set(rows[0].scores) == {world.product.id}
    assert 0 < rows[0].scores[world.product.id] <= 1
    assert other.id not in {row.response.id for row in rows}


def test_winners_are_the_selected_respondents_only(world, make):
    selected = make.response(world.need, world.firm, [world.product], status="selected")
    make.response(world.need, world.other_firm, [world.other_product], status="rejected")
    assert service.winners([world.need.id]) == {world.need.id: [world.firm.name]}
    assert selected.status == "selected"


# ---------------------------------------------------------------- pages: permission matrix

ROLES = [
    "anonymous", "firm_user", "other_firm_user", "publisher_user", "other_gov_user", "organizer", "admin",
]


def _login(auth, world, role):
    if role != "anonymous":
        auth.login(getattr(world, role))


VIEW_EXPECTED = {
    "anonymous": 302, "firm_user": 200, "other_firm_user": 404, "publisher_user": 200,
    "other_gov_user": 404, "organizer": 200, "admin": 200,
}


@pytest.mark.parametrize("role", ROLES)
def test_who_sees_a_submitted_response(world, client, auth, role):
    response = submitted(world)
    _login(auth, world, role)
    reply = client.get(f"/responses/{response.id}")
    assert reply.status_code == VIEW_EXPECTED[role]
    if reply.status_code == 200:
        assert "三个月内完成试点" in reply.get_data(as_text=True)


@pytest.mark.parametrize("role", ROLES)
def test_a_draft_is_seen_by_its_organization_only(world, client, auth, role):
    response = service.start_response(world.firm_user, world.need, form_data([world.product.id]))
    _login(auth, world, role)
    reply = client.get(f"/responses/{response.id}")
    expected = {"anonymous": 302, "firm_user": 200}.get(role, 404)
    assert reply.status_code == expected


@pytest.mark.parametrize("role", ROLES)
def test_who_sees_the_publishers_table(world, client, auth, role):
    submitted(world)
    _login(auth, world, role)
    reply = client.get(f"/responses/opportunities/{world.need.id}")
    expected = {"anonymous": 302, "publisher_user": 200, "organizer": 200, "admin": 200}.get(role, 403)
    assert reply.status_code == expected


#: (role, action) → (HTTP status, whether the step happened). A refused step on a response the
#: user may see is flashed on its page (302); a response the user may not see is a 404.
ACTION_EXPECTED = {
    "anonymous": {"submit": (302, False), "withdraw": (302, False), "select": (302, False)},
    "firm_user": {"submit": (302, True), "withdraw": (302, True), "select": (302, False)},
    "other_firm_user": {"submit": (404, False), "withdraw": (404, False), "select": (404, False)},
    "publisher_user": {"submit": (404, False), "withdraw": (302, False), "select": (302, True)},
    "other_gov_user": {"submit": (404, False), "withdraw": (404, False), "select": (404, False)},
    "organizer": {"submit": (404, False), "withdraw": (302, False), "select": (302, True)},
    "admin": {"submit": (404, False), "withdraw": (302, False), "select": (302, True)},
}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("action", ["submit", "withdraw", "select"])
def test_action_permission_matrix(world, client, auth, role, action):
    status = "draft" if action == "submit" else "submitted"
    response = service.start_response(world.firm_user, world.need, form_data([world.product.id]),
                                      submit_now=status == "submitted")
    _login(auth, world, role)
    reply = auth.post(f"/responses/{response.id}/{action}", {"comment": "意见"})
    code, happened = ACTION_EXPECTED[role][action]
    assert reply.status_code == code
    assert response.status == (service.TRANSITIONS[action].target if happened else status)


def test_a_post_without_csrf_token_is_refused(world, client, auth):
    response = service.start_response(world.firm_user, world.need, form_data([world.product.id]))
    auth.login(world.firm_user)
    reply = client.post(f"/responses/{response.id}/submit", data={})
    assert reply.status_code == 400
    assert response.status == ResponseStatus.DRAFT


# ---------------------------------------------------------------- pages: the firm's journey


def test_answer_through_the_form_and_see_it_in_my_responses(world, client, auth, db):
    auth.login(world.firm_user)
    page = client.get(f"/opportunities/{world.need.id}").get_data(as_text=True)
    assert "我要答题" in page and "组建联合体答题" in page
    form_page = client.get(f"/responses/opportunities/{world.need.id}/new").get_data(as_text=True)
    assert world.product.name in form_page and world.other_product.name not in form_page
    data = form_data([world.product.id], submit_response="提交答题")
    data["attachment"] = (io.BytesIO(PDF), "实施方案.pdf")
    reply = auth.post(f"/responses/opportunities/{world.need.id}/new", data)
    assert reply.status_code == 302
    response = db.session.scalars(select(Response)).one()
    assert response.status == ResponseStatus.SUBMITTED
    assert response.attachment.original_name == "实施方案.pdf"
    assert response.attachment.content_type == "application/pdf"
    mine = client.get("/responses/mine").get_data(as_text=True)
    assert world.need.title in mine and "已提交" in mine
    # The need's page now links to the existing response instead of offering a second one.
    page = client.get(f"/opportunities/{world.need.id}").get_data(as_text=True)
    assert "查看我的答题" in page and "我要答题" not in page


def test_form_errors_keep_the_input(world, client, auth, db):
    auth.login(world.firm_user)
    data = form_data([world.product.id], summary="太短", submit_response="提交答题")
    reply = auth.post(f"/responses/opportunities/{world.need.id}/new", data)
    html = reply.get_data(as_text=True)
    assert reply.status_code == 200
    assert "方案摘要应为50–3000个字" in html
    assert "13800000000" in html and "88.5" in html
    assert db.session.scalar(select(func.count()).select_from(Response)) == 0


def test_government_users_see_why_they_cannot_answer(world, client, auth):
    auth.login(world.other_gov_user)
    page = client.get(f"/opportunities/{world.need.id}").get_data(as_text=True)
    assert "政府部门不能答题" in page and "我要答题" not in page
    assert client.get(f"/responses/opportunities/{world.need.id}/new").status_code == 403


def test_closed_needs_offer_no_answer_button(world, client, auth, clock):
    clock.set("2027-01-02 09:00:00")
    auth.login(world.firm_user)
    page = client.get(f"/opportunities/{world.need.id}").get_data(as_text=True)
    assert "已截止" in page and "我要答题" not in page
    assert client.get(f"/responses/opportunities/{world.need.id}/new").status_code == 409


def test_publisher_reviews_from_its_table(world, client, auth):
    response = submitted(world)
    auth.login(world.publisher_user)
    table = client.get(f"/responses/opportunities/{world.need.id}").get_data(as_text=True)
    assert world.firm.name in table and "88.5 万元" in table
    reply = auth.post(f"/responses/{response.id}/select", {"comment": "方案最优", "next_view": "opportunity"})
    assert reply.status_code == 302
    assert reply.headers["Location"].endswith(f"/responses/opportunities/{world.need.id}")
    assert response.status == ResponseStatus.SELECTED


# ---------------------------------------------------------------- privacy


def test_responses_never_leak_to_public_pages_search_or_the_api(world, client, make):
    secret = "保密报价说明：含三年运维费用共计八十八万元整"
    service.start_response(world.firm_user, world.need, form_data([world.product.id], delivery_plan=secret),
                           submit_now=True)
    draft_need = make.opportunity(world.publisher, status=EntryStatus.PUBLISHED, title="智慧路灯节能改造需求")
    service.start_response(world.firm_user, draft_need, form_data([world.product.id]))
    urls = [
        "/", "/opportunities", f"/opportunities/{world.need.id}", f"/products/{world.product.id}",
        "/search?q=运维费用", "/search?q=试点", "/api/v1/search?q=运维费用&side=opportunities",
        f"/api/v1/opportunities/{world.need.id}/products",
    ]
    for url in urls:
        body = client.get(url).get_data(as_text=True)
        assert secret not in body and "三个月内完成试点" not in body, url
        assert "已提交" not in body, url


def test_other_firms_do_not_see_responses_in_their_lists(world, client, auth):
    submitted(world)
    auth.login(world.other_firm_user)
    assert world.need.title not in client.get("/responses/mine").get_data(as_text=True)
    page = client.get(f"/opportunities/{world.need.id}").get_data(as_text=True)
    assert "已收到" not in page and world.firm.name not in page


def test_selected_firm_is_shown_publicly_as_winner(world, client):
    response = submitted(world)
    service.transition(world.publisher_user, response, "select", "内部意见：价格最低")
    page = client.get(f"/opportunities/{world.need.id}").get_data(as_text=True)
    assert "已揭榜" in page and world.firm.name in page
    assert "内部意见" not in page and "三个月内完成试点" not in page
    listing = client.get("/opportunities").get_data(as_text=True)
    assert "已揭榜" in listing


# ---------------------------------------------------------------- attachments


def _upload(client, auth, world, payload: bytes, name: str):
    auth.login(world.firm_user)
    data = form_data([world.product.id])
    data["attachment"] = (io.BytesIO(payload), name)
    return auth.post(f"/responses/opportunities/{world.need.id}/new", data)


@pytest.mark.parametrize(
    ("payload", "name", "message"),
    [
        (PNG, "方案.pdf", "只接受 PDF 文件"),
        (b"", "空文件.pdf", "文件为空"),
        (PDF, "../../x.pdf", "文件名不能包含路径"),
        (PDF, "..\\..\\x.pdf", "文件名不能包含路径"),
        (b"%PDF-1.4\n" + b"0" * (1024 * 1024), "大文件.pdf", "文件不能超过 1 MB"),
    ],
)
def test_bad_attachments_get_a_form_error(world, client, auth, db, app, monkeypatch, payload, name, message):
    monkeypatch.setitem(app.config, "MAX_UPLOAD_MB", 1)
    reply = _upload(client, auth, world, payload, name)
    html = reply.get_data(as_text=True)
    assert reply.status_code == 200
    assert message in html
    assert "13800000000" in html  # the rest of the input is kept
    assert db.session.scalar(select(func.count()).select_from(Response)) == 0
    assert db.session.scalar(select(func.count()).select_from(StoredFile)) == 0


def test_a_real_pdf_is_stored_outside_the_web_root_under_a_random_name(world, client, auth, db, app):
    reply = _upload(client, auth, world, PDF, "实施方案.pdf")
    assert reply.status_code == 302
    stored = db.session.scalars(select(StoredFile)).one()
    path = uploads.open_file(stored)
    assert path.read_bytes() == PDF
    assert str(path).startswith(app.config["UPLOAD_DIR"])
    assert "实施方案" not in path.name and len(stored.storage_name) == 32
    assert stored.size == len(PDF) and stored.owner_organization_id == world.firm.id


@pytest.mark.parametrize("role", ROLES)
def test_attachment_download_permission(world, client, auth, db, app, role):
    _upload(client, auth, world, PDF, "实施方案.pdf")
    response = db.session.scalars(select(Response)).one()
    service.transition(world.firm_user, response, "submit")
    viewer = app.test_client()
    # Requests share the test's app context, where Flask-Login and Flask-WTF cache the user and token.
    g.pop("_login_user", None)
    g.pop("csrf_token", None)
    _login(AuthActions(viewer), world, role)
    reply = viewer.get(f"/responses/{response.id}/attachment")
    expected = {"anonymous": 302, "firm_user": 200, "publisher_user": 200, "organizer": 200, "admin": 200}
    assert reply.status_code == expected.get(role, 404)
    if reply.status_code == 200:
        assert reply.data == PDF
        assert reply.headers["X-Content-Type-Options"] == "nosniff"
        assert reply.headers["Content-Disposition"].startswith("attachment")
        assert reply.mimetype == "application/pdf"


def test_replacing_an_attachment_deletes_the_old_file(world, client, auth, db):
    _upload(client, auth, world, PDF, "v1.pdf")
    response = db.session.scalars(select(Response)).one()
    old = response.attachment
    old_path = uploads.open_file(old)
    data = form_data([world.product.id])
    data["attachment"] = (io.BytesIO(PDF + b"%v2\n"), "v2.pdf")
    assert auth.post(f"/responses/{response.id}/edit", data).status_code == 302
    db.session.refresh(response)
    assert response.attachment.original_name == "v2.pdf"
    assert not old_path.exists()
    assert db.session.scalar(select(func.count()).select_from(StoredFile)) == 1


def test_sniffing_ignores_names_and_declared_types():
    assert uploads.sniff(PDF[:16]) == "application/pdf"
    assert uploads.sniff(PNG[:16]) == "image/png"
    assert uploads.sniff(b"GIF89a") is None


def test_missing_file_bytes_give_404(world, client, auth, db):
    _upload(client, auth, world, PDF, "实施方案.pdf")
    response = db.session.scalars(select(Response)).one()
    uploads.open_file(response.attachment).unlink()
    assert client.get(f"/responses/{response.id}/attachment").status_code == 404
    with pytest.raises(NotFound):
        uploads.open_file(response.attachment)


@pytest.mark.parametrize("field", ["summary", "delivery_plan", "contact_name", "contact_phone", "quote"])
def test_nul_bytes_are_refused_not_500(world, client, auth, db, field):
    auth.login(world.firm_user)
    data = form_data([world.product.id], submit_response="提交答题")
    data[field] = data[field] + "\x00" if data[field] else "\x00"
    reply = auth.post(f"/responses/opportunities/{world.need.id}/new", data)
    assert reply.status_code == 400  # refused site-wide (marketplace/security.py)
    assert db.session.scalar(select(func.count()).select_from(Response)) == 0


@pytest.mark.parametrize("product_ids", [["abc"], ["99999999999999999999"], ["-1"]])
def test_malformed_product_ids_are_form_errors(world, client, auth, db, product_ids):
    auth.login(world.firm_user)
    reply = auth.post(f"/responses/opportunities/{world.need.id}/new", form_data(product_ids))
    assert reply.status_code == 200
    assert db.session.scalar(select(func.count()).select_from(Response)) == 0


def test_huge_ids_are_404(world, client, auth):
    auth.login(world.firm_user)
    for url in ("/responses/99999999999", "/responses/opportunities/99999999999/new",
                "/responses/consortia/99999999999", "/responses/2147483647/attachment"):
        assert client.get(url).status_code == 404, url

"""Admins create organizer accounts in the back office (issue 11 §2): with an initial password,
or with an emailed single-use link to set one (the reset mechanism, valid ``INVITATION_DAYS``).
Only the role admin may."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from marketplace import timeutil
from marketplace.models import AccountToken, AuditEvent, EmailOutbox, Role, User
from marketplace.services import accounts
from marketplace.services.errors import PermissionDenied
from tests.marketplace.test_account_members import browser_for
from tests.marketplace.test_security import isolated

LINK = re.compile(r"http://[^/\s]+(/auth/reset/[A-Za-z0-9_-]+)")
PASSWORD = "lantern-river-2031"
NOW = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)


@pytest.fixture
def people(make):
    org = make.org()
    return {
        "member": make.user(org),
        "org_admin": make.user(org, org_admin=True),
        "organizer": make.organizer(),
        "admin": make.admin(),
    }


def create(client, **overrides):
    data = {"name": "黄敏", "email": "huangmin@jxdrc.gov.cn", "phone": "0791-88915678",
            "password_mode": "link", "password": "", "confirm": ""}
    data.update(overrides)
    return isolated(client, "POST", "/admin/users/new", data=data)


def users_with(db, email: str) -> list[User]:
    db.session.expire_all()
    return list(db.session.scalars(select(User).where(User.email == email)))


@pytest.mark.parametrize(
    ("who", "status"),
    [(None, 302), ("member", 403), ("org_admin", 403), ("organizer", 403), ("admin", 200)],
)
def test_new_organizer_page_permission_matrix(app, people, who, status):
    response = isolated(browser_for(app, people.get(who)), "GET", "/admin/users/new")
    assert response.status_code == status


@pytest.mark.parametrize("who", [None, "member", "org_admin", "organizer"])
def test_only_admins_can_create_organizers(app, db, people, who):
    create(browser_for(app, people.get(who)))
    assert users_with(db, "huangmin@jxdrc.gov.cn") == []


def test_the_service_refuses_non_admins_too(people):
    with pytest.raises(PermissionDenied):
        accounts.create_staff_account(people["organizer"], "x@jxdrc.gov.cn", "某某", password=PASSWORD)


def test_users_page_offers_the_form(app, people):
    html = isolated(browser_for(app, people["admin"]), "GET", "/admin/users").get_data(as_text=True)
    assert "/admin/users/new" in html and "新建组织方账号" in html


def test_admin_creates_an_organizer_with_an_initial_password(app, db, people):
    response = create(browser_for(app, people["admin"]), password_mode="password", password=PASSWORD,
                      confirm=PASSWORD)
    assert response.status_code == 302
    [user] = users_with(db, "huangmin@jxdrc.gov.cn")
    assert (user.role, user.name, user.phone, user.organization_id) == (
        Role.ORGANIZER, "黄敏", "0791-88915678", None)
    login = isolated(app.test_client(), "POST", "/auth/login",
                     data={"email": "huangmin@jxdrc.gov.cn", "password": PASSWORD})
    assert login.headers["Location"] == "/admin/"
    action = select(AuditEvent.action).where(AuditEvent.object_id == user.id,
                                             AuditEvent.object_type == "user")
    assert db.session.scalar(action) == "user.create"


def test_admin_creates_an_organizer_who_sets_the_password_by_email(app, db, people, monkeypatch):
    clock = {"now": NOW}
    monkeypatch.setattr(timeutil, "now_utc", lambda: clock["now"])
    assert create(browser_for(app, people["admin"])).status_code == 302
    [user] = users_with(db, "huangmin@jxdrc.gov.cn")
    [email] = db.session.scalars(select(EmailOutbox).where(EmailOutbox.recipient == user.email)).all()
    assert email.subject == "【全景江西】您的平台账号已创建，请设置密码"
    assert "2026-12-08 10:00（北京时间）" in email.body  # INVITATION_DAYS, not the 2-hour reset window
    path = LINK.search(email.body).group(1)
    clock["now"] = NOW + timedelta(days=6)
    response = isolated(app.test_client(), "POST", path, data={"password": PASSWORD, "confirm": PASSWORD})
    assert response.status_code == 302
    login = isolated(app.test_client(), "POST", "/auth/login",
                     data={"email": "huangmin@jxdrc.gov.cn", "password": PASSWORD})
    assert login.status_code == 302


def test_nobody_knows_the_password_of_an_account_waiting_for_its_link(db, people):
    user = accounts.create_staff_account(people["admin"], "wu@jxdrc.gov.cn", "吴刚")
    assert db.session.scalar(select(func.count()).select_from(AccountToken)) == 1
    assert not accounts.authenticate("wu@jxdrc.gov.cn", "")
    assert user.password_hash and not user.check_password("wu@jxdrc.gov.cn")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"email": "taken@jxdrc.gov.cn"}, "该邮箱已注册"),
        ({"email": "not-an-email"}, "邮箱格式不正确"),
        ({"name": ""}, "请填写姓名"),
        ({"password_mode": "password"}, "请设置初始密码"),
        ({"password_mode": "password", "password": "1234567890", "confirm": "1234567890"}, "常见"),
        ({"password_mode": "password", "password": PASSWORD, "confirm": "other-passphrase-9"},
         "两次输入的密码不一致"),
        ({"password_mode": "sms"}, "请选择有效的方式"),
        ({"phone": "abc"}, "请输入有效的电话号码"),
    ],
    ids=["taken", "bad-email", "no-name", "no-password", "common", "mismatch", "bad-mode", "bad-phone"],
)
def test_new_organizer_form_refusals_show_beside_the_fields(app, db, make, people, overrides, message):
    make.organizer(email="taken@jxdrc.gov.cn")
    response = create(browser_for(app, people["admin"]), **overrides)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert message in html
    if overrides.get("name", "x"):
        assert 'value="黄敏"' in html  # input kept
    assert users_with(db, "huangmin@jxdrc.gov.cn") == []


def test_new_organizer_form_needs_the_csrf_token(app, db, people):
    client = browser_for(app, people["admin"])
    with app.app_context():
        response = client.post("/admin/users/new", data={"name": "黄敏", "email": "huangmin@jxdrc.gov.cn",
                                                         "password_mode": "link"})
    assert response.status_code == 400
    assert users_with(db, "huangmin@jxdrc.gov.cn") == []

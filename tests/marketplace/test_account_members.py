"""An organization's 管理员 and colleagues (issue 11 §2): the first user is the 管理员; they
invite colleagues by email, cancel invitations, remove colleagues and hand the role over.
Organizers and admins do the same for any organization from the admin organization page.

Permission matrices use the roles that exist for an organization's members page: anonymous,
the organization's 管理员, a colleague (member, not 管理员), a member and a 管理员 of another
organization, organizer, admin. (There is no "publisher of the related need" for this object.)
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from marketplace import timeutil
from marketplace.models import AccountToken, AuditEvent, EmailOutbox, Organization, Role, User
from marketplace.services import accounts
from tests import factories
from tests.marketplace.test_auth import registration
from tests.marketplace.test_security import isolated, logged_in

INVITE_LINK = re.compile(r"http://[^/\s]+(/auth/invitation/[A-Za-z0-9_-]+)")
NEW_PASSWORD = "lantern-river-2031"
NOW = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)


@pytest.fixture
def org(make):
    return make.org(name="江西赣数科技有限公司")


@pytest.fixture
def people(make, org):
    """One user per role of the matrix (the organization's 管理员 first)."""
    other_org = make.org(name="赣州市智慧城市运营有限公司")
    return {
        "org_admin": make.user(org, name="刘洋", email="liuyang@gsdata.cn", org_admin=True),
        "colleague": make.user(org, name="陈静", email="chenjing@gsdata.cn"),
        "other_member": make.user(other_org, email="zhao@gzcity.cn"),
        "other_admin": make.user(other_org, email="qian@gzcity.cn", org_admin=True),
        "organizer": make.organizer(email="organizer@jxdata.gov.cn"),
        "admin": make.admin(email="admin@jxdata.gov.cn"),
    }


def browser_for(app, user):
    """A test client signed in as ``user`` (None: anonymous)."""
    client = app.test_client()
    if user is not None:
        response = isolated(client, "POST", "/auth/login",
                            data={"email": user.email, "password": factories.PASSWORD})
        assert response.status_code == 302
    return client


def emails_to(db, address: str) -> list[EmailOutbox]:
    db.session.expire_all()
    return list(db.session.scalars(
        select(EmailOutbox).where(EmailOutbox.recipient == address).order_by(EmailOutbox.id)
    ))


def invite(client, org_id: int, email: str):
    return isolated(client, "POST", f"/auth/organizations/{org_id}/invitations", data={"email": email})


def invitation_path(db, address: str) -> str:
    return INVITE_LINK.search(emails_to(db, address)[-1].body).group(1)


def accept(client, path: str, name: str = "孙磊", password: str = NEW_PASSWORD):
    return isolated(client, "POST", path, data={"name": name, "phone": "13907910002",
                                                "password": password, "confirm": password})


def count(db, model, *where) -> int:
    db.session.expire_all()
    return db.session.scalar(select(func.count()).select_from(model).where(*where))


# ---------------------------------------------------------------- who is the 管理员


def test_the_registering_user_becomes_the_organizations_admin(auth, db):
    auth.post("/auth/register", registration())
    user = db.session.scalar(select(User).where(User.email == "lina@gsdata.cn"))
    assert user.org_admin


def test_created_members_become_admin_only_when_their_organization_has_none(make, org):
    first = accounts.create_user("a@gsdata.cn", NEW_PASSWORD, "甲", organization=org)
    second = accounts.create_user("b@gsdata.cn", NEW_PASSWORD, "乙", organization=org)
    assert (first.org_admin, second.org_admin) == (True, False)


def test_ensure_org_admins_promotes_the_earliest_active_user_of_each_organization(db, make, org):
    gone = make.user(org, active=False)
    first, later = make.user(org), make.user(org)
    other = make.org()
    has_admin = make.user(other, org_admin=True)
    make.user(other)
    assert accounts.ensure_org_admins() == 1
    db.session.commit()
    db.session.expire_all()
    assert [u.org_admin for u in (gone, first, later, has_admin)] == [False, True, False, True]


def test_seeding_gives_each_seeded_organization_an_admin(app, db, runner):
    runner.invoke(args=["seed"])
    orgs_with_users = db.session.scalar(
        select(func.count(func.distinct(User.organization_id))).where(User.organization_id.is_not(None)))
    assert orgs_with_users > 0
    assert count(db, User, User.org_admin.is_(True)) == orgs_with_users


# ---------------------------------------------------------------- the members page


@pytest.mark.parametrize(
    ("who", "status", "can_invite"),
    [
        (None, 302, False),
        ("org_admin", 200, True),
        ("colleague", 200, False),
        ("other_member", 403, False),
        ("other_admin", 403, False),
        ("organizer", 200, True),
        ("admin", 200, True),
    ],
)
def test_members_page_permission_matrix(app, org, people, who, status, can_invite):
    client = browser_for(app, people.get(who))
    response = isolated(client, "GET", f"/auth/organizations/{org.id}/members")
    assert response.status_code == status
    if status == 302:
        assert "/auth/login" in response.headers["Location"]
    if status == 200:
        html = response.get_data(as_text=True)
        assert "刘洋" in html and "陈静" in html and "zhao@gzcity.cn" not in html
        assert ('id="invite"' in html) is can_invite
        assert ("移出本单位" in html) is can_invite


def test_members_shortcut_leads_to_the_own_organization(app, org, people):
    response = isolated(browser_for(app, people["colleague"]), "GET", "/auth/organization/members")
    assert response.headers["Location"] == f"/auth/organizations/{org.id}/members"


def test_unknown_organization_is_a_404(app, people):
    response = isolated(browser_for(app, people["admin"]), "GET", "/auth/organizations/999999/members")
    assert response.status_code == 404


def test_admin_organization_page_links_to_the_members_page(app, org, people):
    html = isolated(browser_for(app, people["organizer"]), "GET", f"/admin/organizations/{org.id}").get_data(
        as_text=True)
    assert f"/auth/organizations/{org.id}/members" in html and "管理员" in html


# ---------------------------------------------------------------- invitations


@pytest.mark.parametrize(
    ("who", "allowed"),
    [(None, False), ("org_admin", True), ("colleague", False), ("other_member", False),
     ("other_admin", False), ("organizer", True), ("admin", True)],
)
def test_invite_permission_matrix(app, db, org, people, who, allowed):
    response = invite(browser_for(app, people.get(who)), org.id, "sunlei@gsdata.cn")
    assert count(db, AccountToken) == (1 if allowed else 0)
    if who is None:
        assert response.status_code == 302 and "/auth/login" in response.headers["Location"]
    elif allowed:
        assert response.headers["Location"] == f"/auth/organizations/{org.id}/members"
    else:
        assert response.status_code == 403


def test_an_invitation_emails_a_link_valid_for_seven_days(app, db, org, people, monkeypatch):
    monkeypatch.setattr(timeutil, "now_utc", lambda: NOW)
    invite(browser_for(app, people["org_admin"]), org.id, " SunLei@GSDATA.cn ")
    [email] = emails_to(db, "sunlei@gsdata.cn")
    assert email.subject == "【全景江西】邀请您加入「江西赣数科技有限公司」"
    assert "刘洋（江西赣数科技有限公司）邀请您" in email.body
    assert "2026-12-08 10:00（北京时间）" in email.body
    token = db.session.scalar(select(AccountToken))
    assert (token.purpose, token.organization_id, token.created_by_id) == ("invite", org.id,
                                                                          people["org_admin"].id)
    assert INVITE_LINK.search(email.body).group(1).rsplit("/", 1)[1] not in token.token_hash


def test_pending_invitations_are_listed_for_the_manager(app, db, org, people):
    admin = browser_for(app, people["org_admin"])
    invite(admin, org.id, "sunlei@gsdata.cn")
    html = isolated(admin, "GET", f"/auth/organizations/{org.id}/members").get_data(as_text=True)
    assert "sunlei@gsdata.cn" in html and "取消邀请" in html


def test_accepting_an_invitation_creates_a_member_of_that_organization(app, db, org, people):
    invite(browser_for(app, people["org_admin"]), org.id, "sunlei@gsdata.cn")
    path = invitation_path(db, "sunlei@gsdata.cn")
    newcomer = app.test_client()
    page = isolated(newcomer, "GET", path)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "江西赣数科技有限公司" in html and "sunlei@gsdata.cn" in html
    assert page.headers["Cache-Control"] == "private, no-store"
    organizations = count(db, Organization)
    response = accept(newcomer, path)
    assert response.status_code == 302 and response.headers["Location"] == "/my/"
    user = db.session.scalar(select(User).where(User.email == "sunlei@gsdata.cn"))
    assert (user.organization_id, user.role, user.org_admin) == (org.id, Role.MEMBER, False)
    assert user.name == "孙磊"
    assert count(db, Organization) == organizations  # no new organization
    assert logged_in(newcomer)
    assert "孙磊（sunlei@gsdata.cn）已接受邀请" in emails_to(db, "liuyang@gsdata.cn")[-1].body
    assert db.session.scalar(select(AuditEvent.action).where(AuditEvent.actor_id == user.id)) == "org.join"


def test_an_invitation_link_is_single_use(app, db, org, people):
    invite(browser_for(app, people["org_admin"]), org.id, "sunlei@gsdata.cn")
    path = invitation_path(db, "sunlei@gsdata.cn")
    accept(app.test_client(), path)
    response = accept(app.test_client(), path, name="冒名者")
    assert response.status_code == 410
    assert count(db, User, User.email == "sunlei@gsdata.cn") == 1


def test_an_invitation_expires_after_the_configured_days(app, db, org, people, monkeypatch):
    clock = {"now": NOW}
    monkeypatch.setattr(timeutil, "now_utc", lambda: clock["now"])
    invite(browser_for(app, people["org_admin"]), org.id, "sunlei@gsdata.cn")
    path = invitation_path(db, "sunlei@gsdata.cn")
    clock["now"] = NOW + timedelta(days=7, seconds=-1)
    assert isolated(app.test_client(), "GET", path).status_code == 200
    clock["now"] = NOW + timedelta(days=7)
    response = accept(app.test_client(), path)
    assert response.status_code == 410
    assert "该链接已过期" in response.get_data(as_text=True)
    assert count(db, User, User.email == "sunlei@gsdata.cn") == 0


def test_the_invitation_form_applies_the_password_rule(app, db, org, people):
    invite(browser_for(app, people["org_admin"]), org.id, "sunlei@gsdata.cn")
    path = invitation_path(db, "sunlei@gsdata.cn")
    response = accept(app.test_client(), path, password="gsdata-sunlei")  # the org's and email's words
    assert response.status_code == 200 and "invalid-feedback" in response.get_data(as_text=True)
    assert count(db, User, User.email == "sunlei@gsdata.cn") == 0


def test_a_signed_in_visitor_is_asked_to_sign_out_first(app, db, org, people):
    invite(browser_for(app, people["org_admin"]), org.id, "sunlei@gsdata.cn")
    path = invitation_path(db, "sunlei@gsdata.cn")
    html = isolated(browser_for(app, people["other_member"]), "GET", path).get_data(as_text=True)
    assert "请先退出" in html and 'name="password"' not in html


def test_inviting_again_replaces_the_pending_invitation(app, db, org, people):
    admin = browser_for(app, people["org_admin"])
    invite(admin, org.id, "sunlei@gsdata.cn")
    first = invitation_path(db, "sunlei@gsdata.cn")
    invite(admin, org.id, "sunlei@gsdata.cn")
    assert isolated(app.test_client(), "GET", first).status_code == 410
    assert isolated(app.test_client(), "GET", invitation_path(db, "sunlei@gsdata.cn")).status_code == 200


def test_inviting_a_colleague_already_in_the_organization_is_refused_beside_the_field(app, db, org, people):
    response = invite(browser_for(app, people["org_admin"]), org.id, "chenjing@gsdata.cn")
    assert response.status_code == 200
    assert "该邮箱已是本单位的账号" in response.get_data(as_text=True)
    assert count(db, AccountToken) == 0


def test_inviting_an_address_with_an_account_elsewhere_reveals_nothing(app, db, org, people):
    """The inviter sees the usual answer; the address's owner is told why they cannot join."""
    response = invite(browser_for(app, people["org_admin"]), org.id, "zhao@gzcity.cn")
    assert response.status_code == 302
    [email] = emails_to(db, "zhao@gzcity.cn")
    assert "一个账号只能属于一个单位" in email.body and "/auth/invitation/" not in email.body


def test_an_invitation_to_an_address_that_registered_meanwhile_cannot_be_accepted(app, db, make, org, people):
    invite(browser_for(app, people["org_admin"]), org.id, "sunlei@gsdata.cn")
    path = invitation_path(db, "sunlei@gsdata.cn")
    make.user(make.org(), email="sunlei@gsdata.cn")
    response = isolated(app.test_client(), "GET", path)
    assert response.status_code == 410 and "该邮箱已有平台账号" in response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("who", "allowed"),
    [("org_admin", True), ("colleague", False), ("other_admin", False), ("organizer", True), ("admin", True)],
)
def test_cancel_invitation_permission_matrix(app, db, org, people, who, allowed):
    invite(browser_for(app, people["org_admin"]), org.id, "sunlei@gsdata.cn")
    path = invitation_path(db, "sunlei@gsdata.cn")
    token = db.session.scalar(select(AccountToken))
    client = browser_for(app, people[who])
    response = isolated(client, "POST", f"/auth/invitations/{token.id}/cancel", data={})
    assert response.status_code == (302 if allowed else 403)
    assert isolated(app.test_client(), "GET", path).status_code == (410 if allowed else 200)


def test_cancelling_twice_explains_instead_of_failing(app, db, org, people):
    admin = browser_for(app, people["org_admin"])
    invite(admin, org.id, "sunlei@gsdata.cn")
    token = db.session.scalar(select(AccountToken))
    isolated(admin, "POST", f"/auth/invitations/{token.id}/cancel", data={})
    response = isolated(admin, "POST", f"/auth/invitations/{token.id}/cancel", data={})
    assert response.status_code == 302
    page = isolated(admin, "GET", response.headers["Location"]).get_data(as_text=True)
    assert "不能取消邀请" in page


@pytest.mark.parametrize(
    "token", ["x", "B" * 43, "C" * 200, "%E5%81%9C" * 8], ids=["short", "unknown", "long", "chinese"]
)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_malformed_or_unknown_invitation_tokens_are_a_404_page(app, token, method):
    response = isolated(app.test_client(), method, f"/auth/invitation/{token}", data={})
    assert response.status_code == 404 and "链接无效" in response.get_data(as_text=True)


@pytest.mark.parametrize("url", ["/auth/invitations/{id}/cancel", "/auth/invitations/99999999999/cancel"])
def test_unknown_invitation_ids_are_a_404(app, db, org, people, url):
    response = isolated(browser_for(app, people["admin"]), "POST", url.format(id=424242), data={})
    assert response.status_code == 404


# ---------------------------------------------------------------- removing colleagues


@pytest.mark.parametrize(
    ("who", "status"),
    [(None, 302), ("org_admin", 302), ("colleague", 403), ("other_member", 403), ("other_admin", 403),
     ("organizer", 302), ("admin", 302)],
)
def test_remove_colleague_permission_matrix(app, db, org, people, who, status):
    victim = factories.user(org, name="周伟")
    client = browser_for(app, people.get(who))
    response = isolated(client, "POST", f"/auth/members/{victim.id}/remove", data={})
    assert response.status_code == status
    db.session.expire_all()
    removed = who not in (None, "colleague", "other_member", "other_admin")
    assert db.session.get(User, victim.id).active is (not removed)


def test_removing_a_colleague_ends_their_sessions_and_tells_them(app, db, org, people):
    colleague = browser_for(app, people["colleague"])
    assert logged_in(colleague)
    response = isolated(browser_for(app, people["org_admin"]), "POST",
                        f"/auth/members/{people['colleague'].id}/remove", data={})
    assert response.headers["Location"] == f"/auth/organizations/{org.id}/members"
    assert not logged_in(colleague)
    assert "已将您移出本单位" in emails_to(db, "chenjing@gsdata.cn")[-1].body
    assert isolated(app.test_client(), "POST", "/auth/login",
                    data={"email": "chenjing@gsdata.cn", "password": factories.PASSWORD}).status_code == 200


def test_the_admin_cannot_remove_themselves(app, db, org, people):
    admin = browser_for(app, people["org_admin"])
    response = isolated(admin, "POST", f"/auth/members/{people['org_admin'].id}/remove", data={})
    assert response.status_code == 302
    assert "不能移出自己" in isolated(admin, "GET", response.headers["Location"]).get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(User, people["org_admin"].id).active


def test_staff_cannot_remove_the_last_admin(app, db, org, people):
    organizer = browser_for(app, people["organizer"])
    response = isolated(organizer, "POST", f"/auth/members/{people['org_admin'].id}/remove", data={})
    page = isolated(organizer, "GET", response.headers["Location"]).get_data(as_text=True)
    assert "请先将管理员权限移交给其他同事" in page
    db.session.expire_all()
    assert db.session.get(User, people["org_admin"].id).active


def test_member_actions_on_staff_accounts_or_unknown_ids_are_refused(app, people):
    admin = browser_for(app, people["admin"])
    staff_url = f"/auth/members/{people['organizer'].id}/remove"
    assert isolated(admin, "POST", staff_url, data={}).status_code == 404
    assert isolated(admin, "POST", "/auth/members/999999/remove", data={}).status_code == 404
    assert isolated(admin, "POST", f"/auth/members/{people['colleague'].id}/promote",
                    data={}).status_code == 404


# ---------------------------------------------------------------- handing over the role


def test_handing_over_makes_the_colleague_the_only_admin(app, db, org, people):
    admin = browser_for(app, people["org_admin"])
    response = isolated(admin, "POST", f"/auth/members/{people['colleague'].id}/make_admin", data={})
    assert response.status_code == 302
    db.session.expire_all()
    assert db.session.get(User, people["colleague"].id).org_admin
    assert not db.session.get(User, people["org_admin"].id).org_admin
    assert "您已成为「江西赣数科技有限公司」的管理员" in emails_to(db, "chenjing@gsdata.cn")[-1].subject
    # the former admin can no longer invite
    assert invite(admin, org.id, "sunlei@gsdata.cn").status_code == 403


@pytest.mark.parametrize(
    ("who", "allowed"),
    [("org_admin", True), ("colleague", False), ("other_admin", False), ("organizer", True), ("admin", True)],
)
def test_hand_over_permission_matrix(app, db, org, people, who, allowed):
    newcomer = factories.user(org, name="周伟")
    response = isolated(browser_for(app, people[who]), "POST", f"/auth/members/{newcomer.id}/make_admin",
                        data={})
    assert response.status_code == (302 if allowed else 403)
    db.session.expire_all()
    assert db.session.get(User, newcomer.id).org_admin is allowed
    assert db.session.scalar(select(func.count()).select_from(User).where(
        User.organization_id == org.id, User.org_admin.is_(True))) == 1


# ---------------------------------------------------------------- CSRF


def state(db) -> tuple[int, int, int, int]:
    return (count(db, AccountToken), count(db, AccountToken, AccountToken.revoked_at.is_(None)),
            count(db, User, User.active.is_(True)), count(db, User, User.org_admin.is_(True)))


@pytest.mark.parametrize(
    "url",
    ["/auth/organizations/{org}/invitations", "/auth/invitations/{token}/cancel",
     "/auth/members/{colleague}/remove", "/auth/members/{colleague}/make_admin", "{invitation}"],
    ids=["invite", "cancel", "remove", "make_admin", "accept"],
)
def test_every_members_post_needs_the_csrf_token(app, db, org, people, url):
    invite(browser_for(app, people["org_admin"]), org.id, "sunlei@gsdata.cn")
    token = db.session.scalar(select(AccountToken))
    url = url.format(org=org.id, token=token.id, colleague=people["colleague"].id,
                     invitation=invitation_path(db, "sunlei@gsdata.cn"))
    client = browser_for(app, None if "invitation/" in url else people["org_admin"])
    before = state(db)
    with app.app_context():
        response = client.post(url, data={"email": "x@gsdata.cn", "name": "孙磊", "phone": "13907910002",
                                          "password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert response.status_code == 400 and "CSRF" in response.get_data(as_text=True)
    assert state(db) == before


# ---------------------------------------------------------------- a real SMTP server


def test_invitation_flow_end_to_end_through_a_local_smtp_server(app, db, org, people, monkeypatch):
    from tests.marketplace.test_mail import SmtpServer, free_port

    server = SmtpServer(free_port())
    monkeypatch.setitem(app.config, "MAIL_SERVER", "127.0.0.1")
    monkeypatch.setitem(app.config, "MAIL_PORT", server.port)
    monkeypatch.setitem(app.config, "MAIL_TIMEOUT", 5)
    server.start()
    try:
        invite(browser_for(app, people["org_admin"]), org.id, "sunlei@gsdata.cn")
        [message] = [m for m in server.inbox.messages if m["To"] == "sunlei@gsdata.cn"]
        assert message["Subject"] == "【全景江西】邀请您加入「江西赣数科技有限公司」"
        path = INVITE_LINK.search(message.get_content()).group(1)
        newcomer = app.test_client()
        assert accept(newcomer, path).status_code == 302
        assert any(m["To"] == "liuyang@gsdata.cn" and "孙磊 已接受邀请" in m["Subject"]
                   for m in server.inbox.messages)
    finally:
        server.stop()
    assert logged_in(newcomer)

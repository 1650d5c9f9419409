"""The password lifecycle (issue 11 §2): change password, 「忘记密码」 and the emailed reset link.

Emails are read from the outbox (``EmailOutbox``); one test delivers them through a local SMTP
server. Links are single use and expire after ``PASSWORD_RESET_HOURS`` (frozen clock).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from marketplace import timeutil
from marketplace.extensions import limiter
from marketplace.models import AccountToken, AuditEvent, EmailOutbox, LoginToken, User
from marketplace.services import accounts
from tests import factories
from tests.conftest import csrf_token
from tests.marketplace.test_mail import SmtpServer, free_port
from tests.marketplace.test_security import cookie_value, isolated, logged_in

NEW_PASSWORD = "lantern-river-2031"
LINK = re.compile(r"http://[^/\s]+(/auth/reset/[A-Za-z0-9_-]+)")
NOW = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)


@pytest.fixture
def clock(monkeypatch):
    """A frozen clock: ``clock.now`` is what the app sees; ``clock.advance(seconds)``."""

    class Clock:
        now = NOW

        def advance(self, seconds: float) -> None:
            self.now = self.now + timedelta(seconds=seconds)

    frozen = Clock()
    monkeypatch.setattr(timeutil, "now_utc", lambda: frozen.now)
    return frozen


@pytest.fixture
def member(make):
    return make.user(make.org(name="江西赣数科技有限公司"), name="刘洋", email="liuyang@gsdata.cn")


def emails_to(db, address: str) -> list[EmailOutbox]:
    db.session.expire_all()
    return list(db.session.scalars(
        select(EmailOutbox).where(EmailOutbox.recipient == address).order_by(EmailOutbox.id)
    ))


def reset_path(db, address: str) -> str:
    """The reset link in the latest email to ``address``."""
    return LINK.search(emails_to(db, address)[-1].body).group(1)


def login(client, email: str, password: str = factories.PASSWORD, remember: bool = False):
    data = {"email": email, "password": password, **({"remember": "y"} if remember else {})}
    return isolated(client, "POST", "/auth/login", data=data)


def request_reset(client, email: str):
    return isolated(client, "POST", "/auth/forgot", data={"email": email})


def reset(client, path: str, password: str = NEW_PASSWORD, confirm: str | None = None):
    return isolated(client, "POST", path, data={"password": password, "confirm": confirm or password})


def change(client, current: str, new: str = NEW_PASSWORD, confirm: str | None = None):
    return isolated(client, "POST", "/auth/password",
                    data={"current_password": current, "password": new, "confirm": confirm or new})


# ---------------------------------------------------------------- change password


def test_change_password_page_needs_a_login(client):
    response = client.get("/auth/password")
    assert response.status_code == 302 and "/auth/login" in response.headers["Location"]


def test_change_password_keeps_this_browser_and_ends_the_others(app, db, member):
    here, there = app.test_client(), app.test_client()
    login(here, member.email)
    login(there, member.email, remember=True)
    response = change(here, factories.PASSWORD)
    assert response.status_code == 302
    assert logged_in(here)
    assert not logged_in(there)
    db.session.expire_all()
    assert db.session.get(User, member.id).check_password(NEW_PASSWORD)


def test_change_password_keeps_a_remembered_login_remembered(app, member):
    browser = app.test_client()
    login(browser, member.email, remember=True)
    response = change(browser, factories.PASSWORD)
    fresh = app.test_client()
    fresh.set_cookie("remember_token", cookie_value(response, "remember_token"))
    assert logged_in(fresh)  # the new remember-me cookie works on its own


def test_old_password_no_longer_logs_in_after_a_change(app, member):
    browser = app.test_client()
    login(browser, member.email)
    change(browser, factories.PASSWORD)
    assert login(app.test_client(), member.email).status_code == 200  # the form again: refused
    assert login(app.test_client(), member.email, NEW_PASSWORD).status_code == 302


def test_change_password_sends_a_notice_and_is_audited(app, db, member):
    browser = app.test_client()
    login(browser, member.email)
    change(browser, factories.PASSWORD)
    [notice] = emails_to(db, member.email)
    assert notice.subject == "【全景江西】您的登录密码已修改"
    assert "所有设备上的登录都已退出" in notice.body and NEW_PASSWORD not in notice.body
    assert db.session.scalar(select(AuditEvent.action).where(AuditEvent.object_id == member.id)) == (
        "user.password_change")


@pytest.mark.parametrize(
    ("current", "new", "confirm", "field_message"),
    [
        ("wrong-password-1", NEW_PASSWORD, None, "当前密码不正确"),
        (factories.PASSWORD, "1234567890", None, "常见"),
        (factories.PASSWORD, "short", None, "至少10位"),
        (factories.PASSWORD, NEW_PASSWORD, "lantern-river-2032", "两次输入的密码不一致"),
        (factories.PASSWORD, factories.PASSWORD, None, "新密码不能与当前密码相同"),
        (factories.PASSWORD, "liuyang-gsdata", None, None),  # built from the email: refused
    ],
    ids=["wrong-current", "common", "short", "mismatch", "same", "from-email"],
)
def test_change_password_refusals_show_beside_the_fields(app, db, member, current, new, confirm,
                                                          field_message):
    browser = app.test_client()
    login(browser, member.email)
    response = change(browser, current, new, confirm)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "invalid-feedback" in html
    if field_message:
        assert field_message in html
    db.session.expire_all()
    assert db.session.get(User, member.id).check_password(factories.PASSWORD)
    assert logged_in(browser)


def test_a_second_session_signed_out_by_a_password_change_stays_out(app, member):
    laptop, phone = app.test_client(), app.test_client()
    login(laptop, member.email)
    login(phone, member.email)
    change(laptop, factories.PASSWORD)
    assert isolated(phone, "GET", "/auth/password").status_code == 302


# ---------------------------------------------------------------- forgotten password: request


def test_login_page_links_to_forgot_password(client):
    assert "/auth/forgot" in client.get("/auth/login").get_data(as_text=True)


def test_reset_request_emails_a_single_use_link(app, db, member, clock):
    response = request_reset(app.test_client(), "LiuYang@GSDATA.cn ")
    assert response.status_code == 302 and response.headers["Location"] == "/auth/login"
    [email] = emails_to(db, member.email)
    assert email.subject == "【全景江西】重置登录密码"
    assert "2026-12-01 12:00（北京时间）" in email.body  # 2 hours after 10:00 Beijing time
    token = db.session.scalar(select(AccountToken))
    assert token.purpose == "reset" and token.user_id == member.id
    raw = reset_path(db, member.email).rsplit("/", 1)[1]
    assert raw not in token.token_hash and len(token.token_hash) == 64  # only the hash is stored


@pytest.mark.parametrize("email", ["nobody@gsdata.cn", "liuyang@gsdata.cn", "inactive@gsdata.cn"])
def test_reset_request_answers_the_same_for_any_address(app, make, member, email):
    """No account discovery: an unknown or deactivated address gets the same page and message."""
    make.user(member.organization, email="inactive@gsdata.cn", active=False)
    browser = app.test_client()
    response = request_reset(browser, email)
    assert response.status_code == 302 and response.headers["Location"] == "/auth/login"
    page = isolated(browser, "GET", "/auth/login").get_data(as_text=True)
    assert "如果该邮箱已在平台注册且账号正常，我们已向它发送了重置密码的链接" in page


def test_reset_request_for_an_unknown_or_inactive_address_sends_nothing(app, db, make, member):
    make.user(member.organization, email="inactive@gsdata.cn", active=False)
    for email in ("nobody@gsdata.cn", "inactive@gsdata.cn"):
        request_reset(app.test_client(), email)
    assert db.session.scalar(select(func.count()).select_from(EmailOutbox)) == 0
    assert db.session.scalar(select(func.count()).select_from(AccountToken)) == 0


@pytest.mark.parametrize("email", ["liuyang@gsdata.cn", "nobody@gsdata.cn"])
def test_the_request_itself_only_queues_the_lookup(app, db, member, monkeypatch, email):
    """Known and unknown addresses cost the request the same work (no timing side channel):
    the lookup, the link and the email happen in the background job."""
    queued = []
    monkeypatch.setattr(accounts.jobs, "enqueue", lambda name, *args: queued.append((name, args)))
    request_reset(app.test_client(), email.upper())
    assert queued == [(accounts.PASSWORD_RESET_JOB, (email,))]
    assert db.session.scalar(select(func.count()).select_from(AccountToken)) == 0


def test_malformed_reset_request_is_refused_beside_the_field(client):
    response = isolated(client, "POST", "/auth/forgot", data={"email": "not-an-email"})
    assert response.status_code == 200
    assert "邮箱格式不正确" in response.get_data(as_text=True)


def test_a_new_reset_link_withdraws_the_previous_one(app, db, member):
    browser = app.test_client()
    request_reset(browser, member.email)
    first = reset_path(db, member.email)
    request_reset(browser, member.email)
    second = reset_path(db, member.email)
    assert first != second
    response = isolated(browser, "GET", first)
    assert response.status_code == 410
    assert "已失效" in response.get_data(as_text=True)
    assert isolated(browser, "GET", second).status_code == 200


# ---------------------------------------------------------------- forgotten password: the link


def test_reset_link_sets_a_new_password_and_ends_every_login(app, db, member):
    signed_in = app.test_client()
    login(signed_in, member.email, remember=True)
    request_reset(app.test_client(), member.email)
    path = reset_path(db, member.email)
    browser = app.test_client()
    page = isolated(browser, "GET", path)
    assert page.status_code == 200
    assert page.headers["Cache-Control"] == "private, no-store"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert member.email in page.get_data(as_text=True)
    response = reset(browser, path)
    assert response.status_code == 302 and response.headers["Location"] == "/auth/login"
    assert not logged_in(signed_in)
    assert login(app.test_client(), member.email, NEW_PASSWORD).status_code == 302
    assert db.session.scalar(select(func.count()).select_from(LoginToken).where(
        LoginToken.revoked_at.is_(None), LoginToken.user_id == member.id)) == 1  # the new login only


def test_reset_sends_a_notice_after_the_link(app, db, member):
    request_reset(app.test_client(), member.email)
    reset(app.test_client(), reset_path(db, member.email))
    subjects = [e.subject for e in emails_to(db, member.email)]
    assert subjects == ["【全景江西】重置登录密码", "【全景江西】您的登录密码已修改"]


def test_reset_link_is_single_use(app, db, member):
    request_reset(app.test_client(), member.email)
    path = reset_path(db, member.email)
    assert reset(app.test_client(), path).status_code == 302
    again = reset(app.test_client(), path, "another-passphrase-77")
    assert again.status_code == 410
    assert "已经使用过" in again.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(User, member.id).check_password(NEW_PASSWORD)


def test_reset_link_expires_after_the_configured_hours(app, db, member, clock):
    request_reset(app.test_client(), member.email)
    path = reset_path(db, member.email)
    clock.advance(2 * 3600 - 1)
    assert isolated(app.test_client(), "GET", path).status_code == 200
    clock.advance(1)
    response = reset(app.test_client(), path)
    assert response.status_code == 410
    html = response.get_data(as_text=True)
    assert "该链接已过期" in html and "/auth/forgot" in html
    db.session.expire_all()
    assert db.session.get(User, member.id).check_password(factories.PASSWORD)


def test_reset_hours_follow_the_setting(app, db, member, clock, monkeypatch):
    monkeypatch.setitem(app.config, "PASSWORD_RESET_HOURS", 0.5)
    request_reset(app.test_client(), member.email)
    path = reset_path(db, member.email)
    clock.advance(31 * 60)
    assert isolated(app.test_client(), "GET", path).status_code == 410


def test_a_password_change_withdraws_pending_reset_links(app, db, member):
    request_reset(app.test_client(), member.email)
    path = reset_path(db, member.email)
    browser = app.test_client()
    login(browser, member.email)
    change(browser, factories.PASSWORD)
    assert isolated(app.test_client(), "GET", path).status_code == 410


def test_a_reset_link_of_a_deactivated_account_is_refused(app, db, make, member):
    request_reset(app.test_client(), member.email)
    path = reset_path(db, member.email)
    accounts.set_user_active(make.admin(), member, False)
    assert reset(app.test_client(), path).status_code == 410
    db.session.expire_all()
    assert db.session.get(User, member.id).check_password(factories.PASSWORD)


def test_reset_form_applies_the_password_rule(app, db, member):
    request_reset(app.test_client(), member.email)
    path = reset_path(db, member.email)
    response = reset(app.test_client(), path, "password123")
    assert response.status_code == 200
    assert "常见" in response.get_data(as_text=True)
    assert isolated(app.test_client(), "GET", path).status_code == 200  # the link is not used up


@pytest.mark.parametrize(
    "token",
    ["x", "A" * 43, "A" * 500, "%E5%81%9C" * 10, "..%2F..%2Fetc", "a b c" * 10, "-" * 43],
    ids=["short", "unknown", "long", "chinese", "dots", "spaces", "dashes"],
)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_malformed_or_unknown_reset_tokens_are_a_404_page(app, token, method):
    response = isolated(app.test_client(), method, f"/auth/reset/{token}", data={})
    assert response.status_code == 404
    if "%2F" not in token:  # a slash is another URL, and the site's 404 page
        assert "链接无效" in response.get_data(as_text=True)


def test_an_invitation_token_is_not_a_reset_token(app, db, make, member):
    member.org_admin = True
    db.session.commit()
    accounts.invite_colleague(member, member.organization, "newcomer@gsdata.cn")
    body = emails_to(db, "newcomer@gsdata.cn")[0].body
    raw = re.search(r"/auth/invitation/([A-Za-z0-9_-]+)", body).group(1)
    assert isolated(app.test_client(), "GET", f"/auth/reset/{raw}").status_code == 404


# ---------------------------------------------------------------- rate limits and CSRF


@pytest.fixture
def limits(app, monkeypatch):
    monkeypatch.setitem(app.config, "RATE_LIMITS_ENABLED", True)
    limiter.reset()
    yield app.config
    limiter.reset()


def test_reset_requests_are_rate_limited_per_address(client, limits, monkeypatch):
    monkeypatch.setitem(limits, "RATELIMIT_PASSWORD_RESET", "3 per minute")
    token = csrf_token(client)
    codes = [client.post("/auth/forgot", data={"email": f"u{i}@example.cn", "csrf_token": token}).status_code
             for i in range(4)]
    assert codes == [302, 302, 302, 429]
    assert "操作过于频繁" in client.post("/auth/forgot", data={"email": "v@example.cn",
                                                             "csrf_token": token}).get_data(as_text=True)


def test_reset_requests_are_rate_limited_per_account_across_addresses(app, limits, monkeypatch, member):
    monkeypatch.setitem(limits, "RATELIMIT_PASSWORD_RESET_ACCOUNT", "2 per hour")
    codes = []
    for n in range(3):
        browser = app.test_client()
        browser.environ_base["REMOTE_ADDR"] = f"10.0.1.{n + 1}"
        codes.append(request_reset(browser, member.email).status_code)
    assert codes == [302, 302, 429]


def test_reset_limits_answer_the_same_for_unknown_addresses(app, limits, monkeypatch):
    monkeypatch.setitem(limits, "RATELIMIT_PASSWORD_RESET_ACCOUNT", "1 per hour")
    codes = [request_reset(app.test_client(), "nobody@example.cn").status_code for _ in range(2)]
    assert codes == [302, 429]


@pytest.mark.parametrize("url", ["/auth/forgot", "/auth/password", "/auth/reset/{token}"])
def test_every_password_form_needs_the_csrf_token(app, db, member, url):
    request_reset(app.test_client(), member.email)
    url = url.format(token=reset_path(db, member.email).rsplit("/", 1)[1])
    browser = app.test_client()
    login(browser, member.email)
    with app.app_context():
        response = browser.post(url, data={"email": member.email, "current_password": factories.PASSWORD,
                                           "password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert response.status_code == 400
    assert "CSRF" in response.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(User, member.id).check_password(factories.PASSWORD)


# ---------------------------------------------------------------- a real SMTP server


def test_reset_flow_end_to_end_through_a_local_smtp_server(app, db, member, monkeypatch):
    server = SmtpServer(free_port())
    monkeypatch.setitem(app.config, "MAIL_SERVER", "127.0.0.1")
    monkeypatch.setitem(app.config, "MAIL_PORT", server.port)
    monkeypatch.setitem(app.config, "MAIL_TIMEOUT", 5)
    server.start()
    try:
        request_reset(app.test_client(), member.email)
        [message] = server.inbox.messages
        assert message["To"] == member.email
        assert message["Subject"] == "【全景江西】重置登录密码"
        path = LINK.search(message.get_content()).group(1)
        assert reset(app.test_client(), path).status_code == 302
        assert [m["Subject"] for m in server.inbox.messages][1] == "【全景江西】您的登录密码已修改"
    finally:
        server.stop()
    assert login(app.test_client(), member.email, NEW_PASSWORD).status_code == 302

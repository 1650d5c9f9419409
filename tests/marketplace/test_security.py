"""Regression tests for the security review (issue 11, §1 and §4), one group per finding.

1. control characters in any input → 400 (NUL) or removed (other C0), never a 500;
2. huge page numbers are clamped everywhere;
3. a new organization name stays private until an organizer approves it;
4. sessions and remember-me cookies end on the server (logout, password change, deactivation);
5. rate limits on login, registration and the API;
6. accounts cannot be discovered through login timing or registration messages;
7. the password rule;
8. security headers and no inline script;
9. the API's rankings follow the pages' permission rule.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from http.cookies import SimpleCookie
from pathlib import Path

import pytest
from sqlalchemy import func, select
from werkzeug.security import generate_password_hash

from marketplace import passwords
from marketplace.config import PROJECT_ROOT, load_config
from marketplace.extensions import limiter
from marketplace.models import (
    AuditEvent,
    EmailOutbox,
    EntryStatus,
    LoginToken,
    Notification,
    Opportunity,
    Organization,
    User,
)
from marketplace.models.base import utcnow
from marketplace.paging import MAX_PAGE
from marketplace.services import accounts, index_sync, sessions
from tests import factories
from tests.conftest import csrf_token
from tests.marketplace.test_auth import VALID_CODE, registration

HUGE = "99999999999999999999"


def cookie_value(response, name: str) -> str | None:
    for header in response.headers.getlist("Set-Cookie"):
        cookie = SimpleCookie()
        cookie.load(header)
        if name in cookie:
            return cookie[name].value
    return None


def set_cookie_header(response, name: str) -> str:
    return next(h for h in response.headers.getlist("Set-Cookie") if h.startswith(f"{name}="))


def isolated(client, method: str, url: str, **kwargs):
    """One request in its own app context, like a real server.

    The suite's autouse app context is otherwise shared by every request of a test, and with it
    ``g`` (Flask-Login's cached user, Flask-WTF's token): tests with several browsers need this.
    """
    with client.application.app_context():
        if method == "POST":
            kwargs.setdefault("data", {}).setdefault("csrf_token", csrf_token(client))
        return client.open(url, method=method, **kwargs)


def logged_in(client) -> bool:
    """Whether the client's cookies still open the workspace."""
    return isolated(client, "GET", "/my/").status_code == 200


def logout(client):
    return isolated(client, "POST", "/auth/logout", data={})


# ---------------------------------------------------------------- 1. control characters


def test_nul_in_anonymous_login_is_a_400_page_in_chinese(client):
    response = client.post(
        "/auth/login",
        data={"email": "a\x00@b.cn", "password": "whatever-123", "csrf_token": csrf_token(client)},
    )
    assert response.status_code == 400
    assert "空字符" in response.get_data(as_text=True)


def test_nul_in_a_query_string_is_a_400(client, auth, make):
    auth.login(make.organizer())
    response = client.get("/admin/organizations?q=%00")
    assert response.status_code == 400
    assert "空字符" in response.get_data(as_text=True)


def test_nul_in_an_api_query_is_a_400_json(client):
    response = client.get("/api/v1/search?q=%E5%81%9C%00")
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == 400


@pytest.mark.parametrize(
    ("who", "url", "field"),
    [
        ("member", "/my/opportunities/new", "title"),
        ("member", "/my/organization", "contact_name"),
        ("organizer", "/admin/batches/new", "title"),
        ("organizer", "/admin/review/opportunity/{entry}/return", "comment"),
    ],
    ids=["entry", "profile", "batch", "comment"],
)
def test_nul_in_any_form_field_is_a_400_never_a_500(client, auth, make, db, who, url, field):
    org = make.org(kind="government")
    entry = make.opportunity(org, EntryStatus.SUBMITTED)
    auth.login(make.user(org) if who == "member" else make.organizer())
    data = dict(factories.OPPORTUNITY_FORM)
    data.update(name=org.name, credit_code=org.credit_code, contact_phone="0791-86000000",
                kind="opportunity", comment="请补充预算")
    data[field] = "中\x00文"
    response = auth.post(url.format(entry=entry.id), data)
    assert response.status_code == 400
    db.session.expire_all()
    assert db.session.scalar(select(func.count()).select_from(Opportunity)) == 1


def test_other_control_characters_are_removed_before_the_form_sees_them(client, auth, make, db):
    org = make.org()
    auth.login(make.user(org))
    data = {
        "name": org.name, "credit_code": org.credit_code, "region_city": "南昌市",
        "contact_name": "李\x0b四\x01", "contact_phone": "0791-86000000", "intro": "第一行\r\n第二行\t完",
    }
    assert auth.post("/my/organization", data).status_code == 302
    db.session.expire_all()
    stored = db.session.get(Organization, org.id)
    assert stored.contact_name == "李四"
    assert stored.intro == "第一行\r\n第二行\t完"  # tab and line breaks are kept


def test_other_control_characters_in_a_query_string_are_harmless(client, auth, make):
    auth.login(make.organizer())
    assert client.get("/admin/organizations?q=%01%1f").status_code == 200


# ---------------------------------------------------------------- 2. page numbers


@pytest.mark.parametrize(
    "url",
    [
        f"/admin/batches?page={HUGE}",
        f"/admin/audit?page={HUGE}",
        f"/admin/organizations?page={HUGE}",
        f"/admin/users?page={HUGE}",
        f"/admin/organizations?page=-{HUGE}",
        f"/my/?opp_page={HUGE}",
        f"/my/?prod_page={HUGE}",
        f"/notifications/?page={HUGE}",
        f"/opportunities?page={HUGE}",
        f"/products?page={HUGE}",
    ],
)
def test_huge_page_numbers_are_clamped_not_500(client, auth, make, url):
    org = make.org()
    make.opportunity(org, EntryStatus.DRAFT)
    user = make.admin() if url.startswith("/admin") else make.user(org)
    auth.login(user)
    assert client.get(url).status_code == 200


@pytest.mark.parametrize(
    ("raw", "page"),
    [("", 1), ("abc", 1), ("-3", 1), ("0", 1), ("7", 7), (str(MAX_PAGE + 1), MAX_PAGE), (HUGE, MAX_PAGE),
     ("１２", 1)],
)
def test_page_arg_falls_back_to_a_valid_page(app, raw, page):
    from marketplace.paging import page_arg

    with app.test_request_context("/", query_string={"page": raw}):
        assert page_arg() == page


def test_no_view_reads_page_numbers_by_hand():
    """Every paginated view uses ``paging.page_arg`` (also in blueprints added later)."""
    offenders = []
    for path in (PROJECT_ROOT / "marketplace").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        if re.search(r"""args\.get\(\s*["'][a-z_]*page["'][^)]*type=int""", text):
            offenders.append(str(path))
    assert offenders == []


# ---------------------------------------------------------------- 3. organization renames


@pytest.fixture
def published_firm(make):
    firm = make.org(name="赣江智行科技有限公司")
    product = make.product(firm, EntryStatus.PUBLISHED, name="智慧停车诱导平台")
    return firm, product


def rename(auth, org, name: str, code: str | None = None):
    return auth.post("/my/organization", {
        "name": name, "credit_code": code or org.credit_code, "region_city": "南昌市",
        "region_county": "红谷滩区", "contact_name": "张三", "contact_phone": "0791-86000000",
    })


def test_a_rename_keeps_the_verified_name_on_public_pages(client, auth, make, db, published_firm):
    firm, product = published_firm
    organizer = make.organizer()
    auth.login(make.user(firm))
    version = index_sync.current_version()
    assert rename(auth, firm, "冒名顶替集团有限公司").status_code == 302
    auth.logout()
    db.session.expire_all()
    assert index_sync.current_version() == version  # nothing public changed
    stored = db.session.get(Organization, firm.id)
    assert (stored.name, stored.pending_name) == ("赣江智行科技有限公司", "冒名顶替集团有限公司")
    assert stored.verified
    for url in (f"/products/{product.id}", "/products", "/search?q=智慧停车诱导平台"):
        html = client.get(url).get_data(as_text=True)
        assert "赣江智行科技有限公司" in html and "冒名顶替" not in html, url
    api = client.get("/api/v1/search", query_string={"q": "智慧停车诱导平台"}).get_json()
    assert [r["organization"] for r in api["results"]] == ["赣江智行科技有限公司"]
    assert db.session.scalar(
        select(func.count()).select_from(Notification).where(Notification.user_id == organizer.id)
    ) == 1


def test_the_organizer_sees_the_change_side_by_side_and_approves_it(client, auth, make, db, published_firm):
    firm, product = published_firm
    member = make.user(firm)
    auth.login(member)
    rename(auth, firm, "赣江智行数字集团有限公司")
    auth.logout()
    auth.login(make.organizer())
    page = client.get(f"/admin/organizations/{firm.id}").get_data(as_text=True)
    assert "待审核：单位名称 / 统一社会信用代码变更" in page
    assert page.index("赣江智行科技有限公司") < page.index("赣江智行数字集团有限公司")
    version = index_sync.current_version()
    assert auth.post(f"/admin/organizations/{firm.id}/identity/approve").status_code == 302
    db.session.expire_all()
    stored = db.session.get(Organization, firm.id)
    assert stored.name == "赣江智行数字集团有限公司"
    assert (stored.pending_name, stored.pending_since) == (None, None)
    assert index_sync.current_version() == version + 1
    assert "org.identity_approve" in db.session.scalars(select(AuditEvent.action)).all()
    titles = db.session.scalars(select(Notification.title).where(Notification.user_id == member.id)).all()
    assert any("已通过" in t for t in titles)
    assert "赣江智行数字集团有限公司" in client.get(f"/products/{product.id}").get_data(as_text=True)


def test_the_organizer_returns_a_change_with_a_reason(client, auth, make, db, published_firm):
    firm, _ = published_firm
    member = make.user(firm)
    auth.login(member)
    rename(auth, firm, "另一个名字有限公司")
    auth.logout()
    auth.login(make.organizer())
    missing = auth.post(f"/admin/organizations/{firm.id}/identity/return", {"comment": ""})
    assert missing.status_code == 200 and "请填写退回原因" in missing.get_data(as_text=True)
    auth.post(f"/admin/organizations/{firm.id}/identity/return", {"comment": "与营业执照不符"})
    db.session.expire_all()
    stored = db.session.get(Organization, firm.id)
    assert (stored.name, stored.pending_name) == ("赣江智行科技有限公司", None)
    assert "org.identity_return" in db.session.scalars(select(AuditEvent.action)).all()
    bodies = db.session.scalars(select(Notification.body).where(Notification.user_id == member.id)).all()
    assert any("与营业执照不符" in b for b in bodies)


def test_a_credit_code_change_also_waits(auth, make, db, published_firm):
    firm, _ = published_firm
    auth.login(make.user(firm))
    new_code = factories.credit_code()
    rename(auth, firm, firm.name, new_code)
    db.session.expire_all()
    stored = db.session.get(Organization, firm.id)
    assert stored.credit_code != new_code and stored.pending_credit_code == new_code


def test_an_organization_with_nothing_public_renames_at_once(auth, make, db):
    org = make.org(verified=False)
    auth.login(make.user(org))
    rename(auth, org, "尚未认证的新名字有限公司")
    db.session.expire_all()
    assert db.session.get(Organization, org.id).name == "尚未认证的新名字有限公司"


def test_a_pending_name_cannot_be_registered_by_someone_else(auth, client, make, published_firm):
    firm, _ = published_firm
    auth.login(make.user(firm))
    rename(auth, firm, "江西赣数科技有限公司")
    auth.logout()
    response = auth.post("/auth/register", registration())
    assert "该单位名称已注册" in response.get_data(as_text=True)


# ---------------------------------------------------------------- 4. sessions and remember-me


def login(client, user, remember: bool = False):
    data = {"email": user.email, "password": factories.PASSWORD, **({"remember": "y"} if remember else {})}
    return isolated(client, "POST", "/auth/login", data=data)


def test_remember_cookie_is_random_per_login_and_stored_hashed(app, make, db):
    user = make.user(make.org())
    values = []
    for _ in range(2):
        client = app.test_client()
        values.append(cookie_value(login(client, user, remember=True), "remember_token"))
    assert values[0] and values[1] and values[0] != values[1]
    raw = values[0].split("|")[0].split(":")[2]
    hashes = db.session.scalars(select(LoginToken.token_hash)).all()
    assert sessions.hash_token(raw) in hashes and raw not in hashes


def test_remember_cookie_attributes(app, make, monkeypatch):
    monkeypatch.setitem(app.config, "REMEMBER_COOKIE_SECURE", True)
    header = set_cookie_header(login(app.test_client(), make.user(make.org()), True), "remember_token")
    assert "HttpOnly" in header and "SameSite=Lax" in header and "Secure" in header
    expires = parsedate_to_datetime(re.search(r"Expires=([^;]+)", header).group(1))
    assert expires <= datetime.now(UTC) + timedelta(days=30, minutes=1)


def test_cookie_settings_follow_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SESSION_COOKIE_SECURE", "1")
    monkeypatch.setenv("REMEMBER_DAYS", "365")
    config = load_config(str(tmp_path))
    assert config["SESSION_COOKIE_SECURE"] and config["REMEMBER_COOKIE_SECURE"]
    assert config["REMEMBER_COOKIE_DURATION"] == timedelta(days=30)  # never longer
    assert config["REMEMBER_COOKIE_SAMESITE"] == config["SESSION_COOKIE_SAMESITE"] == "Lax"


def test_a_session_cookie_copied_before_logout_is_refused_after(app, make):
    user = make.user(make.org())
    browser = app.test_client()
    login(browser, user)
    stolen = browser.get_cookie("session").value
    thief = app.test_client()
    thief.set_cookie("session", stolen)
    assert logged_in(thief)
    logout(browser)
    assert not logged_in(browser)
    assert not logged_in(thief)


def test_a_remember_cookie_copied_before_logout_is_refused_after(app, make):
    user = make.user(make.org())
    browser = app.test_client()
    remember = cookie_value(login(browser, user, remember=True), "remember_token")
    thief = app.test_client()
    thief.set_cookie("remember_token", remember)
    assert logged_in(thief)  # the cookie alone signs in
    logout(browser)
    fresh = app.test_client()
    fresh.set_cookie("remember_token", remember)
    assert not logged_in(fresh)


def test_logout_ends_only_the_browser_that_logs_out(app, make):
    user = make.user(make.org())
    laptop, phone = app.test_client(), app.test_client()
    login(laptop, user)
    login(phone, user)
    logout(laptop)
    assert logged_in(phone) and not logged_in(laptop)


def test_a_password_change_signs_out_everywhere(app, make, db):
    user = make.user(make.org())
    browser = app.test_client()
    login(browser, user, remember=True)
    user.set_password("a-brand-new-passphrase-9")
    db.session.commit()
    assert not logged_in(browser)


def test_deactivation_signs_out_and_reactivation_does_not_revive_the_session(app, make, db):
    user = make.user(make.org())
    admin = make.admin()
    browser = app.test_client()
    login(browser, user, remember=True)
    accounts.set_user_active(admin, user, False)
    assert not logged_in(browser)
    accounts.set_user_active(admin, user, True)
    assert not logged_in(browser)
    assert db.session.scalar(select(func.count()).select_from(LoginToken).where(
        LoginToken.revoked_at.is_(None))) == 0


def test_an_expired_login_is_refused(app, make, db):
    user = make.user(make.org())
    browser = app.test_client()
    login(browser, user)
    for token in db.session.scalars(select(LoginToken)):
        token.expires_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
    assert not logged_in(browser)


@pytest.mark.parametrize("user_id", ["1", "1:1", "abc:1:x", f"{2**40}:1:x", "1:1:", ""])
def test_malformed_session_ids_load_nobody(user_id):
    assert sessions.load_user(user_id) is None


# ---------------------------------------------------------------- 5. rate limits


@pytest.fixture
def limits(app, monkeypatch):
    """Rate limits on, with small numbers, from a clean storage."""
    monkeypatch.setitem(app.config, "RATE_LIMITS_ENABLED", True)
    limiter.reset()
    yield app.config
    limiter.reset()


def test_login_is_rate_limited_per_address(client, limits, monkeypatch):
    monkeypatch.setitem(limits, "RATELIMIT_LOGIN", "3 per minute")
    token = csrf_token(client)
    codes = [
        client.post("/auth/login", data={"email": f"x{i}@example.cn", "password": "wrong-password-1",
                                         "csrf_token": token}).status_code
        for i in range(4)
    ]
    assert codes == [200, 200, 200, 429]
    response = client.post("/auth/login", data={"email": "y@example.cn", "password": "p",
                                                "csrf_token": token})
    assert response.status_code == 429
    assert "操作过于频繁" in response.get_data(as_text=True)
    assert "Retry-After" in response.headers
    assert client.get("/auth/login").status_code == 200  # only POSTs count


def test_login_is_rate_limited_per_account_across_addresses(app, limits, monkeypatch, make):
    monkeypatch.setitem(limits, "RATELIMIT_LOGIN_ACCOUNT", "2 per hour")
    user = make.user(make.org())
    codes = []
    for n in range(3):
        client = app.test_client()
        client.environ_base["REMOTE_ADDR"] = f"10.0.0.{n + 1}"
        data = {"email": user.email, "password": "wrong-password-1"}
        codes.append(isolated(client, "POST", "/auth/login", data=data).status_code)
    assert codes == [200, 200, 429]


def test_registration_is_rate_limited(client, auth, limits, monkeypatch):
    monkeypatch.setitem(limits, "RATELIMIT_REGISTER", "1 per hour")
    assert auth.post("/auth/register", registration(name="")).status_code == 200
    assert auth.post("/auth/register", registration()).status_code == 429


def test_the_api_is_rate_limited_with_a_json_429(client, limits, monkeypatch):
    monkeypatch.setitem(limits, "RATELIMIT_API", "2 per minute")
    for _ in range(2):
        client.get("/api/v1/search?q=停车")
    response = client.get("/api/v1/opportunities/1/products")  # one limit for the whole API
    assert response.status_code == 429
    assert response.get_json()["error"]["code"] == 429


def test_limits_are_off_in_the_rest_of_the_suite(client, app):
    assert app.config["RATE_LIMITS_ENABLED"] is False
    token = csrf_token(client)
    for _ in range(15):
        assert client.post("/auth/login", data={"email": "a@b.cn", "password": "x",
                                                "csrf_token": token}).status_code == 200


# ---------------------------------------------------------------- 6. account discovery


def test_unknown_emails_cost_a_real_hash(make, monkeypatch):
    """An unknown email is checked against a dummy hash of the same method and cost."""
    seen = []
    real = accounts.check_password_hash
    monkeypatch.setattr(accounts, "check_password_hash", lambda h, p: seen.append(h) or real(h, p))
    assert accounts.authenticate("nobody@example.cn", "whatever-123") is None
    method = generate_password_hash("x").split("$")[0]
    assert len(seen) == 1 and seen[0].split("$")[0] == method


def test_wrong_password_and_inactive_user_do_the_same_work(make, monkeypatch):
    user = make.user(make.org(), active=False)
    calls = []
    monkeypatch.setattr(User, "check_password", lambda self, p: calls.append(p) or True)
    assert accounts.authenticate(user.email, "anything-123") is None
    assert calls == ["anything-123"]


def test_registration_does_not_reveal_a_taken_email(auth, client, make, db):
    owner = make.user(make.org(), email="lina@gsdata.cn")
    taken = auth.post("/auth/register", registration())
    taken_page = client.get("/auth/login").get_data(as_text=True)
    db.session.query(EmailOutbox).delete()
    db.session.commit()
    fresh = auth.post("/auth/register", registration(
        email="new@gsdata.cn", name="另一家科技有限公司", credit_code=factories.credit_code()))
    fresh_page = client.get("/auth/login").get_data(as_text=True)
    assert (taken.status_code, taken.headers["Location"]) == (fresh.status_code, fresh.headers["Location"])
    assert "注册申请已提交，请查收邮件" in taken_page and "注册申请已提交，请查收邮件" in fresh_page
    assert "该邮箱已注册" not in taken_page
    assert db.session.scalar(select(func.count()).select_from(User).where(User.email == owner.email)) == 1
    assert db.session.scalar(select(EmailOutbox.recipient)) == "new@gsdata.cn"


def test_the_owner_of_a_taken_email_is_told_by_email(auth, make, db):
    make.user(make.org(), email="lina@gsdata.cn")
    auth.post("/auth/register", registration())
    mail = db.session.scalars(select(EmailOutbox)).one()
    assert mail.recipient == "lina@gsdata.cn" and "有人尝试用您的邮箱注册" in mail.subject


# ---------------------------------------------------------------- 7. passwords


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("12345678", "至少10位"),
        ("Passw0rd!", "至少10位"),
        ("password123", "过于常见"),
        ("Password2026!", "过于常见"),
        ("woaini1314520", "过于常见"),
        ("qwertyuiop", "过于常见"),
        ("mnbvcxzlkjhg", "键盘或字母数字顺序"),
        ("abcdefghijk", "键盘或字母数字顺序"),
        ("0987654321x", "键盘或字母数字顺序"),
        ("aaaaaaaaaaaa", "重复"),
        ("xyzxyzxyzxyz", "重复"),
        ("lina123456789", "个人信息"),
        ("赣数科技有限公司2026", "个人信息"),
    ],
)
def test_weak_passwords_are_refused_with_a_reason(password, reason):
    problem = passwords.password_problem(password, email="lina@gsdata.cn", organization="赣数科技有限公司")
    assert problem and reason in problem


def test_existing_test_and_demo_passwords_pass():
    users = json.loads((PROJECT_ROOT / "seeds" / "users.json").read_text(encoding="utf-8"))
    for record in users:
        assert passwords.password_problem(record["password"], email=record["email"],
                                          name=record["name"]) is None, record["email"]
    assert passwords.password_problem(factories.PASSWORD) is None
    assert passwords.password_problem("s3cure-pass") is None


def test_the_common_list_is_bundled_and_large():
    assert len(passwords.common_passwords()) >= 10_000
    assert {"123456", "password", "woaini1314", "qwerty"} <= passwords.common_passwords()


def test_the_rule_is_explained_beside_the_field(client):
    assert passwords.RULE_HINT in client.get("/auth/register").get_data(as_text=True)


def test_weak_password_in_registration_is_shown_beside_the_field(auth, db):
    response = auth.post("/auth/register", registration(password="12345678", confirm="12345678"))
    assert response.status_code == 200 and "密码至少10位" in response.get_data(as_text=True)
    assert db.session.scalar(select(func.count()).select_from(User)) == 0


def test_create_user_applies_the_rule(make):
    from marketplace.services.errors import ValidationFailed

    with pytest.raises(ValidationFailed) as caught:
        accounts.create_user("ops@example.cn", "1234567890", "运维", role="admin")
    assert "password" in caught.value.errors


# ---------------------------------------------------------------- 8. headers and scripts


def _page_urls(make) -> dict[str, tuple[str | None, str]]:
    org = make.org(kind="government")
    entry = make.opportunity(org, EntryStatus.PUBLISHED)
    return {
        "portal": (None, "/"),
        "list": (None, "/opportunities"),
        "detail": (None, f"/opportunities/{entry.id}"),
        "login": (None, "/auth/login"),
        "register": (None, "/auth/register"),
        "not-found": (None, "/no-such-page"),
        "api": (None, "/api/v1/search?q=停车"),
        "api-error": (None, "/api/v1/nothing"),
        "static": (None, "/static/app.js"),
        "workspace": ("member", "/my/"),
        "profile": ("member", "/my/organization"),
        "admin": ("organizer", "/admin/"),
        "events": (None, "/events/"),
    }


@pytest.mark.parametrize("page", ["portal", "list", "detail", "login", "register", "not-found", "api",
                                  "api-error", "static", "workspace", "profile", "admin", "events"])
def test_security_headers_on_every_page_type(client, auth, make, page):
    who, url = _page_urls(make)[page]
    if who == "member":
        auth.login(make.user(make.org()))
    elif who == "organizer":
        auth.login(make.organizer())
    response = client.get(url)
    assert response.status_code < 500
    csp = response.headers["Content-Security-Policy"]
    script_src = re.search(r"script-src ([^;]+)", csp).group(1)
    assert script_src.strip() == "'self'"
    assert "frame-ancestors 'none'" in csp
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
    assert "Strict-Transport-Security" not in response.headers  # plain HTTP
    if response.mimetype == "text/html":
        assert not INLINE_SCRIPT.search(response.get_data(as_text=True))


def test_hsts_over_https(client, app, monkeypatch):
    response = client.get("/", base_url="https://localhost")
    assert response.headers["Strict-Transport-Security"].startswith("max-age=31536000")
    monkeypatch.setitem(app.config, "HSTS_SECONDS", 0)
    assert "Strict-Transport-Security" not in client.get("/", base_url="https://localhost").headers


INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE)
EVENT_HANDLER = re.compile(r"""\son[a-z]+\s*=\s*["']""", re.IGNORECASE)


@pytest.mark.parametrize("template", sorted(str(p.relative_to(PROJECT_ROOT / "templates"))
                                            for p in (PROJECT_ROOT / "templates").rglob("*.html")))
def test_templates_have_no_inline_script(template):
    """The CSP blocks inline script: behaviour lives in marketplace/static/*.js (data- attributes)."""
    text = Path(PROJECT_ROOT / "templates" / template).read_text(encoding="utf-8")
    assert not INLINE_SCRIPT.search(text), "inline <script>: move it to marketplace/static/"
    assert not EVENT_HANDLER.search(text), "on…= handler: use a data- attribute and static JS"
    assert "javascript:" not in text


def test_confirmations_use_data_confirm(client, auth, make):
    org = make.org()
    entry = make.opportunity(org, EntryStatus.PUBLISHED)
    auth.login(make.user(org))
    html = client.get(f"/my/opportunities/{entry.id}").get_data(as_text=True)
    assert 'data-confirm="确定撤回该条目吗？' in html and "onsubmit" not in html
    assert '<script src="/static/app.js"></script>' in html


# ---------------------------------------------------------------- 9. API rankings


def test_api_rankings_follow_the_pages_rule(client, auth, make):
    gov = make.org(kind="government")
    need = make.opportunity(gov, EntryStatus.PUBLISHED)
    url = f"/api/v1/opportunities/{need.id}/products"
    assert client.get(url).status_code == 401
    auth.login(make.user(make.org()))
    assert client.get(url).status_code == 403
    assert client.get(f"/matching/opportunities/{need.id}").status_code == 403
    auth.logout()
    auth.login(make.user(gov))
    assert client.get(url).status_code == 200
    assert client.get(f"/matching/opportunities/{need.id}").status_code == 200


def test_registration_after_rename_keeps_the_code_check(auth, make, published_firm):
    """A pending credit code is reserved like a current one."""
    firm, _ = published_firm
    auth.login(make.user(firm))
    rename(auth, firm, firm.name, VALID_CODE)
    auth.logout()
    response = auth.post("/auth/register", registration(name="全新单位有限公司"))
    assert "该统一社会信用代码已注册" in response.get_data(as_text=True)

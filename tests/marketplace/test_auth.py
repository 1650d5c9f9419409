"""Login, logout and organization registration through HTTP."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from marketplace.credit_code import CHARSET, check_character, make_code
from marketplace.extensions import db
from marketplace.models import Organization, Role, User

VALID_CODE = make_code("91", "360100", "MA35K8QX")


def registration(**overrides) -> dict:
    """A complete, valid registration form."""
    data = {
        "name": "江西赣数科技有限公司",
        "kind": "enterprise",
        "credit_code": VALID_CODE,
        "region_city": "南昌市",
        "region_county": "红谷滩区",
        "contact_name": "李娜",
        "contact_phone": "0791-86001234",
        "contact_email": "contact@gsdata.cn",
        "address": "南昌市红谷滩区丰和中大道1号",
        "intro": "专注城市级物联网平台。",
        "user_name": "李娜",
        "email": "lina@gsdata.cn",
        "phone": "13907910001",
        "password": "s3cure-pass",
        "confirm": "s3cure-pass",
    }
    data.update(overrides)
    return data


def count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


def is_logged_in(client) -> bool:
    with client.session_transaction() as session:
        return "_user_id" in session


# ---------------------------------------------------------------- login


def test_login_page_renders(client):
    response = client.get("/auth/login")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "记住我" in html and 'name="csrf_token"' in html


def test_member_login_redirects_to_workspace(auth, client, make):
    user = make.user(make.org())
    response = auth.login(user)
    assert response.status_code == 302
    assert response.headers["Location"] == "/my/"
    assert is_logged_in(client)


@pytest.mark.parametrize("role", [Role.ORGANIZER, Role.ADMIN])
def test_staff_login_redirects_to_admin(auth, make, role):
    user = make.user(None, role=role)
    response = auth.login(user)
    assert response.headers["Location"] == "/admin/"


def test_login_with_wrong_password_shows_chinese_error(auth, client, make):
    user = make.user(make.org())
    response = auth.login(user, password="wrong-password")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "邮箱或密码错误" in html
    assert user.email in html  # the typed email is kept
    assert not is_logged_in(client)


def test_login_with_unknown_email_shows_same_error(auth, client):
    response = auth.login("nobody@example.cn")
    assert response.status_code == 200
    assert "邮箱或密码错误" in response.get_data(as_text=True)
    assert not is_logged_in(client)


def test_inactive_user_cannot_log_in(auth, client, make):
    user = make.user(make.org(), active=False)
    response = auth.login(user)
    assert response.status_code == 200
    assert "邮箱或密码错误" in response.get_data(as_text=True)
    assert not is_logged_in(client)


@pytest.mark.parametrize("typed", ["Mixed.Case@Example.CN", "  mixed.case@example.cn  "])
def test_login_email_is_case_insensitive(auth, client, make, typed):
    make.user(make.org(), email="mixed.case@example.cn")
    response = auth.login(typed)
    assert response.status_code == 302
    assert is_logged_in(client)


def test_login_records_last_login(auth, make, db):
    user = make.user(make.org())
    auth.login(user)
    db.session.expire_all()
    assert db.session.get(User, user.id).last_login_at is not None


def test_remember_me_sets_a_remember_cookie(auth, client, make):
    user = make.user(make.org())
    response = auth.post("/auth/login", {"email": user.email, "password": make.PASSWORD, "remember": "y"})
    assert response.status_code == 302
    assert "remember_token=" in " ".join(response.headers.getlist("Set-Cookie"))


def test_login_follows_a_relative_next(auth, make):
    user = make.user(make.org())
    response = auth.post(
        "/auth/login?next=/my/organization", {"email": user.email, "password": make.PASSWORD}
    )
    assert response.headers["Location"] == "/my/organization"


@pytest.mark.parametrize(
    "target",
    [
        "http://evil.example",
        "https://evil.example/my/",
        "//evil.example/path",
        "/\\evil.example",
        "javascript:alert(1)",
        "evil.example",
    ],
)
def test_login_ignores_an_offsite_next(auth, make, target):
    user = make.user(make.org())
    response = auth.post(
        "/auth/login", {"email": user.email, "password": make.PASSWORD}, query_string={"next": target}
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/my/"


def test_anonymous_workspace_visit_comes_back_after_login(auth, client, make):
    user = make.user(make.org())
    response = client.get("/my/organization")
    assert response.status_code == 302
    login_url = response.headers["Location"]
    assert login_url.startswith("/auth/login?next=")
    response = auth.post(login_url, {"email": user.email, "password": make.PASSWORD})
    assert response.headers["Location"] == "/my/organization"


# ---------------------------------------------------------------- logout


def test_logout_requires_post(auth, client, make):
    auth.login(make.user(make.org()))
    response = client.get("/auth/logout")
    assert response.status_code == 405
    assert is_logged_in(client)


def test_logout_by_post_logs_out(auth, client, make):
    auth.login(make.user(make.org()))
    response = auth.logout()
    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    assert not is_logged_in(client)


# ---------------------------------------------------------------- registration


def test_register_page_lists_cities_and_counties(client):
    html = client.get("/auth/register").get_data(as_text=True)
    assert "统一社会信用代码" in html
    assert '<option value="南昌市">南昌市</option>' in html
    assert 'data-city="南昌市"' in html
    assert "data-county-select" in html


def test_registration_creates_unverified_org_and_member_who_can_log_in(auth, client, db):
    response = auth.post("/auth/register", registration())
    assert response.status_code == 302
    assert response.headers["Location"] == "/auth/login"
    assert not is_logged_in(client)  # the answer is the same as for a taken email
    org = db.session.scalar(select(Organization).where(Organization.credit_code == VALID_CODE))
    assert org is not None and org.verified is False
    assert org.name == "江西赣数科技有限公司"
    assert (org.kind, org.region_city, org.region_county) == ("enterprise", "南昌市", "红谷滩区")
    user = db.session.scalar(select(User).where(User.email == "lina@gsdata.cn"))
    assert user.organization_id == org.id and user.role == Role.MEMBER
    assert user.check_password("s3cure-pass")
    auth.login("lina@gsdata.cn", "s3cure-pass")
    assert is_logged_in(client)
    page = client.get("/my/").get_data(as_text=True)
    assert "等待组织方认证" in page and "认证通过前可以新建和编辑草稿" in page


def test_registration_normalises_email_and_credit_code(auth, db):
    response = auth.post(
        "/auth/register", registration(email="LiNa@GSData.CN", credit_code=f" {VALID_CODE.lower()} ")
    )
    assert response.status_code == 302
    assert db.session.scalar(select(User.email)) == "lina@gsdata.cn"
    assert db.session.scalar(select(Organization.credit_code)) == VALID_CODE


def _wrong_check_char(code: str) -> str:
    wrong = next(c for c in CHARSET if c != check_character(code[:17]))
    return code[:17] + wrong


def _wrong_org_check_digit(code: str) -> str:
    """Break the 17th character (GB 11714 check) but keep a consistent 18th check character."""
    first16 = code[:16]
    bad17 = next(c for c in "0123456789" if c != code[16])
    return first16 + bad17 + check_character(first16 + bad17)


@pytest.mark.parametrize(
    ("credit_code", "message"),
    [
        (VALID_CODE[:17], "统一社会信用代码应为18位"),
        (VALID_CODE + "1", "统一社会信用代码应为18位"),
        ("91360100MA35K8QXI" + VALID_CODE[-1], "非法字符「I」"),
        ("O" + VALID_CODE[1:], "非法字符「O」"),
        (_wrong_check_char(VALID_CODE), "校验码（第18位）错误"),
        (_wrong_org_check_digit(VALID_CODE), "主体标识码（第9-17位）校验位错误"),
    ],
    ids=["too-short", "too-long", "illegal-I", "illegal-O", "check-char", "org-code-check"],
)
def test_invalid_credit_code_is_explained_and_input_kept(auth, client, credit_code, message):
    response = auth.post("/auth/register", registration(credit_code=credit_code))
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert message in html
    assert "江西赣数科技有限公司" in html and "lina@gsdata.cn" in html
    assert count(Organization) == 0 and count(User) == 0
    assert not is_logged_in(client)


def test_duplicate_credit_code_is_refused(auth, make):
    make.org(credit_code=VALID_CODE)
    response = auth.post("/auth/register", registration())
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "该统一社会信用代码已注册" in html
    assert "江西赣数科技有限公司" in html and "lina@gsdata.cn" in html
    assert count(Organization) == 1 and count(User) == 0


def test_duplicate_email_creates_nothing_and_looks_like_success(auth, client, make):
    make.user(make.org(), email="lina@gsdata.cn")
    response = auth.post("/auth/register", registration(email="LINA@gsdata.cn"))
    assert response.status_code == 302 and response.headers["Location"] == "/auth/login"
    assert "该邮箱已注册" not in client.get("/auth/login").get_data(as_text=True)
    assert count(Organization) == 1 and count(User) == 1


def test_duplicate_organization_name_is_refused(auth, make):
    make.org(name="江西赣数科技有限公司")
    response = auth.post("/auth/register", registration())
    assert response.status_code == 200
    assert "该单位名称已注册" in response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"confirm": "different-pass"}, "两次输入的密码不一致"),
        ({"password": "short", "confirm": "short"}, "密码至少10位"),
        ({"password": "12345678", "confirm": "12345678"}, "密码至少10位"),
        ({"password": "Password2026!", "confirm": "Password2026!"}, "该密码过于常见"),
        ({"region_county": "浔阳区"}, "所选区县不属于南昌市"),
        ({"region_county": "不存在区"}, "请选择有效的区县"),
        ({"region_city": "北京市"}, "请选择有效的设区市"),
        ({"kind": "alien"}, "请选择有效的单位类型"),
        ({"email": "not-an-email"}, "邮箱格式不正确"),
        ({"name": ""}, "请填写单位名称"),
        ({"name": "长" * 101}, "单位名称不能超过100个字"),
    ],
    ids=["password-mismatch", "password-short", "password-digits", "password-common",
         "county-of-other-city", "unknown-county",
         "unknown-city", "unknown-kind", "bad-email", "missing-name", "name-too-long"],
)
def test_registration_field_errors_keep_input(auth, overrides, message):
    response = auth.post("/auth/register", registration(**overrides))
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert message in html
    assert "invalid-feedback" in html
    assert "0791-86001234" in html  # another typed value is kept
    assert count(Organization) == 0


def test_logged_in_user_is_sent_away_from_register(auth, client, make):
    auth.login(make.user(make.org()))
    response = client.get("/auth/register")
    assert response.status_code == 302
    assert response.headers["Location"] == "/my/"

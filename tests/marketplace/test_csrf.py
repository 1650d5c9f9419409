"""CSRF protection on a freshly built app with the default configuration.

A POST without the session's token is refused with 400 and a Chinese message, and changes
nothing; the same POST with the token works.
"""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from marketplace import create_app
from marketplace.credit_code import make_code
from marketplace.models import EntryStatus, Opportunity, Organization, User
from tests.factories import PASSWORD

CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)"')
CSRF_MESSAGE = "缺少安全令牌（CSRF）"


@pytest.fixture(scope="module")
def csrf_app(database_url, tmp_path_factory):
    """A second app on the same database, configured like production (CSRF not overridden)."""
    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "csrf-test-secret",
            "SQLALCHEMY_DATABASE_URI": database_url,
            "MATCHING_INDEX_DIR": str(tmp_path_factory.mktemp("csrf-index")),
        }
    )
    assert "WTF_CSRF_ENABLED" not in app.config or app.config["WTF_CSRF_ENABLED"] is True
    return app


@pytest.fixture
def browser(csrf_app):
    return csrf_app.test_client()


def token(browser) -> str:
    html = browser.get("/auth/login", follow_redirects=True).get_data(as_text=True)
    return CSRF_META.search(html).group(1)


def login(browser, user) -> None:
    response = browser.post(
        "/auth/login", data={"email": user.email, "password": PASSWORD, "csrf_token": token(browser)}
    )
    assert response.status_code == 302


def logged_in(browser) -> bool:
    with browser.session_transaction() as session:
        return "_user_id" in session


def assert_refused(response) -> None:
    assert response.status_code == 400
    assert CSRF_MESSAGE in response.get_data(as_text=True)


def counts(db) -> tuple[int, int]:
    db.session.expire_all()
    return (
        db.session.scalar(select(func.count(Organization.id))),
        db.session.scalar(select(func.count(User.id))),
    )


REGISTRATION = {
    "name": "江西防伪科技有限公司", "kind": "enterprise",
    "credit_code": make_code("91", "360100", "MA35K8QX"),
    "region_city": "南昌市", "region_county": "", "contact_name": "周八", "contact_phone": "0791-86009999",
    "user_name": "周八", "email": "zhou@fangwei.cn", "phone": "13907910009",
    "password": "s3cure-pass", "confirm": "s3cure-pass",
}


def test_login_without_token_is_refused(browser, make):
    user = make.user(make.org())
    browser.get("/auth/login")
    assert_refused(browser.post("/auth/login", data={"email": user.email, "password": PASSWORD}))
    assert not logged_in(browser)


def test_login_with_a_forged_token_is_refused(browser, make):
    user = make.user(make.org())
    browser.get("/auth/login")
    response = browser.post(
        "/auth/login", data={"email": user.email, "password": PASSWORD, "csrf_token": "forged"}
    )
    assert_refused(response)
    assert not logged_in(browser)


def test_login_with_token_works(browser, make):
    login(browser, make.user(make.org()))
    assert logged_in(browser)


def test_register_without_token_is_refused(browser, db):
    before = counts(db)
    browser.get("/auth/register")
    assert_refused(browser.post("/auth/register", data=REGISTRATION))
    assert counts(db) == before


def test_register_with_token_works(browser, db):
    before = counts(db)
    response = browser.post("/auth/register", data=dict(REGISTRATION, csrf_token=token(browser)))
    assert response.status_code == 302
    assert counts(db) == (before[0] + 1, before[1] + 1)


def test_logout_without_token_is_refused(browser, make):
    login(browser, make.user(make.org()))
    assert_refused(browser.post("/auth/logout"))
    assert logged_in(browser)
    assert browser.post("/auth/logout", data={"csrf_token": token(browser)}).status_code == 302
    assert not logged_in(browser)


@pytest.mark.parametrize("with_token", [False, True])
def test_workspace_action_needs_the_token(browser, make, db, with_token):
    org = make.org()
    entry = make.opportunity(org)
    login(browser, make.user(org))
    data = {"csrf_token": token(browser)} if with_token else {}
    response = browser.post(f"/my/opportunities/{entry.id}/submit", data=data)
    db.session.expire_all()
    status = db.session.get(Opportunity, entry.id).status
    if with_token:
        assert response.status_code == 302
        assert status == EntryStatus.SUBMITTED
    else:
        assert_refused(response)
        assert status == EntryStatus.DRAFT


def test_workspace_form_needs_the_token(browser, make, db):
    org = make.org()
    login(browser, make.user(org))
    assert_refused(browser.post("/my/opportunities/new", data=make.OPPORTUNITY_FORM))
    db.session.expire_all()
    assert db.session.scalar(select(func.count(Opportunity.id))) == 0

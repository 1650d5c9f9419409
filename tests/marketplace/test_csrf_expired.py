"""A form whose security token expired is shown again with the input kept (issue 12, item 7).

The token "expires" when the session that issued it is gone (the session's copy is missing) or,
when ``WTF_CSRF_TIME_LIMIT`` is set, when it is older than that. Nothing is saved, the page says
「页面停留时间过长，安全令牌已过期，请重新提交」 and carries a fresh token that works. Missing or
forged tokens are still refused with 400 (test_csrf.py).
"""

from __future__ import annotations

import html
import re

import pytest
from itsdangerous import TimestampSigner
from sqlalchemy import func, select

from marketplace.models import EntryStatus, Opportunity, Organization
from marketplace.site import EXPIRED_MESSAGE
from tests.conftest import CSRF_META, csrf_token
from tests.marketplace.test_csrf import REGISTRATION

TITLE = "赣江新区智慧园区能耗在线监测（过期令牌测试）"


def _forget_session_token(client) -> None:
    with client.session_transaction() as session:
        session.pop("csrf_token", None)


def _page_token(response) -> str:
    return CSRF_META.search(response.get_data(as_text=True)).group(1)


def _count(db, model) -> int:
    db.session.expire_all()
    return db.session.scalar(select(func.count(model.id)))


def _member(make, auth):
    organization = make.org(kind="government")
    user = make.user(organization)
    auth.login(user)
    return organization, user


def test_new_need_form_comes_back_with_the_input_and_the_message(client, auth, make, db):
    _member(make, auth)
    token = csrf_token(client)
    _forget_session_token(client)
    data = dict(make.OPPORTUNITY_FORM, title=TITLE, csrf_token=token)
    response = client.post("/my/opportunities/new", data=data)
    page = html.unescape(response.get_data(as_text=True))
    assert response.status_code == 200
    assert EXPIRED_MESSAGE in page
    assert f'value="{TITLE}"' in page
    assert make.OPPORTUNITY_FORM["description"] in page
    assert "提交的内容有误" not in page
    assert _count(db, Opportunity) == 0


def test_the_fresh_token_of_the_page_shown_again_works(client, auth, make, db):
    _member(make, auth)
    token = csrf_token(client)
    _forget_session_token(client)
    data = dict(make.OPPORTUNITY_FORM, title=TITLE, csrf_token=token)
    again = client.post("/my/opportunities/new", data=data)
    response = client.post(
        "/my/opportunities/new", data=dict(make.OPPORTUNITY_FORM, title=TITLE, csrf_token=_page_token(again))
    )
    assert response.status_code == 302
    assert _count(db, Opportunity) == 1


def test_a_token_older_than_the_time_limit_counts_as_expired(client, app, make, db, monkeypatch):
    monkeypatch.setitem(app.config, "WTF_CSRF_TIME_LIMIT", 3600)
    with monkeypatch.context() as old_clock:
        real = TimestampSigner.get_timestamp
        old_clock.setattr(TimestampSigner, "get_timestamp", lambda self: real(self) - 7200)
        token = csrf_token(client)
    before = _count(db, Organization)
    response = client.post("/auth/register", data=dict(REGISTRATION, csrf_token=token))
    page = html.unescape(response.get_data(as_text=True))
    assert response.status_code == 200
    assert EXPIRED_MESSAGE in page
    assert f'value="{REGISTRATION["name"]}"' in page
    assert _count(db, Organization) == before


def test_an_action_button_goes_back_to_its_page_with_the_message(client, auth, make, db):
    organization, _ = _member(make, auth)
    entry = make.opportunity(organization)
    token = csrf_token(client)
    _forget_session_token(client)
    origin = f"http://localhost/my/opportunities/{entry.id}"
    response = client.post(
        f"/my/opportunities/{entry.id}/submit", data={"csrf_token": token}, headers={"Referer": origin}
    )
    assert response.status_code == 302 and response.headers["Location"] == origin
    assert EXPIRED_MESSAGE in client.get(origin).get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Opportunity, entry.id).status == EntryStatus.DRAFT


def test_an_action_from_another_site_is_refused(client, auth, make, db):
    organization, _ = _member(make, auth)
    entry = make.opportunity(organization)
    token = csrf_token(client)
    _forget_session_token(client)
    response = client.post(
        f"/my/opportunities/{entry.id}/submit", data={"csrf_token": token},
        headers={"Referer": "https://evil.example/"},
    )
    assert response.status_code == 400
    assert EXPIRED_MESSAGE in response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("who", "url", "expected"),
    [
        ("anonymous", "/my/opportunities/new", 302),  # to the login page, as without a token
        ("member", "/admin/batches/new", 403),  # the back office stays closed to members
    ],
)
def test_the_page_checks_run_before_the_form_is_shown_again(client, auth, make, who, url, expected):
    if who == "member":
        _member(make, auth)
    token = csrf_token(client)
    _forget_session_token(client)
    response = client.post(url, data={"title": TITLE, "csrf_token": token})
    assert response.status_code == expected
    assert TITLE not in response.get_data(as_text=True)


def test_a_forged_token_is_still_refused(client, auth, make):
    _member(make, auth)
    csrf_token(client)
    response = client.post("/my/opportunities/new", data=dict(make.OPPORTUNITY_FORM, csrf_token="forged"))
    assert response.status_code == 400
    assert not re.search(EXPIRED_MESSAGE, response.get_data(as_text=True))


"""Personal API tokens: created on /api/tokens and shown once, stored hashed, revoked, expiring
at the end of a Beijing day; ``Authorization: Bearer`` calls act with the token user's
permissions (the rankings' rule: the entry's own organization and organizers), and every
refusal is a 401/403/404 JSON in readable Chinese.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, date, datetime, timedelta

import pytest
from flask import g
from sqlalchemy import select

from marketplace import timeutil
from marketplace.extensions import limiter
from marketplace.models import ApiToken, AuditEvent, EntryStatus
from marketplace.services import api_tokens
from marketplace.services.errors import NotFound, ValidationFailed
from tests.marketplace.test_matching_app import UNPUBLISHED, build_corpus, hidden_opportunity

RAW_TOKEN = re.compile(r"mkt_[A-Za-z0-9_\-]{43}")
BEIJING = timeutil.display_zone()


@pytest.fixture
def corpus(make):
    return build_corpus(make)


@pytest.fixture
def clock(monkeypatch):
    """A settable clock: ``clock.set(datetime in Beijing time)``."""

    class Clock:
        now = datetime(2026, 6, 1, 9, 0, tzinfo=BEIJING)

        def set(self, value: datetime) -> None:
            self.now = value

    frozen = Clock()
    monkeypatch.setattr(timeutil, "now_utc", lambda: frozen.now.astimezone(UTC))
    return frozen


def bearer(raw: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {raw}"}


def issue(user, name: str = "对接脚本", expires_on: date | None = None) -> str:
    return api_tokens.create_token(user, name, expires_on).raw


def fresh_client(app):
    """A client with no session (a script, not a browser)."""
    g.pop("_login_user", None)
    g.pop("csrf_token", None)
    return app.test_client()


def ranking_url(corpus, kind: str) -> str:
    if kind == "products":
        return f"/api/v1/opportunities/{corpus.parking_need.id}/products"
    return f"/api/v1/products/{corpus.parking_product.id}/opportunities"


# -------------------------------------------------------------------- the token page


def test_the_page_needs_a_login(client):
    response = client.get("/api/tokens")
    assert response.status_code == 302 and "/auth/login" in response.headers["Location"]


def test_a_created_token_is_shown_once_and_stored_hashed(make, client, auth):
    user = make.user(make.org())
    auth.login(user)
    response = auth.post("/api/tokens", {"name": "数据对接脚本"})
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    shown = RAW_TOKEN.findall(html)
    assert shown, "the new token is on the page"
    raw = shown[0]
    stored = make.db.session.scalar(select(ApiToken))
    assert stored.user_id == user.id and stored.name == "数据对接脚本"
    assert stored.token_hash == hashlib.sha256(raw.encode()).hexdigest()
    assert stored.prefix == raw[:12] and raw not in (stored.prefix, stored.token_hash)
    assert response.headers["Cache-Control"] == "no-store"
    again = client.get("/api/tokens").get_data(as_text=True)
    assert raw not in again and f"{stored.prefix}…" in again


def test_creating_a_token_is_audited(make):
    user = make.user(make.org())
    issue(user, "审计测试")
    event = make.db.session.scalar(select(AuditEvent))
    assert event.action == "api_token.create" and event.actor_id == user.id and "审计测试" in event.summary


def test_the_token_form_needs_csrf(make, client, auth):
    auth.login(make.user(make.org()))
    assert client.post("/api/tokens", data={"name": "x"}).status_code == 400
    assert make.db.session.scalar(select(ApiToken)) is None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"name": ""}, "请填写令牌名称"),
        ({"name": "名" * 61}, "令牌名称不能超过60个字"),
        ({"name": "x", "expires_on": "2027-06-02"}, "有效期最长一年"),
        ({"name": "x", "expires_on": "2026-05-31"}, "有效期不能早于今天"),
        ({"name": "x", "expires_on": "明天"}, "日期"),
    ],
)
def test_invalid_token_forms_keep_input_and_explain_in_chinese(make, client, auth, clock, data, message):
    auth.login(make.user(make.org()))
    response = auth.post("/api/tokens", data)
    assert response.status_code == 200  # the form again, as every form of the site
    html = response.get_data(as_text=True)
    assert message in html and "invalid-feedback" in html
    if data["name"]:
        assert f'value="{data["name"]}"' in html
    assert make.db.session.scalar(select(ApiToken)) is None


def test_a_token_may_last_exactly_one_year(make, clock):
    user = make.user(make.org())
    api_tokens.create_token(user, "一年", date(2027, 6, 1))
    with pytest.raises(ValidationFailed):
        api_tokens.create_token(user, "一年零一天", date(2027, 6, 2))


def test_a_user_holds_at_most_twenty_live_tokens(make):
    user = make.user(make.org())
    for n in range(api_tokens.MAX_ACTIVE_TOKENS):
        issue(user, f"令牌{n}")
    with pytest.raises(ValidationFailed) as exc:
        issue(user, "再来一个")
    assert "最多保留20个有效令牌" in exc.value.message
    api_tokens.revoke_token(user, api_tokens.user_tokens(user)[0].id)
    issue(user, "撤销一个后可以再建")


def test_revoking_on_the_page_stops_the_token(app, make, corpus, client, auth):
    user = make.user(corpus.gov)
    raw = issue(user)
    token = make.db.session.scalar(select(ApiToken))
    auth.login(user)
    response = auth.post(f"/api/tokens/{token.id}/revoke", follow_redirects=True)
    assert "已撤销令牌" in response.get_data(as_text=True)
    assert token.revoked_at is not None
    script = fresh_client(app)
    refused = script.get(ranking_url(corpus, "products"), headers=bearer(raw))
    assert refused.status_code == 401
    assert refused.get_json()["error"] == {"code": 401, "message": "API 令牌已被撤销"}


def test_nobody_else_can_revoke_a_token(make, client, auth):
    owner, other = make.user(make.org()), make.user(make.org())
    issue(owner)
    token = make.db.session.scalar(select(ApiToken))
    with pytest.raises(NotFound):
        api_tokens.revoke_token(make.admin(), token.id)
    auth.login(other)
    assert auth.post(f"/api/tokens/{token.id}/revoke").status_code == 404
    assert token.revoked_at is None
    assert token.prefix not in client.get("/api/tokens").get_data(as_text=True)


@pytest.mark.parametrize(
    ("who", "action", "allowed"),
    [
        ("anonymous", "view", False),
        ("owner", "view", True),
        ("owner", "revoke", True),
        ("colleague", "view", False),
        ("colleague", "revoke", False),
        ("organizer", "revoke", False),
        ("admin", "revoke", False),
    ],
)
def test_permission_matrix_of_a_token(make, who, action, allowed):
    org = make.org()
    owner = make.user(org)
    issue(owner)
    token = make.db.session.scalar(select(ApiToken))
    users = {
        "anonymous": None,
        "owner": owner,
        "colleague": make.user(org),
        "organizer": make.organizer(),
        "admin": make.admin(),
    }
    assert api_tokens.can(users[who], action, token) is allowed


def test_a_revoked_token_cannot_be_revoked_again(make):
    user = make.user(make.org())
    issue(user)
    token = make.db.session.scalar(select(ApiToken))
    api_tokens.revoke_token(user, token.id)
    assert api_tokens.can(user, "revoke", token) is False
    first = token.revoked_at
    api_tokens.revoke_token(user, token.id)
    assert token.revoked_at == first


def test_the_user_menu_links_the_token_page(make, client, auth):
    auth.login(make.user(make.org()))
    assert 'href="/api/tokens"' in client.get("/").get_data(as_text=True)


# -------------------------------------------------------------------- authentication


def test_a_token_expires_at_the_end_of_its_beijing_day(app, make, corpus, clock):
    user = make.user(corpus.gov)
    raw = issue(user, expires_on=date(2026, 6, 10))
    script = fresh_client(app)
    clock.set(datetime(2026, 6, 10, 23, 59, 58, tzinfo=BEIJING))
    assert script.get(ranking_url(corpus, "products"), headers=bearer(raw)).status_code == 200
    clock.set(datetime(2026, 6, 11, 0, 0, 1, tzinfo=BEIJING))
    response = script.get(ranking_url(corpus, "products"), headers=bearer(raw))
    assert response.status_code == 401
    assert response.get_json()["error"]["message"] == "API 令牌已过期，请创建新的令牌"


def test_last_use_is_recorded_at_most_every_five_minutes(app, make, corpus, clock):
    user = make.user(corpus.gov)
    raw = issue(user)
    token = make.db.session.scalar(select(ApiToken))
    script = fresh_client(app)
    script.get(ranking_url(corpus, "products"), headers=bearer(raw))
    first = datetime(2026, 6, 1, 1, 0)  # 09:00 Beijing, stored as naive UTC
    assert token.last_used_at == first
    clock.set(datetime(2026, 6, 1, 9, 4, tzinfo=BEIJING))
    script.get(ranking_url(corpus, "products"), headers=bearer(raw))
    make.db.session.refresh(token)
    assert token.last_used_at == first
    clock.set(datetime(2026, 6, 1, 9, 5, tzinfo=BEIJING))
    script.get(ranking_url(corpus, "products"), headers=bearer(raw))
    make.db.session.refresh(token)
    assert token.last_used_at == first + timedelta(minutes=5)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("Bearer mkt_" + "x" * 43, "API 令牌无效"),
        ("Bearer not-a-token", "API 令牌无效"),
        ("Bearer ", "Authorization 头应为"),
        ("Basic dXNlcjpwYXNz", "Authorization 头应为"),
        ("mkt_abc", "Authorization 头应为"),
    ],
)
def test_bad_authorization_headers_are_401_json(client, corpus, header, message):
    for url in (ranking_url(corpus, "products"), "/api/v1/search?q=停车"):
        response = client.get(url, headers={"Authorization": header})
        assert response.status_code == 401
        assert message in response.get_json()["error"]["message"]
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_deactivated_users_token_stops_working(app, make, corpus):
    user = make.user(corpus.gov)
    raw = issue(user)
    user.active = False
    make.db.session.commit()
    response = fresh_client(app).get(ranking_url(corpus, "products"), headers=bearer(raw))
    assert response.status_code == 401
    assert response.get_json()["error"]["message"] == "该令牌所属账号已停用"


def test_a_token_call_sets_no_session_cookie(app, make, corpus):
    raw = issue(make.user(corpus.gov))
    response = fresh_client(app).get(ranking_url(corpus, "products"), headers=bearer(raw))
    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers


def test_the_header_wins_over_a_signed_in_session(make, corpus, client, auth):
    """A browser signed in as an organizer that sends a bad token is refused, not let through."""
    auth.login(make.organizer())
    assert client.get(ranking_url(corpus, "products")).status_code == 200
    response = client.get(ranking_url(corpus, "products"), headers=bearer("mkt_unknown"))
    assert response.status_code == 401


# -------------------------------------------------------------------- scope: the rankings' rule


def _user_for(make, corpus, who: str):
    return {
        "owner member": lambda: make.user(corpus.gov),
        "product owner member": lambda: make.user(corpus.firm),
        "other organization": lambda: make.user(corpus.care_firm),
        "organizer": make.organizer,
        "admin": make.admin,
    }[who]()


@pytest.mark.parametrize(
    ("who", "kind", "expected"),
    [
        ("anonymous", "products", 401),
        ("anonymous", "opportunities", 401),
        ("owner member", "products", 200),
        # The publisher of a need that the product ranks for is not the product's owner.
        ("owner member", "opportunities", 403),
        ("product owner member", "opportunities", 200),
        ("product owner member", "products", 403),
        ("other organization", "products", 403),
        ("other organization", "opportunities", 403),
        ("organizer", "products", 200),
        ("organizer", "opportunities", 200),
        ("admin", "products", 200),
        ("admin", "opportunities", 200),
    ],
)
def test_ranking_access_with_a_token(app, make, corpus, who, kind, expected):
    headers = {} if who == "anonymous" else bearer(issue(_user_for(make, corpus, who)))
    response = fresh_client(app).get(ranking_url(corpus, kind), headers=headers)
    assert response.status_code == expected
    body = response.get_json()
    if expected == 200:
        assert body["results"]
    else:
        assert body["error"]["code"] == expected
        assert re.search(r"[\u4e00-\u9fff]", body["error"]["message"])


def test_a_member_of_another_organization_cannot_read_an_unpublished_needs_rankings(app, make, corpus):
    draft = hidden_opportunity(make, corpus.gov, EntryStatus.DRAFT)
    url = f"/api/v1/opportunities/{draft.id}/products"
    outsider = bearer(issue(make.user(corpus.care_firm)))
    response = fresh_client(app).get(url, headers=outsider)
    assert response.status_code == 404
    assert response.get_json()["error"]["message"] == "条目不存在"
    assert fresh_client(app).get(url, headers=bearer(issue(make.user(corpus.gov)))).status_code == 200
    assert fresh_client(app).get(url, headers=bearer(issue(make.organizer()))).status_code == 200


@pytest.mark.parametrize("status", UNPUBLISHED)
def test_an_organizer_token_never_sees_unpublished_results(app, make, corpus, status):
    hidden = hidden_opportunity(make, corpus.gov, status)
    raw = issue(make.organizer())
    body = fresh_client(app).get(
        f"/api/v1/products/{corpus.parking_product.id}/opportunities?k=100&include_closed=true",
        headers=bearer(raw),
    ).get_json()
    assert body["results"] and hidden.id not in [r["id"] for r in body["results"]]


# -------------------------------------------------------------------- rate limits per token


@pytest.fixture
def limits(app, monkeypatch):
    monkeypatch.setitem(app.config, "RATE_LIMITS_ENABLED", True)
    monkeypatch.setitem(app.config, "RATELIMIT_API", "2 per minute")
    limiter.reset()
    yield
    limiter.reset()


def test_each_token_has_its_own_rate_limit(app, make, corpus, limits):
    first, second = issue(make.organizer()), issue(make.organizer())
    script = fresh_client(app)
    codes = [script.get("/api/v1/search?q=停车", headers=bearer(first)).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    limited = script.get("/api/v1/search?q=停车", headers=bearer(first))
    assert limited.get_json()["error"]["code"] == 429 and "Retry-After" in limited.headers
    assert script.get("/api/v1/search?q=停车", headers=bearer(second)).status_code == 200


def test_random_tokens_share_their_senders_address_limit(app, make, corpus, limits):
    script = fresh_client(app)
    codes = [
        script.get("/api/v1/search?q=停车", headers=bearer(f"mkt_random{n}")).status_code for n in range(3)
    ]
    assert codes == [401, 401, 429]

"""Cacheable public pages (marketplace/http_cache.py): no session for anonymous visitors on pages
without a form, ETag / Last-Modified from the data version with cheap 304s, and Cache-Control
that a reverse proxy can follow; personal pages stay private."""

from __future__ import annotations

import re
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, select

from marketplace import http_cache, timeutil
from marketplace.models import BatchStatus, EntryStatus, Event, EventKind, EventStatus, IndexState
from marketplace.services import batches, index_sync
from tests.conftest import CSRF_META, csrf_token

HTML_PAGES = [
    "/",
    "/opportunities",
    "/opportunities?page=2",
    "/products",
    "/products?tag=物联网&maturity=scale",
    "/opportunities/{opportunity}",
    "/products/{product}",
    "/batches",
    "/batches/{batch}",
    "/search?q=停车",
    "/achievements",
    "/events/",
    "/labs",
]
API_PAGES = [
    "/api/v1/search?q=停车&side=products&k=20",
    "/api/v1/opportunities",
    "/api/v1/products",
]


@pytest.fixture
def catalogue(make, db):
    """A published opportunity and product, each in a published batch, plus a signed-in user."""
    publisher = make.org(kind="government", name="南昌市交通运输局")
    supplier = make.org(name="江西智行科技有限公司")
    opp_batch = make.batch("opportunity", BatchStatus.PUBLISHED)
    product_batch = make.batch("product", BatchStatus.PUBLISHED)
    opportunity = make.opportunity(publisher, EntryStatus.PUBLISHED, opp_batch, title="老城区智慧停车诱导")
    product = make.product(supplier, EntryStatus.PUBLISHED, product_batch, name="停车诱导平台")
    index_sync.bump()
    db.session.commit()
    return {
        "opportunity": opportunity.id,
        "product": product.id,
        "batch": opp_batch.id,
        "publisher": publisher,
        "supplier": supplier,
        "user": make.user(supplier),
        "organizer": make.organizer(),
    }


def url_of(template: str, catalogue: dict) -> str:
    return template.format(**catalogue)


@contextmanager
def count_statements(db):
    statements: list[str] = []

    def before_cursor_execute(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", before_cursor_execute)
    try:
        yield statements
    finally:
        event.remove(db.engine, "before_cursor_execute", before_cursor_execute)


def etag_of(client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    return response.headers["ETag"]


# ---------------------------------------------------------------- anonymous visitors


@pytest.mark.parametrize("template", HTML_PAGES + API_PAGES)
def test_anonymous_public_page_sets_no_cookie_and_is_cacheable(client, catalogue, template):
    response = client.get(url_of(template, catalogue))
    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers
    assert "cookie" not in response.headers.get("Vary", "").lower()
    assert response.headers["ETag"].startswith('W/"')
    assert response.last_modified is not None
    assert response.last_modified <= datetime.now(UTC)
    cache = response.cache_control
    assert cache.public and cache.s_maxage == 60  # shared caches (nginx) keep it a minute
    assert cache.max_age == 0 and cache.must_revalidate  # browsers ask again, with their cookies
    assert cache.stale_while_revalidate is None
    assert not cache.private and not cache.no_store


@pytest.mark.parametrize("template", HTML_PAGES)
def test_anonymous_page_without_a_form_has_no_csrf_token(client, catalogue, template):
    html = client.get(url_of(template, catalogue)).get_data(as_text=True)
    assert 'name="csrf-token"' not in html
    assert 'name="csrf_token"' not in html
    assert "登录" in html  # the anonymous navbar is still there


@pytest.mark.parametrize("template", HTML_PAGES + API_PAGES)
def test_revalidation_answers_304_without_running_the_view(client, db, catalogue, template):
    url = url_of(template, catalogue)
    client.get(url)  # warm-up: in the tests' immediate job mode a first look may encode vectors
    first = client.get(url)
    with count_statements(db) as statements:
        again = client.get(url, headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304
    assert again.get_data() == b""
    assert again.headers["ETag"] == first.headers["ETag"]
    assert again.cache_control.public
    assert "Set-Cookie" not in again.headers
    assert len(statements) == 1, statements  # the one stamp query; the view did not run


def test_if_modified_since_answers_304_and_a_star_does_not(client, catalogue):
    first = client.get("/products")
    since = first.headers["Last-Modified"]
    assert client.get("/products", headers={"If-Modified-Since": since}).status_code == 304
    earlier = (first.last_modified - timedelta(seconds=1)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert client.get("/products", headers={"If-Modified-Since": earlier}).status_code == 200
    # An ETag that does not match wins over a matching date.
    both = {"If-None-Match": 'W/"stale"', "If-Modified-Since": since}
    assert client.get("/products", headers=both).status_code == 200
    assert client.get("/products", headers={"If-None-Match": "*"}).status_code == 200


def test_head_request_revalidates_too(client, catalogue):
    tag = etag_of(client, "/")
    assert client.head("/", headers={"If-None-Match": tag}).status_code == 304


def test_etag_depends_on_the_query(client, catalogue):
    assert etag_of(client, "/products") != etag_of(client, "/products?page=2")
    assert etag_of(client, "/search?q=停车") != etag_of(client, "/search?q=养老")


# ---------------------------------------------------------------- what moves the ETag


def test_publishing_a_batch_changes_the_etag(client, db, make, catalogue):
    before = {url: etag_of(client, url) for url in ("/", "/products", "/api/v1/products")}
    organizer = catalogue["organizer"]
    batch = make.batch("product", BatchStatus.COLLECTING, title="2026年第九批产品清单")
    make.product(catalogue["supplier"], EntryStatus.APPROVED, batch, name="独居老人跌倒监测系统")
    batches.publish_batch(organizer, batch)
    for url, old in before.items():
        response = client.get(url, headers={"If-None-Match": old})
        assert response.status_code == 200, url
        assert response.headers["ETag"] != old
    assert "独居老人跌倒监测系统" in client.get("/products").get_data(as_text=True)


def test_a_change_the_entries_counter_misses_still_changes_the_etag(client, db, catalogue):
    """Any commit to a table that public pages show moves the PAGES counter (here: an
    organization renamed directly, with no service bumping index_sync)."""
    url = url_of("/products/{product}", catalogue)
    old = etag_of(client, url)
    catalogue["supplier"].name = "江西智行数字科技有限公司"
    db.session.commit()
    response = client.get(url, headers={"If-None-Match": old})
    assert response.status_code == 200
    assert "江西智行数字科技有限公司" in response.get_data(as_text=True)


def pages_version(db) -> int:
    return db.session.scalar(select(IndexState.version).where(IndexState.name == http_cache.PAGES)) or 0


def test_commits_to_private_tables_leave_the_pages_counter_alone(db, catalogue):
    before = pages_version(db)
    catalogue["user"].last_login_at = timeutil.now_naive_utc()
    db.session.commit()
    assert pages_version(db) == before
    catalogue["publisher"].contact_name = "李四"
    db.session.commit()
    assert pages_version(db) == before + 1


def test_a_rolled_back_change_does_not_move_the_counter(db, catalogue):
    before = pages_version(db)
    catalogue["publisher"].contact_name = "王五"
    db.session.flush()
    db.session.rollback()
    db.session.commit()
    assert pages_version(db) == before


def test_the_etag_changes_with_the_beijing_day(client, catalogue, monkeypatch):
    today = client.get("/opportunities")
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    monkeypatch.setattr(timeutil, "now_utc", lambda: tomorrow)
    response = client.get("/opportunities", headers={"If-None-Match": today.headers["ETag"]})
    assert response.status_code == 200
    assert response.headers["ETag"] != today.headers["ETag"]


def test_home_page_changes_when_an_upcoming_event_ends(client, db, catalogue, monkeypatch):
    """The date alone would keep a finished event on the home page until midnight."""
    today = timeutil.local_today()
    morning = timeutil.start_of_local_day(today) + timedelta(hours=9)  # 09:00 Beijing time
    monkeypatch.setattr(timeutil, "now_utc", lambda: morning)
    naive = morning.replace(tzinfo=None)
    db.session.add(Event(kind=EventKind.SALON, title="智慧交通场景沙龙", status=EventStatus.OPEN,
                         starts_at=naive + timedelta(hours=1), ends_at=naive + timedelta(hours=2),
                         capacity=50, registration_deadline=today))
    db.session.commit()
    first = client.get("/")
    assert "智慧交通场景沙龙" in first.get_data(as_text=True)
    assert client.get("/", headers={"If-None-Match": first.headers["ETag"]}).status_code == 304
    afternoon = morning + timedelta(hours=4)  # the same Beijing day, after the event
    monkeypatch.setattr(timeutil, "now_utc", lambda: afternoon)
    response = client.get("/", headers={"If-None-Match": first.headers["ETag"],
                                        "If-Modified-Since": first.headers["Last-Modified"]})
    assert response.status_code == 200
    assert "智慧交通场景沙龙" not in response.get_data(as_text=True)
    assert response.last_modified > first.last_modified


# ---------------------------------------------------------------- private and form pages


def test_signed_in_pages_are_private(client, auth, catalogue):
    anonymous = etag_of(client, "/")
    assert auth.login(catalogue["user"]).status_code == 302
    for url in ("/", "/products", url_of("/opportunities/{opportunity}", catalogue), "/api/v1/products"):
        response = client.get(url, headers={"If-None-Match": anonymous})
        assert response.status_code == 200, url
        assert response.cache_control.private and response.cache_control.no_store, url
        assert not response.cache_control.public
        assert "ETag" not in response.headers


def test_api_token_requests_are_private(client, catalogue):
    response = client.get("/api/v1/products", headers={"Authorization": "Bearer mkt_not-a-token"})
    assert response.status_code == 401
    assert response.cache_control.no_store and response.cache_control.private


def test_a_visitor_with_a_session_gets_private_pages(client, catalogue):
    client.get("/auth/login")  # the form's CSRF token starts a session
    response = client.get("/products")
    assert response.status_code == 200
    assert response.cache_control.private and response.cache_control.no_store
    assert "ETag" not in response.headers


def test_a_page_showing_a_flash_is_not_cached(client, catalogue):
    redirect = client.get("/my/")  # login required: a flash and a session
    assert redirect.status_code == 302
    assert "Set-Cookie" in redirect.headers
    page = client.get(redirect.headers["Location"])
    assert "请先登录后再访问该页面" in page.get_data(as_text=True)
    assert page.cache_control.no_store and not page.cache_control.public


def test_login_page_keeps_its_csrf_token_and_login_works(client, catalogue):
    page = client.get("/auth/login")
    html = page.get_data(as_text=True)
    assert CSRF_META.search(html) and 'name="csrf_token"' in html
    assert "Set-Cookie" in page.headers
    assert page.cache_control.private and page.cache_control.no_store
    user = catalogue["user"]
    refused = client.post("/auth/login", data={"email": user.email, "password": "correct-horse-42"})
    assert refused.status_code == 400
    token = CSRF_META.search(html).group(1)
    done = client.post("/auth/login", data={"email": user.email, "password": "correct-horse-42",
                                            "csrf_token": token})
    assert done.status_code == 302
    assert 'id="nav-user-menu"' in client.get("/").get_data(as_text=True)


@pytest.mark.parametrize("url", ["/auth/register", "/auth/forgot"])
def test_other_form_pages_keep_their_token(client, url):
    response = client.get(url)
    assert response.status_code == 200
    assert CSRF_META.search(response.get_data(as_text=True))
    assert "Set-Cookie" in response.headers


def test_signed_in_public_page_carries_the_token_its_forms_post_with(client, auth, catalogue):
    """The navbar's logout form and static/*.js read the token from a public page when signed in."""
    auth.login(catalogue["user"])
    html = client.get(url_of("/opportunities/{opportunity}", catalogue)).get_data(as_text=True)
    meta = CSRF_META.search(html).group(1)
    hidden = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
    assert meta == hidden
    assert client.post("/auth/logout", data={"csrf_token": meta}).status_code == 302
    assert 'id="nav-user-menu"' not in client.get("/").get_data(as_text=True)


def test_forgot_password_post_works_from_its_page(client, catalogue):
    token = csrf_token(client)
    response = client.post("/auth/forgot", data={"email": catalogue["user"].email, "csrf_token": token})
    assert response.status_code in (200, 302)
    assert "安全令牌" not in response.get_data(as_text=True)


def test_static_files_keep_their_own_cache_headers(client, auth, catalogue):
    auth.login(catalogue["user"])
    response = client.get("/static/app.css")
    assert response.status_code == 200
    assert not response.cache_control.no_store


# ---------------------------------------------------------------- preloading before the fork


def test_preload_compiles_the_templates_and_loads_the_tokenizer(app, monkeypatch):
    """``site.preload`` (run at app creation with MATCHING_PRELOAD=1, so before gunicorn forks)
    leaves no template compilation or dictionary loading to a worker's first request."""
    from marketplace import site
    from matching import text

    app.jinja_env.cache.clear()
    monkeypatch.setattr(text, "_tokenizer", None)
    monkeypatch.setattr(text, "_logp", {})
    site.preload(app)
    compiled = {key[1] for key in app.jinja_env.cache.keys()}
    assert {"base.html", "portal/search.html", "portal/index.html", "errors/error.html"} <= compiled
    assert text._tokenizer is not None and text._logp


# ---------------------------------------------------------------- the page cache


@pytest.mark.parametrize("template", HTML_PAGES + API_PAGES)
def test_a_second_anonymous_get_is_served_from_the_page_cache(client, db, app, catalogue, template):
    url = url_of(template, catalogue)
    client.get(url)  # warm-up (immediate jobs may encode vectors and move a counter)
    first = client.get(url)
    hits = http_cache.page_cache(app).hits
    with count_statements(db) as statements:
        again = client.get(url)
    assert again.status_code == 200
    assert again.get_data() == first.get_data()
    assert again.headers["ETag"] == first.headers["ETag"]
    assert again.headers["Content-Type"] == first.headers["Content-Type"]
    assert again.cache_control.public and "Set-Cookie" not in again.headers
    assert http_cache.page_cache(app).hits == hits + 1
    assert len(statements) == 1, statements  # the stamp query only: the view did not run


def test_cached_answers_still_get_the_security_headers(client, app, catalogue):
    first = client.get("/products")
    hits = http_cache.page_cache(app).hits
    again = client.get("/products")
    assert http_cache.page_cache(app).hits == hits + 1
    for name in ("Content-Security-Policy", "X-Content-Type-Options", "X-Frame-Options", "Referrer-Policy"):
        assert again.headers[name] == first.headers[name], name
    policy = "Content-Security-Policy"
    assert again.headers.getlist(policy) == first.headers.getlist(policy)


def test_a_publication_is_shown_at_once_despite_the_page_cache(client, make, catalogue):
    client.get("/products")
    assert "独居老人跌倒监测系统" not in client.get("/products").get_data(as_text=True)
    batch = make.batch("product", BatchStatus.COLLECTING, title="2026年第十批产品清单")
    make.product(catalogue["supplier"], EntryStatus.APPROVED, batch, name="独居老人跌倒监测系统")
    batches.publish_batch(catalogue["organizer"], batch)
    assert "独居老人跌倒监测系统" in client.get("/products").get_data(as_text=True)


def test_a_direct_change_to_a_shown_table_is_shown_at_once(client, db, catalogue):
    url = url_of("/products/{product}", catalogue)
    client.get(url)
    client.get(url)
    catalogue["supplier"].name = "江西智行云图科技有限公司"
    db.session.commit()
    assert "江西智行云图科技有限公司" in client.get(url).get_data(as_text=True)


def test_signed_in_visitors_never_get_a_cached_anonymous_page(client, auth, catalogue):
    anonymous = client.get("/").get_data(as_text=True)
    client.get("/")
    assert "退出" not in anonymous
    auth.login(catalogue["user"])
    page = client.get("/")
    assert page.cache_control.private and page.cache_control.no_store
    assert "退出" in page.get_data(as_text=True)


def test_api_token_requests_bypass_the_page_cache(client, catalogue):
    client.get("/api/v1/products")
    client.get("/api/v1/products")
    response = client.get("/api/v1/products", headers={"Authorization": "Bearer mkt_not-a-token"})
    assert response.status_code == 401  # not the cached anonymous 200


def test_the_page_cache_keys_on_the_host(client, app, catalogue):
    client.get("/products")
    client.get("/products", base_url="http://portal.example.cn")
    assert len(http_cache.page_cache(app)) == 2


def test_a_new_index_version_changes_the_etag_and_the_cached_page(client, app, catalogue):
    url = "/search?q=停车"
    client.get(url)
    old = client.get(url).headers["ETag"]
    for pointer in http_cache._index_pointers(app.config):
        pointer.parent.mkdir(parents=True, exist_ok=True)
        pointer.write_text('{"version": "x"}', encoding="utf-8")
    try:
        assert client.get(url).headers["ETag"] != old
    finally:
        for pointer in http_cache._index_pointers(app.config):
            pointer.unlink(missing_ok=True)


def test_the_page_cache_can_be_turned_off(client, db, app, catalogue, monkeypatch):
    monkeypatch.setitem(app.extensions, "http_cache_pages", http_cache.PageCache(0, 600))
    client.get("/products")
    with count_statements(db) as statements:
        assert client.get("/products").status_code == 200
    assert len(statements) > 1
    assert len(http_cache.page_cache(app)) == 0


def test_page_cache_is_bounded_in_bytes_and_age(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(http_cache.time, "monotonic", lambda: clock[0])
    cache = http_cache.PageCache(max_bytes=100, max_age=60, max_entry=50)
    assert cache.put(("a",), 200, [], b"x" * 40)
    assert cache.put(("b",), 200, [], b"y" * 40)
    assert not cache.put(("big",), 200, [], b"z" * 51)  # over the per-entry bound
    assert cache.get(("a",)) is not None  # a is now the most recently used
    assert cache.put(("c",), 200, [], b"w" * 40)  # 120 > 100: the least recently used (b) goes
    assert cache.get(("b",)) is None
    assert cache.get(("a",)) == (200, [], b"x" * 40)
    assert cache.size == 80 and len(cache) == 2
    clock[0] += 61
    assert cache.get(("a",)) is None and cache.get(("c",)) is None  # too old
    assert cache.size == 0

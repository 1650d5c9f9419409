"""Shared fixtures: app → db → client → runner, plus ``auth`` and factories.

The suite runs on SQLite by default and on PostgreSQL when ``TEST_DATABASE_URL`` is set.
Tables are created once per session and emptied after every test.
"""

from __future__ import annotations

import os
import re

import pytest
from sqlalchemy import event, text

from marketplace import create_app
from marketplace.extensions import db as _db
from tests import factories

os.environ.setdefault("SECRET_KEY", "test-secret")
# build_encoder(None) reads MATCHING_MODEL: the suite uses the offline encoder, not the installed e5-small.
os.environ["MATCHING_MODEL"] = "offline"

CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)"')


@pytest.fixture(scope="session")
def database_url(tmp_path_factory, worker_id) -> str:
    """SQLite in a temporary file, or ``TEST_DATABASE_URL``; under pytest-xdist each worker gets
    its own PostgreSQL database (``<name>_gw0``, created when missing)."""
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        return f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"
    if worker_id == "master":
        return url
    return _worker_database(url, worker_id)


def _worker_database(url: str, worker_id: str) -> str:
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    base = make_url(url)
    name = f"{base.database}_{worker_id}"
    engine = create_engine(base, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        exists = connection.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first()
        if not exists:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return base.set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def app(database_url, tmp_path_factory):
    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "test-secret",
            "SQLALCHEMY_DATABASE_URI": database_url,
            "MATCHING_INDEX_DIR": str(tmp_path_factory.mktemp("index")),
            "UPLOAD_DIR": str(tmp_path_factory.mktemp("uploads")),
            "MATCHING_MODEL": "offline",  # never the installed e5-small (slow tests load it themselves)
            "HUEY_IMMEDIATE": True,  # jobs run in the caller; test_jobs.py also runs a real consumer
            "RATE_LIMITS_ENABLED": False,  # on only in test_security.py's rate-limit tests
        }
    )
    with app.app_context():
        if _db.engine.dialect.name == "sqlite":
            # The test database is thrown away: no fsync on every commit (it was a seventh of the
            # suite's time). Locking is unchanged, so the jobs' concurrency tests still hold.
            @event.listens_for(_db.engine, "connect")
            def _no_fsync(dbapi_connection, _record):
                dbapi_connection.execute("PRAGMA synchronous=OFF")

            _db.engine.dispose()
        _db.drop_all()
        if database_url.startswith("postgresql"):
            _db.session.execute(text("DROP TABLE IF EXISTS alembic_version"))
            _db.session.commit()
        _db.create_all()
    yield app
    with app.app_context():
        _db.drop_all()


@pytest.fixture(autouse=True)
def _app_context(request, app):
    """Every test runs inside an app context with empty tables."""
    if "no_app" in request.keywords:
        yield
        return
    ctx = app.app_context()
    ctx.push()
    try:
        yield
    finally:
        _db.session.rollback()
        _db.session.remove()
        _empty_tables()
        _forget_indexes(app)
        ctx.pop()


def _empty_tables() -> None:
    """Delete every row, children first, in one round trip (one script), not one statement per
    table: with 60 tables this was a noticeable share of each test."""
    names = [table.name for table in reversed(_db.metadata.sorted_tables)]
    with _db.engine.connect() as connection:
        if _db.engine.dialect.name == "sqlite":
            script = "".join(f'DELETE FROM "{name}";' for name in names)
            connection.connection.driver_connection.executescript(script)
        else:
            connection.exec_driver_sql("; ".join(f'DELETE FROM "{name}"' for name in names))
            connection.commit()


def _forget_indexes(app) -> None:
    """Drop every in-memory index and the saved snapshot pointer between tests.

    Freshness is decided by (id, updated_at) stamps; emptied tables reuse ids and several tests
    freeze the clock at the same instant, so the next test could otherwise be served a previous
    test's index (seen as order-dependent failures of the digest tests).
    """
    from pathlib import Path

    from marketplace import http_cache
    from marketplace.services import matching, search

    http_cache.page_cache(app).clear()  # its keys hold counters that restart with the tables
    app.extensions.pop(http_cache._EVENT_TIMES, None)
    app.extensions[search.EXTENSION_KEY] = search.SearchIndex()
    app.extensions.pop("portal.published_counts", None)
    app.extensions.pop("portal.list_cache", None)
    app.extensions[matching.EXTENSION_KEY] = matching.MatchingService.from_config(app.config)
    Path(app.config["MATCHING_INDEX_DIR"], matching.POINTER_FILE).unlink(missing_ok=True)


@pytest.fixture
def db(app):
    return _db


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


def csrf_token(client) -> str:
    """Fetch a page and read the session's CSRF token from its meta tag."""
    html = client.get("/auth/login", follow_redirects=True).get_data(as_text=True)
    match = CSRF_META.search(html)
    assert match, "no csrf token on page"
    return match.group(1)


class AuthActions:
    """Real logins and CSRF-protected POSTs through the test client."""

    def __init__(self, client):
        self._client = client

    def login(self, user_or_email, password: str = factories.PASSWORD):
        email = getattr(user_or_email, "email", user_or_email)
        return self.post("/auth/login", {"email": email, "password": password})

    def logout(self):
        return self.post("/auth/logout", {})

    def post(self, url: str, data: dict | None = None, **kwargs):
        """POST with the session's CSRF token, like a browser submitting a form."""
        data = dict(data or {})
        data.setdefault("csrf_token", csrf_token(self._client))
        return self._client.post(url, data=data, **kwargs)


@pytest.fixture
def auth(client) -> AuthActions:
    return AuthActions(client)


@pytest.fixture
def make(db):
    """Factories bound to the test database: ``make.org()``, ``make.user()``, …"""
    return factories

"""Public pages that browsers and a reverse proxy can cache (docs/deployment.md, "Caching").

* **No session for anonymous visitors.** A request without a session cookie gets a
  :class:`CookielessSession`: reading it (Flask-Login looking for a user, ``base.html`` looking
  for flashed messages) neither sets a cookie nor adds ``Vary: Cookie``; only writing to it does
  (a form's CSRF token, a flash, a login). ``base.html`` renders the CSRF ``<meta>`` only for
  signed-in users and for pages that hold a form (:func:`csrf_token_issued`).
* **Validators from the data version.** For the endpoints in :data:`PUBLIC_ENDPOINTS`, an
  anonymous GET (no session or remember-me cookie, no ``Authorization`` header) gets a weak
  ``ETag`` and a ``Last-Modified`` computed *before the view runs* from one small query: every
  row of ``index_state`` (the public-content counter of ``services.index_sync``, the vector
  counter, and :data:`PAGES`, which this module moves on every commit that changes a table the
  public pages show), plus the URL with its query, the template/code version and today's
  Beijing date (deadlines, 征集中). Pages that list events add the nearest event start or end
  (「即将举办」 changes when one passes). A matching ``If-None-Match`` (or, without it,
  ``If-Modified-Since``) is answered ``304`` without running the view.
* **A page cache in each process.** The same validators key a bounded in-memory cache of the
  rendered bodies (:class:`PageCache`): an anonymous GET whose validators match a body this
  process rendered before is answered from it without running the view. The key is the ETag,
  which already holds the URL, every data counter, the code version and the Beijing date, plus
  the host; the index pointers of the engine and of the keyword search are part of the
  validators, so a rebuilt index changes them. ``HTTP_PAGE_CACHE_BYTES`` bounds it (``0`` turns
  it off), ``HTTP_PAGE_CACHE_SECONDS`` bounds an entry's age. What is stored is exactly what the
  view returned to an anonymous visitor: no session, no cookie, status 200; the response headers
  that later hooks add (security headers, rate limits) are added again on every hit.
* **Cache-Control.** Such a 200 gets ``public, max-age=0, must-revalidate, s-maxage=60``,
  unless the response wrote the session (a form with a CSRF token, a flash) or set any cookie:
  a shared cache (nginx) may serve it for ``HTTP_CACHE_MAX_AGE`` seconds, a browser must ask
  again every time — with its cookies, so that a visitor who has just signed in gets the
  personal page, never the anonymous copy it stored a minute ago (a conditional request for an
  unchanged anonymous page is a cheap 304). No ``stale-while-revalidate``: browsers would show
  the stored anonymous page once more after a sign-in; nginx serves stale entries while it
  refreshes them on its own (``proxy_cache_use_stale updating``, docs/deployment.md). Any
  response to a request with a session, remember-me cookie or API token, or that writes the
  session, gets ``private, no-store`` unless the view chose its own ``Cache-Control``.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import os
import threading
import time
from collections import OrderedDict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flask import Flask, current_app, request, session
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from sqlalchemy import event, select, union_all, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from marketplace import timeutil
from marketplace.config import PROJECT_ROOT
from marketplace.extensions import db
from marketplace.models import Event, IndexState
from marketplace.services import index_sync

#: The ``index_state`` row moved after every commit that changes a table a public page shows.
PAGES = index_sync.PAGES
#: Endpoints whose anonymous GETs are cacheable, and whether they show events (the home page's
#: 「近期活动」, the events pages) and so change when an event starts or ends.
PUBLIC_ENDPOINTS: dict[str, bool] = {
    "portal.index": True,
    "portal.opportunities": False,
    "portal.products": False,
    "portal.opportunity": False,
    "portal.product": False,
    "portal.batches": False,
    "portal.batch": False,
    "portal.search": False,
    "programme.achievements": False,
    "events.index": True,
    "events.detail": True,
    "lifecycle.labs": False,
    "lifecycle.lab": False,
    "api.search": False,
    "api.opportunities": False,
    "api.products": False,
}
#: Tables no public page shows: accounts, tokens, audit, notifications, mail, jobs, caches and the
#: counters themselves. A commit that changes only these leaves :data:`PAGES` alone.
PRIVATE_TABLES = frozenset({
    "user", "login_token", "account_token", "api_token", "audit_event", "notification",
    "notification_preference", "email_outbox", "match_alert", "job", "embedding_cache",
    "index_state", "entry_revision",
})
_CHANGED = "http_cache.public_tables_changed"
#: Where the validators of this request wait for the response (the WSGI environ is per request;
#: ``g`` is not, when a test or script holds one app context across requests).
_VALIDATORS = "marketplace.http_cache.validators"
#: Set on a request answered from the page cache, so that the answer is not stored again.
_FROM_CACHE = "marketplace.http_cache.hit"
#: Response headers that are not stored with a cached body: the validators and Cache-Control are
#: set again on every answer, Content-Length is recomputed, the others would be wrong to replay.
_NOT_STORED = frozenset({"etag", "last-modified", "cache-control", "content-length", "date",
                         "set-cookie", "vary", "expires", "age"})


# ---------------------------------------------------------------- sessions


class CookielessSession(SecureCookieSession):
    """The session of a request that brought no session cookie.

    Flask marks a session *accessed* (and so sends ``Vary: Cookie``) whenever it is read. An
    empty session that is only read changes nothing and sets no cookie, so here only a write
    counts as an access; a write sets the cookie and ``Vary: Cookie`` as usual.
    """

    @property
    def accessed(self) -> bool:  # type: ignore[override]
        return self.modified

    @accessed.setter
    def accessed(self, value: bool) -> None:
        pass


class CacheFriendlySessionInterface(SecureCookieSessionInterface):
    """Signed-cookie sessions (Flask's default) with :class:`CookielessSession` for new ones."""

    def open_session(self, app: Flask, request) -> SecureCookieSession | None:
        if self.get_cookie_name(app) not in request.cookies:
            return CookielessSession() if self.get_signing_serializer(app) is not None else None
        return super().open_session(app, request)


def csrf_token_issued() -> bool:
    """Whether the session holds a CSRF token, for ``base.html``: a form on this page issued one
    (a new session), or the visitor already has a session with one."""
    return current_app.config.get("WTF_CSRF_FIELD_NAME", "csrf_token") in session


def _has_credentials() -> bool:
    """A session or remember-me cookie, or an API token: the response may be personal."""
    config = current_app.config
    cookies = request.cookies
    return (
        config["SESSION_COOKIE_NAME"] in cookies
        or config.get("REMEMBER_COOKIE_NAME", "remember_token") in cookies
        or "Authorization" in request.headers
    )


# ---------------------------------------------------------------- the page cache


class PageCache:
    """A least-recently-used map from a page's validators to its rendered body, bounded in bytes.

    One per process (gunicorn workers each hold their own); safe for threaded servers.
    """

    def __init__(self, max_bytes: int, max_age: float, max_entry: int | None = None) -> None:
        self.max_bytes = max(0, int(max_bytes))
        self.max_age = float(max_age)
        self.max_entry = int(max_entry) if max_entry is not None else max(self.max_bytes // 8, 1)
        self._entries: OrderedDict[tuple, tuple[float, int, list[tuple[str, str]], bytes]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size(self) -> int:
        """Bytes of bodies held."""
        return self._bytes

    def get(self, key: tuple) -> tuple[int, list[tuple[str, str]], bytes] | None:
        now = time.monotonic()
        with self._lock:
            found = self._entries.get(key)
            if found is None or now - found[0] > self.max_age:
                if found is not None:
                    self._drop(key)
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return found[1], found[2], found[3]

    def put(self, key: tuple, status: int, headers: list[tuple[str, str]], body: bytes) -> bool:
        if not self.enabled or len(body) > self.max_entry:
            return False
        with self._lock:
            if key in self._entries:
                self._drop(key)
            self._entries[key] = (time.monotonic(), status, headers, body)
            self._bytes += len(body)
            while self._bytes > self.max_bytes and self._entries:
                self._drop(next(iter(self._entries)))
        return True

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def _drop(self, key: tuple) -> None:
        _, _, _, body = self._entries.pop(key)
        self._bytes -= len(body)


def page_cache(app: Flask | None = None) -> PageCache:
    """The page cache of ``app`` (default: the current app)."""
    return (app or current_app).extensions["http_cache_pages"]


def _cache_key(etag: str) -> tuple[str, str]:
    return etag, request.host_url


# ---------------------------------------------------------------- versions


def code_version(root: Path = PROJECT_ROOT) -> tuple[str, datetime]:
    """A hash of the templates, static files and application code, and their newest mtime.

    Computed once per process (before the fork with ``gunicorn --preload``): a deployment that
    changes how a page looks changes every ETag.
    """
    digest = hashlib.sha256()
    newest = 0.0
    files: list[Path] = []
    for folder, pattern in ((root / "templates", "*.html"), (root / "marketplace", "*.py"),
                            (root / "marketplace" / "static", "*")):
        files.extend(p for p in folder.rglob(pattern) if p.is_file())
    for path in sorted(files):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
        newest = max(newest, path.stat().st_mtime)
    return digest.hexdigest()[:16], datetime.fromtimestamp(newest, UTC)


#: Every ``index_state`` row: the counters the validators are made of.
_STAMP_QUERY = select(IndexState.name, IndexState.version, IndexState.updated_at)
#: Every event start and end: where 「即将举办」 / 「进行中」 / 「已结束」 change.
_EVENT_TIMES_QUERY = union_all(
    select(Event.starts_at.label("t")),
    select(Event.ends_at.label("t")).where(Event.ends_at.is_not(None)),
)
_EVENT_TIMES = "http_cache_event_times"


def _event_boundaries(
    pages: tuple[int, Any] | None, now: datetime
) -> tuple[datetime | None, datetime | None]:
    """The latest event start or end that has passed and the next one to come.

    The sorted times are kept per process until the ``pages`` counter moves (any change to an
    event moves it), so an event page's validators cost the same single query as any other
    page's; without the counter they are read every time.
    """
    held = current_app.extensions.get(_EVENT_TIMES)
    if pages is not None and held is not None and held[0] == pages:
        times = held[1]
    else:
        found = db.session.connection().execute(_EVENT_TIMES_QUERY).scalars()
        times = sorted(t for t in found if t is not None)
        if pages is not None:
            current_app.extensions[_EVENT_TIMES] = (pages, times)
    at = bisect.bisect_right(times, now)
    return (times[at - 1] if at else None), (times[at] if at < len(times) else None)


def _index_pointers(config) -> tuple[Path, Path]:
    """The pointer files of the engine's and the keyword search's index versions."""
    return _pointer_paths(config["MATCHING_INDEX_DIR"], config.get("SEARCH_INDEX_DIR"))


@functools.lru_cache(maxsize=8)
def _pointer_paths(matching_dir: str, search_dir: str | None) -> tuple[Path, Path]:
    from marketplace.services.matching.service import ENGINE_INDEX
    from marketplace.services.search_build import INDEX_NAME, index_root

    config = {"MATCHING_INDEX_DIR": matching_dir, "SEARCH_INDEX_DIR": search_dir}
    return (Path(matching_dir) / f"{ENGINE_INDEX}.json", index_root(config) / f"{INDEX_NAME}.json")


def _index_stamps() -> list[str]:
    """When each index pointer last moved (a new version), from ``stat``: no file is read."""
    stamps = []
    for path in _index_pointers(current_app.config):
        try:
            stamps.append(f"{path.name}:{os.stat(path).st_mtime_ns}")
        except OSError:
            stamps.append(f"{path.name}:-")
    return stamps


def validators() -> tuple[str, datetime]:
    """The weak ETag and the Last-Modified time of this request's public page."""
    # Core, not the ORM: the statement selects columns only, and the ORM's execute machinery cost
    # as much as the query itself.
    rows = db.session.connection().execute(_STAMP_QUERY).all()
    stamps = {name: (number, stamp) for name, number, stamp in rows}
    request.environ[index_sync.REQUEST_STAMPS] = stamps
    if PUBLIC_ENDPOINTS[request.endpoint]:
        last, upcoming = _event_boundaries(stamps.get(PAGES), timeutil.now_naive_utc())
        rows = [*rows, ("~events-last", 0, last), ("~events-next", 0, upcoming)]
    version, version_time = current_app.extensions["http_cache"]
    today = timeutil.local_today()
    parts = [version, today.isoformat(), request.full_path, *_index_stamps()]
    parts.extend(f"{name}:{number}:{stamp}" for name, number, stamp in sorted(rows, key=lambda r: r[0]))
    etag = hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]
    moments = [version_time, timeutil.start_of_local_day(today)]
    moments.extend(
        stamp.replace(tzinfo=UTC) for name, _, stamp in rows
        if stamp is not None and name != "~events-next"
    )
    last_modified = min(max(moments), timeutil.now_utc()).replace(microsecond=0)
    return etag, last_modified


# ---------------------------------------------------------------- request hooks


def _revalidate() -> Response | None:
    """Before the view: compute the validators and answer 304 when the client's copy is current."""
    if request.method not in ("GET", "HEAD") or request.endpoint not in PUBLIC_ENDPOINTS:
        return None
    if _has_credentials():
        return None
    etag, last_modified = validators()
    request.environ[_VALIDATORS] = (etag, last_modified)
    if request.if_none_match:
        fresh = not request.if_none_match.star_tag and request.if_none_match.contains_weak(etag)
    elif request.if_modified_since is not None:
        fresh = request.if_modified_since >= last_modified
    else:
        fresh = False
    if fresh:
        response = current_app.response_class(status=304)
        _set_public(response, etag, last_modified)
        return response
    cache = page_cache()
    if not cache.enabled:
        return None
    found = cache.get(_cache_key(etag))
    if found is None:
        return None
    status, headers, body = found
    request.environ[_FROM_CACHE] = True
    return current_app.response_class(body, status=status, headers=headers)


def _set_public(response: Response, etag: str, last_modified: datetime) -> None:
    config = current_app.config
    response.set_etag(etag, weak=True)
    response.last_modified = last_modified
    response.cache_control.public = True
    response.cache_control.max_age = 0  # browsers: revalidate, sending the cookies they now have
    response.cache_control.must_revalidate = True
    response.cache_control.s_maxage = int(config["HTTP_CACHE_MAX_AGE"])  # shared caches (nginx)


def _cache_headers(response: Response) -> Response:
    """After the view: public validators for a cacheable page, ``private, no-store`` for a
    personal one."""
    written = session.modified
    found = request.environ.get(_VALIDATORS)
    if (
        found is not None
        and not _has_credentials()
        and response.status_code == 200
        and not written
        and "Set-Cookie" not in response.headers
        and "Cache-Control" not in response.headers
    ):
        _set_public(response, *found)
        if request.method == "GET" and not request.environ.get(_FROM_CACHE):
            _store(response, found[0])
        return response
    if response.status_code == 304 and found is not None:
        return response
    if "Cache-Control" not in response.headers and (written or _has_credentials()):
        response.cache_control.private = True
        response.cache_control.no_store = True
    return response


def _store(response: Response, etag: str) -> None:
    """Keep the body of a public 200 for the next anonymous GET with the same validators."""
    cache = page_cache()
    if not cache.enabled or response.is_streamed or response.direct_passthrough:
        return
    headers = [(k, v) for k, v in response.headers.items() if k.lower() not in _NOT_STORED]
    cache.put(_cache_key(etag), response.status_code, headers, response.get_data())


# ---------------------------------------------------------------- the PAGES counter


def _table_name(target: Any) -> str | None:
    table = getattr(target, "__table__", None)
    return getattr(target if table is None else table, "name", None)


def _before_flush(sess: Session, _context, _instances) -> None:
    if sess.info.get(_CHANGED):
        return
    for obj in (*sess.new, *sess.deleted, *sess.dirty):
        if _table_name(type(obj)) not in PRIVATE_TABLES and (
            obj in sess.new or obj in sess.deleted or sess.is_modified(obj)
        ):
            sess.info[_CHANGED] = True
            return


def _orm_execute(state) -> None:
    if not (state.is_insert or state.is_update or state.is_delete) or state.session.info.get(_CHANGED):
        return
    name = _table_name(getattr(state.statement, "table", None))
    if name is not None and name not in PRIVATE_TABLES:
        state.session.info[_CHANGED] = True


def _before_commit(sess: Session) -> None:
    """Move :data:`PAGES` in the same transaction as the change (last, so the lock is brief)."""
    sess.flush()
    if not sess.info.pop(_CHANGED, False):
        return
    result = sess.execute(
        update(IndexState).where(IndexState.name == PAGES).values(version=IndexState.version + 1)
    )
    if result.rowcount == 0:
        dialect = sess.get_bind(IndexState).dialect.name
        maker = {"postgresql": pg_insert, "sqlite": sqlite_insert}.get(dialect)
        row = {"name": PAGES, "version": 1, "updated_at": timeutil.now_naive_utc()}
        if maker is None:
            sess.add(IndexState(**row))
        else:
            sess.execute(maker(IndexState).values(**row).on_conflict_do_nothing(index_elements=["name"]))
    sess.info.pop(_CHANGED, None)


def _after_rollback(sess: Session) -> None:
    sess.info.pop(_CHANGED, None)


_listening = False


def _listen() -> None:
    global _listening
    if _listening:
        return
    target = db.session
    event.listen(target, "before_flush", _before_flush)
    event.listen(target, "do_orm_execute", _orm_execute)
    event.listen(target, "before_commit", _before_commit)
    event.listen(target, "after_rollback", _after_rollback)
    _listening = True


def init_app(app: Flask) -> None:
    """Install the session interface, the template global and the hooks.

    Register after ``security.init_app`` so that rate limits are counted before a 304.
    """
    if "http_cache" in app.extensions:
        raise RuntimeError("http_cache.init_app was already called for this app")
    app.config.setdefault("HTTP_CACHE_MAX_AGE", int(os.environ.get("HTTP_CACHE_MAX_AGE") or 60))
    app.config.setdefault("HTTP_PAGE_CACHE_BYTES",
                          int(os.environ.get("HTTP_PAGE_CACHE_BYTES") or 32 * 1024 * 1024))
    app.config.setdefault("HTTP_PAGE_CACHE_SECONDS", int(os.environ.get("HTTP_PAGE_CACHE_SECONDS") or 600))
    app.extensions["http_cache_pages"] = PageCache(app.config["HTTP_PAGE_CACHE_BYTES"],
                                                   app.config["HTTP_PAGE_CACHE_SECONDS"])
    version, version_time = code_version()
    if app.config.get("STATIC_VERSION"):
        version = str(app.config["STATIC_VERSION"])
    app.extensions["http_cache"] = (version, version_time)
    app.session_interface = CacheFriendlySessionInterface()
    app.jinja_env.globals["csrf_token_issued"] = csrf_token_issued
    app.before_request(_revalidate)
    app.after_request(_cache_headers)
    _listen()

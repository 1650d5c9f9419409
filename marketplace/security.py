"""Request hygiene, security headers and rate limits, wired once in ``create_app``.

* **Control characters.** One ``before_request`` hook, for every form and query parameter of
  every blueprint (whatever form class or ``request.args.get`` reads it):

  - a NUL anywhere (a query or form value or name, an uploaded file name, a URL part) refuses
    the request with a 400 page in Chinese (JSON under ``/api/``), never a 500: PostgreSQL
    cannot store NUL, and no browser sends one from a real form, so it is refused, not guessed at;
  - the other C0 controls except tab, line feed and carriage return (``\x0b`` and ``\x0c`` come
    with text pasted from Word or PDF) are removed from query and form values before any view
    reads them, so the form keeps its usual messages beside the fields.
* **Headers.** Every response gets a Content-Security-Policy without inline script, and
  ``frame-ancestors 'none'``, ``X-Frame-Options: DENY``, ``X-Content-Type-Options: nosniff``,
  ``Referrer-Policy: strict-origin-when-cross-origin`` and, on HTTPS, HSTS.
* **Rate limits.** Flask-Limiter, with limits from the config (``RATELIMIT_*``), switched off
  as a whole by ``RATE_LIMITS_ENABLED`` (the test suite switches it off, except in its
  rate-limit tests).
"""

from __future__ import annotations

import re

from flask import Flask, current_app, request
from werkzeug.datastructures import ImmutableMultiDict, MultiDict
from werkzeug.exceptions import BadRequest
from werkzeug.middleware.proxy_fix import ProxyFix

from marketplace.extensions import limiter

#: C0 controls and DEL except \t \n \r (NUL refuses the request; the others are removed).
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        # Bootstrap's components set style attributes; styles cannot run code.
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


class ControlCharactersRejected(BadRequest):
    """A request carrying a NUL character (shown as a Chinese 400 page by ``errors``)."""

    message = "提交的内容中包含无效的空字符（NUL），请检查后重新提交"


def strip_control_characters(value: str) -> str:
    return CONTROL_CHARACTERS.sub("", value)


def _has_nul() -> bool:
    values: list[str] = [request.path]
    for multi in (request.args, request.form):
        for key, items in multi.lists():
            values.append(key)
            values.extend(items)
    for key, storage in request.files.items(multi=True):
        values.extend((key, storage.filename or ""))
    values.extend(v for v in (request.view_args or {}).values() if isinstance(v, str))
    return any("\x00" in v for v in values)


def _cleaned(multi: MultiDict) -> MultiDict | None:
    """A copy of ``multi`` without control characters, or None when it has none."""
    if not any(CONTROL_CHARACTERS.search(k + "".join(vs)) for k, vs in multi.lists()):
        return None
    return ImmutableMultiDict(
        [(strip_control_characters(k), strip_control_characters(v)) for k, v in multi.items(multi=True)]
    )


def sanitize_control_characters() -> None:
    """Refuse NUL (400); remove the other control characters from query and form values."""
    if _has_nul():
        raise ControlCharactersRejected()
    args = _cleaned(request.args)
    if args is not None:
        request.args = args
    form = _cleaned(request.form)
    if form is not None:
        request.form = form


def set_security_headers(response):
    headers = response.headers
    headers.setdefault("Content-Security-Policy", current_app.config["CONTENT_SECURITY_POLICY"])
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
    headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    seconds = current_app.config.get("HSTS_SECONDS") or 0
    if request.is_secure and seconds > 0:
        headers.setdefault("Strict-Transport-Security", f"max-age={seconds}; includeSubDomains")
    return response


@limiter.request_filter
def _limits_off() -> bool:
    return not current_app.config.get("RATE_LIMITS_ENABLED", True)


def init_app(app: Flask) -> None:
    app.config.setdefault("CONTENT_SECURITY_POLICY", CONTENT_SECURITY_POLICY)
    proxies = int(app.config.get("PROXY_FIX") or 0)
    if proxies > 0:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies)
    app.before_request(sanitize_control_characters)
    app.after_request(set_security_headers)
    # Flask-Limiter itself is always on; RATE_LIMITS_ENABLED decides per request (_limits_off).
    app.config["RATELIMIT_ENABLED"] = True
    limiter.init_app(app)


def login_limit() -> str:
    return current_app.config["RATELIMIT_LOGIN"]


def login_account_limit() -> str:
    return current_app.config["RATELIMIT_LOGIN_ACCOUNT"]


def register_limit() -> str:
    return current_app.config["RATELIMIT_REGISTER"]


def api_limit() -> str:
    return current_app.config["RATELIMIT_API"]


def submitted_email() -> str:
    """Rate-limit key of the account a login tries (many addresses, one account)."""
    return "login-email:" + (request.form.get("email") or "").strip().lower()[:120]

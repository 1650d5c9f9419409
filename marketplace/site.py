"""Site-wide browser pieces: ``/favicon.ico``, forms whose security token expired, and the
preloading of templates and the tokenizer before gunicorn forks (:func:`preload`).

A form left open longer than ``WTF_CSRF_TIME_LIMIT`` (or whose session ended) used to end on a
bare 400 page, losing what the user typed. Now such a POST to a form page (a route that also
answers GET) runs the page again: the blueprint checks (login, roles, rate limits) run as for any
request, the view's form is bound to the submitted input and fails its own CSRF check, so nothing
is saved, and the page shows the input kept with 「页面停留时间过长，安全令牌已过期，请重新提交」
and a fresh token. A POST-only action goes back to the page it came from with the same message.
A missing or forged token is still refused with 400 (see ``errors.py``).

This relies on one house rule: a GET+POST view changes nothing before ``form.validate_on_submit()``.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, flash, g, redirect, request, send_from_directory
from flask_wtf.csrf import CSRFError
from werkzeug.wrappers import Response

from marketplace.services import contacts

#: Shown above the form that is rendered again.
EXPIRED_MESSAGE = "页面停留时间过长，安全令牌已过期，请重新提交"
#: Flask-WTF's reasons that mean "this page was open too long", not "this token is forged".
EXPIRED_REASONS = frozenset({"The CSRF token has expired.", "The CSRF session token is missing."})


def register(app: Flask) -> None:
    """Add ``/favicon.ico`` (the SVG icon is linked from ``base.html`` too) and the templates'
    ``can_view_contact(user, entry)`` (``services.contacts``)."""
    app.jinja_env.globals["can_view_contact"] = contacts.can_view_contact
    app.jinja_env.globals["contact_hidden_note"] = contacts.HIDDEN_NOTE

    if app.config.get("MATCHING_PRELOAD"):
        preload(app)

    @app.get("/favicon.ico")
    def favicon():
        response = send_from_directory(app.static_folder, "favicon.ico", mimetype="image/vnd.microsoft.icon")
        response.cache_control.max_age = 7 * 24 * 3600
        response.cache_control.public = True
        return response


def preload(app: Flask) -> None:
    """Do the lazy one-time work of a first request now: with ``gunicorn --preload``
    (``MATCHING_PRELOAD=1``) it happens once in the master and every forked worker shares it.

    Measured on the first search of a fresh worker (benchmarks/load.py): loading jieba's
    dictionary and the domain dictionary took 3.6 s and compiling the page's templates 1 s.
    A template that does not compile yet (a filter registered later) is left to its first use.
    """
    from jinja2 import TemplateError

    from matching import text

    for name in app.jinja_env.list_templates(extensions=["html"]):
        try:
            app.jinja_env.get_template(name)
        except TemplateError:
            continue
    text.is_word("停车")  # loads jieba's and the domain dictionaries (not behind a cache)
    text.query_terms("智慧停车 养老监测")


def token_expired(exc: CSRFError) -> bool:
    return exc.description in EXPIRED_REASONS


def _same_site_referrer() -> str | None:
    referrer = request.referrer
    if not referrer:
        return None
    parts = urlsplit(referrer)
    if parts.netloc != request.host or parts.scheme not in ("http", "https"):
        return None
    return referrer


def _before_request_except_csrf(app: Flask) -> Response | None:
    """Run the request's before_request functions other than the CSRF check (which failed).

    Flask stopped at the failing check, so the blueprint checks (login, staff only, rate limits)
    have not run yet; they must, before a view is run again.
    """
    names = (None, *reversed(request.blueprints))
    for name in names:
        for func in app.before_request_funcs.get(name, ()):
            if func.__name__ == "csrf_protect" and func.__module__ == "flask_wtf.csrf":
                continue
            rv = func()
            if rv is not None:
                return app.make_response(rv)
    return None


def recover_expired_form(app: Flask, exc: CSRFError) -> Response | None:
    """The response for a browser POST whose token expired, or None to refuse it with 400."""
    if not token_expired(exc) or request.method != "POST" or request.path.startswith("/api/"):
        return None
    rule = request.url_rule
    if rule is None or request.endpoint not in app.view_functions:
        return None
    if "GET" not in (rule.methods or ()):
        referrer = _same_site_referrer()
        if referrer is None:
            return None
        flash(EXPIRED_MESSAGE, "warning")
        return redirect(referrer)
    # The view's form must check the token itself (and fail): never trust an earlier success.
    g.pop("csrf_valid", None)
    g.pop(app.config.get("WTF_CSRF_FIELD_NAME", "csrf_token"), None)
    response = _before_request_except_csrf(app)  # may raise (403, 404...): errors.py renders it
    if response is not None:
        return response
    flash(EXPIRED_MESSAGE, "warning")
    return app.make_response(app.view_functions[request.endpoint](**(request.view_args or {})))

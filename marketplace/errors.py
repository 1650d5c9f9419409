"""Chinese error pages for browsers and JSON errors for the API."""

from __future__ import annotations

from flask import Flask, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from marketplace import site
from marketplace.extensions import db
from marketplace.security import ControlCharactersRejected
from marketplace.services.errors import DomainError

MESSAGES = {
    400: "请求无效",
    401: "请先登录",
    403: "没有权限访问该页面",
    404: "页面不存在",
    405: "请求方法不被允许",
    409: "当前状态不允许该操作",
    413: "提交的内容过大",
    429: "操作过于频繁，请稍后再试",
    500: "服务器内部错误",
}


def _wants_json() -> bool:
    return request.path.startswith("/api/v1/")  # not the HTML pages /api/docs, /api/tokens


def _render(code: int, message: str | None = None):
    message = message or MESSAGES.get(code, "请求出错")
    if _wants_json():
        return jsonify(error={"code": code, "message": message}), code
    return render_template("errors/error.html", code=code, message=message), code


def register(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def csrf_error(exc: CSRFError):
        # An expired token on a form page shows the form again with the input kept (site.py).
        try:
            recovered = site.recover_expired_form(app, exc)
        except DomainError as inner:
            return _render(inner.status_code, inner.message)
        except HTTPException as inner:
            return _render(inner.code or 400, MESSAGES.get(inner.code or 400, inner.description))
        if recovered is not None:
            return recovered
        if site.token_expired(exc):
            return _render(400, site.EXPIRED_MESSAGE + "（请返回上一页，刷新后再提交）")
        return _render(400, "页面已过期或缺少安全令牌（CSRF），请刷新页面后重试")

    @app.errorhandler(ControlCharactersRejected)
    def control_characters(exc: ControlCharactersRejected):
        return _render(400, exc.message)

    @app.errorhandler(429)
    def too_many_requests(exc: HTTPException):
        # Flask-Limiter adds Retry-After and the X-RateLimit-* headers to this response.
        return _render(429, "操作过于频繁，请稍后再试。为保护账号安全，请等待片刻后再提交。")

    @app.errorhandler(DomainError)
    def domain_error(exc: DomainError):
        return _render(exc.status_code, exc.message)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        return _render(exc.code or 500, MESSAGES.get(exc.code or 500, exc.description))

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        app.logger.exception("Unhandled error")
        db.session.rollback()
        return _render(500)

"""Login, logout and organization registration.

Login and registration are rate-limited (``RATELIMIT_LOGIN`` per address and
``RATELIMIT_LOGIN_ACCOUNT`` per email tried; ``RATELIMIT_REGISTER``). Every login is a
server-side token (``services/sessions.py``) that logging out revokes. Registration answers the
same whether or not the email already has an account (``services.accounts.register_organization``).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user, login_user, logout_user

from marketplace import security
from marketplace.auth import bp
from marketplace.auth.forms import LoginForm, RegisterForm
from marketplace.extensions import limiter
from marketplace.models import User
from marketplace.services import accounts, sessions
from marketplace.services.errors import ValidationFailed

LOGIN_FAILED = "邮箱或密码错误"
REGISTERED = (
    "注册申请已提交，请查收邮件。若该邮箱此前未注册，您现在即可用邮箱和所设密码登录；"
    "单位认证通过前不能提交审核，但可以先新建和编辑草稿。"
)


def safe_next(target: str | None) -> str | None:
    """``target`` if it is a relative path on this host, else None (no open redirects)."""
    if not target:
        return None
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    if any(ord(ch) < 32 for ch in target):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    return target


def home_for(user: User) -> str:
    """Where a user lands after logging in when no ``next`` was given."""
    if user.is_staff:
        return url_for("admin.index")
    if user.organization_id is not None:
        return url_for("workspace.index")
    return url_for("portal.index")


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(security.login_limit, methods=["POST"])
@limiter.limit(security.login_account_limit, methods=["POST"], key_func=security.submitted_email)
def login():
    if current_user.is_authenticated:
        return redirect(safe_next(request.args.get("next")) or home_for(current_user))
    form = LoginForm()
    if form.validate_on_submit():
        user = accounts.authenticate(form.email.data, form.password.data)
        if user is None:
            form.form_errors.append(LOGIN_FAILED)
        else:
            remember = bool(form.remember.data)
            sessions.start_login(user, remember)
            login_user(user, remember=remember)
            flash(f"欢迎回来，{user.name}。", "success")
            return redirect(safe_next(request.args.get("next")) or home_for(user))
    return render_template("auth/login.html", form=form)


@bp.post("/logout")
def logout():
    """POST only; the CSRF token is checked by CSRFProtect before the view runs."""
    if current_user.is_authenticated:
        sessions.end_login(current_user._get_current_object())
        logout_user()
        flash("您已安全退出。", "info")
    return redirect(url_for("portal.index"))


@bp.route("/register", methods=["GET", "POST"])
@limiter.limit(security.register_limit, methods=["POST"])
def register():
    if current_user.is_authenticated:
        return redirect(home_for(current_user))
    form = RegisterForm()
    if form.validate_on_submit():
        try:
            accounts.register_organization(form.organization_data(), form.user_data())
        except ValidationFailed as exc:
            form.attach_errors(exc.errors)
        else:
            # The same answer whether or not the email had an account (no account discovery).
            flash(REGISTERED, "info")
            return redirect(url_for("auth.login"))
    return render_template("auth/register.html", form=form)

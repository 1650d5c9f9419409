"""Login, logout and organization registration."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user, login_user, logout_user

from marketplace.auth import bp
from marketplace.auth.forms import LoginForm, RegisterForm
from marketplace.models import User
from marketplace.services import accounts
from marketplace.services.errors import ValidationFailed

LOGIN_FAILED = "邮箱或密码错误"


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
def login():
    if current_user.is_authenticated:
        return redirect(safe_next(request.args.get("next")) or home_for(current_user))
    form = LoginForm()
    if form.validate_on_submit():
        user = accounts.authenticate(form.email.data, form.password.data)
        if user is None:
            form.form_errors.append(LOGIN_FAILED)
        else:
            login_user(user, remember=form.remember.data)
            flash(f"欢迎回来，{user.name}。", "success")
            return redirect(safe_next(request.args.get("next")) or home_for(user))
    return render_template("auth/login.html", form=form)


@bp.post("/logout")
def logout():
    """POST only; the CSRF token is checked by CSRFProtect before the view runs."""
    if current_user.is_authenticated:
        logout_user()
        flash("您已安全退出。", "info")
    return redirect(url_for("portal.index"))


@bp.route("/register", methods=["GET", "POST"])
def register():
    if current_user.is_authenticated:
        return redirect(home_for(current_user))
    form = RegisterForm()
    if form.validate_on_submit():
        try:
            user = accounts.register_organization(form.organization_data(), form.user_data())
        except ValidationFailed as exc:
            form.attach_errors(exc.errors)
        else:
            login_user(user)
            flash(
                f"注册成功！「{user.organization.name}」正在等待组织方认证；"
                "认证通过前不能提交审核，但可以先新建和编辑草稿。",
                "info",
            )
            return redirect(url_for("workspace.index"))
    return render_template("auth/register.html", form=form)

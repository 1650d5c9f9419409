"""Notification pages. Every page is for logged-in users and shows only their own notifications."""

from __future__ import annotations

from flask import current_app, flash, has_request_context, redirect, render_template, request, url_for
from flask_login import current_user

from marketplace.extensions import login_manager
from marketplace.models import NotificationKind
from marketplace.notifications import bp
from marketplace.notifications.forms import EmailPreferencesForm
from marketplace.paging import page_arg
from marketplace.services import notifications
from marketplace.services.errors import ValidationFailed


@bp.app_context_processor
def notification_globals():
    """``unread_notifications`` for the navbar bell: one COUNT query per page, logged-in only."""
    if not has_request_context() or not current_user.is_authenticated:
        return {"unread_notifications": 0}
    return {"unread_notifications": notifications.unread_count(current_user)}


def _back_to_list():
    return redirect(url_for("notifications.index", page=page_arg() if "page" in request.args else None))


@bp.before_request
def require_login():
    """Anonymous visitors go to the login page (POSTs are protected by CSRFProtect as well)."""
    if current_user.is_authenticated:
        return None
    if request.method == "GET":
        return login_manager.unauthorized()  # comes back here after login
    # A POST cannot be replayed after login: no ``next`` to a POST-only URL.
    flash(login_manager.login_message, login_manager.login_message_category)
    return redirect(url_for("auth.login"))


@bp.get("/")
def index():
    page = notifications.notifications_page(current_user, page_arg(), current_app.config["PER_PAGE"])
    return render_template("notifications/index.html", page=page, kinds=NotificationKind)


@bp.post("/<int:id>/read")
def mark_read(id: int):
    notifications.mark_read(current_user, id)
    return _back_to_list()


@bp.post("/<int:id>/open")
def open_notification(id: int):
    """Follow a notification's link; it becomes read."""
    notification = notifications.mark_read(current_user, id)
    if notification.url and notifications.is_internal_path(notification.url):
        return redirect(request.script_root + notification.url)
    return _back_to_list()


@bp.post("/read-all")
def mark_all_read():
    count = notifications.mark_all_read(current_user)
    flash(f"已将{count}条通知标记为已读。" if count else "没有未读通知。", "success")
    return _back_to_list()


@bp.route("/settings", methods=["GET", "POST"])
def settings():
    preferences = notifications.email_preferences(current_user)
    if request.method == "GET":
        form = EmailPreferencesForm(email_kinds=[kind for kind, on in preferences.items() if on])
    else:
        form = EmailPreferencesForm()
    if form.validate_on_submit():
        try:
            notifications.set_email_preferences(current_user, form.email_kinds.data or [])
        except ValidationFailed as exc:
            form.attach_errors(exc.errors)
        else:
            flash("邮件提醒设置已保存。", "success")
            return redirect(url_for("notifications.settings"))
    return render_template("notifications/settings.html", form=form)

"""Login, logout, registration and the account lifecycle.

Login and registration are rate-limited (``RATELIMIT_LOGIN`` per address and
``RATELIMIT_LOGIN_ACCOUNT`` per email tried; ``RATELIMIT_REGISTER``), and so are reset requests
(``RATELIMIT_PASSWORD_RESET`` per address, ``RATELIMIT_PASSWORD_RESET_ACCOUNT`` per email).
Every login is a server-side token (``services/sessions.py``) that logging out revokes.
Registration and reset requests answer the same whether or not the email has an account.

The account lifecycle (rules in ``services/accounts.py``, permission function
``accounts.can``): change password; 「忘记密码」 and the emailed reset link; an organization's
members page (one page for its 管理员, its other members and the organizers), invitations and
the invited colleague's registration; the 营业执照 upload and its download.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import (
    abort,
    current_app,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)
from flask_login import current_user, login_required, login_user, logout_user

from marketplace import security
from marketplace.auth import bp
from marketplace.auth.forms import (
    AcceptInvitationForm,
    ChangePasswordForm,
    EmptyForm,
    ForgotPasswordForm,
    InviteForm,
    LicenseForm,
    LoginForm,
    RegisterForm,
    ResetPasswordForm,
)
from marketplace.extensions import db, limiter
from marketplace.models import AccountTokenPurpose, Organization, User
from marketplace.services import accounts, sessions, uploads
from marketplace.services.accounts import InvalidLink
from marketplace.services.errors import InvalidTransition, NotFound, PermissionDenied, ValidationFailed

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
            accounts.register_organization(
                form.organization_data(), form.user_data(), form.license_upload()
            )
        except ValidationFailed as exc:
            form.attach_errors(exc.errors)
        else:
            # The same answer whether or not the email had an account (no account discovery).
            flash(REGISTERED, "info")
            return redirect(url_for("auth.login"))
    return render_template("auth/register.html", form=form)


# ---------------------------------------------------------------- password change


@bp.route("/password", methods=["GET", "POST"])
@login_required
@limiter.limit(security.login_limit, methods=["POST"])
def change_password():
    """Change the password; other devices are signed out, this browser stays signed in."""
    form = ChangePasswordForm()
    if form.validate_on_submit():
        user = current_user._get_current_object()
        try:
            remember = accounts.change_password(user, form.current_password.data, form.password.data)
        except ValidationFailed as exc:
            form.attach_errors(exc.errors)
        else:
            login_user(user, remember=remember)
            flash("密码已修改。其他设备上的登录已全部退出，本浏览器保持登录。", "success")
            return redirect(url_for("auth.change_password"))
    return render_template("auth/password.html", form=form)


# ---------------------------------------------------------------- forgotten password


def password_reset_limit() -> str:
    return current_app.config["RATELIMIT_PASSWORD_RESET"]


def password_reset_account_limit() -> str:
    return current_app.config["RATELIMIT_PASSWORD_RESET_ACCOUNT"]


def submitted_reset_email() -> str:
    """Rate-limit key of the account a reset request names (many addresses, one account)."""
    return "reset-email:" + (request.form.get("email") or "").strip().lower()[:120]


def reset_sent_message() -> str:
    hours = float(current_app.config["PASSWORD_RESET_HOURS"])
    return (
        "如果该邮箱已在平台注册且账号正常，我们已向它发送了重置密码的链接，"
        f"{hours:g}小时内有效，只能使用一次。请查收邮件（也请检查垃圾邮件箱）。"
    )


@bp.route("/forgot", methods=["GET", "POST"])
@limiter.limit(password_reset_limit, methods=["POST"])
@limiter.limit(password_reset_account_limit, methods=["POST"], key_func=submitted_reset_email)
def forgot_password():
    """The same answer whether or not the address has an account (no account discovery)."""
    form = ForgotPasswordForm()
    if form.validate_on_submit():
        accounts.request_password_reset(form.email.data)
        flash(reset_sent_message(), "info")
        return redirect(url_for("auth.login"))
    return render_template("auth/forgot.html", form=form)


def _private(response):
    """Pages reached through an emailed link: never cached, never sent as a referrer."""
    response = make_response(response)
    response.headers["Cache-Control"] = "private, no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def _invalid_link(exc: InvalidLink):
    page = render_template("auth/link_invalid.html", message=exc.message, state=exc.state,
                           purpose=exc.purpose, purposes=AccountTokenPurpose)
    return _private((page, exc.status_code))


@bp.route("/reset/<token>", methods=["GET", "POST"])
@limiter.limit(password_reset_limit, methods=["POST"])
def reset_password(token: str):
    try:
        link = accounts.reset_link(token)
    except InvalidLink as exc:
        return _invalid_link(exc)
    form = ResetPasswordForm()
    if form.validate_on_submit():
        try:
            accounts.reset_password(token, form.password.data)
        except InvalidLink as exc:
            return _invalid_link(exc)
        except ValidationFailed as exc:
            form.attach_errors(exc.errors)
        else:
            if current_user.is_authenticated:
                logout_user()  # every sign-in of the account has ended
            flash(accounts.LINK_TRANSITIONS[(AccountTokenPurpose.RESET, "use")].done, "success")
            return redirect(url_for("auth.login"))
    return _private(render_template("auth/reset.html", form=form, link=link))


# ---------------------------------------------------------------- invitations


@bp.route("/invitation/<token>", methods=["GET", "POST"])
@limiter.limit(security.register_limit, methods=["POST"])
def accept_invitation(token: str):
    """The invited colleague's registration: a member of the inviting organization."""
    try:
        invitation = accounts.invitation_link(token)
    except InvalidLink as exc:
        return _invalid_link(exc)
    if current_user.is_authenticated:
        page = render_template("auth/invitation.html", invitation=invitation, form=None)
        return _private(page)
    form = AcceptInvitationForm()
    if form.validate_on_submit():
        try:
            user = accounts.accept_invitation(token, form.name.data, form.phone.data, form.password.data)
        except InvalidLink as exc:
            return _invalid_link(exc)
        except ValidationFailed as exc:
            form.attach_errors(exc.errors)
        else:
            sessions.start_login(user, remember=False)
            login_user(user)
            flash(f"欢迎加入「{user.organization.name}」！您的账号已创建。", "success")
            return redirect(url_for("workspace.index"))
    return _private(render_template("auth/invitation.html", invitation=invitation, form=form))


# ---------------------------------------------------------------- organization members


def _actor() -> User:
    return current_user._get_current_object()


@bp.get("/organization/members")
@login_required
def my_members():
    """A member's shortcut to their own organization's members page."""
    if current_user.organization_id is None:
        if current_user.is_staff:
            flash("组织方请在单位认证页面选择单位后管理其成员。", "info")
            return redirect(url_for("admin.organizations"))
        raise PermissionDenied("您的账号不属于任何单位")
    return redirect(url_for("auth.members", org_id=current_user.organization_id))


def _render_members(organization: Organization, invite_form: InviteForm | None = None):
    view = accounts.members_view(_actor(), organization)
    return render_template(
        "auth/members.html",
        view=view,
        org=organization,
        invite_form=invite_form or InviteForm(formdata=None),
        action_form=EmptyForm(),
        member_actions=accounts.MEMBER_ACTIONS,
        cancel_step=accounts.LINK_TRANSITIONS[(AccountTokenPurpose.INVITE, "cancel")],
        can=accounts.can,
        upload_problem=accounts.problem(_actor(), "upload_license", organization),
    )


@bp.get("/organizations/<int:org_id>/members")
@login_required
def members(org_id: int):
    return _render_members(accounts.get_organization(org_id))


@bp.post("/organizations/<int:org_id>/invitations")
@login_required
def invite(org_id: int):
    organization = accounts.get_organization(org_id)
    accounts.require(_actor(), "invite", organization)
    form = InviteForm()
    if form.validate_on_submit():
        try:
            invitation = accounts.invite_colleague(_actor(), organization, form.email.data)
        except ValidationFailed as exc:
            form.attach_errors(exc.errors)
        else:
            days = float(current_app.config["INVITATION_DAYS"])
            flash(f"邀请已发送至 {invitation.email}，邮件中的链接{days:g}天内有效。", "success")
            return redirect(url_for("auth.members", org_id=org_id))
    return _render_members(organization, invite_form=form)


@bp.post("/invitations/<int:id>/cancel")
@login_required
def cancel_invitation(id: int):
    invitation = accounts.get_invitation(id)
    try:
        accounts.cancel_invitation(_actor(), invitation)
    except (InvalidTransition, InvalidLink) as exc:
        if isinstance(exc, InvalidLink) and not accounts.is_org_manager(_actor(), invitation.organization_id):
            raise
        flash(exc.message, "danger")
    else:
        flash(accounts.LINK_TRANSITIONS[(AccountTokenPurpose.INVITE, "cancel")].done, "success")
    return redirect(url_for("auth.members", org_id=invitation.organization_id))


@bp.post("/members/<int:id>/<action>")
@login_required
def member_action(id: int, action: str):
    step = accounts.MEMBER_ACTIONS.get(action)
    if step is None:
        abort(404)
    target = db.session.get(User, id)
    if target is None or target.organization_id is None:
        raise NotFound("该成员不存在")
    service = {"remove": accounts.remove_member, "make_admin": accounts.hand_over_admin}[action]
    try:
        service(_actor(), target)
    except InvalidTransition as exc:
        flash(exc.message, "danger")
    else:
        flash(step.done.format(name=target.name), "success")
    return redirect(url_for("auth.members", org_id=target.organization_id))


# ---------------------------------------------------------------- 营业执照 / 统一社会信用代码证书


@bp.route("/organizations/<int:org_id>/license", methods=["GET", "POST"])
@login_required
def license(org_id: int):
    organization = accounts.get_organization(org_id)
    accounts.require(_actor(), "view_license", organization)
    form = LicenseForm()
    if form.validate_on_submit():
        try:
            accounts.set_license(_actor(), organization, form.license_upload())
        except ValidationFailed as exc:
            form.attach_errors(exc.errors)
        except InvalidTransition as exc:
            form.form_errors.append(exc.message)
        else:
            flash("证照已上传，组织方认证时将核对。", "success")
            return redirect(url_for("auth.license", org_id=org_id))
    return render_template(
        "auth/license.html",
        org=organization,
        form=form,
        upload_problem=accounts.problem(_actor(), "upload_license", organization),
    )


@bp.get("/organizations/<int:org_id>/license/file")
@login_required
def license_file(org_id: int):
    """The license as a download (an image may be shown inline for the organizer's preview)."""
    stored = accounts.license_file(_actor(), accounts.get_organization(org_id))
    inline = request.args.get("inline") == "1" and stored.content_type.startswith("image/")
    reply = send_file(
        uploads.open_file(stored),
        mimetype=stored.content_type,
        as_attachment=not inline,
        download_name=stored.original_name,
        max_age=0,
    )
    reply.headers["X-Content-Type-Options"] = "nosniff"
    reply.headers["Cache-Control"] = "private, no-store"
    return reply

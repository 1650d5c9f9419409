"""企业答题 pages for every role (login required).

* Firms: ``/responses/mine`` (我的答题 and 联合体邀请), answer a need, edit, submit, withdraw.
* Publishers and organizers: ``/responses/opportunities/<id>`` lists the answers to a need, with
  the match score of each product; a response page offers 入围 / 选定 / 未选定 with a comment.
* Consortia: create for a need, invite, revoke, accept or decline.

Every decision is the service's permission function (:func:`services.responses.require`).
"""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, send_file, url_for
from flask_login import current_user
from sqlalchemy import select

from marketplace.auth.forms import EmptyForm
from marketplace.extensions import db, login_manager
from marketplace.models import Organization
from marketplace.paging import id_arg
from marketplace.responses import bp
from marketplace.responses.forms import ConsortiumForm, InviteForm, ResponseForm, ReviewForm
from marketplace.services import responses as service
from marketplace.services import uploads
from marketplace.services.errors import DomainError, PermissionDenied, ValidationFailed


@bp.before_request
def require_login():
    if not current_user.is_authenticated:
        if request.method == "GET":
            return login_manager.unauthorized()
        flash(login_manager.login_message, login_manager.login_message_category)
        return redirect(url_for("auth.login"))
    return None


def _upload(form: ResponseForm) -> service.Upload | None:
    file = form.attachment.data
    if file is None or not getattr(file, "filename", None):
        return None
    return service.Upload(stream=file.stream, filename=file.filename)


def _defaults() -> dict:
    organization = current_user.organization
    return {
        "contact_name": current_user.name or organization.contact_name,
        "contact_phone": current_user.phone or organization.contact_phone,
    }


# ---------------------------------------------------------------- firm pages


@bp.get("/mine")
def mine():
    if current_user.organization_id is None:
        abort(403)
    consortia = service.my_consortia(current_user)
    invitations = [
        (c, m) for c in consortia for m in c.members
        if m.organization_id == current_user.organization_id and m.status == "invited"
    ]
    return render_template(
        "responses/mine.html",
        responses=service.my_responses(current_user),
        consortia=consortia,
        invitations=invitations,
    )


@bp.route("/opportunities/<int:id>/new", methods=["GET", "POST"])
def new(id: int):
    opportunity = service.published_opportunity(id)
    consortium = None
    consortium_id = id_arg("consortium")
    if consortium_id is not None:
        consortium = service.visible_consortium(current_user, consortium_id)
    if current_user.organization_id is not None:
        existing = service.live_response(current_user.organization_id, opportunity.id)
        if existing is not None:
            flash("本单位已答复该需求，可在此查看或修改。", "info")
            return redirect(url_for("responses.detail", id=existing.id))
    service.require(current_user, "respond", opportunity)
    form = ResponseForm(data=_defaults()) if request.method == "GET" else ResponseForm()
    form.set_products(service.product_choices(current_user.organization, consortium))
    if form.validate_on_submit():
        try:
            response = service.start_response(
                current_user, opportunity, form.response_data(), _upload(form), consortium,
                submit_now=bool(form.submit_response.data),
            )
        except ValidationFailed as exc:
            form.attach_errors(exc.errors)
        except DomainError as exc:
            flash(exc.message, "danger")
        else:
            if response.status == "submitted":
                flash(service.TRANSITIONS["submit"].done, "success")
            else:
                flash("答题已保存为草稿，确认无误后请点击「提交答题」。", "success")
            return redirect(url_for("responses.detail", id=response.id))
    if form.attachment.data and (form.errors or request.method == "POST"):
        form.attachment.errors = [*form.attachment.errors] or ["出于安全原因，请重新选择附件"]
    return render_template(
        "responses/form.html", form=form, opportunity=opportunity, response=None, consortium=consortium
    )


@bp.route("/<int:id>/edit", methods=["GET", "POST"])
def edit(id: int):
    response = service.visible_response(current_user, id)
    service.require(current_user, "edit", response)
    if request.method == "GET":
        form = ResponseForm(obj=response, data={"product_ids": response.product_ids})
    else:
        form = ResponseForm()
    form.set_products(service.product_choices(response.organization, response.consortium))
    if form.validate_on_submit():
        try:
            service.update_response(
                current_user, response, form.response_data(), _upload(form),
                remove_attachment=bool(form.remove_attachment.data),
                submit_now=bool(form.submit_response.data),
            )
        except ValidationFailed as exc:
            form.attach_errors(exc.errors)
        except DomainError as exc:
            flash(exc.message, "danger")
        else:
            flash("答题已保存。" if response.status == "draft" else "答题已更新。", "success")
            return redirect(url_for("responses.detail", id=response.id))
    return render_template(
        "responses/form.html", form=form, opportunity=response.opportunity, response=response,
        consortium=response.consortium,
    )


# ---------------------------------------------------------------- shared pages


@bp.get("/<int:id>")
def detail(id: int):
    response = service.visible_response(current_user, id)
    scores = {}
    if service.can(current_user, "view_responses", response.opportunity):
        scores = service.product_scores(response.opportunity, set(response.product_ids))
    return render_template(
        "responses/detail.html",
        response=response,
        actions=service.allowed_actions(current_user, response),
        can_edit=service.can(current_user, "edit", response),
        history=service.history(response),
        scores=scores,
        review_form=ReviewForm(),
        action_form=EmptyForm(),
    )


@bp.post("/<int:id>/<any(submit, withdraw, shortlist, select, reject):action>")
def act(id: int, action: str):
    response = service.visible_response(current_user, id)
    form = ReviewForm()
    if not form.validate_on_submit():
        if form.comment.errors:
            flash(form.comment.errors[0], "danger")
            return redirect(url_for("responses.detail", id=response.id))
        abort(400)
    try:
        service.transition(current_user, response, action, form.comment.data or "")
    except DomainError as exc:
        flash(exc.message, "danger")
    else:
        flash(service.TRANSITIONS[action].done, "success")
    target = request.form.get("next_view")
    if target == "opportunity" and service.can(current_user, "view_responses", response.opportunity):
        return redirect(url_for("responses.for_opportunity", id=response.opportunity_id))
    return redirect(url_for("responses.detail", id=response.id))


@bp.get("/<int:id>/attachment")
def attachment(id: int):
    response = service.visible_response(current_user, id)
    service.require(current_user, "download", response)
    if response.attachment is None:
        abort(404)
    path = uploads.open_file(response.attachment)
    reply = send_file(
        path,
        mimetype=response.attachment.content_type,
        as_attachment=True,
        download_name=response.attachment.original_name,
        max_age=0,
    )
    reply.headers["X-Content-Type-Options"] = "nosniff"
    reply.headers["Cache-Control"] = "private, no-store"
    return reply


@bp.get("/opportunities/<int:id>")
def for_opportunity(id: int):
    opportunity = service.get_opportunity(id)
    service.require(current_user, "view_responses", opportunity)
    rows = service.responses_for_opportunity(current_user, opportunity)
    return render_template(
        "responses/opportunity.html",
        opportunity=opportunity,
        rows=rows,
        review_form=ReviewForm(),
        allowed={row.response.id: service.allowed_actions(current_user, row.response) for row in rows},
    )


# ---------------------------------------------------------------- consortia


@bp.route("/opportunities/<int:id>/consortium", methods=["GET", "POST"])
def new_consortium(id: int):
    opportunity = service.published_opportunity(id)
    existing = service.led_consortium(current_user, opportunity)
    if existing is not None:
        return redirect(url_for("responses.consortium", id=existing.id))
    service.require(current_user, "form_consortium", opportunity)
    form = ConsortiumForm()
    if form.validate_on_submit():
        try:
            consortium = service.create_consortium(current_user, opportunity, form.name.data)
        except ValidationFailed as exc:
            form.attach_errors(exc.errors)
        except DomainError as exc:
            flash(exc.message, "danger")
        else:
            flash("联合体已创建，请邀请成员单位。", "success")
            return redirect(url_for("responses.consortium", id=consortium.id))
    return render_template("responses/consortium_form.html", form=form, opportunity=opportunity)


def _organization_names(limit: int = 500) -> list[str]:
    """Verified organizations for the invitation field's suggestions."""
    return list(
        db.session.scalars(
            select(Organization.name)
            .where(Organization.verified.is_(True))
            .order_by(Organization.name)
            .limit(limit)
        )
    )


def _render_consortium(consortium, invite_form: InviteForm | None = None):
    lead = service.can(current_user, "invite", consortium)
    return render_template(
        "responses/consortium.html",
        consortium=consortium,
        response=service.consortium_response(consortium),
        invite_form=invite_form or InviteForm(),
        can_manage=lead,
        is_lead=service.is_lead(current_user, consortium),
        organization_names=_organization_names() if lead else [],
        answerable=[m for m in consortium.members if service.can(current_user, "answer", m)],
        action_form=EmptyForm(),
    )


@bp.get("/consortia/<int:id>")
def consortium(id: int):
    return _render_consortium(service.visible_consortium(current_user, id))


@bp.post("/consortia/<int:id>/invite")
def invite(id: int):
    consortium = service.visible_consortium(current_user, id)
    if not service.is_lead(current_user, consortium):
        raise PermissionDenied("只有牵头单位可以邀请成员")
    form = InviteForm()
    if form.validate_on_submit():
        try:
            member = service.invite(current_user, consortium, form.organization.data, form.role.data,
                                    form.note.data or "")
        except ValidationFailed as exc:
            form.attach_errors(exc.errors)
        except DomainError as exc:
            flash(exc.message, "danger")
        else:
            flash(f"已向「{member.organization.name}」发出邀请。", "success")
            return redirect(url_for("responses.consortium", id=consortium.id))
    return _render_consortium(consortium, form), 400


@bp.post("/consortia/members/<int:id>/<any(accept, decline, revoke):action>")
def member_action(id: int, action: str):
    member = service.get_member(id)
    consortium = service.visible_consortium(current_user, member.consortium_id)
    if not EmptyForm().validate_on_submit():
        abort(400)
    try:
        if action == "revoke":
            service.revoke(current_user, member)
            flash("已撤销邀请。", "success")
        else:
            service.answer(current_user, member, accept=action == "accept")
            flash("已接受邀请。" if action == "accept" else "已谢绝邀请。", "success")
    except DomainError as exc:
        flash(exc.message, "danger")
    return redirect(url_for("responses.consortium", id=consortium.id))

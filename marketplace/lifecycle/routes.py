"""场景生命周期, 项目签约 and 实验室 pages.

* Public: ``/labs`` (the lab directory, filters kind / field / city) and ``/labs/<id>`` (a lab
  with its linked needs: titles and stages only). The need's timeline itself is on the portal's
  need page (``templates/lifecycle/_timeline.html``).
* The need's publisher, its delivering firms and organizers: ``/lifecycle/opportunities/<id>``,
  the private timeline (notes, evidence) and, for those allowed, the forms of the next steps,
  signings and lab links.
* Organizers: designate, edit, deactivate and reactivate labs (``/labs/manage``).

Every decision is the domain's permission function (:func:`services.lifecycle.require`,
:func:`services.labs.require`).
"""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, send_file, url_for
from flask_login import current_user

from marketplace.auth.forms import EmptyForm
from marketplace.extensions import login_manager
from marketplace.lifecycle import bp
from marketplace.lifecycle.forms import LabFilterForm, LabForm, LabLinkForm, SigningForm, StageForm
from marketplace.services import labs as lab_service
from marketplace.services import lifecycle as service
from marketplace.services import uploads
from marketplace.services.errors import DomainError, ValidationFailed
from marketplace.services.responses import Upload

PUBLIC_ENDPOINTS = {"lifecycle.labs", "lifecycle.lab"}


@bp.before_request
def require_login():
    if request.endpoint in PUBLIC_ENDPOINTS or current_user.is_authenticated:
        return None
    if request.method == "GET":
        return login_manager.unauthorized()
    flash(login_manager.login_message, login_manager.login_message_category)
    return redirect(url_for("auth.login"))


@bp.app_context_processor
def lifecycle_globals():
    """For other domains' templates, queried only where a template calls them:
    ``event_signings(event)`` (the event page) and ``wan(amount)`` (万元 amounts)."""
    return {"event_signings": service.signings_for_event, "wan": service.amount_label}


def _flash_or_raise(exc: DomainError) -> None:
    """A refusal the user may see on the page they came from; 403/404 stay error pages."""
    if exc.status_code in (403, 404):
        raise exc
    flash(exc.message, "danger")


def _upload(field) -> Upload | None:
    file = field.data
    if file is None or not getattr(file, "filename", None):
        return None
    return Upload(stream=file.stream, filename=file.filename)


# ---------------------------------------------------------------- the management page


def _stage_forms(opportunity, failed: tuple[str, StageForm] | None = None) -> dict[str, StageForm]:
    forms = {}
    for step in service.allowed_transitions(current_user, opportunity):
        if failed is not None and failed[0] == step.action:
            forms[step.action] = failed[1]
        else:
            forms[step.action] = StageForm(prefix=step.action, formdata=None)
    return forms


def _render_manage(opportunity, status: int = 200, failed=None, link_form: LabLinkForm | None = None):
    can_link = service.can(current_user, "link_lab", opportunity)
    if link_form is None and can_link:
        link_form = LabLinkForm(formdata=None)
    if link_form is not None:
        link_form.set_choices(lab_service.lab_choices())
    return render_template(
        "lifecycle/manage.html",
        opportunity=opportunity,
        timeline=service.timeline(current_user, opportunity),
        stage_forms=_stage_forms(opportunity, failed),
        blocked=service.blocked_transitions(current_user, opportunity),
        transitions=service.TRANSITIONS,
        needs_note={
            a: service.needs_decision_note(current_user, opportunity, a) for a in service.TRANSITIONS
        },
        signings=service.signings_for_opportunity(opportunity.id),
        links=lab_service.links_for_opportunity(opportunity.id),
        can_sign=service.can(current_user, "record_signing", opportunity),
        can_edit_signings=service.is_staff(current_user) or service.is_publisher(current_user, opportunity),
        link_form=link_form if can_link else None,
        delivering=service.delivering_organizations(opportunity),
        action_form=EmptyForm(),
    ), status


@bp.get("/lifecycle/opportunities/<int:id>")
def manage(id: int):
    return _render_manage(service.managed_opportunity(current_user, id))


STAGE_ACTIONS = ", ".join(service.TRANSITIONS)


@bp.post(f"/lifecycle/opportunities/<int:id>/stage/<any({STAGE_ACTIONS}):action>")
def change_stage(id: int, action: str):
    opportunity = service.managed_opportunity(current_user, id)
    service.require(current_user, action, opportunity)
    form = StageForm(prefix=action)
    if form.validate_on_submit():
        try:
            service.change_stage(
                current_user,
                opportunity,
                action,
                form.happened_on.data,
                form.note.data,
                _upload(form.evidence),
            )
        except ValidationFailed as exc:
            form.attach_errors(exc.errors)
        except DomainError as exc:
            _flash_or_raise(exc)
            return redirect(url_for("lifecycle.manage", id=opportunity.id))
        else:
            flash(service.TRANSITIONS[action].done, "success")
            return redirect(url_for("lifecycle.manage", id=opportunity.id))
    elif "csrf_token" in form.errors:
        abort(400)
    if form.evidence.data and getattr(form.evidence.data, "filename", None) and not form.evidence.errors:
        form.evidence.errors = ["出于安全原因，请重新选择证明材料"]
    return _render_manage(opportunity, 400, failed=(action, form))


@bp.get("/lifecycle/stage-changes/<int:id>/evidence")
def evidence(id: int):
    stored = service.evidence_file(current_user, id)
    reply = send_file(
        uploads.open_file(stored),
        mimetype=stored.content_type,
        as_attachment=True,
        download_name=stored.original_name,
        max_age=0,
    )
    reply.headers["X-Content-Type-Options"] = "nosniff"
    reply.headers["Cache-Control"] = "private, no-store"
    return reply


# ---------------------------------------------------------------- signings


def _signing_form(opportunity, form: SigningForm) -> SigningForm:
    form.set_choices(
        service.event_choices(),
        service.consortium_choices(opportunity),
        service.party_choices(opportunity),
        service.product_choices(),
    )
    return form


def _render_signing(opportunity, form: SigningForm, signing=None, status: int = 200):
    return render_template(
        "lifecycle/signing_form.html", opportunity=opportunity, form=form, signing=signing
    ), status


@bp.route("/lifecycle/opportunities/<int:id>/signings/new", methods=["GET", "POST"])
def new_signing(id: int):
    opportunity = service.managed_opportunity(current_user, id)
    service.require(current_user, "record_signing", opportunity)
    form = _signing_form(opportunity, SigningForm())
    if form.validate_on_submit():
        try:
            service.record_signing(current_user, opportunity, form.signing_data())
        except ValidationFailed as exc:
            form.attach_errors(exc.errors)
        except DomainError as exc:
            _flash_or_raise(exc)
        else:
            flash("签约已登记，相关单位将收到通知。", "success")
            return redirect(url_for("lifecycle.manage", id=opportunity.id))
    return _render_signing(opportunity, form, status=400 if request.method == "POST" else 200)


@bp.route("/lifecycle/signings/<int:id>/edit", methods=["GET", "POST"])
def edit_signing(id: int):
    signing = service.get_signing(id)
    opportunity = service.managed_opportunity(current_user, signing.opportunity_id)
    service.require(current_user, "edit", signing)
    if request.method == "GET":
        form = SigningForm(
            obj=signing,
            data={
                "organization_ids": [p.organization_id for p in signing.parties],
                "product_ids": [p.product_id for p in signing.products],
            },
        )
    else:
        form = SigningForm()
    _signing_form(opportunity, form)
    if form.validate_on_submit():
        try:
            service.update_signing(current_user, signing, form.signing_data())
        except ValidationFailed as exc:
            form.attach_errors(exc.errors)
        except DomainError as exc:
            _flash_or_raise(exc)
        else:
            flash("签约已修改。", "success")
            return redirect(url_for("lifecycle.manage", id=opportunity.id))
    return _render_signing(opportunity, form, signing, status=400 if request.method == "POST" else 200)


@bp.post("/lifecycle/signings/<int:id>/delete")
def delete_signing(id: int):
    signing = service.get_signing(id)
    opportunity = service.managed_opportunity(current_user, signing.opportunity_id)
    if not EmptyForm().validate_on_submit():
        abort(400)
    service.delete_signing(current_user, signing)
    flash("签约已删除。", "success")
    return redirect(url_for("lifecycle.manage", id=opportunity.id))


# ---------------------------------------------------------------- lab links


@bp.post("/lifecycle/opportunities/<int:id>/labs")
def link_lab(id: int):
    opportunity = service.managed_opportunity(current_user, id)
    service.require(current_user, "link_lab", opportunity)
    form = LabLinkForm()
    form.set_choices(lab_service.lab_choices())
    if form.validate_on_submit():
        try:
            lab_service.link(current_user, opportunity, form.link_data())
        except ValidationFailed as exc:
            form.attach_errors(exc.errors)
        except DomainError as exc:
            _flash_or_raise(exc)
            return redirect(url_for("lifecycle.manage", id=opportunity.id))
        else:
            flash("已对接实验室。", "success")
            return redirect(url_for("lifecycle.manage", id=opportunity.id))
    elif "csrf_token" in form.errors:
        abort(400)
    return _render_manage(opportunity, 400, link_form=form)


@bp.post("/lifecycle/lab-links/<int:id>/delete")
def unlink_lab(id: int):
    row = lab_service.get_link(id)
    opportunity = service.managed_opportunity(current_user, row.opportunity_id)
    if not EmptyForm().validate_on_submit():
        abort(400)
    lab_service.unlink(current_user, row)
    flash("已取消实验室对接。", "success")
    return redirect(url_for("lifecycle.manage", id=opportunity.id))


# ---------------------------------------------------------------- labs


@bp.get("/labs")
def labs():
    form = LabFilterForm(request.args)
    form.validate()
    found = lab_service.directory(
        lab_service.LabFilters(kind=form.value("kind"), field=form.value("field"), city=form.value("city"))
    )
    return render_template(
        "lifecycle/labs.html",
        form=form,
        labs=found,
        can_manage=lab_service.can(current_user, "designate", None),
    )


@bp.get("/labs/<int:id>")
def lab(id: int):
    found = lab_service.visible_lab(current_user, id)
    return render_template(
        "lifecycle/lab.html",
        lab=found,
        links=lab_service.public_links(found),
        can_manage=lab_service.can(current_user, "edit", found),
    )


@bp.get("/labs/manage")
def manage_labs():
    return render_template(
        "lifecycle/labs_manage.html", labs=lab_service.all_labs(current_user), action_form=EmptyForm()
    )


@bp.route("/labs/new", methods=["GET", "POST"])
def new_lab():
    lab_service.require(current_user, "designate", None)
    form = LabForm()
    form.set_choices(lab_service.organization_choices(), editing=False)
    if form.validate_on_submit():
        try:
            created = lab_service.designate(current_user, form.lab_data())
        except ValidationFailed as exc:
            form.attach_errors(exc.errors)
        else:
            flash("实验室已认定。", "success")
            return redirect(url_for("lifecycle.lab", id=created.id))
    return render_template("lifecycle/lab_form.html", form=form, lab=None), (
        400 if request.method == "POST" else 200
    )


@bp.route("/labs/<int:id>/edit", methods=["GET", "POST"])
def edit_lab(id: int):
    found = lab_service.get_lab(id)
    lab_service.require(current_user, "edit", found)
    form = LabForm(obj=found) if request.method == "GET" else LabForm()
    form.set_choices([], editing=True)
    if form.validate_on_submit():
        try:
            lab_service.update(current_user, found, form.lab_data())
        except ValidationFailed as exc:
            form.attach_errors(exc.errors)
        else:
            flash("实验室信息已保存。", "success")
            return redirect(url_for("lifecycle.lab", id=found.id))
    return render_template("lifecycle/lab_form.html", form=form, lab=found), (
        400 if request.method == "POST" else 200
    )


@bp.post("/labs/<int:id>/<any(activate, deactivate):action>")
def lab_action(id: int, action: str):
    found = lab_service.get_lab(id)
    if not EmptyForm().validate_on_submit():
        abort(400)
    try:
        lab_service.set_active(current_user, found, action == "activate")
    except DomainError as exc:
        _flash_or_raise(exc)
    else:
        flash(
            "实验室已恢复运行。" if action == "activate" else "实验室已停用，不再出现在公开目录中。",
            "success",
        )
    return redirect(url_for("lifecycle.lab", id=found.id))

"""十百千 pages, the organizers' dashboard and the public 「成果」 page.

* Organizers: ``/programme/designations`` (list with filters, recommend, review, approve or
  reject), ``/programme/targets`` and ``/programme/dashboard`` with its CSV and XLSX downloads.
* Members: the same list shows the designations that concern their organisation; a verified
  enterprise applies as 高成长性企业 on ``/programme/designations/apply``.
* Public: ``/achievements``, and the badges on need and product pages (``programme_badges_*``
  template globals).

Every decision is the domain's permission function (:func:`services.programme.require`).
"""

from __future__ import annotations

from flask import Response, abort, flash, redirect, render_template, request, send_file, url_for
from flask_login import current_user

from marketplace.auth.forms import EmptyForm
from marketplace.extensions import login_manager
from marketplace.models import Designation, DesignationKind, ProgrammeTarget
from marketplace.paging import page_arg
from marketplace.programme import bp
from marketplace.programme.forms import (
    KIND_FORMS,
    DashboardFilterForm,
    DecisionForm,
    DesignationFilterForm,
    ProjectForm,
    SelfRecommendForm,
    TargetForm,
)
from marketplace.services import dashboard as dashboards
from marketplace.services import programme as service
from marketplace.services import uploads
from marketplace.services.errors import DomainError, ValidationFailed

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
PUBLIC_ENDPOINTS = {"programme.achievements"}


@bp.app_context_processor
def programme_globals():
    """Badge look-ups for the portal's templates (one query each, only where called)."""
    return {"programme_badges_for_opportunity": service.badges_for_opportunity,
            "programme_badges_for_organization":
                lambda org_id: service.badges_for_organizations([org_id]).get(org_id, [])}


@bp.before_request
def require_login():
    if request.endpoint in PUBLIC_ENDPOINTS or current_user.is_authenticated:
        return None
    if request.method == "GET":
        return login_manager.unauthorized()
    flash(login_manager.login_message, login_manager.login_message_category)
    return redirect(url_for("auth.login"))


def _evidence(form):
    data = form.evidence.data
    if data is None or not getattr(data, "filename", None):
        return None
    return data.stream, data.filename


def _download(body: bytes, mimetype: str, name: str) -> Response:
    reply = Response(body, mimetype=mimetype)
    reply.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    reply.headers["X-Content-Type-Options"] = "nosniff"
    reply.headers["Cache-Control"] = "no-store"
    return reply


# ---------------------------------------------------------------- designations


@bp.get("/programme/designations")
def designations():
    service.require(current_user, "list", Designation)
    form = DesignationFilterForm(request.args, years=service.designation_years())
    page = service.list_designations(current_user, form.filters(), page=page_arg())
    return render_template(
        "programme/designations.html", form=form, page=page, is_staff=service.is_staff(current_user),
        counts=service.status_counts() if service.is_staff(current_user) else [],
        self_problem=None if service.is_staff(current_user) else service.self_recommend_problem(current_user),
    )


@bp.route("/programme/designations/new", methods=["GET", "POST"])
def new_designation():
    service.require(current_user, "create", Designation)
    kind = request.args.get("kind", DesignationKind.ZONE)
    if kind not in KIND_FORMS:
        abort(404)
    form_class = KIND_FORMS[DesignationKind(kind)]
    form = form_class(needs=service.project_candidates()) if form_class is ProjectForm else form_class()
    if form.validate_on_submit():
        data = {key: value for key, value in form.data.items() if key not in ("evidence", "csrf_token")}
        try:
            designation = service.recommend(current_user, {**data, "kind": kind}, _evidence(form))
        except ValidationFailed as exc:
            form.attach_errors(exc.errors)
        else:
            flash("已提交推荐，状态为「推荐」。", "success")
            return redirect(url_for("programme.designation", id=designation.id))
    status = 200 if request.method == "GET" or not form.errors else 400
    return render_template("programme/designation_form.html", form=form, kind=kind,
                           kinds=list(DesignationKind)), status


@bp.route("/programme/designations/apply", methods=["GET", "POST"])
def apply_designation():
    service.require(current_user, "self_recommend", Designation)
    form = SelfRecommendForm()
    if form.validate_on_submit():
        data = {"year": form.year.data, "description": form.description.data}
        try:
            designation = service.recommend(current_user, data, _evidence(form))
        except ValidationFailed as exc:
            form.attach_errors(exc.errors)
        else:
            flash("申报已提交，组织方评审后将通知本单位。", "success")
            return redirect(url_for("programme.designation", id=designation.id))
    status = 200 if request.method == "GET" or not form.errors else 400
    return render_template("programme/apply.html", form=form), status


@bp.get("/programme/designations/<int:id>")
def designation(id: int):
    found = service.visible_designation(current_user, id)
    return render_template("programme/designation.html", designation=found,
                           actions=service.allowed_actions(current_user, found),
                           can_edit=service.can(current_user, "edit", found),
                           transitions=service.TRANSITIONS, form=DecisionForm())


@bp.route("/programme/designations/<int:id>/edit", methods=["GET", "POST"])
def edit_designation(id: int):
    """Edit a recommendation still in 推荐: organizers get the kind's form, a member recommender
    the application form (year, description, evidence)."""
    found = service.visible_designation(current_user, id)
    service.require(current_user, "edit", found)
    initial = service.form_data(found)
    if not service.is_staff(current_user):
        form_class = SelfRecommendForm
    else:
        form_class = KIND_FORMS[DesignationKind(found.kind)]
    kwargs = {"needs": service.project_candidates(keep=found)} if form_class is ProjectForm else {}
    form = form_class(data=None if request.method == "POST" else initial, **kwargs)
    form.submit.label.text = "保存修改"
    if form.validate_on_submit():
        data = {key: value for key, value in form.data.items()
                if key not in ("evidence", "csrf_token", "submit")}
        try:
            service.update(current_user, found, data, _evidence(form))
        except ValidationFailed as exc:
            form.attach_errors(exc.errors)
        else:
            flash("推荐已修改。", "success")
            return redirect(url_for("programme.designation", id=found.id))
    status = 200 if request.method == "GET" or not form.errors else 400
    return render_template("programme/designation_edit.html", form=form, designation=found,
                           kind=found.kind if service.is_staff(current_user) else "self"), status


@bp.post("/programme/designations/<int:id>/<action>")
def decide(id: int, action: str):
    found = service.visible_designation(current_user, id)
    if action not in service.TRANSITIONS:
        abort(404)
    form = DecisionForm()
    if not form.validate_on_submit():
        if "csrf_token" in form.errors or not form.errors:
            abort(400)
        flash(next(iter(form.errors.values()))[0], "danger")
        return redirect(url_for("programme.designation", id=id))
    try:
        service.apply(current_user, found, action, form.note.data or "", _evidence(form))
    except DomainError as exc:
        if exc.status_code in (403, 404):
            raise
        flash(exc.message, "danger")
    else:
        flash(service.TRANSITIONS[action].done, "success")
    return redirect(url_for("programme.designation", id=id))


@bp.get("/programme/designations/<int:id>/evidence")
def evidence(id: int):
    found = service.visible_designation(current_user, id)
    service.require(current_user, "evidence", found)
    if found.evidence_file is None:
        abort(404)
    reply = send_file(uploads.open_file(found.evidence_file), mimetype=found.evidence_file.content_type,
                      as_attachment=True, download_name=found.evidence_file.original_name, max_age=0)
    reply.headers["X-Content-Type-Options"] = "nosniff"
    reply.headers["Cache-Control"] = "private, no-store"
    return reply


# ---------------------------------------------------------------- targets


@bp.route("/programme/targets", methods=["GET", "POST"])
def targets():
    service.require(current_user, "edit", ProgrammeTarget)
    form = TargetForm()
    if form.validate_on_submit():
        try:
            service.save_target(current_user, form.target_data())
        except ValidationFailed as exc:
            form.attach_errors(exc.errors, aliases={"cumulative": "scope"})
        else:
            flash("目标已保存。", "success")
            return redirect(url_for("programme.targets"))
    status = 200 if request.method == "GET" or not form.errors else 400
    return render_template("programme/targets.html", form=form, targets=service.targets(),
                           defaults=service.DEFAULT_TARGETS, button=EmptyForm()), status


@bp.post("/programme/targets/<int:target_id>/delete")
def delete_target(target_id: int):
    service.require(current_user, "edit", ProgrammeTarget)
    if not EmptyForm().validate_on_submit():
        abort(400)
    service.delete_target(current_user, target_id)
    flash("目标已删除。", "success")
    return redirect(url_for("programme.targets"))


@bp.post("/programme/targets/defaults")
def default_targets():
    service.require(current_user, "edit", ProgrammeTarget)
    if not EmptyForm().validate_on_submit():
        abort(400)
    added = service.load_default_targets(current_user)
    flash(f"已载入 {added} 项江西默认目标。" if added else "默认目标均已设置，未作改动。", "success")
    return redirect(url_for("programme.targets"))


# ---------------------------------------------------------------- dashboard


def _dashboard_filters() -> tuple[DashboardFilterForm, dashboards.Filters]:
    form = DashboardFilterForm(request.args, years=dashboards.year_choices())
    year, city = form.values()
    return form, dashboards.Filters(year=year, city=city)


@bp.get("/programme/dashboard")
def dashboard():
    service.require(current_user, "view", "dashboard")
    form, filters = _dashboard_filters()
    figures = dashboards.dashboard(filters)
    return render_template("programme/dashboard.html", form=form, filters=filters, figures=figures,
                           charts={f.key: dashboards.chart_svg(f) for f in figures if f.rows},
                           cell=dashboards.cell_text)


@bp.get("/programme/dashboard/<figure>.csv")
def dashboard_csv(figure: str):
    service.require(current_user, "view", "dashboard")
    if figure not in dashboards.FIGURES:
        abort(404)
    _, filters = _dashboard_filters()
    return _download(dashboards.figure_csv(dashboards.figure(figure, filters)), "text/csv; charset=utf-8",
                     dashboards.filename(figure, filters, "csv"))


@bp.get("/programme/dashboard.xlsx")
def dashboard_xlsx():
    service.require(current_user, "view", "dashboard")
    _, filters = _dashboard_filters()
    return _download(dashboards.workbook(dashboards.dashboard(filters), filters), XLSX,
                     dashboards.filename("dashboard", filters, "xlsx"))


# ---------------------------------------------------------------- public


@bp.get("/achievements")
def achievements():
    return render_template("programme/achievements.html", data=dashboards.achievements(),
                           targets=dashboards.programme_targets_summary(), kinds=list(DesignationKind))

"""后台任务 pages: 「我的后台任务」 (organizers: every job), a job's page with a progress bar that
refreshes itself, its JSON status, and 「重新运行」 for a failed job.

Everything asks :func:`marketplace.services.jobs.can`; a job the user may not see is a 403, an
unknown or malformed id a 404.
"""

from __future__ import annotations

from flask import Blueprint, current_app, flash, jsonify, redirect, render_template, request, url_for
from flask_login import current_user

from marketplace.auth.forms import EmptyForm
from marketplace.extensions import login_manager
from marketplace.jobs.forms import JobFilterForm
from marketplace.models import Job, JobStatus
from marketplace.paging import page_arg
from marketplace.services import jobs as job_records
from marketplace.services.errors import DomainError

bp = Blueprint("jobs", __name__)

STATUS_STYLES = {
    JobStatus.QUEUED: "secondary",
    JobStatus.RUNNING: "primary",
    JobStatus.SUCCEEDED: "success",
    JobStatus.FAILED: "danger",
}


@bp.app_template_global("job_state")
def job_state(job: Job | job_records.Snapshot) -> job_records.Snapshot:
    """A job as the progress macro shows it (``templates/jobs/_progress.html``)."""
    return job if isinstance(job, job_records.Snapshot) else job_records.snapshot(job)


@bp.app_template_global("job_status_style")
def job_status_style(status: str) -> str:
    return STATUS_STYLES.get(status, "secondary")


@bp.app_template_global("job_kind_label")
def job_kind_label(kind: str) -> str:
    return job_records.kind_label(kind)


@bp.before_request
def require_login():
    if current_user.is_authenticated:
        return None
    if request.endpoint == "jobs.status":
        return jsonify(error={"code": 401, "message": "请先登录"}), 401
    if request.method == "GET":
        return login_manager.unauthorized()
    flash(login_manager.login_message, login_manager.login_message_category)
    return redirect(url_for("auth.login"))


@bp.get("/")
def index():
    kinds = [(kind, job_records.kind_label(kind)) for kind in job_records.kinds_seen(current_user)]
    form = JobFilterForm(request.args, kinds=kinds)
    valid = form.validate()
    page = job_records.visible_jobs(
        current_user,
        page=page_arg(),
        per_page=current_app.config["PER_PAGE"],
        kind=form.kind.data if valid else None,
        status=form.status.data if valid else None,
    )
    rows = [(job_records.snapshot(job), job) for job in page.items]
    filtered = valid and bool(form.kind.data or form.status.data)
    return render_template("jobs/index.html", page=page, rows=rows, form=form, filtered=filtered)


@bp.get("/<int:id>")
def show(id: int):
    job = job_records.get_job(current_user, id)
    return render_template(
        "jobs/show.html",
        job=job,
        state=job_records.snapshot(job),
        may_retry=job_records.can(current_user, "retry", job),
        retry_form=EmptyForm(),
    )


@bp.get("/<int:id>/status.json")
def status(id: int):
    try:
        job = job_records.get_job(current_user, id)
    except DomainError as exc:
        return jsonify(error={"code": exc.status_code, "message": exc.message}), exc.status_code
    response = jsonify(job_records.snapshot(job).to_dict())
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/<int:id>/retry")
def retry(id: int):
    job = job_records.get_job(current_user, id)
    if not EmptyForm().validate_on_submit():
        return redirect(url_for("jobs.show", id=id))
    try:
        job_records.retry(current_user, job)
    except DomainError as exc:
        if exc.status_code == 403:
            raise
        flash(exc.message, "danger")
    else:
        flash("任务已重新排队。", "success")
    return redirect(url_for("jobs.show", id=id))

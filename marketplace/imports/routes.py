"""批量导入 and 导出 pages for every role.

* ``/imports/``: the upload form (members: their own organization's lists, as drafts;
  organizers: all three lists, optionally into an open batch) and the templates.
* ``/imports/<job id>``: a preview (counts, rows with their action, errors, near-duplicates,
  「确认导入」) or, for an apply job, what was written.
* ``/imports/export/…``: filtered lists and batches as XLSX or CSV.

Who may do what is the services' (``imports.can_import``, ``jobs.can_view``, the export's own
visibility rules); a job the user may not see is a 403, an unknown id a 404.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Sequence
from functools import wraps
from typing import Any

from flask import Response, abort, flash, redirect, render_template, request, send_file, url_for
from flask_login import current_user
from flask_sqlalchemy.pagination import Pagination

from marketplace.admin.forms import OrganizationFilterForm
from marketplace.auth.forms import EmptyForm
from marketplace.extensions import login_manager
from marketplace.imports import bp
from marketplace.imports import tasks as service
from marketplace.imports.forms import BATCH_KIND as ENTRY_KINDS
from marketplace.imports.forms import ImportForm
from marketplace.models import JobStatus
from marketplace.paging import id_arg, page_arg
from marketplace.portal.forms import OpportunityFilterForm, ProductFilterForm
from marketplace.services import batches, exports, imports, portal, spreadsheets
from marketplace.services.errors import DomainError, ValidationFailed

ROWS_PER_PAGE = 100
KIND_PATTERN = "any(opportunities, products, organizations)"
FORMAT_PATTERN = "any(xlsx, csv)"


#: Errors listed in the preview's summary (all of them are in the table, filtered by 错误).
ERROR_LIST_LIMIT = 200


@bp.context_processor
def _labels() -> dict[str, Any]:
    limits = spreadsheets.Limits.from_config()
    return {
        "kind_labels": spreadsheets.KIND_LABELS,
        "action_labels": imports.ACTION_LABELS,
        "error_limit": ERROR_LIST_LIMIT,
        "max_mb": f"{limits.max_bytes / 1024 / 1024:g}",
        "max_rows": limits.max_rows,
    }


def login_required(view):
    @wraps(view)
    def wrapped(*args, **kwargs):
        if not current_user.is_authenticated:
            if request.method == "GET":
                return login_manager.unauthorized()
            flash(login_manager.login_message, login_manager.login_message_category)
            return redirect(url_for("auth.login"))
        return view(*args, **kwargs)

    return wrapped


class RowPage(Pagination):
    """One page of preview rows, with the interface of ``db.paginate`` (``macros.pagination``)."""

    def _query_items(self) -> list[Any]:
        rows: Sequence[Any] = self._query_args["rows"]
        return list(rows[self._query_offset : self._query_offset + self.per_page])

    def _query_count(self) -> int:
        return len(self._query_args["rows"])


def row_page(rows: Sequence[Any], page: int, per_page: int) -> RowPage:
    pages = max(1, -(-len(rows) // per_page))
    return RowPage(page=min(page, pages), per_page=per_page, max_per_page=None, error_out=False, rows=rows)


def _importable_kinds() -> list[str]:
    return [kind for kind in spreadsheets.KINDS if imports.can_import(current_user, kind)]


def _open_batches() -> list:
    if not current_user.is_staff:
        return []
    return [b for kind in ("opportunity", "product") for b in batches.open_batches(kind)
            if imports.can_import(current_user, spreadsheets.normalize_kind(b.kind), b)]


# ---------------------------------------------------------------- upload


@bp.route("/", methods=["GET", "POST"])
@login_required
def index():
    kinds = _importable_kinds()
    if not kinds:
        abort(403)
    form = ImportForm(kinds, _open_batches())
    if request.method == "GET":
        form.kind.data = request.args.get("kind") if request.args.get("kind") in kinds else ""
        form.batch.data = request.args.get("batch") if form.chosen_batch_id(request.args.get("batch")) else ""
    if form.validate_on_submit():
        upload = form.file.data
        try:
            job = service.start_preview(
                current_user, form.kind.data, form.chosen_batch(), upload.stream, upload.filename
            )
        except ValidationFailed as exc:
            form.attach_errors(exc.errors)
        else:
            return redirect(url_for("jobs.show", id=job.id))
    if request.method == "POST":
        if form.file.data and not form.file.errors:
            form.file.errors = ["出于安全原因，请重新选择文件"]
        return render_template("imports/index.html", form=form, kinds=kinds), 400
    return render_template("imports/index.html", form=form, kinds=kinds)


@bp.get(f"/templates/<{KIND_PATTERN}:kind>.xlsx")
@login_required
def template(kind: str):
    if not imports.can_import(current_user, kind):
        abort(403)
    name = f"{spreadsheets.KIND_LABELS[kind]}导入模板.xlsx"
    return export_response(spreadsheets.template_workbook(kind), name, "xlsx")


# ---------------------------------------------------------------- preview and result


@bp.get("/<int:id>")
@login_required
def preview(id: int):
    job = service.import_job(current_user, id)
    if job.status != JobStatus.SUCCEEDED:
        return render_template("imports/waiting.html", job=job, batch=service.batch_or_none(job))
    if job.kind == service.APPLY_JOB:
        return render_template(
            "imports/result.html", job=job, applied=(job.result or {}).get("applied"),
            preview_id=job.params.get("preview_job_id"), batch=service.batch_or_none(job),
        )
    preview = service.preview_of(job)
    if preview is None:  # no preview in its result: the job page says what happened
        return redirect(url_for("jobs.show", id=job.id))
    action = request.args.get("action", "")
    if action not in imports.ACTIONS:
        action = ""
    rows = [r for r in preview.rows if not action or r.action == action]
    return render_template(
        "imports/preview.html",
        job=job,
        preview=preview,
        action=action,
        page=row_page(rows, page_arg(), ROWS_PER_PAGE),
        applied_job=service.apply_job_of(job),
        may_confirm=service.can_confirm(current_user, job),
        batch=service.batch_or_none(job),
        confirm_form=EmptyForm(),
    )


@bp.post("/<int:id>/confirm")
@login_required
def confirm(id: int):
    job = service.import_job(current_user, id)
    if not EmptyForm().validate_on_submit():
        abort(400)
    try:
        applied = service.start_apply(current_user, job)
    except DomainError as exc:
        if exc.status_code == 403:
            raise
        flash(exc.message, "danger")
        return redirect(url_for("imports.preview", id=job.id))
    return redirect(url_for("imports.preview", id=applied.id))


# ---------------------------------------------------------------- exports


def _entry_filters(kind: str, scope: str) -> tuple[exports.ExportFilters, str]:
    """The list page's filters and keyword from the query string. Invalid values are dropped,
    as the page drops them, so the file holds exactly the rows the page lists. The back office
    filters on any batch (``batch``, an id) and on ``status``."""
    entry_kind = ENTRY_KINDS[kind]
    form_class = OpportunityFilterForm if kind == spreadsheets.OPPORTUNITIES else ProductFilterForm
    form = form_class(request.args, batches=portal.published_batches(entry_kind))
    form.validate()
    filters = form.filters()
    if scope != "public":
        filters = dataclasses.replace(filters, batch_id=id_arg("batch"))
    return exports.ExportFilters(entries=filters, status=request.args.get("status") or None), form.keyword()


def _search_rows(kind: str, filters: exports.ExportFilters, keyword: str) -> list:
    """The public list's keyword hits, in rank order (the page ranks them the same way)."""
    if not exports.can_export(current_user, kind, "public"):
        abort(403)
    listing = portal.list_opportunities if kind == spreadsheets.OPPORTUNITIES else portal.list_products
    limit = spreadsheets.Limits.from_config().max_rows
    return list(listing(filters.entries, keyword, page=1, per_page=limit).page.items)


def _organization_filters() -> exports.ExportFilters:
    form = OrganizationFilterForm(formdata=request.args)
    form.validate()
    verified = form.verified.data if form.verified.data in ("0", "1") and not form.verified.errors else None
    return exports.ExportFilters(
        verified=None if verified is None else verified == "1",
        org_kind=(form.kind.data or None) if not form.kind.errors else None,
        q=(form.q.data or "").strip() if not form.q.errors else None,
    )


@bp.get(f"/export/<{KIND_PATTERN}:list_kind>.<{FORMAT_PATTERN}:file_format>")
def export_list(list_kind: str, file_format: str):
    """A list as XLSX/CSV: ``scope=public`` (default; the portal lists, keyword included),
    ``mine`` (the member's own entries) or ``all`` (organizers, optionally ``status``)."""
    kind, fmt = list_kind, file_format
    scope = request.args.get("scope") or ("all" if kind == spreadsheets.ORGANIZATIONS else "public")
    if scope not in exports.SCOPES:
        abort(400)
    if kind == spreadsheets.ORGANIZATIONS:
        rows = exports.export_query(kind, current_user, _organization_filters(), scope)
    else:
        filters, keyword = _entry_filters(kind, scope)
        if keyword and scope == "public":
            rows = _search_rows(kind, filters, keyword)
        else:
            rows = exports.export_query(kind, current_user, filters, scope)
    data = exports.export_file(kind, rows, fmt, current_user)
    return export_response(data, exports.export_filename(kind, fmt), fmt)


@bp.get(f"/export/batch/<int:id>.<{FORMAT_PATTERN}:file_format>")
def export_batch(id: int, file_format: str):
    """A batch: its published entries for everyone once published; every entry for organizers."""
    batch = batches.get_batch(id)
    kind = spreadsheets.normalize_kind(batch.kind)
    rows = exports.batch_rows(current_user, batch)
    name = exports.export_filename(kind, file_format, batch)
    return export_response(exports.export_file(kind, rows, file_format, current_user), name, file_format)


def export_response(body: bytes, filename: str, fmt: str) -> Response:
    """A download; the Chinese file name goes in RFC 5987 form with an ASCII fallback."""
    response = send_file(
        io.BytesIO(body), mimetype=exports.CONTENT_TYPES[fmt], as_attachment=True,
        download_name=filename, max_age=0,
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "private, no-store"
    return response

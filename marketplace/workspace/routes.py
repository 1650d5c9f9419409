"""A member's workspace: their organization's opportunities and products and its profile.

Access: members of an organization only. Organizers and admins (who have no organization) get
403 everywhere except the two entry pages, which they may read (read-only, no actions) because
reviewers follow links to them from the back office.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user

from marketplace.auth.forms import EmptyForm
from marketplace.extensions import login_manager
from marketplace.models import EntryKind, EntryStatus, OrgKind
from marketplace.paging import page_arg
from marketplace.services import accounts, entries
from marketplace.services import workspace as workspace_service
from marketplace.services.entries import EDITABLE_IN_PLACE, Entry
from marketplace.services.errors import DomainError, PermissionDenied, ValidationFailed
from marketplace.workspace import bp
from marketplace.workspace.forms import OpportunityForm, ProductForm, ProfileForm

#: URL segment → entry kind.
KIND_SLUGS = {"opportunities": EntryKind.OPPORTUNITY, "products": EntryKind.PRODUCT}
FORMS = {EntryKind.OPPORTUNITY: OpportunityForm, EntryKind.PRODUCT: ProductForm}
DETAIL_ENDPOINTS = {EntryKind.OPPORTUNITY: "workspace.opportunity", EntryKind.PRODUCT: "workspace.product"}
EDIT_ENDPOINTS = {
    EntryKind.OPPORTUNITY: "workspace.edit_opportunity",
    EntryKind.PRODUCT: "workspace.edit_product",
}
STAFF_READABLE = frozenset(DETAIL_ENDPOINTS.values())
#: Larger ids cannot exist (and would overflow some database drivers).
MAX_ID = 2**31 - 1
STATUS_VALUES = frozenset(s.value for s in EntryStatus)
#: Statuses in which the owner may open the edit form (in place, or as a revision when published).
EDITABLE_STATUSES = frozenset({*EDITABLE_IN_PLACE, EntryStatus.PUBLISHED})


@dataclass(frozen=True)
class Action:
    label: str
    style: str
    done: str
    confirm: str | None = None


ACTIONS: dict[str, Action] = {
    "submit": Action("提交审核", "primary", "已提交审核，请等待组织方审核。"),
    "withdraw": Action(
        "撤回", "outline-danger", "已撤回。", confirm="确定撤回该条目吗？已发布的条目将从公开清单中移除。"
    ),
    "restore": Action("恢复为草稿", "outline-secondary", "已恢复为草稿，可继续编辑后重新提交审核。"),
}
SERVICES = {"submit": entries.submit, "withdraw": entries.withdraw, "restore": entries.restore}


@bp.before_request
def require_member():
    if not current_user.is_authenticated:
        if request.method == "GET":
            return login_manager.unauthorized()  # comes back here after login
        # A POST cannot be replayed after login: no ``next`` to a POST-only URL.
        flash(login_manager.login_message, login_manager.login_message_category)
        return redirect(url_for("auth.login"))
    if current_user.organization is None:
        if current_user.is_staff and request.endpoint in STAFF_READABLE:
            return None
        raise PermissionDenied("工作台仅供单位用户使用；组织方请使用组织方后台")
    return None


# ---------------------------------------------------------------- helpers


def detail_url(entry: Entry) -> str:
    return url_for(DETAIL_ENDPOINTS[entry.kind], entry_id=entry.id)


def _load(kind: str, entry_id: int) -> Entry:
    if entry_id > MAX_ID:
        abort(404)
    return entries.get_entry(kind, entry_id)


def _owned(kind: str, entry_id: int) -> Entry:
    """The entry if the current user's organization owns it.

    Another organization's unpublished entry is a 404 (its existence stays hidden); a published
    one is a 403.
    """
    entry = _load(kind, entry_id)
    entries.require_view(current_user, entry)
    entries.require_owner(current_user, entry)
    return entry


def _require_product_owner() -> None:
    organization = current_user.organization
    if not organization.can_own_products:
        raise PermissionDenied(
            f"{organization.kind_label}不能发布产品清单：只有"
            f"{OrgKind.ENTERPRISE.label}、{OrgKind.RESEARCH.label}和{OrgKind.SERVICE.label}可以发布产品"
        )


def available_actions(entry: Entry) -> list[str]:
    """The owner actions allowed from the entry's status (mirrors ``services.entries``)."""
    actions = []
    if entry.status in (EntryStatus.DRAFT, EntryStatus.RETURNED):
        actions.append("submit")
    if entry.status == EntryStatus.WITHDRAWN:
        actions.append("restore")
    else:
        actions.append("withdraw")
    return actions


def is_editable(entry: Entry) -> bool:
    return entry.status in EDITABLE_STATUSES


def _changed_labels(entry: Entry, form_cls: type) -> list[str]:
    """Labels of the fields a pending revision changes."""
    pending, current = entries.editable_values(entry), entries.current_values(entry)
    form = form_cls(formdata=None, meta={"csrf": False})
    return [form[name].label.text for name in form_cls.FIELDS if pending.get(name) != current.get(name)]


# ---------------------------------------------------------------- overview and profile


@bp.get("/")
def index():
    organization = current_user.organization
    status = request.args.get("status") or None
    if status is not None and status not in STATUS_VALUES:
        abort(400)
    per_page = current_app.config["PER_PAGE"]
    opportunities = workspace_service.organization_entries(
        EntryKind.OPPORTUNITY, organization, status, page_arg("opp_page"), per_page
    )
    products = None
    if organization.can_own_products:
        products = workspace_service.organization_entries(
            EntryKind.PRODUCT, organization, status, page_arg("prod_page"), per_page
        )
    tab = request.args.get("tab") or workspace_service.landing_tab(organization)
    if tab not in ("products", "opportunities") or (tab == "products" and products is None):
        tab = "opportunities"
    firm = organization.can_own_products
    return render_template(
        "workspace/index.html",
        organization=organization,
        firm=firm,
        fits=workspace_service.fitting_opportunities(organization) if firm else [],
        my_responses=workspace_service.recent_responses(current_user) if firm else [],
        needs=workspace_service.needs_with_candidates(organization) if not firm else [],
        counts=workspace_service.status_counts(organization),
        statuses=list(EntryStatus),
        status=status,
        opportunities=opportunities,
        products=products,
        tab=tab,
        editable_statuses=EDITABLE_STATUSES,
    )


@bp.route("/organization", methods=["GET", "POST"])
def profile():
    organization = current_user.organization
    if request.method == "GET":
        form = ProfileForm(obj=organization)
        # A pending change of name / code is what the member last asked for.
        form.name.data = organization.display_pending_name
        form.credit_code.data = organization.display_pending_credit_code
    else:
        form = ProfileForm()
    if form.validate_on_submit():
        try:
            pending = accounts.update_organization(
                current_user, organization, form.organization_data(kind=organization.kind)
            )
        except ValidationFailed as exc:
            form.attach_errors(exc.errors)
        else:
            if pending:
                flash(
                    "单位信息已保存。单位名称或统一社会信用代码的变更已提交组织方审核；"
                    f"审核通过前，公开页面继续显示「{organization.name}」。",
                    "warning",
                )
            else:
                flash("单位信息已保存。", "success")
            return redirect(url_for("workspace.profile"))
    return render_template("workspace/profile.html", organization=organization, form=form)


# ---------------------------------------------------------------- entries (shared views)


def _new(kind: str):
    if kind == EntryKind.PRODUCT:
        _require_product_owner()
    organization = current_user.organization
    form_cls = FORMS[kind]
    if request.method == "GET":
        defaults: dict[str, Any] = {
            "region_city": organization.region_city,
            "region_county": organization.region_county,
        }
        if kind == EntryKind.OPPORTUNITY:
            defaults |= {"contact_name": organization.contact_name,
                         "contact_phone": organization.contact_phone}
        form = form_cls(data=defaults)
    else:
        form = form_cls()
    if form.validate_on_submit():
        try:
            entry = entries.create_entry(current_user, kind, form.entry_data())
        except ValidationFailed as exc:
            form.attach_errors(exc.errors)
        else:
            flash("已保存为草稿。确认无误后请点击「提交审核」。", "success")
            return redirect(detail_url(entry))
    return render_template("workspace/entry_form.html", form=form, kind=kind, entry=None)


def _edit(kind: str, entry_id: int):
    entry = _owned(kind, entry_id)
    if not is_editable(entry):
        flash(f"「{entry.status_label}」状态的条目不能修改；如需修改，请先撤回。", "warning")
        return redirect(detail_url(entry))
    form_cls = FORMS[kind]
    form = form_cls(data=entries.editable_values(entry)) if request.method == "GET" else form_cls()
    if form.validate_on_submit():
        try:
            revision = entries.update_entry(current_user, entry, form.entry_data())
        except ValidationFailed as exc:
            form.attach_errors(exc.errors)
        except DomainError as exc:
            flash(exc.message, "danger")
            return redirect(detail_url(entry))
        else:
            if revision is not None:
                flash("修改已提交审核，审核通过前公开页面仍显示原内容。", "info")
            else:
                flash("修改已保存。", "success")
            return redirect(detail_url(entry))
    return render_template("workspace/entry_form.html", form=form, kind=kind, entry=entry)


def _detail(kind: str, entry_id: int):
    entry = _load(kind, entry_id)
    owner = entries.is_owner(current_user, entry)
    if not (owner or current_user.is_staff):
        abort(404)
    revision = entries.pending_revision(entry)
    return render_template(
        "workspace/entry.html",
        entry=entry,
        kind=kind,
        read_only=not owner,
        revision=revision,
        changed=_changed_labels(entry, FORMS[kind]) if revision is not None else [],
        history=workspace_service.entry_history(entry),
        actions=[(name, ACTIONS[name]) for name in available_actions(entry)] if owner else [],
        editable=owner and is_editable(entry),
        edit_url=url_for(EDIT_ENDPOINTS[kind], entry_id=entry.id),
    )


# ---------------------------------------------------------------- opportunities


@bp.route("/opportunities/new", methods=["GET", "POST"])
def new_opportunity():
    return _new(EntryKind.OPPORTUNITY)


@bp.get("/opportunities/<int:entry_id>")
def opportunity(entry_id: int):
    return _detail(EntryKind.OPPORTUNITY, entry_id)


@bp.route("/opportunities/<int:entry_id>/edit", methods=["GET", "POST"])
def edit_opportunity(entry_id: int):
    return _edit(EntryKind.OPPORTUNITY, entry_id)


# ---------------------------------------------------------------- products


@bp.route("/products/new", methods=["GET", "POST"])
def new_product():
    return _new(EntryKind.PRODUCT)


@bp.get("/products/<int:entry_id>")
def product(entry_id: int):
    return _detail(EntryKind.PRODUCT, entry_id)


@bp.route("/products/<int:entry_id>/edit", methods=["GET", "POST"])
def edit_product(entry_id: int):
    return _edit(EntryKind.PRODUCT, entry_id)


# ---------------------------------------------------------------- workflow actions


@bp.post("/<any(opportunities, products):kind>/<int:entry_id>/<any(submit, withdraw, restore):action>")
def entry_action(kind: str, entry_id: int, action: str):
    """提交审核 / 撤回 / 恢复为草稿. A refused step is flashed on the entry page."""
    entry = _owned(KIND_SLUGS[kind], entry_id)
    if not EmptyForm().validate_on_submit():
        abort(400)
    try:
        SERVICES[action](current_user, entry)
    except DomainError as exc:
        flash(exc.message, "danger")
    else:
        flash(ACTIONS[action].done, "success")
    return redirect(detail_url(entry))

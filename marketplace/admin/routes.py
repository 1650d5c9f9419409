"""Organizer back office views.

Every view needs a logged-in organizer or admin (``before_request``); user administration
needs an admin. Views read a form, call one service function and flash + redirect, or
re-render the page with the form errors. One-button POSTs use the ``post_button`` macro,
whose CSRF token the app-wide ``CSRFProtect`` checks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from functools import wraps
from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import func, or_, select
from sqlalchemy.orm import selectinload
from wtforms import Form
from wtforms.fields.choices import SelectChoice

from marketplace.admin import bp
from marketplace.admin.forms import (
    AUDIT_OBJECT_TYPES,
    ApproveForm,
    AuditFilterForm,
    BatchForm,
    BulkApproveForm,
    CommentForm,
    IdentityReturnForm,
    OrganizationFilterForm,
    RevokeForm,
    StaffAccountForm,
    UserFilterForm,
    choices_of,
)
from marketplace.extensions import db, login_manager
from marketplace.models import (
    AuditEvent,
    Batch,
    BatchStatus,
    CooperationMode,
    EntryKind,
    EntryRevision,
    EntryStatus,
    Maturity,
    Opportunity,
    Organization,
    Product,
    Role,
    Tier,
    User,
)
from marketplace.paging import page_arg
from marketplace.services import accounts, audit, batches, entries, lifecycle, programme
from marketplace.services import review as review_service
from marketplace.services.errors import DomainError, ValidationFailed

PER_PAGE = 20
AUDIT_PER_PAGE = 30
KINDS = tuple(k.value for k in EntryKind)

#: Chinese labels of the audit actions written by the services.
ACTION_LABELS: dict[str, str] = {
    "entry.create": "新建条目",
    "entry.update": "修改条目",
    "entry.submit": "提交审核",
    "entry.withdraw": "撤回条目",
    "entry.restore": "恢复为草稿",
    "entry.approve": "审核通过",
    "entry.return": "退回修改",
    "revision.submit": "提交修改",
    "revision.approve": "修改审核通过",
    "revision.return": "退回修改申请",
    "batch.create": "新建批次",
    "batch.publish": "发布批次",
    "org.register": "单位注册",
    "org.update": "修改单位信息",
    "org.verify": "认证单位",
    "org.unverify": "取消认证",
    "org.identity_approve": "名称/信用代码变更通过",
    "org.identity_return": "名称/信用代码变更退回",
    "user.create": "创建账号",
    "user.activate": "启用账号",
    "user.deactivate": "停用账号",
    "user.password_change": "修改密码",
    "user.reset_request": "申请重置密码",
    "user.password_reset": "重置密码",
    "org.invite": "邀请同事",
    "org.invite_cancel": "取消邀请",
    "org.join": "接受邀请加入",
    "org.member_remove": "移出成员",
    "org.admin_handover": "移交管理员",
    "org.license": "上传证照",
    "api_token.create": "创建 API 令牌",
    "api_token.revoke": "吊销 API 令牌",
    "signing.create": "登记项目签约",
    "signing.update": "修改项目签约",
    "signing.delete": "删除项目签约",
    "lab.designate": "认定实验室",
    "lab.update": "修改实验室",
    "lab.activate": "恢复实验室",
    "lab.deactivate": "停用实验室",
    "lab.link": "关联实验室验证",
    "lab.unlink": "取消实验室关联",
    "designation.recommend": "推荐十百千认定",
    "designation.update": "修改十百千推荐",
    "programme_target.save": "设置十百千目标",
    "programme_target.delete": "删除十百千目标",
    "programme_target.defaults": "载入默认目标",
    "import.opportunities": "批量导入机会清单",
    "import.products": "批量导入产品清单",
    "import.organizations": "批量导入单位",
    "matching.learn": "训练学习排序模型",
    "matching.switch": "切换排序方式",
    # The workflow steps, labelled from their transition tables.
    **{f"opportunity.stage.{t.action}": t.label for t in lifecycle.TRANSITIONS.values()},
    **{f"designation.{t.action}": f"十百千认定：{t.label}" for t in programme.TRANSITIONS.values()},
}


def action_label(action: str) -> str:
    return ACTION_LABELS.get(action, action)


@bp.context_processor
def _labels() -> dict[str, Any]:
    return {
        "action_label": action_label,
        "object_type_labels": AUDIT_OBJECT_TYPES,
        "kind_labels": dict(EntryKind.choices()),
    }


# ---------------------------------------------------------------- access and helpers


@bp.before_request
def require_staff():
    """Anonymous visitors go to the login page; members get 403."""
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    if not current_user.is_staff:
        abort(403)
    return None


def admin_required(view: Callable) -> Callable:
    @wraps(view)
    def wrapped(*args, **kwargs):
        if not current_user.is_admin:
            abort(403)
        return view(*args, **kwargs)

    return wrapped


def _actor() -> User:
    return current_user._get_current_object()


def attach_errors(form: Form, exc: ValidationFailed) -> None:
    """Show a service's field errors beside the matching form fields; flash the others."""
    for name, message in exc.errors.items():
        field = form._fields.get(name)
        if field is None:
            flash(message, "danger")
        else:
            field.errors = [*field.errors, message]


def _list_options(model: type[Opportunity] | type[Product]) -> list:
    """Eager loads for entry lists: the owner, and a product's categories."""
    if model is Opportunity:
        return [selectinload(Opportunity.publisher)]
    return [selectinload(Product.owner), selectinload(Product.field_rows)]


def _preload_categories(items: list) -> None:
    """Load the categories of the listed products in one query (the identity map keeps them)."""
    ids = [e.id for e in items if e.kind == EntryKind.PRODUCT]
    if ids:
        db.session.scalars(
            select(Product).where(Product.id.in_(ids)).options(selectinload(Product.field_rows))
        ).all()


def _entries_of_revisions(revisions: list[EntryRevision]) -> dict[tuple[str, int], Any]:
    """The entries the revisions change, loaded with one query per kind."""
    found: dict[tuple[str, int], Any] = {}
    for kind in KINDS:
        ids = {r.entry_id for r in revisions if r.entry_kind == kind}
        if not ids:
            continue
        model = entries.model_for(kind)
        rows = db.session.scalars(select(model).where(model.id.in_(ids)).options(*_list_options(model)))
        found.update({(kind, e.id): e for e in rows})
    return found


def _history(object_type: str, object_id: int, limit: int = 50) -> list[AuditEvent]:
    stmt = audit.audit_query(object_type=object_type, object_id=object_id)
    return list(db.session.scalars(stmt.options(selectinload(AuditEvent.actor)).limit(limit)))


# ---------------------------------------------------------------- dashboard


@bp.get("/")
def index():
    queue, revisions = entries.review_queue()
    queue_counts = {kind: sum(1 for e in queue if e.kind == kind) for kind in KINDS}
    unverified = db.session.scalar(
        select(func.count(Organization.id)).where(Organization.verified.is_(False))
    )
    open_batches = [
        (batch, batches.entry_counts(batch).get(EntryStatus.APPROVED, 0))
        for kind in KINDS
        for batch in batches.open_batches(kind)
    ]
    recent = db.session.scalars(
        audit.audit_query().options(selectinload(AuditEvent.actor)).limit(10)
    ).all()
    return render_template(
        "admin/index.html",
        queue_counts=queue_counts,
        revision_count=len(revisions),
        unverified=unverified,
        open_batches=open_batches,
        recent=recent,
    )


# ---------------------------------------------------------------- review queue and entries


@bp.get("/review")
def review():
    kind = request.args.get("kind", "")
    if kind and kind not in KINDS:
        flash("未知的清单类型，已显示全部待审核内容", "warning")
        kind = ""
    queue, revisions = entries.review_queue(kind or None)
    _preload_categories(queue)
    return render_template(
        "admin/review.html",
        kind=kind,
        queue=queue,
        queue_by_kind=[(k, [e for e in queue if e.kind == k]) for k in KINDS if not kind or k == kind],
        open_batches={k: batches.open_batches(k) for k in KINDS},
        revisions=revisions,
        revision_entries=_entries_of_revisions(revisions),
    )


def _bulk_selection(form: BulkApproveForm):
    """The checked selection of a bulk form, or None after flashing why it cannot go on."""
    if not form.validate_on_submit():
        for errors in form.errors.values():
            for message in errors:
                flash(message, "danger")
        return None
    try:
        ids = review_service.parse_ids(form.entries.data or [])
        return review_service.select_for_bulk(_actor(), form.kind.data, ids, form.batch_id.data)
    except ValidationFailed as exc:
        for message in exc.errors.values():
            flash(message, "danger")
    return None


@bp.post("/review/bulk")
def bulk_review():
    """批量通过, step 1: show what will happen and ask to confirm (works without JavaScript)."""
    form = BulkApproveForm()
    selection = _bulk_selection(form)
    if selection is None:
        return redirect(url_for(".review", kind=form.kind.data if form.kind.data in KINDS else None))
    _preload_categories(selection.entries)
    return render_template("admin/review_bulk.html", selection=selection, form=form)


@bp.post("/review/bulk/approve")
def bulk_approve():
    """批量通过, step 2: approve them all in one transaction, or none."""
    form = BulkApproveForm()
    kind = form.kind.data if form.kind.data in KINDS else None
    if not form.validate_on_submit():
        for errors in form.errors.values():
            for message in errors:
                flash(message, "danger")
        return redirect(url_for(".review", kind=kind))
    try:
        ids = review_service.parse_ids(form.entries.data or [])
        selection = review_service.bulk_approve(_actor(), form.kind.data, ids, form.batch_id.data)
    except ValidationFailed as exc:
        for message in exc.errors.values():
            flash(message, "danger")
        return redirect(url_for(".review", kind=kind))
    flash(f"已批量审核通过{len(selection.entries)}个条目，入选「{selection.batch.title}」", "success")
    return redirect(url_for(".review", kind=kind))


def _render_entry(entry, approve_form: ApproveForm | None = None, return_form: CommentForm | None = None):
    approve_form = approve_form or ApproveForm(formdata=None)
    open_batches = batches.open_batches(entry.kind)
    approve_form.batch_id.choices = choices_of((b.id, b.title) for b in open_batches)
    return render_template(
        "admin/review_entry.html",
        entry=entry,
        approve_form=approve_form,
        return_form=return_form or CommentForm(formdata=None),
        open_batches=open_batches,
        revision=entries.pending_revision(entry),
        history=_history(entry.kind, entry.id),
    )


@bp.get("/review/<kind>/<int:id>")
def review_entry(kind: str, id: int):
    return _render_entry(entries.get_entry(kind, id))


@bp.post("/review/<kind>/<int:id>/approve")
def approve_entry(kind: str, id: int):
    entry = entries.get_entry(kind, id)
    form = ApproveForm()
    if not form.validate_on_submit():
        return _render_entry(entry, approve_form=form)
    try:
        batch = batches.get_batch(form.batch_id.data)
        entries.approve(_actor(), entry, batch)
    except DomainError as exc:
        flash(exc.message, "danger")
        return redirect(url_for(".review_entry", kind=kind, id=id))
    flash(f"「{entry.display_name}」审核通过，已入选「{batch.title}」", "success")
    return redirect(url_for(".review", kind=kind))


@bp.post("/review/<kind>/<int:id>/return")
def return_entry(kind: str, id: int):
    entry = entries.get_entry(kind, id)
    form = CommentForm()
    if form.validate_on_submit():
        try:
            entries.return_entry(_actor(), entry, form.comment.data)
        except ValidationFailed as exc:
            attach_errors(form, exc)
        except DomainError as exc:
            flash(exc.message, "danger")
            return redirect(url_for(".review_entry", kind=kind, id=id))
        else:
            flash(f"已退回「{entry.display_name}」，提交单位将看到退回意见", "success")
            return redirect(url_for(".review", kind=kind))
    return _render_entry(entry, return_form=form)


# ---------------------------------------------------------------- revisions of published entries

FIELD_LABELS = {
    "title": "标题",
    "name": "产品名称",
    "description": "描述",
    "field_category": "应用领域",
    "fields": "应用领域",
    "tags": "技术标签",
    "tier": "场景层级",
    "maturity": "成熟度",
    "cases": "典型案例",
    "region_city": "所在城市",
    "region_county": "所在区县",
    "budget_min": "预算下限（万元）",
    "budget_max": "预算上限（万元）",
    "cooperation_modes": "合作方式",
    "deadline": "答题截止日期",
    "contact_name": "联系人",
    "contact_phone": "联系电话",
}
LONG_TEXT_FIELDS = {"description", "cases"}
MONEY_FIELDS = {"budget_min", "budget_max"}


@dataclass(frozen=True)
class DiffRow:
    field: str
    label: str
    current: str
    proposed: str
    changed: bool
    long_text: bool


def _comparable(field: str, value: Any) -> Any:
    """Normalize a stored or JSON value so that equal contents compare equal."""
    if value is None or value == "" or value == []:
        return None
    if field in MONEY_FIELDS:
        try:
            return Decimal(str(value)).normalize()
        except InvalidOperation:
            return str(value)
    if isinstance(value, list | tuple):
        return tuple(sorted(str(v) for v in value))
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _display(field: str, value: Any) -> str:
    if value is None or value == "" or value == []:
        return ""
    if field == "tier":
        return Tier.label_of(value)
    if field == "maturity":
        return Maturity.label_of(value)
    if field == "cooperation_modes":
        return "、".join(CooperationMode.label_of(v) for v in value)
    if isinstance(value, list | tuple):
        return "、".join(str(v) for v in value)
    if field in MONEY_FIELDS:
        comparable = _comparable(field, value)
        return f"{comparable:f}" if isinstance(comparable, Decimal) else str(value)
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def revision_diff(entry, revision: EntryRevision) -> list[DiffRow]:
    """Public values next to the proposed ones (the revision's JSON data), field by field."""
    fields = entries.OPPORTUNITY_FIELDS if entry.kind == EntryKind.OPPORTUNITY else entries.PRODUCT_FIELDS
    current = entries.current_values(entry)
    proposed = revision.data or {}
    return [
        DiffRow(
            field=name,
            label=FIELD_LABELS.get(name, name),
            current=_display(name, current.get(name)),
            proposed=_display(name, proposed.get(name)),
            changed=_comparable(name, current.get(name)) != _comparable(name, proposed.get(name)),
            long_text=name in LONG_TEXT_FIELDS,
        )
        for name in fields
    ]


def _render_revision(revision: EntryRevision, return_form: CommentForm | None = None):
    entry = entries.get_entry(revision.entry_kind, revision.entry_id)
    return render_template(
        "admin/review_revision.html",
        revision=revision,
        entry=entry,
        diff=revision_diff(entry, revision),
        return_form=return_form or CommentForm(formdata=None),
    )


@bp.get("/revisions/<int:id>")
def review_revision(id: int):
    return _render_revision(entries.get_revision(id))


@bp.post("/revisions/<int:id>/approve")
def approve_revision(id: int):
    revision = entries.get_revision(id)
    try:
        entry = entries.approve_revision(_actor(), revision)
    except DomainError as exc:
        flash(exc.message, "danger")
        return redirect(url_for(".review_revision", id=id))
    flash(f"「{entry.display_name}」的修改已通过，公开内容已更新", "success")
    return redirect(url_for(".review", kind=revision.entry_kind))


@bp.post("/revisions/<int:id>/return")
def return_revision(id: int):
    revision = entries.get_revision(id)
    form = CommentForm()
    if form.validate_on_submit():
        try:
            entries.return_revision(_actor(), revision, form.comment.data)
        except ValidationFailed as exc:
            attach_errors(form, exc)
        except DomainError as exc:
            flash(exc.message, "danger")
            return redirect(url_for(".review_revision", id=id))
        else:
            flash("已退回修改申请，公开页面继续显示原内容", "success")
            return redirect(url_for(".review", kind=revision.entry_kind))
    return _render_revision(revision, return_form=form)


# ---------------------------------------------------------------- batches


@bp.get("/batches", endpoint="batches")
def batch_list():
    kind = request.args.get("kind", "")
    stmt = select(Batch).order_by(
        (Batch.status == BatchStatus.PUBLISHED), Batch.published_on.desc(), Batch.id.desc()
    )
    if kind in KINDS:
        stmt = stmt.where(Batch.kind == kind)
    else:
        kind = ""
    page = db.paginate(stmt, page=page_arg(), per_page=PER_PAGE, error_out=False)
    # entry_counts is one grouped query per batch, bounded by the page size.
    counts = {batch.id: batches.entry_counts(batch) for batch in page.items}
    return render_template("admin/batches.html", page=page, counts=counts, kind=kind)


@bp.route("/batches/new", methods=["GET", "POST"])
def new_batch():
    form = BatchForm()
    if request.method == "GET" and request.args.get("kind") in KINDS:
        form.kind.data = request.args["kind"]
    if form.validate_on_submit():
        try:
            batch = batches.create_batch(
                _actor(), form.kind.data, form.title.data, form.description.data or ""
            )
        except ValidationFailed as exc:
            attach_errors(form, exc)
        else:
            flash(f"已新建批次「{batch.title}」，现在可以将审核通过的条目加入该批次", "success")
            return redirect(url_for(".batch", id=batch.id))
    return render_template("admin/batch_form.html", form=form)


@bp.get("/batches/<int:id>", endpoint="batch")
def batch_detail(id: int):
    batch = batches.get_batch(id)
    model = entries.model_for(batch.kind)
    rows = db.session.scalars(
        select(model)
        .where(model.batch_id == batch.id)
        .options(*_list_options(model))
        .order_by(model.id)
    ).all()
    groups = {status: [e for e in rows if e.status == status] for status in EntryStatus}
    return render_template(
        "admin/batch.html",
        batch=batch,
        groups={status: items for status, items in groups.items() if items},
        approved=groups[EntryStatus.APPROVED],
    )


@bp.post("/batches/<int:id>/publish")
def publish_batch(id: int):
    batch = batches.get_batch(id)
    try:
        count = batches.publish_batch(_actor(), batch)
    except DomainError as exc:
        flash(exc.message, "danger")
    else:
        flash(f"已发布「{batch.title}」，{count}条进入公开清单", "success")
    return redirect(url_for(".batch", id=id))


# ---------------------------------------------------------------- organizations


@bp.get("/organizations", endpoint="organizations")
def organization_list():
    form = OrganizationFilterForm(formdata=request.args)
    form.validate()
    stmt = select(Organization).options(selectinload(Organization.users)).order_by(
        Organization.verified, Organization.pending_since.is_(None), Organization.created_at,
        Organization.id,
    )
    if form.verified.data in ("0", "1") and not form.verified.errors:
        stmt = stmt.where(Organization.verified.is_(form.verified.data == "1"))
    if form.kind.data and not form.kind.errors:
        stmt = stmt.where(Organization.kind == form.kind.data)
    q = (form.q.data or "").strip()
    if q and not form.q.errors:
        stmt = stmt.where(
            or_(
                Organization.name.contains(q, autoescape=True),
                Organization.credit_code.contains(q.upper(), autoescape=True),
            )
        )
    page = db.paginate(stmt, page=page_arg(), per_page=PER_PAGE, error_out=False)
    return render_template("admin/organizations.html", form=form, page=page)


def _render_organization(
    organization: Organization,
    revoke_form: RevokeForm | None = None,
    identity_form: IdentityReturnForm | None = None,
):
    opportunities = db.session.scalars(
        select(Opportunity)
        .where(Opportunity.publisher_id == organization.id)
        .order_by(Opportunity.created_at.desc())
    ).all()
    products = db.session.scalars(
        select(Product).where(Product.owner_id == organization.id).order_by(Product.created_at.desc())
    ).all()
    return render_template(
        "admin/organization.html",
        org=organization,
        users=sorted(organization.users, key=lambda u: u.id),
        opportunities=opportunities,
        products=products,
        revoke_form=revoke_form or RevokeForm(formdata=None),
        identity_form=identity_form or IdentityReturnForm(formdata=None),
        history=_history("organization", organization.id),
    )


@bp.get("/organizations/<int:id>", endpoint="organization")
def organization_detail(id: int):
    return _render_organization(accounts.get_organization(id))


@bp.post("/organizations/<int:id>/verify")
def verify_organization(id: int):
    organization = accounts.get_organization(id)
    try:
        accounts.verify_organization(_actor(), organization)
    except DomainError as exc:
        flash(exc.message, "danger")
    else:
        flash(f"已认证「{organization.name}」，该单位现在可以提交清单", "success")
    return redirect(url_for(".organization", id=id))


@bp.post("/organizations/<int:id>/identity/approve")
def approve_identity(id: int):
    organization = accounts.get_organization(id)
    try:
        accounts.approve_identity_change(_actor(), organization)
    except DomainError as exc:
        flash(exc.message, "danger")
    else:
        flash(f"变更已通过，公开页面现在显示「{organization.name}」", "success")
    return redirect(url_for(".organization", id=id))


@bp.post("/organizations/<int:id>/identity/return")
def return_identity(id: int):
    organization = accounts.get_organization(id)
    form = IdentityReturnForm()
    if form.validate_on_submit():
        try:
            accounts.return_identity_change(_actor(), organization, form.comment.data)
        except ValidationFailed as exc:
            attach_errors(form, exc)
        except DomainError as exc:
            flash(exc.message, "danger")
            return redirect(url_for(".organization", id=id))
        else:
            flash(f"已退回变更申请，公开页面继续显示「{organization.name}」", "success")
            return redirect(url_for(".organization", id=id))
    return _render_organization(organization, identity_form=form)


@bp.post("/organizations/<int:id>/revoke")
def revoke_verification(id: int):
    organization = accounts.get_organization(id)
    form = RevokeForm()
    if form.validate_on_submit():
        try:
            accounts.revoke_verification(_actor(), organization, form.comment.data)
        except ValidationFailed as exc:
            attach_errors(form, exc)
        except DomainError as exc:
            flash(exc.message, "danger")
            return redirect(url_for(".organization", id=id))
        else:
            flash(f"已取消「{organization.name}」的认证", "success")
            return redirect(url_for(".organization", id=id))
    return _render_organization(organization, revoke_form=form)


# ---------------------------------------------------------------- audit log


def _logged_choices(known: dict[str, str], column, placeholder: str) -> list[SelectChoice]:
    """Known values with labels, plus any other value that appears in the log."""
    seen = set(db.session.scalars(select(column).distinct()))
    extra = sorted(v for v in seen if v and v not in known)
    return choices_of([*known.items(), *((v, v) for v in extra)], placeholder)


@bp.get("/audit", endpoint="audit")
def audit_log():
    form = AuditFilterForm(formdata=request.args)
    form.object_type.choices = _logged_choices(AUDIT_OBJECT_TYPES, AuditEvent.object_type, "全部对象")
    form.action.choices = _logged_choices(ACTION_LABELS, AuditEvent.action, "全部操作")
    form.validate()
    filters: dict[str, Any] = {}
    if form.object_type.data and not form.object_type.errors:
        filters["object_type"] = form.object_type.data
    if form.object_id.data and not form.object_id.errors:
        filters["object_id"] = int(form.object_id.data)
    if form.action.data and not form.action.errors:
        filters["action"] = form.action.data
    unknown_actor = False
    if form.actor.data and not form.actor.errors:
        email = User.normalize_email(form.actor.data)
        actor_id = db.session.scalar(select(User.id).where(User.email == email))
        if actor_id is None:
            form.actor.errors.append("未找到该邮箱对应的用户")
            unknown_actor = True
        filters["actor_id"] = actor_id
    page = None
    if not unknown_actor:
        stmt = audit.audit_query(**filters).options(selectinload(AuditEvent.actor))
        page = db.paginate(stmt, page=page_arg(), per_page=AUDIT_PER_PAGE, error_out=False)
    staff_emails = db.session.scalars(
        select(User.email).where(User.role.in_([Role.ORGANIZER, Role.ADMIN])).order_by(User.email)
    ).all()
    return render_template("admin/audit.html", form=form, page=page, staff_emails=staff_emails)


# ---------------------------------------------------------------- users (admin only)


@bp.get("/users", endpoint="users")
@admin_required
def user_list():
    form = UserFilterForm(formdata=request.args)
    form.validate()
    stmt = select(User).options(selectinload(User.organization)).order_by(User.id)
    if form.role.data and not form.role.errors:
        stmt = stmt.where(User.role == form.role.data)
    q = (form.q.data or "").strip()
    if q and not form.q.errors:
        stmt = stmt.where(
            or_(User.name.contains(q, autoescape=True), User.email.contains(q.lower(), autoescape=True))
        )
    page = db.paginate(stmt, page=page_arg(), per_page=PER_PAGE, error_out=False)
    return render_template("admin/users.html", form=form, page=page)


def _set_active(id: int, active: bool):
    user = db.get_or_404(User, id)
    try:
        accounts.set_user_active(_actor(), user, active)
    except DomainError as exc:
        flash(exc.message, "danger")
    else:
        flash(f"已{'启用' if active else '停用'}账号 {user.email}", "success")
    return redirect(url_for(".users"))


@bp.route("/users/new", methods=["GET", "POST"])
@admin_required
def new_user():
    """An admin creates an organizer account (initial password or an emailed set-password link)."""
    form = StaffAccountForm()
    if form.validate_on_submit():
        try:
            user = accounts.create_staff_account(
                _actor(), form.email.data, form.name.data, form.phone.data or "", form.initial_password()
            )
        except ValidationFailed as exc:
            attach_errors(form, exc)
        else:
            how = "已设置初始密码" if form.initial_password() else "设置密码的邮件已发送"
            flash(f"已创建组织方账号 {user.email}（{how}）", "success")
            return redirect(url_for(".users", q=user.email))
    return render_template("admin/user_form.html", form=form)


@bp.post("/users/<int:id>/activate")
@admin_required
def activate_user(id: int):
    return _set_active(id, True)


@bp.post("/users/<int:id>/deactivate")
@admin_required
def deactivate_user(id: int):
    return _set_active(id, False)

"""Bulk import of the lists from spreadsheets: preview, then an all-or-nothing apply.

:func:`preview` reads a file (:mod:`~marketplace.services.spreadsheets`), checks every row with
the services' own rules (:func:`entries.clean_opportunity` / :func:`entries.clean_product`, the
organization checks of :mod:`~marketplace.services.accounts`, :mod:`marketplace.credit_code`) and
says what each row would do — 新增 / 更新 / 无变化 / 错误 — without writing anything. Rows are
matched by credit code for organizations and by organization (credit code or name) plus
title/name for entries. Near-duplicates of existing published entries are flagged with the
matching engine's ``similar`` (a warning, never a block).

:func:`apply` checks the file again and writes every row in one transaction: if any row is
invalid nothing is written (:class:`ImportValidationError` carries the :class:`Preview`). One
audit event records the counts. Index encoding is queued after the commit (the existing
encoding job), never run inline.

Who may import what (:func:`can_import`, asked by the pages and the CLI):

=============================  ===============================================================
members                        opportunities / products of their own organization, as drafts
                               (products only for enterprises, research institutes, services)
organizers and admins          all three kinds; entries for any registered organization; with
                               ``batch``: straight into an open batch of that kind, as approved
=============================  ===============================================================

What a matched entry row does (:data:`UPDATE_RULES`, read by :func:`_entry_update`):

* member, entry in 草稿 / 退回修改 / 已撤回: edited in place (a withdrawn one becomes a draft
  again, as :func:`entries.update_entry` does);
* member, entry 待审核 / 已入选待发布: refused for that row (withdraw it first);
* member, entry 已发布: the change becomes a pending :class:`EntryRevision` (the public row is
  untouched until an organizer approves it); the organization must be verified;
* organizer: edited directly whatever the status; a published entry's change is public at once
  (the search index is told, the encoding job queued, a pending revision discarded); with
  ``batch``, an entry that is not published joins the batch as approved.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from flask import current_app, has_app_context
from sqlalchemy import insert, select
from sqlalchemy.orm import selectinload

from marketplace import credit_code
from marketplace.extensions import db
from marketplace.models import (
    Batch,
    EntryKind,
    EntryRevision,
    EntryStatus,
    Opportunity,
    Organization,
    Product,
    RevisionStatus,
    User,
)
from marketplace.models.base import utcnow
from marketplace.services import audit, entries, index_sync
from marketplace.services import spreadsheets as sheets
from marketplace.services.accounts import PHONE_PATTERN, OrganizationData, _check_organization
from marketplace.services.errors import DomainError, InvalidTransition, PermissionDenied, ValidationFailed
from marketplace.services.spreadsheets import (
    OPPORTUNITIES,
    ORGANIZATIONS,
    PRODUCTS,
    CellProblem,
    ImportFileError,
    Sheet,
    normalize_kind,
)

__all__ = [
    "ACTIONS",
    "ACTION_LABELS",
    "CellError",
    "ImportFileError",
    "ImportSummary",
    "ImportValidationError",
    "Preview",
    "PreviewRow",
    "SimilarEntry",
    "apply",
    "can_import",
    "preview",
]

CREATE, UPDATE, UNCHANGED, ERROR = "create", "update", "unchanged", "error"
ACTIONS: tuple[str, ...] = (CREATE, UPDATE, UNCHANGED, ERROR)
ACTION_LABELS = {CREATE: "新增", UPDATE: "更新", UNCHANGED: "无变化", ERROR: "错误"}
#: Rows of one file checked for near-duplicates (the rest are not; ``Preview.similar_checked``).
DEFAULT_SIMILAR_MAX_ROWS = 1000

ENTRY_KIND = {OPPORTUNITIES: EntryKind.OPPORTUNITY, PRODUCTS: EntryKind.PRODUCT}

#: (who, status of the matched entry) → what an import does with a changed row.
#: ``edit``: in place; ``revision``: a pending revision; ``refuse``: an error for that row.
UPDATE_RULES: dict[tuple[str, str], str] = {
    **{("member", s): "edit" for s in entries.EDITABLE_IN_PLACE},
    ("member", EntryStatus.SUBMITTED): "refuse",
    ("member", EntryStatus.APPROVED): "refuse",
    ("member", EntryStatus.PUBLISHED): "revision",
    **{("organizer", s.value): "edit" for s in EntryStatus},
}


# ---------------------------------------------------------------- results


@dataclass
class CellError:
    """A problem of one cell: spreadsheet row number, Chinese column header, message."""

    row: int
    column: str
    message: str

    def __str__(self) -> str:
        where = f"第{self.row}行" + (f"「{self.column}」" if self.column else "")
        return f"{where}：{self.message}"


@dataclass
class SimilarEntry:
    """An existing published entry that a row nearly duplicates."""

    kind: str
    id: int
    title: str
    organization: str
    score: float


@dataclass
class PreviewRow:
    row: int
    action: str
    title: str = ""
    organization: str = ""
    #: The matched existing row (entry or organization), if any.
    existing_id: int | None = None
    #: Headers of the columns that change (for 更新).
    changes: list[str] = field(default_factory=list)
    errors: list[CellError] = field(default_factory=list)
    similar: list[SimilarEntry] = field(default_factory=list)
    #: What the update does beyond the values (提交修改审核, 加入批次 …).
    note: str = ""

    @property
    def action_label(self) -> str:
        return ACTION_LABELS[self.action]


@dataclass
class Preview:
    """What an import would do, row by row. JSON-safe through :meth:`to_dict`."""

    kind: str
    filename: str
    rows: list[PreviewRow] = field(default_factory=list)
    file_errors: list[str] = field(default_factory=list)
    batch_id: int | None = None
    #: False when the file had more rows than were checked for near-duplicates.
    similar_checked: bool = True

    @property
    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(ACTIONS, 0)
        for row in self.rows:
            out[row.action] += 1
        return out

    @property
    def errors(self) -> list[CellError]:
        return [e for row in self.rows for e in row.errors]

    @property
    def ok(self) -> bool:
        """Nothing wrong with the file or any row: it may be applied."""
        return not self.file_errors and not any(r.action == ERROR for r in self.rows)

    @property
    def kind_label(self) -> str:
        return sheets.KIND_LABELS[self.kind]

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "filename": self.filename,
            "batch_id": self.batch_id,
            "similar_checked": self.similar_checked,
            "file_errors": list(self.file_errors),
            "counts": self.counts,
            "ok": self.ok,
            "rows": [asdict(r) for r in self.rows],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preview:
        rows = []
        for r in data.get("rows", []):
            r = dict(r)
            r["errors"] = [CellError(**e) for e in r.get("errors", [])]
            r["similar"] = [SimilarEntry(**s) for s in r.get("similar", [])]
            rows.append(PreviewRow(**r))
        return cls(
            kind=data["kind"],
            filename=data.get("filename", ""),
            rows=rows,
            file_errors=list(data.get("file_errors", [])),
            batch_id=data.get("batch_id"),
            similar_checked=data.get("similar_checked", True),
        )


@dataclass
class ImportSummary:
    """What :func:`apply` wrote."""

    kind: str
    filename: str
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    #: Of ``updated``: changes to published entries that now wait for review.
    revisions: int = 0
    batch_id: int | None = None
    created_ids: list[int] = field(default_factory=list)
    updated_ids: list[int] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        return {CREATE: self.created, UPDATE: self.updated, UNCHANGED: self.unchanged, ERROR: 0}

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "counts": self.counts}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImportSummary:
        data = {k: v for k, v in data.items() if k != "counts"}
        return cls(**data)

    def describe(self) -> str:
        text = f"新增{self.created}条，更新{self.updated}条，无变化{self.unchanged}条"
        if self.revisions:
            text += f"（其中{self.revisions}条已发布条目的修改待审核）"
        return text


class ImportValidationError(DomainError):
    """The file or some rows are invalid: nothing was written. ``preview`` says what."""

    def __init__(self, preview: Preview):
        problems = list(preview.file_errors) or [str(e) for e in preview.errors]
        head = "；".join(problems[:3]) + ("……" if len(problems) > 3 else "")
        if preview.file_errors:
            message = f"文件无法导入：{head}"
        else:
            message = f"共{len(problems)}处错误，未写入任何更改：{head}"
        super().__init__(message)
        self.preview = preview


class _NoProgress:
    def start(self, total: int | None, message: str = "") -> None:
        pass

    def advance(self, n: int = 1, message: str | None = None) -> None:
        pass

    def set_message(self, message: str) -> None:
        pass


# ---------------------------------------------------------------- permissions


def can_import(user: User | None, kind: str, batch: Batch | None = None) -> bool:
    """Whether ``user`` may import ``kind`` (into ``batch``, as approved entries)."""
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    try:
        kind = normalize_kind(kind)
    except ImportFileError:
        return False
    if user.is_staff:
        if batch is None:
            return True
        return kind != ORGANIZATIONS and batch.kind == ENTRY_KIND[kind] and batch.is_open
    if kind == ORGANIZATIONS or batch is not None or user.organization is None:
        return False
    return kind == OPPORTUNITIES or user.organization.can_own_products


def _require_import(user: User | None, kind: str, batch: Batch | None) -> None:
    if can_import(user, kind, batch):
        return
    if batch is not None and user is not None and getattr(user, "is_staff", False):
        if not batch.is_open:
            raise InvalidTransition("该批次已发布，不能再导入条目")
        raise DomainError("请选择同类清单的批次")
    if batch is not None:
        raise PermissionDenied("只有组织方可以直接导入到批次")
    if kind == ORGANIZATIONS:
        raise PermissionDenied("只有组织方可以导入单位名录")
    raise PermissionDenied("没有导入该清单的权限")


# ---------------------------------------------------------------- entry points


def preview(kind: str, data: bytes, filename: str, *, actor: User, batch: Batch | None = None,
            progress=None) -> Preview:
    """What importing the file would do (nothing is written). A file that cannot be read at all
    gives a preview with ``file_errors`` and no rows."""
    kind = normalize_kind(kind)
    _require_import(actor, kind, batch)
    return _plan(kind, data, filename, actor, batch, progress or _NoProgress(), check_similar=True).preview


def apply(kind: str, data: bytes, filename: str, *, actor: User, batch: Batch | None = None,
          progress=None, commit: bool = True) -> ImportSummary:
    """Check the file again and write every row in one transaction (all or nothing).

    Raises :class:`ImportValidationError` (nothing written) when the file or any row is
    invalid. ``commit=False`` leaves the commit to the caller (a tracked job commits the work
    together with its "succeeded"); on any error the session is rolled back.
    """
    kind = normalize_kind(kind)
    _require_import(actor, kind, batch)
    progress = progress or _NoProgress()
    plan = _plan(kind, data, filename, actor, batch, progress, check_similar=False)
    if not plan.preview.ok:
        raise ImportValidationError(plan.preview)
    try:
        summary = _write(kind, plan, actor, batch, progress)
        if commit:
            db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    return summary


# ---------------------------------------------------------------- planning


@dataclass
class _Step:
    """One valid row and what writing it means."""

    row: PreviewRow
    values: dict[str, Any]
    existing: Any = None
    owner: Organization | None = None
    #: ``edit`` / ``revision`` / ``create`` (entries), or ``create`` / ``edit`` (organizations).
    mode: str = CREATE
    join_batch: bool = False


@dataclass
class _Plan:
    preview: Preview
    steps: list[_Step] = field(default_factory=list)


def _config(key: str, default: int) -> int:
    if not has_app_context():
        return default
    return int(current_app.config.get(key) or default)


def _plan(kind: str, data: bytes, filename: str, actor: User, batch: Batch | None, progress,
          check_similar: bool) -> _Plan:
    result = _Plan(Preview(kind=kind, filename=filename, batch_id=batch.id if batch else None))
    sheet = sheets.sheet_for(kind)
    progress.set_message("读取文件…")
    try:
        table = sheets.read_table(kind, data, filename)
    except ImportFileError as exc:
        result.preview.file_errors.append(exc.message)
        return result
    if not table.rows:
        result.preview.file_errors.append("文件中没有数据行：请从第2行起填写（第1行为列名）")
        return result
    progress.start(len(table.rows), "逐行校验…")
    parsed = [(number, *_parse_row(sheet, number, raw)) for number, raw in table.rows]
    if kind == ORGANIZATIONS:
        _plan_organizations(sheet, parsed, result, progress)
    else:
        _plan_entries(kind, sheet, parsed, actor, batch, result, progress)
    if check_similar:
        _flag_similar(kind, result, progress)
    return result


def _parse_row(sheet: Sheet, number: int, raw: dict[str, Any]) -> tuple[dict[str, Any], list[CellError]]:
    values: dict[str, Any] = {}
    errors: list[CellError] = []
    for column in sheet.columns:
        try:
            value = sheets.parse_cell(column, raw.get(column.header))
        except CellProblem as exc:
            errors.append(CellError(number, column.header, str(exc)))
            value = None
        if column.required and value in (None, "", []) and not any(e.column == column.header for e in errors):
            errors.append(CellError(number, column.header, f"请填写{column.header}"))
        values[column.key] = value
    if _is_example(sheet, values):
        example = "这是模板中的示例行，请删除或替换为实际数据"
        errors.insert(0, CellError(number, sheet.columns[0].header, example))
    return values, errors


def _is_example(sheet: Sheet, values: dict[str, Any]) -> bool:
    """The template's example row left in the file (its text columns unchanged)."""
    keys = [c.key for c in sheet.columns
            if c.type in (sheets.TEXT, sheets.LONGTEXT) and sheet.example.get(c.key)]
    return all(values.get(k) == sheet.example[k] for k in keys)


def _service_errors(sheet: Sheet, number: int, exc: ValidationFailed,
                    known: list[CellError]) -> list[CellError]:
    """A service's field errors as cell errors (skipping columns that already have one)."""
    seen = {e.column for e in known}
    out = []
    for key, message in exc.errors.items():
        header = sheet.header_of(key)
        if header not in seen:
            out.append(CellError(number, header, message))
    return out


def _phone_error(sheet: Sheet, number: int, values: dict[str, Any]) -> list[CellError]:
    phone = values.get("contact_phone") or ""
    if phone and not PHONE_PATTERN.match(phone):
        return [CellError(number, sheet.header_of("contact_phone"), "请输入有效的电话号码")]
    return []


def _finish_row(result: _Plan, row: PreviewRow, step: _Step | None, progress) -> None:
    if row.errors:
        row.action = ERROR
    result.preview.rows.append(row)
    if step is not None and row.action != ERROR:
        result.steps.append(step)
    progress.advance(1)


# ---- entries


def _owners(parsed: list, actor: User) -> tuple[dict[str, Organization], dict[str, Organization]]:
    codes = {credit_code.normalize(v.get("org_credit_code") or "") for _, v, _ in parsed} - {""}
    names = {(v.get("org_name") or "").strip() for _, v, _ in parsed} - {""}
    by_code: dict[str, Organization] = {}
    by_name: dict[str, Organization] = {}
    for chunk in _chunks(sorted(codes)):
        for org in db.session.scalars(select(Organization).where(Organization.credit_code.in_(chunk))):
            by_code[org.credit_code] = org
    for chunk in _chunks(sorted(names)):
        for org in db.session.scalars(select(Organization).where(Organization.name.in_(chunk))):
            by_name[org.name] = org
    if actor.organization is not None:
        by_code.setdefault(actor.organization.credit_code, actor.organization)
        by_name.setdefault(actor.organization.name, actor.organization)
    return by_code, by_name


def _chunks(values: list, size: int = 500):
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _resolve_owner(sheet: Sheet, kind: str, number: int, values: dict, actor: User,
                   by_code: dict, by_name: dict) -> tuple[Organization | None, list[CellError]]:
    name_header, code_header = sheet.header_of("org_name"), sheet.header_of("org_credit_code")
    code = credit_code.normalize(values.get("org_credit_code") or "")
    name = (values.get("org_name") or "").strip()
    owner = None
    if code:
        owner = by_code.get(code)
        if owner is None:
            try:
                credit_code.validate(code)
            except credit_code.CreditCodeError as exc:
                return None, [CellError(number, code_header, str(exc))]
            return None, [CellError(number, code_header,
                                    "未找到使用该信用代码的已注册单位，请先导入或注册该单位")]
        if name and name != owner.name:
            return None, [CellError(number, name_header, f"与信用代码对应的单位「{owner.name}」不一致")]
    elif name:
        owner = by_name.get(name)
        if owner is None:
            return None, [CellError(number, name_header, "未找到该单位，请核对名称或填写统一社会信用代码")]
    elif not actor.is_staff:
        owner = actor.organization
    else:
        return None, [CellError(number, name_header, "请填写单位名称或统一社会信用代码")]
    if not actor.is_staff and owner.id != actor.organization_id:
        return None, [CellError(number, name_header, "只能导入本单位的条目")]
    if kind == PRODUCTS and not owner.can_own_products:
        return None, [CellError(number, name_header,
                                f"「{owner.name}」是{owner.kind_label}，只有企业、科研院所和服务机构可以发布产品")]
    return owner, []


def _existing_entries(kind: str, owners: set[int]) -> dict[tuple[int, str], Any]:
    """Existing entries of these organizations by (owner id, title/name); the newest wins."""
    model = entries.model_for(ENTRY_KIND[kind])
    owner_col = Opportunity.publisher_id if model is Opportunity else Product.owner_id
    title_col = Opportunity.title if model is Opportunity else Product.name
    options = [selectinload(Product.field_rows), selectinload(Product.tag_rows)] if model is Product else []
    found: dict[tuple[int, str], Any] = {}
    for chunk in _chunks(sorted(owners)):
        stmt = select(model).where(owner_col.in_(chunk)).options(*options).order_by(model.id)
        for entry in db.session.scalars(stmt):
            key = (entry.owner_id, getattr(entry, title_col.key))
            previous = found.get(key)
            withdrawn = entry.status == EntryStatus.WITHDRAWN
            if previous is None or previous.status == EntryStatus.WITHDRAWN or not withdrawn:
                found[key] = entry
    return found


def _service_data(kind: str, values: dict[str, Any]) -> dict[str, Any]:
    fields = entries.OPPORTUNITY_FIELDS if kind == OPPORTUNITIES else entries.PRODUCT_FIELDS
    data = {f: values.get(f) for f in fields}
    data["region_county"] = data.get("region_county") or None
    return data


def _comparable(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return sorted(value)
    if value == "":
        return None
    return value


def _changed_headers(sheet: Sheet, kind: str, old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    fields = entries.OPPORTUNITY_FIELDS if kind == OPPORTUNITIES else entries.PRODUCT_FIELDS
    return [sheet.header_of(f) for f in fields if _comparable(old.get(f)) != _comparable(new.get(f))]


def _plan_entries(kind: str, sheet: Sheet, parsed: list, actor: User, batch: Batch | None,
                  result: _Plan, progress) -> None:
    by_code, by_name = _owners(parsed, actor)
    owner_ids = {o.id for o in (*by_code.values(), *by_name.values())}
    existing_by_key = _existing_entries(kind, owner_ids)
    title_key = "title" if kind == OPPORTUNITIES else "name"
    title_header = sheet.header_of(title_key)
    seen: dict[tuple[int, str], int] = {}
    who = "organizer" if actor.is_staff else "member"
    for number, values, errors in parsed:
        title = (values.get(title_key) or "").strip()
        row = PreviewRow(row=number, action=CREATE, title=title, errors=list(errors))
        owner, owner_errors = _resolve_owner(sheet, kind, number, values, actor, by_code, by_name)
        row.errors.extend(owner_errors)
        step = None
        if owner is not None:
            row.organization = owner.name
            key = (owner.id, title)
            if title and key in seen:
                row.errors.append(
                    CellError(number, title_header, f"与第{seen[key]}行重复（同一单位的同名条目）")
                )
            seen.setdefault(key, number)
            existing = existing_by_key.get(key) if title else None
            data = _service_data(kind, values)
            today = None
            if existing is not None and kind == OPPORTUNITIES and data.get("deadline") is not None \
                    and existing.deadline == data["deadline"]:
                today = existing.deadline  # an unchanged past deadline is not a new mistake
            try:
                cleaned = (entries.clean_opportunity(data, today=today) if kind == OPPORTUNITIES
                           else entries.clean_product(data))
            except ValidationFailed as exc:
                row.errors.extend(_service_errors(sheet, number, exc, row.errors))
                cleaned = None
            if kind == OPPORTUNITIES:
                known = {e.column for e in row.errors}
                row.errors.extend(e for e in _phone_error(sheet, number, data) if e.column not in known)
            if cleaned is not None and not row.errors:
                step = _entry_step(kind, sheet, row, cleaned, existing, owner, actor, batch, who)
        _finish_row(result, row, step, progress)


def _entry_step(kind: str, sheet: Sheet, row: PreviewRow, cleaned: dict, existing: Any,
                owner: Organization, actor: User, batch: Batch | None, who: str) -> _Step | None:
    if existing is None:
        row.action = CREATE
        row.note = f"加入「{batch.title}」（已入选）" if batch is not None else "新建为草稿"
        return _Step(row, cleaned, None, owner, CREATE, join_batch=batch is not None)
    row.existing_id = existing.id
    compare_to = entries.current_values(existing)
    if who == "member" and existing.status == EntryStatus.PUBLISHED:
        compare_to = entries.editable_values(existing)  # a pending change counts as the current one
    row.changes = _changed_headers(sheet, kind, compare_to, cleaned)
    join = (batch is not None and existing.status != EntryStatus.PUBLISHED
            and not (existing.batch_id == batch.id and existing.status == EntryStatus.APPROVED))
    if not row.changes and not join:
        row.action = UNCHANGED
        return None
    rule = UPDATE_RULES.get((who, existing.status), "refuse")
    title_header = sheet.header_of("title" if kind == OPPORTUNITIES else "name")
    if rule == "refuse":
        row.errors.append(CellError(row.row, title_header,
                                    f"该条目「{existing.status_label}」，不能通过导入修改；如需修改，请先撤回"))
        return None
    if rule == "revision" and not owner.verified:
        row.errors.append(CellError(row.row, title_header, "本单位尚未通过组织方认证，不能修改已发布条目"))
        return None
    row.action = UPDATE
    if join:
        row.changes.append("批次")
        row.note = f"加入「{batch.title}」（已入选）"
    elif rule == "revision":
        row.note = "已发布条目：修改提交审核，公开页面仍显示原内容"
    elif existing.status == EntryStatus.PUBLISHED:
        row.note = "已发布条目：公开内容直接更新"
    elif existing.status == EntryStatus.WITHDRAWN:
        row.note = "已撤回条目：修改后恢复为草稿"
    return _Step(row, cleaned, existing, owner, rule, join_batch=join)


# ---- organizations


_ORG_FIELDS = ("name", "kind", "region_city", "region_county", "contact_name", "contact_phone",
               "contact_email", "address", "intro")


def _plan_organizations(sheet: Sheet, parsed: list, result: _Plan, progress) -> None:
    codes = {credit_code.normalize(v.get("credit_code") or "") for _, v, _ in parsed} - {""}
    existing_by_code: dict[str, Organization] = {}
    for chunk in _chunks(sorted(codes)):
        for org in db.session.scalars(select(Organization).where(Organization.credit_code.in_(chunk))):
            existing_by_code[org.credit_code] = org
    seen_codes: dict[str, int] = {}
    seen_names: dict[str, int] = {}
    for number, values, errors in parsed:
        name = (values.get("name") or "").strip()
        row = PreviewRow(row=number, action=CREATE, title=name, organization=name, errors=list(errors))
        code = credit_code.normalize(values.get("credit_code") or "")
        existing = existing_by_code.get(code)
        step = None
        if code and code in seen_codes:
            row.errors.append(CellError(number, "统一社会信用代码", f"与第{seen_codes[code]}行重复"))
        if name and name in seen_names:
            row.errors.append(CellError(number, "单位名称", f"与第{seen_names[name]}行重复"))
        seen_codes.setdefault(code, number)
        seen_names.setdefault(name, number)
        data = OrganizationData(
            name=name,
            kind=values.get("kind") or "",
            credit_code=code,
            region_city=values.get("region_city") or "",
            region_county=values.get("region_county") or None,
            contact_name=values.get("contact_name") or "",
            contact_phone=values.get("contact_phone") or "",
            contact_email=values.get("contact_email") or "",
            address=values.get("address") or "",
            intro=values.get("intro") or "",
        )
        known = {e.column for e in row.errors}
        for key, message in _check_organization(data, exclude_id=existing.id if existing else None).items():
            header = sheet.header_of(key)
            if header not in known:
                row.errors.append(CellError(number, header, message))
                known.add(header)
        if data.contact_phone and "联系电话" not in known and not PHONE_PATTERN.match(data.contact_phone):
            row.errors.append(CellError(number, "联系电话", "请输入有效的电话号码"))
        if data.contact_email and "联系邮箱" not in known and not _valid_email(data.contact_email):
            row.errors.append(CellError(number, "联系邮箱", "邮箱格式不正确"))
        if not row.errors:
            values = {f: getattr(data, f) for f in _ORG_FIELDS}
            values["credit_code"] = data.credit_code
            if existing is None:
                row.note = "新增单位（待认证）"
                step = _Step(row, values, None, None, CREATE)
            else:
                row.existing_id = existing.id
                row.changes = [sheet.header_of(f) for f in _ORG_FIELDS
                               if _comparable(getattr(existing, f)) != _comparable(values[f])]
                row.action = UPDATE if row.changes else UNCHANGED
                step = _Step(row, values, existing, None, "edit") if row.changes else None
        _finish_row(result, row, step, progress)


def _valid_email(value: str) -> bool:
    """The email rule of the forms (WTForms ``Email`` is email_validator without DNS)."""
    from email_validator import EmailNotValidError, validate_email

    try:
        validate_email(value, check_deliverability=False)
    except EmailNotValidError:
        return False
    return True


# ---- near-duplicates


def _flag_similar(kind: str, result: _Plan, progress) -> None:
    """Flag rows that nearly duplicate existing published entries (matching's ``similar``)."""
    if kind == ORGANIZATIONS:
        return
    from marketplace.services import matching

    limit = _config("IMPORT_SIMILAR_MAX_ROWS", DEFAULT_SIMILAR_MAX_ROWS)
    candidates = [s for s in result.steps if s.row.action in (CREATE, UPDATE)]
    if len(candidates) > limit:
        result.preview.similar_checked = False
        candidates = candidates[:limit]
    entry_kind = ENTRY_KIND[kind]
    progress.start(len(candidates), "检查疑似重复…")
    for step in candidates:
        progress.advance(1)
        probe = _transient_entry(kind, step)
        for match in matching.similar(entry_kind, probe):
            if step.existing is not None and match.entry.id == step.existing.id:
                continue
            step.row.similar.append(
                SimilarEntry(entry_kind.value, match.entry.id, match.entry.display_name,
                             match.entry.owner.name, round(float(match.hit.score), 3))
            )


def _transient_entry(kind: str, step: _Step):
    """An unsaved entry carrying the row's values (the query of ``similar``)."""
    from marketplace.models import ProductField, ProductTag
    from marketplace.reference import reference

    values = step.values
    entry_id = step.existing.id if step.existing is not None else 0  # 0: no row has it
    if kind == OPPORTUNITIES:
        return Opportunity(
            id=entry_id, title=values["title"], description=values["description"],
            field_category=values["field_category"], field_area=reference().area_of(values["field_category"]),
            region_city=values["region_city"], region_county=values["region_county"],
        )
    product = Product(
        id=entry_id, name=values["name"], description=values["description"], cases=values["cases"],
        maturity=values["maturity"], region_city=values["region_city"], region_county=values["region_county"],
    )
    product.field_rows = [ProductField(category=c, area=reference().area_of(c)) for c in values["fields"]]
    product.tag_rows = [ProductTag(tag=t) for t in values["tags"]]
    return product


# ---------------------------------------------------------------- writing


def _write(kind: str, plan: _Plan, actor: User, batch: Batch | None, progress) -> ImportSummary:
    """Write the planned rows (updates through the ORM, new entries as bulk INSERTs) without
    committing."""
    preview = plan.preview
    summary = ImportSummary(kind=kind, filename=preview.filename, batch_id=preview.batch_id)
    summary.unchanged = preview.counts[UNCHANGED]
    progress.start(len(plan.steps), "写入数据库…")
    public_changed = False
    created_orgs: list[Organization] = []
    new_entries = []
    for step in plan.steps:
        if kind == ORGANIZATIONS:
            public_changed |= _write_organization(step, created_orgs)
        elif step.existing is None:
            new_entries.append(step)
            continue
        else:
            public_changed |= _write_entry(step, actor, batch, summary)
        progress.advance(1)
    db.session.flush()
    if new_entries:
        summary.created_ids = _insert_entries(kind, new_entries, actor, batch)
        progress.advance(len(new_entries))
    else:
        summary.created_ids = [org.id for org in created_orgs]
    summary.updated_ids = [s.existing.id for s in plan.steps if s.existing is not None]
    summary.created = len(summary.created_ids)
    summary.updated = len(summary.updated_ids)
    if public_changed:
        index_sync.bump()
        if kind != ORGANIZATIONS:
            from marketplace.services.matching import request_encoding

            request_encoding()  # queued once this commits; never encoded inline
    audit.record(actor, f"import.{kind}", _audit_object(actor, batch),
                 f"导入{sheets.KIND_LABELS[kind]}「{preview.filename}」：{summary.describe()}")
    db.session.flush()
    progress.set_message(summary.describe())
    return summary


def _insert_entries(kind: str, steps: list[_Step], actor: User, batch: Batch | None) -> list[int]:
    """New entries as multi-row INSERTs (thousands of rows: the ORM unit of work would spend
    most of the import's time building objects). Returns their ids in row order."""
    model = entries.model_for(ENTRY_KIND[kind])
    owner_key = "publisher_id" if model is Opportunity else "owner_id"
    now = utcnow()
    rows = []
    for step in steps:
        approved = step.join_batch and batch is not None
        row = {k: v for k, v in step.values.items() if k not in ("fields", "tags")}
        row.update({
            owner_key: step.owner.id,
            "created_by_id": actor.id,
            "status": EntryStatus.APPROVED.value if approved else EntryStatus.DRAFT.value,
            "batch_id": batch.id if approved else None,
            "submitted_at": now if approved else None,
            "created_at": now,
            "updated_at": now,
        })
        rows.append(row)
    ids: list[int] = []
    stmt = insert(model).returning(model.id, sort_by_parameter_order=True)
    for chunk in _chunks(rows, 1000):
        ids.extend(db.session.scalars(stmt, chunk))
    if model is Product:
        from marketplace.models import ProductField, ProductTag
        from marketplace.reference import reference

        ref = reference()
        fields = [{"product_id": i, "category": c, "area": ref.area_of(c)}
                  for i, step in zip(ids, steps, strict=True) for c in step.values["fields"]]
        tags = [{"product_id": i, "tag": t} for i, step in zip(ids, steps, strict=True)
                for t in step.values["tags"]]
        for table, values in ((ProductField, fields), (ProductTag, tags)):
            for chunk in _chunks(values, 2000):
                db.session.execute(insert(table), chunk)
    return ids


def _audit_object(actor: User, batch: Batch | None) -> object:
    if batch is not None:
        return batch
    return actor.organization if actor.organization is not None else actor


def _write_organization(step: _Step, created: list[Organization]) -> bool:
    values = step.values
    if step.existing is None:
        org = Organization(verified=False, **values)
        db.session.add(org)
        created.append(org)
        return False
    org = step.existing
    renamed = org.name != values["name"]
    for key, value in values.items():
        if key != "credit_code":
            setattr(org, key, value)
    if renamed:  # an organizer's rename applies at once (as in accounts.update_organization)
        org.pending_name = None
        if org.pending_credit_code is None:
            org.pending_since = None
    return renamed


def _write_entry(step: _Step, actor: User, batch: Batch | None, summary: ImportSummary) -> bool:
    """Apply a row to its matched entry (see :data:`UPDATE_RULES`); True if public content changed."""
    entry = step.existing
    if step.mode == "revision":
        revision = entries.pending_revision(entry)
        if revision is None:
            revision = EntryRevision(entry_kind=entry.kind, entry_id=entry.id, data={})
            db.session.add(revision)
        revision.data = entries._to_json(step.values)
        revision.status = RevisionStatus.SUBMITTED
        revision.review_comment = None
        revision.created_by_id = actor.id
        revision.updated_at = utcnow()
        summary.revisions += 1
        return False
    was_public = entry.status == EntryStatus.PUBLISHED
    if entry.status == EntryStatus.WITHDRAWN and not step.join_batch:
        entry.status = EntryStatus.DRAFT
        entry.batch_id = None
    if step.join_batch and batch is not None:
        entry.status = EntryStatus.APPROVED
        entry.batch_id = batch.id
        entry.review_comment = None
        entry.submitted_at = entry.submitted_at or utcnow()
    if step.row.changes and step.row.changes != ["批次"]:
        entries._apply(entry, step.values)
    if was_public and actor.is_staff:
        revision = entries.pending_revision(entry)
        if revision is not None:
            revision.status = RevisionStatus.DISCARDED  # superseded by the organizer's import
    return was_public


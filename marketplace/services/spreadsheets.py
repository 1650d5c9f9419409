"""Spreadsheets of the three lists: column specs, XLSX templates, reading and writing files.

One :class:`Sheet` per import kind (``opportunities``, ``products``, ``organizations``) says
which Chinese header maps to which service field, in the order of the entry forms, whether it
is required, its type and its allowed values. The same spec drives

* :func:`template_workbook` — the XLSX template (comments on the headers, drop-downs fed by a
  hidden sheet of lists, one Jiangxi example row, frozen header row);
* :func:`read_table` — reading an uploaded XLSX (python-calamine) or CSV (UTF-8 with or
  without BOM, or GB18030) into rows of raw cell values, after the file-level checks;
* :func:`write_xlsx` / :func:`write_csv` — exports in exactly the template's columns, so that an
  exported file imports back with every row unchanged.

The checks on a file happen before it is parsed (limits from the config, documented in
docs/import.md): ``IMPORT_MAX_BYTES`` (10 MB) on the bytes; for XLSX the zip itself (the
declared and the real uncompressed size, the compression ratio of each member — zip bombs —,
external links, formulas in data cells, merged cells, and ``IMPORT_MAX_ROWS`` (20,000) counted
in the sheet's XML before calamine parses it); for CSV the row limit while the rows are read.
Nothing is validated before the whole file passed. Every problem is an :class:`ImportFileError` with a
Chinese message.

The business rules of the values (lengths, categories, regions, budgets, credit codes) are
not here: :mod:`marketplace.services.imports` hands the values to the entry and organization
services' own validation.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from xml.etree import ElementTree

from flask import current_app, has_app_context

from marketplace.credit_code import make_code
from marketplace.models import (
    CooperationMode,
    EntryKind,
    Maturity,
    Opportunity,
    Organization,
    OrgKind,
    Product,
    Tier,
)
from marketplace.reference import reference
from marketplace.services.errors import DomainError

OPPORTUNITIES = "opportunities"
PRODUCTS = "products"
ORGANIZATIONS = "organizations"
KINDS: tuple[str, ...] = (OPPORTUNITIES, PRODUCTS, ORGANIZATIONS)
#: ``EntryKind`` values (and the plural names) → the import kind.
_KIND_ALIASES = {
    EntryKind.OPPORTUNITY.value: OPPORTUNITIES,
    EntryKind.PRODUCT.value: PRODUCTS,
    "organization": ORGANIZATIONS,
}
KIND_LABELS = {OPPORTUNITIES: "机会清单", PRODUCTS: "产品清单", ORGANIZATIONS: "单位名录"}

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_ROWS = 20_000
#: Total uncompressed size of an XLSX (all members) and the largest ratio of one member.
DEFAULT_MAX_UNCOMPRESSED = 200 * 1024 * 1024
DEFAULT_MAX_RATIO = 200
_RATIO_FLOOR = 1024 * 1024  # small members may compress as well as they like

SEPARATORS = re.compile(r"[、,，;；\n]+")
JOINER = "、"
LISTS_SHEET = "选项"
EXCEL_EPOCH = date(1899, 12, 30)


class ImportFileError(DomainError):
    """The file cannot be read as a list of this kind (the message says why, in Chinese)."""

    status_code = 400


# ---------------------------------------------------------------- column specs

TEXT, LONGTEXT, CHOICE, MULTI, DATE, MONEY, CITY, COUNTY, CODE = (
    "text", "longtext", "choice", "multi", "date", "money", "city", "county", "code",
)


@dataclass(frozen=True)
class Column:
    """One column of a sheet: its Chinese header and the service field it carries."""

    header: str
    key: str
    type: str = TEXT
    required: bool = False
    comment: str = ""
    #: ``(code, label)`` pairs; cells may hold either (labels are what the template shows).
    choices: Callable[[], Sequence[tuple[str, str]]] | None = None
    #: The database column length (checked on import: PostgreSQL would refuse longer text).
    max_length: int | None = None
    width: int = 16

    def choice_map(self) -> dict[str, str]:
        """Label or code → code."""
        pairs = self.choices() if self.choices else ()
        out = {code: code for code, _ in pairs}
        out.update({label: code for code, label in pairs})
        return out

    def label_of(self, code: str) -> str:
        pairs = dict(self.choices()) if self.choices else {}
        return pairs.get(code, code)


@dataclass(frozen=True)
class Sheet:
    kind: str
    title: str
    columns: tuple[Column, ...]
    example: dict[str, Any]

    @property
    def headers(self) -> list[str]:
        return [c.header for c in self.columns]

    def column(self, key: str) -> Column:
        return next(c for c in self.columns if c.key == key)

    def header_of(self, key: str) -> str:
        """The Chinese header of a service field (for error messages)."""
        for column in self.columns:
            if column.key == key:
                return column.header
        return {"field_category": "应用领域"}.get(key, key)


def _length(model: type, name: str) -> int | None:
    return getattr(model.__table__.c[name].type, "length", None)


def _categories() -> list[tuple[str, str]]:
    return [(c, c) for c in reference().categories]


def _tags() -> list[tuple[str, str]]:
    return [(t, t) for t in reference().tags]


def _cities() -> list[tuple[str, str]]:
    return [(c, c) for c in reference().cities]


def _owner_columns(model: type, owner_label: str) -> tuple[Column, Column]:
    return (
        Column(
            f"{owner_label}名称", "org_name", max_length=100, width=28,
            comment=f"{owner_label}的全称，须已在平台注册。单位用户可留空，表示本单位。",
        ),
        Column(
            "统一社会信用代码", "org_credit_code", CODE, width=22,
            comment="18位。填写后按信用代码匹配单位（优先于名称）。单位用户可留空。",
        ),
    )


def _region_columns() -> tuple[Column, Column]:
    return (
        Column("所在设区市", "region_city", CITY, required=True, choices=_cities, width=12,
               comment="必填。江西省11个设区市之一，从下拉列表选择。"),
        Column("区县", "region_county", COUNTY, width=12,
               comment="选填。须属于所填设区市；留空表示全市。"),
    )


def _specs() -> dict[str, Sheet]:
    from marketplace.services.entries import MAX_DESCRIPTION, MAX_PRODUCT_FIELDS, MAX_TAGS, MIN_DESCRIPTION

    city, county = _region_columns()
    opportunities = Sheet(
        OPPORTUNITIES,
        KIND_LABELS[OPPORTUNITIES],
        (
            *_owner_columns(Opportunity, "发布单位"),
            Column("标题", "title", required=True, max_length=120, width=32,
                   comment="必填，4–120个字。同一单位的同名条目视为同一条，导入时更新。"),
            Column("需求描述", "description", LONGTEXT, required=True, width=60,
                   comment=f"必填，{MIN_DESCRIPTION}–{MAX_DESCRIPTION}个字：场景现状、痛点、期望的解决方案和应用条件。"),
            Column("应用领域", "field_category", CHOICE, required=True, choices=_categories, width=14,
                   comment="必填。从下拉列表选择一个应用领域。"),
            Column("场景层级", "tier", CHOICE, required=True, choices=Tier.choices, width=18,
                   comment="必填：综合性重大场景 / 行业领域集成式场景 / 高价值小切口场景。"),
            city,
            county,
            Column("预算下限（万元）", "budget_min", MONEY, width=12, comment="选填，数字，单位万元。"),
            Column("预算上限（万元）", "budget_max", MONEY, width=12,
                   comment="选填，数字，单位万元，不低于预算下限。都不填表示面议。"),
            Column("合作方式", "cooperation_modes", MULTI, required=True, choices=CooperationMode.choices,
                   width=22, comment="必填，可填多个，用顿号“、”分隔，例如：设备采购/租赁、联合研发。"),
            Column("答题截止日期", "deadline", DATE, width=14,
                   comment="选填，北京时间，格式 2026-12-31（也可填 2026/12/31 或 2026年12月31日）。"),
            Column("联系人", "contact_name", required=True, max_length=50, width=10, comment="必填。"),
            Column("联系电话", "contact_phone", required=True, max_length=30, width=16,
                   comment="必填，如 0791-88123456 或 13800000000。"),
        ),
        {
            "org_name": "南昌市东湖区数据局",
            "org_credit_code": "",
            "title": "老旧小区智慧停车诱导系统建设",
            "description": "辖区老旧小区停车位紧张，夜间车辆乱停乱放严重，需要建设停车诱导和泊位共享系统，"
                           "接入区级停车数据平台，实现车位实时查询、错时共享和无感支付。",
            "field_category": "交通出行",
            "tier": "focused",
            "region_city": "南昌市",
            "region_county": "东湖区",
            "budget_min": Decimal("50"),
            "budget_max": Decimal("120"),
            "cooperation_modes": ["procurement", "joint_rnd"],
            "deadline": date(2026, 12, 31),
            "contact_name": "王敏",
            "contact_phone": "0791-88123456",
        },
    )
    products = Sheet(
        PRODUCTS,
        KIND_LABELS[PRODUCTS],
        (
            *_owner_columns(Product, "单位"),
            Column("产品名称", "name", required=True, max_length=120, width=30,
                   comment="必填，2–120个字。同一单位的同名产品视为同一条，导入时更新。"),
            Column("产品介绍", "description", LONGTEXT, required=True, width=60,
                   comment=f"必填，{MIN_DESCRIPTION}–{MAX_DESCRIPTION}个字：功能、技术路线、部署方式和优势。"),
            Column("应用领域", "fields", MULTI, required=True, choices=_categories, width=18,
                   comment=f"必填，1–{MAX_PRODUCT_FIELDS}个，多个用顿号“、”分隔，例如：交通出行、新型智慧城市。"),
            Column("技术标签", "tags", MULTI, choices=_tags, width=20,
                   comment=f"选填，最多{MAX_TAGS}个，多个用顿号“、”分隔，例如：物联网、人工智能。"),
            Column("成熟度", "maturity", CHOICE, required=True, choices=Maturity.choices, width=12,
                   comment="必填：研发中 / 试点应用 / 规模化推广。"),
            Column("典型案例", "cases", LONGTEXT, width=40, comment=f"选填，不超过{MAX_DESCRIPTION}个字。"),
            city,
            county,
        ),
        {
            "org_name": "江西省智联交通科技有限公司",
            "org_credit_code": "",
            "name": "城市级静态交通一体化运营平台",
            "description": "基于地磁与高位视频的泊位检测，提供车位引导、反向寻车、无感支付和运营分析，"
                           "支持与城市停车数据平台对接。",
            "fields": ["交通出行", "新型智慧城市"],
            "tags": ["物联网", "视频分析"],
            "maturity": "scale",
            "cases": "已在南昌市东湖区、赣州市章贡区部署，覆盖泊位8000余个。",
            "region_city": "南昌市",
            "region_county": "青山湖区",
        },
    )
    organizations = Sheet(
        ORGANIZATIONS,
        KIND_LABELS[ORGANIZATIONS],
        (
            Column("单位名称", "name", required=True, max_length=_length(Organization, "name"), width=30,
                   comment="必填，单位全称，不能与已注册单位重名。"),
            Column("单位类型", "kind", CHOICE, required=True, choices=OrgKind.choices, width=12,
                   comment="必填：政府部门 / 事业单位 / 国有企业 / 民营企业 / 科研院所 / 服务机构。"),
            Column("统一社会信用代码", "credit_code", CODE, required=True, width=22,
                   comment="必填，18位。按信用代码匹配已有单位：匹配到则更新，否则新增。"),
            city,
            county,
            Column("联系人", "contact_name", required=True, max_length=_length(Organization, "contact_name"),
                   width=10, comment="必填。"),
            Column("联系电话", "contact_phone", required=True,
                   max_length=_length(Organization, "contact_phone"), width=16, comment="必填。"),
            Column("联系邮箱", "contact_email", max_length=_length(Organization, "contact_email"), width=24,
                   comment="选填。"),
            Column("地址", "address", max_length=_length(Organization, "address"), width=30,
                   comment="选填。"),
            Column("单位简介", "intro", LONGTEXT, max_length=2000, width=40,
                   comment="选填，不超过2000个字。"),
        ),
        {
            "name": "赣州市章贡区大数据中心",
            "kind": "institution",
            "credit_code": make_code("12", "360702", "MB178642"),
            "region_city": "赣州市",
            "region_county": "章贡区",
            "contact_name": "刘洋",
            "contact_phone": "0797-8201234",
            "contact_email": "dsj@zhanggong.example.cn",
            "address": "赣州市章贡区长征大道1号",
            "intro": "负责全区政务数据归集共享和新型智慧城市项目建设。",
        },
    )
    return {s.kind: s for s in (opportunities, products, organizations)}


def normalize_kind(kind: str) -> str:
    """``opportunities|products|organizations`` (singular ``EntryKind`` values accepted)."""
    kind = _KIND_ALIASES.get(kind, kind)
    if kind not in KINDS:
        raise ImportFileError("导入类型无效：应为机会清单、产品清单或单位名录")
    return kind


def sheet_for(kind: str) -> Sheet:
    return _specs()[normalize_kind(kind)]


# ---------------------------------------------------------------- limits


@dataclass(frozen=True)
class Limits:
    max_bytes: int = DEFAULT_MAX_BYTES
    max_rows: int = DEFAULT_MAX_ROWS
    max_uncompressed: int = DEFAULT_MAX_UNCOMPRESSED
    max_ratio: int = DEFAULT_MAX_RATIO

    @classmethod
    def from_config(cls) -> Limits:
        if not has_app_context():
            return cls()
        cfg = current_app.config
        return cls(
            max_bytes=int(cfg.get("IMPORT_MAX_BYTES") or DEFAULT_MAX_BYTES),
            max_rows=int(cfg.get("IMPORT_MAX_ROWS") or DEFAULT_MAX_ROWS),
            max_uncompressed=int(cfg.get("IMPORT_MAX_UNCOMPRESSED") or DEFAULT_MAX_UNCOMPRESSED),
            max_ratio=int(cfg.get("IMPORT_MAX_RATIO") or DEFAULT_MAX_RATIO),
        )


def _mb(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MB".replace(".0 MB", " MB")


# ---------------------------------------------------------------- reading


@dataclass
class Table:
    """The rows of an uploaded file: ``rows`` are ``(row number, {header: raw value})``."""

    headers: list[str]
    rows: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    sheet_name: str | None = None
    encoding: str | None = None


def detect_format(data: bytes, filename: str) -> str:
    """``xlsx`` or ``csv`` from the bytes (the name only decides between CSV and junk)."""
    if data.startswith(b"PK\x03\x04"):
        return "xlsx"
    if data.startswith(b"\xd0\xcf\x11\xe0"):
        raise ImportFileError("不支持旧版 .xls 或加密的 Excel 文件，请在 Excel 中另存为 .xlsx 后再导入")
    name = (filename or "").lower()
    if name.endswith((".csv", ".txt")):
        return "csv"
    if name.endswith((".xlsx", ".xlsm")):
        raise ImportFileError("文件不是有效的 Excel（.xlsx）文件，可能已损坏或扩展名不符")
    raise ImportFileError("只支持 Excel（.xlsx）和 CSV 文件")


def read_table(kind: str, data: bytes, filename: str, limits: Limits | None = None) -> Table:
    """Check and read an uploaded file into a :class:`Table` (see the module docstring)."""
    sheet = sheet_for(kind)
    limits = limits or Limits.from_config()
    if len(data) > limits.max_bytes:
        raise ImportFileError(f"文件过大（{_mb(len(data))}），上限为 {_mb(limits.max_bytes)}")
    if not data:
        raise ImportFileError("文件是空的")
    fmt = detect_format(data, filename)
    if fmt == "xlsx":
        table = _read_xlsx(sheet, data, limits)
    else:
        table = _read_csv(sheet, data, limits)
    return table


def _check_header(sheet: Sheet, header_row: Sequence[Any], where: str, hint: str = "") -> list[str]:
    headers = [_header_text(h) for h in header_row]
    while headers and not headers[-1]:
        headers.pop()
    if not any(headers):
        raise ImportFileError(f"{where}第1行没有列名：请使用导入模板，第1行为列名，数据从第2行开始{hint}")
    seen: set[str] = set()
    for h in headers:
        if h and h in seen:
            raise ImportFileError(f"{where}列名「{h}」重复")
        seen.add(h)
    missing = [h for h in sheet.headers if h not in seen]
    if missing:
        unknown = [h for h in headers if h and h not in sheet.headers]
        message = f"{where}缺少列：" + "、".join(f"「{h}」" for h in missing)
        if unknown:
            message += "；无法识别的列：" + "、".join(f"「{h}」" for h in unknown[:10])
        other = _other_kind_of(headers, sheet.kind)
        if other:
            message += f"。这似乎是「{KIND_LABELS[other]}」的文件，请选择对应的导入类型"
        else:
            message += "。请使用导入模板的列名（可下载模板对照）"
        raise ImportFileError(message + hint)
    return headers


def _header_text(value: Any) -> str:
    text = "" if value is None else str(value)
    return text.replace("\ufeff", "").replace("\n", "").strip().rstrip("*＊").strip()


def _other_kind_of(headers: Iterable[str], kind: str) -> str | None:
    present = set(headers)
    for other, spec in _specs().items():
        if other != kind and all(h in present for h in spec.headers):
            return other
    return None


def _rows(sheet: Sheet, headers: list[str], raw_rows: Iterable[Sequence[Any]], limits: Limits,
          first_row: int = 2) -> list[tuple[int, dict[str, Any]]]:
    wanted = {h: i for i, h in enumerate(headers) if h in sheet.headers}
    out = []
    for number, values in enumerate(raw_rows, start=first_row):
        if all(_blank(v) for v in values):
            continue  # blank rows (trailing ones included) are skipped
        if len(out) >= limits.max_rows:
            raise ImportFileError(f"数据超过 {limits.max_rows} 行的上限，请拆分成多个文件导入")
        out.append((number, {h: (values[i] if i < len(values) else None) for h, i in wanted.items()}))
    return out


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


# ---- CSV


def decode_csv(data: bytes) -> tuple[str, str]:
    """Decode a CSV as UTF-8 (BOM or not) or GB18030; returns (text, encoding name)."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in data[:4096]:
        raise ImportFileError(
            "CSV 文件是 UTF-16 编码或含有二进制内容：请另存为“CSV UTF-8（逗号分隔）”后再导入"
        )
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("gb18030"), "gb18030"
    except UnicodeDecodeError:
        raise ImportFileError(
            "无法识别 CSV 文件的编码：请以 UTF-8 或 GB18030（GBK）编码保存，"
            "例如在 Excel 中另存为“CSV UTF-8（逗号分隔）”"
        ) from None


def _read_csv(sheet: Sheet, data: bytes, limits: Limits) -> Table:
    text, encoding = decode_csv(data)
    if "\x00" in text:
        raise ImportFileError("CSV 文件含有二进制内容，不是有效的文本文件")
    reader = csv.reader(io.StringIO(text, newline=""))
    hint = "（文件按 GB18030 编码读取，如为其他编码请另存为 UTF-8）" if encoding == "gb18030" else ""
    try:
        header_row = next(reader, None)
        if header_row is None:
            raise ImportFileError("文件是空的")
        headers = _check_header(sheet, header_row, "", hint)
        rows = _rows(sheet, headers, _csv_records(reader), limits)
    except csv.Error as exc:
        raise ImportFileError(f"CSV 格式错误（第{reader.line_num}行）：请检查引号和分隔符") from exc
    return Table(headers=headers, rows=rows, encoding=encoding)


def _csv_records(reader) -> Iterable[list[str]]:
    for record in reader:
        yield [_unescape(v) for v in record]


# ---- XLSX


def _check_zip(data: bytes, limits: Limits) -> zipfile.ZipFile:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError):
        raise ImportFileError("文件不是有效的 Excel（.xlsx）文件，可能已损坏") from None
    names = {i.filename for i in infos}
    if "xl/workbook.xml" not in names:
        raise ImportFileError("文件不是 Excel 工作簿（.xlsx）：请用 Excel 打开后另存为 .xlsx")
    if any(n.startswith("xl/externalLinks/") for n in names):
        raise ImportFileError(
            "工作簿含有指向其他文件的外部链接，出于安全原因不能导入："
            "请复制数据后“选择性粘贴为数值”到模板中"
        )
    if sum(i.file_size for i in infos) > limits.max_uncompressed:
        raise ImportFileError(f"工作簿解压后超过 {_mb(limits.max_uncompressed)}，不能导入（可能是压缩炸弹）")
    for info in infos:
        if info.file_size > _RATIO_FLOOR and info.file_size > limits.max_ratio * max(info.compress_size, 1):
            raise ImportFileError("工作簿的压缩比异常（可能是压缩炸弹），不能导入")
    # The sizes in the headers can lie: decompress everything once, under the same cap.
    total = 0
    try:
        for info in infos:
            with archive.open(info) as member:
                while chunk := member.read(1024 * 1024):
                    total += len(chunk)
                    if total > limits.max_uncompressed:
                        raise ImportFileError(
                            f"工作簿解压后超过 {_mb(limits.max_uncompressed)}，不能导入（可能是压缩炸弹）"
                        )
    except (zipfile.BadZipFile, RuntimeError, OSError, EOFError, ValueError, NotImplementedError):
        raise ImportFileError("文件不是有效的 Excel（.xlsx）文件，可能已损坏或已加密") from None
    except Exception as exc:  # zlib.error and friends
        if isinstance(exc, ImportFileError):
            raise
        raise ImportFileError("文件不是有效的 Excel（.xlsx）文件，可能已损坏") from None
    return archive


_NS = {
    "m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main",
    "r": "http://schemas.openxmlformats.org/officeDocument/2006/relationships",
    "rel": "http://schemas.openxmlformats.org/package/2006/relationships",
}
_FORMULA_CELL = re.compile(
    rb'<(?:\w+:)?c\b[^>]*?\br="([A-Z]+)(\d+)"[^>]*>(?:(?!</(?:\w+:)?c>).)*?<(?:\w+:)?f[\s>/]', re.S
)


def _sheet_paths(archive: zipfile.ZipFile) -> dict[str, str]:
    """Sheet name → the path of its XML part."""
    try:
        workbook = ElementTree.fromstring(archive.read("xl/workbook.xml"))
        rels = ElementTree.fromstring(archive.read("xl/_rels/workbook.xml.rels"))
    except (KeyError, ElementTree.ParseError):
        raise ImportFileError("文件不是有效的 Excel（.xlsx）文件，可能已损坏") from None
    targets = {r.get("Id"): r.get("Target", "") for r in rels.findall("rel:Relationship", _NS)}
    out = {}
    for node in workbook.iterfind("m:sheets/m:sheet", _NS):
        target = targets.get(node.get(f"{{{_NS['r']}}}id"), "")
        target = target.lstrip("/")
        out[node.get("name", "")] = target if target.startswith("xl/") else f"xl/{target}"
    return out


def _read_xlsx(sheet: Sheet, data: bytes, limits: Limits) -> Table:
    from python_calamine import CalamineError, CalamineWorkbook

    archive = _check_zip(data, limits)
    paths = _sheet_paths(archive)
    try:
        workbook = CalamineWorkbook.from_object(io.BytesIO(data))
    except CalamineError:
        raise ImportFileError("文件不是有效的 Excel（.xlsx）文件，可能已损坏") from None
    names = workbook.sheet_names
    if sheet.title in names:
        name = sheet.title
    else:
        visible = [m.name for m in workbook.sheets_metadata if str(m.visible).endswith("Visible")
                   and m.name != LISTS_SHEET]
        if not visible:
            raise ImportFileError("工作簿中没有可读取的工作表")
        name = visible[0]
        other = next((k for k, t in KIND_LABELS.items() if t in names and k != sheet.kind), None)
        if other is not None:
            raise ImportFileError(
                f"未找到工作表「{sheet.title}」；文件中是「{KIND_LABELS[other]}」，请选择对应的导入类型"
            )
    where = f"工作表「{name}」"
    _check_sheet_xml(archive, paths.get(name), where, limits)  # before the sheet is parsed
    try:
        ws = workbook.get_sheet_by_name(name)
        merged = ws.merged_cell_ranges or []
        raw = ws.iter_rows()
        header_row = next(raw, None)
    except CalamineError:
        raise ImportFileError(f"{where}无法读取，文件可能已损坏") from None
    if header_row is None:
        raise ImportFileError(f"{where}是空的：请在模板的第2行起填写数据")
    if merged:
        (r0, c0), (r1, c1) = merged[0]
        raise ImportFileError(
            f"{where}含有合并单元格（{_ref(r0, c0)}:{_ref(r1, c1)}）：请取消合并，每个单元格各填一个值"
        )
    headers = _check_header(sheet, header_row, where)
    try:
        rows = _rows(sheet, headers, raw, limits)
    except CalamineError:
        raise ImportFileError(f"{where}无法读取，文件可能已损坏") from None
    return Table(headers=headers, rows=rows, sheet_name=name)


def _check_sheet_xml(archive: zipfile.ZipFile, path: str | None, where: str, limits: Limits) -> None:
    """The row limit and formulas, from the sheet's XML (cheap byte scans, no parsing)."""
    if not path:
        return
    try:
        xml = archive.read(path)
    except KeyError:
        return
    if xml.count(b"<row ") + xml.count(b":row ") > limits.max_rows + 1:
        # Rows that only carry formatting do not count: only those holding a value.
        valued = sum(1 for part in re.split(rb"<(?:\w+:)?row ", xml)[1:] if b"<v" in part or b"<is>" in part
                     or b":v>" in part)
        if valued > limits.max_rows + 1:
            raise ImportFileError(f"数据超过 {limits.max_rows} 行的上限，请拆分成多个文件导入")
    if b"<f>" not in xml and b"<f " not in xml and b":f>" not in xml and b":f " not in xml:
        return
    match = _FORMULA_CELL.search(xml)
    if match:
        ref = match.group(1).decode() + match.group(2).decode()
        raise ImportFileError(
            f"{where}的单元格 {ref} 是公式：导入只接受数值，请复制后“选择性粘贴为数值”再导入"
        )


def _ref(row: int, col: int) -> str:
    letters = ""
    col += 1
    while col:
        col, r = divmod(col - 1, 26)
        letters = chr(65 + r) + letters
    return f"{letters}{row + 1}"


# ---------------------------------------------------------------- cell values


class CellProblem(ValueError):
    """A cell that cannot be turned into a value (message in Chinese)."""


_DATE_TEXT = (
    re.compile(r"^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?:[ T]\d{1,2}:\d{2}(?::\d{2})?)?$"),
    re.compile(r"^(\d{4})年(\d{1,2})月(\d{1,2})日?$"),
)


def parse_date(value: Any) -> date | None:
    """A deadline typed as a date cell, an Excel serial number or text (2026-12-31,
    2026/12/31, 2026年12月31日)."""
    if _blank(value):
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, bool):
        raise CellProblem("日期格式无效，请填写如 2026-12-31")
    serial_text = isinstance(value, str) and re.fullmatch(r"\d{5}(\.0+)?", value.strip())
    if isinstance(value, int | float) or serial_text:
        serial = float(value)
        if not 1 <= serial < 2958466:
            raise CellProblem("日期格式无效，请填写如 2026-12-31")
        return EXCEL_EPOCH + timedelta(days=int(serial))
    text = str(value).strip()
    for pattern in _DATE_TEXT:
        m = pattern.match(text)
        if m:
            try:
                return date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
            except ValueError:
                raise CellProblem("日期不存在，请检查年月日") from None
    raise CellProblem("日期格式无效，请填写如 2026-12-31")


def cell_text(value: Any) -> str:
    """A cell as text: integral numbers lose their ``.0`` (phone numbers typed as numbers)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, float):
        if value.is_integer():
            return str(int(value))
        return repr(value)
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    return _unescape(str(value)).strip()


def parse_cell(column: Column, value: Any) -> Any:
    """The raw cell → the value the service expects (raises :class:`CellProblem`)."""
    if column.type == DATE:
        return parse_date(value)
    if column.type == MONEY:
        if _blank(value):
            return None
        if isinstance(value, int | float) and not isinstance(value, bool):
            return Decimal(repr(float(value))) if isinstance(value, float) else Decimal(value)
        return cell_text(value).replace(",", "").replace("，", "")
    text = cell_text(value)
    if column.max_length is not None and len(text) > column.max_length:
        raise CellProblem(f"不能超过{column.max_length}个字")
    if column.type == CHOICE:
        if not text:
            return ""
        code = column.choice_map().get(text)
        if code is None:
            raise CellProblem(f"「{text}」不是有效的{column.header}" + _choices_hint(column))
        return code
    if column.type == MULTI:
        mapping = column.choice_map()
        out = []
        for part in SEPARATORS.split(text):
            part = part.strip()
            if not part:
                continue
            code = mapping.get(part)
            if code is None:
                raise CellProblem(f"「{part}」不是有效的{column.header}" + _choices_hint(column))
            out.append(code)
        return out
    if column.type == CODE:
        return text.upper()
    return text


def _choices_hint(column: Column) -> str:
    labels = [label for _, label in column.choices()] if column.choices else []
    if not labels:
        return ""
    shown = "、".join(labels[:8])
    return f"（可选：{shown}{'等' if len(labels) > 8 else ''}）"


# ---------------------------------------------------------------- writing

_FORMULA_START = ("=", "+", "-", "@")
_PLAIN_NUMBER = re.compile(r"^[+\-]?[\d\s().\-]+$")


def _escape(text: str) -> str:
    """Keep spreadsheet programs from running a text cell as a formula (CSV injection):
    a leading apostrophe, which :func:`_unescape` removes on import."""
    if text.startswith(_FORMULA_START) and not _PLAIN_NUMBER.match(text):
        return "'" + text
    return text


def _unescape(text: str) -> str:
    if len(text) > 1 and text[0] == "'" and text[1] in _FORMULA_START:
        return text[1:]
    return text


def row_values(kind: str, obj: Any) -> dict[str, Any]:
    """A model row as ``{service field: value}`` in the sheet's terms."""
    kind = normalize_kind(kind)
    if kind == ORGANIZATIONS:
        return {c.key: getattr(obj, c.key) for c in sheet_for(kind).columns}
    owner = obj.owner
    values = {"org_name": owner.name, "org_credit_code": owner.credit_code}
    if kind == OPPORTUNITIES:
        from marketplace.services.entries import OPPORTUNITY_FIELDS

        values.update({f: getattr(obj, f) for f in OPPORTUNITY_FIELDS})
    else:
        values.update(
            name=obj.name, description=obj.description, fields=obj.categories, tags=obj.tags,
            maturity=obj.maturity, cases=obj.cases, region_city=obj.region_city,
            region_county=obj.region_county,
        )
    return values


def display_value(column: Column, value: Any) -> Any:
    """A service value as the cell shows it (labels for codes, 、-joined lists)."""
    if value is None:
        return None
    if column.type == CHOICE:
        return column.label_of(value) if value else ""
    if column.type == MULTI:
        return JOINER.join(column.label_of(v) for v in value)
    if column.type == MONEY and isinstance(value, Decimal):
        return float(value)
    return value


def write_xlsx(kind: str, records: Iterable[dict[str, Any]], *, template: bool = False) -> bytes:
    """An XLSX in the sheet's columns; ``template`` adds comments, drop-downs and the example."""
    from openpyxl import Workbook
    from openpyxl.comments import Comment
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter
    from openpyxl.workbook.defined_name import DefinedName
    from openpyxl.worksheet.datavalidation import DataValidation

    sheet = sheet_for(kind)
    wb = Workbook()
    ws = wb.active
    ws.title = sheet.title
    header_fill = PatternFill("solid", fgColor="DDEBF7")
    for idx, column in enumerate(sheet.columns, start=1):
        cell = ws.cell(row=1, column=idx, value=column.header)
        cell.font = Font(bold=True, color="C00000" if column.required else "000000")
        cell.fill = header_fill
        cell.alignment = Alignment(vertical="center")
        ws.column_dimensions[get_column_letter(idx)].width = column.width
        if template and column.comment:
            note = column.comment + ("" if idx > 1 else "\n第2行为示例，导入前请删除或覆盖。")
            comment = Comment(note, "全景江西")
            comment.width, comment.height = 260, 110
            cell.comment = comment
    ws.freeze_panes = "A2"
    row_number = 1
    for record in records:
        row_number += 1
        _write_record(ws, sheet, row_number, record)
    if template:
        row_number += 1
        _write_record(ws, sheet, row_number, sheet.example)
        _add_validations(wb, ws, sheet, DataValidation, DefinedName, get_column_letter)
    buffer = io.BytesIO()
    wb.save(buffer)
    return buffer.getvalue()


def _write_record(ws, sheet: Sheet, row: int, record: dict[str, Any]) -> None:
    for idx, column in enumerate(sheet.columns, start=1):
        value = display_value(column, record.get(column.key))
        cell = ws.cell(row=row, column=idx)
        if isinstance(value, str):
            cell.value = value
            cell.data_type = "s"  # never a formula, whatever the text starts with
        else:
            cell.value = value
        if column.type == DATE and value is not None:
            cell.number_format = "yyyy-mm-dd"


def _add_validations(wb, ws, sheet: Sheet, DataValidation, DefinedName, get_column_letter) -> None:
    """Drop-downs fed by a hidden sheet of lists; the county list follows the city."""
    lists = wb.create_sheet(LISTS_SHEET)
    lists.sheet_state = "hidden"
    last = DEFAULT_MAX_ROWS + 1
    col = 0
    ref = reference()

    def add_list(title: str, values: Sequence[str]) -> str:
        nonlocal col
        col += 1
        letter = get_column_letter(col)
        lists.cell(row=1, column=col, value=title)
        for i, v in enumerate(values, start=2):
            lists.cell(row=i, column=col, value=v)
        return f"'{LISTS_SHEET}'!${letter}$2:${letter}${len(values) + 1}"

    city_col = None
    for idx, column in enumerate(sheet.columns, start=1):
        letter = get_column_letter(idx)
        target = f"{letter}2:{letter}{last}"
        if column.type in (CHOICE, MULTI, CITY):
            labels = [label for _, label in column.choices()]
            source = add_list(column.header, labels)
            dv = DataValidation(type="list", formula1=source, allow_blank=True)
            if column.type == MULTI:
                # One value from the list, or several typed with 、 (Excel lists pick one).
                dv.showErrorMessage = False
                dv.prompt = "可从列表选择一项，多项请用顿号“、”分隔手动填写"
                dv.showInputMessage = True
            else:
                dv.error = f"请从列表中选择{column.header}"
                dv.errorTitle = "无效的值"
            dv.add(target)
            ws.add_data_validation(dv)
            if column.type == CITY:
                city_col = letter
        elif column.type == COUNTY and city_col is not None:
            for city in ref.cities:
                source = add_list(city, list(ref.city_counties[city]))
                wb.defined_names[city] = DefinedName(city, attr_text=source)
            dv = DataValidation(type="list", formula1=f"INDIRECT(${city_col}2)", allow_blank=True)
            dv.error = "请选择所填设区市下属的区县"
            dv.errorTitle = "无效的区县"
            dv.add(target)
            ws.add_data_validation(dv)
        elif column.type == DATE:
            dv = DataValidation(type="date", operator="greaterThan", formula1="36526", allow_blank=True)
            dv.error = "请填写日期，如 2026-12-31"
            dv.add(target)
            ws.add_data_validation(dv)


def csv_value(column: Column, value: Any) -> str:
    value = display_value(column, value)
    if value is None:
        return ""
    if column.type == DATE:
        return value.isoformat()
    if column.type == MONEY:
        number = Decimal(str(value))
        return format(number.normalize(), "f")
    return _escape(str(value))


def write_csv(kind: str, records: Iterable[dict[str, Any]]) -> bytes:
    """A CSV in the sheet's columns, UTF-8 with BOM (so that Excel opens it as UTF-8)."""
    sheet = sheet_for(kind)
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(sheet.headers)
    for record in records:
        writer.writerow([csv_value(c, record.get(c.key)) for c in sheet.columns])
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")


def template_workbook(kind: str) -> bytes:
    """The XLSX import template of ``kind`` (see the module docstring)."""
    return write_xlsx(kind, [], template=True)

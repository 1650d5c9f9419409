"""Spreadsheet templates and the reading of uploaded files (issue 9 §2, §5)."""

from __future__ import annotations

import io
import zipfile
from datetime import date, datetime

import pytest
from openpyxl import Workbook, load_workbook

from marketplace.services import spreadsheets as sheets
from marketplace.services.spreadsheets import ImportFileError, Limits

KINDS = sheets.KINDS


# ---------------------------------------------------------------- helpers


def xlsx(rows, title: str | None = "产品清单", extra=None) -> bytes:
    """An XLSX whose first sheet holds ``rows`` (``extra(wb, ws)`` may change it)."""
    wb = Workbook()
    ws = wb.active
    if title:
        ws.title = title
    for row in rows:
        ws.append(row)
    if extra:
        extra(wb, ws)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def product_row(**kw) -> list:
    values = {
        "单位名称": "江西省智联交通科技有限公司",
        "统一社会信用代码": "",
        "产品名称": "城市停车运营平台",
        "产品介绍": "基于地磁与高位视频的泊位检测，提供车位引导、反向寻车和无感支付。",
        "应用领域": "交通出行",
        "技术标签": "物联网",
        "成熟度": "规模化推广",
        "典型案例": "",
        "所在设区市": "南昌市",
        "区县": "青山湖区",
    }
    values.update(kw)
    return [values[h] for h in sheets.sheet_for("products").headers]


def products_xlsx(*rows, **kw) -> bytes:
    return xlsx([sheets.sheet_for("products").headers, *(rows or [product_row()])], **kw)


def read(data: bytes, name: str = "list.xlsx", kind: str = "products", **limits):
    return sheets.read_table(kind, data, name, Limits(**limits) if limits else None)


def error_of(data: bytes, name: str = "list.xlsx", kind: str = "products", **limits) -> str:
    with pytest.raises(ImportFileError) as info:
        read(data, name, kind, **limits)
    return info.value.message


# ---------------------------------------------------------------- templates


@pytest.mark.parametrize("kind", KINDS)
def test_template_has_the_chinese_headers_in_form_order_with_a_comment_each(kind):
    wb = load_workbook(io.BytesIO(sheets.template_workbook(kind)))
    spec = sheets.sheet_for(kind)
    ws = wb[spec.title]
    headers = [c.value for c in ws[1]]
    assert headers == spec.headers
    assert all(c.comment is not None and c.comment.text.strip() for c in ws[1])
    assert ws.freeze_panes == "A2"


def test_opportunity_columns_follow_the_entry_form_fields():
    from marketplace.services.entries import OPPORTUNITY_FIELDS, PRODUCT_FIELDS

    keys = [c.key for c in sheets.sheet_for("opportunities").columns]
    assert keys[2:] == list(OPPORTUNITY_FIELDS)
    product_keys = [c.key for c in sheets.sheet_for("products").columns]
    assert [k for k in product_keys if k in PRODUCT_FIELDS] == [
        "name",
        "description",
        "fields",
        "tags",
        "maturity",
        "cases",
        "region_city",
        "region_county",
    ]


@pytest.mark.parametrize("kind", KINDS)
def test_template_example_row_is_realistic_and_reads_back(kind):
    data = sheets.template_workbook(kind)
    table = read(data, "t.xlsx", kind)
    assert len(table.rows) == 1
    number, raw = table.rows[0]
    assert number == 2
    values = {c.key: sheets.parse_cell(c, raw[c.header]) for c in sheets.sheet_for(kind).columns}
    assert values["region_city"] in ("南昌市", "赣州市")


def _validations(ws) -> dict[str, str]:
    """Column letter → formula1 of its list validation."""
    out = {}
    for dv in ws.data_validations.dataValidation:
        for rng in str(dv.sqref).split():
            out[rng.split(":")[0].rstrip("0123456789")] = dv.formula1
    return out


def test_opportunity_template_has_drop_downs_fed_by_a_hidden_list_sheet():
    wb = load_workbook(io.BytesIO(sheets.template_workbook("opportunities")))
    ws = wb["机会清单"]
    lists = wb[sheets.LISTS_SHEET]
    assert lists.sheet_state == "hidden"
    found = _validations(ws)
    letters = {c.header: chr(65 + i) for i, c in enumerate(sheets.sheet_for("opportunities").columns)}
    for header in ("应用领域", "场景层级", "所在设区市", "合作方式"):
        assert sheets.LISTS_SHEET in found[letters[header]]
    assert found[letters["区县"]].startswith("INDIRECT(")
    assert "南昌市" in wb.defined_names
    values = {c.value for col in lists.iter_cols() for c in col}
    assert {"交通出行", "高价值小切口场景", "设备采购/租赁", "红谷滩区"} <= values


def test_product_template_has_drop_downs_for_fields_tags_and_maturity():
    wb = load_workbook(io.BytesIO(sheets.template_workbook("products")))
    found = _validations(wb["产品清单"])
    letters = {c.header: chr(65 + i) for i, c in enumerate(sheets.sheet_for("products").columns)}
    for header in ("应用领域", "技术标签", "成熟度", "所在设区市"):
        assert letters[header] in found


# ---------------------------------------------------------------- reading


def test_reads_xlsx_rows_with_their_spreadsheet_row_numbers():
    table = read(products_xlsx(product_row(), product_row(产品名称="第二个产品")))
    assert [n for n, _ in table.rows] == [2, 3]
    assert table.rows[1][1]["产品名称"] == "第二个产品"


def test_blank_trailing_and_middle_rows_are_skipped():
    blank = [None] * 10
    data = products_xlsx(product_row(), blank, product_row(产品名称="隔一行"), blank, ["", " "] + [None] * 8)
    table = read(data)
    assert [n for n, _ in table.rows] == [2, 4]


def test_wrong_sheet_names_the_other_list():
    headers = sheets.sheet_for("opportunities").headers
    message = error_of(xlsx([headers], title="机会清单"))
    assert "机会清单" in message and "导入类型" in message


def test_missing_and_renamed_columns_are_named():
    headers = sheets.sheet_for("products").headers
    renamed = ["项目名称" if h == "产品名称" else h for h in headers if h != "成熟度"]
    message = error_of(xlsx([renamed]))
    assert "缺少列" in message and "「产品名称」" in message and "「成熟度」" in message
    assert "「项目名称」" in message


def test_duplicate_header_is_refused():
    headers = sheets.sheet_for("products").headers
    assert "重复" in error_of(xlsx([headers + ["产品名称"]]))


def test_empty_first_row_is_refused():
    assert "第1行没有列名" in error_of(xlsx([[None, None], product_row()]))


def test_merged_cells_are_refused_with_their_range():
    message = error_of(products_xlsx(extra=lambda wb, ws: ws.merge_cells("C2:D2")))
    assert "合并单元格" in message and "C2:D2" in message


def test_formula_in_a_data_cell_is_refused_with_its_cell():
    def formula(wb, ws):
        ws["J2"] = '=CONCATENATE("青山","湖区")'

    message = error_of(products_xlsx(extra=formula))
    assert "J2" in message and "公式" in message


def test_external_link_is_refused():
    data = products_xlsx()
    buf = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            dst.writestr(item, src.read(item))
        dst.writestr("xl/externalLinks/externalLink1.xml", "<externalLink/>")
    assert "外部链接" in error_of(buf.getvalue())


def _with_member(data: bytes, name: str, payload: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            dst.writestr(item, src.read(item))
        dst.writestr(name, payload)
    return buf.getvalue()


def test_zip_bomb_is_refused_by_its_compression_ratio():
    bomb = _with_member(products_xlsx(), "xl/media/padding.bin", b"\0" * (20 * 1024 * 1024))
    assert len(bomb) < 1024 * 1024
    assert "压缩" in error_of(bomb)


def test_zip_bomb_is_refused_by_its_total_uncompressed_size():
    data = _with_member(products_xlsx(), "xl/media/padding.bin", b"\0" * (3 * 1024 * 1024))
    assert "压缩炸弹" in error_of(data, max_uncompressed=2 * 1024 * 1024, max_ratio=10**6)


def test_zip_bomb_with_lying_headers_is_refused_while_decompressing():
    data = bytearray(_with_member(products_xlsx(), "xl/media/padding.bin", b"\0" * (3 * 1024 * 1024)))
    # Shrink the declared size of the padding member in the central directory.
    central = data.rfind(b"PK\x01\x02", 0, data.rfind(b"xl/media/padding.bin"))
    data[central + 24 : central + 28] = (100).to_bytes(4, "little")
    message = error_of(bytes(data), max_uncompressed=2 * 1024 * 1024, max_ratio=10**6)
    assert "压缩炸弹" in message or "损坏" in message


def test_file_size_limit_is_checked_before_parsing():
    junk = b"\x89junk" * (3 * 1024 * 1024)
    message = error_of(junk, "list.xlsx", max_bytes=10 * 1024 * 1024)
    assert "文件过大" in message and "10 MB" in message


def test_fifty_megabytes_of_junk_get_the_size_message():
    junk = bytes(range(256)) * (50 * 4096)
    assert "文件过大" in error_of(junk, "junk.csv")


@pytest.mark.parametrize("name", ["junk.xlsx", "junk.csv", "junk.pdf"])
def test_junk_bytes_get_a_clear_message(name):
    junk = bytes((i * 7919) % 256 for i in range(20000))
    message = error_of(junk, name)
    assert any(word in message for word in ("Excel", "编码", "二进制", "只支持"))


def test_old_xls_is_refused_with_advice():
    assert ".xlsx" in error_of(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 600, "old.xls")


def test_row_limit_is_enforced_while_reading():
    data = products_xlsx(*[product_row(产品名称=f"产品{i}") for i in range(6)])
    assert "5 行" in error_of(data, max_rows=5)


def test_rows_with_only_formatting_do_not_count_against_the_row_limit():
    from openpyxl.styles import Font

    def format_rows(wb, ws):
        for row in range(3, 40):
            ws.cell(row=row, column=1).font = Font(bold=True)

    table = read(products_xlsx(extra=format_rows), max_rows=5)
    assert len(table.rows) == 1


def test_truncated_xlsx_is_refused():
    data = products_xlsx()
    assert "Excel" in error_of(data[: len(data) // 2])


# ---------------------------------------------------------------- CSV encodings


def products_csv(encoding: str, bom: bool = False) -> bytes:
    headers = sheets.sheet_for("products").headers
    text = ",".join(headers) + "\r\n" + ",".join(str(v) for v in product_row()) + "\r\n"
    return (b"\xef\xbb\xbf" if bom else b"") + text.encode(encoding, errors="replace")


@pytest.mark.parametrize(
    ("encoding", "bom", "detected"),
    [("utf-8", True, "utf-8"), ("utf-8", False, "utf-8"), ("gb18030", False, "gb18030")],
)
def test_csv_in_utf8_with_or_without_bom_and_gb18030_is_read(encoding, bom, detected):
    table = read(products_csv(encoding, bom), "list.csv")
    assert table.encoding == detected
    assert table.rows[0][1]["产品名称"] == "城市停车运营平台"
    assert table.rows[0][1]["所在设区市"] == "南昌市"


def test_csv_in_utf16_is_refused_with_advice():
    data = products_csv("utf-16")
    assert "UTF-8" in error_of(data, "list.csv")


def test_csv_in_a_wrong_encoding_gets_a_clear_error():
    # Big5 bytes decode as GB18030 into other characters: the headers are not recognised.
    data = products_csv("big5")
    message = error_of(data, "list.csv")
    assert "缺少列" in message and "GB18030" in message


def test_csv_with_undecodable_bytes_gets_the_encoding_error():
    data = products_csv("utf-8")[:-2] + b"\x80\xff\r\n"
    assert "编码" in error_of(data, "list.csv")


# ---------------------------------------------------------------- cell values


@pytest.mark.parametrize(
    "value",
    [
        date(2026, 12, 31),
        datetime(2026, 12, 31, 0, 0),
        46387,
        46387.0,
        "46387",
        "2026-12-31",
        "2026/12/31",
        "2026.12.31",
        "2026年12月31日",
        "2026-12-31 00:00:00",
    ],
)
def test_deadlines_are_accepted_as_dates_serials_or_text(value):
    assert sheets.parse_date(value) == date(2026, 12, 31)


@pytest.mark.parametrize("value", ["明年年底", "2026-02-30", "31/12/2026", -5, True])
def test_bad_deadlines_are_cell_problems(value):
    with pytest.raises(sheets.CellProblem):
        sheets.parse_date(value)


def test_choices_accept_labels_and_codes_and_name_the_allowed_values():
    column = sheets.sheet_for("opportunities").column("tier")
    assert sheets.parse_cell(column, "高价值小切口场景") == "focused"
    assert sheets.parse_cell(column, "focused") == "focused"
    with pytest.raises(sheets.CellProblem, match="综合性重大场景"):
        sheets.parse_cell(column, "小场景")


def test_multi_value_cells_split_on_chinese_and_ascii_separators():
    column = sheets.sheet_for("opportunities").column("cooperation_modes")
    assert sheets.parse_cell(column, "设备采购/租赁、联合研发，商业运营") == [
        "procurement",
        "joint_rnd",
        "operation",
    ]


def test_phone_typed_as_a_number_keeps_its_digits():
    column = sheets.sheet_for("opportunities").column("contact_phone")
    assert sheets.parse_cell(column, 13800000000.0) == "13800000000"


def test_text_longer_than_the_database_column_is_a_cell_problem():
    column = sheets.sheet_for("organizations").column("name")
    with pytest.raises(sheets.CellProblem, match="不能超过"):
        sheets.parse_cell(column, "字" * 101)


def test_csv_export_escapes_formula_like_text_and_import_restores_it():
    record = dict(sheets.sheet_for("products").example, cases='=HYPERLINK("http://x")')
    data = sheets.write_csv("products", [record])
    assert "'=HYPERLINK" in data.decode("utf-8-sig")
    table = read(data, "x.csv")
    column = sheets.sheet_for("products").column("cases")
    assert sheets.parse_cell(column, table.rows[0][1]["典型案例"]) == '=HYPERLINK("http://x")'


def test_xlsx_export_writes_formula_like_text_as_text():
    record = dict(sheets.sheet_for("products").example, cases="=1+1")
    data = sheets.write_xlsx("products", [record])
    table = read(data)  # no formula error
    assert table.rows[0][1]["典型案例"] == "=1+1"

"""Bulk import: preview, the all-or-nothing apply, permissions and round trips (issue 9 §3–§4, §6)."""

from __future__ import annotations

import hashlib
import io
from datetime import date, timedelta
from decimal import Decimal

import pytest
from openpyxl import Workbook
from sqlalchemy import func, select, text

from marketplace.extensions import db as _db
from marketplace.models import (
    AuditEvent,
    BatchStatus,
    EntryRevision,
    EntryStatus,
    IndexState,
    Opportunity,
    Organization,
    OrgKind,
    Product,
    ProductField,
    ProductTag,
    RevisionStatus,
)
from marketplace.services import exports, imports
from marketplace.services import spreadsheets as sheets
from marketplace.services.errors import DomainError, InvalidTransition, PermissionDenied
from marketplace.services.imports import CREATE, ERROR, UNCHANGED, UPDATE
from tests import factories

FUTURE = date.today() + timedelta(days=90)


# ---------------------------------------------------------------- file builders


def records_to_xlsx(kind: str, records: list[dict]) -> bytes:
    return sheets.write_xlsx(kind, records)


def raw_xlsx(kind: str, rows: list[dict[str, object]]) -> bytes:
    """An XLSX with the template's headers and rows given by header → cell value."""
    spec = sheets.sheet_for(kind)
    wb = Workbook()
    ws = wb.active
    ws.title = spec.title
    ws.append(spec.headers)
    for row in rows:
        ws.append([row.get(h) for h in spec.headers])
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def product_cells(owner: Organization | None = None, **kw) -> dict[str, object]:
    cells = {
        "单位名称": owner.name if owner else "",
        "统一社会信用代码": "",
        "产品名称": "城市级静态交通一体化运营平台",
        "产品介绍": "基于地磁与高位视频的泊位检测，提供车位引导、反向寻车、无感支付和运营分析。",
        "应用领域": "交通出行",
        "技术标签": "物联网、人工智能",
        "成熟度": "规模化推广",
        "典型案例": "已在南昌市东湖区部署，覆盖泊位8000个。",
        "所在设区市": "南昌市",
        "区县": "青山湖区",
    }
    cells.update(kw)
    return cells


def opportunity_cells(publisher: Organization | None = None, **kw) -> dict[str, object]:
    cells = {
        "发布单位名称": publisher.name if publisher else "",
        "统一社会信用代码": "",
        "标题": "老旧小区智慧停车诱导系统建设",
        "需求描述": "辖区老旧小区停车位紧张，夜间车辆乱停乱放严重，需要建设停车诱导和泊位共享系统。",
        "应用领域": "交通出行",
        "场景层级": "高价值小切口场景",
        "所在设区市": "南昌市",
        "区县": "东湖区",
        "预算下限（万元）": 50,
        "预算上限（万元）": 120,
        "合作方式": "设备采购/租赁、联合研发",
        "答题截止日期": FUTURE,
        "联系人": "王敏",
        "联系电话": "0791-88123456",
    }
    cells.update(kw)
    return cells


def org_cells(**kw) -> dict[str, object]:
    cells = {
        "单位名称": "赣州市章贡区大数据中心",
        "单位类型": "事业单位",
        "统一社会信用代码": factories.credit_code("institution"),
        "所在设区市": "赣州市",
        "区县": "章贡区",
        "联系人": "刘洋",
        "联系电话": "0797-8201234",
        "联系邮箱": "dsj@zhanggong.example.cn",
        "地址": "赣州市章贡区长征大道1号",
        "单位简介": "负责全区政务数据归集共享。",
    }
    cells.update(kw)
    return cells


def table_digest(*tables: str) -> dict[str, tuple[int, str]]:
    """Row count and a hash of every row of each table (the all-or-nothing check)."""
    out = {}
    for table in tables:
        rows = _db.session.execute(text(f'SELECT * FROM "{table}" ORDER BY 1')).all()
        digest = hashlib.sha256(repr([tuple(r) for r in rows]).encode()).hexdigest()
        out[table] = (len(rows), digest)
    return out


TOUCHED = (
    "organization",
    "opportunity",
    "product",
    "product_field",
    "product_tag",
    "entry_revision",
    "audit_event",
    "index_state",
    "batch",
)


@pytest.fixture
def firm(make):
    return make.org(kind=OrgKind.ENTERPRISE, name="江西省智联交通科技有限公司")


@pytest.fixture
def bureau(make):
    return make.org(kind=OrgKind.GOVERNMENT, name="南昌市东湖区数据局")


@pytest.fixture
def organizer(make):
    return make.organizer()


# ---------------------------------------------------------------- preview


def test_preview_marks_new_rows_create_and_writes_nothing(firm, make):
    member = make.user(firm)
    data = raw_xlsx("products", [product_cells(firm), product_cells(firm, 产品名称="工业视觉质检一体机")])
    preview = imports.preview("products", data, "p.xlsx", actor=member)
    assert [r.action for r in preview.rows] == [CREATE, CREATE]
    assert preview.counts == {CREATE: 2, UPDATE: 0, UNCHANGED: 0, ERROR: 0}
    assert preview.ok
    assert _db.session.scalar(select(func.count(Product.id))) == 0


def test_preview_errors_name_row_column_and_problem(firm, make):
    member = make.user(firm)
    data = raw_xlsx(
        "products",
        [
            product_cells(firm),
            product_cells(firm, 产品名称="第二个", 成熟度="很成熟", 所在设区市="杭州市"),
            product_cells(firm, 产品名称="第三个", 产品介绍="太短"),
        ],
    )
    preview = imports.preview("products", data, "p.xlsx", actor=member)
    assert [r.action for r in preview.rows] == [CREATE, ERROR, ERROR]
    errors = {(e.row, e.column) for e in preview.errors}
    assert (3, "成熟度") in errors and (3, "所在设区市") in errors and (4, "产品介绍") in errors
    message = next(e for e in preview.errors if e.column == "产品介绍").message
    assert "至少20个字" in message
    assert str(preview.errors[0]).startswith("第3行「")


def test_preview_flags_county_outside_city(bureau, make):
    member = make.user(bureau)
    data = raw_xlsx("opportunities", [opportunity_cells(bureau, 区县="章贡区")])
    preview = imports.preview("opportunities", data, "o.xlsx", actor=member)
    assert preview.rows[0].errors[0].column == "区县"


def test_required_cells_are_named_when_blank(firm, make):
    data = raw_xlsx("products", [product_cells(firm, 成熟度=None, 应用领域="")])
    preview = imports.preview("products", data, "p.xlsx", actor=make.user(firm))
    assert {e.column for e in preview.errors} == {"成熟度", "应用领域"}
    assert all(e.message.startswith("请填写") for e in preview.errors)


def test_deadline_in_the_past_is_an_error_for_a_new_row(bureau, make):
    data = raw_xlsx("opportunities", [opportunity_cells(bureau, 答题截止日期="2020年1月1日")])
    preview = imports.preview("opportunities", data, "o.xlsx", actor=make.user(bureau))
    assert preview.errors[0].column == "答题截止日期"
    assert "不能早于今天" in preview.errors[0].message


@pytest.mark.parametrize(
    "cell",
    [
        FUTURE,
        (FUTURE - date(1899, 12, 30)).days,
        FUTURE.strftime("%Y/%m/%d"),
        f"{FUTURE.year}年{FUTURE.month}月{FUTURE.day}日",
    ],
)
def test_deadline_as_date_serial_or_text_is_stored_as_that_date(bureau, make, cell):
    member = make.user(bureau)
    imports.apply(
        "opportunities",
        raw_xlsx("opportunities", [opportunity_cells(bureau, 答题截止日期=cell)]),
        "o.xlsx",
        actor=member,
    )
    assert _db.session.scalar(select(Opportunity.deadline)) == FUTURE


def test_phone_is_checked_like_the_entry_form(bureau, make):
    data = raw_xlsx("opportunities", [opportunity_cells(bureau, 联系电话="请打电话")])
    preview = imports.preview("opportunities", data, "o.xlsx", actor=make.user(bureau))
    assert [(e.column, e.message) for e in preview.errors] == [("联系电话", "请输入有效的电话号码")]


def test_same_title_twice_in_one_file_is_an_error_on_the_second(firm, make):
    data = raw_xlsx("products", [product_cells(firm), product_cells(firm)])
    preview = imports.preview("products", data, "p.xlsx", actor=make.user(firm))
    assert preview.rows[1].action == ERROR and "与第2行重复" in preview.rows[1].errors[0].message


def test_unknown_organization_is_an_error(make, organizer):
    data = raw_xlsx("products", [product_cells(None, 单位名称="不存在的公司")])
    preview = imports.preview("products", data, "p.xlsx", actor=organizer)
    assert preview.errors[0].column == "单位名称" and "未找到" in preview.errors[0].message


def test_credit_code_wins_and_must_agree_with_the_name(firm, make, organizer):
    other = make.org(name="另一家公司")
    data = raw_xlsx("products", [product_cells(None, 单位名称=other.name, 统一社会信用代码=firm.credit_code)])
    preview = imports.preview("products", data, "p.xlsx", actor=organizer)
    assert "不一致" in preview.errors[0].message
    data = raw_xlsx("products", [product_cells(None, 单位名称="", 统一社会信用代码=firm.credit_code.lower())])
    preview = imports.preview("products", data, "p.xlsx", actor=organizer)
    assert preview.rows[0].organization == firm.name and preview.ok


def test_government_cannot_own_products(bureau, organizer):
    data = raw_xlsx("products", [product_cells(bureau)])
    preview = imports.preview("products", data, "p.xlsx", actor=organizer)
    assert "只有企业" in preview.errors[0].message


def test_file_level_errors_come_back_in_the_preview(firm, make):
    preview = imports.preview("products", b"not a spreadsheet at all", "p.csv", actor=make.user(firm))
    assert preview.rows == [] and preview.file_errors and not preview.ok
    assert preview.to_dict()["file_errors"] == preview.file_errors


def test_preview_of_a_header_only_file_says_there_are_no_rows(firm, make):
    preview = imports.preview("products", raw_xlsx("products", []), "p.xlsx", actor=make.user(firm))
    assert "没有数据行" in preview.file_errors[0]


def test_preview_round_trips_through_json(firm, make):
    import json

    data = raw_xlsx("products", [product_cells(firm), product_cells(firm, 产品名称="第二个", 成熟度="x")])
    preview = imports.preview("products", data, "p.xlsx", actor=make.user(firm))
    again = imports.Preview.from_dict(json.loads(json.dumps(preview.to_dict())))
    assert again == preview and again.counts == preview.counts


def test_progress_is_reported(firm, make):
    calls = []

    class Recorder:
        def start(self, total, message=""):
            calls.append(("start", total))

        def advance(self, n=1, message=None):
            calls.append(("advance", n))

        def set_message(self, message):
            calls.append(("message", message))

    data = raw_xlsx("products", [product_cells(firm), product_cells(firm, 产品名称="第二个")])
    imports.apply("products", data, "p.xlsx", actor=make.user(firm), progress=Recorder())
    assert [c for c in calls if c[0] == "start"] == [("start", 2), ("start", 2)]  # checking, writing
    assert sum(n for kind, n in calls if kind == "advance") == 4


# ---------------------------------------------------------------- near-duplicates


def test_near_duplicates_of_published_entries_are_flagged_not_blocked(firm, make):
    other = make.org(name="另一家科技公司")
    published = make.product(other, status=EntryStatus.PUBLISHED, name="智慧停车运营平台")
    make.product(
        other,
        status=EntryStatus.PUBLISHED,
        name="工业互联网平台",
        fields=("生产制造",),
        description="面向离散制造企业的设备联网、工艺参数采集、能耗分析和预测性维护平台。",
        cases="",
    )
    make.product(
        other,
        status=EntryStatus.PUBLISHED,
        name="乡村治理一张图",
        fields=("数字乡村",),
        description="整合村务公开、人居环境巡查、网格事件上报的乡村数字治理平台。",
        cases="",
    )
    from marketplace.services.matching.encoding import encode_missing
    from marketplace.services.matching.reports import get_service

    encode_missing(get_service())
    data = raw_xlsx("products", [product_cells(firm)])
    preview = imports.preview("products", data, "p.xlsx", actor=make.user(firm))
    assert preview.ok and preview.rows[0].action == CREATE
    assert [s.id for s in preview.rows[0].similar] == [published.id]
    assert preview.rows[0].similar[0].organization == other.name


# ---------------------------------------------------------------- apply


def test_member_import_creates_drafts_of_their_own_organization(firm, make):
    member = make.user(firm)
    data = raw_xlsx("products", [product_cells(None), product_cells(firm, 产品名称="工业视觉质检一体机")])
    summary = imports.apply("products", data, "p.xlsx", actor=member)
    assert summary.created == 2 and summary.updated == 0
    rows = _db.session.scalars(select(Product).order_by(Product.id)).all()
    assert {p.status for p in rows} == {EntryStatus.DRAFT}
    assert {p.owner_id for p in rows} == {firm.id}
    assert rows[0].categories == ["交通出行"] and rows[0].tags == ["人工智能", "物联网"]
    assert rows[0].created_by_id == member.id
    assert sorted(summary.created_ids) == [p.id for p in rows]


def test_member_cannot_import_for_another_organization(firm, make):
    other = make.org(name="别人家公司")
    data = raw_xlsx("products", [product_cells(other)])
    preview = imports.preview("products", data, "p.xlsx", actor=make.user(firm))
    assert preview.errors[0].message == "只能导入本单位的条目"


def test_apply_records_one_audit_event_with_the_counts(firm, make):
    member = make.user(firm)
    imports.apply("products", raw_xlsx("products", [product_cells(firm)]), "清单.xlsx", actor=member)
    events = _db.session.scalars(select(AuditEvent).where(AuditEvent.action == "import.products")).all()
    assert len(events) == 1
    assert "新增1条" in events[0].summary and "清单.xlsx" in events[0].summary
    assert events[0].actor_id == member.id


def test_reimport_is_unchanged_and_an_edit_is_an_update(firm, make):
    member = make.user(firm)
    imports.apply("products", raw_xlsx("products", [product_cells(firm)]), "p.xlsx", actor=member)
    same = imports.preview("products", raw_xlsx("products", [product_cells(firm)]), "p.xlsx", actor=member)
    assert [r.action for r in same.rows] == [UNCHANGED]
    edited = raw_xlsx("products", [product_cells(firm, 成熟度="试点应用", 技术标签="人工智能、物联网")])
    preview = imports.preview("products", edited, "p.xlsx", actor=member)
    assert preview.rows[0].action == UPDATE and preview.rows[0].changes == ["成熟度"]
    summary = imports.apply("products", edited, "p.xlsx", actor=member)
    assert summary.updated == 1
    assert _db.session.scalar(select(Product.maturity)) == "pilot"


def test_member_change_to_a_published_entry_becomes_a_revision(firm, make):
    member = make.user(firm)
    entry = make.product(firm, status=EntryStatus.PUBLISHED, name="城市级静态交通一体化运营平台")
    data = raw_xlsx("products", [product_cells(firm, 成熟度="试点应用", 技术标签="物联网")])
    preview = imports.preview("products", data, "p.xlsx", actor=member)
    assert preview.rows[0].action == UPDATE and "审核" in preview.rows[0].note
    summary = imports.apply("products", data, "p.xlsx", actor=member)
    assert summary.revisions == 1
    _db.session.refresh(entry)
    assert entry.maturity == "scale"  # the public row is untouched
    revision = _db.session.scalar(select(EntryRevision))
    assert revision.status == RevisionStatus.SUBMITTED and revision.data["maturity"] == "pilot"
    again = imports.preview("products", data, "p.xlsx", actor=member)
    assert again.rows[0].action == UNCHANGED  # the pending change counts as the current content


def test_member_cannot_change_an_entry_under_review(firm, make):
    member = make.user(firm)
    make.product(firm, status=EntryStatus.SUBMITTED, name="城市级静态交通一体化运营平台")
    data = raw_xlsx("products", [product_cells(firm, 成熟度="试点应用")])
    preview = imports.preview("products", data, "p.xlsx", actor=member)
    assert preview.rows[0].action == ERROR and "先撤回" in preview.rows[0].errors[0].message


def test_unverified_member_cannot_change_a_published_entry(make):
    firm = make.org(name="未认证公司", verified=False)
    make.product(firm, status=EntryStatus.PUBLISHED, name="城市级静态交通一体化运营平台")
    data = raw_xlsx("products", [product_cells(firm, 成熟度="试点应用")])
    preview = imports.preview("products", data, "p.xlsx", actor=make.user(firm))
    assert "认证" in preview.errors[0].message


def test_organizer_updates_a_published_entry_directly_and_tells_the_index(firm, make, organizer):
    entry = make.product(firm, status=EntryStatus.PUBLISHED, name="城市级静态交通一体化运营平台")
    before = _db.session.scalar(select(IndexState.version).where(IndexState.name == "entries")) or 0
    data = raw_xlsx("products", [product_cells(firm, 成熟度="试点应用", 技术标签="物联网")])
    summary = imports.apply("products", data, "p.xlsx", actor=organizer)
    assert summary.updated == 1 and summary.revisions == 0
    _db.session.refresh(entry)
    assert entry.maturity == "pilot" and entry.status == EntryStatus.PUBLISHED
    after = _db.session.scalar(select(IndexState.version).where(IndexState.name == "entries"))
    assert after == before + 1


def test_organizer_imports_into_an_open_batch_as_approved(firm, make, organizer):
    batch = make.batch("product")
    draft = make.product(firm, name="已有草稿产品")
    data = raw_xlsx(
        "products",
        [
            product_cells(firm),
            product_cells(
                firm,
                产品名称="已有草稿产品",
                产品介绍=draft.description,
                技术标签="物联网",
                应用领域="交通出行",
                典型案例=draft.cases,
            ),
        ],
    )
    preview = imports.preview("products", data, "p.xlsx", actor=organizer, batch=batch)
    assert [r.action for r in preview.rows] == [CREATE, UPDATE]
    assert preview.rows[1].changes == ["批次"]
    imports.apply("products", data, "p.xlsx", actor=organizer, batch=batch)
    rows = _db.session.scalars(select(Product)).all()
    assert {(p.status, p.batch_id) for p in rows} == {(EntryStatus.APPROVED, batch.id)}
    again = imports.preview("products", data, "p.xlsx", actor=organizer, batch=batch)
    assert [r.action for r in again.rows] == [UNCHANGED, UNCHANGED]


def test_published_batch_cannot_be_imported_into(firm, make, organizer):
    batch = make.batch("product", status=BatchStatus.PUBLISHED)
    with pytest.raises(InvalidTransition):
        imports.preview(
            "products", raw_xlsx("products", [product_cells(firm)]), "p.xlsx", actor=organizer, batch=batch
        )


def test_batch_of_the_other_kind_is_refused(firm, make, organizer):
    with pytest.raises(DomainError, match="同类清单"):
        imports.preview(
            "products",
            raw_xlsx("products", [product_cells(firm)]),
            "p.xlsx",
            actor=organizer,
            batch=make.batch("opportunity"),
        )


def test_withdrawn_entry_updated_by_import_becomes_a_draft(firm, make):
    member = make.user(firm)
    entry = make.product(firm, status=EntryStatus.WITHDRAWN, name="城市级静态交通一体化运营平台")
    imports.apply(
        "products", raw_xlsx("products", [product_cells(firm, 成熟度="研发中")]), "p.xlsx", actor=member
    )
    _db.session.refresh(entry)
    assert entry.status == EntryStatus.DRAFT and entry.maturity == "rnd"


def test_opportunities_import_with_budgets_and_modes(bureau, make):
    member = make.user(bureau)
    imports.apply(
        "opportunities", raw_xlsx("opportunities", [opportunity_cells(bureau)]), "o.xlsx", actor=member
    )
    entry = _db.session.scalar(select(Opportunity))
    assert entry.budget_min == Decimal("50") and entry.budget_max == Decimal("120")
    assert entry.cooperation_modes == ["procurement", "joint_rnd"] and entry.tier == "focused"
    assert entry.field_area == "数字生活" and entry.status == EntryStatus.DRAFT


def test_unchanged_past_deadline_of_an_existing_entry_is_not_an_error(bureau, make, organizer):
    past = date.today() - timedelta(days=30)
    make.opportunity(
        bureau, status=EntryStatus.PUBLISHED, deadline=past, title="老旧小区智慧停车诱导系统建设"
    )
    data = raw_xlsx("opportunities", [opportunity_cells(bureau, 答题截止日期=past)])
    preview = imports.preview("opportunities", data, "o.xlsx", actor=organizer)
    assert preview.ok and preview.rows[0].action == UNCHANGED


# ---------------------------------------------------------------- all or nothing


def test_a_failed_apply_leaves_every_touched_table_byte_for_byte_unchanged(firm, make):
    member = make.user(firm)
    make.product(firm, name="城市级静态交通一体化运营平台")
    before = table_digest(*TOUCHED)
    data = raw_xlsx(
        "products",
        [
            product_cells(firm, 成熟度="试点应用"),  # a valid update
            product_cells(firm, 产品名称="新产品一号"),  # a valid create
            product_cells(firm, 产品名称="新产品二号", 应用领域="不存在的领域"),  # invalid
        ],
    )
    with pytest.raises(imports.ImportValidationError) as info:
        imports.apply("products", data, "p.xlsx", actor=member)
    assert info.value.preview.counts[ERROR] == 1
    assert "第4行「应用领域」" in info.value.message
    _db.session.rollback()
    assert table_digest(*TOUCHED) == before


def test_a_database_error_mid_write_rolls_everything_back(firm, make, monkeypatch):
    member = make.user(firm)
    make.product(firm, name="城市级静态交通一体化运营平台")
    before = table_digest(*TOUCHED)
    real = imports._insert_entries

    def failing(*args, **kwargs):
        real(*args, **kwargs)  # the update and the new rows are written, then the disk fills up
        raise RuntimeError("disk full")

    monkeypatch.setattr(imports, "_insert_entries", failing)
    data = raw_xlsx(
        "products", [product_cells(firm, 成熟度="试点应用"), product_cells(firm, 产品名称="第二个产品")]
    )
    with pytest.raises(RuntimeError):
        imports.apply("products", data, "p.xlsx", actor=member)
    assert table_digest(*TOUCHED) == before


def test_apply_without_commit_leaves_the_commit_to_the_caller(firm, make):
    member = make.user(firm)
    imports.apply(
        "products", raw_xlsx("products", [product_cells(firm)]), "p.xlsx", actor=member, commit=False
    )
    assert _db.session.new or _db.session.scalar(select(func.count(Product.id))) == 1
    _db.session.rollback()
    assert _db.session.scalar(select(func.count(Product.id))) == 0


# ---------------------------------------------------------------- organizations


def test_organizers_import_organizations_unverified(organizer):
    data = raw_xlsx(
        "organizations",
        [
            org_cells(),
            org_cells(
                单位名称="萍乡市安源区政务服务中心",
                单位类型="政府部门",
                统一社会信用代码=factories.credit_code("government"),
                所在设区市="萍乡市",
                区县="安源区",
            ),
        ],
    )
    summary = imports.apply("organizations", data, "orgs.xlsx", actor=organizer)
    assert summary.created == 2
    orgs = _db.session.scalars(select(Organization).order_by(Organization.id)).all()
    assert [o.verified for o in orgs] == [False, False]
    assert orgs[0].kind == "institution" and orgs[1].region_county == "安源区"


def test_organization_rows_match_by_credit_code(make, organizer):
    org = make.org(name="旧名称公司", kind=OrgKind.ENTERPRISE)
    data = raw_xlsx(
        "organizations",
        [org_cells(单位名称="新名称公司", 单位类型="民营企业", 统一社会信用代码=org.credit_code)],
    )
    preview = imports.preview("organizations", data, "o.xlsx", actor=organizer)
    assert preview.rows[0].action == UPDATE and "单位名称" in preview.rows[0].changes
    imports.apply("organizations", data, "o.xlsx", actor=organizer)
    _db.session.refresh(org)
    assert org.name == "新名称公司"


@pytest.mark.parametrize(
    ("cells", "column"),
    [
        ({"统一社会信用代码": "91360100MA12345678"}, "统一社会信用代码"),
        ({"单位类型": "个体户"}, "单位类型"),
        ({"联系邮箱": "not-an-email"}, "联系邮箱"),
        ({"联系电话": "打电话"}, "联系电话"),
        ({"区县": "东湖区"}, "所在设区市"),
    ],
)
def test_organization_rows_are_checked_by_the_registration_rules(organizer, cells, column):
    preview = imports.preview(
        "organizations", raw_xlsx("organizations", [org_cells(**cells)]), "o.xlsx", actor=organizer
    )
    assert [e.column for e in preview.errors] == [column]


def test_organization_name_already_registered_is_an_error(make, organizer):
    make.org(name="赣州市章贡区大数据中心")
    preview = imports.preview(
        "organizations", raw_xlsx("organizations", [org_cells()]), "o.xlsx", actor=organizer
    )
    assert preview.errors[0].message == "该单位名称已注册"


# ---------------------------------------------------------------- permissions


def _batch_for(make, kind):
    return make.batch("product" if kind == "products" else "opportunity")


ROLES = ("anonymous", "member", "member_government", "organizer", "admin", "inactive_member")


def _user(make, role):
    from flask_login import AnonymousUserMixin

    if role == "anonymous":
        return AnonymousUserMixin()
    if role == "member":
        return make.user(make.org(kind=OrgKind.ENTERPRISE))
    if role == "member_government":
        return make.user(make.org(kind=OrgKind.GOVERNMENT))
    if role == "inactive_member":
        return make.user(make.org(kind=OrgKind.ENTERPRISE), active=False)
    return make.organizer() if role == "organizer" else make.admin()


@pytest.mark.parametrize(
    ("role", "kind", "with_batch", "allowed"),
    [
        ("anonymous", "products", False, False),
        ("member", "products", False, True),
        ("member", "opportunities", False, True),
        ("member", "organizations", False, False),
        ("member", "products", True, False),
        ("member_government", "products", False, False),
        ("member_government", "opportunities", False, True),
        ("inactive_member", "products", False, False),
        ("organizer", "products", False, True),
        ("organizer", "organizations", False, True),
        ("organizer", "opportunities", True, True),
        ("admin", "organizations", False, True),
        ("admin", "products", True, True),
    ],
)
def test_can_import_matrix(make, role, kind, with_batch, allowed):
    user = _user(make, role)
    batch = _batch_for(make, kind) if with_batch else None
    assert imports.can_import(user, kind, batch) is allowed


def test_member_preview_into_a_batch_is_refused(firm, make):
    with pytest.raises(PermissionDenied):
        imports.preview(
            "products",
            raw_xlsx("products", [product_cells(firm)]),
            "p.xlsx",
            actor=make.user(firm),
            batch=make.batch("product"),
        )


def test_member_cannot_import_organizations(firm, make):
    with pytest.raises(PermissionDenied):
        imports.apply(
            "organizations", raw_xlsx("organizations", [org_cells()]), "o.xlsx", actor=make.user(firm)
        )


def test_unknown_kind_is_a_clean_error(firm, make):
    with pytest.raises(sheets.ImportFileError):
        imports.preview("users", b"", "x.csv", actor=make.user(firm))


# ---------------------------------------------------------------- round trips


def _round_trip(kind, rows, fmt, actor):
    data = exports.export_file(kind, rows, fmt, trusted=True)
    return imports.preview(kind, data, f"export.{fmt}", actor=actor)


@pytest.mark.parametrize("fmt", ["xlsx", "csv"])
def test_round_trip_products_all_unchanged(make, organizer, fmt):
    firm = make.org(name="江西赣电智能科技有限公司")
    batch = make.batch("product", status=BatchStatus.PUBLISHED)
    make.product(
        firm,
        status=EntryStatus.PUBLISHED,
        batch=batch,
        name="配网故障智能研判系统",
        fields=("生产制造", "应急管理"),
        tags=("人工智能", "大数据", "物联网"),
        maturity="pilot",
        cases="=已在九江、上饶两地试点，故障定位时间缩短60%。",
        region_county=None,
    )
    make.product(firm, name="草稿：园区能耗监测", fields=("生产制造",), tags=(), cases="")
    make.product(firm, status=EntryStatus.WITHDRAWN, name="撤回的产品", description="描述" * 15)
    rows = exports.query_rows("products", exports.ExportFilters(), "all")
    assert len(rows) == 3
    preview = _round_trip("products", rows, fmt, organizer)
    assert preview.ok, preview.errors
    assert [r.action for r in preview.rows] == [UNCHANGED] * 3


@pytest.mark.parametrize("fmt", ["xlsx", "csv"])
def test_round_trip_opportunities_all_unchanged(make, organizer, fmt):
    bureau = make.org(kind=OrgKind.GOVERNMENT, name="九江市濂溪区应急管理局")
    make.opportunity(
        bureau,
        status=EntryStatus.PUBLISHED,
        title="山洪灾害智能监测预警",
        budget_min=Decimal("12.35"),
        budget_max=None,
        cooperation_modes=["joint_rnd", "other"],
        deadline=date.today() - timedelta(days=3),
        region_city="九江市",
        region_county="濂溪区",
        contact_phone="13907920000",
    )
    make.opportunity(
        bureau,
        title="应急物资仓储数字化",
        budget_min=None,
        budget_max=None,
        deadline=None,
        tier="major",
        field_category="应急管理",
        field_area="数字治理",
        region_county=None,
    )
    rows = exports.query_rows("opportunities", exports.ExportFilters(), "all")
    preview = _round_trip("opportunities", rows, fmt, organizer)
    assert preview.ok, preview.errors
    assert [r.action for r in preview.rows] == [UNCHANGED, UNCHANGED]


@pytest.mark.parametrize("fmt", ["xlsx", "csv"])
def test_round_trip_organizations_all_unchanged(make, organizer, fmt):
    make.org(
        kind=OrgKind.GOVERNMENT,
        name="上饶市信州区数据局",
        region_city="上饶市",
        region_county="信州区",
        contact_email="sjj@xinzhou.example.cn",
        address="上饶市信州区带湖路1号",
        intro="+负责数据资源管理。",
    )
    make.org(
        kind=OrgKind.RESEARCH,
        name="江西省科学院应用物理研究所",
        region_city="南昌市",
        region_county=None,
        contact_phone="13800000000",
    )
    rows = exports.query_rows("organizations", exports.ExportFilters(), "all")
    preview = _round_trip("organizations", rows, fmt, organizer)
    assert preview.ok, preview.errors
    assert [r.action for r in preview.rows] == [UNCHANGED, UNCHANGED]


def test_round_trip_import_then_export_gives_back_the_same_cells(firm, make):
    member = make.user(firm)
    data = raw_xlsx("products", [product_cells(firm)])
    imports.apply("products", data, "p.xlsx", actor=member)
    rows = exports.export_query("products", member, scope="mine")
    exported = sheets.read_table("products", exports.export_file("products", rows, "csv"), "x.csv")
    original = sheets.read_table("products", data, "p.xlsx")
    assert exported.rows[0][1]["产品名称"] == original.rows[0][1]["产品名称"]
    assert exported.rows[0][1]["技术标签"] == "人工智能、物联网"


def test_product_field_and_tag_rows_are_written(firm, make):
    imports.apply(
        "products",
        raw_xlsx("products", [product_cells(firm, 应用领域="交通出行、生产制造")]),
        "p.xlsx",
        actor=make.user(firm),
    )
    assert _db.session.scalar(select(func.count()).select_from(ProductField)) == 2
    assert _db.session.scalar(select(func.count()).select_from(ProductTag)) == 2


@pytest.mark.parametrize(("encoding", "bom"), [("gb18030", b""), ("utf-8", b"\xef\xbb\xbf"), ("utf-8", b"")])
def test_csv_files_in_gb18030_or_utf8_import_the_same_rows(firm, make, encoding, bom):
    member = make.user(firm)
    record = dict(sheets.sheet_for("products").example, org_name=firm.name, name="智慧停车云平台")
    text_csv = sheets.write_csv("products", [record])
    data = bom + text_csv.decode("utf-8-sig").encode(encoding)
    summary = imports.apply("products", data, "清单.csv", actor=member)
    assert summary.created == 1
    product = _db.session.scalar(select(Product))
    assert product.name == "智慧停车云平台"
    assert product.categories == ["交通出行", "新型智慧城市"]


@pytest.mark.parametrize("kind", sheets.KINDS)
def test_the_template_example_row_left_in_the_file_is_an_error(make, organizer, kind):
    make.org(kind=OrgKind.GOVERNMENT, name="南昌市东湖区数据局")
    make.org(kind=OrgKind.ENTERPRISE, name="江西省智联交通科技有限公司")
    preview = imports.preview(kind, sheets.template_workbook(kind), "模板.xlsx", actor=organizer)
    assert preview.rows[0].action == ERROR
    assert "示例行" in preview.rows[0].errors[0].message

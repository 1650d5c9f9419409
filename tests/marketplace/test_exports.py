"""List exports and the ``flask lists`` commands (issue 9 §3–§4)."""

from __future__ import annotations

import io

import pytest
from openpyxl import load_workbook
from sqlalchemy import func, select

from marketplace.extensions import db as _db
from marketplace.models import BatchStatus, EntryStatus, Opportunity, OrgKind, Product
from marketplace.services import exports
from marketplace.services import spreadsheets as sheets
from marketplace.services.errors import PermissionDenied, ValidationFailed
from marketplace.services.search import EntryFilters
from tests.marketplace.test_imports import org_cells, product_cells, raw_xlsx

# ---------------------------------------------------------------- visibility


@pytest.fixture
def listed(make):
    """A published, a draft and a submitted product of one firm, plus one of another firm."""
    firm = make.org(name="江西省智联交通科技有限公司")
    other = make.org(name="赣州稀金智造有限公司")
    return {
        "firm": firm,
        "published": make.product(firm, status=EntryStatus.PUBLISHED, name="公开的产品"),
        "draft": make.product(firm, name="草稿产品"),
        "submitted": make.product(firm, status=EntryStatus.SUBMITTED, name="待审核产品"),
        "other": make.product(
            other,
            status=EntryStatus.PUBLISHED,
            name="别家公开产品",
            fields=("生产制造",),
            region_city="赣州市",
            region_county="章贡区",
        ),
    }


def names(rows) -> set[str]:
    return {r.display_name for r in rows}


def test_public_export_holds_published_entries_only(listed):
    rows = exports.export_query("products", None)
    assert names(rows) == {"公开的产品", "别家公开产品"}


def test_public_export_applies_the_page_filters(listed):
    filters = exports.ExportFilters(entries=EntryFilters(city="赣州市"))
    assert names(exports.export_query("products", None, filters)) == {"别家公开产品"}
    filters = exports.ExportFilters(entries=EntryFilters(category="生产制造"))
    assert names(exports.export_query("products", None, filters)) == {"别家公开产品"}


def test_public_export_asking_for_drafts_gets_nothing(listed):
    filters = exports.ExportFilters(status=EntryStatus.DRAFT)
    assert exports.export_query("products", None, filters) == []


def test_member_exports_every_entry_of_their_own_organization(listed, make):
    member = make.user(listed["firm"])
    assert names(exports.export_query("products", member, scope="mine")) == {
        "公开的产品",
        "草稿产品",
        "待审核产品",
    }


def test_organizer_back_office_export_filters_by_status_and_batch(listed, make):
    organizer = make.organizer()
    filters = exports.ExportFilters(status=EntryStatus.SUBMITTED)
    assert names(exports.export_query("products", organizer, filters, scope="all")) == {"待审核产品"}
    assert len(exports.export_query("products", organizer, scope="all")) == 4


@pytest.mark.parametrize(
    ("role", "kind", "scope", "allowed"),
    [
        ("anonymous", "products", "public", True),
        ("anonymous", "products", "mine", False),
        ("anonymous", "products", "all", False),
        ("anonymous", "organizations", "public", False),
        ("member", "opportunities", "mine", True),
        ("member", "products", "all", False),
        ("member", "organizations", "all", False),
        ("organizer", "organizations", "all", True),
        ("organizer", "products", "all", True),
        ("admin", "opportunities", "all", True),
    ],
)
def test_can_export_matrix(make, role, kind, scope, allowed):
    user = {
        "anonymous": lambda: None,
        "member": lambda: make.user(make.org()),
        "organizer": make.organizer,
        "admin": make.admin,
    }[role]()
    assert exports.can_export(user, kind, scope) is allowed
    if not allowed:
        with pytest.raises(PermissionDenied):
            exports.export_query(kind, user, scope=scope)


def test_unknown_scope_and_status_are_validation_errors(make):
    with pytest.raises(ValidationFailed):
        exports.export_query("products", None, scope="everything")
    with pytest.raises(ValidationFailed):
        exports.export_query("products", make.organizer(), exports.ExportFilters(status="nope"), scope="all")


def test_unpublished_batch_is_not_exported_to_the_public(make):
    batch = make.batch("product")
    with pytest.raises(PermissionDenied):
        exports.batch_rows(None, batch)


def test_published_batch_export_holds_its_published_entries(make):
    firm = make.org()
    batch = make.batch("product", status=BatchStatus.PUBLISHED)
    make.product(firm, status=EntryStatus.PUBLISHED, batch=batch, name="批次内公开产品")
    make.product(firm, status=EntryStatus.PUBLISHED, name="批次外公开产品")
    assert names(exports.batch_rows(None, batch)) == {"批次内公开产品"}


def test_organization_export_filters_like_the_admin_list(make):
    make.org(kind=OrgKind.GOVERNMENT, name="南昌市数据局", verified=False)
    make.org(kind=OrgKind.ENTERPRISE, name="南昌某科技公司")
    rows = exports.export_query(
        "organizations", make.organizer(), exports.ExportFilters(verified=False), scope="all"
    )
    assert [r.name for r in rows] == ["南昌市数据局"]
    rows = exports.export_query("organizations", make.admin(), exports.ExportFilters(q="科技"), scope="all")
    assert [r.name for r in rows] == ["南昌某科技公司"]


# ---------------------------------------------------------------- files


def test_csv_export_is_utf8_with_bom_in_the_template_columns(listed):
    data = exports.export_file("products", exports.export_query("products", None), "csv")
    assert data.startswith(b"\xef\xbb\xbf")
    header = data.decode("utf-8-sig").splitlines()[0].split(",")
    assert header == sheets.sheet_for("products").headers


def test_xlsx_export_opens_with_openpyxl_in_the_template_columns(listed):
    data = exports.export_file("products", exports.export_query("products", None), "xlsx")
    ws = load_workbook(io.BytesIO(data))["产品清单"]
    assert [c.value for c in ws[1]] == sheets.sheet_for("products").headers
    assert ws.max_row == 3


def test_unknown_format_is_refused():
    with pytest.raises(ValidationFailed):
        exports.export_file("products", [], "pdf")


def test_export_filename_uses_the_batch_title(make):
    batch = make.batch("product", title="2026年第一批产品清单")
    assert exports.export_filename("products", "csv", batch) == "2026年第一批产品清单.csv"
    assert exports.export_filename("organizations", "xlsx") == "单位名录.xlsx"


# ---------------------------------------------------------------- CLI


def test_cli_dry_run_prints_counts_and_writes_nothing(runner, make, tmp_path):
    firm = make.org(name="江西省智联交通科技有限公司")
    make.admin()
    path = tmp_path / "products.xlsx"
    path.write_bytes(raw_xlsx("products", [product_cells(firm)]))
    result = runner.invoke(args=["lists", "import", "products", str(path), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "新增 1" in result.output and "未写入任何更改" in result.output
    assert _db.session.scalar(select(func.count(Product.id))) == 0


def test_cli_import_with_errors_exits_non_zero_and_prints_each_error(runner, make, tmp_path):
    firm = make.org(name="江西省智联交通科技有限公司")
    make.admin()
    path = tmp_path / "products.xlsx"
    path.write_bytes(
        raw_xlsx("products", [product_cells(firm), product_cells(firm, 产品名称="第二个", 成熟度="x")])
    )
    result = runner.invoke(args=["lists", "import", "products", str(path)])
    assert result.exit_code == 1
    assert "第3行「成熟度」" in result.output and "错误 1" in result.output
    assert _db.session.scalar(select(func.count(Product.id))) == 0


def test_cli_import_writes_as_the_given_account(runner, make, tmp_path):
    firm = make.org(name="江西省智联交通科技有限公司")
    member = make.user(firm)
    path = tmp_path / "products.csv"
    path.write_bytes(
        sheets.write_csv(
            "products", [dict(sheets.sheet_for("products").example, org_name=firm.name, name="停车云")]
        )
    )
    result = runner.invoke(args=["lists", "import", "products", str(path), "--as", member.email])
    assert result.exit_code == 0, result.output
    assert "新增1条" in result.output
    product = _db.session.scalar(select(Product))
    assert product.status == EntryStatus.DRAFT and product.created_by_id == member.id


def test_cli_member_cannot_import_organizations(runner, make, tmp_path):
    member = make.user(make.org())
    path = tmp_path / "orgs.xlsx"
    path.write_bytes(raw_xlsx("organizations", [org_cells()]))
    result = runner.invoke(args=["lists", "import", "organizations", str(path), "--as", member.email])
    assert result.exit_code == 1 and "只有组织方" in result.output


def test_cli_import_into_a_batch(runner, make, tmp_path):
    firm = make.org(name="江西省智联交通科技有限公司")
    make.admin()
    batch = make.batch("product")
    path = tmp_path / "products.xlsx"
    path.write_bytes(raw_xlsx("products", [product_cells(firm)]))
    result = runner.invoke(args=["lists", "import", "products", str(path), "--batch", str(batch.id)])
    assert result.exit_code == 0, result.output
    assert _db.session.scalar(select(Product.status)) == EntryStatus.APPROVED


def test_cli_bad_file_exits_non_zero_with_the_reason(runner, make, tmp_path):
    make.admin()
    path = tmp_path / "junk.xlsx"
    path.write_bytes(b"PK\x03\x04" + b"junk" * 100)
    result = runner.invoke(args=["lists", "import", "products", str(path)])
    assert result.exit_code == 1 and "Excel" in result.output


def test_cli_without_an_admin_asks_for_an_account(runner, tmp_path):
    path = tmp_path / "p.csv"
    path.write_bytes(b"x")
    result = runner.invoke(args=["lists", "import", "products", str(path)])
    assert result.exit_code == 1 and "--as" in result.output


def test_cli_export_then_dry_run_import_reports_every_row_unchanged(runner, make, tmp_path):
    bureau = make.org(kind=OrgKind.GOVERNMENT, name="南昌市东湖区数据局")
    make.admin()
    make.opportunity(bureau, status=EntryStatus.PUBLISHED, title="老旧小区智慧停车诱导系统建设")
    make.opportunity(bureau, title="社区养老服务智能监测")
    for fmt in ("xlsx", "csv"):
        path = tmp_path / f"opportunities.{fmt}"
        result = runner.invoke(args=["lists", "export", "opportunities", "-o", str(path)])
        assert result.exit_code == 0, result.output
        assert "2 行" in result.output
        result = runner.invoke(args=["lists", "import", "opportunities", str(path), "--dry-run"])
        assert result.exit_code == 0, result.output
        assert "新增 0  更新 0  无变化 2  错误 0" in result.output
    assert _db.session.scalar(select(func.count(Opportunity.id))) == 2


def test_cli_export_by_status_and_batch(runner, make, tmp_path):
    firm = make.org()
    batch = make.batch("product")
    make.product(firm, status=EntryStatus.APPROVED, batch=batch, name="入选产品")
    make.product(firm, name="草稿产品")
    path = tmp_path / "p.csv"
    result = runner.invoke(args=["lists", "export", "products", "-o", str(path), "--batch", str(batch.id)])
    assert result.exit_code == 0 and "1 行" in result.output
    assert "入选产品" in path.read_bytes().decode("utf-8-sig")
    result = runner.invoke(
        args=["lists", "export", "products", "-o", str(path), "--status", "draft", "--format", "csv"]
    )
    assert "草稿产品" in path.read_bytes().decode("utf-8-sig")


def test_cli_export_organizations_with_batch_is_a_usage_error(runner, tmp_path):
    result = runner.invoke(
        args=["lists", "export", "organizations", "-o", str(tmp_path / "o.xlsx"), "--batch", "1"]
    )
    assert result.exit_code == 2


def test_public_keyword_export_holds_the_ranked_hits_of_the_page(listed):
    filters = exports.ExportFilters(q="别家")
    assert names(exports.export_query("products", None, filters)) == {"别家公开产品"}


def test_back_office_keyword_export_matches_titles(listed, make):
    filters = exports.ExportFilters(q="草稿")
    assert names(exports.export_query("products", make.organizer(), filters, scope="all")) == {"草稿产品"}

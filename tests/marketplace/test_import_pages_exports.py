"""「导出 Excel」「导出 CSV」: the list and batch exports behind the buttons (issue 9 §4, the web side)."""

from __future__ import annotations

import csv
import io
import re
from urllib.parse import quote

import pytest
from flask import g
from openpyxl import load_workbook

from marketplace.models import BatchStatus, EntryStatus, OrgKind
from marketplace.services import spreadsheets
from tests.conftest import AuthActions

OPP_HEADERS = spreadsheets.sheet_for("opportunities").headers


class World:
    pass


@pytest.fixture
def world(make):
    w = World()
    w.bureau = make.org(kind=OrgKind.GOVERNMENT, name="南昌市东湖区数据局")
    w.jiujiang = make.org(kind=OrgKind.GOVERNMENT, name="九江市浔阳区住房和城乡建设局")
    w.firm = make.org(kind=OrgKind.ENTERPRISE, name="江西省智联交通科技有限公司")
    w.pending_org = make.org(kind=OrgKind.ENTERPRISE, name="上饶市信州区云帆信息技术有限公司", verified=False)
    w.member = make.user(w.bureau)
    w.firm_member = make.user(w.firm)
    w.organizer = make.organizer()
    w.admin = make.admin()
    w.published_batch = make.batch("opportunity", status=BatchStatus.PUBLISHED, title="2026年第一批机会清单")
    w.open_batch = make.batch("opportunity", title="2026年第二批机会清单")
    w.parking = make.opportunity(w.bureau, status=EntryStatus.PUBLISHED, batch=w.published_batch,
                                 title="老旧小区智慧停车诱导系统建设")
    w.flood = make.opportunity(w.jiujiang, status=EntryStatus.PUBLISHED, batch=w.published_batch,
                               title="城区内涝积水智能监测预警", region_city="九江市", region_county="浔阳区",
                               field_category="应急管理", field_area="数字治理",
                               description="城区低洼路段汛期易积水，需要部署积水监测设备并与排涝调度平台联动预警。")
    w.draft = make.opportunity(w.bureau, title="政务大厅智能导办机器人")
    w.approved = make.opportunity(w.bureau, status=EntryStatus.APPROVED, batch=w.open_batch,
                                  title="社区养老服务智能呼叫平台")
    w.product = make.product(w.firm, status=EntryStatus.PUBLISHED)
    w.draft_product = make.product(w.firm, name="园区能耗在线监测系统")
    return w


def login(client, user) -> AuthActions:
    g.pop("_login_user", None)
    g.pop("csrf_token", None)
    auth = AuthActions(client)
    if user is not None:
        assert auth.login(user).status_code == 302
    return auth


def csv_rows(reply) -> list[dict[str, str]]:
    assert reply.data.startswith("\ufeff".encode())  # Excel reads UTF-8 only with the BOM
    return list(csv.DictReader(io.StringIO(reply.data.decode("utf-8-sig"))))


def xlsx_rows(reply) -> tuple[list[str], list[dict[str, object]]]:
    ws = load_workbook(io.BytesIO(reply.data), read_only=True).worksheets[0]
    values = list(ws.iter_rows(values_only=True))
    header = [str(v) for v in values[0]]
    return header, [dict(zip(header, row, strict=False)) for row in values[1:] if any(row)]


def titles(rows) -> set[str]:
    return {r["标题"] for r in rows}


# ---------------------------------------------------------------- public lists


def test_public_csv_holds_only_published_entries_in_the_template_columns(world, client):
    reply = client.get("/imports/export/opportunities.csv")
    assert reply.status_code == 200
    assert reply.mimetype == "text/csv"
    rows = csv_rows(reply)
    assert list(rows[0].keys()) == OPP_HEADERS
    assert titles(rows) == {"老旧小区智慧停车诱导系统建设", "城区内涝积水智能监测预警"}


@pytest.mark.parametrize(
    ("role", "sees_contacts"),
    [("anonymous", False), ("pending_member", False), ("firm_member", True), ("member", True),
     ("organizer", True)],
)
def test_public_export_shows_contact_details_only_to_whoever_the_page_shows_them(
    world, client, make, role, sees_contacts
):
    users = {"anonymous": None, "pending_member": make.user(world.pending_org),
             "firm_member": world.firm_member, "member": world.member, "organizer": world.organizer}
    login(client, users[role])
    rows = csv_rows(client.get("/imports/export/opportunities.csv"))
    phones = {row["联系电话"] for row in rows}
    names = {row["联系人"] for row in rows}
    if sees_contacts:
        assert "" not in phones and "" not in names
    else:
        assert phones == {""} and names == {""}


def test_public_xlsx_is_readable_with_openpyxl(world, client):
    reply = client.get("/imports/export/opportunities.xlsx")
    assert reply.status_code == 200
    header, rows = xlsx_rows(reply)
    assert header == OPP_HEADERS
    assert titles(rows) == {"老旧小区智慧停车诱导系统建设", "城区内涝积水智能监测预警"}


def test_public_export_respects_the_list_filters(world, client):
    rows = csv_rows(client.get("/imports/export/opportunities.csv?city=九江市&county=浔阳区&page=2"))
    assert titles(rows) == {"城区内涝积水智能监测预警"}
    rows = csv_rows(client.get("/imports/export/opportunities.csv?area=数字治理"))
    assert titles(rows) == {"城区内涝积水智能监测预警"}


def test_public_export_respects_the_keyword(world, client):
    rows = csv_rows(client.get("/imports/export/opportunities.csv?q=停车"))
    assert titles(rows) == {"老旧小区智慧停车诱导系统建设"}


def test_public_product_export(world, client):
    reply = client.get("/imports/export/products.csv")
    names = {r["产品名称"] for r in csv_rows(reply)}
    assert names == {world.product.name}


def test_invalid_filter_values_are_dropped_as_the_list_page_drops_them(world, client):
    page = client.get("/opportunities?city=火星市")
    assert page.status_code == 200
    rows = csv_rows(client.get("/imports/export/opportunities.csv?city=火星市"))
    assert len(rows) == 2


def test_download_headers(world, client):
    reply = client.get("/imports/export/opportunities.xlsx")
    disposition = reply.headers["Content-Disposition"]
    assert disposition.startswith("attachment;")
    assert quote("机会清单.xlsx") in disposition
    assert reply.headers["X-Content-Type-Options"] == "nosniff"
    assert "no-store" in reply.headers["Cache-Control"]


# ---------------------------------------------------------------- back office and permissions


@pytest.mark.parametrize(
    ("role", "expected"),
    [("anonymous", 403), ("member", 403), ("firm_member", 403), ("organizer", 200), ("admin", 200)],
)
def test_organization_export_is_for_organizers(world, client, role, expected):
    login(client, None if role == "anonymous" else getattr(world, role))
    assert client.get("/imports/export/organizations.csv").status_code == expected


def test_organization_export_respects_the_admin_filters(world, client):
    login(client, world.organizer)
    rows = csv_rows(client.get("/imports/export/organizations.csv?verified=0"))
    assert {r["单位名称"] for r in rows} == {"上饶市信州区云帆信息技术有限公司"}
    rows = csv_rows(client.get("/imports/export/organizations.csv?kind=government&q=九江"))
    assert {r["单位名称"] for r in rows} == {"九江市浔阳区住房和城乡建设局"}


@pytest.mark.parametrize(
    ("role", "scope", "expected"),
    [
        ("anonymous", "all", 403),
        ("member", "all", 403),
        ("organizer", "all", 200),
        ("admin", "all", 200),
        ("anonymous", "mine", 403),
        ("member", "mine", 200),
        ("organizer", "mine", 403),
    ],
)
def test_back_office_scopes(world, client, role, scope, expected):
    login(client, None if role == "anonymous" else getattr(world, role))
    assert client.get(f"/imports/export/opportunities.csv?scope={scope}").status_code == expected


def test_a_member_exports_every_entry_of_their_own_organization(world, client):
    login(client, world.member)
    rows = csv_rows(client.get("/imports/export/opportunities.csv?scope=mine"))
    assert titles(rows) == {
        "老旧小区智慧停车诱导系统建设", "政务大厅智能导办机器人", "社区养老服务智能呼叫平台",
    }


def test_organizers_export_by_status(world, client):
    login(client, world.organizer)
    rows = csv_rows(client.get("/imports/export/opportunities.csv?scope=all&status=draft"))
    assert titles(rows) == {"政务大厅智能导办机器人"}
    rows = csv_rows(client.get(f"/imports/export/opportunities.csv?scope=all&batch={world.open_batch.id}"))
    assert titles(rows) == {"社区养老服务智能呼叫平台"}


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("/imports/export/opportunities.csv?scope=everything", 400),
        ("/imports/export/users.csv", 404),
        ("/imports/export/opportunities.pdf", 404),
        ("/imports/export/opportunities", 404),
        ("/imports/export/batch/abc.csv", 404),
        ("/imports/export/batch/99999999999.csv", 404),
        ("/imports/export/batch/424242.xlsx", 404),
    ],
)
def test_malformed_export_requests_are_4xx(world, client, url, expected):
    login(client, world.organizer)
    assert client.get(url).status_code == expected


def test_unknown_status_is_a_400(world, client):
    login(client, world.organizer)
    assert client.get("/imports/export/opportunities.csv?scope=all&status=lost").status_code == 400


# ---------------------------------------------------------------- batches


def test_published_batch_exports_its_published_entries_to_everyone(world, client, make):
    make.opportunity(world.bureau, status=EntryStatus.WITHDRAWN, batch=world.published_batch,
                     title="已撤回的需求")
    reply = client.get(f"/imports/export/batch/{world.published_batch.id}.xlsx")
    assert reply.status_code == 200
    assert quote("2026年第一批机会清单.xlsx") in reply.headers["Content-Disposition"]
    _, rows = xlsx_rows(reply)
    assert titles(rows) == {"老旧小区智慧停车诱导系统建设", "城区内涝积水智能监测预警"}


@pytest.mark.parametrize(("role", "expected"), [("anonymous", 403), ("member", 403), ("organizer", 200)])
def test_an_open_batch_is_exported_by_organizers_only(world, client, role, expected):
    login(client, None if role == "anonymous" else getattr(world, role))
    reply = client.get(f"/imports/export/batch/{world.open_batch.id}.csv")
    assert reply.status_code == expected
    if expected == 200:
        assert titles(csv_rows(reply)) == {"社区养老服务智能呼叫平台"}


# ---------------------------------------------------------------- the buttons


def test_list_pages_link_the_export_with_their_current_filters(world, client):
    page = client.get("/opportunities?city=九江市&page=1").get_data(as_text=True)
    links = re.findall(r'href="(/imports/export/opportunities\.(?:xlsx|csv)[^"]*)"', page)
    assert len(links) == 2
    assert all("city=%E4%B9%9D%E6%B1%9F%E5%B8%82" in link and "page=" not in link for link in links)
    assert "/imports/export/products.xlsx" in client.get("/products").get_data(as_text=True)


def test_batch_pages_link_the_batch_export(world, client):
    public = client.get(f"/batches/{world.published_batch.id}").get_data(as_text=True)
    assert f"/imports/export/batch/{world.published_batch.id}.xlsx" in public
    login(client, world.organizer)
    admin = client.get(f"/admin/batches/{world.open_batch.id}").get_data(as_text=True)
    assert f"/imports/export/batch/{world.open_batch.id}.csv" in admin
    assert f"/imports/?kind=opportunities&amp;batch={world.open_batch.id}" in admin


def test_admin_pages_link_import_and_export(world, client):
    login(client, world.organizer)
    organizations = client.get("/admin/organizations?verified=0").get_data(as_text=True)
    assert "/imports/export/organizations.xlsx?verified=0" in organizations
    assert 'href="/imports/"' in client.get("/admin/").get_data(as_text=True)


def test_workspace_links_the_import(world, client):
    login(client, world.member)
    assert 'href="/imports/"' in client.get("/my/").get_data(as_text=True)


# ---------------------------------------------------------------- round trip


def test_an_export_imports_back_unchanged(world, client):
    auth = login(client, world.organizer)
    exported = client.get("/imports/export/opportunities.xlsx").data
    reply = auth.post("/imports/", {"kind": "opportunities", "batch": "",
                                    "file": (io.BytesIO(exported), "export.xlsx")},
                      content_type="multipart/form-data")
    preview_id = int(reply.headers["Location"].rsplit("/", 1)[1])
    page = client.get(f"/imports/{preview_id}").get_data(as_text=True)
    assert re.search(r'data-count="unchanged">2<', page)
    assert "无需导入" in page
    assert f'action="/imports/{preview_id}/confirm"' not in page


def test_review_queue_links_the_export_of_submitted_entries(world, client, make):
    make.opportunity(world.bureau, status=EntryStatus.SUBMITTED, title="智慧社区养老服务平台建设")
    login(client, world.organizer)
    page = client.get("/admin/review?kind=opportunity").get_data(as_text=True)
    link = re.search(r'href="(/imports/export/opportunities\.csv\?[^"]+)"', page).group(1)
    rows = csv_rows(client.get(link.replace("&amp;", "&")))
    assert titles(rows) == {"智慧社区养老服务平台建设"}

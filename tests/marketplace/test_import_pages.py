"""批量导入 pages: upload → preview job → preview page → 确认导入 → apply job, with the permission
matrix of every route (issue 9 §3, the web side)."""

from __future__ import annotations

import csv
import io
import re
from datetime import date, timedelta

import pytest
from flask import g
from openpyxl import Workbook, load_workbook
from sqlalchemy import func, select

from marketplace.extensions import db
from marketplace.imports import tasks
from marketplace.models import (
    BatchStatus,
    EntryStatus,
    Job,
    JobStatus,
    Opportunity,
    Organization,
    OrgKind,
    Product,
    StoredFile,
)
from marketplace.services import spreadsheets, uploads
from tests.conftest import AuthActions

FUTURE = date.today() + timedelta(days=90)
ROLES = ("anonymous", "uploader", "colleague", "other_member", "organizer", "admin")


# ---------------------------------------------------------------- files


def opportunity_cells(publisher: str = "", **kw) -> dict[str, object]:
    cells = {
        "发布单位名称": publisher,
        "标题": "老旧小区智慧停车诱导系统建设",
        "需求描述": "辖区老旧小区停车位紧张，夜间车辆乱停乱放严重，需要建设停车诱导和泊位共享系统。",
        "应用领域": "交通出行",
        "场景层级": "高价值小切口场景",
        "所在设区市": "南昌市",
        "区县": "东湖区",
        "预算下限（万元）": "50",
        "预算上限（万元）": "120",
        "合作方式": "设备采购/租赁、联合研发",
        "答题截止日期": FUTURE.isoformat(),
        "联系人": "王敏",
        "联系电话": "0791-88123456",
    }
    cells.update(kw)
    return cells


def csv_file(kind: str, rows: list[dict[str, object]], encoding: str = "utf-8-sig") -> bytes:
    headers = spreadsheets.sheet_for(kind).headers
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(headers)
    for row in rows:
        writer.writerow([row.get(h, "") for h in headers])
    return out.getvalue().encode(encoding)


def xlsx_file(kind: str, rows: list[dict[str, object]]) -> bytes:
    headers = spreadsheets.sheet_for(kind).headers
    wb = Workbook()
    ws = wb.active
    ws.title = spreadsheets.sheet_for(kind).title
    ws.append(headers)
    for row in rows:
        ws.append([row.get(h) for h in headers])
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


TWO_NEEDS = [
    opportunity_cells(),
    opportunity_cells(标题="城区内涝积水智能监测预警", 应用领域="应急管理", 场景层级="行业领域集成式场景",
                      需求描述="城区低洼路段汛期易积水，需要部署积水监测设备并与排涝调度平台联动预警。"),
]


# ---------------------------------------------------------------- world


class World:
    pass


@pytest.fixture
def world(make):
    w = World()
    w.bureau = make.org(kind=OrgKind.GOVERNMENT, name="南昌市东湖区数据局")
    w.firm = make.org(kind=OrgKind.ENTERPRISE, name="江西省智联交通科技有限公司")
    w.uploader = make.user(w.bureau)
    w.colleague = make.user(w.bureau)
    w.other_member = make.user(w.firm)
    w.organizer = make.organizer()
    w.admin = make.admin()
    w.open_batch = make.batch("opportunity", title="2026年第二批机会清单")
    return w


def login(client, user) -> AuthActions:
    """Log ``user`` in on ``client`` (None: stay anonymous); clears what the shared app
    context caches from a previous client."""
    g.pop("_login_user", None)
    g.pop("csrf_token", None)
    auth = AuthActions(client)
    if user is not None:
        assert auth.login(user).status_code == 302
    return auth


def upload(auth: AuthActions, content: bytes, kind: str = "opportunities", filename: str = "needs.csv",
           batch: str = ""):
    return auth.post(
        "/imports/",
        {"kind": kind, "batch": batch, "file": (io.BytesIO(content), filename)},
        content_type="multipart/form-data",
    )


def job_id_of(reply) -> int:
    match = re.search(r"/jobs/(\d+)$", reply.headers["Location"])
    assert match, reply.headers.get("Location")
    return int(match.group(1))


@pytest.fixture
def previewed(world, app):
    """A clean two-row preview uploaded by ``world.uploader``; returns the preview job id."""
    auth = login(app.test_client(), world.uploader)
    return job_id_of(upload(auth, csv_file("opportunities", TWO_NEEDS)))


def _scalar(stmt):
    return db.session.scalar(stmt)


def _scalar_all(stmt) -> list:
    return list(db.session.scalars(stmt))


def count(model) -> int:
    return _scalar(select(func.count()).select_from(model))


# ---------------------------------------------------------------- the flow


def test_upload_creates_a_preview_job_and_redirects_to_its_page(world, client):
    auth = login(client, world.uploader)
    reply = upload(auth, csv_file("opportunities", TWO_NEEDS))
    assert reply.status_code == 302
    job = _scalar(select(Job).where(Job.id == job_id_of(reply)))
    assert job.kind == tasks.PREVIEW_JOB
    assert job.status == JobStatus.SUCCEEDED  # immediate mode in tests
    assert job.actor_id == world.uploader.id
    assert job.file.purpose == "import" and job.file.content_type == "text/csv"
    assert job.result["url"] == f"/imports/{job.id}"
    page = client.get(f"/jobs/{job.id}").get_data(as_text=True)
    assert f'href="/imports/{job.id}"' in page


def test_preview_page_shows_counts_rows_and_the_confirm_button(world, client, previewed):
    login(client, world.uploader)
    page = client.get(f"/imports/{previewed}").get_data(as_text=True)
    assert re.search(r'data-count="create">2<', page)
    assert re.search(r'data-count="error">0<', page)
    assert "老旧小区智慧停车诱导系统建设" in page and "城区内涝积水智能监测预警" in page
    assert "确认导入" in page and f'action="/imports/{previewed}/confirm"' in page
    assert "data-confirm=" in page
    assert count(Opportunity) == 0  # nothing written before the confirmation


def test_confirm_applies_the_same_file_as_drafts_of_the_uploaders_organization(world, client, previewed):
    auth = login(client, world.uploader)
    reply = auth.post(f"/imports/{previewed}/confirm")
    assert reply.status_code == 302
    apply_id = int(reply.headers["Location"].rsplit("/", 1)[1])
    job = _scalar(select(Job).where(Job.id == apply_id))
    preview_job = _scalar(select(Job).where(Job.id == previewed))
    assert job.kind == tasks.APPLY_JOB and job.status == JobStatus.SUCCEEDED
    assert job.file_id == preview_job.file_id
    rows = _scalar_all(select(Opportunity).order_by(Opportunity.id))
    assert [r.title for r in rows] == ["老旧小区智慧停车诱导系统建设", "城区内涝积水智能监测预警"]
    assert {r.status for r in rows} == {EntryStatus.DRAFT}
    assert {r.publisher_id for r in rows} == {world.bureau.id}
    assert {r.batch_id for r in rows} == {None}


def test_result_page_says_what_was_written_and_links_the_workspace(world, client, previewed):
    auth = login(client, world.uploader)
    result_url = auth.post(f"/imports/{previewed}/confirm").headers["Location"]
    page = client.get(result_url).get_data(as_text=True)
    assert "已写入：新增 2 条，更新 0 条，无变化 0 条" in page
    assert 'href="/my/?status=draft"' in page


def test_confirming_twice_imports_once(world, client, previewed):
    auth = login(client, world.uploader)
    auth.post(f"/imports/{previewed}/confirm")
    again = auth.post(f"/imports/{previewed}/confirm", follow_redirects=True)
    assert "该文件已确认导入" in again.get_data(as_text=True)
    assert count(Opportunity) == 2
    assert _scalar(select(func.count()).select_from(Job).where(Job.kind == tasks.APPLY_JOB)) == 1


def test_the_preview_page_links_the_result_once_confirmed(world, client, previewed):
    auth = login(client, world.uploader)
    apply_url = auth.post(f"/imports/{previewed}/confirm").headers["Location"]
    page = client.get(f"/imports/{previewed}").get_data(as_text=True)
    assert f'href="{apply_url}"' in page
    assert f'action="/imports/{previewed}/confirm"' not in page


def test_an_xlsx_file_goes_through_the_same_flow(world, client):
    auth = login(client, world.uploader)
    reply = upload(auth, xlsx_file("opportunities", TWO_NEEDS[:1]), filename="needs.xlsx")
    job = _scalar(select(Job).where(Job.id == job_id_of(reply)))
    assert job.file.content_type == uploads.XLSX
    assert job.result["preview"]["counts"]["create"] == 1


def test_a_gb18030_csv_is_read(world, client):
    auth = login(client, world.uploader)
    reply = upload(auth, csv_file("opportunities", TWO_NEEDS, encoding="gb18030"))
    job = _scalar(select(Job).where(Job.id == job_id_of(reply)))
    assert job.result["preview"]["counts"] == {"create": 2, "update": 0, "unchanged": 0, "error": 0}


def test_organizer_imports_into_an_open_batch_as_approved(world, client):
    auth = login(client, world.organizer)
    rows = [opportunity_cells(world.bureau.name), opportunity_cells(world.firm.name, 标题="园区能耗在线监测")]
    reply = upload(auth, csv_file("opportunities", rows), batch=str(world.open_batch.id))
    preview_id = job_id_of(reply)
    page = client.get(f"/imports/{preview_id}").get_data(as_text=True)
    assert "导入批次「2026年第二批机会清单」" in page
    result_url = auth.post(f"/imports/{preview_id}/confirm").headers["Location"]
    entries = _scalar_all(select(Opportunity).order_by(Opportunity.id))
    assert {e.status for e in entries} == {EntryStatus.APPROVED}
    assert {e.batch_id for e in entries} == {world.open_batch.id}
    assert {e.publisher_id for e in entries} == {world.bureau.id, world.firm.id}
    result = client.get(result_url).get_data(as_text=True)
    assert f'href="/admin/batches/{world.open_batch.id}"' in result


def test_organizer_imports_organizations(world, client):
    from tests import factories

    auth = login(client, world.organizer)
    code = factories.credit_code("institution")
    row = {"单位名称": "赣州市章贡区大数据中心", "单位类型": "事业单位", "统一社会信用代码": code,
           "所在设区市": "赣州市", "区县": "章贡区", "联系人": "刘洋", "联系电话": "0797-8201234"}
    preview_id = job_id_of(upload(auth, csv_file("organizations", [row]), kind="organizations"))
    auth.post(f"/imports/{preview_id}/confirm")
    org = _scalar(select(Organization).where(Organization.credit_code == code))
    assert org is not None and org.name == "赣州市章贡区大数据中心" and not org.verified


def test_products_import_for_a_firm(world, client):
    auth = login(client, world.other_member)
    headers = spreadsheets.sheet_for("products").headers
    row = dict.fromkeys(headers, "")
    row.update({"产品名称": "城市级静态交通一体化运营平台",
                "产品介绍": "基于地磁与高位视频的泊位检测，提供车位引导、反向寻车、无感支付和运营分析。",
                "应用领域": "交通出行", "技术标签": "物联网", "成熟度": "规模化推广",
                "所在设区市": "南昌市", "区县": "青山湖区"})
    preview_id = job_id_of(upload(auth, csv_file("products", [row]), kind="products"))
    auth.post(f"/imports/{preview_id}/confirm")
    product = _scalar(select(Product))
    assert product.owner_id == world.firm.id and product.status == EntryStatus.DRAFT


def test_progress_page_is_shown_until_the_job_finishes(world, client, previewed):
    job = _scalar(select(Job).where(Job.id == previewed))
    job.status = JobStatus.RUNNING
    db.session.commit()
    login(client, world.uploader)
    page = client.get(f"/imports/{previewed}").get_data(as_text=True)
    assert "data-job-progress" in page and "jobs.js" in page
    assert "确认导入" not in page.split("<main", 1)[1].split("</h1>", 1)[1]


def test_near_duplicates_of_published_entries_link_the_existing_entry(world, client, make):
    from marketplace.services.matching.encoding import encode_missing
    from marketplace.services.matching.reports import get_service

    existing = make.opportunity(world.firm, status=EntryStatus.PUBLISHED, title="老旧小区停车诱导与泊位共享")
    make.opportunity(world.firm, status=EntryStatus.PUBLISHED, title="工业园区能耗在线监测",
                     field_category="生产制造", field_area="智能生产",
                     description="面向园区重点用能企业的电、水、气能耗采集、分析和异常预警平台。")
    make.opportunity(world.firm, status=EntryStatus.PUBLISHED, title="乡村治理一张图",
                     field_category="数字乡村", field_area="数字治理",
                     description="整合村务公开、人居环境巡查、网格事件上报的乡村数字治理平台。")
    encode_missing(get_service())
    auth = login(client, world.uploader)
    preview_id = job_id_of(upload(auth, csv_file("opportunities", TWO_NEEDS[:1])))
    page = client.get(f"/imports/{preview_id}").get_data(as_text=True)
    assert "相似的已发布条目" in page
    assert f'href="/opportunities/{existing.id}"' in page
    assert f'action="/imports/{preview_id}/confirm"' in page  # a warning, not a block


def test_a_batch_published_after_the_preview_cannot_be_confirmed(world, client, db):
    auth = login(client, world.organizer)
    rows = [opportunity_cells(world.bureau.name)]
    preview_id = job_id_of(upload(auth, csv_file("opportunities", rows), batch=str(world.open_batch.id)))
    world.open_batch.status = BatchStatus.PUBLISHED
    db.session.commit()
    reply = auth.post(f"/imports/{preview_id}/confirm", follow_redirects=True)
    assert "该批次已发布，不能再导入条目" in reply.get_data(as_text=True)
    assert count(Opportunity) == 0


# ---------------------------------------------------------------- errors write nothing


def test_an_error_file_lists_its_errors_and_offers_no_confirmation(world, client):
    auth = login(client, world.uploader)
    bad = [opportunity_cells(), opportunity_cells(标题="智慧路灯", 应用领域="不存在的领域")]
    preview_id = job_id_of(upload(auth, csv_file("opportunities", bad)))
    page = client.get(f"/imports/{preview_id}").get_data(as_text=True)
    assert re.search(r"第 3 行「应用领域」：", page)
    assert "本次不会写入任何数据" in page
    assert f'action="/imports/{preview_id}/confirm"' not in page
    assert 'href="/imports/?kind=opportunities"' in page  # upload again
    assert re.search(r'data-count="error">1<', page)


def test_confirming_an_error_file_anyway_writes_nothing(world, client):
    auth = login(client, world.uploader)
    bad = [opportunity_cells(联系电话="abc")]
    preview_id = job_id_of(upload(auth, csv_file("opportunities", bad)))
    reply = auth.post(f"/imports/{preview_id}/confirm", follow_redirects=True)
    assert "文件中有错误" in reply.get_data(as_text=True)
    assert count(Opportunity) == 0
    assert _scalar(select(func.count()).select_from(Job).where(Job.kind == tasks.APPLY_JOB)) == 0


def test_an_unreadable_file_is_reported_on_the_preview_page(world, client):
    auth = login(client, world.uploader)
    wrong_columns = "名称,描述\n智慧停车,老旧小区停车难\n".encode()
    preview_id = job_id_of(upload(auth, wrong_columns))
    page = client.get(f"/imports/{preview_id}").get_data(as_text=True)
    assert "文件无法导入" in page and 'id="import-file-errors"' in page
    assert "确认导入" not in page


def test_an_apply_that_finds_new_errors_fails_and_writes_nothing(world, client, previewed, make):
    # apply() reads the stored file again and checks every row again; here the file on disk no
    # longer matches what was previewed (a row now has a county that does not exist).
    auth = login(client, world.uploader)
    job = _scalar(select(Job).where(Job.id == previewed))
    path = uploads.open_file(job.file)
    path.write_bytes(csv_file("opportunities", [opportunity_cells(区县="不存在区")]))
    reply = auth.post(f"/imports/{previewed}/confirm", follow_redirects=True)
    page = reply.get_data(as_text=True)
    assert "导入失败，未写入任何更改" in page
    assert count(Opportunity) == 0
    applied = _scalar(select(Job).where(Job.kind == tasks.APPLY_JOB))
    assert applied.status == JobStatus.FAILED


@pytest.mark.parametrize(
    ("content", "filename", "message"),
    [
        (b"%PDF-1.4\n%%EOF\n", "needs.csv", "只接受 XLSX、CSV 文件"),
        (b"\x00\x01\x02\x03junk" * 100, "needs.xlsx", "只接受 XLSX、CSV 文件"),
        (b"PK\x03\x04not really a zip", "needs.xlsx", "只接受 XLSX、CSV 文件"),
        (b"", "needs.csv", "文件为空"),
    ],
    ids=["pdf", "binary-junk", "broken-zip", "empty"],
)
def test_files_that_are_not_spreadsheets_are_refused_beside_the_field(world, client, content, filename,
                                                                      message):
    auth = login(client, world.uploader)
    reply = upload(auth, content, filename=filename)
    assert reply.status_code == 400
    assert message in reply.get_data(as_text=True)
    assert count(Job) == 0 and count(StoredFile) == 0


def test_a_file_over_the_import_limit_is_refused(world, client, app, monkeypatch):
    monkeypatch.setitem(app.config, "IMPORT_MAX_BYTES", 1024)
    auth = login(client, world.uploader)
    reply = upload(auth, csv_file("opportunities", TWO_NEEDS * 10))
    assert reply.status_code == 400
    assert "文件不能超过" in reply.get_data(as_text=True)
    assert count(Job) == 0


def test_missing_file_and_kind_are_form_errors(world, client):
    auth = login(client, world.uploader)
    reply = auth.post("/imports/", {"kind": ""}, content_type="multipart/form-data")
    page = reply.get_data(as_text=True)
    assert reply.status_code == 400
    assert "请选择要导入的清单类型" in page and "请选择要导入的文件" in page


# ---------------------------------------------------------------- permissions


def _user(world, role):
    return None if role == "anonymous" else getattr(world, role)


@pytest.mark.parametrize(
    ("role", "expected"),
    [("anonymous", 302), ("uploader", 200), ("other_member", 200), ("organizer", 200), ("admin", 200)],
)
def test_upload_page_access(world, client, role, expected):
    login(client, _user(world, role))
    reply = client.get("/imports/")
    assert reply.status_code == expected
    if expected == 302:
        assert "/auth/login" in reply.headers["Location"]


def test_members_are_offered_their_own_lists_only(world, app):
    bureau = app.test_client()
    login(bureau, world.uploader)  # a government bureau: needs only
    page = bureau.get("/imports/").get_data(as_text=True)
    assert 'value="opportunities"' in page
    assert 'value="products"' not in page and 'value="organizations"' not in page
    assert 'name="batch"' not in page
    firm = app.test_client()
    login(firm, world.other_member)  # a firm: needs and products
    page = firm.get("/imports/").get_data(as_text=True)
    assert 'value="products"' in page and 'value="organizations"' not in page


def test_organizers_are_offered_all_lists_and_open_batches(world, client, make):
    closed = make.batch("opportunity", status=BatchStatus.PUBLISHED, title="2026年第一批机会清单")
    login(client, world.organizer)
    page = client.get("/imports/").get_data(as_text=True)
    for kind in ("opportunities", "products", "organizations"):
        assert f'value="{kind}"' in page
    assert f'value="{world.open_batch.id}"' in page
    assert f'value="{closed.id}"' not in page


@pytest.mark.parametrize(
    ("role", "kind", "expected"),
    [
        ("anonymous", "opportunities", 302),
        ("uploader", "opportunities", 200),
        ("uploader", "products", 403),  # a government bureau owns no products
        ("uploader", "organizations", 403),
        ("other_member", "products", 200),
        ("organizer", "organizations", 200),
        ("admin", "products", 200),
    ],
)
def test_template_download_access(world, client, role, kind, expected):
    login(client, _user(world, role))
    reply = client.get(f"/imports/templates/{kind}.xlsx")
    assert reply.status_code == expected
    if expected == 200:
        wb = load_workbook(io.BytesIO(reply.data), read_only=True)
        header = [c.value for c in next(wb.worksheets[0].iter_rows(max_row=1))]
        assert header == spreadsheets.sheet_for(kind).headers
        assert "attachment" in reply.headers["Content-Disposition"]


def test_member_cannot_import_organizations(world, client):
    auth = login(client, world.other_member)
    reply = upload(auth, csv_file("organizations", []), kind="organizations")
    assert reply.status_code == 400
    assert "请选择可导入的清单类型" in reply.get_data(as_text=True)
    assert count(Job) == 0


def test_member_cannot_import_into_a_batch(world, client):
    auth = login(client, world.uploader)
    reply = upload(auth, csv_file("opportunities", TWO_NEEDS), batch=str(world.open_batch.id))
    assert reply.status_code == 400
    assert count(Job) == 0


def test_member_cannot_import_for_another_organization(world, client):
    auth = login(client, world.uploader)
    preview_id = job_id_of(upload(auth, csv_file("opportunities", [opportunity_cells(world.firm.name)])))
    page = client.get(f"/imports/{preview_id}").get_data(as_text=True)
    assert re.search(r"第 2 行「发布单位名称」：", page)
    assert f'action="/imports/{preview_id}/confirm"' not in page
    auth.post(f"/imports/{preview_id}/confirm")
    assert count(Opportunity) == 0


def test_organizer_batch_of_the_wrong_kind_is_a_form_error(world, client, make):
    products_batch = make.batch("product", title="2026年第二批产品清单")
    auth = login(client, world.organizer)
    reply = upload(auth, csv_file("opportunities", TWO_NEEDS), batch=str(products_batch.id))
    assert reply.status_code == 400
    assert "不是机会清单的批次" in reply.get_data(as_text=True)


@pytest.mark.parametrize(
    ("role", "expected"),
    [("anonymous", 302), ("uploader", 200), ("colleague", 403), ("other_member", 403),
     ("organizer", 200), ("admin", 200)],
)
def test_preview_page_access(world, app, previewed, role, expected):
    viewer = app.test_client()
    login(viewer, _user(world, role))
    assert viewer.get(f"/imports/{previewed}").status_code == expected


@pytest.mark.parametrize(
    ("role", "expected"),
    [("anonymous", 302), ("colleague", 403), ("other_member", 403), ("organizer", 403), ("admin", 403),
     ("uploader", 302)],
)
def test_only_the_uploader_confirms(world, app, previewed, role, expected):
    viewer = app.test_client()
    auth = login(viewer, _user(world, role))
    reply = auth.post(f"/imports/{previewed}/confirm")
    assert reply.status_code == expected
    assert count(Opportunity) == (2 if role == "uploader" else 0)


def test_organizers_see_a_members_preview_without_the_confirm_button(world, app, previewed):
    viewer = app.test_client()
    login(viewer, world.organizer)
    page = viewer.get(f"/imports/{previewed}").get_data(as_text=True)
    assert "只有上传该文件的用户可以确认导入" in page
    assert f'action="/imports/{previewed}/confirm"' not in page


def test_confirm_needs_the_csrf_token(world, client, previewed):
    login(client, world.uploader)
    assert client.post(f"/imports/{previewed}/confirm").status_code == 400
    assert count(Opportunity) == 0


@pytest.mark.parametrize(
    "url",
    ["/imports/abc", "/imports/0", "/imports/99999999999", "/imports/123456",
     "/imports/templates/users.xlsx", "/imports/templates/opportunities.csv"],
)
def test_malformed_or_unknown_ids_are_404(world, client, url):
    login(client, world.organizer)
    assert client.get(url).status_code == 404


def test_a_job_of_another_kind_is_not_an_import(world, client, make):
    from marketplace.services import jobs as job_records

    other = job_records.create("matching.encode_entries", title="更新匹配索引向量")
    login(client, world.organizer)
    assert client.get(f"/imports/{other.id}").status_code == 404


def test_unknown_action_filter_shows_every_row(world, client, previewed):
    login(client, world.uploader)
    reply = client.get(f"/imports/{previewed}?action=bogus&page=x")
    assert reply.status_code == 200
    assert "城区内涝积水智能监测预警" in reply.get_data(as_text=True)


def test_action_filter_and_pagination(world, client, monkeypatch):
    from marketplace.imports import routes

    monkeypatch.setattr(routes, "ROWS_PER_PAGE", 2)
    auth = login(client, world.uploader)
    rows = [opportunity_cells(标题=f"智慧社区试点项目第{i}期") for i in range(1, 6)]
    rows.append(opportunity_cells(标题="错误行", 场景层级="超大场景"))
    preview_id = job_id_of(upload(auth, csv_file("opportunities", rows)))
    errors = client.get(f"/imports/{preview_id}?action=error").get_data(as_text=True)
    assert "错误行" in errors and "智慧社区试点项目第1期" not in errors
    page3 = client.get(f"/imports/{preview_id}?page=3").get_data(as_text=True)
    assert "智慧社区试点项目第5期" in page3 and "智慧社区试点项目第1期" not in page3
    assert "第 3/3 页" in page3

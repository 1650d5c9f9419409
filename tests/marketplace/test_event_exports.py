"""Exports of an event: the XLSX workbook read back with openpyxl, the registrations CSV (BOM,
Chinese headers, formula injection defused), the printable 对接名单, organizers only."""

from __future__ import annotations

import csv
import io

import pytest
from openpyxl import load_workbook

from marketplace.services import event_exports as exports
from marketplace.services import events as events_service
from marketplace.services import meetings as meeting_service
from tests.marketplace import test_meetings as meeting_tests

ROLES, _login = meeting_tests.ROLES, meeting_tests._login
# The 供需对接会 of test_meetings.py, scheduled (fixtures).
clock, world = meeting_tests.clock, meeting_tests.world
planned, scheduled = meeting_tests.planned, meeting_tests.scheduled


@pytest.fixture
def exported(scheduled, make):
    """The scheduled world plus registrations, one of them by a firm whose texts look like formulas."""
    w = scheduled
    events_service.register(w.firm_user, w.event, "拟派2人参加", [w.product.id])
    w.evil = make.org(name="=HYPERLINK(\"http://evil.example\",\"点我\")", contact_name="+86 张三",
                      contact_phone="-1+1", contact_email="@SUM(A1)")
    evil_user = make.user(w.evil)
    events_service.register(evil_user, w.event, "=1+2")
    return w


def book(w):
    return load_workbook(io.BytesIO(exports.workbook(w.event)))


def rows_of(sheet, first: int):
    return [[c.value for c in row] for row in sheet.iter_rows(min_row=first)]


# ---------------------------------------------------------------- XLSX


def test_the_workbook_has_a_summary_and_one_sheet_per_need(exported):
    w = exported
    workbook = book(w)
    names = workbook.sheetnames
    assert names[0] == "概况" and len(names) == 3
    assert names[1].startswith("1 中心城区智慧停车诱导系统建设") and names[2].startswith("2 重点区域视频监控")
    summary = workbook["概况"]
    assert summary["A1"].value == w.event.title and summary["A1"].font.b
    facts = {r[0]: r[1] for r in rows_of(summary, 3) if r[0]}
    assert facts["活动类型"] == "供需对接会" and facts["状态"] == "报名中"
    assert facts["时间"] == "2026-12-16 14:00–17:30"
    assert facts["展示需求（项）"] == 2 and facts["报名（家）"] == 2 and facts["　报名待确认"] == 2
    assert facts["　邀请确认参加"] == 3 and facts["　邀请待答复"] == 1 and facts["　邀请婉拒"] == 1
    assert facts["1:1 洽谈（场）"] == 3 and facts["　洽谈已排期"] == 3
    header = next(r for r in summary.iter_rows() if r[0].value == "序号")
    assert [c.value for c in header] == ["序号", "需求", "发布单位", "名单企业（家）", "确认参加（家）",
                                        "洽谈（场）", "工作表"]
    assert all(c.font.b for c in header)
    need_rows = [[c.value for c in r] for r in summary.iter_rows(min_row=header[0].row + 1)]
    assert need_rows[0][:6] == [1, w.need.title, "南昌市交通运输局", 3, 2, 2] and need_rows[0][6] == names[1]


def test_a_need_sheet_lists_the_shortlist_with_invitations_and_meeting_times(exported):
    w = exported
    sheet = book(w).worksheets[1]
    assert sheet["A1"].value == w.need.title
    assert [c.value for c in sheet[3]] == exports.SHORTLIST_HEADERS
    assert all(c.font.b for c in sheet[3]) and sheet.freeze_panes == "A4"
    assert sheet.column_dimensions["B"].width == 30 and sheet.column_dimensions["E"].width == 60
    lines = {r[1]: r for r in rows_of(sheet, 4)}
    firm = lines[w.firm.name]
    assert firm[0] == 1 and firm[2] == w.product.name and firm[6] == "陈志远"
    assert isinstance(firm[3], int) and 0 < firm[3] <= 100 and firm[4].startswith("推荐理由")
    assert firm[9] == "确认参加"
    meeting = next(m for m in meeting_service.meetings_of(w.event)
                   if m.organization_id == w.firm.id and m.opportunity_id == w.need.id)
    assert firm[10] == exports.meeting_time(meeting) and "第" in firm[10] and "12-16" in firm[10]
    assert lines[w.other_firm.name][9] == "待答复" and lines[w.other_firm.name][10] is None
    assert "手动添加" in lines[w.second.name][5] or "推荐" in lines[w.second.name][5]


def test_text_that_looks_like_a_formula_stays_text(exported, db):
    w = exported
    w.a_firm.note = "=SUM(1,2)"
    db.session.commit()
    sheet = book(w).worksheets[1]
    cell = next(c for c in sheet["L"] if c.value == "=SUM(1,2)")
    assert cell.data_type == "s"
    assert not any(c.data_type == "f" for row in sheet.iter_rows() for c in row)


def test_a_need_without_a_shortlist_still_gets_its_sheet(world, make):
    from datetime import date

    from marketplace.models import EntryStatus

    third = make.opportunity(world.publisher, status=EntryStatus.PUBLISHED, deadline=date(2026, 12, 31),
                             title="公交驾驶员疲劳驾驶与异常行为智能监测 / 试点[一期]：车载终端*")
    events_service.add_need(world.organizer, world.event, third.id)
    workbook = book(world)
    sheet = workbook.worksheets[3]
    assert sheet.title.startswith("3 公交驾驶员疲劳驾驶与异常行为智能监测 _ 试点")
    assert sheet["A4"].value == "尚未生成对接名单"


@pytest.mark.parametrize(
    "titles",
    [
        ["字" * 60, "字" * 60],
        ["a/b\\c[d]e:f*g?h", "'quoted'", ""],
        [f"需求{i}" for i in range(1, 120)],
    ],
)
def test_sheet_names_are_short_unique_and_legal(titles):
    names = exports.sheet_names(titles, taken={"概况"})
    assert len(names) == len(titles) and len({n.lower() for n in names}) == len(names)
    for name in names:
        assert 0 < len(name) <= 31 and not any(ch in name for ch in "[]:*?/\\")
        assert name != "概况" and not name.startswith("'") and not name.endswith("'")


def test_the_workbook_opens_with_unique_names_even_for_equal_titles(world, make):
    from datetime import date

    from marketplace.models import EntryStatus

    for _ in range(2):
        need = make.opportunity(world.publisher, status=EntryStatus.PUBLISHED, deadline=date(2026, 12, 31),
                                title="智慧停车" * 12)
        events_service.add_need(world.organizer, world.event, need.id)
    names = book(world).sheetnames
    assert len(set(names)) == len(names) == 5


# ---------------------------------------------------------------- CSV


def test_the_registrations_csv_has_a_bom_chinese_headers_and_defused_cells(exported, client, auth):
    w = exported
    auth.login(w.organizer)
    reply = client.get(f"/events/{w.event.id}/registrations.csv")
    assert reply.status_code == 200 and reply.mimetype == "text/csv"
    assert "attachment" in reply.headers["Content-Disposition"]
    body = reply.data
    assert body.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
    assert rows[0] == exports.REGISTRATION_HEADERS
    by_name = {r[0]: r for r in rows[1:]}
    firm = by_name[w.firm.name]
    assert firm[2] == "民营企业" and firm[7] == "待确认"
    assert firm[8] == w.product.name and firm[9] == "拟派2人参加"
    assert firm[11].startswith("2026-12-01 ")
    evil = by_name["'" + w.evil.name]
    assert evil[4] == "'+86 张三" and evil[5] == "'-1+1" and evil[6] == "'@SUM(A1)" and evil[9] == "'=1+2"
    for row in rows[1:]:
        assert not any(cell[:1] in ("=", "+", "-", "@") for cell in row)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("=cmd|' /C calc'!A0", "'=cmd|' /C calc'!A0"), ("+1", "'+1"), ("-1", "'-1"), ("@x", "'@x"),
     ("\tx", "'\tx"), ("0791-86000000", "0791-86000000"), ("", ""), (None, ""), (12, "12")],
)
def test_defuse(value, expected):
    assert exports.defuse(value) == expected


# ---------------------------------------------------------------- the printable 对接名单


def test_the_binder_prints_every_shortlist(exported, client, auth):
    w = exported
    auth.login(w.organizer)
    html = client.get(f"/events/{w.event.id}/binder").get_data(as_text=True)
    assert w.need.title in html and w.need_b.title in html
    assert w.firm.name in html and w.other_firm.name in html and "确认参加" in html and "婉拒" in html
    assert "@page" in html and "break-after: page" in html and "nav.navbar, footer" in html
    assert html.count('class="print-page binder-need"') == 2


def test_the_manage_page_links_to_the_exports(exported, client, auth):
    auth.login(exported.organizer)
    html = client.get(f"/events/{exported.event.id}/manage").get_data(as_text=True)
    for endpoint in ("export.xlsx", "registrations.csv", "binder", "meetings"):
        assert f"/events/{exported.event.id}/{endpoint}" in html


EXPORTS = ["/events/{e}/export.xlsx", "/events/{e}/registrations.csv", "/events/{e}/binder"]
EXPECTED = {"anonymous": 302, "firm_user": 403, "other_firm_user": 403, "publisher_user": 403,
            "organizer": 200, "admin": 200}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("url", EXPORTS)
def test_only_organizers_export(exported, client, auth, role, url):
    _login(auth, exported, role)
    reply = client.get(url.format(e=exported.event.id))
    assert reply.status_code == EXPECTED[role]
    if url.endswith(".xlsx") and reply.status_code == 200:
        assert reply.mimetype == exports_mimetype()
        assert reply.headers["X-Content-Type-Options"] == "nosniff"
        assert load_workbook(io.BytesIO(reply.data)).sheetnames[0] == "概况"


def exports_mimetype() -> str:
    return "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@pytest.mark.parametrize("url", ["/events/2147483647/export.xlsx", "/events/99999999999/registrations.csv",
                                 "/events/2147483647/binder"])
def test_missing_events_are_404(world, client, auth, url):
    auth.login(world.organizer)
    assert client.get(url).status_code == 404


def test_a_draft_events_exports_are_hidden_from_firms(world, client, auth):
    draft = events_service.create_event(world.organizer, {**_draft_data(), "title": "筹备中的对接会"})
    auth.login(world.firm_user)
    assert client.get(f"/events/{draft.id}/export.xlsx").status_code == 404


def _draft_data() -> dict:
    from tests.marketplace.test_events import event_data

    return event_data(kind="matchmaking")


def test_exports_of_the_seeded_matchmaking_event(app, db):
    """The seeded 供需对接会: 5 needs, the schedule's meeting times on the sheets."""
    from sqlalchemy import select

    from marketplace.models import Event
    from marketplace.services.seeding import load_seeds

    load_seeds(app.config["SEEDS_DIR"])
    event = db.session.scalar(select(Event).where(Event.kind == "matchmaking"))
    workbook = load_workbook(io.BytesIO(exports.workbook(event)))
    assert len(workbook.sheetnames) == 6
    facts = {r[0].value: r[1].value for r in workbook["概况"].iter_rows(min_row=3) if r[0].value}
    assert facts["1:1 洽谈（场）"] == 14 and facts["　洽谈已洽谈"] == 13 and facts["　洽谈未到场"] == 1
    parking = workbook.worksheets[5]
    assert parking["A1"].value == "中心城区智慧停车诱导系统建设"
    times = [r[10].value for r in parking.iter_rows(min_row=4)]
    assert all(t and "第5桌" in t for t in times[:3])

"""The organizers' dashboard: figures equal hand-computed counts on a small fixture (Beijing
years and dates on a frozen clock), the funnel's conversions and median days, the CSV and XLSX
downloads read back equal to the page, charts without scripts, and a bounded number of queries."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, date, datetime
from decimal import Decimal
from html.parser import HTMLParser

import pytest
from flask import g
from openpyxl import load_workbook
from sqlalchemy import event, select

from marketplace import timeutil
from marketplace.models import (
    Designation,
    DesignationKind,
    DesignationOpportunity,
    DesignationStatus,
    EntryStatus,
    Event,
    EventKind,
    Meeting,
    MeetingStatus,
    OrgKind,
    ProgrammeTarget,
    ResponseStatus,
    ScenarioStage,
    Shortlist,
    ShortlistEntry,
    Signing,
    StageChange,
)
from marketplace.reference import reference
from marketplace.services import dashboard as service
from tests.conftest import AuthActions

NOW = datetime(2026, 6, 30, 4, 0, tzinfo=UTC)


def utc(*args) -> datetime:
    """A naive-UTC timestamp as stored in the database."""
    return datetime(*args)


@pytest.fixture
def frozen(monkeypatch):
    monkeypatch.setattr(timeutil, "now_utc", lambda: NOW)


@pytest.fixture
def corpus(make, db, frozen):
    """Four published needs and a draft; see the module's tests for the hand-computed figures.

    N2 is published at 2025-12-31 17:00 UTC, i.e. 2026-01-01 01:00 in Beijing: a 2026 need.
    """
    nanchang = make.org(OrgKind.GOVERNMENT, name="南昌市交通运输局", region_city="南昌市")
    ganzhou = make.org(OrgKind.GOVERNMENT, name="赣州市卫生健康委员会", region_city="赣州市")
    f1 = make.org(OrgKind.ENTERPRISE, name="江西泊安智能科技有限公司", region_city="南昌市")
    f2 = make.org(OrgKind.ENTERPRISE, name="九江鸿途信息技术有限公司", region_city="九江市")
    pub = EntryStatus.PUBLISHED
    n1 = make.opportunity(nanchang, status=pub, title="N1", field_category="交通出行", field_area="数字生活",
                          published_at=utc(2026, 1, 10, 2), stage=ScenarioStage.DEMONSTRATION)
    n2 = make.opportunity(nanchang, status=pub, title="N2", field_category="医疗健康", field_area="数字生活",
                          published_at=utc(2025, 12, 31, 17))
    n3 = make.opportunity(ganzhou, status=pub, title="N3", field_category="交通出行", field_area="数字生活",
                          region_city="赣州市", region_county="章贡区", published_at=utc(2025, 6, 1, 2),
                          stage=ScenarioStage.TERMINATED)
    make.opportunity(ganzhou, status=EntryStatus.DRAFT, title="N4", region_city="赣州市",
                     region_county="章贡区", stage=ScenarioStage.DEMONSTRATION)
    make.opportunity(nanchang, status=pub, title="N5", field_category="政务服务", field_area="数字政府",
                     published_at=utc(2026, 3, 1, 2))
    make.product(f1, status=pub, fields=("交通出行", "医疗健康"), published_at=utc(2026, 2, 1, 2))
    make.product(f2, status=pub, fields=("交通出行",), region_city="九江市", region_county="浔阳区",
                 published_at=utc(2025, 7, 1, 2))
    make.product(f2, status=EntryStatus.DRAFT)

    make.response(n1, f1, status=ResponseStatus.SELECTED, submitted_at=utc(2026, 1, 20, 2),
                  reviewed_at=utc(2026, 2, 1, 2))
    make.response(n1, f2, status=ResponseStatus.REJECTED, submitted_at=utc(2026, 1, 15, 2),
                  reviewed_at=utc(2026, 2, 1, 2))
    make.response(n2, f1, status=ResponseStatus.SUBMITTED, submitted_at=utc(2026, 1, 5, 2))
    make.response(n2, f2, status=ResponseStatus.DRAFT)
    make.response(n3, f2, status=ResponseStatus.WITHDRAWN, submitted_at=utc(2025, 7, 1, 2))

    fair = Event(kind=EventKind.MATCHMAKING, title="2026年智慧交通供需对接会", starts_at=utc(2026, 2, 10, 1),
                 capacity=50, registration_deadline=date(2026, 2, 5))
    db.session.add(fair)
    db.session.flush()
    shortlist = Shortlist(event_id=fair.id, opportunity_id=n2.id)
    shortlist.entries = [ShortlistEntry(organization_id=f1.id, created_at=utc(2026, 1, 25, 2))]
    db.session.add_all([
        shortlist,
        Meeting(event_id=fair.id, opportunity_id=n1.id, organization_id=f1.id, status=MeetingStatus.HELD,
                starts_at=utc(2026, 2, 10, 2), ends_at=utc(2026, 2, 10, 3)),
        Meeting(event_id=fair.id, opportunity_id=n2.id, organization_id=f1.id, status=MeetingStatus.SCHEDULED,
                starts_at=utc(2026, 2, 10, 3), ends_at=utc(2026, 2, 10, 4)),
        Signing(opportunity_id=n1.id, signed_on=date(2026, 3, 1), amount_wan=Decimal("120.50"),
                title="南昌智慧停车一期", note="保密条款：价格不公开"),
        Signing(opportunity_id=n3.id, signed_on=date(2025, 9, 1), title="赣州智慧停车"),
    ])
    for need, steps in ((n1, [("published", "rnd", date(2026, 3, 1)), ("rnd", "pilot", date(2026, 4, 1)),
                              ("pilot", "demonstration", date(2026, 5, 1))]),
                        (n3, [("published", "rnd", date(2025, 9, 1)), ("rnd", "pilot", date(2025, 10, 11)),
                              ("pilot", "terminated", date(2025, 12, 1))])):
        for before, after, day in steps:
            db.session.add(StageChange(opportunity_id=need.id, from_stage=before, to_stage=after,
                                       happened_on=day))
    approved = DesignationStatus.APPROVED
    zone = Designation(kind=DesignationKind.ZONE, year=2026, status=approved, name="赣州章贡区示范区",
                       region_city="赣州市")
    zone.opportunities = [DesignationOpportunity(opportunity_id=n3.id)]
    db.session.add_all([
        Designation(kind=DesignationKind.FIRM, year=2025, status=approved, name=f1.name,
                    organization_id=f1.id),
        Designation(kind=DesignationKind.PROJECT, year=2026, status=approved, name="N1",
                    opportunity_id=n1.id),
        zone,
        Designation(kind=DesignationKind.FIRM, year=2026, status=DesignationStatus.RECOMMENDED, name=f2.name,
                    organization_id=f2.id),
        Designation(kind=DesignationKind.ZONE, year=2024, status=DesignationStatus.REJECTED,
                    name="南昌示范区", region_city="南昌市"),
        ProgrammeTarget(year=2026, kind="zone", cumulative=False, target=10),
        ProgrammeTarget(year=2026, kind="project", cumulative=False, target=60),
        ProgrammeTarget(year=2025, kind="firm", cumulative=True, target=3000),
    ])
    db.session.commit()
    return {"n1": n1, "n2": n2, "n3": n3}


def rows(fig: service.Figure) -> dict:
    return {row[0]: row[1:] for row in fig.rows}


# ---------------------------------------------------------------- the funnel


def test_funnel_counts_conversions_and_median_days(corpus):
    """A need counts in a stage when it reached it or a later one: N3 was signed and piloted
    without a live response or a meeting on the platform."""
    assert service.funnel(service.Filters()).rows == [
        # stage, needs, vs previous %, of published %, median days since previous stage
        ["发布", 4, None, 100.0, None],
        ["有答题", 3, 75.0, 75.0, 4.5],      # N1: 01-10 → 01-15 (5); N2: Beijing 01-01 → 01-05 (4)
        ["入围", 3, 100.0, 75.0, 18.5],      # N1: → 02-01 selected (17); N2: → 01-25 event shortlist (20)
        ["已洽谈", 2, 66.7, 50.0, 9.0],      # N1 held meeting 02-10 (9); N2's meeting was not held
        ["已签约", 2, 100.0, 50.0, 19.0],    # N1 03-01 (19 days after 02-10); N3 2025-09-01
        ["孵化试点", 2, 100.0, 50.0, 35.5],  # N1 03-01 → 04-01 (31); N3 09-01 → 10-11 (40), since terminated
        ["示范推广", 1, 50.0, 25.0, 30.0],   # N1 04-01 → 05-01
    ]


def test_funnel_year_is_the_beijing_publication_year(corpus):
    fig = service.funnel(service.Filters(year=2026))
    assert [row[1] for row in fig.rows] == [3, 2, 2, 1, 1, 1, 1]
    assert [row[4] for row in fig.rows] == [None, 4.5, 18.5, 9.0, 19.0, 31.0, 30.0]


def test_funnel_city_filter(corpus):
    fig = service.funnel(service.Filters(city="赣州市"))
    assert [row[1] for row in fig.rows] == [1, 1, 1, 1, 1, 1, 0]
    assert [row[4] for row in fig.rows] == [None, None, None, None, None, 40.0, None]


def test_empty_funnel(frozen):
    fig = service.funnel(service.Filters())
    assert [row[1] for row in fig.rows] == [0] * 7
    assert all(row[2] is None and row[4] is None for row in fig.rows)


# ---------------------------------------------------------------- breakdowns


def test_by_city(corpus):
    fig = rows(service.by_city(service.Filters()))
    # needs, products, responses, signings, amount 万元, approved designations
    assert fig["南昌市"] == [3, 1, 3, 1, 120.5, 2]
    assert fig["赣州市"] == [1, 0, 0, 1, 0.0, 1]
    assert fig["九江市"] == [0, 1, 0, 0, 0, 0]
    assert list(fig) == list(reference().cities)  # every 设区市 (and 赣江新区), in the reference order


def test_by_city_with_a_year(corpus):
    fig = rows(service.by_city(service.Filters(year=2025)))
    assert fig["南昌市"] == [0, 0, 0, 0, 0, 1]   # only the 2025 firm
    assert fig["赣州市"] == [1, 0, 0, 1, 0.0, 0]
    assert fig["九江市"] == [0, 1, 0, 0, 0, 0]


def test_by_field(corpus):
    fig = {row[1]: row[2:] for row in service.by_field(service.Filters()).rows}
    assert fig["交通出行"] == [2, 2, 2, 2, 120.5, 1]
    assert fig["医疗健康"] == [1, 1, 1, 0, 0, 0]
    assert fig["政务服务"] == [1, 0, 0, 0, 0, 0]


def test_by_year(corpus):
    assert service.by_year(service.Filters()).rows == [  # no 2024 row: its designation was rejected
        [2025, 1, 1, 0, 1, 0.0, 1],
        [2026, 3, 1, 3, 1, 120.5, 2],
    ]


def test_by_year_with_a_city(corpus):
    assert service.by_year(service.Filters(city="赣州市")).rows == [
        [2025, 1, 0, 0, 1, 0.0, 0],
        [2026, 0, 0, 0, 0, 0, 1],
    ]


def test_designations_by_kind_and_status(corpus):
    assert service.designations_by_status(service.Filters()).rows == [
        ["应用场景示范区", 0, 0, 1, 1],
        ["应用场景示范项目", 0, 0, 1, 0],
        ["高成长性企业", 1, 0, 1, 0],
    ]


def test_progress_against_targets(corpus):
    assert service.progress(service.Filters()).rows == [
        ["2025年度", "高成长性企业", None, 1, None],
        ["2026年度", "应用场景示范区", 10, 1, 10.0],
        ["2026年度", "应用场景示范项目", 60, 1, 1.7],
        ["截至2025年累计", "高成长性企业", 3000, 1, 0.0],
        ["全部年度合计", "应用场景示范区", None, 1, None],
        ["全部年度合计", "应用场景示范项目", None, 1, None],
        ["全部年度合计", "高成长性企业", None, 1, None],
    ]


def test_progress_in_a_city_counts_its_designations_only(corpus):
    fig = service.progress(service.Filters(city="南昌市"))
    assert ["2026年度", "应用场景示范区", 10, 0, 0.0] in fig.rows
    assert "全省" in fig.note or "目标为全省目标" in fig.note


# ---------------------------------------------------------------- the page and downloads


class TableReader(HTMLParser):
    """The text of every ``table.figure-table`` cell, per figure key."""

    def __init__(self):
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._key = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table" and "figure-table" in (attrs.get("class") or ""):
            self._key = attrs["data-figure"]
            self.tables[self._key] = []
        elif self._key and tag == "tr":
            self.tables[self._key].append([])
        elif self._key and tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "table":
            self._key = None
        elif self._key and tag in ("td", "th") and self._cell is not None:
            self.tables[self._key][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


@pytest.fixture
def organizer_client(app, make, frozen):
    client = app.test_client()
    g.pop("_login_user", None)
    g.pop("csrf_token", None)
    AuthActions(client).login(make.organizer())
    return client


def page_tables(client, query: str = "") -> dict[str, list[list[str]]]:
    reply = client.get(f"/programme/dashboard{query}")
    assert reply.status_code == 200
    reader = TableReader()
    reader.feed(reply.get_data(as_text=True))
    return reader.tables


def test_page_tables_show_the_figures(corpus, organizer_client):
    tables = page_tables(organizer_client)
    assert set(tables) == set(service.FIGURE_KEYS)
    assert tables["funnel"][2] == ["有答题", "3", "75", "75", "4.5"]
    assert tables["by_city"][1][:6] == ["南昌市", "3", "1", "3", "1", "120.5"]


@pytest.mark.parametrize("query", ["", "?year=2026", "?city=赣州市", "?year=2025&city=南昌市"])
def test_every_csv_reads_back_equal_to_the_page(corpus, organizer_client, query):
    tables = page_tables(organizer_client, query)
    for key in service.FIGURE_KEYS:
        reply = organizer_client.get(f"/programme/dashboard/{key}.csv{query}")
        assert reply.headers["Content-Type"].startswith("text/csv")
        assert reply.headers["X-Content-Type-Options"] == "nosniff"
        text = reply.get_data().decode("utf-8-sig")
        table = list(csv.reader(io.StringIO(text)))
        page = tables[key] if len(table) > 1 else tables[key][:1]  # no rows: the page says 「暂无数据」
        assert table == page, key


@pytest.mark.parametrize("query", ["", "?year=2026&city=南昌市"])
def test_xlsx_has_one_sheet_per_figure_equal_to_the_page(corpus, organizer_client, query):
    tables = page_tables(organizer_client, query)
    reply = organizer_client.get(f"/programme/dashboard.xlsx{query}")
    assert reply.status_code == 200
    book = load_workbook(io.BytesIO(reply.get_data()))
    titles = {fig.key: fig.title for fig in service.dashboard(service.Filters())}
    assert book.sheetnames == [titles[key] for key in service.FIGURE_KEYS]
    for key in service.FIGURE_KEYS:
        sheet = book[titles[key]]
        values = [[service.cell_text(v) for v in row] for row in sheet.iter_rows(values_only=True)]
        expected = tables[key] if sheet.max_row > 1 else tables[key][:1]
        assert values == expected, key


def test_xlsx_numbers_are_numbers(corpus, organizer_client):
    book = load_workbook(io.BytesIO(organizer_client.get("/programme/dashboard.xlsx").get_data()))
    sheet = book["按地市分布"]
    assert sheet["A2"].value == "南昌市" and sheet["B2"].value == 3 and sheet["F2"].value == 120.5


def test_unknown_figure_is_404(organizer_client):
    assert organizer_client.get("/programme/dashboard/secrets.csv").status_code == 404


@pytest.mark.parametrize("query", ["?year=abc", "?year=1900", "?city=上海市", "?year=abc&city=%E5%8D%97"])
def test_bad_filters_are_ignored(corpus, organizer_client, query):
    reply = organizer_client.get(f"/programme/dashboard{query}")
    assert reply.status_code == 200 and "全部年度 · 全省" in reply.get_data(as_text=True)


def test_filters_apply_to_the_page(corpus, organizer_client):
    html = organizer_client.get("/programme/dashboard?year=2026&city=南昌市").get_data(as_text=True)
    assert "2026年 · 南昌市" in html


def test_charts_are_inline_svg_without_scripts_and_with_a_cjk_font(corpus, organizer_client):
    html = organizer_client.get("/programme/dashboard").get_data(as_text=True)
    assert html.count("<svg") >= len(service.FIGURE_KEYS)
    assert re.findall(r"<script(?![^>]*\bsrc=)", html) == []  # no inline script (CSP)
    assert "Noto Sans CJK SC" in html
    assert "对接转化漏斗" in html


def test_charts_have_no_script_elements(corpus):
    for fig in service.dashboard(service.Filters()):
        assert "<script" not in service.chart_svg(fig)


def _count_queries(db, work) -> int:
    seen = []
    listener = lambda *args: seen.append(1)  # noqa: E731
    event.listen(db.engine, "before_cursor_execute", listener)
    try:
        work()
    finally:
        event.remove(db.engine, "before_cursor_execute", listener)
    return len(seen)


def test_queries_do_not_grow_with_the_corpus(corpus, make, db):
    before = _count_queries(db, lambda: service.dashboard(service.Filters()))
    publisher = make.org(OrgKind.GOVERNMENT)
    firm = make.org(OrgKind.ENTERPRISE)
    for i in range(15):
        need = make.opportunity(publisher, status=EntryStatus.PUBLISHED, title=f"需求{i}",
                                published_at=utc(2026, 2, 1 + i, 2))
        make.response(need, firm, status=ResponseStatus.SUBMITTED, submitted_at=utc(2026, 3, 1, 2))
        make.product(firm, status=EntryStatus.PUBLISHED, published_at=utc(2026, 2, 1, 2))
    after = _count_queries(db, lambda: service.dashboard(service.Filters()))
    assert after == before
    assert before <= 40



def test_entry_cubes_are_cached_until_the_public_counter_moves(corpus, make, db):
    """Needs and products change only through services that bump the public-content counter."""
    from marketplace.models import Product
    from marketplace.services import index_sync

    index_sync.bump()
    db.session.commit()
    assert rows(service.by_city(service.Filters()))["九江市"][1] == 1
    product = db.session.scalar(select(Product).where(Product.region_city == "九江市"))
    product.region_city = "赣州市"  # written behind the services' back: no bump
    db.session.commit()
    assert rows(service.by_city(service.Filters()))["九江市"][1] == 1
    index_sync.bump()
    db.session.commit()
    assert rows(service.by_city(service.Filters()))["九江市"][1] == 0

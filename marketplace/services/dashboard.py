"""The organizers' dashboard (数据看板) and the public 「成果」 figures.

Every figure is computed by aggregate SQL (GROUP BY, COUNT, SUM, MIN, window functions for the
medians); nothing loops over the corpus in Python. The breakdowns add up small cubes (city ×
year × category cells, :class:`Cubes`); the cubes of the two big tables (needs, products) are
cached per process until the public-content counter moves, and each chart's SVG is kept per
distinct figure. Numbers at 10,000 needs and 50,000 products: ``benchmarks/portal.py
--dashboard`` and ``docs/benchmarks.md``. A :class:`Figure` is a table (headers and rows
of plain values) that the page shows beside its chart, the CSV download writes and the XLSX
report puts on a sheet of its own, so the three always agree.

Filters: ``year`` and ``city`` (a 设区市). Definitions:

* **Years** are Beijing years. A need or product counts in the year it was published
  (``published_at``), a response in the year it was submitted (``submitted_at``), a signing in the
  year of ``signed_on``, a designation in its programme ``year``.
* **City**: a need's, product's or firm's ``region_city``; a response or signing counts in its
  need's city; a designation in its zone's city, its project need's city or its firm's city.
* **Needs / products**: published entries (``status = published``). **Responses**: submitted and
  live (已提交, 入围, 选定, 未选定 — not drafts, not withdrawn) on published needs. **Signings**: on
  published needs, with the sum of the disclosed amounts in 万元. **Designations** in the
  breakdowns: approved (已认定) ones. Products count once in each category they serve.

The funnel, over the published needs (filtered by their publication year and city); a need
reaches a stage when:

1. **published** (发布): it is published; day = Beijing date of ``published_at``;
2. **answered** (有答题): it has at least one submitted live response; day = the first
   ``Response.submitted_at``;
3. **shortlisted** (入围): a response was shortlisted or selected, or a firm is on one of its event
   shortlists (对接名单); day = the first ``Response.reviewed_at`` of such a response (its
   ``submitted_at`` when not recorded) or the first ``ShortlistEntry.created_at``;
4. **met** (已洽谈): a 1:1 meeting about it was held (``Meeting.status = held``); day = the first
   such ``Meeting.starts_at``;
5. **signed** (已签约): it has a signing; day = the first ``Signing.signed_on``;
6. **piloting** (孵化试点): its stage is 孵化试点 or 示范推广, or a stage change took it there
   (it may since have been terminated); day = the first ``StageChange.happened_on`` into 孵化试点
   or 示范推广;
7. **demonstration** (示范推广): the same for 示范推广.

A need that reached a later stage counts in every earlier stage too (an organizer may record a
signing for a need answered and negotiated outside the platform: it has still passed those steps),
so the counts never grow down the funnel. The conversion rate of a stage is its count over the
previous stage's count, and the overall rate its count over the published count.
The median days between two consecutive stages is the median, over the needs that reached both,
of (day of the stage − day of the previous stage), counting only non-negative differences (a need
shortlisted at an event before any response was submitted has no "answered → shortlisted" time).
"""

from __future__ import annotations

import copy
import csv
import io
import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any

from markupsafe import Markup
from sqlalchemy import (
    Date,
    Integer,
    and_,
    case,
    cast,
    event,
    exists,
    func,
    literal,
    literal_column,
    null,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.orm import Session, aliased
from sqlalchemy.sql.elements import ColumnElement

from marketplace import timeutil
from marketplace.extensions import db
from marketplace.models import (
    Designation,
    DesignationKind,
    DesignationOpportunity,
    DesignationOrganization,
    DesignationStatus,
    EntryStatus,
    Event,
    IndexState,
    Meeting,
    MeetingStatus,
    Opportunity,
    Organization,
    Product,
    ProductField,
    ProgrammeTarget,
    Response,
    ResponseStatus,
    ScenarioStage,
    Shortlist,
    ShortlistEntry,
    Signing,
    StageChange,
)
from marketplace.reference import reference
from marketplace.services import programme
from marketplace.services.programme import designation_city

#: Responses that count as answers: submitted and not withdrawn.
ANSWERED = (ResponseStatus.SUBMITTED, ResponseStatus.SHORTLISTED, ResponseStatus.SELECTED,
            ResponseStatus.REJECTED)
FIGURE_KEYS = ("progress", "funnel", "by_city", "by_field", "by_year", "designations")
FUNNEL_STAGES = (
    ("published", "发布"), ("answered", "有答题"), ("shortlisted", "入围"), ("met", "已洽谈"),
    ("signed", "已签约"), ("piloting", "孵化试点"), ("demonstration", "示范推广"),
)
FONT_FAMILY = '"Noto Sans CJK SC", "Source Han Sans SC", "Microsoft YaHei", "PingFang SC", sans-serif'
COLORS = ("#0d6efd", "#20c997", "#fd7e14", "#6f42c1", "#d63384", "#198754", "#6c757d")


@dataclass(frozen=True)
class Filters:
    year: int | None = None
    city: str | None = None

    @property
    def label(self) -> str:
        parts = [f"{self.year}年" if self.year else "全部年度", self.city or "全省"]
        return " · ".join(parts)


@dataclass
class Figure:
    """One figure: a table, and how to draw it.

    ``chart``: ``bar`` (grouped bars), ``stacked``, ``hbar`` (horizontal bars) or ``None``;
    ``label_columns`` make the x labels (joined by 「·」) and ``series`` are the columns drawn.
    """

    key: str
    title: str
    headers: list[str]
    rows: list[list[Any]]
    chart: str | None = "bar"
    label_columns: tuple[int, ...] = (0,)
    series: list[int] = field(default_factory=list)
    note: str = ""
    unit: str = ""


# ---------------------------------------------------------------- SQL helpers


def _dialect() -> str:
    return db.session.get_bind().dialect.name


def _offset_hours() -> int:
    """The display zone's offset from UTC in whole hours (Asia/Shanghai: 8, no DST)."""
    offset = timeutil.local_now().utcoffset()
    return int(offset.total_seconds() // 3600) if offset else 0


def _local_year(column) -> ColumnElement:
    """The Beijing year of a naive-UTC timestamp column, as an integer."""
    hours = _offset_hours()
    if _dialect() == "postgresql":
        return cast(func.extract("year", column + literal_column(f"interval '{hours} hours'")), Integer)
    return cast(func.strftime("%Y", column, f"{hours:+d} hours"), Integer)


def _year_of(column, timestamp: bool) -> ColumnElement:
    """The Beijing year of a timestamp (naive UTC) or date column as a CASE over the year
    boundaries from 2018 to next year: plain comparisons, several times cheaper than parsing
    dates in SQL (``strftime``), and an index range when filtered. Older values fall back to
    parsing."""
    latest = timeutil.local_today().year + 1
    whens = []
    for year in range(latest, 2017, -1):
        bound = _year_range(year)[0] if timestamp else date(year, 1, 1)
        whens.append((column >= bound, year))
    return case(*whens, else_=_local_year(column) if timestamp else _date_year(column))


def _date_year(column) -> ColumnElement:
    if _dialect() == "postgresql":
        return cast(func.extract("year", column), Integer)
    return cast(func.strftime("%Y", column), Integer)


def _day(column, timestamp: bool) -> ColumnElement:
    """A day number (whole days since an epoch) of a date column, or of the Beijing date of a
    naive-UTC timestamp column; differences of two day numbers are days."""
    hours = _offset_hours()
    if _dialect() == "postgresql":
        value = cast(column + literal_column(f"interval '{hours} hours'"), Date) if timestamp else column
        return value - literal_column("DATE '2000-01-01'")
    # julianday() is x.5 at midnight UTC; +0.5 (+ the offset for a timestamp) makes whole
    # numbers at local midnight, and a microsecond-sized epsilon guards the float rounding.
    shift = 0.5 + (hours / 24 if timestamp else 0) + 1e-6
    return cast(func.julianday(column) + shift, Integer)


def _year_range(year: int) -> tuple[datetime, datetime]:
    """The naive-UTC instants that bound a Beijing year [start, end)."""
    start = timeutil.start_of_local_day(date(year, 1, 1)).replace(tzinfo=None)
    end = timeutil.start_of_local_day(date(year + 1, 1, 1)).replace(tzinfo=None)
    return start, end


def _ts_in_year(column, year: int) -> ColumnElement:
    start, end = _year_range(year)
    return and_(column >= start, column < end)


def _pct(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 1) if whole else None


def _money(value: Any) -> float:
    return round(float(value or 0), 2)


# ---------------------------------------------------------------- the data version


#: ``index_state`` counter of what the funnel and the small cubes read. It moves in the same
#: transaction as any ORM change to those tables (see :func:`_bump_on_commit`); together with the
#: public-content counter (bulk publication of a batch moves that one) it is the key of the
#: per-process cache of those figures (:func:`_cached`).
DATA_VERSION = "dashboard_data"
_WATCHED = (Opportunity, Response, Shortlist, ShortlistEntry, Meeting, Signing, StageChange, Event,
            Designation, DesignationOpportunity, DesignationOrganization, Organization)
_CHANGED = "dashboard.data_changed"
_CACHE = "dashboard.cache"


def _touches_watched(session: Session) -> bool:
    return any(isinstance(obj, _WATCHED) for objs in (session.new, session.dirty, session.deleted)
               for obj in objs)


@event.listens_for(Session, "before_flush")
def _note_changes(session: Session, flush_context, instances) -> None:
    if not session.info.get(_CHANGED) and _touches_watched(session):
        session.info[_CHANGED] = True


@event.listens_for(Session, "before_commit")
def _bump_on_commit(session: Session) -> None:
    """Move :data:`DATA_VERSION` once per transaction that changed a watched table, at commit
    (the counter's row is locked only while committing). A new counter starts at a random value,
    so that a database emptied and refilled (tests) never repeats an old stamp."""
    if not (session.info.pop(_CHANGED, False) or _touches_watched(session)):
        return
    done = session.execute(update(IndexState).where(IndexState.name == DATA_VERSION)
                           .values(version=IndexState.version + 1, updated_at=timeutil.now_naive_utc()))
    if not done.rowcount:
        session.add(IndexState(name=DATA_VERSION, version=random.randrange(1, 2**30)))


@event.listens_for(Session, "after_soft_rollback")
def _forget_changes(session: Session, previous_transaction) -> None:
    session.info.pop(_CHANGED, None)


def _data_stamp() -> tuple | None:
    """The key of the cached figures; None (never cached) until the counter exists."""
    from marketplace.services.index_sync import ENTRIES

    found = {name: (version, updated) for name, version, updated in db.session.execute(
        select(IndexState.name, IndexState.version, IndexState.updated_at)
        .where(IndexState.name.in_((ENTRIES, DATA_VERSION))))}
    return (found[DATA_VERSION], found.get(ENTRIES)) if DATA_VERSION in found else None


def _cached(key: tuple, compute):
    """``compute()``, kept per process until the data stamp moves; callers get a copy."""
    from flask import current_app

    stamp = _data_stamp()
    if stamp is None:
        return compute()
    held = current_app.extensions.get(_CACHE)
    if held is None or held[0] != stamp:
        held = current_app.extensions[_CACHE] = (stamp, {})
    if key not in held[1]:
        held[1][key] = compute()
    return copy.deepcopy(held[1][key])


# ---------------------------------------------------------------- breakdowns


#: ``current_app.extensions`` key of the cached entry cubes.
_ENTRY_CUBES = "dashboard.entry_cubes"


@dataclass
class Cubes:
    """Aggregates by (city, year, category) from which every breakdown is summed.

    Each is a list of ``(city, year, category, count[, amount])`` cells produced by one GROUP BY
    query; a breakdown adds up the cells that pass the filters (a few hundred cells, never rows
    of the corpus). ``products`` has no category (a product serves several) and
    ``product_fields`` counts a product once per category. ``designations`` cells are
    ``(city, year, project category or None, count)`` of approved designations.
    """

    needs: list[tuple]
    products: list[tuple]
    product_fields: list[tuple]
    responses: list[tuple]
    signings: list[tuple]
    designations: list[tuple]


def _entry_cubes() -> tuple[list[tuple], list[tuple], list[tuple]]:
    """Needs, products and product categories: the largest tables, so their cubes are cached
    per app until the public-content counter moves (every publication, withdrawal or approved
    edit bumps it; see ``services/index_sync.py``), like the portal's home counts."""
    from flask import current_app

    from marketplace.services.search import public_stamp

    stamp = public_stamp()
    if stamp is not None:
        stamp = (*stamp, *db.session.execute(
            select(select(func.max(Opportunity.id)).scalar_subquery(),
                   select(func.max(Product.id)).scalar_subquery())).one())
    cached = current_app.extensions.get(_ENTRY_CUBES)
    if stamp is not None and cached is not None and cached[0] == stamp:
        return cached[1]
    published_need = Opportunity.status == EntryStatus.PUBLISHED
    need_year = _year_of(Opportunity.published_at, True)
    needs = db.session.execute(
        select(Opportunity.region_city, need_year, Opportunity.field_category, func.count())
        .where(published_need).group_by(Opportunity.region_city, need_year, Opportunity.field_category)).all()
    product_year = _year_of(Product.published_at, True)
    products = db.session.execute(
        select(Product.region_city, product_year, null(), func.count())
        .where(Product.status == EntryStatus.PUBLISHED).group_by(Product.region_city, product_year)).all()
    fields = db.session.execute(
        select(Product.region_city, product_year, ProductField.category, func.count())
        .select_from(ProductField).join(Product, Product.id == ProductField.product_id)
        .where(Product.status == EntryStatus.PUBLISHED)
        .group_by(Product.region_city, product_year, ProductField.category)).all()
    cubes = ([tuple(r) for r in needs], [tuple(r) for r in products], [tuple(r) for r in fields])
    if stamp is not None:
        current_app.extensions[_ENTRY_CUBES] = (stamp, cubes)
    return cubes


def cubes() -> Cubes:
    """Every cube of the breakdowns: the three of the entries (cached by the public-content
    counter) and three small GROUP BY queries (cached by the data version)."""
    needs, products, fields = _entry_cubes()
    responses, signings, designations = _cached(("cubes",), _activity_cubes)
    return Cubes(needs=needs, products=products, product_fields=fields, responses=responses,
                 signings=signings, designations=designations)


def _activity_cubes() -> tuple[list[tuple], list[tuple], list[tuple]]:
    published_need = Opportunity.status == EntryStatus.PUBLISHED
    # Responses are counted per need and year first, so each need's city and category are
    # looked up once per need rather than once per response.
    response_year = _year_of(Response.submitted_at, True)
    per_need = (select(Response.opportunity_id.label("oid"), response_year.label("year"),
                       func.count().label("n"))
                .where(Response.status.in_(ANSWERED), Response.submitted_at.is_not(None))
                .group_by(Response.opportunity_id, response_year).subquery())
    responses = db.session.execute(
        select(Opportunity.region_city, per_need.c.year, Opportunity.field_category, func.sum(per_need.c.n))
        .select_from(per_need).join(Opportunity, Opportunity.id == per_need.c.oid)
        .where(published_need)
        .group_by(Opportunity.region_city, per_need.c.year, Opportunity.field_category)).all()
    signing_year = _year_of(Signing.signed_on, False)
    signings = db.session.execute(
        select(Opportunity.region_city, signing_year, Opportunity.field_category, func.count(),
               func.coalesce(func.sum(Signing.amount_wan), 0))
        .select_from(Signing).join(Opportunity, Opportunity.id == Signing.opportunity_id)
        .where(published_need)
        .group_by(Opportunity.region_city, signing_year, Opportunity.field_category)).all()
    city = designation_city()
    project_category = case((Designation.kind == DesignationKind.PROJECT, Opportunity.field_category),
                            else_=None)
    designations = db.session.execute(
        select(city, Designation.year, project_category, func.count())
        .select_from(Designation).outerjoin(Opportunity, Opportunity.id == Designation.opportunity_id)
        .where(Designation.status == DesignationStatus.APPROVED)
        .group_by(city, Designation.year, project_category)).all()
    return ([tuple(r) for r in responses], [(c, y, k, n, _money(a)) for c, y, k, n, a in signings],
            [tuple(r) for r in designations])


def _sum(cells: list[tuple], f: Filters, key: int | None, value: int = 3) -> dict[Any, Any]:
    """Add up ``cells[value]`` per ``cells[key]`` (0 city, 1 year, 2 category; None: in total)
    over the cells that pass the filters."""
    out: dict[Any, Any] = defaultdict(int)
    for cell in cells:
        if (f.city and cell[0] != f.city) or (f.year and cell[1] != f.year):
            continue
        out[cell[key] if key is not None else None] += cell[value]
    return out


def _metrics(c: Cubes, f: Filters, key: int) -> dict[str, dict[Any, Any]]:
    amount = {k: round(v, 2) for k, v in _sum(c.signings, f, key, value=4).items()}
    return {
        "needs": _sum(c.needs, f, key),
        "products": _sum(c.product_fields if key == 2 else c.products, f, key),
        "responses": _sum(c.responses, f, key),
        "signings": _sum(c.signings, f, key),
        "amount": amount,
        "designations": _sum(c.designations, f, key),
    }


BREAKDOWN_HEADERS = ["需求（条）", "产品（条）", "答题（份）", "签约（项）", "签约金额（万元）", "认定（项）"]
METRICS = ("needs", "products", "responses", "signings", "amount", "designations")


def _breakdown_row(label: list[Any], metrics: dict[str, dict[Any, Any]], key: Any) -> list[Any]:
    return [*label, *(metrics[m].get(key, 0) for m in METRICS)]


def by_city(f: Filters, c: Cubes | None = None) -> Figure:
    metrics = _metrics(c or cubes(), f, 0)
    cities = [f.city] if f.city else list(reference().cities)
    extra = sorted({k for m in metrics.values() for k in m if k and k not in cities})
    rows = [_breakdown_row([city], metrics, city) for city in cities + extra]
    return Figure("by_city", "按地市分布", ["地市", *BREAKDOWN_HEADERS], rows, series=[1, 2, 3, 4],
                  note="认定：已认定的示范区、示范项目和高成长性企业。")


def by_field(f: Filters, c: Cubes | None = None) -> Figure:
    metrics = _metrics(c or cubes(), f, 2)
    ref = reference()
    rows = [_breakdown_row([ref.area_of(cat), cat], metrics, cat) for cat in ref.categories]
    return Figure("by_field", "按应用领域分布", ["领域", "类别", *BREAKDOWN_HEADERS[:-1], "示范项目（项）"],
                  rows, chart="hbar", label_columns=(1,), series=[2, 3, 4, 5],
                  note="一个产品可服务多个类别，在每个类别各计一次；认定只统计示范项目。")


def by_year(f: Filters, c: Cubes | None = None) -> Figure:
    metrics = _metrics(c or cubes(), f, 1)
    years = sorted({int(k) for m in metrics.values() for k, v in m.items() if k is not None and v})
    rows = [_breakdown_row([y], metrics, y) for y in years]
    return Figure("by_year", "按年度分布", ["年度", *BREAKDOWN_HEADERS], rows, series=[1, 2, 3, 4, 6],
                  note="年度按北京时间：需求与产品按发布时间，答题按提交时间，签约按签约日期，认定按认定年度。")


def designations_by_status(f: Filters, c: Cubes | None = None) -> Figure:
    stmt = select(Designation.kind, Designation.status, func.count()).group_by(Designation.kind,
                                                                              Designation.status)
    if f.year:
        stmt = stmt.where(Designation.year == f.year)
    if f.city:
        stmt = stmt.where(designation_city() == f.city)
    counts = {(k, s): n for k, s, n in db.session.execute(stmt)}
    # Withdrawn recommendations (已撤回) never entered the workflow: not a column of the progress.
    statuses = [s for s in DesignationStatus if s != DesignationStatus.WITHDRAWN]
    rows = [[kind.label, *(counts.get((kind.value, s.value), 0) for s in statuses)]
            for kind in DesignationKind]
    return Figure("designations", "十百千认定进展", ["类别", *(s.label for s in statuses)], rows,
                  chart="stacked", series=list(range(1, len(statuses) + 1)))


def progress(f: Filters, c: Cubes | None = None) -> Figure:
    """Approved designations against the targets: per year, cumulative, and in total."""
    stmt = (select(Designation.year, Designation.kind, func.count())
            .where(Designation.status == DesignationStatus.APPROVED)
            .group_by(Designation.year, Designation.kind))
    if f.city:
        stmt = stmt.where(designation_city() == f.city)
    approved = {(y, k): n for y, k, n in db.session.execute(stmt)}
    targets = list(db.session.scalars(select(ProgrammeTarget)))
    annual = {(t.year, t.kind): t.target for t in targets if not t.cumulative}
    cumulative = sorted(((t.year, t.kind), t.target) for t in targets if t.cumulative)
    kinds = [k.value for k in DesignationKind]
    order = {k: i for i, k in enumerate(kinds)}
    rows: list[list[Any]] = []
    years = sorted({y for y, _ in annual} | {y for y, _ in approved})
    if f.year:
        years = [y for y in years if y == f.year]
    for year in years:
        for kind in kinds:
            target = annual.get((year, kind))
            done = approved.get((year, kind), 0)
            if target is None and not done:
                continue
            rows.append([f"{year}年度", DesignationKind.label_of(kind), target, done,
                         _pct(done, target) if target else None])
    for (year, kind), target in sorted(cumulative, key=lambda item: (item[0][0], order.get(item[0][1], 9))):
        if f.year and year != f.year:
            continue
        done = sum(n for (y, k), n in approved.items() if k == kind and y <= year)
        rows.append([f"截至{year}年累计", DesignationKind.label_of(kind), target, done, _pct(done, target)])
    if not f.year:
        for kind in kinds:
            rows.append(["全部年度合计", DesignationKind.label_of(kind), None,
                         sum(n for (_, k), n in approved.items() if k == kind), None])
    note = ("目标为全省目标；已按所选地市统计已认定数量。" if f.city
            else "已认定：状态为「已认定」的认定记录。")
    return Figure("progress", "目标完成进度", ["范围", "类别", "目标", "已认定", "完成率（%）"], rows,
                  chart="hbar", label_columns=(0, 1), series=[4], note=note, unit="%")


# ---------------------------------------------------------------- funnel


def _least(a, b) -> ColumnElement:
    """The smaller of two nullable values (NULL only when both are)."""
    if _dialect() == "postgresql":
        return func.least(a, b)
    return func.min(func.coalesce(a, b), func.coalesce(b, a))


def _per_need(f: Filters):
    """One row per published need with some activity after publication (filtered by publication
    year and city) with the day it first reached each stage of :data:`FUNNEL_STAGES` (None: not
    reached, or no date) and two flags for 孵化试点 / 示范推广 reached without a dated step.

    Each activity table is grouped once by need (``MIN`` of its date) and LEFT JOINed to the
    needs; the result is a CTE, materialised once per statement."""
    piloting = (ScenarioStage.PILOT, ScenarioStage.DEMONSTRATION)
    demonstration = (ScenarioStage.DEMONSTRATION,)

    def first(oid, day, *where, join=None):
        stmt = select(oid.label("oid"), func.min(day).label("day"))
        if join is not None:
            stmt = stmt.join(*join)
        return stmt.where(*where).group_by(oid).subquery()

    # Responses are read once for both the answered and the shortlisted day.
    answers = (select(
        Response.opportunity_id.label("oid"),
        func.min(case((Response.status.in_(ANSWERED), Response.submitted_at))).label("answered"),
        func.min(case((Response.status.in_((ResponseStatus.SHORTLISTED, ResponseStatus.SELECTED)),
                       func.coalesce(Response.reviewed_at, Response.submitted_at)))).label("reviewed"),
    ).where(Response.status.in_(ANSWERED), Response.submitted_at.is_not(None))
        .group_by(Response.opportunity_id).subquery())
    listed = first(Shortlist.opportunity_id, ShortlistEntry.created_at,
                   join=(ShortlistEntry, ShortlistEntry.shortlist_id == Shortlist.id))
    met = first(Meeting.opportunity_id, Meeting.starts_at, Meeting.status == MeetingStatus.HELD)
    signed = first(Signing.opportunity_id, Signing.signed_on)
    pilot_day = first(StageChange.opportunity_id, StageChange.happened_on, StageChange.to_stage.in_(piloting))
    demo_day = first(StageChange.opportunity_id, StageChange.happened_on,
                     StageChange.to_stage.in_(demonstration))
    staged = aliased(Opportunity)
    # DISTINCT keeps SQLite from flattening these into a second read of every need's row.
    at_pilot = select(staged.id.label("oid")).where(staged.stage.in_(piloting)).distinct().subquery()
    at_demo = select(staged.id.label("oid")).where(staged.stage.in_(demonstration)).distinct().subquery()
    stmt = select(
        _day(Opportunity.published_at, True).label("d1"),
        _day(answers.c.answered, True).label("d2"),
        _day(_least(answers.c.reviewed, listed.c.day), True).label("d3"),
        _day(met.c.day, True).label("d4"),
        _day(signed.c.day, False).label("d5"),
        _day(pilot_day.c.day, False).label("d6"),
        _day(demo_day.c.day, False).label("d7"),
        at_pilot.c.oid.is_not(None).label("at6"),
        at_demo.c.oid.is_not(None).label("at7"),
    ).select_from(Opportunity)
    # The current stage comes from small joins (its index), so the needs themselves are read
    # from the (status, published_at) index alone.
    joined = (answers, listed, met, signed, pilot_day, demo_day, at_pilot, at_demo)
    for sub in joined:
        stmt = stmt.outerjoin(sub, sub.c.oid == Opportunity.id)
    # Only needs with some activity get a row; the published count is taken on its own.
    stmt = _filter_needs(stmt, f).where(or_(*(sub.c.oid.is_not(None) for sub in joined)))
    return stmt.cte("per_need")


def _filter_needs(stmt, f: Filters):
    """Published needs, in the publication year and city of the filters."""
    stmt = stmt.where(Opportunity.status == EntryStatus.PUBLISHED)
    if f.year:
        stmt = stmt.where(_ts_in_year(Opportunity.published_at, f.year))
    if f.city:
        stmt = stmt.where(Opportunity.region_city == f.city)
    return stmt


def funnel(f: Filters, c: Cubes | None = None) -> Figure:
    """The funnel figure, computed once per data version and filters (:func:`_cached`)."""
    return _cached(("funnel", f.year, f.city), lambda: _funnel(f))


def _funnel(f: Filters) -> Figure:
    per_need = _per_need(f)
    n = len(FUNNEL_STAGES)
    day = [None] + [per_need.c[f"d{k}"] for k in range(1, n + 1)]
    reached = {k: day[k].is_not(None) for k in range(1, n + 1)}
    reached[6] = or_(reached[6], per_need.c.at6)
    reached[7] = or_(reached[7], per_need.c.at7)
    # A need counts in a stage when it reached that stage or any later one.
    at_least = [or_(*(reached[j] for j in range(k, n + 1))) for k in range(1, n + 1)]
    diffs = union_all(*(
        select(literal(k).label("k"), (day[k] - day[k - 1]).label("d")).select_from(per_need)
        .where(day[k].is_not(None), day[k - 1].is_not(None), day[k] - day[k - 1] >= 0)
        for k in range(2, n + 1)
    )).subquery()
    ranked = select(
        diffs.c.k, diffs.c.d,
        func.row_number().over(partition_by=diffs.c.k, order_by=diffs.c.d).label("rn"),
        func.count().over(partition_by=diffs.c.k).label("n"),
    ).subquery()
    median_rows = (
        select(literal("median").label("what"), ranked.c.k, func.avg(ranked.c.d).label("value"))
        .where(or_(ranked.c.rn == (ranked.c.n + 1) // 2, ranked.c.rn == (ranked.c.n + 2) // 2))
        .group_by(ranked.c.k))
    count_rows = [_filter_needs(select(literal("count").label("what"), literal(1).label("k"),
                                       func.count().label("value")).select_from(Opportunity), f)]
    count_rows += [
        select(literal("count").label("what"), literal(k + 1).label("k"),
               func.coalesce(func.sum(case((cond, 1), else_=0)), 0).label("value")).select_from(per_need)
        for k, cond in enumerate(at_least) if k
    ]
    # One statement: the CTE of the needs is computed once for the counts and the medians.
    found = {(what, k): value for what, k, value in db.session.execute(union_all(*count_rows, median_rows))}
    counts = [int(found.get(("count", k + 1)) or 0) for k in range(n)]
    medians = {k: found[("median", k)] for k in range(2, n + 1) if found.get(("median", k)) is not None}
    rows = []
    for i, (_, label) in enumerate(FUNNEL_STAGES):
        median = medians.get(i + 1)
        rows.append([
            label, int(counts[i]),
            _pct(counts[i], counts[i - 1]) if i else None,
            _pct(counts[i], counts[0]) if i else (100.0 if counts[0] else None),
            round(float(median), 1) if median is not None else None,
        ])
    return Figure("funnel", "对接转化漏斗", ["阶段", "需求（条）", "较上一阶段转化率（%）", "占发布需求（%）",
                                          "距上一阶段中位天数"], rows, chart="hbar", series=[1],
                  note="各阶段统计到达该阶段（或其后阶段）的已发布需求数；天数按北京时间日期计算，"
                       "只统计两个阶段都有日期的需求。")


# ---------------------------------------------------------------- the dashboard


FIGURES = {"progress": progress, "funnel": funnel, "by_city": by_city, "by_field": by_field,
           "by_year": by_year, "designations": designations_by_status}
NEEDS_CUBES = frozenset({"by_city", "by_field", "by_year"})


def figure(key: str, f: Filters) -> Figure:
    return FIGURES[key](f, cubes() if key in NEEDS_CUBES else None)


def dashboard(f: Filters) -> list[Figure]:
    shared = cubes()
    return [FIGURES[key](f, shared) for key in FIGURE_KEYS]


def year_choices() -> list[int]:
    """Years that have data (publications, designations, targets), newest first."""
    found = db.session.execute(select(
        select(func.min(Opportunity.published_at)).where(Opportunity.status == EntryStatus.PUBLISHED)
        .scalar_subquery(),
        select(func.max(Opportunity.published_at)).where(Opportunity.status == EntryStatus.PUBLISHED)
        .scalar_subquery(),
        select(func.min(Designation.year)).scalar_subquery(),
        select(func.max(Designation.year)).scalar_subquery(),
        select(func.min(ProgrammeTarget.year)).scalar_subquery(),
        select(func.max(ProgrammeTarget.year)).scalar_subquery(),
    )).one()
    years = {timeutil.local_today().year}
    for value in found:
        if isinstance(value, datetime):
            years.add(timeutil.to_local(value).year)
        elif isinstance(value, int):
            years.add(value)
    return list(range(max(years), min(years) - 1, -1))


# ---------------------------------------------------------------- charts


def _strip_scripts(root):
    """pygal's ``xml_filters`` hook: drop every ``<script>`` (its tooltips' JS and the inline
    config it writes even with ``js=[]``), which the CSP would block anyway."""
    for parent in list(root.iter()):
        for child in list(parent):
            if isinstance(child.tag, str) and child.tag.rsplit("}", 1)[-1] == "script":
                parent.remove(child)
    return root


def chart_svg(fig: Figure) -> Markup:
    """The figure drawn by pygal as inline SVG, without any script (CSP) and with a CJK font
    family. Labels and values come from the figure's own rows.

    Drawing is the slow part of the page (tens of ms per chart), and a chart depends only on
    its figure's values, so the SVG of each distinct figure is kept (LRU, per process)."""
    return _render_chart(fig.chart, fig.title, tuple(fig.headers), tuple(tuple(row) for row in fig.rows),
                         fig.label_columns, tuple(fig.series), fig.unit)


@lru_cache(maxsize=256)
def _render_chart(kind_name: str | None, title: str, headers: tuple, rows: tuple, label_columns: tuple,
                  series: tuple, unit: str) -> Markup:
    import pygal
    from pygal.style import Style

    style = Style(font_family=FONT_FAMILY, background="#ffffff", plot_background="#ffffff",
                  colors=COLORS, label_font_size=12, major_label_font_size=12, legend_font_size=12,
                  title_font_size=15, value_font_size=11, tooltip_font_size=12)
    kind = {"bar": pygal.Bar, "stacked": pygal.StackedBar, "hbar": pygal.HorizontalBar}[kind_name or "bar"]
    labels = ["·".join(str(row[c]) for c in label_columns) for row in rows]
    height = max(320, 26 * len(labels) + 140) if kind_name == "hbar" else 360
    chart = kind(style=style, js=[], disable_xml_declaration=True, width=820, height=height,
                 legend_at_bottom=True, legend_at_bottom_columns=min(len(series), 5) or 1,
                 truncate_legend=-1, truncate_label=-1, x_label_rotation=0 if kind_name == "hbar" else 30,
                 print_values=False, show_y_guides=True, no_data_text="暂无数据", title=title,
                 value_formatter=lambda v: f"{v:g}{unit}" if v is not None else "—")
    chart.add_xml_filter(_strip_scripts)
    if unit == "%":  # shares of a target: a fixed 0–100% axis (more when a target is exceeded)
        shares = [float(row[c]) for row in rows for c in series if row[c] is not None]
        chart.range = (0, max([100.0, *shares]))
    if kind_name == "hbar":
        # pygal sizes the label margin for Latin text; CJK glyphs are about twice as wide.
        chart.margin_left = 6 * max((len(label) for label in labels), default=0)
        labels = labels[::-1]
    chart.x_labels = labels
    for column in series:
        values = [row[column] for row in rows]
        if kind_name == "hbar":
            values = values[::-1]
        chart.add(headers[column], [None if v is None else float(v) for v in values])
    svg = chart.render(is_unicode=True)
    return Markup(svg.replace("<svg ", '<svg aria-hidden="true" focusable="false" ', 1))


# ---------------------------------------------------------------- downloads

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def cell_text(value: Any) -> str:
    """How a cell reads on the page and in the CSV: ``—`` for no value, numbers as they are."""
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.2f}".rstrip("0").rstrip(".") if value != int(value) else str(int(value))
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    return str(value)


def _csv_cell(value: Any) -> str:
    text = cell_text(value)
    return "'" + text if text.startswith(FORMULA_START) and text != "—" else text


def figure_csv(fig: Figure) -> bytes:
    """The figure's table as CSV: UTF-8 with a BOM (Excel), Chinese headers."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(fig.headers)
    for row in fig.rows:
        writer.writerow([_csv_cell(v) for v in row])
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def workbook(figures: list[Figure], f: Filters) -> bytes:
    """The whole dashboard as an XLSX report: one sheet per figure, headers in the first row,
    numbers as numbers and text as text (never a formula)."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    book = Workbook()
    book.remove(book.active)
    book.properties.title = f"十百千与场景对接数据看板（{f.label}）"
    for fig in figures:
        sheet = book.create_sheet(fig.title[:31])
        for column, header in enumerate(fig.headers, start=1):
            sheet.cell(row=1, column=column, value=header).font = Font(bold=True)
            sheet.column_dimensions[sheet.cell(row=1, column=column).column_letter].width = max(
                12, 2 * len(header) + 2)
        for r, row in enumerate(fig.rows, start=2):
            for column, value in enumerate(row, start=1):
                cell = sheet.cell(row=r, column=column, value="—" if value is None else value)
                if isinstance(value, str) or value is None:
                    cell.data_type = "s"
        sheet.freeze_panes = "A2"
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def filename(what: str, f: Filters, extension: str) -> str:
    parts = ["programme", what]
    if f.year:
        parts.append(str(f.year))
    parts.append(f"{timeutil.local_today():%Y%m%d}")
    return "-".join(parts) + f".{extension}"


# ---------------------------------------------------------------- the public 「成果」 page


@dataclass
class Achievements:
    designations: dict[str, dict[int, list[dict[str, Any]]]]
    designation_counts: dict[str, int]
    signing_count: int
    signing_amount: float
    signings: list[dict[str, Any]]
    stages: list[tuple[str, int]]


PUBLIC_SIGNINGS = 50


def achievements() -> Achievements:
    """Published figures only: approved designations (a project only when its need is
    published), signings on published needs (public titles and amounts, never notes) and the
    published needs that reached each stage. No drafts, notes or evidence."""
    project_visible = or_(
        Designation.kind != DesignationKind.PROJECT,
        exists().where(Opportunity.id == Designation.opportunity_id,
                       Opportunity.status == EntryStatus.PUBLISHED),
    )
    zone_needs = (
        select(func.count()).select_from(DesignationOpportunity)
        .join(Opportunity, Opportunity.id == DesignationOpportunity.opportunity_id)
        .where(DesignationOpportunity.designation_id == Designation.id,
               Opportunity.status == EntryStatus.PUBLISHED)
        .correlate(Designation).scalar_subquery()
    )
    rows = db.session.execute(
        select(Designation.kind, Designation.year, Designation.name, Designation.region_city,
               Designation.region_county, Designation.opportunity_id, zone_needs.label("needs"))
        .where(Designation.status == DesignationStatus.APPROVED, project_visible)
        .order_by(Designation.kind, Designation.year.desc(), Designation.name)
    ).all()
    grouped: dict[str, dict[int, list[dict[str, Any]]]] = {
        k.value: defaultdict(list) for k in DesignationKind}
    for r in rows:
        grouped[r.kind][r.year].append({
            "name": r.name, "region": (r.region_city or "") + (r.region_county or ""),
            "opportunity_id": r.opportunity_id, "needs": r.needs if r.kind == DesignationKind.ZONE else None,
        })
    counts = {k.value: sum(len(v) for v in grouped[k.value].values()) for k in DesignationKind}

    public_signing = (select(Signing.id, Signing.title, Signing.signed_on, Signing.amount_wan,
                             Opportunity.id.label("opportunity_id"), Opportunity.title.label("need"),
                             Opportunity.region_city)
                      .join(Opportunity, Opportunity.id == Signing.opportunity_id)
                      .where(Opportunity.status == EntryStatus.PUBLISHED))
    totals = db.session.execute(
        select(func.count(), func.coalesce(func.sum(Signing.amount_wan), 0))
        .join(Opportunity, Opportunity.id == Signing.opportunity_id)
        .where(Opportunity.status == EntryStatus.PUBLISHED)
    ).one()
    signings = [dict(r._mapping) for r in db.session.execute(
        public_signing.order_by(Signing.signed_on.desc(), Signing.id.desc()).limit(PUBLIC_SIGNINGS))]

    ladder = (
        ("机会发布", None),
        ("创新研发", (ScenarioStage.RND, ScenarioStage.PILOT, ScenarioStage.DEMONSTRATION)),
        ("孵化试点", (ScenarioStage.PILOT, ScenarioStage.DEMONSTRATION)),
        ("示范推广", (ScenarioStage.DEMONSTRATION,)),
    )
    # Current stages (one GROUP BY), plus the terminated needs whose history reached a stage.
    published = Opportunity.status == EntryStatus.PUBLISHED
    by_stage = dict(db.session.execute(
        select(Opportunity.stage, func.count()).where(published).group_by(Opportunity.stage)).all())
    terminated = select(Opportunity.id).where(published, Opportunity.stage == ScenarioStage.TERMINATED)
    history = db.session.execute(select(*(
        select(func.count(func.distinct(StageChange.opportunity_id)))
        .where(StageChange.to_stage.in_(stages), StageChange.opportunity_id.in_(terminated)).scalar_subquery()
        for _, stages in ladder[1:]))).one()
    stage_counts = [sum(by_stage.values())] + [
        sum(by_stage.get(s.value, 0) for s in stages) + n
        for (_, stages), n in zip(ladder[1:], history, strict=True)]
    return Achievements(
        designations={k: dict(sorted(v.items(), reverse=True)) for k, v in grouped.items()},
        designation_counts=counts,
        signing_count=totals[0],
        signing_amount=_money(totals[1]),
        signings=signings,
        stages=[(label, int(n)) for (label, _), n in zip(ladder, stage_counts, strict=True)],
    )


def programme_targets_summary() -> dict[str, int]:
    """The cumulative target of each kind with the latest year (for the public page header)."""
    found: dict[str, int] = {}
    for t in programme.targets():
        if t.cumulative:
            found[t.kind] = t.target
    return found

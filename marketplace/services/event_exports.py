"""Exports of an event for organizers: the XLSX workbook of its shortlists, the CSV of its
registrations and the data of the printable 对接名单 (the event binder).

Only organizers export (the ``export`` action of :func:`marketplace.services.events.can`, asked by
the routes). Cells that a spreadsheet would read as a formula are defused:

* CSV: a cell starting with ``=``, ``+``, ``-``, ``@`` (or a tab / carriage return) gets a leading
  single quote (OWASP's advice against CSV injection);
* XLSX: every text cell is stored as a string, never as a formula, so the text stays exactly what
  the firm typed.
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from marketplace import timeutil
from marketplace.models import (
    Event,
    EventInvitationStatus,
    Meeting,
    MeetingStatus,
    Opportunity,
    Organization,
    RegistrationStatus,
    Shortlist,
)
from marketplace.services import meetings as meeting_service
from marketplace.services import shortlists
from marketplace.services.events import registrations_of, shortlists_of

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
SHEET_FORBIDDEN = re.compile(r"[\[\]:*?/\\]")
SHEET_MAX = 31

SHORTLIST_HEADERS = ["排名", "企业", "产品", "匹配度", "推荐理由", "来源", "联系人", "联系电话",
                     "联系邮箱", "邀请状态", "洽谈时间", "备注"]
SHORTLIST_WIDTHS = [6, 30, 40, 8, 60, 16, 10, 16, 24, 10, 28, 30]
REGISTRATION_HEADERS = ["单位名称", "统一社会信用代码", "单位类型", "所在地区", "联系人", "联系电话",
                        "联系邮箱", "报名状态", "携带产品", "报名说明", "审核意见", "报名时间", "审核时间"]


def defuse(value: Any) -> str:
    """A CSV cell that no spreadsheet evaluates as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def _local(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    return timeutil.to_local(value).strftime(fmt) if value else ""


def meeting_time(meeting: Meeting) -> str:
    """「12-16 14:00–14:20 第3桌」, with the status when it is not 已排期."""
    start, end = timeutil.to_local(meeting.starts_at), timeutil.to_local(meeting.ends_at)
    text = f"{start:%m-%d %H:%M}–{end:%H:%M} 第{meeting.table_number}桌"
    return text if meeting.status == MeetingStatus.SCHEDULED else f"{text}（{meeting.status_label}）"


def sheet_names(titles: list[str], taken: set[str] | None = None) -> list[str]:
    """Excel sheet names for the needs: numbered, ≤ 31 characters, unique, none of ``[]:*?/\\``."""
    used = {t.lower() for t in (taken or set())}
    out = []
    for number, title in enumerate(titles, start=1):
        clean = SHEET_FORBIDDEN.sub("_", title).strip().strip("'") or "需求"
        base = f"{number} {clean}"[:SHEET_MAX].rstrip().rstrip("'")
        name, suffix = base, 2
        while name.lower() in used:
            tail = f"~{suffix}"
            name = base[: SHEET_MAX - len(tail)] + tail
            suffix += 1
        used.add(name.lower())
        out.append(name)
    return out


# ---------------------------------------------------------------- one model for the binder and the workbook


@dataclass
class FirmLine:
    rank: int
    organization: Organization
    products: list[str]
    score: float | None
    reasons: list[str]
    sources: list[str]
    invitation: str
    meetings: list[str]
    note: str


@dataclass
class NeedList:
    opportunity: Opportunity
    shortlist: Shortlist | None
    lines: list[FirmLine]


def need_lists(event: Event) -> list[NeedList]:
    """Every featured need with its shortlist lines (scores as the shortlist page shows them)."""
    lists = shortlists_of(event)
    rows = meeting_service.meetings_of(event)
    times: dict[tuple[int, int], list[str]] = {}
    for meeting in rows:
        times.setdefault((meeting.opportunity_id, meeting.organization_id), []).append(meeting_time(meeting))
    out = []
    for featured in event.featured:
        need = featured.opportunity
        shortlist = lists.get(need.id)
        lines = []
        if shortlist is not None:
            for row in shortlists.rows(shortlist):
                entry = row.entry
                lines.append(FirmLine(
                    rank=row.rank, organization=entry.organization,
                    products=[p.name for p, _ in row.products], score=row.best_score,
                    reasons=[info.get("reason") for _, info in row.products if info.get("reason")],
                    sources=entry.source_labels, invitation=entry.invitation_label,
                    meetings=times.get((need.id, entry.organization_id), []), note=entry.note,
                ))
        out.append(NeedList(need, shortlist, lines))
    return out


# ---------------------------------------------------------------- XLSX


def _counts(event: Event, lists: list[NeedList]) -> list[tuple[str, Any]]:
    registrations = Counter(r.status for r in event.registrations)
    invitations = Counter(e.invitation_status for n in lists if n.shortlist for e in n.shortlist.entries)
    meetings = Counter(m.status for m in meeting_service.meetings_of(event))
    rows: list[tuple[str, Any]] = [("展示需求（项）", len(event.featured)),
                                   ("已生成对接名单（项）", sum(1 for n in lists if n.shortlist)),
                                   ("报名（家）", sum(registrations.values()))]
    rows += [(f"　报名{s.label}", registrations.get(s.value, 0)) for s in RegistrationStatus]
    rows.append(("名单企业（家次）", sum(invitations.values())))
    rows += [(f"　邀请{s.label}", invitations.get(s.value, 0)) for s in EventInvitationStatus]
    rows.append(("1:1 洽谈（场）", sum(meetings.values())))
    rows += [(f"　洽谈{s.label}", meetings.get(s.value, 0))
             for s in MeetingStatus if s != MeetingStatus.CANCELLED]
    return rows


def _put(sheet, row: int, column: int, value: Any, bold: bool = False):
    """Write a cell; text is always a string cell (never a formula)."""
    from openpyxl.styles import Alignment, Font

    cell = sheet.cell(row=row, column=column, value=value)
    if isinstance(value, str):
        cell.data_type = "s"
        cell.alignment = Alignment(wrap_text=True, vertical="top")
    if bold:
        cell.font = Font(bold=True)
    return cell


def _header(sheet, row: int, headers: list[str], widths: list[int]) -> None:
    from openpyxl.styles import PatternFill
    from openpyxl.utils import get_column_letter

    fill = PatternFill("solid", fgColor="DDEBF7")
    for column, (title, width) in enumerate(zip(headers, widths, strict=True), start=1):
        _put(sheet, row, column, title, bold=True).fill = fill
        sheet.column_dimensions[get_column_letter(column)].width = width


def workbook(event: Event) -> bytes:
    """The event's XLSX: 概况 (facts and counts, one line per need), then one sheet per featured
    need with its shortlist (header row frozen, Chinese headers, bold)."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    lists = need_lists(event)
    names = sheet_names([n.opportunity.title for n in lists], taken={"概况"})
    book = Workbook()
    summary = book.active
    summary.title = "概况"
    _put(summary, 1, 1, event.title).font = Font(bold=True, size=14)
    facts = [("活动类型", event.kind_label), ("状态", event.status_label),
             ("时间", _local(event.starts_at)
              + (f"–{_local(event.ends_at, '%H:%M')}" if event.ends_at else "")),
             ("地点", event.venue or "线上"), ("线上链接", event.online_url or "—"),
             ("名额（家）", event.capacity), ("报名截止", event.registration_deadline.isoformat()),
             ("导出时间", _local(timeutil.now_naive_utc()))]
    row = 3
    for label, value in facts + [("", "")] + _counts(event, lists):
        _put(summary, row, 1, label, bold=bool(label) and not label.startswith("　"))
        _put(summary, row, 2, value)
        row += 1
    row += 1
    headers = ["序号", "需求", "发布单位", "名单企业（家）", "确认参加（家）", "洽谈（场）", "工作表"]
    _header(summary, row, headers, [24, 50, 30, 14, 14, 10, 34])
    first = row
    for number, (need_list, name) in enumerate(zip(lists, names, strict=True), start=1):
        row += 1
        entries = need_list.shortlist.entries if need_list.shortlist else []
        values = [number, need_list.opportunity.title, need_list.opportunity.publisher.name, len(entries),
                  sum(e.invitation_status == EventInvitationStatus.CONFIRMED for e in entries),
                  sum(len(line.meetings) for line in need_list.lines), name]
        for column, value in enumerate(values, start=1):
            _put(summary, row, column, value)
    summary.freeze_panes = summary.cell(row=first + 1, column=1)

    for need_list, name in zip(lists, names, strict=True):
        sheet = book.create_sheet(name)
        need = need_list.opportunity
        _put(sheet, 1, 1, need.title).font = Font(bold=True, size=13)
        contact = " ".join(x for x in (need.contact_name, need.contact_phone) if x)
        about = f"{need.publisher.name} · {need.field_category}"
        _put(sheet, 2, 1, about + (f" · 联系人：{contact}" if contact else ""))
        _header(sheet, 3, SHORTLIST_HEADERS, SHORTLIST_WIDTHS)
        sheet.freeze_panes = "A4"
        if need_list.shortlist is None:
            _put(sheet, 4, 1, "尚未生成对接名单")
            continue
        for offset, line in enumerate(need_list.lines):
            organization = line.organization
            values = [line.rank, organization.name, "\n".join(line.products),
                      round(line.score * 100) if line.score is not None else None, "\n".join(line.reasons),
                      "、".join(line.sources), organization.contact_name, organization.contact_phone,
                      organization.contact_email, line.invitation, "\n".join(line.meetings), line.note]
            for column, value in enumerate(values, start=1):
                _put(sheet, 4 + offset, column, value)
        last = sheet.cell(row=3 + len(need_list.lines), column=len(SHORTLIST_HEADERS))
        sheet.auto_filter.ref = f"A3:{last.coordinate}"
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


# ---------------------------------------------------------------- CSV


def registrations_csv(event: Event) -> bytes:
    """Every registration of the event as CSV: UTF-8 with a BOM (Excel), Chinese headers."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(REGISTRATION_HEADERS)
    for r in registrations_of(event):
        organization = r.organization
        region = " ".join(x for x in (organization.region_city, organization.region_county) if x)
        writer.writerow([defuse(v) for v in (
            organization.name, organization.credit_code, organization.kind_label, region,
            organization.contact_name, organization.contact_phone, organization.contact_email,
            r.status_label, "、".join(p.name for p in r.products), r.note, r.decision_reason or "",
            _local(r.created_at), _local(r.decided_at),
        )])
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def filename(event: Event, what: str, extension: str) -> str:
    """A download name such as 「活动12-对接名单-20261216.xlsx」 (ASCII-safe id and date)."""
    return f"event{event.id}-{what}-{timeutil.to_local(event.starts_at):%Y%m%d}.{extension}"

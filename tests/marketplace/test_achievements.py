"""The public 「成果」 page: published figures only, and nothing private leaks."""

from __future__ import annotations

import io
from datetime import date
from decimal import Decimal

import pytest

from marketplace.models import (
    Designation,
    DesignationKind,
    DesignationOpportunity,
    DesignationStatus,
    EntryStatus,
    OrgKind,
    ScenarioStage,
    Signing,
    StageChange,
)
from marketplace.services import dashboard, uploads
from marketplace.services.programme import EVIDENCE_POLICY

PDF = b"%PDF-1.4\n%%EOF\n"


@pytest.fixture
def public(make, db):
    publisher = make.org(OrgKind.GOVERNMENT, name="上饶市大数据发展管理局")
    firm = make.org(OrgKind.ENTERPRISE, name="江西星河数字技术有限公司")
    pub = EntryStatus.PUBLISHED
    shown = make.opportunity(publisher, status=pub, title="上饶高铁站智慧客流示范",
                             stage=ScenarioStage.DEMONSTRATION)
    piloting = make.opportunity(publisher, status=pub, title="婺源景区VR导览", stage=ScenarioStage.PILOT)
    stopped = make.opportunity(publisher, status=pub, title="信州区智慧停车", stage=ScenarioStage.TERMINATED)
    hidden = make.opportunity(publisher, status=EntryStatus.WITHDRAWN, title="已撤回的保密需求",
                              stage=ScenarioStage.DEMONSTRATION)
    db.session.add(StageChange(opportunity_id=stopped.id, from_stage="rnd", to_stage="rnd",
                               happened_on=date(2026, 1, 5)))
    evidence = uploads.store(io.BytesIO(PDF), "评审打分表.pdf", EVIDENCE_POLICY, None, None)
    approved = DesignationStatus.APPROVED
    zone = Designation(kind=DesignationKind.ZONE, year=2025, status=approved,
                       name="上饶数字经济应用场景示范区", region_city="上饶市", region_county="信州区",
                       decision_note="专家组一致同意", evidence_file=evidence)
    zone.opportunities = [DesignationOpportunity(opportunity_id=shown.id),
                          DesignationOpportunity(opportunity_id=hidden.id)]
    db.session.add_all([
        zone,
        Designation(kind=DesignationKind.PROJECT, year=2026, status=approved, name=shown.title,
                    opportunity_id=shown.id),
        Designation(kind=DesignationKind.PROJECT, year=2026, status=approved, name=hidden.title,
                    opportunity_id=hidden.id),
        Designation(kind=DesignationKind.FIRM, year=2026, status=approved, name=firm.name,
                    organization_id=firm.id, decision_note="营收增速62%，内部材料"),
        Designation(kind=DesignationKind.FIRM, year=2026, status=DesignationStatus.REVIEWING,
                    name="评审中的企业有限公司", organization_id=make.org(OrgKind.ENTERPRISE).id),
        Designation(kind=DesignationKind.FIRM, year=2025, status=DesignationStatus.REJECTED,
                    name="未通过的企业有限公司", organization_id=make.org(OrgKind.ENTERPRISE).id),
        Signing(opportunity_id=shown.id, signed_on=date(2026, 4, 2), amount_wan=Decimal("860"),
                title="上饶站客流监测平台建设", note="合同价含三年运维，勿外传"),
        Signing(opportunity_id=piloting.id, signed_on=date(2026, 5, 9), title="婺源VR导览试点"),
        Signing(opportunity_id=hidden.id, signed_on=date(2026, 5, 10), amount_wan=Decimal("999"),
                title="撤回需求的签约"),
    ])
    db.session.commit()
    return {"shown": shown, "hidden": hidden, "firm": firm}


def test_figures_are_published_ones_only(public):
    data = dashboard.achievements()
    assert data.designation_counts == {"zone": 1, "project": 1, "firm": 1}
    assert (data.signing_count, data.signing_amount) == (2, 860.0)
    assert [s["title"] for s in data.signings] == ["婺源VR导览试点", "上饶站客流监测平台建设"]
    # 机会发布: 3 published; 创新研发: demonstration, pilot and the terminated one that reached rnd
    assert data.stages == [("机会发布", 3), ("创新研发", 3), ("孵化试点", 2), ("示范推广", 1)]
    assert data.designations["zone"][2025][0]["needs"] == 1  # the withdrawn need is not counted


def test_page_shows_names_by_kind_and_year(client, public):
    html = client.get("/achievements").get_data(as_text=True)
    for text in ("上饶数字经济应用场景示范区", "上饶高铁站智慧客流示范", "江西星河数字技术有限公司",
                 "上饶站客流监测平台建设", "860", "2025年", "2026年"):
        assert text in html


@pytest.mark.parametrize("secret", [
    "已撤回的保密需求",       # an unpublished need's designation
    "撤回需求的签约", "999",   # a signing of an unpublished need
    "勿外传",                 # a signing's private note
    "专家组一致同意", "内部材料",  # decision notes
    "评审打分表",             # evidence
    "评审中的企业有限公司", "未通过的企业有限公司",  # designations not approved
])
def test_page_leaks_nothing(client, public, secret):
    assert secret not in client.get("/achievements").get_data(as_text=True)


def test_public_nav_links_to_the_page(client):
    assert 'href="/achievements"' in client.get("/").get_data(as_text=True)


def test_empty_page(client):
    html = client.get("/achievements").get_data(as_text=True)
    assert "暂无签约" in html and "暂无已认定的高成长性企业" in html

"""The public organisation page /organizations/<id>: what it shows, and that it leaks nothing
(drafts, notes, amounts, unapproved designations, contact details for those who may not see them);
404 for unverified organisations; linked from the product and need pages."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from flask import g

from marketplace.models import (
    Designation,
    DesignationKind,
    DesignationOrganization,
    DesignationStatus,
    EntryStatus,
    OrgKind,
    ScenarioStage,
    Signing,
    SigningParty,
)
from tests.conftest import AuthActions

PHONE = "0791-86661234"
EMAIL = "contact@zhilian.example.cn"


@pytest.fixture
def firm_world(make, db):
    w = type("W", (), {})()
    w.firm = make.org(OrgKind.ENTERPRISE, name="江西智联科技有限公司", region_city="南昌市",
                      region_county="红谷滩区")
    w.firm.contact_name, w.firm.contact_phone, w.firm.contact_email = "罗晓明", PHONE, EMAIL
    w.firm.intro = "专注城市停车与交通大数据。"
    w.firm.pending_name = "江西智联数字科技集团有限公司"
    w.gov = make.org(OrgKind.GOVERNMENT, name="南昌市交通运输局", region_city="南昌市")
    w.stranger = make.org(OrgKind.ENTERPRISE, name="赣州慧通软件有限公司", verified=False)
    w.product = make.product(w.firm, status=EntryStatus.PUBLISHED, name="城市级智慧停车诱导平台")
    w.draft = make.product(w.firm, status=EntryStatus.DRAFT, name="未发布的停车机器人草稿")
    w.need = make.opportunity(w.gov, status=EntryStatus.PUBLISHED, title="中心城区智慧停车诱导系统建设",
                              stage=ScenarioStage.DEMONSTRATION)
    w.hidden_need = make.opportunity(w.gov, status=EntryStatus.WITHDRAWN, title="已撤回的需求标题")
    db.session.add_all([
        Signing(opportunity_id=w.need.id, signed_on=date(2026, 5, 20), title="红谷滩停车诱导一期",
                amount_wan=Decimal("388.00"), note="付款分三期（内部）",
                parties=[SigningParty(organization_id=w.firm.id)]),
        Signing(opportunity_id=w.hidden_need.id, signed_on=date(2026, 6, 1), title="撤回需求上的签约",
                parties=[SigningParty(organization_id=w.firm.id)]),
        Designation(kind=DesignationKind.FIRM, year=2025, status=DesignationStatus.APPROVED,
                    name=w.firm.name, organization_id=w.firm.id, decision_note="评审意见（内部）"),
        Designation(kind=DesignationKind.FIRM, year=2026, status=DesignationStatus.REVIEWING,
                    name="评审中的推荐", organization_id=w.firm.id),
    ])
    project = Designation(kind=DesignationKind.PROJECT, year=2026, status=DesignationStatus.APPROVED,
                          name="南昌智慧停车示范项目", opportunity_id=w.need.id)
    project.organizations = [DesignationOrganization(organization_id=w.firm.id)]
    db.session.add(project)
    db.session.commit()
    w.member = make.user(w.firm)
    w.gov_user = make.user(w.gov)
    w.stranger_user = make.user(w.stranger)
    w.organizer = make.organizer()
    return w


def _page(client, org_id: int, user=None):
    g.pop("_login_user", None)
    if user is not None:
        AuthActions(client).login(user)
    return client.get(f"/organizations/{org_id}")


def test_anyone_sees_the_public_profile(client, firm_world):
    w = firm_world
    reply = _page(client, w.firm.id)
    assert reply.status_code == 200
    html = reply.get_data(as_text=True)
    assert w.firm.name in html and "民营企业" in html and "南昌市红谷滩区" in html and "已认证" in html
    assert "专注城市停车与交通大数据" in html
    assert "城市级智慧停车诱导平台" in html and f"/products/{w.product.id}" in html
    assert "2025年高成长性企业" in html and "南昌智慧停车示范项目" in html
    assert "红谷滩停车诱导一期" in html and "2026-05-20" in html


@pytest.mark.parametrize("secret", [
    "未发布的停车机器人草稿", "已撤回的需求标题", "撤回需求上的签约", "付款分三期", "388", "评审意见",
    "评审中的推荐", "江西智联数字科技集团有限公司", PHONE, EMAIL, "罗晓明",
])
def test_anonymous_visitors_see_nothing_private(client, firm_world, secret):
    assert secret not in _page(client, firm_world.firm.id).get_data(as_text=True)


@pytest.mark.parametrize(("who", "sees"), [
    (None, False), ("stranger_user", False), ("gov_user", True), ("member", True), ("organizer", True),
])
def test_contact_details_follow_the_contact_rule(client, firm_world, who, sees):
    w = firm_world
    html = _page(client, w.firm.id, getattr(w, who) if who else None).get_data(as_text=True)
    assert (PHONE in html and EMAIL in html) is sees
    assert ("登录并通过单位认证后可查看联系方式" in html) is not sees


def test_a_department_page_lists_its_published_needs_only(client, firm_world):
    w = firm_world
    html = _page(client, w.gov.id).get_data(as_text=True)
    assert "中心城区智慧停车诱导系统建设" in html and f"/opportunities/{w.need.id}" in html
    assert "已撤回的需求标题" not in html
    assert "红谷滩停车诱导一期" in html and "发布单位" in html
    assert "南昌智慧停车示范项目" in html  # it published the demonstration project's need


@pytest.mark.parametrize("path", ["/organizations/{stranger}", "/organizations/999999",
                                  "/organizations/99999999999999"])
def test_unverified_and_unknown_organisations_are_404(client, firm_world, path):
    assert client.get(path.format(stranger=firm_world.stranger.id)).status_code == 404


def test_an_unverified_organisation_is_404_even_for_its_members(client, firm_world):
    w = firm_world
    assert _page(client, w.stranger.id, w.stranger_user).status_code == 404


def test_product_and_need_pages_link_to_the_organisation(client, firm_world):
    w = firm_world
    product_html = client.get(f"/products/{w.product.id}").get_data(as_text=True)
    assert f'href="/organizations/{w.firm.id}"' in product_html
    need_html = client.get(f"/opportunities/{w.need.id}").get_data(as_text=True)
    assert f'href="/organizations/{w.gov.id}"' in need_html


def test_an_unverified_owner_is_not_linked(client, firm_world, make):
    w = firm_world
    product = make.product(w.stranger, status=EntryStatus.PUBLISHED, name="未认证单位的产品")
    html = client.get(f"/products/{product.id}").get_data(as_text=True)
    assert f"/organizations/{w.stranger.id}" not in html

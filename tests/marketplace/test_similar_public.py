"""Public detail pages list published near-duplicates (相似需求 / 相似产品), never drafts."""

from __future__ import annotations

import pytest

from marketplace.services import matching

PARKING = (
    "中心城区老旧小区停车位严重不足，夜间车辆乱停乱放，需要建设智慧停车诱导系统，"
    "整合路内泊位和公共停车场数据，提供车位实时查询、停车诱导和错时共享服务。"
)
OTHERS = [
    (
        "县级医院远程会诊平台建设",
        "县级医院缺少专科医生，需要建设远程会诊和影像诊断平台，连接省级三甲医院专家资源。",
    ),
    (
        "小型水库安全监测预警",
        "辖区小型水库缺少水位和渗压监测，需要自动化监测站和预警平台，汛期实时推送告警。",
    ),
    ("中小学VR实验教学", "农村中小学物理化学实验条件不足，需要VR虚拟实验教学系统，覆盖初中主要实验课程。"),
]


@pytest.fixture
def corpus(make):
    org = make.org(kind="government")
    other = make.org(kind="government", region_city="赣州市", region_county="章贡区")
    batch = make.batch("opportunity", status="published")
    original = make.opportunity(
        org, "published", batch, title="中心城区智慧停车诱导系统", description=PARKING
    )
    twin = make.opportunity(
        other,
        "published",
        batch,
        title="城区智慧停车诱导与泊位共享",
        description=PARKING + "覆盖章贡区主要街道。",
        region_city="赣州市",
        region_county="章贡区",
    )
    draft_twin = make.opportunity(other, "draft", None, title="停车诱导草稿", description=PARKING)
    for title, description in OTHERS:
        make.opportunity(org, "published", batch, title=title, description=description)
    # The offline encoder is fitted on the corpus by the (scheduled) rebuild, not per edit.
    matching.get_service().rebuild(refit=True)
    return original, twin, draft_twin


def test_public_page_lists_published_near_duplicate(client, corpus):
    original, twin, draft_twin = corpus
    html = client.get(f"/opportunities/{original.id}").get_data(as_text=True)
    assert "相似需求" in html
    assert f"/opportunities/{twin.id}" in html
    assert f"/opportunities/{draft_twin.id}" not in html
    assert "县级医院远程会诊平台建设" not in html


def test_entry_without_near_duplicates_shows_no_section(client, corpus, db):
    from sqlalchemy import select

    from marketplace.models import Opportunity

    hospital = db.session.scalar(select(Opportunity).where(Opportunity.title == OTHERS[0][0]))
    html = client.get(f"/opportunities/{hospital.id}").get_data(as_text=True)
    assert "相似需求" not in html

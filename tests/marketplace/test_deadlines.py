"""征集中 / 已截止 on the portal, the matching pages and the API (Beijing time, frozen clock)."""

from __future__ import annotations

from datetime import date

import pytest

from marketplace.models import EntryStatus, OrgKind
from marketplace.services import matching
from tests.marketplace.test_responses import clock  # noqa: F401  (fixture)


@pytest.fixture
def needs(make, clock):  # noqa: F811
    clock.set("2026-12-01 09:00:00")
    publisher = make.org(kind=OrgKind.GOVERNMENT, name="赣州市交通运输局")
    firm = make.org(kind=OrgKind.ENTERPRISE, name="赣州智行科技有限公司")
    description = "辖区老旧小区停车位紧张，夜间乱停乱放严重，需要停车诱导和泊位共享系统，提升停车效率。"
    closed = make.opportunity(publisher, status=EntryStatus.PUBLISHED, title="老旧小区智慧停车改造",
                              deadline=date(2026, 11, 30), description=description)
    today = make.opportunity(publisher, status=EntryStatus.PUBLISHED, title="智慧停车诱导系统建设",
                             deadline=date(2026, 12, 1), description=description)
    later = make.opportunity(publisher, status=EntryStatus.PUBLISHED, title="停车泊位共享平台建设",
                             deadline=date(2026, 12, 6), description=description)
    forever = make.opportunity(publisher, status=EntryStatus.PUBLISHED, title="停车场智能收费长期征集",
                               deadline=None, description=description)
    product = make.product(firm, status=EntryStatus.PUBLISHED)
    return {"closed": closed, "today": today, "later": later, "forever": forever, "product": product,
            "firm_user": make.user(firm)}


def _titles(html: str, needs) -> list[str]:
    """Which of the four needs a list page links to, in page order (titles may be highlighted)."""
    keys = ("closed", "today", "later", "forever")
    links = {k: f'href="/opportunities/{needs[k].id}"' for k in keys}
    found = [(html.index(link), k) for k, link in links.items() if link in html]
    return [k for _, k in sorted(found)]


def test_the_default_list_shows_open_needs_first(client, needs):
    html = client.get("/opportunities").get_data(as_text=True)
    order = _titles(html, needs)
    assert order[-1] == "closed" and set(order) == {"closed", "today", "later", "forever"}
    assert "已截止" in html and "今天截止" in html and "还剩 5 天" in html


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("open", {"today", "later", "forever"}),
        ("closed", {"closed"}),
        ("", {"closed", "today", "later", "forever"}),
    ],
)
def test_state_filter(client, needs, state, expected):
    html = client.get("/opportunities", query_string={"state": state}).get_data(as_text=True)
    assert set(_titles(html, needs)) == expected


def test_state_filter_with_keywords(client, needs):
    html = client.get("/opportunities", query_string={"state": "closed", "q": "停车"}).get_data(as_text=True)
    assert set(_titles(html, needs)) == {"closed"}
    html = client.get("/opportunities", query_string={"state": "open", "q": "停车"}).get_data(as_text=True)
    assert "closed" not in _titles(html, needs)


def test_an_unknown_state_is_a_form_error_not_a_500(client, needs):
    reply = client.get("/opportunities", query_string={"state": "nonsense"})
    assert reply.status_code == 200 and "无效的征集状态" in reply.get_data(as_text=True)


def test_the_need_closes_at_midnight_beijing(client, needs, clock):  # noqa: F811
    clock.set("2026-12-01 23:59:59")
    assert "今天截止" in client.get(f"/opportunities/{needs['today'].id}").get_data(as_text=True)
    clock.set("2026-12-02 00:00:00")
    assert "已截止" in client.get(f"/opportunities/{needs['today'].id}").get_data(as_text=True)


def test_api_reports_deadline_and_open(client, auth, make, needs):
    auth.login(make.organizer())  # rankings are for owners and organizers
    data = client.get(f"/api/v1/opportunities/{needs['closed'].id}/products").get_json()
    assert data["query"]["deadline"] == "2026-11-30" and data["query"]["open"] is False
    data = client.get("/api/v1/search", query_string={"q": "停车 泊位", "side": "opportunities"}).get_json()
    by_id = {r["id"]: r for r in data["results"]}
    assert needs["closed"].id not in by_id
    assert by_id[needs["later"].id]["open"] is True and by_id[needs["later"].id]["deadline"] == "2026-12-06"
    assert by_id[needs["forever"].id]["deadline"] is None


def test_api_includes_closed_needs_on_request(client, auth, make, needs):
    auth.login(make.organizer())
    data = client.get("/api/v1/search", query_string={"q": "停车", "side": "opportunities",
                                                      "include_closed": "1"}).get_json()
    assert needs["closed"].id in {r["id"] for r in data["results"]}
    data = client.get(f"/api/v1/products/{needs['product'].id}/opportunities",
                      query_string={"include_closed": "true"}).get_json()
    assert needs["closed"].id in {r["id"] for r in data["results"]}


def test_api_rejects_a_bad_include_closed(client, needs):
    reply = client.get("/api/v1/search", query_string={"q": "停车", "include_closed": "maybe"})
    assert reply.status_code == 400 and "include_closed" in reply.get_json()["error"]["message"]


def test_fit_for_me_excludes_closed_needs_unless_asked(client, auth, needs):
    auth.login(needs["firm_user"])
    url = f"/matching/products/{needs['product'].id}"
    html = client.get(url).get_data(as_text=True)
    assert needs["closed"].title not in html and needs["later"].title in html
    html = client.get(url, query_string={"include_closed": "y"}).get_data(as_text=True)
    assert needs["closed"].title in html


def test_the_service_filter(make, needs):
    organizer = make.organizer()
    results = matching.opportunities_for_product_id(organizer, needs["product"].id, 10)[1]
    assert needs["closed"].id not in {r.entry.id for r in results}
    results = matching.opportunities_for_product_id(
        organizer, needs["product"].id, 10, include_closed=True
    )[1]
    assert needs["closed"].id in {r.entry.id for r in results}


def test_organizer_search_over_needs_excludes_closed_by_default(client, auth, make, needs):
    auth.login(make.organizer())
    html = client.get("/matching/search", query_string={"q": "停车诱导", "side": "opportunity"}).get_data(
        as_text=True
    )
    assert needs["closed"].title not in html and needs["later"].title in html
    html = client.get("/matching/search", query_string={"q": "停车诱导", "side": "opportunity",
                                                        "include_closed": "y"}).get_data(as_text=True)
    assert needs["closed"].title in html

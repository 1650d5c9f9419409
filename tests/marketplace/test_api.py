"""The JSON API ``/api/v1``: shape, published data only, 400/401/403/404 as JSON, never a 500.

The two rankings follow the matching pages' rule (the entry's own organization and organizers);
free-text search is public.
"""

from __future__ import annotations

import pytest

from marketplace.models import EntryStatus
from tests.marketplace.test_matching_app import (
    HIDDEN,
    PARKING_QUERY,
    UNPUBLISHED,
    build_corpus,
    hidden_opportunity,
    hidden_product,
)

RESULT_KEYS = {
    "id",
    "organization",
    "score",
    "dense",
    "lexical",
    "structured",
    "breakdown",
    "matched_terms",
    "related_terms",
    "evidence",
    "reason",
    "url",
}


@pytest.fixture
def corpus(make):
    return build_corpus(make)


@pytest.fixture
def organizer(make, auth):
    """An organizer logged in on ``client`` (rankings are not public)."""
    user = make.organizer()
    auth.login(user)
    return user


def _urls(corpus) -> dict[str, str]:
    return {
        "products": f"/api/v1/opportunities/{corpus.parking_need.id}/products",
        "opportunities": f"/api/v1/products/{corpus.parking_product.id}/opportunities",
        "search": f"/api/v1/search?q={PARKING_QUERY}",
    }


def test_products_for_an_opportunity(corpus, client, organizer):
    response = client.get(f"/api/v1/opportunities/{corpus.parking_need.id}/products?k=5")
    assert response.status_code == 200
    body = response.get_json()
    assert body["query"]["id"] == corpus.parking_need.id and body["query"]["k"] == 5
    assert body["encoder"].startswith("offline")
    top = body["results"][0]
    assert RESULT_KEYS | {"name"} <= set(top)
    assert top["id"] == corpus.parking_product.id
    assert top["name"] == corpus.parking_product.name
    assert top["organization"] == corpus.firm.name
    assert top["url"] == f"/products/{corpus.parking_product.id}"
    assert top["reason"].startswith("推荐理由") and "同属交通出行领域" in top["reason"]
    assert {"dense", "lexical", "structured", "structured_city"} <= set(top["breakdown"])
    assert top["score"] >= body["results"][-1]["score"]


def test_opportunities_for_a_product(corpus, client, organizer):
    body = client.get(f"/api/v1/products/{corpus.care_product.id}/opportunities").get_json()
    top = body["results"][0]
    assert RESULT_KEYS | {"title"} <= set(top)
    assert top["id"] == corpus.care_need.id and top["url"] == f"/opportunities/{corpus.care_need.id}"
    assert "同在九江市浔阳区" in top["reason"]


def test_search_both_sides(corpus, client):
    products = client.get("/api/v1/search", query_string={"q": "独居老人跌倒检测", "k": "1"}).get_json()
    assert [r["id"] for r in products["results"]] == [corpus.care_product.id]
    assert products["query"] == {
        "q": "独居老人跌倒检测",
        "side": "products",
        "k": 1,
        "filters": {"region": None, "category": None, "maturity": None, "tag": None},
        "include_closed": False,
    }
    needs = client.get("/api/v1/search", query_string={"q": "独居老人跌倒检测", "side": "opportunities"})
    assert needs.get_json()["results"][0]["id"] == corpus.care_need.id


def test_filters_apply(corpus, client, organizer):
    url = f"/api/v1/opportunities/{corpus.parking_need.id}/products"
    body = client.get(
        url, query_string={"region": "九江市", "maturity": "pilot", "tag": "人工智能"}
    ).get_json()
    assert [r["id"] for r in body["results"]] == [corpus.care_product.id]
    url = f"/api/v1/products/{corpus.parking_product.id}/opportunities"
    body = client.get(url, query_string={"category": "社会保障"}).get_json()
    assert [r["id"] for r in body["results"]] == [corpus.care_need.id]


@pytest.mark.parametrize("status", UNPUBLISHED)
@pytest.mark.parametrize("endpoint", ["products", "opportunities", "search"])
def test_results_are_published_entries_only(make, corpus, client, organizer, status, endpoint):
    hidden_product(make, corpus.firm, status)
    hidden_opportunity(make, corpus.gov, status)
    url = _urls(corpus)[endpoint]
    for extra in ("&side=products", "&side=opportunities") if endpoint == "search" else ("",):
        sep = "&" if "?" in url else "?"
        response = client.get(f"{url}{sep}k=100{extra}")
        assert response.status_code == 200
        results = response.get_json()["results"]
        assert results
        assert not [r for r in results if HIDDEN in (r.get("name") or r.get("title"))]


BAD_REQUESTS = [
    ("products", {"k": "0"}),
    ("products", {"k": "101"}),
    ("products", {"k": "abc"}),
    ("products", {"k": ""}),
    ("products", {"k": "-5"}),
    ("products", {"maturity": "foo"}),
    ("products", {"tag": "不存在"}),
    ("products", {"region": "火星市"}),
    ("opportunities", {"k": "abc"}),
    ("opportunities", {"region": "火星市"}),
    ("opportunities", {"category": "星际旅行"}),
    ("search", {"side": "xyz"}),
    ("search", {"q": ""}),
    ("search", {"q": "   "}),
    ("search", {"q": "停" * 501}),
    ("search", {"k": "101"}),
    ("search", {"region": "火星市"}),
    ("search", {"side": "opportunities", "maturity": "scale"}),
    ("search", {"side": "opportunities", "tag": "物联网"}),
]


@pytest.mark.parametrize(("endpoint", "params"), BAD_REQUESTS)
def test_invalid_parameters_are_400_json(corpus, client, organizer, endpoint, params):
    path = _urls(corpus)[endpoint].split("?")[0]
    query = {"q": PARKING_QUERY} if endpoint == "search" else {}
    query.update(params)
    response = client.get(path, query_string=query)
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == 400 and error["message"]


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/opportunities/999999/products",
        "/api/v1/products/999999/opportunities",
        "/api/v1/opportunities/abc/products",
        "/api/v1/nothing-here",
    ],
)
def test_unknown_ids_are_404_json(corpus, client, organizer, url):
    response = client.get(url)
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == 404


@pytest.mark.parametrize("status", UNPUBLISHED)
def test_unpublished_ids_are_404_for_outsiders(make, corpus, client, auth, status):
    need = hidden_opportunity(make, corpus.gov, status)
    product = hidden_product(make, corpus.firm, status)
    urls = [f"/api/v1/opportunities/{need.id}/products", f"/api/v1/products/{product.id}/opportunities"]
    for url in urls:
        assert client.get(url).status_code == 401
    auth.login(make.user(corpus.care_firm))
    for url in urls:
        assert client.get(url).status_code == 404


def test_owner_and_staff_can_query_with_a_draft(make, corpus, client, auth):
    draft = make.opportunity(corpus.gov, EntryStatus.DRAFT, title="停车诱导草稿需求")
    hidden_product(make, corpus.firm, EntryStatus.DRAFT)
    url = f"/api/v1/opportunities/{draft.id}/products"
    auth.login(make.user(corpus.gov))
    body = client.get(url).get_json()
    assert body["query"]["status"] == "draft"
    assert corpus.parking_product.id in [r["id"] for r in body["results"]]
    assert not [r for r in body["results"] if HIDDEN in r["name"]]
    auth.logout()
    auth.login(make.organizer())
    assert client.get(url).status_code == 200


def test_the_api_is_read_only(corpus, client):
    response = client.post(f"/api/v1/opportunities/{corpus.parking_need.id}/products")
    assert response.status_code in (400, 405)
    assert "error" in response.get_json()


def test_rankings_need_a_login(corpus, client):
    for endpoint in ("products", "opportunities"):
        response = client.get(_urls(corpus)[endpoint])
        assert response.status_code == 401
        assert response.get_json()["error"] == {
            "code": 401,
            "message": "请先登录，或使用个人 API 令牌（Authorization: Bearer mkt_…）",
        }
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_rankings_of_a_published_entry_are_403_for_other_organizations(make, corpus, client, auth):
    auth.login(make.user(corpus.care_firm))
    response = client.get(_urls(corpus)["products"])
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == 403
    # The page says the same.
    assert client.get(f"/matching/opportunities/{corpus.parking_need.id}").status_code == 403


@pytest.mark.parametrize("owner", ["gov", "firm"])
def test_owners_see_their_own_rankings(make, corpus, client, auth, owner):
    auth.login(make.user(getattr(corpus, owner)))
    endpoint = "products" if owner == "gov" else "opportunities"
    assert client.get(_urls(corpus)[endpoint]).status_code == 200


def test_search_stays_public(corpus, client):
    assert client.get(_urls(corpus)["search"]).status_code == 200

"""The OpenAPI document describes the whole API, the docs page reads it, every JSON response
carries readable Chinese as UTF-8, and the public lists return published entries only."""

from __future__ import annotations

import re
from datetime import date

import jsonschema
import pytest
from flask import Blueprint
from openapi_spec_validator import validate

from marketplace import create_app
from marketplace.api.openapi import build_document, operation
from marketplace.api.schemas import OpportunityList
from marketplace.models import EntryStatus
from tests.marketplace.test_matching_app import (
    HIDDEN,
    UNPUBLISHED,
    build_corpus,
    hidden_opportunity,
    hidden_product,
)

RULE_VARIABLE = re.compile(r"<(?:[^<>:]+:)?([^<>]+)>")


@pytest.fixture
def corpus(make):
    return build_corpus(make)


@pytest.fixture
def document(client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    return response.get_json()


def _body_validator(document, path: str, status: str = "200"):
    """A JSON Schema validator of one response body, resolving the document's components."""
    schema = document["paths"][path]["get"]["responses"][status]["content"]["application/json"]["schema"]
    return jsonschema.Draft202012Validator({**schema, "components": document["components"]})


def test_the_document_is_valid_openapi_3_1(document):
    assert document["openapi"].startswith("3.1")
    validate(document)


def test_the_document_lists_every_api_rule_of_the_app(app, document):
    rules = {
        (RULE_VARIABLE.sub(r"{\1}", rule.rule), method.lower())
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/api/v1/")
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    documented = {(path, method) for path, methods in document["paths"].items() for method in methods}
    assert rules and documented == rules


def test_the_api_changes_nothing_so_cookie_callers_need_no_csrf(app):
    """Every /api/v1 rule is a GET: a session cookie cannot be used to change anything."""
    rules = [rule for rule in app.url_map.iter_rules() if rule.rule.startswith("/api/v1/")]
    methods = {method for rule in rules for method in rule.methods}
    assert methods == {"GET", "HEAD", "OPTIONS"}


def test_an_undocumented_api_rule_breaks_the_document(app):
    other = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"]})
    extra = Blueprint("extra", __name__)
    extra.add_url_rule("/secret", "secret", lambda: "")
    other.register_blueprint(extra, url_prefix="/api/v1")
    with other.app_context(), pytest.raises(RuntimeError, match="/api/v1/secret"):
        build_document(other)


def test_a_documented_rule_appears_with_its_parameters(app):
    other = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"]})
    extra = Blueprint("extra", __name__)

    @extra.get("/things/<int:id>")
    @operation(summary="一件东西", description="测试", tag="清单", response=OpportunityList)
    def thing(id: int):
        return ""

    other.register_blueprint(extra, url_prefix="/api/v1")
    with other.app_context():
        op = build_document(other)["paths"]["/api/v1/things/{id}"]["get"]
    assert op["parameters"] == [
        {
            "name": "id",
            "in": "path",
            "required": True,
            "schema": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1},
            "description": "条目编号",
        }
    ]
    assert set(op["responses"]) == {"200", "400", "401", "404", "429"}


def test_every_operation_documents_its_errors_with_the_shared_schema(document):
    for path, methods in document["paths"].items():
        for op in methods.values():
            codes = set(op["responses"])
            assert {"200", "400", "401", "429"} <= codes, path
            if "{id}" in path:
                assert {"403", "404"} <= codes, path
            for code, response in op["responses"].items():
                if code != "200":
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ApiError"}, (path, code)
    assert "Retry-After" in document["paths"]["/api/v1/search"]["get"]["responses"]["429"]["headers"]


def test_parameters_carry_types_ranges_and_enums(document, app):
    params = {p["name"]: p for p in document["paths"]["/api/v1/search"]["get"]["parameters"]}
    assert params["q"]["required"] and params["q"]["schema"]["maxLength"] == 500
    assert params["k"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 100, "default": 20,
                                     "examples": [10]}
    assert params["side"]["schema"]["enum"] == ["products", "opportunities"]
    assert "南昌市" in params["region"]["schema"]["enum"]
    assert "交通出行" in params["category"]["schema"]["enum"]
    assert params["maturity"]["schema"]["enum"] == ["rnd", "pilot", "scale"]
    assert params["include_closed"]["schema"]["type"] == "boolean"
    rankings = document["paths"]["/api/v1/opportunities/{id}/products"]["get"]
    assert rankings["security"] == [{"bearerAuth": []}, {"sessionCookie": []}]
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


def test_the_docs_page_is_rendered_from_the_document(client, document):
    response = client.get("/api/docs")
    assert response.status_code == 200 and response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    for path, methods in document["paths"].items():
        assert f"<code class=\"fs-6\">{path}</code>" in html
        for op in methods.values():
            assert op["summary"] in html
    assert "Authorization: Bearer mkt_…" in html
    assert not re.search(r'<script[^>]+src="(https?:)?//', html)  # no CDN: CSP is script-src 'self'
    assert "赣江新区" in html  # the enum of region


def test_html_pages_under_api_keep_html_errors(client):
    response = client.get("/api/nothing-here")
    assert response.status_code == 404 and response.mimetype == "text/html"


# -------------------------------------------------------------------- JSON: readable Chinese, UTF-8


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/search?q=老旧小区停车",
        "/api/v1/opportunities",
        "/api/v1/products?region=九江市",
        "/api/v1/opportunities/{need}/products",  # 401
        "/api/v1/search?q=",  # 400
        "/api/v1/search?q=%00",  # 400, NUL
        "/api/v1/nothing",  # 404
        "/api/v1/openapi.json",
    ],
)
def test_json_is_readable_chinese_in_utf8(client, corpus, url):
    response = client.get(url.format(need=corpus.parking_need.id))
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    raw = response.get_data()
    assert b"\\u" not in raw
    assert re.search(r"[\u4e00-\u9fff]", raw.decode("utf-8"))


def test_an_unknown_method_is_a_json_405(client):
    response = client.post("/api/v1/search?q=停车")
    assert response.status_code in (400, 405)
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    assert b"\\u" not in response.get_data()


# -------------------------------------------------------------------- public lists


@pytest.mark.parametrize("status", UNPUBLISHED)
def test_lists_show_published_entries_only(client, make, corpus, document, status):
    hidden_opportunity(make, corpus.gov, status)
    hidden_product(make, corpus.firm, status)
    for path, expected in (
        ("/api/v1/opportunities", {corpus.parking_need.id, corpus.care_need.id}),
        ("/api/v1/products", {corpus.parking_product.id, corpus.care_product.id}),
    ):
        body = client.get(path, query_string={"per_page": 100}).get_json()
        assert {r["id"] for r in body["results"]} == expected
        assert body["pagination"]["total"] == 2
        assert HIDDEN not in str(body)
        _body_validator(document, path).validate(body)


def test_product_list_filters_and_pages(client, make, corpus):
    body = client.get("/api/v1/products", query_string={"region": "九江市", "tag": "人工智能"}).get_json()
    assert [r["id"] for r in body["results"]] == [corpus.care_product.id]
    top = body["results"][0]
    assert top["organization"] == "九江康养智能科技有限公司" and top["maturity"] == "pilot"
    assert top["url"] == f"/products/{corpus.care_product.id}"
    paged = client.get("/api/v1/products", query_string={"per_page": 1, "page": 2}).get_json()
    assert paged["pagination"] == {"page": 2, "per_page": 1, "total": 2, "pages": 2}
    assert len(paged["results"]) == 1


def test_opportunity_list_filters_by_state(client, make, corpus):
    closed = make.opportunity(corpus.gov, EntryStatus.PUBLISHED, title="已截止的智慧水利需求",
                              deadline=date(2020, 1, 1))
    open_ids = {r["id"] for r in client.get("/api/v1/opportunities?state=open").get_json()["results"]}
    closed_body = client.get("/api/v1/opportunities?state=closed").get_json()
    assert closed.id not in open_ids
    assert [r["id"] for r in closed_body["results"]] == [closed.id]
    top = closed_body["results"][0]
    assert top["open"] is False and top["deadline"] == "2020-01-01"


@pytest.mark.parametrize(
    ("path", "params", "message"),
    [
        ("/api/v1/products", {"page": "0"}, "page 应为 1 到 10000 之间的整数"),
        ("/api/v1/products", {"page": "99999999999999999999"}, "page 应为"),
        ("/api/v1/products", {"per_page": "101"}, "per_page 应为 1 到 100 之间的整数"),
        ("/api/v1/products", {"region": "火星市"}, "未知的地市：火星市"),
        ("/api/v1/products", {"tag": "不存在"}, "未知的技术标签：不存在"),
        ("/api/v1/products", {"maturity": "foo"}, "成熟度只能是"),
        ("/api/v1/opportunities", {"state": "maybe"}, "state 只能是"),
        ("/api/v1/opportunities", {"area": "星际"}, "未知的应用领域大类：星际"),
        ("/api/v1/search", {"q": "停车", "include_closed": "perhaps"}, "include_closed 只能是"),
    ],
)
def test_invalid_list_parameters_are_400_in_chinese(client, path, params, message):
    response = client.get(path, query_string=params)
    assert response.status_code == 400
    assert message in response.get_json()["error"]["message"]


def test_blank_filters_mean_any(client, corpus):
    body = client.get("/api/v1/products?region=&maturity=&tag=&category=").get_json()
    assert body["pagination"]["total"] == 2


def test_the_public_lists_show_the_verified_organization_name(client, make, corpus):
    corpus.firm.pending_name = "江西省数字经济发展办公室（官方认证）"
    make.db.session.commit()
    body = client.get("/api/v1/products").get_json()
    assert "官方认证" not in str(body)
    assert "南昌泊位通科技有限公司" in [r["organization"] for r in body["results"]]

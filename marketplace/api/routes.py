"""JSON endpoints under ``/api/v1``. GET only; errors are JSON (see ``marketplace.errors``).

* ``GET /opportunities``, ``GET /products``: pages of published entries (public).
* ``GET /search?q=…&side=products|opportunities``: free text against published entries (public).
* ``GET /opportunities/<id>/products``, ``GET /products/<id>/opportunities``: the rankings of an
  entry, by the matching pages' rule (``services.matching.require_match_access``): members of the
  entry's own organization and organizers (a draft works for them too). Anonymous callers get
  401, other users 403 for a published entry and 404 for a hidden one.
* ``GET /openapi.json``: the OpenAPI 3.1 document, generated from these views (``openapi.py``).

Results are published entries only. Opportunities carry ``deadline`` (a Beijing date) and
``open`` (征集中); rankings and searches of needs leave out closed needs unless
``include_closed=true``. Invalid parameters give 400, unknown ids 404, more calls than
``RATELIMIT_API`` per token or client address 429. Authentication: ``auth.py``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import current_app, jsonify, url_for
from flask_login import current_user

from marketplace import security
from marketplace.api import auth, bp, schemas
from marketplace.api.openapi import build_document, operation, parse_query
from marketplace.extensions import limiter
from marketplace.models import EntryKind, Opportunity, Product
from marketplace.services import matching, portal
from marketplace.services.api_tokens import AuthenticationRequired
from marketplace.services.search import EntryFilters

limiter.shared_limit(security.api_limit, scope="api", key_func=auth.rate_limit_key)(bp)

LOGIN_REQUIRED = "请先登录，或使用个人 API 令牌（Authorization: Bearer mkt_…）"
SIDES = {"products": EntryKind.PRODUCT.value, "opportunities": EntryKind.OPPORTUNITY.value}


def deadline_fields(entry) -> dict[str, Any]:
    """``deadline`` (a Beijing date, ISO) and ``open`` (征集中) of an opportunity."""
    return {"deadline": entry.deadline.isoformat() if entry.deadline else None, "open": entry.is_open}


def _timestamp(value: datetime | None) -> str | None:
    return value.replace(tzinfo=UTC).isoformat() if value is not None else None


def _result(rank: int, result: matching.MatchResult) -> dict[str, Any]:
    entry, hit = result.entry, result.hit
    data: dict[str, Any] = {"rank": rank, "id": entry.id}
    if entry.kind == EntryKind.PRODUCT:
        data.update(
            name=entry.name,
            maturity=entry.maturity,
            tags=entry.tags,
            categories=entry.categories,
            url=url_for("portal.product", id=entry.id),
        )
    else:
        data.update(
            title=entry.title,
            categories=entry.categories,
            url=url_for("portal.opportunity", id=entry.id),
            **deadline_fields(entry),
        )
    data.update(
        organization=result.organization,
        region=entry.region_label,
        score=hit.score,
        dense=hit.dense,
        lexical=hit.lexical,
        structured=hit.structured,
        breakdown=hit.breakdown,
        matched_terms=hit.matched_terms,
        related_terms=[list(pair) for pair in hit.related_terms],
        evidence=hit.evidence._asdict() if hit.evidence is not None else None,
        reasons=hit.reasons,
        reason=hit.reason,
    )
    return data


def _ranking(query: dict[str, Any], results: list[matching.MatchResult]):
    return jsonify(
        query=query,
        encoder=matching.encoder_name(),
        results=[_result(n, r) for n, r in enumerate(results, start=1)],
    )


def _require_login() -> None:
    """Rankings are not public: anonymous callers get 401 before anything is looked up."""
    if not current_user.is_authenticated:
        raise AuthenticationRequired(LOGIN_REQUIRED)


def _filters(query: schemas.Query, *names: str) -> dict[str, str | None]:
    return {name: getattr(query, name) for name in names}


# -------------------------------------------------------------------- rankings (owner, organizers)


@bp.get("/opportunities/<int:id>/products")
@operation(
    summary="为一条场景需求推荐产品",
    description="按匹配度排列能回应该需求的已发布产品，并给出得分构成与推荐理由。"
    "只对需求发布单位的成员和组织方开放（草稿也可查询）；其他登录用户查询已发布需求得到 403，"
    "查询未公开需求得到 404。",
    tag="匹配",
    query=schemas.OpportunityProductsQuery,
    response=schemas.OpportunityProducts,
    login_required=True,
)
def opportunity_products(id: int):
    _require_login()
    query = parse_query(schemas.OpportunityProductsQuery)
    filters = _filters(query, "region", "maturity", "tag")
    entry, results = matching.products_for_opportunity_id(current_user, id, query.k, **filters)
    echo = {
        "kind": entry.kind,
        "id": entry.id,
        "title": entry.title,
        "status": entry.status,
        **deadline_fields(entry),
        "k": query.k,
        "filters": filters,
    }
    return _ranking(echo, results)


@bp.get("/products/<int:id>/opportunities")
@operation(
    summary="为一个产品推荐场景需求",
    description="按匹配度排列该产品可以回应的已发布需求（默认只含征集中的需求）。"
    "只对产品所属单位的成员和组织方开放，规则同匹配页面。",
    tag="匹配",
    query=schemas.ProductOpportunitiesQuery,
    response=schemas.ProductOpportunities,
    login_required=True,
)
def product_opportunities(id: int):
    _require_login()
    query = parse_query(schemas.ProductOpportunitiesQuery)
    filters = _filters(query, "region", "category")
    entry, results = matching.opportunities_for_product_id(
        current_user, id, query.k, include_closed=query.include_closed, **filters
    )
    echo = {
        "kind": entry.kind,
        "id": entry.id,
        "name": entry.name,
        "status": entry.status,
        "k": query.k,
        "filters": filters,
        "include_closed": query.include_closed,
    }
    return _ranking(echo, results)


# -------------------------------------------------------------------- public


@bp.get("/search")
@operation(
    summary="自由文本检索已发布条目",
    description="用一段文字（例如“找能做独居老人跌倒检测的企业”）检索已发布的产品或需求，"
    "排序方式与匹配相同（语义 + 关键词 + 结构化信号）。公开，无需认证。",
    tag="检索",
    query=schemas.SearchQuery,
    response=schemas.SearchResults,
)
def search():
    query = parse_query(schemas.SearchQuery)
    filters = _filters(query, "region", "category", "maturity", "tag")
    results = matching.search_text(
        query.q, SIDES[query.side], query.k, include_closed=query.include_closed, **filters
    )
    echo = {
        "q": query.q.strip(),
        "side": query.side,
        "k": query.k,
        "filters": filters,
        "include_closed": query.include_closed,
    }
    return _ranking(echo, results)


def _pagination(page) -> dict[str, int]:
    return {"page": page.page, "per_page": page.per_page, "total": page.total or 0, "pages": page.pages}


def _opportunity(entry: Opportunity) -> dict[str, Any]:
    return {
        "id": entry.id,
        "title": entry.title,
        "description": entry.description,
        "organization": entry.owner.name,
        "region": entry.region_label,
        "area": entry.field_area,
        "category": entry.field_category,
        "tier": entry.tier,
        "stage": entry.stage,
        **deadline_fields(entry),
        "batch": entry.batch.title if entry.batch else None,
        "published_at": _timestamp(entry.published_at),
        "url": url_for("portal.opportunity", id=entry.id),
    }


def _product(entry: Product) -> dict[str, Any]:
    return {
        "id": entry.id,
        "name": entry.name,
        "description": entry.description,
        "organization": entry.owner.name,
        "region": entry.region_label,
        "maturity": entry.maturity,
        "categories": entry.categories,
        "tags": entry.tags,
        "batch": entry.batch.title if entry.batch else None,
        "published_at": _timestamp(entry.published_at),
        "url": url_for("portal.product", id=entry.id),
    }


@bp.get("/opportunities")
@operation(
    summary="已发布的机会清单",
    description="分页列出已发布的场景需求：征集中的在前，其次按发布时间倒序。公开，无需认证。",
    tag="清单",
    query=schemas.OpportunityListQuery,
    response=schemas.OpportunityList,
)
def opportunities():
    query = parse_query(schemas.OpportunityListQuery)
    filters = EntryFilters(area=query.area, category=query.category, city=query.region, state=query.state)
    page = portal.list_opportunities(filters, page=query.page, per_page=query.per_page).page
    return jsonify(pagination=_pagination(page), results=[_opportunity(e) for e in page.items])


@bp.get("/products")
@operation(
    summary="已发布的产品清单",
    description="分页列出已发布的产品与解决方案，按发布时间倒序。公开，无需认证。",
    tag="清单",
    query=schemas.ProductListQuery,
    response=schemas.ProductList,
)
def products():
    query = parse_query(schemas.ProductListQuery)
    filters = EntryFilters(
        area=query.area, category=query.category, city=query.region, maturity=query.maturity, tag=query.tag
    )
    page = portal.list_products(filters, page=query.page, per_page=query.per_page).page
    return jsonify(pagination=_pagination(page), results=[_product(e) for e in page.items])


@bp.get("/openapi.json")
@operation(
    summary="本 API 的 OpenAPI 3.1 文档",
    description="由代码生成；人类可读版本见 /api/docs。",
    tag="文档",
    response=schemas.OpenApiDocument,
)
def openapi_document():
    return jsonify(build_document(current_app))

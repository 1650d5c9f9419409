"""JSON endpoints of the matching engine. GET only; errors are JSON (see ``marketplace.errors``).

* ``GET /api/v1/opportunities/<id>/products?k=20&region=&maturity=&tag=``
* ``GET /api/v1/products/<id>/opportunities?k=20&region=&category=&include_closed=0``
* ``GET /api/v1/search?q=...&side=products|opportunities&k=20&region=&category=&maturity=&tag=``
  ``&include_closed=0``

Opportunities carry ``deadline`` (a Beijing date) and ``open`` (征集中); rankings of needs
leave out closed needs unless ``include_closed=1``.

Results are published entries only. The two rankings follow the matching pages' rule
(``services.matching.require_match_access``): they are for members of the entry's own
organization and for organizers (a draft works for them too). Anonymous callers get 401,
other users 403 for a published entry and 404 for a hidden one. Free-text search stays public.
Invalid parameters give 400, unknown ids 404. The whole API shares one rate limit per client
address (``RATELIMIT_API``); over it, 429 JSON. Authentication is the site's session cookie.
"""

from __future__ import annotations

import re
from typing import Any

from flask import abort, jsonify, request, url_for
from flask_login import current_user

from marketplace import security
from marketplace.api import bp
from marketplace.extensions import limiter
from marketplace.models import EntryKind
from marketplace.services import matching
from marketplace.services.errors import ValidationFailed

limiter.shared_limit(security.api_limit, scope="api")(bp)

DEFAULT_K = 20
SIDES = {"products": EntryKind.PRODUCT.value, "opportunities": EntryKind.OPPORTUNITY.value}
_DIGITS = re.compile(r"[0-9]{1,6}")


def _k() -> int:
    raw = request.args.get("k")
    if raw is None:
        return DEFAULT_K
    if not _DIGITS.fullmatch(raw):
        raise ValidationFailed({"k": f"k 应为 1 到 {matching.MAX_K} 之间的整数"})
    return int(raw)


def _args(*names: str) -> dict[str, str | None]:
    return {name: request.args.get(name) or None for name in names}


def _include_closed() -> bool:
    """``include_closed=1|true`` adds needs whose deadline has passed (default: open ones only)."""
    raw = (request.args.get("include_closed") or "0").lower()
    if raw not in ("0", "1", "true", "false"):
        raise ValidationFailed({"include_closed": "include_closed 只能是 0、1、true 或 false"})
    return raw in ("1", "true")


def deadline_fields(entry) -> dict[str, Any]:
    """``deadline`` (a Beijing date, ISO) and ``open`` (征集中) of an opportunity."""
    return {"deadline": entry.deadline.isoformat() if entry.deadline else None, "open": entry.is_open}


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


def _response(query: dict[str, Any], results: list[matching.MatchResult]):
    return jsonify(
        query=query,
        encoder=matching.encoder_name(),
        results=[_result(n, r) for n, r in enumerate(results, start=1)],
    )


def _require_login() -> None:
    """Rankings are not public: anonymous callers get 401 before anything is looked up."""
    if not current_user.is_authenticated:
        abort(401)


@bp.get("/opportunities/<int:id>/products")
def opportunity_products(id: int):
    _require_login()
    k, filters = _k(), _args("region", "maturity", "tag")
    entry, results = matching.products_for_opportunity_id(current_user, id, k, **filters)
    query = {
        "kind": entry.kind,
        "id": entry.id,
        "title": entry.title,
        "status": entry.status,
        **deadline_fields(entry),
        "k": k,
        "filters": filters,
    }
    return _response(query, results)


@bp.get("/products/<int:id>/opportunities")
def product_opportunities(id: int):
    _require_login()
    k, filters, include_closed = _k(), _args("region", "category"), _include_closed()
    entry, results = matching.opportunities_for_product_id(
        current_user, id, k, include_closed=include_closed, **filters
    )
    query = {
        "kind": entry.kind,
        "id": entry.id,
        "name": entry.name,
        "status": entry.status,
        "k": k,
        "filters": filters,
        "include_closed": include_closed,
    }
    return _response(query, results)


@bp.get("/search")
def search():
    side_arg = request.args.get("side", "products")
    if side_arg not in SIDES:
        raise ValidationFailed({"side": "side 只能是 products 或 opportunities"})
    k, filters, include_closed = _k(), _args("region", "category", "maturity", "tag"), _include_closed()
    q = request.args.get("q", "")
    results = matching.search_text(q, SIDES[side_arg], k, include_closed=include_closed, **filters)
    query = {"q": q.strip(), "side": side_arg, "k": k, "filters": filters, "include_closed": include_closed}
    return _response(query, results)

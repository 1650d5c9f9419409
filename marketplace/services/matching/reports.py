"""The matching service of the current app, and what the pages and the API ask of it."""

from __future__ import annotations

from flask import Flask, current_app

from marketplace.models import EntryKind, Opportunity, Product, User
from marketplace.services import entries as entry_service
from marketplace.services.accounts import require_staff
from marketplace.services.matching.checks import (
    build_filters,
    check_k,
    check_query_text,
    check_side,
    is_staff,
    require_match_access,
)
from marketplace.services.matching.items import Entry
from marketplace.services.matching.service import (
    SIMILAR_K,
    EntryReport,
    MatchingService,
    MatchingStatus,
    MatchResult,
)
from matching import Filters

EXTENSION_KEY = "matching"


# -------------------------------------------------------------------- app wiring


def init_app(app: Flask) -> MatchingService:
    """Attach a :class:`MatchingService` to ``app`` (once).

    Nothing is loaded until the first query, unless ``MATCHING_PRELOAD`` is set: then the
    encoder (the e5-small model) is loaded here, at app creation, so that ``gunicorn --preload``
    loads it once in the master and the forked workers share its pages.
    """
    if EXTENSION_KEY in app.extensions:
        raise RuntimeError("the matching service is already registered on this app")
    service = MatchingService.from_config(app.config)
    app.extensions[EXTENSION_KEY] = service
    if app.config.get("MATCHING_PRELOAD"):
        service.preload()
    return service


def get_service() -> MatchingService:
    """The matching service of the current app."""
    return current_app.extensions[EXTENSION_KEY]


def products_for_opportunity(
    opportunity: Opportunity, k: int = 20, filters: Filters | None = None
) -> list[MatchResult]:
    return get_service().products_for_opportunity(opportunity, k, filters)


def opportunities_for_product(
    product: Product, k: int = 20, filters: Filters | None = None
) -> list[MatchResult]:
    return get_service().opportunities_for_product(product, k, filters)


def search(text: str, side: str, k: int = 20, filters: Filters | None = None) -> list[MatchResult]:
    return get_service().search(text, side, k, filters)


def similar(kind: str, entry: Entry, k: int = SIMILAR_K) -> list[MatchResult]:
    return get_service().similar(kind, entry, k)


def status() -> MatchingStatus:
    return get_service().status()


def preload() -> None:
    """Load the configured encoder now (see :meth:`MatchingService.preload`)."""
    get_service().preload()


# -------------------------------------------------------------------- page-level reports


def get_queryable_entry(user: User | None, kind: str, entry_id: int) -> Entry:
    """An entry whose rankings ``user`` may see, by the matching pages' rule
    (:func:`require_match_access`: its own organization and organizers; a public entry is a
    403 for others, a hidden one a 404)."""
    entry = entry_service.get_entry(kind, entry_id)
    require_match_access(user, entry)
    return entry


def opportunity_report(
    user: User | None,
    opportunity_id: int,
    k: int = 20,
    *,
    region: str | None = None,
    maturity: str | None = None,
    tag: str | None = None,
) -> EntryReport:
    """The products page of an opportunity: for its publisher's members and organizers."""
    entry = entry_service.get_entry(EntryKind.OPPORTUNITY, opportunity_id)
    require_match_access(user, entry)
    filters = build_filters(EntryKind.PRODUCT, region=region, maturity=maturity, tag=tag)
    service = get_service()
    staff = is_staff(user)
    return EntryReport(
        entry=entry,
        results=service.products_for_opportunity(entry, k, filters),
        similar=service.similar(EntryKind.OPPORTUNITY, entry) if staff else [],
        status=service.status() if staff else None,
    )


def product_report(
    user: User | None,
    product_id: int,
    k: int = 20,
    *,
    region: str | None = None,
    category: str | None = None,
    include_closed: bool = False,
) -> EntryReport:
    """The opportunities page of a product (open needs unless ``include_closed``): for its
    firm's members and organizers."""
    entry = entry_service.get_entry(EntryKind.PRODUCT, product_id)
    require_match_access(user, entry)
    filters = build_filters(
        EntryKind.OPPORTUNITY, region=region, category=category, include_closed=include_closed
    )
    service = get_service()
    staff = is_staff(user)
    return EntryReport(
        entry=entry,
        results=service.opportunities_for_product(entry, k, filters),
        similar=service.similar(EntryKind.PRODUCT, entry) if staff else [],
        status=service.status() if staff else None,
    )


def search_report(
    user: User | None, text: str, side: str, k: int = 20, include_closed: bool = False,
    **filter_values: str | None,
) -> tuple[list[MatchResult], MatchingStatus]:
    """Organizer search 「找能做……的企业」 over one side (needs: open ones unless
    ``include_closed``), with the engine status."""
    require_staff(user)
    filters = build_filters(side, include_closed=include_closed, **filter_values)
    service = get_service()
    return service.search(text, side, k, filters), service.status()


def products_for_opportunity_id(
    user: User | None, opportunity_id: int, k: int = 20, **filter_values: str | None
) -> tuple[Opportunity, list[MatchResult]]:
    """API: products for an opportunity, for its own organization and organizers."""
    check_k(k)
    filters = build_filters(EntryKind.PRODUCT, **filter_values)
    entry = get_queryable_entry(user, EntryKind.OPPORTUNITY, opportunity_id)
    return entry, get_service().products_for_opportunity(entry, k, filters)


def opportunities_for_product_id(
    user: User | None, product_id: int, k: int = 20, include_closed: bool = False,
    **filter_values: str | None,
) -> tuple[Product, list[MatchResult]]:
    """API: opportunities (open ones unless ``include_closed``) for a product, for its own
    organization and organizers."""
    check_k(k)
    filters = build_filters(EntryKind.OPPORTUNITY, include_closed=include_closed, **filter_values)
    entry = get_queryable_entry(user, EntryKind.PRODUCT, product_id)
    return entry, get_service().opportunities_for_product(entry, k, filters)


def search_text(
    text: str, side: str, k: int = 20, include_closed: bool = False, **filter_values: str | None
) -> list[MatchResult]:
    """API: free text against the published entries of one side (needs: open ones unless
    ``include_closed``)."""
    text = check_query_text(text)
    check_k(k)
    filters = build_filters(check_side(side), include_closed=include_closed, **filter_values)
    return get_service().search(text, side, k, filters)


def encoder_name() -> str | None:
    """Name of the encoder in use (after the first query)."""
    encoder = get_service().encoder
    return encoder.name if encoder is not None else None


def engine_status(user: User | None) -> MatchingStatus:
    """The engine status, for organizers."""
    require_staff(user)
    return get_service().status()

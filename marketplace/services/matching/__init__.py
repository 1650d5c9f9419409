"""The app side of the matching engine: published entries in, ranked and explained matches out.

One module per concern (the public names are importable from here):

* :mod:`~marketplace.services.matching.items`: engine items from database rows;
* :mod:`~marketplace.services.matching.checks`: input checks, filters and page access;
* :mod:`~marketplace.services.matching.cache`: the embedding cache (vectors in the database);
* :mod:`~marketplace.services.matching.service`: :class:`MatchingService`, the per-process
  engine: lifecycle, snapshots, incremental refresh on the ``index_state`` version;
* :mod:`~marketplace.services.matching.encoding`: the background job that encodes corpus
  entries (web requests never do; see the ``service`` module docstring);
* :mod:`~marketplace.services.matching.reports`: the app's service and what pages and the API
  ask of it.
"""

from marketplace.services.matching.cache import ENCODE_BATCH
from marketplace.services.matching.checks import (
    MAX_K,
    MAX_QUERY_CHARS,
    build_filters,
    check_k,
    check_query_text,
    check_side,
    open_opportunity_ids,
    require_match_access,
)
from marketplace.services.matching.encoding import (
    ENCODE_JOB,
    EncodeReport,
    encode_missing,
    request_encoding,
)
from marketplace.services.matching.items import (
    SIDES,
    Entry,
    item_for,
    load_published_items,
    mentioned_tags,
    opportunity_item,
    product_item,
)
from marketplace.services.matching.reports import (
    EXTENSION_KEY,
    encoder_name,
    engine_status,
    get_queryable_entry,
    get_service,
    init_app,
    opportunities_for_product,
    opportunities_for_product_id,
    opportunity_report,
    preload,
    product_report,
    products_for_opportunity,
    products_for_opportunity_id,
    search,
    search_report,
    search_text,
    similar,
    status,
)
from marketplace.services.matching.service import (
    ITEM_FORMAT,
    POINTER_FILE,
    SIMILAR_K,
    BuildReport,
    EntryReport,
    LexicalOnlyEncoder,
    MatchingService,
    MatchingStatus,
    MatchResult,
)

__all__ = [
    "ENCODE_BATCH",
    "ENCODE_JOB",
    "EXTENSION_KEY",
    "ITEM_FORMAT",
    "MAX_K",
    "MAX_QUERY_CHARS",
    "POINTER_FILE",
    "SIDES",
    "SIMILAR_K",
    "BuildReport",
    "EncodeReport",
    "Entry",
    "EntryReport",
    "LexicalOnlyEncoder",
    "MatchResult",
    "MatchingService",
    "MatchingStatus",
    "build_filters",
    "check_k",
    "check_query_text",
    "check_side",
    "encode_missing",
    "encoder_name",
    "engine_status",
    "get_queryable_entry",
    "get_service",
    "init_app",
    "item_for",
    "load_published_items",
    "mentioned_tags",
    "open_opportunity_ids",
    "opportunities_for_product",
    "opportunities_for_product_id",
    "opportunity_item",
    "opportunity_report",
    "preload",
    "product_item",
    "product_report",
    "products_for_opportunity",
    "products_for_opportunity_id",
    "request_encoding",
    "require_match_access",
    "search",
    "search_report",
    "search_text",
    "similar",
    "status",
]

"""The app's delta after a publish (issue 13, "first search after a publish ≤ 0.1 s over a warm one").

The refresh reads only the side a query needs, counts the older published rows without scanning
the table by ``updated_at``, re-reads pending entries only when vectors arrived, and loads items
by id without joins; the results must stay what a full refresh gives.
"""

from __future__ import annotations

from contextlib import contextmanager
from datetime import timedelta

import numpy as np
from sqlalchemy import delete, event, select, update

from marketplace.extensions import db
from marketplace.models import EntryStatus, Opportunity, Product
from marketplace.services import batches, index_sync, matching
from marketplace.services.matching import cache
from marketplace.services.matching.items import item_for, load_published_items
from marketplace.services.matching.service import VECTORS
from tests.marketplace.test_encoding_jobs import api_hits
from tests.marketplace.test_encoding_jobs import web as web  # noqa: F401 - the fixture
from tests.marketplace.test_matching_app import PARKING_QUERY, build_corpus

NEW_NEED = "智慧停车泊位共享新需求"
NEW_PRODUCT = "智慧停车泊位共享新品"


@contextmanager
def statements():
    """The SQL statements (text, parameters) executed inside the block."""
    seen: list[tuple[str, object]] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        seen.append((" ".join(statement.split()), parameters))

    engine = db.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def parameters(params) -> list:
    """The bound values of a statement (a dict on PostgreSQL, a tuple on SQLite)."""
    return list(params.values()) if isinstance(params, dict) else list(params)


def publish(make, staff, kind: str, owner, **values) -> int:
    """Publish one approved entry through ``publish_batch``; returns its id."""
    batch = make.batch(kind)
    if kind == "product":
        entry = make.product(owner, EntryStatus.APPROVED, batch, fields=("交通出行",), tags=("物联网",),
                             **values)
    else:
        entry = make.opportunity(owner, EntryStatus.APPROVED, batch, **values)
    batches.publish_batch(staff, batch)
    return entry.id


def delta_query_of(seen, table: str) -> list[str]:
    """The delta's "rows changed since the version" statements on ``table``."""
    return [s for s, _ in seen if s.startswith(f"SELECT {table}.id, {table}.status, {table}.updated_at")]


def test_a_product_search_after_a_publish_reads_only_the_product_side(make, web):
    corpus = build_corpus(make)
    staff = make.organizer()
    matching.get_service().rebuild()
    client = web.test_client()
    api_hits(client, f"/api/v1/search?q={PARKING_QUERY}&side=products")  # opens the version
    publish(make, staff, "product", corpus.firm, name=NEW_PRODUCT)
    publish(make, staff, "opportunity", corpus.gov, title=NEW_NEED)

    with statements() as seen:
        found = api_hits(client, f"/api/v1/search?q={PARKING_QUERY}&side=products")
    assert NEW_PRODUCT in found
    assert len(delta_query_of(seen, "product")) == 1
    assert delta_query_of(seen, "opportunity") == []  # the need side waits for a query of it
    assert not [s for s, _ in seen if "updated_at <=" in s]  # no second scan to count the older rows

    with statements() as seen:
        needs = api_hits(client, f"/api/v1/search?q={PARKING_QUERY}&side=opportunities&include_closed=1")
    assert NEW_NEED in needs  # refreshed by the first query that needs it
    assert len(delta_query_of(seen, "opportunity")) == 1
    assert delta_query_of(seen, "product") == []  # already up to date
    assert matching.get_service().status().delta == 2


def test_rows_published_with_an_old_stamp_or_deleted_are_still_caught(make, web):
    corpus = build_corpus(make)
    staff = make.organizer()
    late = make.product(corpus.firm, EntryStatus.APPROVED, name="晚到的停车泊位共享平台",
                        fields=("交通出行",), tags=("物联网",))
    service = matching.get_service()
    service.rebuild()
    client = web.test_client()
    url = f"/api/v1/search?q={PARKING_QUERY}&side=products"
    before = api_hits(client, url)
    assert corpus.parking_product.name in before and late.name not in before
    stamp = service.current_version().meta["stamp"]
    publish(make, staff, "product", corpus.firm, name=NEW_PRODUCT)  # a newer row as well
    # A frozen clock: published with an updated_at older than the version's stamp.
    old = late.updated_at - timedelta(days=30)
    assert old.isoformat() < stamp
    db.session.execute(update(Product).where(Product.id == late.id)
                       .values(status=EntryStatus.PUBLISHED, published_at=old, updated_at=old))
    db.session.execute(delete(Product).where(Product.id == corpus.parking_product.id))
    index_sync.bump()
    db.session.commit()

    after = api_hits(client, url)
    assert late.name in after and NEW_PRODUCT in after
    assert corpus.parking_product.name not in after
    assert service._engine.get("product", corpus.parking_product.id) is None
    assert service._engine.get("product", late.id) == item_for(db.session.get(Product, late.id))


def test_pending_entries_are_read_again_only_when_vectors_arrive(make, web):
    corpus = build_corpus(make)
    staff = make.organizer()
    service = matching.get_service()
    service.rebuild()
    client = web.test_client()
    url = f"/api/v1/search?q={PARKING_QUERY}&side=products"
    api_hits(client, url)
    first = publish(make, staff, "product", corpus.firm, name=NEW_PRODUCT)
    assert NEW_PRODUCT in api_hits(client, url)
    assert service.pending == 1  # indexed lexically until the job stored its vector

    second = publish(make, staff, "product", corpus.firm, name="智慧停车第二款新品")
    with statements() as seen:
        assert "智慧停车第二款新品" in api_hits(client, url)
    loaded = [parameters(p) for s, p in seen if s.startswith("SELECT product.id, product.name")]
    assert len(loaded) == 1
    assert second in loaded[0] and first not in loaded[0]  # only the new one
    assert service.pending == 2

    # The job stores both vectors and bumps the `vectors` row: the next query swaps them in.
    encoder = service.writer_encoder()
    items = load_published_items("product", [first, second])
    stored = cache.encode_and_store(items, encoder)
    index_sync.bump(VECTORS)
    db.session.commit()
    api_hits(client, url)
    assert service.pending == 0
    for item_id in (first, second):
        assert np.allclose(service._engine.vector("product", item_id), stored[("product", item_id)])


def test_delta_items_by_id_are_the_items_of_the_rows(make, web):
    corpus = build_corpus(make)
    draft = make.product(corpus.firm, EntryStatus.DRAFT, name="草稿产品", fields=("交通出行", "社会保障"),
                         tags=("物联网", "人工智能"))
    two_fields = make.product(corpus.firm, EntryStatus.PUBLISHED, name="两个领域的产品",
                              fields=("交通出行", "社会保障"), tags=("人工智能", "物联网", "大数据"))
    ids = [draft.id, two_fields.id, corpus.parking_product.id]
    items = load_published_items("product", ids)
    assert [i.id for i in items] == sorted([two_fields.id, corpus.parking_product.id])  # no draft
    rows = {p.id: p for p in db.session.scalars(select(Product).where(Product.id.in_(ids)))}
    assert items == [item_for(rows[i.id]) for i in items]
    assert items[[i.id for i in items].index(two_fields.id)].tags == ("人工智能", "大数据", "物联网")
    everything = {i.id: i for i in load_published_items("product")}
    assert all(everything[i.id] == i for i in items)
    needs = load_published_items("opportunity", [corpus.parking_need.id, 10**9])
    assert needs == [item_for(db.session.get(Opportunity, corpus.parking_need.id))]

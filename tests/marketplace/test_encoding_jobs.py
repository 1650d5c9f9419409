"""Corpus entries are encoded by the background job, never while a request is served."""

from __future__ import annotations

import pytest
from flask import has_request_context
from sqlalchemy import func, select

from marketplace import create_app
from marketplace.extensions import db
from marketplace.models import EmbeddingCache, EntryStatus
from marketplace.services import batches, matching
from marketplace.services.matching import cache
from matching import document_text
from matching.encoders import OfflineEncoder
from tests.conftest import AuthActions
from tests.marketplace.test_matching_app import PARKING_QUERY, build_corpus

NEW_PRODUCT = "智慧停车泊位共享新品"


class CorpusEncodedInRequest(AssertionError):
    """A published entry's document text was encoded while a request was being served."""


@pytest.fixture
def guard(monkeypatch) -> list[str]:
    """Fail (inside the request, so the page errors) whenever a corpus entry is encoded while a
    request is served; record the document texts encoded in requests (the allowed ones: a
    draft that is the query on its own page)."""
    in_request: list[str] = []
    original_encode = OfflineEncoder.encode
    original_store = cache.encode_and_store

    def encode(self, texts, kind="document"):
        if has_request_context() and kind == "document":
            published = {
                document_text(item) for side in matching.SIDES for item in matching.load_published_items(side)
            }
            corpus = [t for t in texts if t in published]
            if corpus:
                raise CorpusEncodedInRequest(f"encoded {len(corpus)} published entries in a request")
            in_request.extend(texts)
        return original_encode(self, texts, kind)

    def encode_and_store(items, encoder, *args, **kwargs):
        if has_request_context():
            raise CorpusEncodedInRequest("encode_and_store called in a request")
        return original_store(items, encoder, *args, **kwargs)

    monkeypatch.setattr(OfflineEncoder, "encode", encode)
    monkeypatch.setattr(cache, "encode_and_store", encode_and_store)
    return in_request


@pytest.fixture
def web(app, database_url, tmp_path):
    """A web worker whose jobs go to a queue file (nothing runs until :func:`run_jobs`)."""
    worker = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "test-secret",
            "SQLALCHEMY_DATABASE_URI": database_url,
            "MATCHING_INDEX_DIR": str(tmp_path / "index"),
            "UPLOAD_DIR": app.config["UPLOAD_DIR"],
            "HUEY_IMMEDIATE": False,
            "HUEY_SQLITE_PATH": str(tmp_path / "huey.db"),
        }
    )
    ctx = worker.app_context()
    ctx.push()
    try:
        yield worker
    finally:
        db.session.remove()
        db.engine.dispose()
        ctx.pop()


def run_jobs(worker) -> list[str]:
    """Run the queued jobs here, outside any request, as the consumer would."""
    huey = worker.extensions["jobs"].huey
    names = []
    while (task := huey.dequeue()) is not None:
        names.append(task.name)
        huey.execute(task)
    db.session.rollback()  # see what the job committed
    return names


def cache_rows() -> int:
    return db.session.scalar(select(func.count()).select_from(EmbeddingCache))


def api_hits(client, url: str) -> dict[str, dict]:
    response = client.get(url)
    assert response.status_code == 200, response.get_data(as_text=True)
    return {r.get("name") or r.get("title"): r for r in response.get_json()["results"]}


def publish_new_product(make, corpus, client, staff) -> int:
    batch = make.batch("product")
    product = make.product(
        corpus.firm, EntryStatus.APPROVED, batch, name=NEW_PRODUCT, fields=("交通出行",), tags=("物联网",)
    )
    auth = AuthActions(client)
    auth.login(staff)
    response = auth.post(f"/admin/batches/{batch.id}/publish")
    assert response.status_code == 302
    return product.id


def test_serving_pages_after_a_publish_never_encodes_corpus_entries(make, web, guard):
    corpus = build_corpus(make)
    staff = make.organizer()
    matching.get_service().rebuild()  # what `flask matching rebuild` does before serving
    client = web.test_client()
    product_id = publish_new_product(make, corpus, client, staff)
    assert matching.ENCODE_JOB in [t.name for t in web.extensions["jobs"].huey.pending()]

    draft = make.opportunity(corpus.gov, EntryStatus.DRAFT, title="停车诱导草稿需求")
    pages = [
        f"/products/{product_id}",
        f"/products/{corpus.parking_product.id}",
        f"/opportunities/{corpus.parking_need.id}",
        f"/matching/opportunities/{corpus.parking_need.id}",
        f"/matching/products/{product_id}",
        f"/matching/opportunities/{draft.id}",
        f"/matching/search?q={PARKING_QUERY}&side=product",
        f"/api/v1/opportunities/{corpus.parking_need.id}/products?k=50",
        f"/api/v1/products/{product_id}/opportunities?k=50&include_closed=1",
        f"/api/v1/search?q={PARKING_QUERY}&side=products",
        f"/search?q={PARKING_QUERY}",
    ]
    for url in pages:
        assert client.get(url).status_code == 200, url
    # The only document encoded in a request is the draft that was the query on its own page.
    assert guard and set(guard) == {document_text(matching.item_for(draft))}

    run_jobs(web)
    for url in pages:
        assert client.get(url).status_code == 200, url


def test_a_new_entry_is_found_lexically_until_the_job_has_encoded_it(make, web, guard):
    corpus = build_corpus(make)
    staff = make.organizer()
    matching.get_service().rebuild()
    client = web.test_client()
    publish_new_product(make, corpus, client, staff)
    url = f"/api/v1/opportunities/{corpus.parking_need.id}/products?k=50"

    pending = api_hits(client, url)[NEW_PRODUCT]
    assert pending["dense"] == 0.0 and pending["lexical"] > 0 and pending["structured"] > 0
    assert matching.get_service().status().pending == 1
    rows = cache_rows()

    assert matching.ENCODE_JOB in run_jobs(web)  # publish + the worker's safety net
    assert cache_rows() == rows + 1
    encoded = api_hits(client, url)[NEW_PRODUCT]  # the job bumped the version: refreshed
    assert encoded["dense"] > 0 and encoded["score"] > pending["score"]
    assert matching.get_service().status().pending == 0
    searched = api_hits(client, f"/api/v1/search?q={NEW_PRODUCT}&side=products")
    assert searched[NEW_PRODUCT]["dense"] > 0


def test_an_approved_edit_is_reencoded_by_the_job(make, web, guard):
    from marketplace.services import entries

    corpus = build_corpus(make)
    staff = make.organizer()
    matching.get_service().rebuild()
    client = web.test_client()
    AuthActions(client).login(staff)
    url = f"/api/v1/opportunities/{corpus.care_need.id}/products?k=50"
    assert api_hits(client, url)[corpus.care_product.name]["dense"] > 0
    product = corpus.care_product
    revision = entries.update_entry(
        make.user(corpus.care_firm), product, {**entries.current_values(product), "name": "养老停车综合平台"}
    )
    entries.approve_revision(staff, revision)  # queues the job after the commit
    assert api_hits(client, url)["养老停车综合平台"]["dense"] == 0.0
    run_jobs(web)
    assert api_hits(client, url)["养老停车综合平台"]["dense"] > 0


def test_a_worker_with_no_fitted_encoder_serves_lexically_until_the_job_fits_it(make, web, guard, tmp_path):
    corpus = build_corpus(make)
    client = web.test_client()
    AuthActions(client).login(make.organizer())
    url = f"/api/v1/opportunities/{corpus.care_need.id}/products?k=50"
    hits = api_hits(client, url)  # nothing was ever built: no fitted offline state anywhere
    assert hits[corpus.care_product.name]["dense"] == 0.0
    assert hits[corpus.care_product.name]["lexical"] > 0
    assert matching.encoder_name() == "lexical-only"
    assert not (tmp_path / "index" / "engine.json").exists()  # a lexical-only index is never saved

    run_jobs(web)  # fits the offline encoder, encodes everything, publishes a version
    assert (tmp_path / "index" / "engine.json").is_file()
    assert api_hits(client, url)[corpus.care_product.name]["dense"] > 0
    assert matching.encoder_name().startswith("offline")


def test_the_job_is_idempotent(make, web):
    build_corpus(make)
    service = matching.get_service()
    service.rebuild()
    make.product(make.org(), EntryStatus.PUBLISHED, name="未编码的新产品")
    first = matching.encode_missing(service)
    assert (first.missing, first.encoded) == (1, 1)
    rows = cache_rows()
    again = matching.encode_missing(service)
    assert (again.missing, again.encoded) == (0, 0)
    assert cache_rows() == rows


def test_a_job_killed_midway_leaves_whole_batches_and_the_rerun_continues(make, web, monkeypatch):
    build_corpus(make)
    service = matching.get_service()
    service.rebuild()
    owner = make.org()
    for n in range(5):
        make.product(owner, EntryStatus.PUBLISHED, name=f"批量发布的产品{n}")
    rows = cache_rows()
    original = OfflineEncoder.encode
    calls = []

    def dies_on_the_third_batch(self, texts, kind="document"):
        calls.append(len(texts))
        if len(calls) == 3:
            raise KeyboardInterrupt("consumer killed")
        return original(self, texts, kind)

    monkeypatch.setattr(OfflineEncoder, "encode", dies_on_the_third_batch)
    with pytest.raises(KeyboardInterrupt):
        matching.encode_missing(service, batch_size=2)
    db.session.rollback()
    assert cache_rows() == rows + 4  # two whole batches were committed, nothing of the third

    monkeypatch.setattr(OfflineEncoder, "encode", original)
    resumed = matching.encode_missing(service, batch_size=2)
    assert (resumed.missing, resumed.encoded) == (1, 1)
    assert cache_rows() == rows + 5


def test_publishing_queues_the_job_in_immediate_mode(make):
    """The default test app runs jobs at once: after publish_batch the vector is cached."""
    corpus = build_corpus(make)
    matching.get_service().rebuild()
    batch = make.batch("product")
    make.product(corpus.firm, EntryStatus.APPROVED, batch, name=NEW_PRODUCT, fields=("交通出行",))
    rows = cache_rows()
    batches.publish_batch(make.organizer(), batch)
    assert cache_rows() == rows + 1


def test_a_full_rebuild_is_refused_inside_a_request(app, make):
    build_corpus(make)
    with app.test_request_context("/"):
        with pytest.raises(RuntimeError):
            matching.get_service().rebuild()
        with pytest.raises(RuntimeError):
            matching.encode_missing(matching.get_service())


def test_cli_encode_reports_what_it_encoded(make, runner):
    build_corpus(make)
    result = runner.invoke(args=["matching", "encode"])
    assert result.exit_code == 0, result.output
    assert "published:   4 entries" in result.output
    again = runner.invoke(args=["matching", "encode"])
    assert "0 without a vector" in again.output


def test_a_real_consumer_encodes_what_a_request_published(make, web, database_url, tmp_path):
    """``flask jobs consume`` in its own process stores the vector; the web worker then uses it."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from marketplace.config import PROJECT_ROOT

    corpus = build_corpus(make)
    matching.get_service().rebuild()  # the fitted offline state the consumer will load
    client = web.test_client()
    publish_new_product(make, corpus, client, make.organizer())
    url = f"/api/v1/opportunities/{corpus.parking_need.id}/products?k=50"
    assert api_hits(client, url)[NEW_PRODUCT]["dense"] == 0.0
    rows = cache_rows()
    env = {
        **os.environ,
        "FLASK_APP": "wsgi.py",
        "SECRET_KEY": "test-secret",
        "DATABASE_URL": database_url,
        "HUEY_SQLITE_PATH": web.config["HUEY_SQLITE_PATH"],
        "HUEY_IMMEDIATE": "0",
        "MATCHING_MODEL": "offline",
        "MATCHING_INDEX_DIR": web.config["MATCHING_INDEX_DIR"],
    }
    log = tmp_path / "consumer.log"
    with log.open("w") as out:
        consumer = subprocess.Popen(
            [sys.executable, "-m", "flask", "jobs", "consume", "--no-periodic"],
            cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while cache_rows() == rows:
            db.session.rollback()
            if consumer.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"no vector stored; consumer output:\n{log.read_text()}")
            time.sleep(0.2)
    finally:
        consumer.send_signal(signal.SIGINT)
        try:
            consumer.wait(timeout=15)
        except subprocess.TimeoutExpired:
            consumer.kill()
            consumer.wait()
    assert cache_rows() == rows + 1
    assert "matching.encode: 1/1 stored" in log.read_text()
    assert api_hits(client, url)[NEW_PRODUCT]["dense"] > 0


@pytest.fixture
def pretrained(monkeypatch):
    """``build_encoder`` returns an encoder that is ready without fitting, like e5-small."""
    from marketplace.services.matching import service as service_module

    encoder = OfflineEncoder().fit(["停车诱导泊位共享", "居家养老智能监护", "河道水位监测预警"])
    monkeypatch.setattr(service_module, "build_encoder", lambda *args, **kwargs: encoder)
    return encoder


def test_sentence_evidence_is_off_by_default_with_a_pretrained_encoder(app, pretrained):
    default = matching.MatchingService.from_config({**app.config, "MATCHING_WEIGHTS": {}})
    assert default.engine_config().evidence_max_hits == 0
    weights = {"evidence_max_hits": 3}
    chosen = matching.MatchingService.from_config({**app.config, "MATCHING_WEIGHTS": weights})
    assert chosen.engine_config().evidence_max_hits == 3


def test_the_offline_encoder_keeps_the_sentence_evidence(app, tmp_path):
    assert matching.MatchingService("offline", tmp_path).engine_config().evidence_max_hits == 20


def test_matching_preload_loads_the_encoder_at_app_creation(app, database_url, pretrained):
    settings = {"TESTING": True, "SECRET_KEY": "x", "SQLALCHEMY_DATABASE_URI": database_url}
    preloaded = create_app({**settings, "MATCHING_PRELOAD": True})
    lazy = create_app(settings)
    assert preloaded.extensions["matching"]._template is pretrained
    assert lazy.extensions["matching"]._template is None

"""Engine versions in the app: built by the job or the CLI only, opened by workers, plus a delta.

Issue 13: no request ever builds an index; a worker with no version queues the build job and
answers with what it has; a new version is picked up without a restart; published entries are
found through the delta before the next build, and withdrawn ones disappear at once.
"""

from __future__ import annotations

import pytest
from flask import has_request_context

from marketplace.extensions import db
from marketplace.services import entries, matching
from marketplace.services.matching import service as service_module
from marketplace.services.matching.service import IN_ENCODING_JOB, MatchingService
from matching import MatchEngine
from tests.conftest import AuthActions
from tests.marketplace.test_encoding_jobs import NEW_PRODUCT, api_hits, publish_new_product, run_jobs
from tests.marketplace.test_encoding_jobs import web as web  # noqa: F401 - the fixture
from tests.marketplace.test_matching_app import PARKING_QUERY, build_corpus


class IndexBuiltInRequest(AssertionError):
    """An engine index was built while a request was being served (outside the job)."""


@pytest.fixture
def builds(monkeypatch) -> list[bool]:
    """Record every engine build (``MatchEngine.build``, ``MatchingService.build_version``) and
    fail, inside the request, when one happens while a request is served outside the job."""
    calls: list[bool] = []
    original_build = MatchEngine.build
    original_version = MatchingService.build_version

    def check() -> None:
        serving = has_request_context() and not IN_ENCODING_JOB.get()
        calls.append(serving)
        if serving:
            raise IndexBuiltInRequest("an index was built while serving a request")

    def build(self, *args, **kwargs):
        check()
        return original_build(self, *args, **kwargs)

    def build_version(self, *args, **kwargs):
        check()
        return original_version(self, *args, **kwargs)

    monkeypatch.setattr(MatchEngine, "build", build)
    monkeypatch.setattr(MatchingService, "build_version", build_version)
    return calls


def pages(corpus, product_id: int) -> list[str]:
    return [
        f"/products/{product_id}",
        f"/opportunities/{corpus.parking_need.id}",
        f"/matching/opportunities/{corpus.parking_need.id}",
        f"/matching/products/{product_id}",
        f"/matching/search?q={PARKING_QUERY}&side=product",
        f"/api/v1/opportunities/{corpus.parking_need.id}/products?k=50",
        f"/api/v1/products/{product_id}/opportunities?k=50&include_closed=1",
        f"/api/v1/search?q={PARKING_QUERY}&side=products",
        f"/search?q={PARKING_QUERY}",
        "/",
    ]


def queued(worker) -> list[str]:
    return [t.name for t in worker.extensions["jobs"].huey.pending()]


def test_no_request_builds_an_index_even_right_after_a_publish(make, web, builds):
    corpus = build_corpus(make)
    staff = make.organizer()
    matching.get_service().rebuild()  # `flask matching rebuild` before serving
    assert builds == [False, False]  # the CLI built (build_version → MatchEngine.build)
    first = matching.get_service().current_version()
    client = web.test_client()
    product_id = publish_new_product(make, corpus, client, staff)
    assert matching.ENCODE_JOB in queued(web)
    for url in pages(corpus, product_id):
        assert client.get(url).status_code == 200, url
    assert not any(builds)  # no request built anything
    names = api_hits(client, f"/api/v1/opportunities/{corpus.parking_need.id}/products?k=50")
    assert NEW_PRODUCT in names  # found through the delta before the rebuild
    assert matching.get_service().status().delta == 1

    run_jobs(web)  # the job encodes it and folds the delta into a new version
    assert builds[-1] is False and not any(builds)
    assert matching.get_service().current_version().version != first.version
    for url in pages(corpus, product_id):
        assert client.get(url).status_code == 200, url
    status = matching.get_service().status()
    assert status.index_version == matching.get_service().current_version().version
    assert status.delta == 0


def test_a_worker_with_no_version_queues_the_job_and_answers_from_its_delta(make, web, builds):
    corpus = build_corpus(make)
    client = web.test_client()
    AuthActions(client).login(make.organizer())
    url = f"/api/v1/opportunities/{corpus.parking_need.id}/products?k=50"
    hits = api_hits(client, url)  # nothing was ever built
    assert corpus.parking_product.name in hits
    assert builds == []
    assert queued(web) == [matching.ENCODE_JOB]
    with web.test_request_context("/"):  # as a page asks it
        status = matching.get_service().status()
    assert status.building and status.message == "索引构建中"
    assert matching.get_service().current_version() is None and builds == []

    run_jobs(web)
    assert matching.get_service().current_version() is not None
    assert corpus.parking_product.name in api_hits(client, url)
    with web.test_request_context("/"):
        assert matching.get_service().status().message is None


def test_with_many_entries_and_no_version_a_request_answers_empty_while_building(
    make, web, builds, monkeypatch
):
    corpus = build_corpus(make)
    monkeypatch.setattr(service_module, "DELTA_ONLY_LIMIT", 1)
    client = web.test_client()
    AuthActions(client).login(make.organizer())
    url = f"/api/v1/opportunities/{corpus.parking_need.id}/products?k=50"
    assert api_hits(client, url) == {}
    with web.test_request_context("/"):
        assert matching.get_service().status().message == "索引构建中"
    html = client.get(f"/matching/search?q={PARKING_QUERY}&side=product").get_data(as_text=True)
    assert builds == [] and matching.ENCODE_JOB in queued(web)
    assert "Traceback" not in html
    run_jobs(web)
    assert corpus.parking_product.name in api_hits(client, url)


def test_a_worker_picks_up_a_new_version_without_a_restart(make):
    from tests.marketplace.test_matching_app import names

    corpus = build_corpus(make)
    worker = matching.get_service()
    worker.rebuild()
    before = worker.status().index_version
    # Another process (the CLI or the job) publishes a new version from a changed database.
    from marketplace.models import EntryStatus

    make.product(corpus.firm, EntryStatus.PUBLISHED, name="新版本里的停车诱导产品", fields=("交通出行",))
    cli = MatchingService.from_config(worker_config())
    cli.rebuild(refit=False)
    assert cli.current_version().version != before
    results = worker.products_for_opportunity(corpus.parking_need, k=10)
    assert "新版本里的停车诱导产品" in names(results)
    assert worker.status().index_version == cli.current_version().version
    assert worker.status().delta == 0  # found in the version, not in a delta


def worker_config() -> dict:
    from flask import current_app

    return current_app.config


def test_a_withdrawn_entry_is_gone_at_once_and_a_new_one_found_before_the_rebuild(make, web, builds):
    corpus = build_corpus(make)
    staff = make.organizer()
    matching.get_service().rebuild()
    client = web.test_client()
    url = f"/api/v1/opportunities/{corpus.parking_need.id}/products?k=50"
    publish_new_product(make, corpus, client, staff)
    assert NEW_PRODUCT in api_hits(client, url)
    entries.withdraw(make.user(corpus.firm), corpus.parking_product)
    db.session.commit()
    assert corpus.parking_product.name not in api_hits(client, url)
    search = api_hits(client, f"/api/v1/search?q={PARKING_QUERY}&side=products")
    assert corpus.parking_product.name not in search and NEW_PRODUCT in search
    assert not any(builds)


def test_two_workers_map_the_same_version_read_only(make, app):
    build_corpus(make)
    first = MatchingService.from_config(app.config)
    first.rebuild()
    second = MatchingService.from_config(app.config)
    second.status()  # opens the current version
    assert first.current_version().version == second.status().index_version
    files_a, files_b = first._engine.files(), second._engine.files()
    assert files_a and files_a == files_b
    assert all(f.is_relative_to(first.current_version().path) for f in files_a)


def test_preload_opens_the_current_version_before_any_request(make, builds):
    """Under ``gunicorn --preload`` the master opens the version once (memory-mapped, shared by
    the forked workers), so a fresh worker's first query opens nothing."""
    from tests.marketplace.test_matching_app import names

    corpus = build_corpus(make)
    matching.get_service().rebuild()  # what `flask matching rebuild` leaves behind
    version = matching.get_service().current_version().version
    master = MatchingService.from_config(worker_config())
    master.preload()
    assert master.status().index_version == version
    assert master._engine is not None and master._version.version == version
    opened = master._version
    results = master.products_for_opportunity(corpus.parking_need, k=10)
    assert master._version is opened  # the first query did not open it again
    assert corpus.parking_product.name in names(results)
    assert builds == [False, False]  # the rebuild above; preloading built nothing


def test_preload_without_a_version_builds_nothing(make, builds, tmp_path):
    build_corpus(make)
    master = MatchingService.from_config({**worker_config(), "MATCHING_INDEX_DIR": str(tmp_path)})
    master.preload()
    assert master._engine is None and not builds

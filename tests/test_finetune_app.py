"""Fine-tuning the encoder in the app (services/matching/finetune.py): refusals, the pairs, the
held-out split, the switch on improvement only (with the evaluation forced both ways), the
RankingModel rows, the service hook that loads the switched-on folder and re-encodes, the CLI and
the jobs. A tiny random BERT stands in for e5-small."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from marketplace.extensions import db
from marketplace.models import (
    AuditEvent,
    EmbeddingCache,
    EntryStatus,
    Job,
    OrgKind,
    RankingKind,
    RankingModel,
    RankingStatus,
)
from marketplace.services import matching as matching_service
from marketplace.services.matching import finetune
from matching import finetune as ft
from matching.learning import Judgement
from tests.matching.conftest import (
    OPPORTUNITIES,
    PRODUCTS,
    tiny_st_model,  # noqa: F401 - the fixture
)

# Real fine-tuning and held-out evaluation on a tiny model: tens of seconds, so outside the default
# run; .ci/run runs the group once (`./manage.sh test -m training`).
pytestmark = pytest.mark.training

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


class World:
    pass


@pytest.fixture
def w(make, app, tiny_st_model, tmp_path, monkeypatch):  # noqa: F811 - the fixture
    """Four published needs and ten products (texts of the fixture corpus), and a matching service
    on the tiny sentence-transformers model whose fine-tunes go to ``tmp_path/models``."""
    w = World()
    w.models = tmp_path / "models"
    w.base = tiny_st_model
    service = matching_service.MatchingService(
        model_spec=f"st:{tiny_st_model}", index_dir=app.config["MATCHING_INDEX_DIR"], model_dir=w.models
    )
    app.extensions[matching_service.EXTENSION_KEY] = service
    w.service = service
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    finetune.forget()
    w.organizer = make.organizer()
    w.publisher = make.org(kind=OrgKind.GOVERNMENT, name="南昌市数据局")
    w.firm = make.org(name="江西测试科技有限公司")
    w.needs = [make.opportunity(w.publisher, status=EntryStatus.PUBLISHED, title=o.title, description=o.text)
               for o in OPPORTUNITIES[:4]]
    w.products = [make.product(w.firm, status=EntryStatus.PUBLISHED, name=p.title, description=p.text)
                  for p in PRODUCTS[:10]]
    w.draft = make.product(w.firm, name="未发布产品", description="草稿")
    yield w
    finetune.forget()


def judged(w, per_need: int = 2, negatives: bool = True) -> list[Judgement]:
    """Need i: products i .. i+per_need-1 graded 3 (selected), product i+5 graded 0 (removed)."""
    out = []
    for i, need in enumerate(w.needs):
        for j in range(per_need):
            product = w.products[(i + j) % len(w.products)]
            out.append(Judgement(need.id, product.id, w.firm.id, 3, "selected", T0, f"response:{i}{j}"))
        if negatives:
            bad = w.products[(i + 5) % len(w.products)]
            out.append(Judgement(need.id, bad.id, w.firm.id, 0, "removed_top10", T0, f"decision:{i}"))
    out.append(Judgement(w.needs[0].id, None, w.firm.id, 2, "meeting_held", T0, "meeting:1"))  # firm-level
    out.append(Judgement(w.needs[0].id, w.draft.id, w.firm.id, 3, "selected", T0, "response:99"))  # a draft
    return out


@pytest.fixture
def judgements(w, monkeypatch):
    found = judged(w)
    monkeypatch.setattr(finetune.judgements, "collect", lambda since=None: list(found))
    return found


def forced(diff: float, lo: float, needs: int = 2):
    """An evaluation that returns fixed numbers (the switch rule itself is tested in tests/matching)."""
    def evaluate(reference, candidate, data, held_out, pool_size, guard=True):
        evaluate.calls.append((reference, candidate, data, held_out))
        held = ft.Comparison(0.5, 0.5 + diff, diff, (lo, diff + 0.05), needs)
        return held, ft.Comparison(0.6, 0.6, 0.0, (-0.01, 0.01), 61)

    evaluate.calls = []
    return evaluate


def run(**kw) -> RankingModel:
    kw.setdefault("min_pairs_override", 5)
    return finetune.finetune(None, **kw)


def encoder_rows() -> list[RankingModel]:
    return list(db.session.scalars(
        select(RankingModel).where(RankingModel.kind == RankingKind.ENCODER).order_by(RankingModel.id)
    ))


# ---------------------------------------------------------------- refusals


def test_the_offline_encoder_is_refused_in_chinese_and_english(app, judgements, w):
    app.extensions[matching_service.EXTENSION_KEY] = matching_service.MatchingService(
        model_spec="offline", index_dir=app.config["MATCHING_INDEX_DIR"])
    with pytest.raises(finetune.FineTuneRefused) as refused:
        run()
    assert "离线编码器" in refused.value.message and "offline encoder" in refused.value.message
    assert encoder_rows() == []


def test_too_few_pairs_are_refused_with_the_reason(w, judgements):
    with pytest.raises(finetune.NotEnoughPairs) as refused:
        run(min_pairs_override=200)
    assert "8 对" in refused.value.message and "200 对" in refused.value.message
    assert encoder_rows() == []
    assert not w.models.exists() or not any(w.models.iterdir())


def test_the_configured_minimum_applies_by_default(w, judgements, app, monkeypatch):
    monkeypatch.setitem(app.config, "MATCHING_FINETUNE_MIN_PAIRS", 9)
    with pytest.raises(finetune.NotEnoughPairs):
        finetune.finetune(None)


# ---------------------------------------------------------------- pairs


def test_pairs_are_the_positive_published_product_judgements_with_hard_negatives(w, judgements):
    data = finetune.collect_pairs()
    assert len(data.pairs) == 8  # 4 needs x 2; not the firm-level one, not the draft
    assert {p.need_id for p in data.pairs} == {n.id for n in w.needs}
    assert all(p.negative is not None for p in data.pairs)
    first = next(p for p in data.pairs if p.need_id == w.needs[0].id)
    assert first.anchor.startswith(w.needs[0].title)
    assert first.positive.startswith(w.products[0].name)
    assert first.negative.startswith(w.products[5].name)
    assert data.qrels[w.needs[0].id][w.products[5].id] == 0.0
    assert w.draft.id not in data.product_texts


# ---------------------------------------------------------------- switching


def test_an_improvement_switches_the_encoder_and_re_encodes_the_corpus(w, judgements, monkeypatch):
    monkeypatch.setattr(finetune, "evaluate", forced(0.05, 0.01))
    before = w.service.status()
    assert before.encoder_name == f"st:{w.base}"
    model = run()
    assert model.status == RankingStatus.ACTIVE and model.activated_at is not None
    assert model.kind == RankingKind.ENCODER and model.algorithm == "mnrl"
    assert Path(model.path).is_dir() and Path(model.path).parent == w.models
    assert ft.read_marker(model.path)["pairs"] == model.metrics["train_pairs"]
    assert "启用微调模型" in model.reason
    assert model.metrics["base"]["spec"] == f"st:{w.base}"
    assert model.metrics["training"]["frozen_parameters"] > 0
    # the service now encodes with the fine-tuned folder; the encoding job re-encoded everything
    status = w.service.status()
    assert status.encoder_name.endswith(f"+ft:{model.version}")
    assert status.fingerprint != before.fingerprint
    encoded = db.session.scalar(select(func.count()).select_from(EmbeddingCache)
                                .where(EmbeddingCache.fingerprint == status.fingerprint))
    assert encoded == len(w.needs) + len(w.products)
    assert w.service.current_version().meta["fingerprint"] == status.fingerprint
    assert matching_service.products_for_opportunity(w.needs[0], 5)
    actions = set(db.session.scalars(select(AuditEvent.action)))
    assert {"matching.finetune", "matching.switch"} <= actions


def test_no_improvement_keeps_the_running_encoder_and_records_why(w, judgements, monkeypatch):
    monkeypatch.setattr(finetune, "evaluate", forced(0.002, -0.01))
    fingerprint = w.service.status().fingerprint
    model = run()
    assert model.status == RankingStatus.CANDIDATE
    assert model.path is None and not Path(model.metrics["folder_removed"]).exists()
    assert "继续使用当前模型" in model.reason
    assert model.metrics["held_out"]["diff"] == 0.002
    assert finetune.active_encoder(w.service, fresh=True) is None
    assert w.service.status().fingerprint == fingerprint


def test_the_held_out_needs_are_never_trained_on(w, judgements, monkeypatch):
    evaluate = forced(0.0, 0.0)
    monkeypatch.setattr(finetune, "evaluate", evaluate)
    model = run()
    train, held = set(model.metrics["train_needs"]), set(model.metrics["held_out_needs"])
    assert held and train and not train & held
    assert train | held == {n.id for n in w.needs}
    _, _, data, held_out = evaluate.calls[0]
    assert set(held_out) == held
    assert model.metrics["train_pairs"] == sum(1 for p in data.pairs if p.need_id in train)


def test_the_evaluation_compares_with_the_encoder_that_runs(w, judgements, monkeypatch):
    monkeypatch.setattr(finetune, "evaluate", forced(0.05, 0.01))
    first = run()
    evaluate = forced(0.05, 0.01)
    monkeypatch.setattr(finetune, "evaluate", evaluate)
    second = run()
    reference, candidate, _, _ = evaluate.calls[0]
    assert reference.name.endswith(f"+ft:{first.version}")  # the active fine-tune, not the base
    assert candidate.name.endswith(f"+ft:{second.version}")
    rows = {r.version: r for r in encoder_rows()}
    assert rows[first.version].status == RankingStatus.RETIRED and rows[first.version].retired_at
    assert rows[second.version].status == RankingStatus.ACTIVE


def test_the_real_evaluation_scores_held_out_needs_and_the_dev_set(w, judgements):
    model = run()
    held = model.metrics["held_out"]
    assert held["needs"] == len(model.metrics["held_out_needs"])
    assert 0.0 <= held["reference_ndcg@10"] <= 1.0 and 0.0 <= held["candidate_ndcg@10"] <= 1.0
    assert model.metrics["dev_guard"]["needs"] > 50  # seeds/eval
    assert (model.status == RankingStatus.ACTIVE) == ("启用微调模型" in model.reason)


# ---------------------------------------------------------------- the service hook


def _active_row(w, path: str, spec: str) -> RankingModel:
    row = RankingModel(kind=RankingKind.ENCODER.value, version="handmade", algorithm="mnrl",
                       status=RankingStatus.ACTIVE.value, path=path, reason="测试",
                       metrics={"base": {"spec": spec, "name": spec, "query_prompt": "",
                                         "document_prompt": ""}})
    db.session.add(row)
    db.session.commit()
    return row


def test_an_active_encoder_of_another_base_or_without_its_folder_is_ignored(w, tmp_path):
    _active_row(w, str(w.base), "st:some/other-model")
    assert finetune.active_encoder(w.service, fresh=True) is None
    db.session.execute(RankingModel.__table__.delete())
    _active_row(w, str(tmp_path / "gone"), f"st:{w.base}")
    assert finetune.active_encoder(w.service, fresh=True) is None
    db.session.execute(RankingModel.__table__.delete())
    _active_row(w, str(w.base), f"st:{w.base}")
    assert finetune.active_encoder(w.service, fresh=True).version == "handmade"


def test_a_worker_looks_for_a_switch_at_most_every_check_interval(w, app, monkeypatch):
    monkeypatch.setitem(app.config, "MATCHING_ENCODER_CHECK_SECONDS", 3600)
    assert finetune.active_encoder(w.service) is None
    _active_row(w, str(w.base), f"st:{w.base}")
    assert finetune.active_encoder(w.service) is None  # cached
    assert finetune.active_encoder(w.service, fresh=True) is not None  # the encoding job reads it now


# ---------------------------------------------------------------- CLI and jobs


def test_the_cli_reports_too_few_pairs_and_refuses_the_offline_encoder(w, judgements, runner, app):
    result = runner.invoke(args=["matching", "finetune", "--min-pairs", "100"])
    assert result.exit_code == 0 and "少于 100 对" in result.output
    app.extensions[matching_service.EXTENSION_KEY] = matching_service.MatchingService(
        model_spec="offline", index_dir=app.config["MATCHING_INDEX_DIR"])
    result = runner.invoke(args=["matching", "finetune"])
    assert result.exit_code != 0 and "离线编码器" in result.output


def test_the_cli_trains_and_prints_the_decision(w, judgements, runner, monkeypatch):
    monkeypatch.setattr(finetune, "evaluate", forced(0.002, -0.01))
    result = runner.invoke(args=["matching", "finetune", "--min-pairs", "5"])
    assert result.exit_code == 0, result.output
    assert "未启用" in result.output and "removed" in result.output and "继续使用当前模型" in result.output


def test_the_tracked_job_records_its_outcome(w, judgements, monkeypatch):
    monkeypatch.setattr(finetune, "evaluate", forced(0.05, 0.01))
    job = finetune.queue_finetune(w.organizer, min_pairs=5)
    assert job.status == "succeeded", job.message
    assert job.result["trained"] is True and job.result["status"] == RankingStatus.ACTIVE
    assert encoder_rows()[0].job_id == job.id and encoder_rows()[0].trained_by_id == w.organizer.id
    refused = finetune.queue_finetune(None, min_pairs=500)
    assert refused.status == "succeeded" and refused.result["trained"] is False
    assert "少于 500 对" in refused.result["summary"]


def test_the_nightly_job_queues_only_when_the_pairs_grew(w, judgements, app, monkeypatch):
    from marketplace.jobs import finetune as finetune_jobs

    monkeypatch.setitem(app.config, "MATCHING_FINETUNE_MIN_PAIRS", 8)
    assert finetune.new_pairs_since_last_model()  # 8 pairs, nothing trained yet
    db.session.add(RankingModel(kind=RankingKind.ENCODER.value, version="earlier", algorithm="mnrl",
                                status=RankingStatus.CANDIDATE.value, judgements=7,
                                created_at=(T0 - timedelta(days=1)).replace(tzinfo=None)))
    db.session.commit()
    assert not finetune.new_pairs_since_last_model()  # 8 < 7 + 8 // 4
    before = db.session.scalar(select(func.count()).select_from(Job))
    finetune_jobs.finetune_nightly()
    assert db.session.scalar(select(func.count()).select_from(Job)) == before
    monkeypatch.setitem(app.config, "MATCHING_FINETUNE_MIN_PAIRS", 200)
    assert not finetune.new_pairs_since_last_model()

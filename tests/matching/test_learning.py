"""The learned re-ranker (matching.learning): features, leakage guard, training, switch rule."""

from __future__ import annotations

import re
import sys
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from matching import learning
from matching.learning import (
    FEATURES,
    HISTORY_FEATURES,
    MIN_JUDGEMENTS,
    MIN_MARGIN,
    Judgement,
    LabelLeakage,
    ModelUnavailable,
    NotEnoughJudgements,
    Reranker,
    build_dataset,
    check_no_leakage,
    evaluate_switch,
    explain,
    features_for_hit,
    handset_order,
    history_from,
    reasons_for,
    train,
)
from matching.metrics import ndcg_at_k

T0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
CJK = re.compile(r"[\u4e00-\u9fff]")


def _planted(n_needs: int, *, per: int = 10, seed: int = 0, signal: str = "city") -> list[tuple]:
    """Rows whose grade follows a preference the engine's order ignores.

    ``signal="city"``: local firms and firms with earlier signings are preferred (the planted
    preference); ``"handset"``: the grade falls with the engine's rank (the hand-set order is
    already ideal); ``"noise"``: grades are random.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for need in range(n_needs):
        for rank in range(1, per + 1):
            feats = dict.fromkeys(FEATURES, 0.0)
            feats.update(
                dense=float(rng.uniform(0.5, 0.9)),
                lexical=float(rng.random()),
                rank=float(rank),
                city=float(rng.random() < 0.3),
                hist_signed=float(rng.poisson(0.4)),
                maturity=float(rng.choice([0.3, 0.6, 1.0])),
            )
            if signal == "city":
                utility = 1.6 * feats["city"] + 0.9 * min(feats["hist_signed"], 2) + 0.2 * (per - rank) / per
                grade = int(np.clip(np.round(utility + rng.normal(0, 0.25)), 0, 3))
            elif signal == "handset":
                grade = 3 if rank <= 2 else 2 if rank <= 4 else 1 if rank <= 6 else 0
            else:
                grade = int(rng.integers(0, 4))
            rows.append((need, need * 1000 + rank, feats, grade))
    return rows


def _feats(**values: float) -> dict[str, float]:
    feats = dict.fromkeys(FEATURES, 0.0)
    feats["rank"] = 1.0
    feats.update(values)
    return feats


# ------------------------------------------------------------------------------ features


def test_features_for_hit_reads_every_engine_signal(engine):
    hits = engine.products_for(101, k=5)
    feats = features_for_hit(hits[0], 1, {"signed": 2, "hist_responses": 5})
    assert tuple(feats) == FEATURES
    assert feats["dense"] == hits[0].dense
    assert feats["lexical"] == hits[0].lexical
    assert feats["field"] == hits[0].breakdown["structured_field"] == 1.0  # both 交通出行
    assert feats["city"] == 1.0  # both in 南昌市
    assert feats["matched_terms"] == len(hits[0].matched_terms)
    assert feats["rank"] == 1.0
    assert (feats["hist_signed"], feats["hist_responses"], feats["hist_selected"]) == (2.0, 5.0, 0.0)


@pytest.mark.parametrize("history", [{"typo": 1}, {"signed": -1}, {"signed": float("nan")}])
def test_features_for_hit_refuses_bad_history(engine, history):
    hit = engine.products_for(101, k=1)[0]
    with pytest.raises(ValueError):
        features_for_hit(hit, 1, history)


def test_features_for_hit_rank_is_one_based(engine):
    with pytest.raises(ValueError):
        features_for_hit(engine.products_for(101, k=1)[0], 0, {})


def test_build_dataset_groups_by_need_and_keeps_the_highest_grade():
    rows = [
        (7, 1, _feats(rank=1), 0),
        (9, 5, _feats(rank=1), 1),
        (7, 2, _feats(rank=2), 2),
        (7, 1, _feats(rank=1, city=1.0), 3),  # the same pair signed later
    ]
    ds = build_dataset(rows)
    assert ds.needs == [7, 9]
    assert ds.group_sizes() == [2, 1]
    assert ds.n_judgements == 3
    assert dict(zip(ds.candidate_ids[:2].tolist(), ds.grades[:2].tolist(), strict=True)) == {1: 3, 2: 2}
    assert ds.X[0, FEATURES.index("city")] == 1.0  # features of the row with the highest grade
    assert handset_order(ds, ds.groups()[0][1]) == [1, 2]


@pytest.mark.parametrize(
    "row",
    [
        (1, 1, {"dense": 0.5}, 1),  # features missing
        (1, 1, {**_feats(), "bogus": 1.0}, 1),  # unknown feature
        (1, 1, _feats(dense=float("inf")), 1),  # not finite
        (1, 1, _feats(), -1),  # negative grade
        (1, 1, _feats(), 1.5),  # not an integer
        (1, 1, _feats()),  # too short
    ],
)
def test_build_dataset_refuses_bad_rows(row):
    with pytest.raises(ValueError):
        build_dataset([row])


# ------------------------------------------------------------------------------ label leakage


def _judgement(key: str, at: datetime = T0) -> Judgement:
    return Judgement(
        need_id=1, product_id=2, organization_id=3, grade=3, source="signed", at=at, decision_key=key
    )


def test_a_feature_built_from_the_same_decision_is_refused():
    label = _judgement("signing:17")
    with pytest.raises(LabelLeakage):
        check_no_leakage(label, ["response:3", "signing:17"])
    with pytest.raises(LabelLeakage):
        check_no_leakage(label, [_judgement("signing:17", T0 - timedelta(days=3))])


def test_a_later_decision_cannot_feed_the_history_of_an_earlier_one():
    with pytest.raises(LabelLeakage):
        check_no_leakage(_judgement("response:1"), [_judgement("signing:9", T0 + timedelta(hours=1))])
    with pytest.raises(LabelLeakage):
        check_no_leakage(_judgement("response:1"), [_judgement("signing:9", T0)])


def test_earlier_other_decisions_are_allowed():
    check_no_leakage(
        _judgement("signing:17"), ["signing:3", _judgement("response:4", T0 - timedelta(days=1))]
    )


def test_build_dataset_refuses_a_row_whose_history_holds_its_own_label():
    ok = (1, 1, _feats(hist_signed=1.0), 3, {"signing:17"}, {"signing:3"})
    assert build_dataset([ok]).n_judgements == 1
    leaked = (1, 1, _feats(hist_signed=1.0), 3, {"signing:17"}, {"signing:3", "signing:17"})
    with pytest.raises(LabelLeakage):
        build_dataset([leaked])


def test_history_from_counts_only_earlier_decisions_other_than_the_label():
    events = [
        ("signed", "signing:1", T0 - timedelta(days=10)),
        ("hist_signed", "signing:2", T0 - timedelta(days=1)),
        ("selected", "response:5", T0 - timedelta(days=2)),
        ("signed", "signing:3", T0),  # the labelled decision's own time: excluded
        ("signed", "signing:4", T0 + timedelta(days=1)),  # later: excluded
        ("responses", "response:6", T0 - timedelta(days=5)),
    ]
    counts, used = history_from(events, before=T0, exclude_keys={"signing:2"})
    assert counts == {"hist_responses": 1.0, "hist_selected": 1.0, "hist_signed": 1.0}
    assert used == {"signing:1", "response:5", "response:6"}
    assert set(counts) == set(HISTORY_FEATURES)
    with pytest.raises(ValueError):
        history_from([("clicks", "x", T0 - timedelta(days=1))], before=T0)


# ------------------------------------------------------------------------------ training


@pytest.mark.parametrize("algorithm", ["logistic", "lambdarank"])
def test_training_recovers_a_planted_preference(algorithm):
    if algorithm == "lambdarank":
        pytest.importorskip("lightgbm")
    model = train(build_dataset(_planted(40, seed=1)), algorithm=algorithm, seed=0)
    assert model.algorithm == algorithm
    held_out = build_dataset(_planted(30, seed=2))
    learned, handset = [], []
    for _need, rows in held_out.groups():
        ids = held_out.candidate_ids[rows].tolist()
        judged = dict(zip(ids, held_out.grades[rows].tolist(), strict=True))
        scores = model.score_matrix(held_out.X[rows]).tolist()
        order = [c for _s, c in sorted(zip((-s for s in scores), ids, strict=True))]
        learned.append(ndcg_at_k(order, judged, 10))
        handset.append(ndcg_at_k(handset_order(held_out, rows), judged, 10))
    learned_mean = np.mean([v for v in learned if v is not None])
    handset_mean = np.mean([v for v in handset if v is not None])
    assert learned_mean > handset_mean + 0.15
    importances = model.importances()
    assert max(importances, key=importances.get) in {"city", "hist_signed"}
    assert importances["city"] > importances["lexical"]


def test_training_is_deterministic():
    ds = build_dataset(_planted(30, seed=3))
    for algorithm in ("logistic", "lambdarank") if learning.lightgbm_available() else ("logistic",):
        a = train(ds, algorithm=algorithm, seed=0).score_matrix(ds.X)
        b = train(ds, algorithm=algorithm, seed=0).score_matrix(ds.X)
        assert np.array_equal(a, b)


def test_auto_uses_lambdarank_only_with_enough_judgements():
    pytest.importorskip("lightgbm")
    assert train(build_dataset(_planted(10)), seed=0).algorithm == "logistic"  # 100 judgements
    assert train(build_dataset(_planted(35)), seed=0).algorithm == "lambdarank"  # 350 judgements


@pytest.mark.parametrize("algorithm", ["logistic", "lambdarank"])
def test_selection_bias_cannot_teach_the_model_to_promote_worse_ranks(algorithm):
    """Organizers remove from the top and add from further down: among judged rows a worse rank
    goes with a better grade. The learned score must still never rise with the rank."""
    if algorithm == "lambdarank":
        pytest.importorskip("lightgbm")
    rng = np.random.default_rng(11)
    rows = []
    for need in range(40):
        for rank in range(1, 13):
            grade = 0 if rank <= 6 else 2  # removed from the shown top, added from below
            feats = _feats(rank=float(rank), dense=float(0.9 - 0.01 * rank), city=float(rng.random() < 0.3))
            rows.append((need, rank, feats, grade))
    model = train(build_dataset(rows), algorithm=algorithm, seed=0)
    scores = model.score([_feats(rank=float(r), dense=0.8) for r in range(1, 40)])
    assert np.all(np.diff(scores) <= 1e-12)
    higher_dense = model.score([_feats(rank=5.0, dense=d) for d in (0.2, 0.5, 0.8)])
    assert np.all(np.diff(higher_dense) >= -1e-12)


def test_training_needs_two_different_grades_in_some_need():
    rows = [(need, c, _feats(rank=float(c)), 2) for need in range(5) for c in range(1, 4)]
    with pytest.raises(NotEnoughJudgements):
        train(build_dataset(rows), algorithm="logistic")


def test_score_refuses_missing_features_and_ignores_newer_ones():
    model = train(build_dataset(_planted(12)), algorithm="logistic")
    with pytest.raises(ValueError):
        model.score([{"dense": 1.0}])
    row = _feats(city=1.0)
    assert model.score([{**row, "added_later": 5.0}]) == pytest.approx(model.score([row]))


# ------------------------------------------------------------------------------ switch rule


def test_switch_on_when_better_by_the_margin():
    report = evaluate_switch(build_dataset(_planted(40, seed=4)), seed=0)
    assert report.switch_on
    m = report.metrics
    assert m["diff"] >= MIN_MARGIN and m["ci95"][0] > 0
    assert m["learned"]["ndcg@10"] > m["handset"]["ndcg@10"]
    assert m["needs"] == 40 and m["judgements"] == 400 and m["folds"] == 5
    assert report.algorithm in {"logistic", "lambdarank"}
    assert "满足启用条件" in report.reason and CJK.search(report.reason)


def test_switch_stays_off_when_the_handset_order_is_already_right():
    report = evaluate_switch(build_dataset(_planted(30, signal="handset")), seed=0)
    assert not report.switch_on
    assert report.metrics["diff"] < MIN_MARGIN
    assert "继续使用人工设定的权重" in report.reason


def test_switch_stays_off_on_noise():
    report = evaluate_switch(build_dataset(_planted(30, signal="noise", seed=5)), seed=0)
    assert not report.switch_on
    assert report.metrics["ci95"][0] <= 0 or report.metrics["diff"] < MIN_MARGIN
    assert "继续使用人工设定的权重" in report.reason


def test_a_gain_below_the_margin_does_not_switch():
    ds = build_dataset(_planted(40, seed=4))
    gain = evaluate_switch(ds, seed=0).metrics["diff"]
    report = evaluate_switch(ds, seed=0, margin=gain + 0.05)
    assert not report.switch_on
    assert "提升不足" in report.reason


def test_too_few_judgements_fall_back_to_the_handset_weights():
    ds = build_dataset(_planted(2))  # 20 judgements
    assert ds.n_judgements < MIN_JUDGEMENTS
    report = evaluate_switch(ds)
    assert not report.switch_on
    assert report.algorithm is None
    assert f"{ds.n_judgements} 条判断" in report.reason and "少于" in report.reason
    assert "人工设定的权重" in report.reason


def test_too_few_informative_needs_fall_back_even_with_many_judgements():
    rows = _planted(4, per=25)  # 100 judgements but only 4 needs
    report = evaluate_switch(build_dataset(rows))
    assert not report.switch_on and report.metrics["needs"] == 4
    assert "少于" in report.reason


def test_rows_nobody_acted_on_do_not_count_as_judgements():
    ds = build_dataset(_planted(20, per=10, seed=4))  # 200 rows
    report = evaluate_switch(ds, n_judgements=25)
    assert not report.switch_on
    assert report.metrics["judgements"] == 25 and report.metrics["rows"] == 200
    assert "25 条判断" in report.reason
    assert evaluate_switch(ds, n_judgements=200, seed=0).metrics["algorithm"] == "logistic"


def test_switch_evaluation_never_trains_on_held_out_needs(monkeypatch):
    ds = build_dataset(_planted(20, seed=6))
    seen: list[set[int]] = []
    real_train = learning.train

    def spy(dataset, **kwargs):
        seen.append(set(dataset.needs))
        return real_train(dataset, **kwargs)

    monkeypatch.setattr(learning, "train", spy)
    evaluate_switch(ds, folds=4, seed=0)
    assert len(seen) == 4
    # every need is held out exactly once: missing from exactly one training fold
    for need in ds.needs:
        assert sum(need not in s for s in seen) == 1


# ------------------------------------------------------------------------------ serialisation


@pytest.mark.parametrize("algorithm", ["logistic", "lambdarank"])
def test_serialisation_round_trip_gives_identical_scores(algorithm):
    if algorithm == "lambdarank":
        pytest.importorskip("lightgbm")
    ds = build_dataset(_planted(35, seed=7))
    model = train(ds, algorithm=algorithm)
    data = model.to_bytes()
    assert isinstance(data, bytes)
    again = Reranker.from_bytes(data)
    assert again.algorithm == algorithm and again.features == FEATURES
    assert np.array_equal(model.score_matrix(ds.X), again.score_matrix(ds.X))
    assert again.trained_on["judgements"] == ds.n_judgements


@pytest.mark.parametrize(
    "data", [b"", b"\xff\xfe", b"{}", b'{"format": "matching.learning/1", "algorithm": "x"}']
)
def test_from_bytes_refuses_damaged_data(data):
    with pytest.raises(ValueError):
        Reranker.from_bytes(data)


# ------------------------------------------------------------------------------ explanations


@pytest.mark.parametrize("algorithm", ["logistic", "lambdarank"])
def test_contributions_sum_to_the_score_and_come_largest_first(algorithm):
    if algorithm == "lambdarank":
        pytest.importorskip("lightgbm")
    model = train(build_dataset(_planted(35, seed=8)), algorithm=algorithm)
    local = _feats(city=1.0, hist_signed=2.0, dense=0.7, rank=6.0, maturity=1.0)
    values, bias = model.all_contributions(local)
    assert sum(values.values()) + bias == pytest.approx(float(model.score([local])[0]), abs=1e-9)
    top = model.contributions(local, top=3)
    assert 1 <= len(top) <= 3
    assert [v for _n, v in top] == sorted((v for _n, v in top), reverse=True)
    assert all(v > 0 for _n, v in top)
    assert top[0][0] in {"city", "hist_signed"}
    signed = model.contributions(local, top=len(FEATURES), positive_only=False)
    assert [abs(v) for _n, v in signed] == sorted((abs(v) for _n, v in signed), reverse=True)
    assert "同城企业" in explain(model, local) or "该企业曾在平台上签约" in explain(model, local)


def test_reasons_are_chinese_readable_and_skip_negative_contributions():
    assert reasons_for([("city", 1.2), ("hist_signed", 0.4), ("dense", -0.3)]) == [
        "同城企业",
        "该企业曾在平台上签约",
    ]
    assert reasons_for([("dense", 0.5), ("dense", 0.1), ("lexical", 0.2)]) == [
        "语义相似度高",
        "关键词高度重合",
    ]
    for name in FEATURES:
        (text,) = reasons_for([(name, 1.0)])
        assert CJK.search(text) and not re.search(r"[A-Za-z_]", text), text


# ------------------------------------------------------------------------------ without LightGBM


def test_logistic_fallback_when_lightgbm_is_unavailable(monkeypatch):
    lightgbm_model = (
        train(build_dataset(_planted(35)), algorithm="lambdarank") if learning.lightgbm_available() else None
    )
    monkeypatch.setitem(sys.modules, "lightgbm", None)  # import lightgbm → ImportError
    assert not learning.lightgbm_available()
    assert learning.choose_algorithm(10_000) == "logistic"
    ds = build_dataset(_planted(35, seed=9))  # 350 judgements: auto would pick lambdarank
    model = train(ds)
    assert model.algorithm == "logistic"
    report = evaluate_switch(ds, seed=0)
    assert report.algorithm == "logistic" and report.switch_on
    with pytest.raises(ModelUnavailable):
        train(ds, algorithm="lambdarank")
    if lightgbm_model is not None:
        with pytest.raises(ModelUnavailable):
            Reranker.from_bytes(lightgbm_model.to_bytes())

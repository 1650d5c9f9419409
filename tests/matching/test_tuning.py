"""Grid search and cross-validation of the fusion weights (matching.tuning)."""

from __future__ import annotations

import numpy as np
import pytest

from matching import MatchConfig, MatchEngine
from matching.tuning import (
    NeedSignals,
    choose,
    cross_validate,
    default_grid,
    fuse,
    make_folds,
    need_signals,
    parse_grid,
    score_grid,
)
from tests.matching.conftest import OPPORTUNITIES, PRODUCTS

LEXICAL = {"w_dense": 0.0, "w_lexical": 1.0, "w_structured": 0.0}
DENSE = {"w_dense": 1.0, "w_lexical": 0.0, "w_structured": 0.0}


def _signals(key: str, judged: dict[str, float]) -> NeedSignals:
    """Two candidates: lexical prefers x, dense prefers y."""
    return NeedSignals(
        key=key,
        group="g",
        judged=judged,
        product_keys=["x", "y"],
        cand=np.array([0, 1]),
        dense=np.array([0.0, 1.0]),
        lexical=np.array([1.0, 0.0]),
        parts=np.zeros((2, 5)),
    )


def test_fuse_follows_the_weights():
    sig = _signals("n", {"x": 3})
    assert fuse(sig, LEXICAL, 10) == ["x", "y"]
    assert fuse(sig, DENSE, 10) == ["y", "x"]
    assert fuse(sig, DENSE, 1) == ["y"]
    # a tie is broken by internal id, as in the engine
    assert fuse(sig, {"w_dense": 0.5, "w_lexical": 0.5, "w_structured": 0.0}, 10) == ["x", "y"]


def test_a_poisoned_held_out_need_cannot_change_its_folds_weights():
    normal = _signals("normal", {"x": 2, "y": 1})  # lexical order is ideal (1.0), dense 0.80
    poisoned = _signals("poisoned", {"y": 3})  # dense order is ideal (1.0), lexical 0.63
    sigs = [normal, poisoned]
    grid = [LEXICAL, DENSE]
    base = MatchConfig(**LEXICAL)  # a grid point, so the grid stays these two
    scores = score_grid(lambda _o: sigs, grid, base, k=10, depth=10)
    # leaking the poisoned need into the choice would flip it to the dense weights ...
    assert grid[choose(scores, [0, 1], grid, base)[0]] == DENSE
    # ... but cross-validation chooses the weights for it on the normal need only
    res = cross_validate(lambda _o: sigs, ["g", "g"], grid=grid, base=base, folds=2, seed=0)
    fold_of_poisoned = next(f for f in res.folds if 1 in f.test)
    assert fold_of_poisoned.test == [1]
    assert fold_of_poisoned.weights == {"w_dense": 0.0, "w_lexical": 1.0, "w_structured": 0.0}
    assert res.held_out_ndcg()[1] == pytest.approx(1 / np.log2(3))


def test_held_out_judgements_never_change_the_weights_of_their_fold():
    """Perturb the judgements of one fold's test needs: that fold's choice must not move."""
    rng = np.random.default_rng(0)
    n = 30
    dense = rng.random((n, 6))
    lexical = rng.random((n, 6))
    judged = [{f"p{j}": float(rng.integers(0, 4)) for j in range(6)} for _ in range(n)]
    for j in judged:
        j["p0"] = 3.0  # every need has a relevant product

    def build(judgements):
        return [
            NeedSignals(
                key=f"n{i}",
                group="a" if i % 2 else "b",
                judged=judgements[i],
                product_keys=[f"p{j}" for j in range(6)],
                cand=np.arange(6),
                dense=dense[i],
                lexical=lexical[i],
                parts=np.zeros((6, 5)),
            )
            for i in range(n)
        ]

    groups = ["a" if i % 2 else "b" for i in range(n)]
    grid = default_grid(step=0.1, structured=(0.0,))
    before = cross_validate(lambda _o: build(judged), groups, grid=grid, folds=5, seed=3)
    for fold_no, fold in enumerate(before.folds):
        poisoned = [dict(j) for j in judged]
        for i in fold.test:  # reverse every held-out need's preferences
            poisoned[i] = {p: 3.0 - g for p, g in judged[i].items()}
        after = cross_validate(lambda _o, pj=poisoned: build(pj), groups, grid=grid, folds=5, seed=3)
        assert after.folds[fold_no].test == fold.test
        assert after.folds[fold_no].weights == fold.weights


def test_make_folds_partition_is_deterministic_and_stratified():
    groups = ["s1"] * 10 + ["s2"] * 7
    folds = make_folds(groups, 5, seed=0)
    assert folds == make_folds(groups, 5, seed=0)
    assert folds != make_folds(groups, 5, seed=1)
    assert sorted(i for f in folds for i in f) == list(range(17))
    assert [len(f) for f in folds] == [4, 4, 3, 3, 3]
    for f in folds:  # every fold holds needs of both sets
        assert {groups[i] for i in f} == {"s1", "s2"}
    assert len(make_folds(["a", "a"], 5, seed=0)) == 2


def test_choose_breaks_ties_towards_the_default_weights():
    grid = [DENSE, {"w_dense": 0.35, "w_lexical": 0.55, "w_structured": 0.10}, LEXICAL]
    scores = np.array([[0.8, 0.9], [0.8, 0.9], [0.8, 0.90001]])
    pick, value = choose(scores, [0, 1], grid, MatchConfig(), tie_tolerance=1e-4)
    assert pick == 1 and value == pytest.approx(0.85)
    pick, _ = choose(scores, [0, 1], grid, MatchConfig(), tie_tolerance=0.0)
    assert pick == 2
    with pytest.raises(ValueError):
        choose(scores, [], grid, MatchConfig())


def test_default_grid_lies_on_the_simplex_and_contains_the_defaults():
    grid = default_grid(synonym_weights=None)
    assert all(abs(sum(p.values()) - 1) < 1e-9 and min(p.values()) >= 0 for p in grid)
    assert {"w_dense": 0.35, "w_lexical": 0.55, "w_structured": 0.1} in grid
    assert LEXICAL in grid and DENSE in grid
    full = default_grid()
    assert parse_grid(None) == full
    if "synonym_weight" in MatchConfig.__dataclass_fields__:  # the thesaurus weight is tuned too
        assert len(full) == len(grid) * 5
        assert {"w_dense": 0.35, "w_lexical": 0.55, "w_structured": 0.1, "synonym_weight": 0.5} in full
    assert parse_grid('{"w_dense": [0.2, 0.4], "w_structured": [0, 0.1]}') == [
        {"w_dense": 0.2, "w_structured": 0},
        {"w_dense": 0.2, "w_structured": 0.1},
        {"w_dense": 0.4, "w_structured": 0},
        {"w_dense": 0.4, "w_structured": 0.1},
    ]
    with pytest.raises(ValueError):
        parse_grid([{"w_dense": -1}])
    with pytest.raises(ValueError):
        parse_grid([])


@pytest.mark.parametrize(
    "weights",
    [
        {},
        {"w_dense": 0.7, "w_lexical": 0.2, "w_structured": 0.1},
        {"w_dense": 0.0, "w_lexical": 0.5, "w_structured": 0.5, "w_maturity": 0.0},
        {"w_dense": 0.3, "w_lexical": 0.3, "w_structured": 0.4, "w_city": 1.0, "w_tags": 0.5},
    ],
)
def test_fuse_over_need_signals_reproduces_the_engine(fitted_encoder, weights):
    engine = MatchEngine(fitted_encoder, config=MatchConfig.from_mapping(weights))
    engine.build(PRODUCTS + OPPORTUNITIES)
    keys = {p.id: f"P-{p.id}" for p in PRODUCTS}
    product_keys = [keys.get(i, f"?{i}") for i in range(max(keys) + 1)]
    for opp in OPPORTUNITIES:
        sig = need_signals(engine, opp, 50, key=str(opp.id), group="g", judged={}, product_keys=product_keys)
        expected = [product_keys[h.id] for h in engine.products_for(opp.id, k=50)]
        assert fuse(sig, engine.config.to_dict(), 50) == expected


def test_the_default_weights_are_always_a_candidate():
    sigs = [_signals("n", {"x": 3})]
    res = cross_validate(lambda _o: sigs, ["g"], grid=[DENSE], base=MatchConfig(), folds=1)
    assert res.grid[-1] == {"w_dense": 0.35, "w_lexical": 0.55, "w_structured": 0.1}
    assert len(res.grid) == 2

"""VectorIndex against numpy brute force, incremental updates and persistence."""

from __future__ import annotations

import numpy as np
import pytest

from matching import VectorIndex


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _brute(vecs, ids, queries, k):
    sims = queries @ vecs.T
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(sims, order, axis=1), ids[order]


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    vecs = _unit(rng, 3000, 32)
    ids = rng.permutation(100_000)[:3000].astype(np.int64)
    queries = _unit(rng, 50, 32)
    return vecs, ids, queries


def test_flat_equals_brute_force(data):
    vecs, ids, queries = data
    index = VectorIndex(32)
    index.add(ids, vecs)
    assert index.kind == "flat" and len(index) == 3000
    scores, got = index.search(queries, 10)
    want_scores, want_ids = _brute(vecs, ids, queries, 10)
    np.testing.assert_allclose(scores, want_scores, atol=1e-5)
    assert (got == want_ids).mean() > 0.99  # exact up to float ties


def test_hnsw_recall_against_brute_force(data):
    vecs, ids, queries = data
    index = VectorIndex(32, hnsw_threshold=1000)
    index.add(ids, vecs)
    assert index.kind == "hnsw"
    _, got = index.search(queries, 10)
    _, want = _brute(vecs, ids, queries, 10)
    recall = np.mean([len(set(g) & set(w)) / 10 for g, w in zip(got, want, strict=True)])
    assert recall >= 0.95


def test_structure_follows_threshold_both_ways(data):
    vecs, ids, _ = data
    index = VectorIndex(32, hnsw_threshold=100)
    index.add(ids[:99], vecs[:99])
    assert index.kind == "flat"
    index.add(ids[99:150], vecs[99:150])
    assert index.kind == "hnsw"
    index.remove(ids[60:150].tolist())
    assert index.kind == "flat" and len(index) == 60
    _, got = index.search(vecs[:1], 1)
    assert got[0, 0] == ids[0]


@pytest.mark.parametrize("threshold", [10_000, 500])
def test_allowed_ids_are_a_hard_constraint(data, threshold):
    vecs, ids, queries = data
    index = VectorIndex(32, hnsw_threshold=threshold)
    index.add(ids, vecs)
    allowed = set(ids[::97].tolist())  # 31 ids
    scores, got = index.search(queries[:5], 50, allowed_ids=allowed)
    for row in got:
        real = [i for i in row if i >= 0]
        assert set(real) <= allowed and len(real) == len(allowed)
    mask = np.isin(ids, list(allowed))
    want_scores, _ = _brute(vecs[mask], ids[mask], queries[:5], 50)
    np.testing.assert_allclose(scores[:, : len(allowed)], want_scores[:, : len(allowed)], atol=1e-5)


def test_large_allowed_set_on_hnsw_uses_the_graph(data):
    vecs, ids, queries = data
    index = VectorIndex(32, hnsw_threshold=500)
    index.add(ids, vecs)
    allowed = set(ids[:2500].tolist())
    _, got = index.search(queries[:5], 10, allowed_ids=allowed)
    assert all(set(row.tolist()) <= allowed for row in got)


def test_fewer_vectors_than_k_pads(data):
    vecs, ids, _ = data
    index = VectorIndex(32)
    index.add(ids[:3], vecs[:3])
    scores, got = index.search(vecs[:1], 5)
    assert got[0, 3:].tolist() == [-1, -1] and np.isneginf(scores[0, 3:]).all()
    assert VectorIndex(32).search(vecs[:1], 5)[1].tolist() == [[-1] * 5]


@pytest.mark.parametrize("threshold", [10_000, 50])
def test_upsert_and_remove(data, threshold):
    vecs, ids, _ = data
    index = VectorIndex(32, hnsw_threshold=threshold)
    index.add(ids[:200], vecs[:200])
    with pytest.raises(KeyError):
        index.add(ids[:1], vecs[:1])
    index.upsert([int(ids[0])], vecs[300:301])
    np.testing.assert_allclose(index.get(int(ids[0])), vecs[300])
    _, got = index.search(vecs[300:301], 1)
    assert got[0, 0] == ids[0]
    assert index.remove([int(ids[1]), -5]) == 1
    assert int(ids[1]) not in index and len(index) == 199
    _, got = index.search(vecs[1:2], 199)
    assert ids[1] not in got[0]


@pytest.mark.parametrize("threshold", [10_000, 500])
def test_save_load_round_trip(data, tmp_path, threshold):
    vecs, ids, queries = data
    index = VectorIndex(32, hnsw_threshold=threshold)
    index.add(ids, vecs)
    index.remove(ids[:10].tolist())
    index.save(tmp_path)
    loaded = VectorIndex.load(tmp_path)
    assert loaded.kind == index.kind and len(loaded) == len(index)
    s1, i1 = index.search(queries, 10)
    s2, i2 = loaded.search(queries, 10)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_allclose(s1, s2)
    assert not set(ids[:10].tolist()) & set(i2.ravel().tolist())

"""Fine-tuning the encoder (matching/finetune.py): the held-out split, the batches, a real training
run on a tiny random BERT (loadable folder, frozen word embedding), the evaluation and the switch
rule."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from matching import finetune as ft
from matching.encoders import Encoder
from tests.matching.conftest import OPPORTUNITIES, PRODUCTS

pytestmark = pytest.mark.no_app


def synthetic_pairs(n_needs: int = 6, per_need: int = 2, negatives: bool = True) -> list[ft.TrainingPair]:
    """Need i is answered by products i and i+1 (mod the products), and product i+3 is its hard
    negative; texts come from the fixture corpus."""
    pairs = []
    for i in range(n_needs):
        need = OPPORTUNITIES[i % len(OPPORTUNITIES)]
        for j in range(per_need):
            product = PRODUCTS[(i + j) % len(PRODUCTS)]
            negative = PRODUCTS[(i + 3) % len(PRODUCTS)].text if negatives and j == 0 else None
            pairs.append(ft.TrainingPair(i, product.id, need.title + need.text, product.title + product.text,
                                         negative))
    return pairs


# ---------------------------------------------------------------- the split


def test_the_held_out_needs_are_never_training_needs():
    needs = list(range(1, 101))
    train, held = ft.split_needs(needs)
    assert not train & held
    assert train | held == set(needs)
    assert 10 <= len(held) <= 30  # about a fifth


def test_a_held_out_need_stays_held_out_when_needs_arrive():
    _, held_before = ft.split_needs(list(range(1, 51)))
    train_after, held_after = ft.split_needs(list(range(1, 201)))
    assert held_before <= held_after
    assert not held_before & train_after


def test_each_side_gets_a_need_and_one_need_is_refused():
    train, held = ft.split_needs([7, 8])
    assert len(train) == 1 and len(held) == 1
    with pytest.raises(ft.NotEnoughPairs):
        ft.split_needs([7])


# ---------------------------------------------------------------- batches


def test_a_batch_never_holds_a_need_or_a_product_twice_nor_mixes_pairs_and_triplets():
    pairs = synthetic_pairs(n_needs=8, per_need=3)
    batches = ft.batches(pairs, batch_size=4, seed=1)
    for batch in batches:
        assert len({p.need_id for p in batch}) == len(batch)
        assert len({p.product_id for p in batch}) == len(batch)
        assert len({p.negative is None for p in batch}) == 1
        assert len(batch) <= 4
    seen = [p for b in batches for p in b]
    assert len(seen) == len(set(seen))
    dropped = set(pairs) - set(seen)
    assert all(p.negative is None for p in dropped)  # only lone pairs with nothing to contrast


def test_batches_are_deterministic_for_a_seed():
    pairs = synthetic_pairs()
    assert ft.batches(pairs, 4, seed=3) == ft.batches(pairs, 4, seed=3)


# ---------------------------------------------------------------- training


@pytest.fixture(scope="module")
def trained(tiny_st_model, tmp_path_factory):
    dest = tmp_path_factory.mktemp("ft") / "tiny-ft-1"
    steps: list[tuple[int, int]] = []
    result = ft.fine_tune(
        tiny_st_model, synthetic_pairs(), dest, anchor_prompt="passage: ", positive_prompt="passage: ",
        batch_size=4, learning_rate=1e-3, max_seq_length=32, threads=1,
        progress=lambda done, total: steps.append((done, total)),
    )
    return result, dest, steps


def _state(folder):
    from safetensors.numpy import load_file

    files = sorted(folder.glob("**/model.safetensors"))
    assert files, f"no weights in {folder}"
    return load_file(str(files[0]))


def test_training_writes_a_loadable_folder_with_its_marker(trained, offline_env):
    result, dest, steps = trained
    assert dest.is_dir() and not list(dest.parent.glob(".*tmp-*"))
    assert steps and steps[-1][0] == steps[-1][1] == result.steps
    marker = json.loads((dest / ft.MARKER_FILE).read_text(encoding="utf-8"))
    assert marker["pairs"] == len(synthetic_pairs()) and marker["anchor_prompt"] == "passage: "
    encoder = ft.FineTunedEncoder(dest, base_name="e5-small", query_prompt="query: ",
                                  document_prompt="passage: ")
    vectors = encoder.encode(["智慧停车诱导", "居家养老"])
    assert vectors.shape == (2, encoder.dim)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert encoder.name == "e5-small+ft:tiny-ft-1"  # keeps the base family's fusion weights
    assert encoder.fingerprint.startswith("st:")


def test_only_the_word_embedding_is_frozen(trained, tiny_st_model):
    result, dest, _ = trained
    before, after = _state(tiny_st_model), _state(dest)
    word = next(k for k in before if k.endswith("word_embeddings.weight"))
    assert result.frozen_parameters == before[word].size
    assert np.array_equal(before[word], after[word])
    changed = [k for k in before if k != word and not np.array_equal(before[k], after[k])]
    assert any("encoder.layer" in k for k in changed)
    assert result.trainable_parameters == sum(v.size for k, v in before.items() if k != word)


def test_the_saved_folder_keeps_the_base_sequence_length(trained, tiny_st_model):
    from sentence_transformers import SentenceTransformer

    result, dest, _ = trained
    assert result.max_seq_length == 32  # trained on shorter texts,
    assert SentenceTransformer(str(dest), device="cpu").max_seq_length == 128  # saved with the base's own


def test_freezing_a_model_without_word_embeddings_is_refused():
    torch = pytest.importorskip("torch")
    with pytest.raises(ValueError):
        ft.freeze_word_embeddings(torch.nn.Linear(2, 2))


def test_too_few_pairs_to_make_a_batch_are_refused(tiny_st_model, tmp_path):
    one = synthetic_pairs(n_needs=1, per_need=1, negatives=False)
    with pytest.raises(ft.NotEnoughPairs):
        ft.fine_tune(tiny_st_model, one, tmp_path / "never")
    assert not (tmp_path / "never").exists()


def test_an_existing_folder_is_never_overwritten(tiny_st_model, tmp_path):
    (tmp_path / "taken").mkdir()
    with pytest.raises(FileExistsError):
        ft.fine_tune(tiny_st_model, synthetic_pairs(), tmp_path / "taken")


# ---------------------------------------------------------------- evaluation and the switch rule


class TableEncoder(Encoder):
    """Vectors from a fixed table (text → vector), for exact rankings."""

    name = "table"
    is_fitted = True
    fingerprint = "table"

    def __init__(self, table: dict[str, list[float]]) -> None:
        self.table = table
        self.kinds: list[str] = []

    @property
    def dim(self) -> int:
        return len(next(iter(self.table.values())))

    def fit(self, texts):
        return self

    def encode(self, texts, kind="document"):
        self.kinds.append(kind)
        rows = np.array([self.table[t] for t in texts], dtype=np.float32)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)

    def save(self, directory):
        Path(directory).mkdir(parents=True, exist_ok=True)
        (Path(directory) / "table.json").write_text(json.dumps(self.table), encoding="utf-8")


def test_dense_ndcg_ranks_every_product_by_cosine_with_the_needs_document_vector():
    encoder = TableEncoder({"need": [1, 0], "good": [0.9, 0.1], "bad": [0.1, 0.9], "other": [0, 1]})
    needs = {1: "need"}
    products = {10: "good", 11: "bad", 12: "other"}
    assert ft.dense_ndcg(encoder, needs, products, {1: {10: 3, 11: 0}}) == {1: 1.0}
    assert encoder.kinds == ["document", "document"]  # what the engine ranks a need's products with
    worse = ft.dense_ndcg(encoder, needs, products, {1: {12: 2}})[1]
    assert worse is not None and worse < 1.0


def comparison(diff: float, lo: float, needs: int = 12) -> ft.Comparison:
    return ft.Comparison(reference=0.5, candidate=0.5 + diff, diff=diff, ci95=(lo, diff + 0.05), needs=needs)


@pytest.mark.parametrize(
    ("held", "guard", "switch"),
    [
        (comparison(0.05, 0.01), comparison(0.0, -0.01), True),
        (comparison(0.05, 0.01), None, True),
        (comparison(0.005, 0.001), None, False),  # below the margin
        (comparison(0.05, -0.02), None, False),  # not reliable
        (comparison(0.05, 0.01), comparison(-0.03, -0.05), False),  # the dev set dropped
        (comparison(0.0, 0.0, needs=0), None, False),
    ],
)
def test_the_switch_rule(held, guard, switch):
    decision = ft.decide(held, guard)
    assert decision.switch_on is switch
    assert decision.reason and ("启用微调模型" in decision.reason) is switch


def test_compare_pairs_the_needs_defined_in_both():
    result = ft.compare({1: 0.5, 2: 0.4, 3: None}, {1: 0.7, 2: 0.6, 3: 0.9})
    assert result.needs == 2
    assert result.diff == pytest.approx(0.2)
    assert result.reference == pytest.approx(0.45) and result.candidate == pytest.approx(0.65)

"""The ONNX Runtime copy of a BERT sentence encoder agrees with torch; length-bucketed batches.

A tiny random BERT (two layers, four heads, weights larger than the usual initialisation so
that attention really mixes tokens) is saved as a sentence-transformers folder, exported with
``matching.models.export_onnx`` and run by :class:`matching.encoders.OnnxBertRuntime`.
"""

from __future__ import annotations

import numpy as np
import pytest

from matching.encoders import OnnxBertRuntime, length_buckets
from tests.matching.conftest import OPPORTUNITIES, PRODUCTS

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

TEXTS = [
    "智慧停车",
    "居家养老跌倒监测终端：毫米波雷达非接触监测老年人跌倒、离床和呼吸心率，异常时一键呼叫家属。",
    "水库",
    "工业互联网设备预测性维护系统，采集机床和产线振动、电流数据，构建设备健康模型。",
    "",
    "ai视觉质检 5g",
]


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """(folder, exported onnx path) of a random 2-layer BERT with mean pooling + Normalize."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    from matching.models import export_onnx

    root = tmp_path_factory.mktemp("tiny_bert")
    bert_dir = root / "bert"
    bert_dir.mkdir()
    chars = sorted(set("".join(i.title + i.text for i in PRODUCTS + OPPORTUNITIES)))
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *[c for c in chars if c.strip()]]
    vocab = list(dict.fromkeys([*vocab, *"abcdefghijklmnopqrstuvwxyz0123456789"]))
    (bert_dir / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    config = transformers.BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        initializer_range=0.3,
        layer_norm_eps=1e-12,
    )
    torch.manual_seed(7)
    transformers.BertModel(config).save_pretrained(bert_dir)
    transformers.BertTokenizer(str(bert_dir / "vocab.txt")).save_pretrained(bert_dir)
    transformer = Transformer(str(bert_dir), max_seq_length=24)  # the long texts get truncated
    modules = [transformer, Pooling(transformer.get_embedding_dimension(), "mean"), Normalize()]
    folder = root / "st"
    SentenceTransformer(modules=modules, device="cpu").save(str(folder))
    return folder, export_onnx(folder, folder / "onnx")


@pytest.fixture(scope="module")
def torch_vectors(tiny_bert):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(tiny_bert[0]), device="cpu")
    return model.encode(TEXTS, batch_size=len(TEXTS), normalize_embeddings=True)


def _normalised(mat: np.ndarray) -> np.ndarray:
    return mat / np.linalg.norm(mat, axis=1, keepdims=True)


def test_the_exported_runtime_agrees_with_torch_within_cosine_0_999(tiny_bert, torch_vectors):
    runtime = OnnxBertRuntime(*tiny_bert, batch_size=len(TEXTS), threads=1)
    ours = _normalised(runtime.embed(TEXTS))
    cosines = np.sum(ours * torch_vectors, axis=1)
    assert cosines.min() >= 0.999, cosines
    # Not trivially so: the texts are far apart from each other in this random model.
    assert (torch_vectors @ torch_vectors.T)[~np.eye(len(TEXTS), dtype=bool)].min() < 0.99


def test_the_runtime_truncates_where_sentence_transformers_does(tiny_bert):
    runtime = OnnxBertRuntime(*tiny_bert)
    assert runtime.max_seq_length == 24
    assert max(len(ids) for ids in runtime.token_ids(TEXTS)) == 24


def test_length_bucketed_batches_return_vectors_in_input_order(tiny_bert, torch_vectors):
    runtime = OnnxBertRuntime(*tiny_bert, batch_size=2, threads=1)
    one_by_one = np.vstack([runtime.embed([text]) for text in TEXTS])
    bucketed = runtime.embed(TEXTS)
    np.testing.assert_allclose(bucketed, one_by_one, atol=1e-5)
    np.testing.assert_allclose(_normalised(bucketed), torch_vectors, atol=1e-4)


def test_length_buckets_group_similar_lengths_longest_first():
    lengths = [5, 40, 7, 39, 6, 41, 8]
    batches = length_buckets(lengths, 3)
    assert batches == [[5, 1, 3], [6, 2, 4], [0]]
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    assert length_buckets([], 4) == []
    assert length_buckets([3, 2], 0) == [[0], [1]]  # a batch holds at least one text

"""Encoders: offline determinism and fingerprints, persistence, sentence-transformers, fallback."""

from __future__ import annotations

import logging
import subprocess
import sys

import numpy as np
import pytest

from matching import Encoder, build_encoder, document_text, load_encoder
from matching.encoders import OfflineEncoder, SentenceTransformerEncoder
from tests.matching.conftest import OPPORTUNITIES, PRODUCTS

CORPUS = [document_text(i) for i in PRODUCTS + OPPORTUNITIES]


def test_default_spec_builds_the_offline_encoder():
    for spec in (None, "", "default"):
        enc = build_encoder(spec)
        assert isinstance(enc, OfflineEncoder) and enc.fallback_reason is None
        assert not enc.is_fitted and enc.name == "offline-tfidf-svd-256"


def test_offline_encoder_is_deterministic():
    a = build_encoder(None).fit(CORPUS)
    b = build_encoder(None).fit(CORPUS)
    assert a.fingerprint == b.fingerprint
    np.testing.assert_array_equal(a.encode(CORPUS[:5]), b.encode(CORPUS[:5]))


def test_offline_vectors_are_normalised_float32(fitted_encoder):
    vecs = fitted_encoder.encode(CORPUS + ["", "完全无关的内容"], kind="query")
    assert vecs.dtype == np.float32 and vecs.shape == (len(CORPUS) + 2, fitted_encoder.dim)
    norms = np.linalg.norm(vecs, axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-5)


def test_offline_dim_is_capped_by_corpus(fitted_encoder):
    assert fitted_encoder.dim == len(CORPUS) - 1


def test_fingerprint_changes_when_refitted_on_another_corpus(fitted_encoder):
    other = build_encoder(None).fit(CORPUS[:-3] + ["另一个语料：智慧农业病虫害识别"] * 3)
    assert other.fingerprint != fitted_encoder.fingerprint
    assert build_encoder("offline:32").fit(CORPUS).fingerprint != fitted_encoder.fingerprint


def test_offline_encoder_ranks_related_text_higher(fitted_encoder):
    q = fitted_encoder.encode(["找车位难，停车诱导"], kind="query")[0]
    docs = fitted_encoder.encode([document_text(PRODUCTS[0]), document_text(PRODUCTS[6])])
    assert q @ docs[0] > q @ docs[1]


def test_offline_encoder_save_load_round_trip(fitted_encoder, tmp_path):
    fitted_encoder.save(tmp_path)
    loaded = load_encoder(tmp_path)
    assert loaded.fingerprint == fitted_encoder.fingerprint and loaded.dim == fitted_encoder.dim
    np.testing.assert_allclose(loaded.encode(CORPUS[:4]), fitted_encoder.encode(CORPUS[:4]), atol=1e-6)


def test_unfitted_offline_encoder_refuses_to_encode():
    with pytest.raises(RuntimeError):
        build_encoder(None).encode(["x"])


def test_tiny_corpus_still_works():
    enc = build_encoder(None).fit(["智慧停车"])
    vec = enc.encode(["智慧停车", "水库"])
    assert vec.shape[0] == 2 and np.isfinite(vec).all()


def test_missing_model_path_falls_back_with_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="matching"):
        enc = build_encoder("st:/nonexistent/models/bge-small-zh")
    assert isinstance(enc, OfflineEncoder)
    assert enc.fallback_reason and "does not exist" in enc.fallback_reason
    assert any(r.levelno == logging.WARNING and "falling back" in r.getMessage() for r in caplog.records)


def test_sentence_transformer_encoder_loads_local_folder(tiny_st_model, offline_env):
    enc = build_encoder(f"st:{tiny_st_model}")
    assert isinstance(enc, SentenceTransformerEncoder) and isinstance(enc, Encoder)
    assert enc.fallback_reason is None and enc.is_fitted and enc.dim == 32
    assert enc.name == f"st:{tiny_st_model}"
    vecs = enc.encode(["智慧停车诱导", "居家养老跌倒监测", "水库"], kind="document")
    assert vecs.shape == (3, 32) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert enc.fit(["ignored"]) is enc


def test_sentence_transformer_prompts_and_fingerprint(tiny_st_model, offline_env, tmp_path):
    plain = build_encoder(f"st:{tiny_st_model}")
    prompted = build_encoder(f"st:{tiny_st_model}", query_prompt="为这个句子生成表示以用于检索相关文章：")
    assert plain.fingerprint != prompted.fingerprint
    q1 = plain.encode(["找车位"], kind="query")
    q2 = prompted.encode(["找车位"], kind="query")
    assert not np.allclose(q1, q2)
    np.testing.assert_allclose(prompted.encode(["找车位"], kind="document"), q1, atol=1e-6)
    prompted.save(tmp_path)
    reloaded = load_encoder(tmp_path)
    assert reloaded.fingerprint == prompted.fingerprint


def test_importing_matching_is_light():
    heavy = "('torch', 'sentence_transformers', 'transformers', 'sklearn', 'flask')"
    code = f"import sys, matching; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

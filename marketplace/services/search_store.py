"""The on-disk format of the portal's keyword index: one folder per side, numpy arrays only.

A version folder (see :mod:`marketplace.services.index_files`) holds ``opportunity/`` and
``product/``; each side folder holds, for its ``N`` published entries in ascending id order:

=====================  ======================================================================
``ids.npy``            int64 ``[N]``: entry ids, ascending (a position is an entry)
``stamps.npy``         int64 ``[N]``: ``updated_at`` in microseconds (the delta compares it)
``vocab_hash.npy``     uint64 ``[V]``: 64-bit hash of every token, ascending (term id = position)
``vocab_offsets.npy``  int64 ``[V+1]`` and ``vocab_blob.npy`` uint8: the tokens' UTF-8 bytes,
                       in term-id order (a hash hit is confirmed against them)
``idf.npy``            float32 ``[V]``: BM25 idf of every term
``post_indptr.npy``    int64 ``[V+1]``: postings of term ``t`` are ``[indptr[t], indptr[t+1])``
``post_docs.npy``      int32 ``[nnz]``: positions of the entries containing the term, ascending
``post_weights.npy``   float32 ``[nnz]``: the term's precomputed BM25 contribution there
``col_<name>.npy``     int32 ``[N]``: one filter value per entry as a code (``-1``: none) for
                       ``batch_id`` (the id itself), ``city``, ``county``, ``tier``, ``maturity``;
                       ``deadline`` as days since 1970-01-01 (``NO_DEADLINE``: none)
``set_<name>_*.npy``   CSR of codes per entry for ``area``, ``category`` and ``tag``
                       (``_indptr`` int64 ``[N+1]``, ``_codes`` int32)
``side.json``          ``N``, average document length, ``k1``/``b`` and each coded column's values
=====================  ======================================================================

Every array is opened with ``np.load(mmap_mode="r")``: the pages live in the operating system's
cache, shared by every worker of the host, and a worker's private memory holds only the small
value lists of ``side.json``. Nothing here knows Flask or the database.

The BM25 weights reproduce ``bm25s``'s Lucene variant exactly as :class:`matching.LexicalIndex`
computes them (k1 = 1.2, b = 0.75, float32; an empty document counts as one token), so that
the files rank exactly as the former in-memory index did.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np

K1 = 1.2
B = 0.75
FORMAT = 1
#: ``col_deadline`` of an entry without a deadline (never closes).
NO_DEADLINE = np.iinfo(np.int32).max
_EPOCH = date(1970, 1, 1)
#: Columns compared with one value (code) per entry.
SCALAR_COLUMNS = ("batch_id", "city", "county", "tier", "maturity")
#: Columns holding a set of values per entry (any of them may match).
SET_COLUMNS = ("area", "category", "tag")
#: Coded columns whose values are strings listed in ``side.json`` (``batch_id`` is its own code).
_CODED = ("city", "county", "tier", "maturity", "area", "category", "tag")


@dataclass(frozen=True, slots=True)
class EntryMeta:
    """What the filters look at, per indexed entry."""

    batch_id: int | None
    areas: frozenset[str]
    categories: frozenset[str]
    city: str
    county: str | None
    tier: str | None = None
    maturity: str | None = None
    tags: frozenset[str] = frozenset()
    deadline: date | None = None

    def values(self, name: str) -> frozenset[Any]:
        """The values of filter column ``name`` (empty: none)."""
        if name in SET_COLUMNS:
            return {"area": self.areas, "category": self.categories, "tag": self.tags}[name]
        value = getattr(self, name)
        return frozenset() if value is None else frozenset((value,))


@dataclass
class Doc:
    """One published entry as the index sees it: id, text, filter metadata, ``updated_at``."""

    id: int
    text: str
    meta: EntryMeta
    stamp: datetime


def stamp_micros(stamp: datetime | None) -> int:
    """``updated_at`` as integer microseconds (naive UTC as stored), 0 for None."""
    if stamp is None:
        return 0
    delta = stamp.replace(tzinfo=None) - datetime(1970, 1, 1)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def day_number(day: date) -> int:
    """Days since 1970-01-01."""
    return (day - _EPOCH).days


def token_hash(token: str) -> int:
    """The 64-bit hash a token is looked up by."""
    return int.from_bytes(hashlib.blake2b(token.encode("utf-8"), digest_size=8).digest(), "little")


def lucene_idf(df: int, n: int) -> float:
    """bm25s's Lucene idf."""
    return math.log(1 + (n - df + 0.5) / (df + 0.5))


def bm25_weights(idf: np.ndarray, tf: np.ndarray, doc_len: np.ndarray, avgdl: float) -> np.ndarray:
    """Per-(document, term) BM25 contributions in float32, computed with the very operations
    (and dtypes) of ``bm25s.scoring``: ``idf_f32 · tf / (k1·(1 − b + b·len/avgdl) + tf)``."""
    avg = np.float64(avgdl)
    denominator = K1 * ((1 - B) + B * doc_len.astype(np.float64) / avg) + tf.astype(np.float32)
    return (idf.astype(np.float32) * (tf.astype(np.float32) / denominator)).astype(np.float32)


# -------------------------------------------------------------------- writing


def write_side(folder: Path, docs: Sequence[Doc], token_lists: Sequence[Sequence[str]]) -> dict[str, Any]:
    """Write one side's arrays for ``docs`` (ascending ids) into ``folder``; returns side.json."""
    folder.mkdir(parents=True, exist_ok=True)
    n = len(docs)
    ids = np.fromiter((d.id for d in docs), dtype=np.int64, count=n)
    if n > 1 and not np.all(ids[1:] > ids[:-1]):
        raise ValueError("documents must come in ascending id order")
    stamps = np.fromiter((stamp_micros(d.stamp) for d in docs), dtype=np.int64, count=n)

    # Token ids in order of first appearance, then remapped to the sorted-hash order.
    vocab: dict[str, int] = {}
    lengths = np.zeros(n, dtype=np.int64)
    flat: list[int] = []
    for position, tokens in enumerate(token_lists):
        lengths[position] = len(tokens)
        for token in tokens:
            tid = vocab.get(token)
            if tid is None:
                tid = vocab[token] = len(vocab)
            flat.append(tid)
    tokens_by_id = list(vocab)
    hashes = np.fromiter((token_hash(t) for t in tokens_by_id), dtype=np.uint64, count=len(tokens_by_id))
    order = np.argsort(hashes, kind="stable")
    if len(order) > 1 and np.any(hashes[order][1:] == hashes[order][:-1]):
        raise ValueError("64-bit token hash collision; cannot build")  # astronomically unlikely
    remap = np.empty(len(order), dtype=np.int64)
    remap[order] = np.arange(len(order))
    v = len(order)

    term_of = remap[np.asarray(flat, dtype=np.int64)] if flat else np.zeros(0, dtype=np.int64)
    doc_of = np.repeat(np.arange(n, dtype=np.int64), lengths)
    pairs, tf = np.unique(term_of * max(n, 1) + doc_of, return_counts=True)
    post_terms, post_docs = pairs // max(n, 1), pairs % max(n, 1)
    df = np.bincount(post_terms, minlength=v)
    doc_len = np.maximum(lengths, 1)  # bm25s indexes an empty document as one "" token
    avgdl = float(doc_len.mean()) if n else 1.0
    idf = np.zeros(v, dtype=np.float32)
    for term, count in enumerate(df.tolist()):
        if count:
            idf[term] = lucene_idf(count, n)
    weights = bm25_weights(idf[post_terms], tf, doc_len[post_docs], avgdl)
    indptr = np.zeros(v + 1, dtype=np.int64)
    np.cumsum(df, out=indptr[1:])

    encoded = [tokens_by_id[i].encode("utf-8") for i in order.tolist()]
    offsets = np.zeros(v + 1, dtype=np.int64)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    blob = np.frombuffer(b"".join(encoded), dtype=np.uint8)

    arrays: dict[str, np.ndarray] = {
        "ids": ids, "stamps": stamps, "vocab_hash": hashes[order], "vocab_offsets": offsets,
        "vocab_blob": blob, "idf": idf, "post_indptr": indptr,
        "post_docs": post_docs.astype(np.int32), "post_weights": weights,
    }
    values: dict[str, list[Any]] = {}
    for name in _CODED:
        values[name] = sorted({v for d in docs for v in d.meta.values(name)})
    codes = {name: {value: code for code, value in enumerate(values[name])} for name in _CODED}
    arrays["col_batch_id"] = np.fromiter(
        (-1 if d.meta.batch_id is None else d.meta.batch_id for d in docs), dtype=np.int32, count=n)
    for name in ("city", "county", "tier", "maturity"):
        arrays[f"col_{name}"] = np.fromiter(
            (codes[name].get(getattr(d.meta, name), -1) for d in docs), dtype=np.int32, count=n)
    arrays["col_deadline"] = np.fromiter(
        (NO_DEADLINE if d.meta.deadline is None else day_number(d.meta.deadline) for d in docs),
        dtype=np.int32, count=n)
    for name in SET_COLUMNS:
        per_doc = [sorted(codes[name][value] for value in d.meta.values(name)) for d in docs]
        set_indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum([len(c) for c in per_doc], out=set_indptr[1:])
        arrays[f"set_{name}_indptr"] = set_indptr
        arrays[f"set_{name}_codes"] = np.asarray([c for cs in per_doc for c in cs], dtype=np.int32)
    for name, array in arrays.items():
        np.save(folder / f"{name}.npy", array, allow_pickle=False)
    info = {"format": FORMAT, "n": n, "avgdl": avgdl, "k1": K1, "b": B, "terms": v,
            "postings": int(len(post_docs)), "values": values}
    (folder / "side.json").write_text(json.dumps(info, ensure_ascii=False), encoding="utf-8")
    return info


# -------------------------------------------------------------------- reading


@dataclass
class SideFiles:
    """One side of a published version, memory-mapped read-only.

    Holds numpy memmaps and the value lists of ``side.json``; nothing per entry in Python.
    """

    path: Path
    n: int
    avgdl: float
    arrays: dict[str, np.ndarray]
    #: Filter value → code, per coded column (a handful to a few thousand strings).
    codes: dict[str, dict[Any, int]] = field(default_factory=dict)

    @classmethod
    def open(cls, folder: Path) -> SideFiles:
        info = json.loads((folder / "side.json").read_text(encoding="utf-8"))
        if info.get("format") != FORMAT:
            raise ValueError(f"unsupported keyword index format in {folder}")
        arrays = {
            p.stem: np.load(p, mmap_mode="r", allow_pickle=False) for p in sorted(folder.glob("*.npy"))
        }
        codes = {name: {value: code for code, value in enumerate(info["values"][name])} for name in _CODED}
        return cls(path=folder, n=int(info["n"]), avgdl=float(info["avgdl"]), arrays=arrays, codes=codes)

    @property
    def ids(self) -> np.ndarray:
        return self.arrays["ids"]

    @property
    def stamps(self) -> np.ndarray:
        return self.arrays["stamps"]

    def term_id(self, token: str) -> int | None:
        """The token's term id, or None when no entry of this side contains it."""
        if not token:
            return None
        hashes = self.arrays["vocab_hash"]
        h = np.uint64(token_hash(token))
        i = int(np.searchsorted(hashes, h))
        if i >= len(hashes) or hashes[i] != h:
            return None
        offsets = self.arrays["vocab_offsets"]
        stored = self.arrays["vocab_blob"][int(offsets[i]) : int(offsets[i + 1])].tobytes()
        return i if stored == token.encode("utf-8") else None

    def postings(self, token: str) -> tuple[np.ndarray, np.ndarray]:
        """Positions of the entries containing ``token`` (ascending) and its BM25 weights there."""
        tid = self.term_id(token)
        if tid is None:
            return np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.float32)
        indptr = self.arrays["post_indptr"]
        start, end = int(indptr[tid]), int(indptr[tid + 1])
        return self.arrays["post_docs"][start:end], self.arrays["post_weights"][start:end]

    def idf(self, token: str) -> float | None:
        """The token's idf on this side, or None when absent."""
        tid = self.term_id(token)
        return None if tid is None else float(self.arrays["idf"][tid])

    def positions_of(self, ids: Iterable[int]) -> tuple[np.ndarray, np.ndarray]:
        """``(found, positions)`` of ``ids``: which are indexed here, and where."""
        wanted = np.fromiter(ids, dtype=np.int64)
        if not self.n or not len(wanted):
            return np.zeros(len(wanted), dtype=bool), np.zeros(len(wanted), dtype=np.int64)
        positions = np.minimum(np.searchsorted(self.ids, wanted), self.n - 1)
        return self.ids[positions] == wanted, positions

    def mask(self, name: str, value: Any) -> np.ndarray:
        """Which entries satisfy one filter (``[N]`` booleans); compute once, cache by caller."""
        if name == "batch_id":
            return np.asarray(self.arrays["col_batch_id"] == int(value))
        code = self.codes[name].get(value)
        if code is None:
            return np.zeros(self.n, dtype=bool)
        if name in SET_COLUMNS:
            indptr = self.arrays[f"set_{name}_indptr"]
            rows = np.repeat(np.arange(self.n), np.diff(indptr))
            out = np.zeros(self.n, dtype=bool)
            out[rows[self.arrays[f"set_{name}_codes"] == code]] = True
            return out
        return np.asarray(self.arrays[f"col_{name}"] == code)

    def open_mask(self, today: date) -> np.ndarray:
        """Which entries are open on ``today`` (no deadline, or a deadline not before it)."""
        return np.asarray(self.arrays["col_deadline"] >= day_number(today))

"""Inner-product vector index over L2-normalised vectors (cosine), with integer ids.

Structure:

* below ``hnsw_threshold`` vectors: exact search, ``faiss.IndexIDMap2(faiss.IndexFlatIP)``;
* at or above it: ``faiss.IndexHNSWFlat(dim, hnsw_m, METRIC_INNER_PRODUCT)``. HNSW cannot delete,
  so its internal labels map to ids through an array and removed or replaced labels become
  tombstones that searches exclude with an ``IDSelector``; the graph is rebuilt when tombstones
  exceed a quarter of it. The structure is rebuilt whenever the size crosses the threshold.

:class:`FrozenVectorIndex` opens what :meth:`VectorIndex.save` wrote, read-only: the vector store
as ``np.load(mmap_mode="r")`` and the FAISS index with ``IO_FLAG_MMAP_IFC`` (the stored vectors are
mapped, not copied), so processes that open the same folder share the pages. It never changes;
a search can exclude ids (replaced or removed since) with an ``IDSelector``.

Next to FAISS the index keeps its own id → row vector store (a growing float32 matrix). It is
the source of truth for ``save``/``get`` and for filtered search: when ``allowed_ids`` is
small relative to the index, exact scores are computed with numpy on that subset, so filters
are hard constraints and a search never returns fewer hits than exist.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["VectorIndex", "FrozenVectorIndex"]

_META_FILE = "vector_index.json"


def _faiss() -> Any:
    import faiss

    return faiss

def _exact_top_k(
    queries: np.ndarray, vecs: np.ndarray, rows: np.ndarray, sub_ids: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` of ``queries`` by inner product among the given ``rows`` of ``vecs`` (ids
    ``sub_ids``); ties by id; rows padded with -inf / -1."""
    nq = len(queries)
    scores = np.full((nq, k), -np.inf, dtype=np.float32)
    out_ids = np.full((nq, k), -1, dtype=np.int64)
    if not len(rows):
        return scores, out_ids
    sims = queries @ vecs[rows].T  # (nq, m)
    take = min(k, len(rows))
    for qi in range(nq):
        row = sims[qi]
        top = np.argpartition(-row, take - 1)[:take] if take < len(row) else np.arange(len(row))
        top = top[np.lexsort((sub_ids[top], -row[top]))]
        scores[qi, :take] = row[top]
        out_ids[qi, :take] = sub_ids[top]
    return scores, out_ids


class VectorIndex:
    """FAISS inner-product index with upsert/remove and filter-aware search."""

    def __init__(
        self,
        dim: int,
        hnsw_threshold: int = 20_000,
        hnsw_m: int = 32,
        ef_construction: int = 80,
        ef_search: int = 128,
        subset_ratio: float = 0.25,
    ) -> None:
        if dim <= 0:
            raise ValueError("dim must be positive")
        self.dim = int(dim)
        self.hnsw_threshold = int(hnsw_threshold)
        self.hnsw_m = int(hnsw_m)
        self.ef_construction = int(ef_construction)
        self.ef_search = int(ef_search)
        #: ``allowed_ids`` no larger than this fraction of the index are scored exactly with numpy.
        self.subset_ratio = float(subset_ratio)
        self._vecs = np.zeros((0, self.dim), dtype=np.float32)
        self._ids = np.zeros(0, dtype=np.int64)
        self._size = 0
        self._row: dict[int, int] = {}
        self._index: Any = None
        self._kind = "flat"
        # HNSW bookkeeping
        self._label_ids = np.zeros(0, dtype=np.int64)
        self._label_of: dict[int, int] = {}
        self._dead: set[int] = set()
        self._new_structure()

    # ---------------------------------------------------------------- properties

    @property
    def kind(self) -> str:
        """``"flat"`` (exact) or ``"hnsw"``."""
        return self._kind

    def __len__(self) -> int:
        return self._size

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._row

    def ids(self) -> np.ndarray:
        """All ids, in store order."""
        return self._ids[: self._size].copy()

    def get(self, item_id: int) -> np.ndarray | None:
        """The stored vector of ``item_id`` (a copy), or ``None``."""
        row = self._row.get(int(item_id))
        return None if row is None else self._vecs[row].copy()

    # ---------------------------------------------------------------- structure

    def _new_structure(self) -> None:
        faiss = _faiss()
        self._dead = set()
        self._label_of = {}
        self._label_ids = np.zeros(0, dtype=np.int64)
        if self._size >= self.hnsw_threshold:
            index = faiss.IndexHNSWFlat(self.dim, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = self.ef_construction
            index.hnsw.efSearch = self.ef_search
            self._kind = "hnsw"
            self._index = index
            if self._size:
                self._hnsw_add(self._ids[: self._size], self._vecs[: self._size])
        else:
            self._kind = "flat"
            self._index = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))
            if self._size:
                self._index.add_with_ids(self._vecs[: self._size], self._ids[: self._size])

    def _maybe_restructure(self) -> None:
        want_hnsw = self._size >= self.hnsw_threshold
        if want_hnsw != (self._kind == "hnsw"):
            self._new_structure()
        elif self._kind == "hnsw" and len(self._dead) > max(1000, len(self._label_ids) // 4):
            self._new_structure()

    def _hnsw_add(self, ids: np.ndarray, vecs: np.ndarray) -> None:
        start = len(self._label_ids)
        self._index.add(vecs)
        self._label_ids = np.concatenate([self._label_ids, ids.astype(np.int64)])
        for offset, item_id in enumerate(ids.tolist()):
            self._label_of[item_id] = start + offset

    def _hnsw_kill(self, ids: Iterable[int]) -> None:
        for item_id in ids:
            label = self._label_of.pop(item_id, None)
            if label is not None:
                self._dead.add(label)

    # ---------------------------------------------------------------- store

    def _check(self, ids: Any, vecs: Any) -> tuple[np.ndarray, np.ndarray]:
        ids_arr = np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids, dtype=np.int64).ravel()
        vec_arr = np.ascontiguousarray(np.asarray(vecs, dtype=np.float32).reshape(-1, self.dim))
        if len(ids_arr) != len(vec_arr):
            raise ValueError(f"{len(ids_arr)} ids but {len(vec_arr)} vectors")
        if len(set(ids_arr.tolist())) != len(ids_arr):
            raise ValueError("duplicate ids in one call")
        return ids_arr, vec_arr

    def _store_append(self, ids: np.ndarray, vecs: np.ndarray) -> None:
        need = self._size + len(ids)
        if need > len(self._vecs):
            capacity = max(need, 2 * len(self._vecs), 64)
            grown = np.zeros((capacity, self.dim), dtype=np.float32)
            grown[: self._size] = self._vecs[: self._size]
            grown_ids = np.zeros(capacity, dtype=np.int64)
            grown_ids[: self._size] = self._ids[: self._size]
            self._vecs, self._ids = grown, grown_ids
        self._vecs[self._size : need] = vecs
        self._ids[self._size : need] = ids
        for offset, item_id in enumerate(ids.tolist()):
            self._row[item_id] = self._size + offset
        self._size = need

    def _store_remove(self, item_id: int) -> None:
        row = self._row.pop(item_id)
        last = self._size - 1
        if row != last:
            moved = int(self._ids[last])
            self._vecs[row] = self._vecs[last]
            self._ids[row] = moved
            self._row[moved] = row
        self._size = last

    # ---------------------------------------------------------------- mutation

    def add(self, ids: Iterable[int] | np.ndarray, vecs: np.ndarray) -> None:
        """Add new vectors. Raises ``KeyError`` if an id is already present (use ``upsert``)."""
        ids_arr, vec_arr = self._check(ids, vecs)
        present = [i for i in ids_arr.tolist() if i in self._row]
        if present:
            raise KeyError(f"ids already in the index: {present[:5]}")
        if not len(ids_arr):
            return
        self._store_append(ids_arr, vec_arr)
        crossing = (self._size >= self.hnsw_threshold) != (self._kind == "hnsw")
        if crossing:
            self._new_structure()
        elif self._kind == "hnsw":
            self._hnsw_add(ids_arr, vec_arr)
        else:
            self._index.add_with_ids(vec_arr, ids_arr)

    def upsert(self, ids: Iterable[int] | np.ndarray, vecs: np.ndarray) -> None:
        """Insert or replace vectors by id."""
        ids_arr, vec_arr = self._check(ids, vecs)
        existing = [i for i in ids_arr.tolist() if i in self._row]
        if existing:
            self.remove(existing)
        self.add(ids_arr, vec_arr)

    def remove(self, ids: Iterable[int]) -> int:
        """Remove ids (unknown ids are ignored). Returns how many were removed."""
        present = [int(i) for i in ids if int(i) in self._row]
        if not present:
            return 0
        for item_id in present:
            self._store_remove(item_id)
        if self._kind == "hnsw":
            self._hnsw_kill(present)
        else:
            self._index.remove_ids(np.asarray(present, dtype=np.int64))
        self._maybe_restructure()
        return len(present)

    # ---------------------------------------------------------------- search

    def scores_for(self, query: np.ndarray, ids: Iterable[int]) -> dict[int, float]:
        """Exact inner products of one query vector with the given ids (unknown ids skipped)."""
        q = np.asarray(query, dtype=np.float32).reshape(-1)
        known = [int(i) for i in ids if int(i) in self._row]
        if not known:
            return {}
        rows = np.fromiter((self._row[i] for i in known), dtype=np.int64, count=len(known))
        sims = self._vecs[rows] @ q
        return dict(zip(known, sims.tolist(), strict=True))

    def _exact_subset(self, queries: np.ndarray, allowed: list[int], k: int) -> tuple[np.ndarray, np.ndarray]:
        rows = np.fromiter((self._row[i] for i in allowed), dtype=np.int64, count=len(allowed))
        return _exact_top_k(queries, self._vecs, rows, self._ids[rows], k)

    def search(
        self,
        vecs: np.ndarray,
        k: int,
        allowed_ids: Iterable[int] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` by inner product for each query row.

        Returns ``(scores, ids)``, both shaped ``(n_queries, k)``, best first; missing slots have
        id ``-1`` and score ``-inf``. ``allowed_ids`` restricts the result to those ids (a hard
        constraint); ids not in the index are ignored.
        """
        queries = np.ascontiguousarray(np.asarray(vecs, dtype=np.float32).reshape(-1, self.dim))
        nq = len(queries)
        k = int(k)
        if k <= 0 or self._size == 0:
            return np.full((nq, max(k, 0)), -np.inf, dtype=np.float32), np.full(
                (nq, max(k, 0)), -1, dtype=np.int64
            )
        if allowed_ids is not None:
            allowed = [int(i) for i in allowed_ids if int(i) in self._row]
            if len(allowed) <= max(2048, self.subset_ratio * self._size) or self._kind == "flat":
                return self._exact_subset(queries, allowed, k)
            faiss = _faiss()
            labels = [self._label_of[i] for i in allowed]
            params = faiss.SearchParametersHNSW()
            params.efSearch = max(self.ef_search, k)
            params.sel = faiss.IDSelectorBatch(np.asarray(labels, dtype=np.int64))
            scores, out_ids = self._hnsw_search(queries, k, params)
            want = min(k, len(allowed))
            if (out_ids[:, :want] < 0).any():  # the graph ran dry under the filter
                return self._exact_subset(queries, allowed, k)
            return scores, out_ids
        if self._kind == "flat":
            scores, out_ids = self._index.search(queries, min(k, self._size))
            return self._pad(scores, out_ids, k)
        faiss = _faiss()
        params = faiss.SearchParametersHNSW()
        params.efSearch = max(self.ef_search, k)
        if self._dead:
            params.sel = faiss.IDSelectorNot(faiss.IDSelectorBatch(np.fromiter(self._dead, dtype=np.int64)))
        scores, out_ids = self._hnsw_search(queries, k, params)
        want = min(k, self._size)
        if (out_ids[:, :want] < 0).any():
            return self._exact_subset(queries, self._ids[: self._size].tolist(), k)
        return scores, out_ids

    def _hnsw_search(self, queries: np.ndarray, k: int, params: Any) -> tuple[np.ndarray, np.ndarray]:
        scores, labels = self._index.search(queries, k, params=params)
        ids = np.where(labels >= 0, self._label_ids[np.maximum(labels, 0)], -1)
        scores = np.where(labels >= 0, scores, -np.inf).astype(np.float32)
        return scores, ids.astype(np.int64)

    @staticmethod
    def _pad(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        ids = ids.astype(np.int64)
        scores = np.where(ids >= 0, scores, -np.inf).astype(np.float32)
        if ids.shape[1] < k:
            extra = k - ids.shape[1]
            scores = np.pad(scores, ((0, 0), (0, extra)), constant_values=-np.inf)
            ids = np.pad(ids, ((0, 0), (0, extra)), constant_values=-1)
        return scores, ids

    # ---------------------------------------------------------------- persistence

    def save(self, directory: str | os.PathLike[str]) -> None:
        """Write the vector store and the FAISS structure to ``directory``.

        Besides what :meth:`load` reads back into a mutable index, it writes what
        :class:`FrozenVectorIndex` memory-maps: the FAISS index itself (``hnsw.faiss`` or
        ``flat.faiss``) and the id → row / id → label lookup arrays.
        """
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        ids = self._ids[: self._size]
        np.save(path / "ids.npy", ids)
        np.save(path / "vectors.npy", self._vecs[: self._size])
        rows_by_id = np.argsort(ids, kind="stable")
        np.save(path / "rows_by_id.npy", rows_by_id.astype(np.int64))
        np.save(path / "ids_sorted.npy", ids[rows_by_id])
        meta = {
            "dim": self.dim,
            "hnsw_threshold": self.hnsw_threshold,
            "hnsw_m": self.hnsw_m,
            "ef_construction": self.ef_construction,
            "ef_search": self.ef_search,
            "subset_ratio": self.subset_ratio,
            "kind": self._kind,
        }
        faiss = _faiss()
        if self._kind == "hnsw":
            faiss.write_index(self._index, str(path / "hnsw.faiss"))
            np.save(path / "hnsw_labels.npy", self._label_ids)
            dead = np.asarray(sorted(self._dead), dtype=np.int64)
            np.save(path / "hnsw_dead.npy", dead)
            live = np.setdiff1d(np.arange(len(self._label_ids), dtype=np.int64), dead)
            by_id = live[np.argsort(self._label_ids[live], kind="stable")]
            np.save(path / "labels_by_id.npy", by_id)
            np.save(path / "label_ids_sorted.npy", self._label_ids[by_id])
        else:
            faiss.write_index(self._index, str(path / "flat.faiss"))
        (path / _META_FILE).write_text(json.dumps(meta), encoding="utf-8")

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> VectorIndex:
        """Read an index written by :meth:`save` into memory (mutable)."""
        path = Path(directory)
        meta = json.loads((path / _META_FILE).read_text(encoding="utf-8"))
        index = cls(
            meta["dim"],
            hnsw_threshold=meta["hnsw_threshold"],
            hnsw_m=meta["hnsw_m"],
            ef_construction=meta["ef_construction"],
            ef_search=meta["ef_search"],
            subset_ratio=meta.get("subset_ratio", 0.25),
        )
        ids = np.load(path / "ids.npy")
        vecs = np.load(path / "vectors.npy")
        index._store_append(ids.astype(np.int64), vecs.astype(np.float32))
        if meta["kind"] == "hnsw" and (path / "hnsw.faiss").exists():
            faiss = _faiss()
            index._kind = "hnsw"
            index._index = faiss.read_index(str(path / "hnsw.faiss"))
            faiss.downcast_index(index._index).hnsw.efSearch = index.ef_search
            index._label_ids = np.load(path / "hnsw_labels.npy")
            index._dead = set(np.load(path / "hnsw_dead.npy").tolist())
            index._label_of = {
                int(item_id): label
                for label, item_id in enumerate(index._label_ids.tolist())
                if label not in index._dead
            }
        else:
            index._new_structure()
        return index

    @staticmethod
    def open(directory: str | os.PathLike[str]) -> FrozenVectorIndex:
        """Open an index written by :meth:`save` read-only and memory-mapped."""
        return FrozenVectorIndex(directory)


def _mmap_flags() -> int:
    """FAISS read flags: map the stored vectors (IndexFlatCodes) instead of copying them."""
    faiss = _faiss()
    return int(getattr(faiss, "IO_FLAG_MMAP_IFC", faiss.IO_FLAG_MMAP)) | int(faiss.IO_FLAG_READ_ONLY)


class FrozenVectorIndex:
    """A :class:`VectorIndex` written by :meth:`VectorIndex.save`, opened read-only.

    The vector store (``vectors.npy``) and the lookup arrays are ``np.load(mmap_mode="r")``
    views and the FAISS index is read with ``IO_FLAG_MMAP_IFC``, so every process that opens
    the same folder shares one copy of the pages. It never changes; searches can exclude ids
    (entries the engine's in-memory delta replaced or removed) with an ``IDSelector``.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        path = Path(directory)
        meta = json.loads((path / _META_FILE).read_text(encoding="utf-8"))
        self.dim = int(meta["dim"])
        self.ef_search = int(meta["ef_search"])
        self.subset_ratio = float(meta.get("subset_ratio", 0.25))
        self._kind = meta["kind"]
        self._ids = np.load(path / "ids.npy", mmap_mode="r")
        self._vecs = np.load(path / "vectors.npy", mmap_mode="r")
        self._rows_by_id = np.load(path / "rows_by_id.npy", mmap_mode="r")
        self._ids_sorted = np.load(path / "ids_sorted.npy", mmap_mode="r")
        self._size = len(self._ids)
        faiss = _faiss()
        name = "hnsw.faiss" if self._kind == "hnsw" else "flat.faiss"
        self._index = faiss.read_index(str(path / name), _mmap_flags())
        self.files = [path / n for n in ("ids.npy", "vectors.npy", "rows_by_id.npy", "ids_sorted.npy", name)]
        if self._kind == "hnsw":
            faiss.downcast_index(self._index).hnsw.efSearch = self.ef_search
            self._label_ids = np.load(path / "hnsw_labels.npy", mmap_mode="r")
            self._dead = np.load(path / "hnsw_dead.npy")
            self._labels_by_id = np.load(path / "labels_by_id.npy", mmap_mode="r")
            self._label_ids_sorted = np.load(path / "label_ids_sorted.npy", mmap_mode="r")
            self.files += [path / n for n in ("hnsw_labels.npy", "labels_by_id.npy", "label_ids_sorted.npy")]

    @property
    def kind(self) -> str:
        return self._kind

    def __len__(self) -> int:
        return self._size

    def __contains__(self, item_id: object) -> bool:
        try:
            return len(self._rows([int(item_id)])[0]) == 1  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return False

    def ids(self) -> np.ndarray:
        return np.asarray(self._ids, dtype=np.int64)

    @staticmethod
    def _lookup(
        sorted_keys: np.ndarray, values: np.ndarray, ids: Iterable[int]
    ) -> tuple[np.ndarray, np.ndarray]:
        wanted = np.fromiter((int(i) for i in ids), dtype=np.int64)
        n = len(sorted_keys)
        if not len(wanted) or not n:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty
        at = np.searchsorted(sorted_keys, wanted)
        at = np.minimum(at, n - 1)
        ok = sorted_keys[at] == wanted
        return np.asarray(values[at[ok]], dtype=np.int64), wanted[ok]

    def _rows(self, ids: Iterable[int]) -> tuple[np.ndarray, np.ndarray]:
        """``(rows, ids)`` of the known ids among ``ids``, in the order given."""
        return self._lookup(self._ids_sorted, self._rows_by_id, ids)

    def _labels(self, ids: Iterable[int]) -> np.ndarray:
        return self._lookup(self._label_ids_sorted, self._labels_by_id, ids)[0]

    def get(self, item_id: int) -> np.ndarray | None:
        rows, _ = self._rows([item_id])
        return None if not len(rows) else np.array(self._vecs[int(rows[0])], dtype=np.float32)

    def scores_for(self, query: np.ndarray, ids: Iterable[int]) -> dict[int, float]:
        """Exact inner products of one query vector with the given ids (unknown ids skipped)."""
        q = np.asarray(query, dtype=np.float32).reshape(-1)
        rows, known = self._rows(ids)
        if not len(known):
            return {}
        sims = self._vecs[rows] @ q
        return dict(zip(known.tolist(), sims.tolist(), strict=True))

    def _exact_subset(
        self, queries: np.ndarray, allowed: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        rows, sub_ids = self._rows(allowed)
        return _exact_top_k(queries, self._vecs, rows, sub_ids, k)

    def search(
        self,
        vecs: np.ndarray,
        k: int,
        allowed_ids: Iterable[int] | None = None,
        excluded_ids: Iterable[int] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` by inner product, as :meth:`VectorIndex.search`; ``excluded_ids`` are never
        returned (entries replaced or removed since the index was written)."""
        queries = np.ascontiguousarray(np.asarray(vecs, dtype=np.float32).reshape(-1, self.dim))
        nq = len(queries)
        k = int(k)
        if k <= 0 or self._size == 0:
            return np.full((nq, max(k, 0)), -np.inf, dtype=np.float32), np.full(
                (nq, max(k, 0)), -1, dtype=np.int64
            )
        excluded = np.unique(np.fromiter((int(i) for i in excluded_ids or ()), dtype=np.int64))
        faiss = _faiss()
        if allowed_ids is not None:
            allowed = np.unique(np.fromiter((int(i) for i in allowed_ids), dtype=np.int64))
            if len(excluded):
                allowed = np.setdiff1d(allowed, excluded, assume_unique=True)
            allowed = self._rows(allowed)[1]
            if len(allowed) <= max(2048, self.subset_ratio * self._size) or self._kind == "flat":
                return self._exact_subset(queries, allowed, k)
            params = faiss.SearchParametersHNSW()
            params.efSearch = max(self.ef_search, k)
            params.sel = faiss.IDSelectorBatch(self._labels(allowed))
            scores, out_ids = self._hnsw_search(queries, k, params)
            if (out_ids[:, : min(k, len(allowed))] < 0).any():
                return self._exact_subset(queries, allowed, k)
            return scores, out_ids
        live = self._size - len(self._rows(excluded)[0]) if len(excluded) else self._size
        if self._kind == "flat":
            params = faiss.SearchParameters()
            if len(excluded):
                params.sel = faiss.IDSelectorNot(faiss.IDSelectorBatch(excluded))
            scores, out_ids = self._index.search(queries, min(k, self._size), params=params)
            return VectorIndex._pad(scores, out_ids, k)
        params = faiss.SearchParametersHNSW()
        params.efSearch = max(self.ef_search, k)
        hidden = np.concatenate([self._dead, self._labels(excluded)]) if len(excluded) else self._dead
        if len(hidden):
            params.sel = faiss.IDSelectorNot(faiss.IDSelectorBatch(hidden.astype(np.int64)))
        scores, out_ids = self._hnsw_search(queries, k, params)
        if (out_ids[:, : min(k, live)] < 0).any():
            keep = np.setdiff1d(self.ids(), excluded) if len(excluded) else self.ids()
            return self._exact_subset(queries, keep, k)
        return scores, out_ids

    def _hnsw_search(self, queries: np.ndarray, k: int, params: Any) -> tuple[np.ndarray, np.ndarray]:
        scores, labels = self._index.search(queries, k, params=params)
        label_ids = np.asarray(self._label_ids)
        ids = np.where(labels >= 0, label_ids[np.maximum(labels, 0)], -1)
        scores = np.where(labels >= 0, scores, -np.inf).astype(np.float32)
        return scores, ids.astype(np.int64)

"""BM25 over pre-tokenised documents (Lucene variant, k1=1.2, b=0.75), scored sparsely.

Three classes share one scoring core (:class:`_Scoring`):

* :class:`LexicalIndex`: the mutable index used while building (and by the portal search and
  the evaluation). ``bm25s`` builds its static score matrix (one float32 BM25 term score per
  (token, document), as a CSC matrix); updates are recorded and the matrix is rebuilt lazily on
  the next query. The index keeps its own growing vocabulary and each document's token ids, so a
  rebuild skips string → id conversion (0.45–0.7 s for 10,000 documents of ~250 characters on
  the 2-core reference machine; see ``benchmarks/matching.py``).
* :class:`FrozenLexicalIndex`: the same matrix written by :meth:`LexicalIndex.save` as plain
  ``.npy`` arrays (columns in sorted-token order, documents in id order) and opened with
  ``np.load(mmap_mode="r")``: every process that opens one version shares its pages in the
  operating system's page cache. Nothing is built on open; a token is found by binary search
  in the sorted vocabulary array.
* :class:`DeltaLexical`: the few documents published after a frozen version was written,
  scored with the frozen version's statistics (document count, average length, idf).

**Scoring is sparse.** A query touches only the posting lists of its own tokens: their term
scores are summed (float32, tokens in column order, exactly as ``bm25s`` sums them) into a
scratch array, and only the documents found there are ranked. :meth:`_Scoring.score` returns a
:class:`ScoredQuery` from which the engine takes both its top-N pool and the scores of other
candidates, so BM25 runs once per query. ``doc_freq`` and ``idf`` are cached per token for
the lifetime of the matrix (a rebuild clears the cache).

Query tokens are de-duplicated before scoring; a query may also be a ``{token: weight}``
mapping (thesaurus expansions are weighted below exact terms): the score is
``Σ weight · bm25(token)``.
"""

from __future__ import annotations

import json
import math
import os
import threading
from abc import ABC, abstractmethod
from array import array
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["LexicalIndex", "FrozenLexicalIndex", "DeltaLexical", "ScoredQuery"]

#: Tokens up to this many characters go into the fixed-width sorted vocabulary array; longer
#: ones (rare: long English words, numbers) are kept in a small JSON map.
_VOCAB_WIDTH = 24
_META_FILE = "lexical.json"
_FORMAT = 1


def _weights(query_tokens: Sequence[str] | Mapping[str, float]) -> dict[str, float]:
    """``{token: weight}`` from a token sequence (weight 1 each) or a weight mapping."""
    if isinstance(query_tokens, Mapping):
        return {str(t): float(w) for t, w in query_tokens.items()}
    return dict.fromkeys(query_tokens, 1.0)


def _csc_matvec(
    n_rows: int,
    n_columns: int,
    indptr: np.ndarray,
    indices: np.ndarray,
    data: np.ndarray,
    x: np.ndarray,
    out: np.ndarray,
) -> None:
    """``out += A @ x`` for a CSC matrix, column by column in float32 (scipy's sparsetools when
    available, else the same sums with numpy)."""
    try:
        from scipy.sparse import _sparsetools
    except ImportError:  # pragma: no cover - scipy comes with bm25s
        for j in range(n_columns):
            docs = indices[indptr[j] : indptr[j + 1]]
            values = data[indptr[j] : indptr[j + 1]]
            out[docs] += values if x[j] == 1 else x[j] * values
        return
    _sparsetools.csc_matvec(n_rows, n_columns, indptr, indices, data, x, out)


def _lucene_idf(df: int, n: int) -> float:
    return math.log(1 + (n - df + 0.5) / (df + 0.5)) if df > 0 else 0.0


class ScoredQuery:
    """BM25 scores of one query over one index, computed once from the query's posting lists.

    ``scores`` is a scratch array in index order (zero where no query token occurs);
    ``touched`` holds the positions of the documents that contain a query token.
    """

    __slots__ = ("_index", "scores", "touched")

    def __init__(self, index: _Scoring, scores: np.ndarray, touched: np.ndarray) -> None:
        self._index = index
        self.scores = scores
        self.touched = touched

    def top(
        self,
        k: int,
        allowed_ids: Iterable[int] | None = None,
        excluded_ids: Iterable[int] | None = None,
    ) -> list[tuple[int, float]]:
        """Top-``k`` ``(id, score)`` with score > 0, best first (ties by id)."""
        if k <= 0 or not len(self.touched):
            return []
        arr = self.scores
        positions = self.touched
        if allowed_ids is not None:
            allowed = self._index.positions_of(allowed_ids)[0]
            positions = np.intersect1d(positions, allowed, assume_unique=False)
        if excluded_ids is not None:
            excluded = self._index.positions_of(excluded_ids)[0]
            if len(excluded):
                positions = np.setdiff1d(positions, excluded)
        positions = positions[arr[positions] > 0]
        if len(positions) > k:
            part = np.argpartition(-arr[positions], k - 1)[:k]
            positions = positions[part]
        ids = self._index.ids_at(positions)
        values = arr[positions]
        ranked = np.lexsort((ids, -values))
        return [(int(ids[i]), float(values[i])) for i in ranked]

    def scores_for(self, ids: Iterable[int]) -> dict[int, float]:
        """Scores of the given ids (0 for a non-matching id; unknown ids are skipped)."""
        positions, known = self._index.positions_of(ids)
        if not len(known):
            return {}
        values = self.scores[positions] if len(self.scores) else np.zeros(len(known), dtype=np.float32)
        return dict(zip(known.tolist(), values.astype(np.float64).tolist(), strict=True))


class _Scoring(ABC):
    """Read-side BM25 over a CSC matrix (columns = tokens, rows = documents in index order)."""

    k1: float
    b: float

    def _init_cache(self) -> None:
        self._stats: dict[str, tuple[int, float]] = {}

    # what each index provides ---------------------------------------------------
    @abstractmethod
    def _matrix(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """The CSC arrays ``(indptr, indices, data)`` of precomputed BM25 weights, or None."""

    @abstractmethod
    def _columns_of(self, tokens: Sequence[str]) -> list[int | None]:
        """The matrix column of each token (None: not in the vocabulary)."""

    @abstractmethod
    def _n_docs(self) -> int:
        """The number of documents (matrix rows)."""

    @abstractmethod
    def ids_at(self, positions: np.ndarray) -> np.ndarray:
        """The item ids of the documents at ``positions`` (index order)."""

    @abstractmethod
    def positions_of(self, ids: Iterable[int]) -> tuple[np.ndarray, np.ndarray]:
        """``(positions, ids)`` of the known ids among ``ids``, in the order given."""

    # shared -------------------------------------------------------------------
    def _query_columns(self, query_tokens: Sequence[str] | Mapping[str, float]) -> list[tuple[int, float]]:
        weights = {t: w for t, w in _weights(query_tokens).items() if t and w > 0}
        tokens = list(weights)
        columns = self._columns_of(tokens)
        found = {col: weights[t] for t, col in zip(tokens, columns, strict=True) if col is not None}
        return sorted(found.items(), key=lambda pair: self._sum_order(pair[0]))

    def _sum_order(self, column: int) -> int:
        """The key that orders a query's columns when their scores are summed (float32 sums
        depend on the order): the token id of the index that computed the scores."""
        return column

    def score(self, query_tokens: Sequence[str] | Mapping[str, float]) -> ScoredQuery:
        """BM25 of ``query_tokens`` against every document, from their posting lists only."""
        matrix = self._matrix()
        n = self._n_docs()
        empty = np.zeros(0, dtype=np.int64)
        if matrix is None or n == 0:
            return ScoredQuery(self, np.zeros(0, dtype=np.float32), empty)
        indptr, indices, data = matrix
        columns = self._query_columns(query_tokens)
        scores = np.zeros(n, dtype=np.float32)
        if not columns:
            return ScoredQuery(self, scores, empty)
        spans = [(int(indptr[col]), int(indptr[col + 1]), weight) for col, weight in columns]
        spans = [span for span in spans if span[1] > span[0]]
        if not spans:
            return ScoredQuery(self, scores, empty)
        # The query's posting lists as one small CSC matrix (columns in sum order) times the
        # query weights: scipy's matvec adds ``data · weight`` column by column in float32, the
        # very sums of a per-column ``scores[docs] += weight · values`` loop, in one C pass.
        total = sum(end - start for start, end, _ in spans)
        index_type = np.int32 if total < 2**31 - 1 and n < 2**31 - 1 else np.int64
        sub_indptr = np.zeros(len(spans) + 1, dtype=index_type)
        np.cumsum([end - start for start, end, _ in spans], out=sub_indptr[1:])
        sub_indices = np.concatenate([indices[a:b] for a, b, _ in spans]).astype(index_type, copy=False)
        sub_data = np.concatenate([data[a:b] for a, b, _ in spans]).astype(np.float32, copy=False)
        weights = np.asarray([weight for _, _, weight in spans], dtype=np.float32)
        _csc_matvec(n, len(spans), sub_indptr, sub_indices, sub_data, weights, scores)
        if total * 4 < n:
            touched = np.unique(sub_indices).astype(np.int64)
        else:
            touched = np.flatnonzero(scores > 0)
        return ScoredQuery(self, scores, touched)

    def score_array(self, query_tokens: Sequence[str] | Mapping[str, float]) -> tuple[np.ndarray, Any]:
        """BM25 scores of every document, as ``(scores, ids)`` in index order."""
        return self.score(query_tokens).scores, self.order()

    @abstractmethod
    def order(self) -> Any:
        """Every item id in index order."""

    def scores_for(
        self, query_tokens: Sequence[str] | Mapping[str, float], ids: Iterable[int]
    ) -> dict[int, float]:
        """BM25 scores of the given ids (0 for a non-matching id; unknown ids are skipped)."""
        return self.score(query_tokens).scores_for(ids)

    def scores(self, query_tokens: Sequence[str] | Mapping[str, float]) -> dict[int, float]:
        """``{id: score}`` for every document with a positive BM25 score."""
        scored = self.score(query_tokens)
        positions = scored.touched
        if len(positions):
            positions = positions[scored.scores[positions] > 0]
        ids = self.ids_at(positions)
        return dict(zip(ids.tolist(), scored.scores[positions].astype(np.float64).tolist(), strict=True))

    def search(
        self,
        query_tokens: Sequence[str] | Mapping[str, float],
        k: int,
        allowed_ids: Iterable[int] | None = None,
    ) -> list[tuple[int, float]]:
        """Top-``k`` ``(id, score)`` with score > 0, best first (ties by id).

        ``allowed_ids`` is a hard constraint.
        """
        return self.score(query_tokens).top(k, allowed_ids)

    def token_scores(self, token: str) -> np.ndarray:
        """BM25 contribution of one token to every document, in index order (zeros where the
        token is absent): the building block of per-term scoring (portal search)."""
        return self.score({token: 1.0}).scores.copy() if token else np.zeros(self._n_docs(), np.float32)

    def _df_idf(self, token: str) -> tuple[int, float]:
        cached = self._stats.get(token)
        if cached is not None:
            return cached
        matrix = self._matrix()
        df = 0
        if matrix is not None and token:
            col = self._columns_of([token])[0]
            if col is not None:
                indptr = matrix[0]
                df = int(indptr[col + 1] - indptr[col])
        value = (df, _lucene_idf(df, self._n_docs()))
        self._stats[token] = value
        return value

    def doc_freq(self, token: str) -> int:
        """Number of documents that contain ``token`` (cached per token)."""
        return self._df_idf(token)[0]

    def idf(self, token: str) -> float:
        """Lucene BM25 idf of a token in this index (0 for unknown tokens; cached per token)."""
        return self._df_idf(token)[1]


class LexicalIndex(_Scoring):
    """Mutable BM25 index keyed by integer ids, with lazy rebuild after updates."""

    def __init__(self, k1: float = 1.2, b: float = 0.75) -> None:
        self.k1 = float(k1)
        self.b = float(b)
        self._vocab: dict[str, int] = {"": 0}  # "" is bm25s's empty-document token
        self._inverse: list[str] = [""]
        # token ids per document, compact (4 bytes per token); iterating yields Python ints
        self._doc_ids: dict[int, array] = {}
        self._order: list[int] = []
        self._order_arr = np.zeros(0, dtype=np.int64)
        self._pos: dict[int, int] = {}
        self._bm25: Any = None
        self._dirty = False
        self._lock = threading.RLock()
        self._init_cache()

    def __len__(self) -> int:
        return len(self._doc_ids)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._doc_ids

    # ---------------------------------------------------------------- updates

    def _encode(self, tokens: Iterable[str]) -> array:
        vocab = self._vocab
        out = array("i")
        for token in tokens:
            tid = vocab.get(token)
            if tid is None:
                tid = vocab[token] = len(vocab)
                self._inverse.append(token)
            out.append(tid)
        return out

    def build(self, ids: Sequence[int], token_lists: Sequence[Sequence[str]]) -> None:
        """Replace the whole index."""
        if len(ids) != len(token_lists):
            raise ValueError(f"{len(ids)} ids but {len(token_lists)} token lists")
        with self._lock:
            self._vocab = {"": 0}
            self._inverse = [""]
            self._doc_ids = {}
            for item_id, tokens in zip(ids, token_lists, strict=True):
                self._doc_ids[int(item_id)] = self._encode(tokens)
            self._dirty = True
            self._rebuild()

    def upsert(self, item_id: int, tokens: Sequence[str]) -> None:
        """Insert or replace one document (the matrix is rebuilt on the next query)."""
        with self._lock:
            self._doc_ids[int(item_id)] = self._encode(tokens)
            self._dirty = True

    def remove(self, item_id: int) -> bool:
        """Remove one document; returns whether it was present."""
        with self._lock:
            if self._doc_ids.pop(int(item_id), None) is None:
                return False
            self._dirty = True
            return True

    def tokens(self, item_id: int) -> frozenset[str]:
        """The token set of a document (empty if unknown)."""
        with self._lock:
            ids = self._doc_ids.get(int(item_id))
            inverse = self._inverse
            return frozenset(inverse[t] for t in set(ids)) if ids is not None else frozenset()

    def export(self) -> dict[int, list[str]]:
        """Every document's token list (with repeats), e.g. for saving."""
        with self._lock:
            inverse = self._inverse
            return {item_id: [inverse[t] for t in ids] for item_id, ids in self._doc_ids.items()}

    def _rebuild(self) -> None:
        if not self._dirty:
            return
        self._order = list(self._doc_ids)
        self._order_arr = np.asarray(self._order, dtype=np.int64)
        self._pos = {item_id: i for i, item_id in enumerate(self._order)}
        if not self._order:
            self._bm25 = None
        else:
            import bm25s

            retriever = bm25s.BM25(k1=self.k1, b=self.b)
            corpus = [self._doc_ids[i] or array("i", [0]) for i in self._order]
            retriever.index((corpus, self._vocab), show_progress=False)
            self._bm25 = retriever
        self._dirty = False
        self._init_cache()

    def _ensure(self) -> Any:
        with self._lock:
            self._rebuild()
            return self._bm25

    # ---------------------------------------------------------------- _Scoring hooks

    def _matrix(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        bm25 = self._ensure()
        if bm25 is None:
            return None
        return bm25.scores["indptr"], bm25.scores["indices"], bm25.scores["data"]

    def _columns_of(self, tokens: Sequence[str]) -> list[int | None]:
        matrix = self._matrix()
        if matrix is None:
            return [None] * len(tokens)
        n_columns = len(matrix[0]) - 1
        vocab = self._vocab
        out: list[int | None] = []
        for token in tokens:
            tid = vocab.get(token)
            out.append(tid if tid is not None and tid < n_columns and token else None)
        return out

    def _n_docs(self) -> int:
        self._ensure()
        return len(self._order)

    def ids_at(self, positions: np.ndarray) -> np.ndarray:
        return self._order_arr[np.asarray(positions, dtype=np.int64)]

    def positions_of(self, ids: Iterable[int]) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            self._ensure()
            pos = self._pos
            known = [int(i) for i in ids if int(i) in pos]
            return (
                np.fromiter((pos[i] for i in known), dtype=np.int64, count=len(known)),
                np.asarray(known, dtype=np.int64),
            )

    def score(self, query_tokens: Sequence[str] | Mapping[str, float]) -> ScoredQuery:
        with self._lock:
            return super().score(query_tokens)

    def order(self) -> list[int]:
        """Document ids in index order: the order of every score array (rebuilds if needed)."""
        with self._lock:
            self._ensure()
            return self._order

    def doc_freq(self, token: str) -> int:
        with self._lock:
            self._ensure()
            return super().doc_freq(token)

    def idf(self, token: str) -> float:
        with self._lock:
            self._ensure()
            return super().idf(token)

    def matched_terms(self, query_tokens: Sequence[str] | Mapping[str, float], item_id: int) -> list[str]:
        """Query tokens present in the document, rarest (highest idf) first."""
        with self._lock:
            ids = self._doc_ids.get(int(item_id))
            doc = set(ids) if ids is not None else set()
            vocab = self._vocab
            matched = [t for t in dict.fromkeys(query_tokens) if vocab.get(t, -1) in doc and t]
        return sorted(matched, key=lambda t: (-self.idf(t), t))

    # ---------------------------------------------------------------- persistence

    def avg_doc_len(self) -> float:
        """Average document length in tokens, as bm25s computes it (an empty document counts 1)."""
        with self._lock:
            if not self._doc_ids:
                return 0.0
            return float(np.mean([len(ids) or 1 for ids in self._doc_ids.values()]))

    def save(self, directory: str | os.PathLike[str]) -> None:
        """Write the score matrix for :class:`FrozenLexicalIndex` (columns in sorted-token order,
        documents in id order; the term scores are copied, not recomputed)."""
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        with self._lock:
            matrix = self._matrix()
            n = len(self._order)
            perm = np.argsort(self._order_arr, kind="stable")
            new_pos = np.empty(n, dtype=np.int64)
            new_pos[perm] = np.arange(n, dtype=np.int64)
            if matrix is None:
                indptr, indices, data = np.zeros(1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32)
                tokens: list[tuple[str, int]] = []
            else:
                indptr, indices, data = (np.asarray(a) for a in matrix)
                n_columns = len(indptr) - 1
                tokens = sorted((t, tid) for tid, t in enumerate(self._inverse[:n_columns]) if t)
            short = [(t, tid) for t, tid in tokens if len(t) <= _VOCAB_WIDTH]
            long = [(t, tid) for t, tid in tokens if len(t) > _VOCAB_WIDTH]
            old_columns = np.asarray([tid for _, tid in short + long], dtype=np.int64)
            if len(old_columns):
                starts = indptr[old_columns].astype(np.int64)
                counts = (indptr[old_columns + 1] - indptr[old_columns]).astype(np.int64)
                new_indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
                gather = np.arange(int(new_indptr[-1]), dtype=np.int64) - np.repeat(new_indptr[:-1], counts)
                gather += np.repeat(starts, counts)
                new_indices = new_pos[indices[gather]].astype(np.int32)
                new_data = np.asarray(data[gather], dtype=np.float32)
            else:
                new_indptr = np.zeros(1, np.int64)
                new_indices, new_data = np.zeros(0, np.int32), np.zeros(0, np.float32)
            np.save(path / "indptr.npy", new_indptr)
            np.save(path / "indices.npy", new_indices)
            np.save(path / "data.npy", new_data)
            np.save(path / "ids.npy", self._order_arr[perm])
            np.save(path / "vocab.npy", np.asarray([t for t, _ in short], dtype=f"<U{_VOCAB_WIDTH}"))
            # the original token ids: sums run in the same order, so scores are bit-identical
            np.save(path / "sum_order.npy", old_columns.astype(np.int32))
            meta = {
                "format": _FORMAT,
                "k1": self.k1,
                "b": self.b,
                "n_docs": n,
                "avg_doc_len": self.avg_doc_len(),
                "long_tokens": {t: len(short) + i for i, (t, _) in enumerate(long)},
            }
            (path / _META_FILE).write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")

    @staticmethod
    def open(directory: str | os.PathLike[str], mmap: bool = True) -> FrozenLexicalIndex:
        """Open a matrix written by :meth:`save` (read-only, memory-mapped by default)."""
        return FrozenLexicalIndex(directory, mmap=mmap)


class FrozenLexicalIndex(_Scoring):
    """A BM25 matrix written by :meth:`LexicalIndex.save`, opened read-only (memory-mapped).

    It never changes: documents published later live in a :class:`DeltaLexical`, and the
    engine masks the frozen documents that were changed or removed.
    """

    def __init__(self, directory: str | os.PathLike[str], mmap: bool = True) -> None:
        path = Path(directory)
        meta = json.loads((path / _META_FILE).read_text(encoding="utf-8"))
        if meta.get("format") != _FORMAT:
            raise ValueError(f"lexical index format {meta.get('format')} != {_FORMAT}")
        mode = "r" if mmap else None
        self.k1 = float(meta["k1"])
        self.b = float(meta["b"])
        self.avgdl = float(meta["avg_doc_len"])
        self._n = int(meta["n_docs"])
        self._long: dict[str, int] = dict(meta.get("long_tokens") or {})
        self._indptr = np.load(path / "indptr.npy", mmap_mode=mode)
        self._indices = np.load(path / "indices.npy", mmap_mode=mode)
        self._data = np.load(path / "data.npy", mmap_mode=mode)
        self._ids = np.load(path / "ids.npy", mmap_mode=mode)
        self._vocab = np.load(path / "vocab.npy", mmap_mode=mode)
        self._order_key = np.load(path / "sum_order.npy", mmap_mode=mode)
        names = ("indptr.npy", "indices.npy", "data.npy", "ids.npy", "vocab.npy", "sum_order.npy")
        self.files = [path / name for name in names]
        self._init_cache()

    def __len__(self) -> int:
        return self._n

    def __contains__(self, item_id: object) -> bool:
        try:
            return len(self.positions_of([int(item_id)])[0]) == 1  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return False

    def _matrix(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        return (self._indptr, self._indices, self._data) if self._n else None

    def _columns_of(self, tokens: Sequence[str]) -> list[int | None]:
        out: list[int | None] = [None] * len(tokens)
        vocab = self._vocab
        short = [(i, t) for i, t in enumerate(tokens) if t and len(t) <= _VOCAB_WIDTH]
        if short and len(vocab):
            wanted = np.asarray([t for _, t in short], dtype=f"<U{_VOCAB_WIDTH}")
            found = np.searchsorted(vocab, wanted)
            for (i, t), at in zip(short, found.tolist(), strict=True):
                if at < len(vocab) and vocab[at] == t:
                    out[i] = at
        for i, t in enumerate(tokens):
            if len(t) > _VOCAB_WIDTH:
                out[i] = self._long.get(t)
        return out

    def _n_docs(self) -> int:
        return self._n

    def _sum_order(self, column: int) -> int:
        return int(self._order_key[column])

    def ids_at(self, positions: np.ndarray) -> np.ndarray:
        return np.asarray(self._ids[np.asarray(positions, dtype=np.int64)], dtype=np.int64)

    def positions_of(self, ids: Iterable[int]) -> tuple[np.ndarray, np.ndarray]:
        wanted = np.fromiter((int(i) for i in ids), dtype=np.int64)
        if not len(wanted) or not self._n:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty
        at = np.searchsorted(self._ids, wanted)
        at_clipped = np.minimum(at, self._n - 1)
        ok = (at < self._n) & (self._ids[at_clipped] == wanted)
        return at_clipped[ok].astype(np.int64), wanted[ok]

    def order(self) -> np.ndarray:
        """Document ids in index order (ascending ids)."""
        return self._ids


class DeltaLexical:
    """Documents added after a frozen index was written, scored with that index's statistics.

    A term's score in a delta document is ``idf · tf / (tf + k1·(1 − b + b·dl / avgdl))`` with
    the frozen index's idf and average length (a term the frozen index never saw gets the idf of
    a term found in one document), so delta documents and frozen documents are comparable and
    the frozen scores need no change. Without a frozen index (nothing was built yet) the delta's
    own statistics are used. The next build folds the delta in and recomputes everything.
    """

    def __init__(self, base: FrozenLexicalIndex | None = None, k1: float = 1.2, b: float = 0.75) -> None:
        self.base = base
        self.k1 = base.k1 if base is not None else float(k1)
        self.b = base.b if base is not None else float(b)
        self._docs: dict[int, Counter[str]] = {}
        self._lengths: dict[int, int] = {}
        #: token → {document id: term frequency}
        self._postings: dict[str, dict[int, int]] = {}

    def __len__(self) -> int:
        return len(self._docs)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._docs

    def upsert(self, item_id: int, tokens: Sequence[str]) -> None:
        item_id = int(item_id)
        self.remove(item_id)
        counts = Counter(tokens)
        self._docs[item_id] = counts
        self._lengths[item_id] = len(tokens) or 1
        for token, tf in counts.items():
            self._postings.setdefault(token, {})[item_id] = tf

    def remove(self, item_id: int) -> bool:
        counts = self._docs.pop(int(item_id), None)
        if counts is None:
            return False
        del self._lengths[int(item_id)]
        for token in counts:
            posting = self._postings.get(token)
            if posting is not None:
                posting.pop(int(item_id), None)
                if not posting:
                    del self._postings[token]
        return True

    def _stats(self) -> tuple[int, float]:
        if self.base is not None and len(self.base):
            return len(self.base), self.base.avgdl
        n = len(self._docs)
        return n, (sum(self._lengths.values()) / n if n else 1.0)

    def idf(self, token: str) -> float:
        n, _ = self._stats()
        if self.base is not None and len(self.base):
            return self.base.idf(token) or _lucene_idf(1, n)
        return _lucene_idf(len(self._postings.get(token, ())), n)

    def scores(
        self, query_tokens: Sequence[str] | Mapping[str, float], ids: Iterable[int] | None = None
    ) -> dict[int, float]:
        """``{id: score}`` of the delta documents (all, or those among ``ids``) with a score > 0,
        from the query tokens' postings only."""
        if not self._docs:
            return {}
        weights = {t: w for t, w in _weights(query_tokens).items() if t and w > 0 and t in self._postings}
        if not weights:
            return {}
        _, avgdl = self._stats()
        k1, b = np.float32(self.k1), np.float32(self.b)
        only = None if ids is None else set(ids)
        totals: dict[int, np.float32] = {}
        for token in sorted(weights):
            idf = np.float32(self.idf(token))
            weight = weights[token]
            for item_id, tf in self._postings[token].items():
                if only is not None and item_id not in only:
                    continue
                norm = k1 * (np.float32(1.0) - b + b * np.float32(self._lengths[item_id] / avgdl))
                value = idf * (np.float32(tf) / (norm + np.float32(tf)))
                if weight != 1.0:
                    value = np.float32(weight) * value
                totals[item_id] = totals.get(item_id, np.float32(0.0)) + value
        return {i: float(v) for i, v in totals.items() if v > 0}

"""BM25 over pre-tokenised documents, using ``bm25s`` (Lucene variant, k1=1.2, b=0.75).

bm25s builds a static sparse score matrix, so updates are recorded and the matrix is rebuilt
lazily on the next query. The index keeps its own growing vocabulary and each document's token
ids, so a rebuild skips string → id conversion (0.45–0.7 s for 10,000 documents of ~250
characters on the 2-core reference machine; see ``benchmarks/matching.py``). Query tokens are
de-duplicated before scoring; a query may also be a ``{token: weight}`` mapping (thesaurus
expansions are weighted below exact terms). Token ids are kept per document (4 bytes per token) for
explanations and saving.
"""

from __future__ import annotations

import math
import threading
from array import array
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["LexicalIndex"]


def _weights(query_tokens: Sequence[str] | Mapping[str, float]) -> dict[str, float]:
    """``{token: weight}`` from a token sequence (weight 1 each) or a weight mapping."""
    if isinstance(query_tokens, Mapping):
        return {str(t): float(w) for t, w in query_tokens.items()}
    return dict.fromkeys(query_tokens, 1.0)


class LexicalIndex:
    """BM25 index keyed by integer ids, with lazy rebuild after updates."""

    def __init__(self, k1: float = 1.2, b: float = 0.75) -> None:
        self.k1 = float(k1)
        self.b = float(b)
        self._vocab: dict[str, int] = {"": 0}  # "" is bm25s's empty-document token
        self._inverse: list[str] = [""]
        # token ids per document, compact (4 bytes per token); iterating yields Python ints
        self._doc_ids: dict[int, array] = {}
        self._order: list[int] = []
        self._pos: dict[int, int] = {}
        self._bm25: Any = None
        self._dirty = False
        self._lock = threading.RLock()

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

    def _ensure(self) -> Any:
        with self._lock:
            self._rebuild()
            return self._bm25

    # ---------------------------------------------------------------- scoring

    def score_array(self, query_tokens: Sequence[str] | Mapping[str, float]) -> tuple[np.ndarray, list[int]]:
        """BM25 scores of every document, as ``(scores, ids)`` in index order.

        ``query_tokens`` is a sequence of tokens (each counted once, weight 1) or a mapping
        ``token → weight`` (e.g. thesaurus expansions weighted below exact terms, see
        :func:`matching.text.expand_query`): the score is ``Σ weight · bm25(token)``.
        """
        weights = _weights(query_tokens)
        with self._lock:
            bm25 = self._ensure()
            order = self._order
            if bm25 is None:
                return np.zeros(0, dtype=np.float32), order
            vocab = self._vocab
            qids = {vocab[t]: w for t, w in weights.items() if t and t in vocab and w > 0}
            if not qids:
                return np.zeros(len(order), dtype=np.float32), order
            if all(w == 1.0 for w in qids.values()):
                return np.asarray(bm25.get_scores_from_ids(sorted(qids)), dtype=np.float32), order
            scores = np.zeros(len(order), dtype=np.float32)
            for tid, weight in sorted(qids.items()):
                docs, values = self._postings(bm25, tid)
                scores[docs] += np.float32(weight) * values
            return scores, order

    def order(self) -> list[int]:
        """Document ids in index order: the order of every score array (rebuilds if needed)."""
        with self._lock:
            self._ensure()
            return self._order

    def token_scores(self, token: str) -> np.ndarray:
        """BM25 contribution of one token to every document, in index order (zeros where the
        token is absent): the building block of per-term scoring (portal search)."""
        with self._lock:
            bm25 = self._ensure()
            scores = np.zeros(len(self._order), dtype=np.float32)
            tid = self._vocab.get(token)
            if bm25 is None or not token or tid is None:
                return scores
            docs, values = self._postings(bm25, tid)
            scores[docs] = values
            return scores

    @staticmethod
    def _postings(bm25: Any, tid: int) -> tuple[np.ndarray, np.ndarray]:
        """Documents containing token ``tid`` and their BM25 term scores (from bm25s's
        precomputed CSC matrix; each document appears once per token)."""
        indptr = bm25.scores["indptr"]
        if tid + 1 >= len(indptr):
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty.astype(np.float32)
        start, end = int(indptr[tid]), int(indptr[tid + 1])
        return bm25.scores["indices"][start:end], bm25.scores["data"][start:end].astype(np.float32)

    def scores_for(
        self, query_tokens: Sequence[str] | Mapping[str, float], ids: Iterable[int]
    ) -> dict[int, float]:
        """BM25 scores of the given ids (0 for a non-matching id; unknown ids are skipped)."""
        arr, _ = self.score_array(query_tokens)
        with self._lock:
            pos = self._pos
            return {i: float(arr[pos[i]]) if len(arr) else 0.0 for i in ids if i in pos}

    def scores(self, query_tokens: Sequence[str] | Mapping[str, float]) -> dict[int, float]:
        """``{id: score}`` for every document with a positive BM25 score."""
        arr, order = self.score_array(query_tokens)
        hits = np.flatnonzero(arr > 0)
        return {order[i]: float(arr[i]) for i in hits.tolist()}

    def search(
        self,
        query_tokens: Sequence[str] | Mapping[str, float],
        k: int,
        allowed_ids: Iterable[int] | None = None,
    ) -> list[tuple[int, float]]:
        """Top-``k`` ``(id, score)`` with score > 0, best first (ties by id).

        ``allowed_ids`` is a hard constraint.
        """
        arr, order = self.score_array(query_tokens)
        if k <= 0 or not len(arr):
            return []
        if allowed_ids is not None:
            with self._lock:
                positions = [self._pos[i] for i in allowed_ids if i in self._pos]
            mask = np.zeros(len(arr), dtype=bool)
            mask[positions] = True
            arr = np.where(mask, arr, 0.0)
        candidates = np.flatnonzero(arr > 0)
        if len(candidates) > k:
            part = np.argpartition(-arr[candidates], k - 1)[:k]
            candidates = candidates[part]
        ids = np.asarray([order[i] for i in candidates.tolist()], dtype=np.int64)
        ranked = np.lexsort((ids, -arr[candidates]))
        return [(int(ids[i]), float(arr[candidates[i]])) for i in ranked]

    def doc_freq(self, token: str) -> int:
        """Number of documents that contain ``token``."""
        with self._lock:
            bm25 = self._ensure()
            tid = self._vocab.get(token)
            if bm25 is None or tid is None or not token:
                return 0
            indptr = bm25.scores["indptr"]
            return int(indptr[tid + 1] - indptr[tid]) if tid + 1 < len(indptr) else 0

    def idf(self, token: str) -> float:
        """Lucene BM25 idf of a token in the current index (0 for unknown tokens)."""
        with self._lock:
            bm25 = self._ensure()
            tid = self._vocab.get(token)
            if bm25 is None or tid is None:
                return 0.0
            indptr = bm25.scores["indptr"]
            df = int(indptr[tid + 1] - indptr[tid]) if tid + 1 < len(indptr) else 0
            n = len(self._order)
        if df == 0:
            return 0.0
        return math.log(1 + (n - df + 0.5) / (df + 0.5))

    def matched_terms(self, query_tokens: Sequence[str] | Mapping[str, float], item_id: int) -> list[str]:
        """Query tokens present in the document, rarest (highest idf) first."""
        with self._lock:
            ids = self._doc_ids.get(int(item_id))
            doc = set(ids) if ids is not None else set()
            vocab = self._vocab
            matched = [t for t in dict.fromkeys(query_tokens) if vocab.get(t, -1) in doc and t]
        return sorted(matched, key=lambda t: (-self.idf(t), t))

"""Keyword search over the PUBLISHED entries (机会清单 and 产品清单).

Ranking a query (see :func:`score_terms`):

* Every entry is indexed by the **whole words** of its text (:func:`matching.text.words`:
  jieba + domain dictionary + thesaurus terms, compound words also as their parts, English
  acronyms kept whole; no character bigrams, so 「动车」 never matches 「电动车」), scored with
  BM25 (Lucene variant, k1 = 1.2, b = 0.75).
* The query's terms are the distinct words the user typed (:func:`matching.text.query_terms`).
* A term matches an entry through the word itself (weight 1), a thesaurus group-mate
  (weight ``SYNONYM_WEIGHT`` = 0.5), or, for a compound such as 「养老服务」, all of its parts
  (weight ``PARTS_WEIGHT``, scored by the weakest part). The term's score is the best of these
  BM25 contributions; the entry's score is the sum over terms.
* Only entries that match at least one term are results. Entries matching more terms rank
  first (every term before all but one, and so on), then by score, then newest first.
* **Relative cut-off.** An entry that matches only some of the terms is dropped when its score
  is below ``RELATIVE_CUTOFF`` (0.5) times the best result's score (after the filters); an entry
  matching every term is always kept. The value was chosen by two-fold cross-validation on
  ``seeds/search_eval.json`` (each half picks it, the other half reports it; see
  ``docs/benchmarks.md``, "Portal keyword search quality").

Where the index lives (no per-worker copy of the corpus):

* **Base: shared memory-mapped files.** A background job (:mod:`marketplace.services.search_build`,
  queued after every commit that changed what is public, and ``flask search rebuild``) writes a
  versioned folder of numpy arrays per side (:mod:`marketplace.services.search_store`): postings
  with precomputed BM25 weights, ids, ``updated_at`` stamps and the filter columns. Workers open
  the current version read-only with ``mmap``; the pages are shared by every worker of the host.
  A query reads only its terms' postings; a filter is a boolean mask computed from the columns
  once per (version, filter) and kept in a small LRU. A new version is picked up on the next
  search (the pointer file is checked with one ``stat``), without a restart.
* **Delta: what changed since the build.** Every search reads the ``index_state`` stamp (one
  small query). When it differs from the stamp the version was built from, the worker looks up
  the rows whose ``updated_at`` is at or after the build's ``since`` mark (one query per side),
  masks out of the base every entry that changed or is no longer published, and indexes the
  changed published ones in a tiny in-memory index scored with the base's idf and average
  length (a word the base never saw gets the idf of its delta document frequency). So a
  publication is searchable on the next search, before the rebuild. At most
  ``SEARCH_DELTA_MAX_DOCS`` (default 2,000) changed entries per side are indexed this way; past
  that the base keeps serving their previous text until the rebuild (logged).
* **No version yet (the rule).** A request never builds the files. Without a usable version,
  a side whose published corpus has at most ``SEARCH_MEMORY_MAX_DOCS`` (default 2,000) entries
  is searched from a worker-local in-memory index of the whole side (BM25 statistics of that
  side, exactly what the files would rank), refreshed by comparing ``(id, updated_at)`` with
  the database whenever the stamp moves. A bigger side returns an empty page with
  :data:`BUILDING_MESSAGE` (``page.notice``) and queues the build (at most once a minute per
  worker; never run inside the request, even in Huey's immediate mode). A version built while
  the stamp existed is not trusted once the ``index_state`` row is gone (an emptied database).

Not seen by the delta (the rebuild queued by the same change fixes them within one build): a
changed organisation name in entries' text (their ``updated_at`` does not move) and rows
deleted outright (the list loader skips them, so they never show).

Scores of the two sides come from different indexes and are not comparable, so a search over
both sides returns one ranked page per side.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
from flask import Flask, current_app, has_request_context
from flask_sqlalchemy.pagination import Pagination
from markupsafe import Markup, escape
from sqlalchemy import func, select
from sqlalchemy.orm import joinedload, selectinload

from marketplace import jobs, timeutil
from marketplace.extensions import db
from marketplace.models import EntryKind, EntryStatus, Opportunity, Product
from marketplace.services import search_build
from marketplace.services.index_files import IndexVersion
from marketplace.services.search_build import (
    build_search_index,
    get_store,
    load_docs_chunked,
    public_stamp,
    stamp_json,
)
from marketplace.services.search_store import (
    EntryMeta,
    SideFiles,
    bm25_weights,
    lucene_idf,
    stamp_micros,
)
from matching.text import SYNONYM_WEIGHT, compound_parts, query_terms, thesaurus, tokenizer_fingerprint, words

__all__ = [
    "BUILDING_MESSAGE", "EntryFilters", "EntryMeta", "RankedPage", "SearchIndex", "build_search_index",
    "empty_page", "get_index", "highlight", "init_app", "public_stamp", "search", "snippet",
]

logger = logging.getLogger("marketplace.services.search")

EXTENSION_KEY = "search"
SIDES: tuple[str, ...] = (EntryKind.OPPORTUNITY, EntryKind.PRODUCT)
#: Longest query we tokenise; longer input is cut (the form also limits it).
MAX_QUERY_LENGTH = 100
#: Partial matches scoring below this share of the best result's score are dropped (module docstring).
RELATIVE_CUTOFF = 0.5
#: Weight of a compound query term matched by all of its parts instead of whole.
PARTS_WEIGHT = 0.8
#: Default of ``SEARCH_MEMORY_MAX_DOCS``: the largest side searched without index files.
MEMORY_MAX_DOCS = 2_000
#: Default of ``SEARCH_DELTA_MAX_DOCS``: the most changed entries per side indexed in memory.
DELTA_MAX_DOCS = 2_000
#: Filter masks kept per worker (each is one byte per entry of its side).
MASK_CACHE_SIZE = 64
#: Seconds between two build requests from the same worker while no version exists.
QUEUE_EVERY = 60.0
BUILDING_MESSAGE = "索引正在构建，请稍后再试"


@dataclass(frozen=True)
class EntryFilters:
    """Hard constraints of the list pages and the search. ``None`` means "any".

    A filter that one side does not have (``tier`` for products, ``maturity`` and ``tag`` for
    opportunities) excludes that side entirely: no product has a scenario tier.
    """

    batch_id: int | None = None
    area: str | None = None
    category: str | None = None
    city: str | None = None
    county: str | None = None
    tier: str | None = None
    maturity: str | None = None
    tag: str | None = None
    #: 征集中 (``"open"``) or 已截止 (``"closed"``) by the answer deadline in Beijing time.
    #: Only opportunities have deadlines; the filter leaves products alone.
    state: str | None = None


#: The filter fields of :class:`EntryFilters` that are columns of the index.
_FILTER_FIELDS = ("area", "category", "tag", "batch_id", "city", "county", "tier", "maturity")
_EMPTY_POSITIONS = np.zeros(0, dtype=np.int64)
_EMPTY_WEIGHTS = np.zeros(0, dtype=np.float32)


# -------------------------------------------------------------------- the in-memory part


@dataclass
class _MemoryDoc:
    stamp: int
    tf: Counter
    length: int
    meta: EntryMeta


class _Delta:
    """A tiny in-memory BM25 index over a few entries (what changed since the base version,
    or a whole small side when there is no version). Immutable once compiled: a refresh
    builds a new one."""

    def __init__(self, docs: dict[int, _MemoryDoc], base: SideFiles | None) -> None:
        self.docs = docs
        self.ids = np.asarray(sorted(docs), dtype=np.int64)
        self.metas = [docs[i].meta for i in self.ids.tolist()]
        self.token_sets = [frozenset(docs[i].tf) for i in self.ids.tolist()]
        if base is not None and base.n:
            n, avgdl = base.n, base.avgdl
        else:
            n = len(docs)
            avgdl = float(np.mean([max(d.length, 1) for d in docs.values()])) if docs else 1.0
        self.n = n
        by_token: dict[str, tuple[list[int], list[int], list[int]]] = {}
        for position, item_id in enumerate(self.ids.tolist()):
            doc = docs[item_id]
            for token, count in doc.tf.items():
                entry = by_token.get(token)
                if entry is None:
                    entry = by_token[token] = ([], [], [])
                entry[0].append(position)
                entry[1].append(count)
                entry[2].append(max(doc.length, 1))
        self.df = {token: len(entry[0]) for token, entry in by_token.items()}
        self.idf: dict[str, float] = {}
        self.postings: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for token, (positions, tfs, lengths) in by_token.items():
            known = base.idf(token) if base is not None and base.n else None
            idf = known if known is not None else lucene_idf(len(positions), n)
            self.idf[token] = idf
            weights = bm25_weights(np.full(len(positions), idf, dtype=np.float32), np.asarray(tfs),
                                   np.asarray(lengths), avgdl)
            self.postings[token] = (np.asarray(positions, dtype=np.int64), weights)

    def __len__(self) -> int:
        return len(self.ids)

    def mask(self, name: str, value: Any) -> np.ndarray:
        return np.fromiter((value in m.values(name) for m in self.metas), dtype=bool, count=len(self.metas))

    def open_mask(self, today: date) -> np.ndarray:
        return np.fromiter((m.deadline is None or m.deadline >= today for m in self.metas),
                           dtype=bool, count=len(self.metas))


def _memory_docs(kind: str, ids: Sequence[int]) -> dict[int, _MemoryDoc]:
    """Load and tokenise these published entries."""
    out = {}
    for doc in load_docs_chunked(kind, list(ids)):
        tokens = words(doc.text)
        out[doc.id] = _MemoryDoc(stamp_micros(doc.stamp), Counter(tokens), len(tokens), doc.meta)
    return out


@dataclass
class _SideState:
    """What one search of one side runs on: a base (or none), a delta, the hidden base
    positions, or the "still building" answer."""

    base: SideFiles | None
    delta: _Delta
    hidden: np.ndarray | None = None
    building: bool = False
    #: The public stamp this state was computed for (``"none"``: no row, refresh every search).
    key: Any = None


@dataclass
class _Base:
    version: IndexVersion
    sides: dict[str, SideFiles]
    signature: tuple[int, int, int]


# -------------------------------------------------------------------- pages


class RankedPage(Pagination):
    """One page of ranked hits, with the interface of ``db.paginate`` (``macros.pagination``).

    ``matched`` maps the id of each hit on the page to the query terms it contains, for
    highlighting; ``scores`` maps it to its BM25 score. ``notice`` is a message for the user
    (:data:`BUILDING_MESSAGE` while a big side has no index yet; ``building`` is then true).
    """

    matched: dict[int, list[str]]
    scores: dict[int, float]
    notice: str | None = None
    building: bool = False

    def _query_items(self) -> list[Any]:
        ranked: Sequence[int] = self._query_args["ranked"]
        window = ranked[self._query_offset : self._query_offset + self.per_page]
        return self._query_args["load"]([int(item_id) for item_id in window])

    def _query_count(self) -> int:
        return len(self._query_args["ranked"])


def empty_page(per_page: int = 20) -> RankedPage:
    """A page with no hits (an empty query)."""
    return _page([], 1, per_page, lambda ids: [])


def _page(
    ranked: Sequence[int],
    page: int,
    per_page: int,
    load: Callable[[list[int]], list[Any]],
) -> RankedPage:
    """``ranked``: all matching ids, best first."""
    result = RankedPage(
        page=max(int(page), 1), per_page=per_page, max_per_page=None, error_out=False,
        ranked=ranked, load=load,
    )
    result.matched = {}
    result.scores = {}
    return result




# -------------------------------------------------------------------- the per-worker handle


class SearchIndex:
    """A worker's handle on the keyword index: the open base version, the deltas, the mask
    cache. It never builds the files (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._base: _Base | None = None
        self._states: dict[str, _SideState] = {}
        self._masks: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._queued_at: float | None = None
        #: See ``RELATIVE_CUTOFF``; the quality benchmark varies it.
        self.relative_cutoff = RELATIVE_CUTOFF

    # ---------------------------------------------------------------- the base version

    def base(self) -> _Base | None:
        """The current published version, reopened when the pointer changed (one ``stat``)."""
        store = get_store()
        try:
            st = os.stat(store.pointer)
            signature = (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            signature = None
        with self._lock:
            if self._base is not None and self._base.signature == signature:
                return self._base
            if signature is None:
                self._base = None
                return None
            current = store.current()
            if current is None:
                self._base = None
                return None
            if self._base is not None and self._base.version.version == current.version:
                self._base = _Base(current, self._base.sides, signature)  # same files, new stamp
                return self._base
            try:
                sides = {kind: SideFiles.open(current.path / kind) for kind in SIDES}
            except (OSError, ValueError, KeyError):
                logger.exception("search: could not open keyword index version %s", current.version)
                self._base = None
                return None
            self._base = _Base(current, sides, signature)
            self._masks.clear()
            if current.meta.get("tokenizer") not in (None, tokenizer_fingerprint()):
                self._queue_build("the tokenizer changed since this version was built")
            return self._base

    # ---------------------------------------------------------------- freshness

    def side_state(self, kind: str) -> _SideState:
        """Base, delta and hidden positions for searching ``kind`` now (module docstring)."""
        stamp = public_stamp()
        key = stamp_json(stamp) if stamp is not None else "none"
        base = self.base()
        usable = base is not None and (stamp is not None or base.version.meta.get("stamp") is None)
        with self._lock:
            previous = self._states.get(kind)
            if usable:
                side = base.sides[kind]
                if previous is not None and previous.base is side and previous.key == key:
                    return previous
                if key == "none" or base.version.meta.get("stamp") == key:
                    state = _SideState(side, _Delta({}, side), key=key)
                else:
                    state = self._delta_state(kind, side, base.version, previous, key)
            else:
                if previous is not None and previous.base is None and previous.key == key != "none":
                    return previous
                state = self._memory_state(kind, previous, key)
            self._states[kind] = state
            return state

    def _delta_state(self, kind: str, side: SideFiles, version: IndexVersion,
                     previous: _SideState | None, key: Any) -> _SideState:
        model = _MODELS[kind]
        since = version.meta.get("since", 0)
        rows = db.session.execute(
            select(model.id, model.updated_at, model.status).where(
                model.updated_at >= _micros_to_datetime(since))
        ).all()
        found, positions = side.positions_of(row[0] for row in rows)
        hidden = np.zeros(side.n, dtype=bool)
        wanted: dict[int, int] = {}
        for (item_id, updated_at, status), is_known, position in zip(rows, found.tolist(), positions.tolist(),
                                                                    strict=True):
            stamp = stamp_micros(updated_at)
            if status == EntryStatus.PUBLISHED:
                if is_known and int(side.stamps[position]) == stamp:
                    continue  # unchanged since the build
                wanted[item_id] = stamp
            if is_known:
                hidden[position] = True
        limit = int(current_app.config.get("SEARCH_DELTA_MAX_DOCS", DELTA_MAX_DOCS))
        if len(wanted) > limit:
            logger.warning("search: %d %s entries changed since the build (limit %d); the newest are "
                           "indexed, the others keep their previous text until the rebuild",
                           len(wanted), kind, limit)
            newest = sorted(wanted, key=lambda i: wanted[i], reverse=True)[:limit]
            overflow = set(wanted) - set(newest)
            overflow_found, overflow_positions = side.positions_of(sorted(overflow))
            hidden[overflow_positions[overflow_found]] = False
            wanted = {i: wanted[i] for i in newest}
        reuse = previous.delta.docs if previous is not None and previous.base is side else {}
        docs = {i: reuse[i] for i, stamp in wanted.items() if i in reuse and reuse[i].stamp == stamp}
        docs.update(_memory_docs(kind, sorted(set(wanted) - set(docs))))
        return _SideState(side, _Delta(docs, side), hidden if hidden.any() else None, key=key)

    def _memory_state(self, kind: str, previous: _SideState | None, key: Any) -> _SideState:
        model = _MODELS[kind]
        limit = int(current_app.config.get("SEARCH_MEMORY_MAX_DOCS", MEMORY_MAX_DOCS))
        count = db.session.scalar(
            select(func.count()).select_from(model).where(model.status == EntryStatus.PUBLISHED))
        if count > limit:
            self._queue_build(f"no keyword index version yet and {count} published {kind} entries")
            return _SideState(None, _Delta({}, None), building=True, key=key)
        current = dict(db.session.execute(
            select(model.id, model.updated_at).where(model.status == EntryStatus.PUBLISHED)).all())
        reuse = previous.delta.docs if previous is not None and previous.base is None else {}
        docs = {i: reuse[i] for i, stamp in current.items()
                if i in reuse and reuse[i].stamp == stamp_micros(stamp)}
        to_load = sorted(set(current) - set(docs))
        if not to_load and previous is not None and docs.keys() == reuse.keys():
            return _SideState(None, previous.delta, key=key)  # nothing changed
        docs.update(_memory_docs(kind, to_load))
        return _SideState(None, _Delta(docs, None), key=key)

    def _queue_build(self, reason: str) -> None:
        """Ask for a build from the request path: at most once a minute, and never run in the
        caller (in immediate mode there is no consumer; the next commit builds)."""
        now = time.monotonic()
        if self._queued_at is not None and now - self._queued_at < QUEUE_EVERY:
            return
        self._queued_at = now
        queue = current_app.extensions.get(jobs.EXTENSION_KEY)
        if queue is None or (queue.huey.immediate and has_request_context()):
            logger.info("search: %s; not building inside a request", reason)
            return
        logger.info("search: %s; queueing the build", reason)
        search_build.queue_build()

    # ---------------------------------------------------------------- masks

    def _mask(self, state: _SideState, kind: str, name: str, value: Any) -> np.ndarray:
        side = state.base
        key = (id(side), kind, name, value)
        with self._lock:
            cached = self._masks.get(key)
            if cached is not None:
                self._masks.move_to_end(key)
                return cached
        if name == "state":
            state_name, today = value
            computed = side.open_mask(today)
            if state_name == "closed":
                computed = ~computed
        else:
            computed = side.mask(name, value)
        with self._lock:
            self._masks[key] = computed
            while len(self._masks) > MASK_CACHE_SIZE:
                self._masks.popitem(last=False)
        return computed

    # ---------------------------------------------------------------- queries

    def search(
        self,
        kind: str,
        q: str,
        filters: EntryFilters | None = None,
        page: int = 1,
        per_page: int = 20,
    ) -> RankedPage:
        """Published entries of ``kind`` matching ``q`` and ``filters``, best first (ranking and
        cut-off: see the module docstring).

        Ties are broken by id, newest first. The page's rows are loaded in one query (plus the
        product's field and tag rows), in rank order.
        """
        if kind not in _MODELS:
            raise ValueError(f"unknown side: {kind}")
        terms = query_terms((q or "")[:MAX_QUERY_LENGTH])
        if not terms:
            return empty_page(per_page)
        filters = filters or EntryFilters()
        state = self.side_state(kind)
        if state.building:
            result = empty_page(per_page)
            result.notice = BUILDING_MESSAGE
            result.building = True
            return result
        base, delta = state.base, state.delta
        n_base = base.n if base is not None else 0

        cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}

        def postings(token: str) -> tuple[np.ndarray, np.ndarray]:
            """Ascending positions of the entries containing ``token``: base, then delta after
            ``n_base``; and the token's BM25 weights there."""
            known = cache.get(token)
            if known is None:
                known = cache[token] = _postings(token)
            return known

        def _postings(token: str) -> tuple[np.ndarray, np.ndarray]:
            base_docs, base_weights = base.postings(token) if base is not None else (_EMPTY_POSITIONS,
                                                                                      _EMPTY_WEIGHTS)
            delta_docs, delta_weights = delta.postings.get(token, (_EMPTY_POSITIONS, _EMPTY_WEIGHTS))
            if not len(delta_docs):
                return np.asarray(base_docs, dtype=np.int64), np.asarray(base_weights)
            return (np.concatenate((np.asarray(base_docs, dtype=np.int64), delta_docs + n_base)),
                    np.concatenate((np.asarray(base_weights), delta_weights)))

        candidates, scores, coverage, alternatives = score_terms(postings, terms, n_base + len(delta))
        in_base = candidates < n_base
        ids = np.empty(len(candidates), dtype=np.int64)
        if base is not None:
            ids[in_base] = base.ids[candidates[in_base]]
        ids[~in_base] = delta.ids[candidates[~in_base] - n_base]
        keep = coverage > 0
        if state.hidden is not None:
            keep[in_base] &= ~state.hidden[candidates[in_base]]
        today = timeutil.local_today()
        for name, value in self._filter_items(kind, filters, today):
            if base is not None:
                keep[in_base] &= self._mask(state, kind, name, value)[candidates[in_base]]
            if len(delta):
                delta_mask = delta.open_mask(today) if name == "state" else delta.mask(name, value)
                if name == "state" and value[0] == "closed":
                    delta_mask = ~delta_mask
                keep[~in_base] &= delta_mask[candidates[~in_base] - n_base]
        if keep.any():
            full = coverage == len(terms)
            keep &= full | (scores >= self.relative_cutoff * scores[keep].max())
        positions = np.flatnonzero(keep)
        hit_ids, hit_scores, hit_coverage = ids[positions], scores[positions], coverage[positions]
        hit_candidates = candidates[positions]
        # Most terms matched first, then best score; ties: newest (highest) id first.
        rank = np.lexsort((-hit_ids, -hit_scores, -hit_coverage))
        ranked, ranked_scores, ranked_candidates = hit_ids[rank], hit_scores[rank], hit_candidates[rank]
        result = _page(ranked, page, per_page, lambda page_ids: _load_rows(kind, page_ids))
        start = (result.page - 1) * result.per_page
        window = slice(start, start + result.per_page)
        page_scores = dict(zip(ranked[window].tolist(), ranked_scores[window].tolist(), strict=True))
        page_positions = dict(zip(ranked[window].tolist(), ranked_candidates[window].tolist(), strict=True))
        for entry in result.items:
            found = _matched_terms(postings, delta.n, alternatives, page_positions[entry.id])
            result.matched[entry.id] = _highlight_terms(found)
            result.scores[entry.id] = page_scores[entry.id]
        return result

    @staticmethod
    def _filter_items(kind: str, filters: EntryFilters, today: date) -> list[tuple[str, Any]]:
        items = [(name, getattr(filters, name)) for name in _FILTER_FIELDS
                 if getattr(filters, name) is not None]
        if filters.state is not None and kind == EntryKind.OPPORTUNITY:
            items.append(("state", (filters.state, today)))
        return items


def _micros_to_datetime(micros: int) -> datetime:
    return datetime(1970, 1, 1) + timedelta(microseconds=int(micros))


def score_terms(
    postings: Callable[[str], tuple[np.ndarray, np.ndarray]], terms: Sequence[str], size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Score ``terms`` over the entries their tokens occur in (see the module docstring).

    ``postings(token)`` gives the positions (below ``size``) of the entries containing a token
    and its BM25 contribution there. Returns the candidate positions (ascending), their score
    and number of terms matched (aligned with the candidates), and every token that can match a
    term (for highlighting). Only the query's postings are read; the scores are kept for the
    candidates only (two linear passes over a bitmap of ``size`` bits find them, no sort).
    """
    th = thesaurus()
    plan: list[tuple[str, list[str], tuple[str, ...]]] = []
    alternatives: list[str] = []
    for term in terms:
        mates = list(th.related(term))
        parts = compound_parts(term)
        plan.append((term, mates, parts))
        alternatives.extend((term, *mates, *parts))
    alternatives = list(dict.fromkeys(alternatives))
    lists = {token: postings(token) for token in alternatives}
    present = np.zeros(size, dtype=bool)
    for docs, _ in lists.values():
        present[docs] = True
    candidates = np.flatnonzero(present)
    slot = np.cumsum(present, dtype=np.int64) - 1  # position -> index among the candidates
    m = len(candidates)

    def dense(token: str) -> np.ndarray:
        out = np.zeros(m, dtype=np.float32)
        docs, weights = lists[token]
        if len(docs):
            out[slot[docs]] = weights
        return out

    total = np.zeros(m, dtype=np.float32)
    coverage = np.zeros(m, dtype=np.int32)
    for term, mates, parts in plan:
        best = dense(term)
        for mate in mates:
            best = np.maximum(best, SYNONYM_WEIGHT * dense(mate))
        if parts:
            weakest = np.minimum.reduce([dense(p) for p in parts])
            best = np.maximum(best, PARTS_WEIGHT * weakest)
        total += best
        coverage += best > 0
    return candidates, total, coverage, alternatives


def _matched_terms(
    postings: Callable[[str], tuple[np.ndarray, np.ndarray]],
    n: int,
    alternatives: Sequence[str],
    position: int,
) -> list[str]:
    """The query tokens present in the entry at ``position``, rarest (highest idf over ``n``
    entries) first. ``postings`` gives ascending positions (those :func:`score_terms` used)."""
    found: list[tuple[float, str]] = []
    for token in alternatives:
        if not token:
            continue
        docs, _ = postings(token)
        i = int(np.searchsorted(docs, position))
        if i < len(docs) and int(docs[i]) == position:
            found.append((lucene_idf(len(docs), n), token))
    return [token for _, token in sorted(found, key=lambda pair: (-pair[0], pair[1]))]


def _highlight_terms(matched: list[str]) -> list[str]:
    """The matched tokens to highlight: a compound's parts only where the compound itself is
    absent (「养老服务」 found whole does not light up every 「服务」)."""
    present = set(matched)
    covered = {part for term in matched for part in compound_parts(term) if term in present}
    return [t for t in matched if t not in covered]


# -------------------------------------------------------------------- loading rows

_MODELS: dict[str, type[Opportunity] | type[Product]] = {
    EntryKind.OPPORTUNITY: Opportunity,
    EntryKind.PRODUCT: Product,
}


def _load_rows(kind: str, ids: list[int]) -> list[Opportunity | Product]:
    """The published rows with these ids, in the given order, ready for list cards."""
    if not ids:
        return []
    if kind == EntryKind.OPPORTUNITY:
        options = [joinedload(Opportunity.publisher), joinedload(Opportunity.batch)]
    else:
        options = [
            joinedload(Product.owner), joinedload(Product.batch),
            selectinload(Product.field_rows), selectinload(Product.tag_rows),
        ]
    model = _MODELS[kind]
    rows = db.session.scalars(
        select(model)
        .where(model.id.in_(ids), model.status == EntryStatus.PUBLISHED)
        .options(*options)
    ).unique()
    by_id = {row.id: row for row in rows}
    return [by_id[i] for i in ids if i in by_id]


# -------------------------------------------------------------------- app wiring


def init_app(app: Flask) -> SearchIndex:
    """Attach a fresh :class:`SearchIndex` to ``app`` (once) and the ``flask search`` commands."""
    if EXTENSION_KEY in app.extensions:
        raise RuntimeError("the search index is already registered on this app")
    index = SearchIndex()
    app.extensions[EXTENSION_KEY] = index
    app.cli.add_command(search_build.search_cli)
    return index


def get_index() -> SearchIndex:
    """The search index of the current app."""
    return current_app.extensions[EXTENSION_KEY]


def search(
    kind: str,
    q: str,
    filters: EntryFilters | None = None,
    page: int = 1,
    per_page: int = 20,
) -> RankedPage:
    """Search one side of the current app's index (see :meth:`SearchIndex.search`)."""
    return get_index().search(kind, q, filters, page, per_page)


# -------------------------------------------------------------------- highlighting

_ENTITY = r"&(?:#\d+|#x[0-9a-fA-F]+|[a-zA-Z]+);"


def _terms_pattern(terms: Iterable[str]) -> str | None:
    unique = sorted({t for t in terms if t}, key=len, reverse=True)
    if not unique:
        return None
    return "|".join(re.escape(str(escape(t))) for t in unique)


def highlight(text: str | None, terms: Iterable[str] | None) -> Markup:
    """Escape ``text``, then wrap every occurrence of a matched term in ``<mark>``.

    Matching is case-insensitive (tokens are lower-cased) and never splits an HTML entity
    produced by the escaping.
    """
    escaped = str(escape(text or ""))
    pattern = _terms_pattern(terms or ())
    if pattern is None:
        return Markup(escaped)

    def wrap(match: re.Match[str]) -> str:
        if match.group(1):
            return match.group(1)
        return f"<mark>{match.group(2)}</mark>"

    return Markup(re.sub(f"({_ENTITY})|({pattern})", wrap, escaped, flags=re.IGNORECASE))


def snippet(text: str | None, terms: Iterable[str] | None, width: int = 120) -> str:
    """About ``width`` characters of ``text`` around its first matched term (plain text)."""
    text = " ".join((text or "").split())
    if len(text) <= width:
        return text
    lowered = text.lower()
    positions = [p for p in (lowered.find(t.lower()) for t in terms or () if t) if p >= 0]
    start = max(min(positions) - width // 4, 0) if positions else 0
    start = min(start, len(text) - width)
    piece = text[start : start + width]
    return ("…" if start > 0 else "") + piece + ("…" if start + width < len(text) else "")

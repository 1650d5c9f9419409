"""The matching service: one engine per app process, built and refreshed from the database.

Each app keeps one :class:`MatchingService` in ``app.extensions["matching"]``. It wraps a
:class:`matching.MatchEngine` built from the PUBLISHED opportunities and products.

Sources of truth and accelerators:

* The database is the source of truth. Every document vector lives in the embedding cache
  (:mod:`marketplace.services.matching.cache`), keyed by (kind, id, sha256 of the document
  text, encoder fingerprint).
* ``MATCHING_INDEX_DIR`` holds snapshots written by :meth:`matching.MatchEngine.save`
  (``snap-<corpus version>-<fingerprint>/``, including the fitted encoder state) and a
  ``current.json`` pointer. They only make a start faster: a missing or stale snapshot is
  rebuilt from the database and the cache. A snapshot is never written while some entry
  still waits for its vector.
* The offline encoder is fitted on :meth:`MatchingService.rebuild` (``flask matching
  rebuild`` / ``refit``, or the encoding job when no fitted state exists), never on an edit.

Who encodes (DESIGN.md, "The matching engine at run time"): **the request path never
encodes a corpus entry.** Inside a request (:func:`flask.has_request_context`) the service
only reads vectors from the cache; a published entry without a cached vector is indexed
*pending*: a zero vector, so its dense score is 0 while BM25 and the structured signals find
it as usual, and the encoding job (:mod:`marketplace.services.matching.encoding`) is queued.
The job stores the vector and bumps the ``vectors`` row of ``index_state``; the next refresh
of every worker swaps the zero vector for the real one. Outside a request (CLI, jobs, scripts, benchmarks)
the service encodes what the cache lacks itself, as a background process may.

Queries still encode on the request path, because they are not corpus entries: the free
text of a search, the one unpublished entry (draft, entry under review) that is the query on
its own matching page, and the sentences of the shown hits for the 「语义最接近」 evidence
(per query, capped and cached by the engine; see docs/matching.md).

Freshness: services bump :mod:`marketplace.services.index_sync` whenever what is public
changes; the encoding job and rebuilds bump its ``vectors`` row. Before every query the
service reads both rows (one small query); when one moved, it
refreshes incrementally: it compares ``(id, updated_at)`` of the published rows per side with
what it indexed, upserts the new or changed entries, removes the ones no longer published,
and retries the pending ones against the cache. When the row does not exist (nothing was
ever bumped) the comparison runs on every query. When a ``flask matching rebuild`` in another
process has written a snapshot with another encoder fingerprint, the worker reloads it.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
from flask import has_request_context
from sqlalchemy import select

from marketplace.extensions import db
from marketplace.models import EntryKind, IndexState, Opportunity, Product
from marketplace.reference import reference
from marketplace.services import index_sync
from marketplace.services.matching import cache
from marketplace.services.matching.checks import check_k, check_query_text, check_side
from marketplace.services.matching.items import (
    SIDES,
    Entry,
    item_for,
    load_published_items,
    load_rows,
    published_stamps,
    text_hash,
)
from matching import Encoder, Filters, Hit, IndexMismatch, Item, MatchConfig, MatchEngine, document_text
from matching.encoders import build_encoder, load_encoder

logger = logging.getLogger("marketplace.services.matching")

#: Near-duplicates shown on a detail page.
SIMILAR_K = 5
#: Bumped whenever the way an Item is built from a row changes (invalidates snapshots).
ITEM_FORMAT = 1
POINTER_FILE = "current.json"

Progress = Callable[[int, int], None]
Key = tuple[str, int]
#: The ``index_state`` row bumped when vectors were stored or the encoder was refitted (what
#: is public did not change, so the portal's keyword index need not refresh).
VECTORS = "vectors"
VersionRow = tuple[int, datetime | None]
SyncStamp = tuple[VersionRow | None, VersionRow | None]
#: Set while the encoding job runs (see :meth:`MatchingService.may_encode_corpus`).
IN_ENCODING_JOB: ContextVar[bool] = ContextVar("in_encoding_job", default=False)


# -------------------------------------------------------------------- results


@dataclass
class MatchResult:
    """A published entry paired with the engine's hit (score breakdown and reasons)."""

    entry: Entry
    hit: Hit

    @property
    def organization(self) -> str:
        return self.entry.owner.name


@dataclass
class MatchingStatus:
    """What the organizer pages and ``flask matching`` show about the engine."""

    enabled: bool
    model_spec: str | None
    encoder_name: str | None
    fingerprint: str | None
    fallback_reason: str | None
    counts: dict[str, int]
    index_kind: dict[str, str]
    version: int | None
    fitted_on: int | None
    #: Published entries still waiting for their vector (found lexically until the job ran).
    pending: int = 0

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def refit_advised(self) -> bool:
        """The corpus has grown by half since the offline encoder was fitted."""
        return bool(self.fitted_on and self.total >= 20 and self.total > 1.5 * self.fitted_on)


@dataclass
class BuildReport:
    """Outcome of a full build (``flask matching rebuild`` / ``refit``)."""

    counts: dict[str, int]
    encoded: int
    cached: int
    encoder_name: str
    fingerprint: str | None
    previous_fingerprint: str | None
    pruned: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    #: Entries indexed without a vector (only when built inside a request).
    pending: int = 0


@dataclass
class EntryReport:
    """Everything the matching page of one entry shows."""

    entry: Entry
    results: list[MatchResult]
    similar: list[MatchResult]
    status: MatchingStatus | None


# -------------------------------------------------------------------- the lexical-only stand-in


class LexicalOnlyEncoder(Encoder):
    """Stands in for an offline encoder that was never fitted, on the request path.

    Fitting means reading the whole corpus, which a request must not do. Until the encoding
    job has fitted the encoder and written its state to the snapshot, the engine is built with
    this stand-in: every vector is zero, so BM25 and the structured signals rank alone.
    """

    name = "lexical-only"
    dim = 1
    is_fitted = True
    fingerprint = "lexical-only"

    def fit(self, texts: Sequence[str]) -> LexicalOnlyEncoder:
        return self

    def encode(self, texts: Sequence[str], kind: Literal["query", "document"] = "document") -> np.ndarray:
        return np.zeros((len(texts), 1), dtype=np.float32)

    def save(self, directory: str | os.PathLike[str]) -> None:
        raise RuntimeError("the lexical-only stand-in is never saved")


def _is_real(encoder: Encoder) -> bool:
    """A fitted encoder that produces real vectors (not the lexical-only stand-in)."""
    return encoder.is_fitted and not isinstance(encoder, LexicalOnlyEncoder)


# -------------------------------------------------------------------- the service


class MatchingService:
    """Per-app holder of the matching engine; built lazily, refreshed incrementally.

    Thread-safe: one lock guards building and refreshing; the engine locks its own queries.
    """

    def __init__(
        self,
        model_spec: str | None,
        index_dir: str | os.PathLike[str],
        hnsw_threshold: int = 20_000,
        config: MatchConfig | None = None,
        enabled: bool = True,
        model_dir: str | os.PathLike[str] | None = None,
        evidence_explicit: bool = False,
        weights: dict[str, Any] | None = None,
    ) -> None:
        spec = (model_spec or "").strip() or None
        if spec and not spec.startswith(("st:", "offline")) and spec.lower() not in {"default", "e5-small"}:
            spec = f"st:{spec}"
        self.model_spec = spec
        #: Where installed models (e5-small) live; ``None``: ``$MATCHING_MODEL_DIR`` or instance/models.
        self.model_dir = model_dir
        self.index_dir = Path(index_dir)
        self.hnsw_threshold = int(hnsw_threshold)
        self.config = config or MatchConfig()
        #: The ``MATCHING_WEIGHTS`` overrides, applied on top of the running encoder's defaults.
        self.weights: dict[str, Any] | None = weights
        #: ``evidence_max_hits`` was set in ``MATCHING_WEIGHTS`` (see :meth:`engine_config`).
        self.evidence_explicit = bool(evidence_explicit)
        self.enabled = bool(enabled)
        self._lock = threading.RLock()
        self._template: Encoder | None = None
        self._fallback_reason: str | None = None
        self._engine: MatchEngine | None = None
        self._stamps: dict[str, dict[int, datetime]] = {side: {} for side in SIDES}
        self._synced: SyncStamp | None = None
        self._fitted_on: int | None = None
        #: Entries indexed with a zero vector until the job has stored theirs.
        self._pending: set[Key] = set()
        #: Pending entries the encoding job was already queued for (by this process).
        self._requested: set[Key] = set()
        self._job_wanted = False

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> MatchingService:
        return cls(
            model_spec=config.get("MATCHING_MODEL"),
            index_dir=config["MATCHING_INDEX_DIR"],
            hnsw_threshold=int(config.get("MATCHING_HNSW_THRESHOLD", 20_000)),
            config=MatchConfig.from_mapping(config.get("MATCHING_WEIGHTS") or {}),
            enabled=bool(config.get("MATCHING_ENABLED", True)),
            model_dir=config.get("MATCHING_MODEL_DIR"),
            evidence_explicit="evidence_max_hits" in (config.get("MATCHING_WEIGHTS") or {}),
            weights=dict(config.get("MATCHING_WEIGHTS") or {}),
        )

    # ---------------------------------------------------------------- encoders

    def _base_encoder(self) -> Encoder:
        """The configured encoder, built once (a pretrained model is loaded only here)."""
        if self._template is None:
            encoder = build_encoder(self.model_spec, model_dir=self.model_dir)
            self._fallback_reason = encoder.fallback_reason
            self._template = encoder
        return self._template

    def _fresh_encoder(self) -> Encoder:
        """An encoder ready to fit: a copy of the unfitted offline template, or the pretrained one."""
        base = self._base_encoder()
        return base if base.is_fitted else copy.deepcopy(base)

    def engine_config(self) -> MatchConfig:
        """The fusion config of the engine. With a pretrained encoder (e5-small) the sentence
        evidence is off unless ``MATCHING_WEIGHTS`` sets ``evidence_max_hits``: encoding up to
        12 sentences of each of 20 hits on the request path costs seconds when the sentence
        cache is cold (docs/benchmarks.md, "Run-time targets"). The offline encoder keeps it."""
        base = self._base_encoder()
        config = self.config
        if self.weights is not None:
            # The running encoder's shipped defaults (MatchConfig.for_encoder), then the overrides.
            config = MatchConfig.for_encoder(base.name, self.weights)
        if base.is_fitted and not self.evidence_explicit and config.evidence_max_hits:
            return dataclasses.replace(config, evidence_max_hits=0)
        return config

    @property
    def fallback_reason(self) -> str | None:
        self._base_encoder()
        return self._fallback_reason

    @property
    def encoder(self) -> Encoder | None:
        """The encoder of the current engine (``None`` before the first query)."""
        return self._engine.encoder if self._engine is not None else None

    # ---------------------------------------------------------------- snapshots

    def _read_pointer(self) -> dict[str, Any] | None:
        try:
            return json.loads((self.index_dir / POINTER_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def _snapshot_dir(self) -> Path | None:
        pointer = self._read_pointer()
        if not pointer or not isinstance(pointer.get("snapshot"), str):
            return None
        path = self.index_dir / Path(pointer["snapshot"]).name
        return path if path.is_dir() else None

    def _corpus_version(self, stamps: dict[str, dict[int, datetime]]) -> str:
        h = hashlib.sha256()
        h.update(json.dumps([ITEM_FORMAT, self.hnsw_threshold, list(reference().tags)]).encode())
        for side in SIDES:
            for item_id in sorted(stamps[side]):
                h.update(f"{side}:{item_id}:{stamps[side][item_id].isoformat()}\n".encode())
        return h.hexdigest()[:16]

    def _save_snapshot(self, engine: MatchEngine, version: str) -> None:
        """Write a snapshot next to the others, then switch the pointer (atomically)."""
        if not _is_real(engine.encoder):
            return
        try:
            self.index_dir.mkdir(parents=True, exist_ok=True)
            name = f"snap-{version}-{engine.encoder.fingerprint.replace(':', '_')[:32]}"
            final = self.index_dir / name
            if not final.is_dir():
                tmp = self.index_dir / f"tmp-{uuid.uuid4().hex}"
                engine.save(tmp, version)
                try:
                    os.rename(tmp, final)
                except OSError:  # another worker wrote the same snapshot first
                    shutil.rmtree(tmp, ignore_errors=True)
            pointer = {
                "snapshot": name,
                "corpus_version": version,
                "encoder": engine.encoder.name,
                "fingerprint": engine.encoder.fingerprint,
                "fitted_on": self._fitted_on,
            }
            tmp_pointer = self.index_dir / f".{POINTER_FILE}.{uuid.uuid4().hex}"
            tmp_pointer.write_text(json.dumps(pointer, ensure_ascii=False), encoding="utf-8")
            os.replace(tmp_pointer, self.index_dir / POINTER_FILE)
            self._prune_snapshots(keep=name)
        except OSError as exc:
            # The snapshot is only an accelerator: a read-only or full disk must not break queries.
            logger.warning("matching: cannot write the index snapshot in %s: %s", self.index_dir, exc)

    def _prune_snapshots(self, keep: str) -> None:
        cutoff = time.time() - 3600
        for path in self.index_dir.iterdir():
            old_tmp = path.name.startswith("tmp-") and path.stat().st_mtime < cutoff
            if (path.name.startswith("snap-") and path.name != keep) or old_tmp:
                shutil.rmtree(path, ignore_errors=True)

    # ---------------------------------------------------------------- the embedding cache

    @staticmethod
    def may_encode_corpus() -> bool:
        """Whether this call may encode corpus entries: never on the request path, except
        inside the encoding job itself (which runs in the request only in immediate mode,
        ``HUEY_IMMEDIATE``, i.e. in tests)."""
        return IN_ENCODING_JOB.get() or not has_request_context()

    def _vectors_for(
        self, items: Sequence[Item], encoder: Encoder, progress: Progress | None = None
    ) -> tuple[dict[Key, np.ndarray], int, set[Key]]:
        """Vectors of ``items`` from the cache; the missing ones are encoded and cached
        outside a request, or left out and returned as pending inside one.

        Returns (vectors, #encoded, pending keys)."""
        vectors = cache.cached_vectors(items, encoder)
        missing = [i for i in items if (i.side, i.id) not in vectors]
        if not missing:
            return vectors, 0, set()
        if not self.may_encode_corpus():
            return vectors, 0, {(i.side, i.id) for i in missing}
        vectors.update(cache.encode_and_store(missing, encoder, progress))
        return vectors, len(missing), set()

    @staticmethod
    def _with_zero_vectors(items: Sequence[Item], vectors: dict[Key, np.ndarray], dim: int) -> dict:
        """``vectors`` plus a zero vector for every item without one (dense score 0)."""
        zero = np.zeros(dim, dtype=np.float32)
        return {**{(i.side, i.id): zero for i in items}, **vectors}

    def _note_pending(self, keys: set[Key]) -> None:
        """Remember entries indexed without their vector; queue the job for the new ones."""
        self._pending |= keys
        if keys - self._requested:
            self._requested |= keys
            self._job_wanted = True

    def _queue_encoding(self) -> bool:
        """Queue the encoding job (outside the service lock). Returns whether it already ran
        here (immediate mode, i.e. tests)."""
        if not self._job_wanted:
            return False
        self._job_wanted = False
        from marketplace.services.matching import encoding

        return encoding.queue_now()

    def prune_cache(self) -> int:
        """Delete cache rows of other fingerprints and of texts no longer published."""
        with self._lock:
            self._sync()
            engine = self._engine
            if engine is None or not _is_real(engine.encoder):
                return 0
            keep = {(i.side, i.id, text_hash(i)) for side in SIDES for i in load_published_items(side)}
            return cache.prune(engine.encoder.fingerprint, keep)

    def writer_encoder(self) -> Encoder | None:
        """The encoder the encoding job writes vectors with: the pretrained model, or the fitted
        offline state of the current snapshot; ``None`` when the offline encoder was never
        fitted (then a full :meth:`rebuild` has to fit it first)."""
        base = self._base_encoder()
        if base.is_fitted:
            return base
        return self._saved_encoder()

    # ---------------------------------------------------------------- building

    @staticmethod
    def _read_sync_stamp() -> SyncStamp:
        """(version, updated_at) of the ``entries`` row (what is public) and of the ``vectors``
        row (new vectors or a new encoder state), in one query; ``None`` for a missing row."""
        rows = {
            name: (version, updated_at)
            for name, version, updated_at in db.session.execute(
                select(IndexState.name, IndexState.version, IndexState.updated_at).where(
                    IndexState.name.in_((index_sync.ENTRIES, VECTORS))
                )
            )
        }
        return rows.get(index_sync.ENTRIES), rows.get(VECTORS)

    def _build(
        self,
        stamps: dict[str, dict[int, datetime]],
        encoder: Encoder | None,
        progress: Progress | None = None,
    ) -> BuildReport:
        """Build the engine from the database and the cache; fit ``encoder`` if it is unfitted
        (outside a request; inside one the engine is lexical-only until the job has fitted it)."""
        timings: dict[str, float] = {}
        started = time.perf_counter()
        items = [item for side in SIDES for item in load_published_items(side)]
        stamps = {
            side: {i.id: stamps[side][i.id] for i in items if i.side == side and i.id in stamps[side]}
            for side in SIDES
        }
        timings["load"] = time.perf_counter() - started
        encoder = encoder or self._fresh_encoder()
        if not encoder.is_fitted and items:
            if self.may_encode_corpus():
                started = time.perf_counter()
                encoder.fit([document_text(i) for i in items])
                self._fitted_on = len(items)
                timings["fit"] = time.perf_counter() - started
            else:
                encoder = LexicalOnlyEncoder()
        encoded = 0
        pending: set[Key] = set()
        engine = MatchEngine(encoder, config=self.engine_config(), hnsw_threshold=self.hnsw_threshold)
        if encoder.is_fitted:
            started = time.perf_counter()
            if _is_real(encoder):
                vectors, encoded, pending = self._vectors_for(items, encoder, progress)
            else:
                vectors, pending = {}, {(i.side, i.id) for i in items}
            timings["encode"] = time.perf_counter() - started
            started = time.perf_counter()
            engine.build(items, self._with_zero_vectors(items, vectors, encoder.dim) if pending else vectors)
            timings["index"] = time.perf_counter() - started
            if not pending:
                started = time.perf_counter()
                self._save_snapshot(engine, self._corpus_version(stamps))
                timings["save"] = time.perf_counter() - started
        self._engine = engine
        # Rows published between the two reads are indexed without a stamp: the next refresh
        # upserts them again, which is harmless.
        self._stamps = stamps
        self._pending = set()
        self._requested &= pending  # keep: still waiting for the job already queued
        self._note_pending(pending)
        counts = {side: engine.count(side) for side in SIDES}
        return BuildReport(
            counts=counts,
            encoded=encoded,
            cached=len(items) - encoded - len(pending),
            encoder_name=encoder.name,
            fingerprint=encoder.fingerprint if _is_real(encoder) else None,
            previous_fingerprint=None,
            timings=timings,
            pending=len(pending),
        )

    def _load_or_build(self) -> None:
        """Start: load the snapshot if it matches the corpus, else rebuild from DB + cache."""
        stamps = {side: published_stamps(side) for side in SIDES}
        version = self._corpus_version(stamps)
        base = self._base_encoder()
        snapshot = self._snapshot_dir()
        if snapshot is not None:
            try:
                self._engine = MatchEngine.load(
                    snapshot,
                    encoder=self._fresh_encoder(),
                    expected_corpus_version=version,
                    config=self.engine_config(),
                )
                self._stamps = stamps
                self._pending, self._requested = set(), set()
                self._fitted_on = (self._read_pointer() or {}).get("fitted_on")
                return
            except IndexMismatch as exc:
                logger.info(
                    "matching: snapshot %s not used (%s); rebuilding from the database", snapshot, exc
                )
        self._build(stamps, self._saved_encoder() if not base.is_fitted else None)

    def _saved_encoder(self) -> Encoder | None:
        """The fitted offline encoder of the current snapshot, if it is usable."""
        snapshot = self._snapshot_dir()
        if snapshot is None:
            return None
        try:
            saved = load_encoder(snapshot / "encoder")
        except Exception as exc:  # noqa: BLE001 - any unreadable state means "refit"
            logger.info("matching: saved encoder state not usable (%s); refitting", exc)
            return None
        if saved.name != self._base_encoder().name or not saved.is_fitted:
            return None
        self._fitted_on = (self._read_pointer() or {}).get("fitted_on")
        return saved

    def rebuild(
        self, refit: bool = True, progress: Progress | None = None, prune: bool = True
    ) -> BuildReport:
        """Full build from the database (``flask matching rebuild``, never inside a request).

        ``refit`` fits a fresh offline encoder on the current corpus (a new fingerprint when
        the corpus changed, so vectors are re-encoded); otherwise the fitted state of the
        current engine or snapshot is kept. Every vector the cache lacks is encoded here, in
        this process. ``prune`` then drops cache rows that no longer match. Other workers
        notice the new snapshot and vectors on their next query.
        """
        if not self.may_encode_corpus():
            raise RuntimeError("a full rebuild encodes the corpus: run it from the CLI or a job")
        with self._lock:
            current = self._engine.encoder if self._engine is not None else None
            previous = current.fingerprint if current is not None and _is_real(current) else None
            encoder: Encoder | None = None
            if not refit:
                if current is not None and _is_real(current):
                    encoder = current
                elif not self._base_encoder().is_fitted:
                    encoder = self._saved_encoder()
            stamps = {side: published_stamps(side) for side in SIDES}
            report = self._build(stamps, encoder, progress)
            report.previous_fingerprint = previous
            # Tell the other workers (they reload when the snapshot's fingerprint differs).
            index_sync.bump(VECTORS)
            db.session.commit()
            self._synced = self._read_sync_stamp()
            if prune:
                report.pruned = self.prune_cache()
            return report

    def _refresh(self) -> None:
        engine = self._engine
        assert engine is not None
        pointer = self._read_pointer()
        encoder = engine.encoder
        if not _is_real(encoder):
            self._load_or_build()  # lexical-only: adopt the fitted state once the job wrote it
            return
        if (
            pointer
            and encoder.is_fitted
            and pointer.get("encoder") == encoder.name
            and pointer.get("fingerprint") != encoder.fingerprint
        ):
            self._load_or_build()  # another process refitted: adopt its encoder
            return
        current = {side: published_stamps(side) for side in SIDES}
        if not encoder.is_fitted:
            if any(current.values()):
                self._build(current, None)
            return
        for side in SIDES:
            known = self._stamps[side]
            for item_id in [i for i in known if i not in current[side]]:
                engine.remove(side, item_id)
                del known[item_id]
                self._pending.discard((side, item_id))
            changed = {i for i, stamp in current[side].items() if known.get(i) != stamp}
            waiting = {i for s, i in self._pending if s == side and i in current[side]} - changed
            if not changed and not waiting:
                continue
            items = load_published_items(side, sorted(changed | waiting))
            vectors, _, pending = self._vectors_for(items, encoder)
            for item in items:
                key = (item.side, item.id)
                if key in pending:
                    if item.id in changed:  # new or edited text: indexed lexically for now
                        engine.upsert(item, np.zeros(encoder.dim, dtype=np.float32))
                else:
                    engine.upsert(item, vectors[key])
                    self._pending.discard(key)
                    self._requested.discard(key)
                known[item.id] = current[side][item.id]
            self._note_pending(pending)

    def _sync(self) -> MatchEngine | None:
        """Bring the engine up to date with the database (see the module docstring)."""
        if not self.enabled:
            return None
        stamp = self._read_sync_stamp()
        with self._lock:
            if self._engine is None:
                self._load_or_build()
            elif stamp[0] is None or stamp != self._synced:
                self._refresh()
            self._synced = stamp
        if self._queue_encoding():
            return self._sync()  # the job ran in this process: take its vectors now
        return self._engine

    def preload(self) -> None:
        """Load the encoder (the e5-small model) now, e.g. in a gunicorn master before it forks,
        so that the workers share its memory pages copy-on-write. Encodes nothing."""
        if self.enabled:
            self._base_encoder()

    @property
    def pending(self) -> int:
        """Published entries indexed without their vector yet (lexical and structured only)."""
        engine = self._engine
        if engine is not None and not _is_real(engine.encoder):
            return len(engine)
        return len(self._pending)

    # ---------------------------------------------------------------- queries

    def _results(self, side: str, hits: list[Hit]) -> list[MatchResult]:
        rows = load_rows(side, [h.id for h in hits])
        return [MatchResult(rows[h.id], h) for h in hits if h.id in rows]

    def products_for_opportunity(
        self, opportunity: Opportunity, k: int = 20, filters: Filters | None = None
    ) -> list[MatchResult]:
        """Published products ranked for an opportunity (which may itself be unpublished)."""
        check_k(k)
        engine = self._sync()
        if engine is None:
            return []
        return self._results(EntryKind.PRODUCT, engine.products_for(item_for(opportunity), k, filters))

    def opportunities_for_product(
        self, product: Product, k: int = 20, filters: Filters | None = None
    ) -> list[MatchResult]:
        """Published opportunities ranked for a product (which may itself be unpublished)."""
        check_k(k)
        engine = self._sync()
        if engine is None:
            return []
        return self._results(EntryKind.OPPORTUNITY, engine.opportunities_for(item_for(product), k, filters))

    def search(self, text: str, side: str, k: int = 20, filters: Filters | None = None) -> list[MatchResult]:
        """Free text against the published entries of one side."""
        text = check_query_text(text)
        check_side(side)
        check_k(k)
        engine = self._sync()
        if engine is None:
            return []
        return self._results(side, engine.search(text, side, k, filters))

    def similar(self, kind: str, entry: Entry, k: int = SIMILAR_K) -> list[MatchResult]:
        """Published near-duplicates of ``entry`` on its own side (never the entry itself)."""
        check_side(kind)
        check_k(k)
        engine = self._sync()
        if engine is None:
            return []
        item = item_for(entry)
        if engine.get(kind, entry.id) == item:
            hits = engine.similar(kind, entry.id, k)
        else:
            hits = self._similar_unindexed(engine, item, k)
        return self._results(kind, hits)

    def _similar_unindexed(self, engine: MatchEngine, item: Item, k: int) -> list[Hit]:
        """Near-duplicates of an entry that is not indexed (a draft, an edit under review, an
        import row): its vector against the side's vectors, as in :meth:`MatchEngine.similar`."""
        if not _is_real(engine.encoder):
            return []
        vec = engine.encode_items([item])[0]  # the one unpublished entry that is the query
        return engine.similar_to(item, vec, k)

    def status(self) -> MatchingStatus:
        engine = self._sync()
        encoder = engine.encoder if engine is not None else None
        counts = {side: engine.count(side) if engine is not None else 0 for side in SIDES}
        return MatchingStatus(
            enabled=self.enabled,
            model_spec=self.model_spec,
            encoder_name=encoder.name if encoder is not None else None,
            fingerprint=encoder.fingerprint if encoder is not None and _is_real(encoder) else None,
            fallback_reason=self.fallback_reason if self.enabled else None,
            counts=counts,
            # VectorIndex switches to HNSW once a side reaches the threshold.
            index_kind={side: "hnsw" if n >= self.hnsw_threshold else "flat" for side, n in counts.items()},
            version=self._synced[0][0] if self._synced and self._synced[0] else None,
            fitted_on=self._fitted_on,
            pending=self.pending,
        )


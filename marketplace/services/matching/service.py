"""The matching service: one per app process, serving a shared, prebuilt engine version.

Each app keeps one :class:`MatchingService` in ``app.extensions["matching"]``. It serves a
:class:`matching.MatchEngine` over the PUBLISHED opportunities and products.

**Versions, built once, outside requests, shared** (issue 13). An engine version is written by
:meth:`MatchingService.build_version`, which only the background job
(:mod:`marketplace.services.matching.encoding`, ``matching.encode_entries``) and ``flask
matching rebuild`` run: items, the BM25 score matrix, the vectors and the FAISS index go into a
fresh folder of :class:`~marketplace.services.index_files.IndexStore` (root
``MATCHING_INDEX_DIR``, name ``engine``), which is then published by renaming it and switching the
``engine.json`` pointer atomically. A version is named by a hash of the items' content and the
encoder fingerprint, so the same data is never built twice. Web workers only **open** the current
version (:meth:`matching.MatchEngine.load`: ``np.load(mmap_mode="r")`` and FAISS
``IO_FLAG_MMAP_IFC``), so every worker on the host shares one copy of the index pages. Before each
query a worker ``stat``s the pointer; when it names a new version, the worker opens it (no
restart, no build).

**A worker never builds while serving.** With no version at all (a new install), a request
queues the build job and answers from a delta of the published entries when there are at most
``DELTA_ONLY_LIMIT`` of them (BM25 with the delta's own statistics, vectors from the cache), or
empty, with :attr:`MatchingStatus.message` 「索引构建中」, until the job has published a version.
:meth:`build_version` raises inside a request (outside the job). Outside a request (CLI, job,
script, test) the service builds the first version itself.

**The delta.** Entries published, changed or withdrawn after a version was built are held in a
small in-memory delta per worker. The freshness check reads the ``index_state`` rows (one small
query per request); when they moved, it refreshes only the side the query searches (the other
side waits for a query of its own): it reads that side's rows whose ``updated_at`` is newer than
the version's stamp (one query) plus the count and id sum of all published rows (an index-only
scan; the older ones are those minus the newer ones), which catches rows published with an old
stamp or deleted (then the ids are compared). Only rows whose ``updated_at`` differs from the
delta's copy are loaded and tokenised again; entries still without their vector are looked up
in the embedding cache again only when the ``vectors`` row moved. New and changed entries go
into the delta (scored with the version's BM25 statistics, their vectors exactly), and changed
or withdrawn ones are masked out of the version at once. Publishing queues the job, whose new
version folds the delta in.

**Who encodes** (DESIGN.md, "The matching engine at run time"): the request path never encodes
a corpus entry. Inside a request (:func:`flask.has_request_context`) the service only reads
vectors from the embedding cache (:mod:`marketplace.services.matching.cache`); a delta entry
without a cached vector is indexed *pending* with a zero vector (found by BM25 and the
structured signals) and the encoding job is queued; when the job has stored the vector it bumps
the ``vectors`` row and the next refresh swaps it in. The offline encoder is fitted only by a
full rebuild (``flask matching rebuild``/``refit``, or the job when no version holds a fitted
state); until then a worker serves lexically (:class:`LexicalOnlyEncoder`).

Queries still encode on the request path, because they are not corpus entries: the free
text of a search, the one unpublished entry (draft, entry under review) that is the query on
its own matching page, and the sentences of the shown hits for the 「语义最接近」 evidence
(per query, capped and cached by the engine; see docs/matching.md).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
from flask import has_request_context
from sqlalchemy import func, select

from marketplace.extensions import db
from marketplace.models import EntryKind, EntryStatus, IndexState, Opportunity, Product
from marketplace.reference import reference
from marketplace.services import index_sync
from marketplace.services.index_files import IndexStore, IndexVersion
from marketplace.services.matching import cache, finetune, learning
from marketplace.services.matching.checks import check_k, check_query_text, check_side
from marketplace.services.matching.items import (
    MODELS,
    SIDES,
    Entry,
    item_for,
    load_published_items,
    load_rows,
    published_stamps,
    text_hash,
)
from matching import (
    Encoder,
    EncoderLoadError,
    Filters,
    Hit,
    IndexMismatch,
    Item,
    MatchConfig,
    MatchEngine,
    document_text,
)
from matching.encoders import build_encoder, load_encoder

logger = logging.getLogger("marketplace.services.matching")
PUBLISHED = EntryStatus.PUBLISHED

#: Near-duplicates shown on a detail page.
SIMILAR_K = 5
#: Bumped whenever the way an Item is built from a row changes (invalidates versions).
ITEM_FORMAT = 1
#: The IndexStore name of the engine's versions (``<MATCHING_INDEX_DIR>/engine.json`` + folders).
ENGINE_INDEX = "engine"
POINTER_FILE = f"{ENGINE_INDEX}.json"
#: With no version yet, a worker serves at most this many published entries from its delta.
DELTA_ONLY_LIMIT = 2000
BUILDING_MESSAGE = "索引构建中"

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
    #: No engine version exists yet: the build job is queued (「索引构建中」).
    building: bool = False
    #: The engine version in use, and how many entries its in-memory delta holds.
    index_version: str | None = None
    delta: int = 0

    @property
    def message(self) -> str | None:
        """What pages show about the index state (``None`` when it is ready)."""
        return BUILDING_MESSAGE if self.building else None

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
    #: The engine version built (or found up to date), and whether files were written.
    version: str | None = None
    built: bool = True


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
        #: The versioned engine index shared by every process on this host.
        self.store = IndexStore(self.index_dir, ENGINE_INDEX)
        self._version: IndexVersion | None = None
        self._pointer_seen: tuple[int, int] | None = None
        #: Rows the delta holds, with the ``updated_at`` they were indexed with.
        self._delta_rows: dict[str, dict[int, datetime]] = {side: {} for side in SIDES}
        #: Sides whose delta must be refreshed whatever the stamps say (a version was adopted).
        self._needs_refresh: set[str] = set(SIDES)
        #: The ``index_state`` stamp each side's delta was last refreshed at.
        self._side_synced: dict[str, SyncStamp] = {}
        #: No version and too many published entries to serve from a delta: answer empty.
        self._delta_capped = False
        self._template: Encoder | None = None
        #: The fine-tuned encoder the template was built from (issue 14 §3), if any.
        self._tuned: finetune.ActiveEncoder | None = None
        self._fallback_reason: str | None = None
        self._engine: MatchEngine | None = None
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
        """The configured encoder, built once (a pretrained model is loaded only here), or the
        fine-tuned version of it that ``flask matching finetune`` switched on."""
        # -- issue 14 §3: the active fine-tuned encoder (services/matching/finetune.py) --
        tuned = finetune.active_encoder(self, fresh=IN_ENCODING_JOB.get())
        if self._template is not None and tuned != self._tuned:
            self._template = None  # switched (or switched back): build the encoder again
        self._tuned = tuned
        if self._template is None and tuned is not None:
            try:
                self._template, self._fallback_reason = finetune.load_encoder(tuned), None
            except EncoderLoadError as exc:
                logger.warning("matching: fine-tuned encoder %s not usable (%s)", tuned.version, exc)
        # -- end issue 14 §3 --
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

    # ---------------------------------------------------------------- versions

    def current_version(self) -> IndexVersion | None:
        """The published engine version the pointer names (``None``: nothing built yet)."""
        return self.store.current()

    def _pointer_key(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.store.pointer)
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns)

    def _corpus_version(self, items: Sequence[Item], encoder: Encoder) -> str:
        """The name of the version built from ``items`` with ``encoder``: a hash of every item's
        content (not only ids and stamps: tests and clocks can repeat those), the encoder
        fingerprint and what else shapes the files."""
        h = hashlib.sha256()
        h.update(json.dumps([ITEM_FORMAT, self.hnsw_threshold, list(reference().tags)]).encode())
        h.update(MatchEngine.corpus_version_of(items).encode())
        h.update(encoder.fingerprint.encode())
        return h.hexdigest()[:20]

    def _open_current(self) -> bool:
        """Open the version the pointer names if it is not the one in use. Returns whether a
        version was (re)opened. A version that does not fit the configured encoder is ignored
        (the build job replaces it)."""
        self._pointer_seen = self._pointer_key()
        version = self.store.current()
        if version is None or (self._version is not None and version.version == self._version.version):
            return False
        try:
            engine = MatchEngine.load(
                version.path, encoder=self._fresh_encoder(), config=self.engine_config()
            )
        except IndexMismatch as exc:
            logger.info("matching: version %s not used (%s); the build job replaces it", version.version, exc)
            return False
        self._adopt(engine, version)
        return True

    def _adopt(self, engine: MatchEngine, version: IndexVersion | None) -> None:
        """Serve ``engine`` (opened from ``version``, or delta-only) from now on."""
        self._engine = engine
        self._version = version
        self._delta_rows = {side: {} for side in SIDES}
        self._pending, self._requested = set(), set()
        self._needs_refresh = set(SIDES)
        self._side_synced = {}
        if version is not None:
            self._fitted_on = version.meta.get("fitted_on")

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

    def build_version(
        self, encoder: Encoder | None = None, progress: Progress | None = None, force: bool = False
    ) -> BuildReport:
        """Build an engine version from the database and the cache and publish it (atomically).

        Runs in the build job, ``flask matching rebuild`` or a script, **never while serving a
        request** (it raises there). Fits ``encoder`` if it is unfitted and encodes whatever the
        cache lacks. When the current version was built from the same content with the same
        encoder, nothing is built (unless ``force``). Every worker opens the new version on its
        next query (the pointer file changed).
        """
        if not self.may_encode_corpus():
            raise RuntimeError("an engine version is built by the job or the CLI, never in a request")
        timings: dict[str, float] = {}
        started = time.perf_counter()
        stamps = {side: published_stamps(side) for side in SIDES}
        items = [item for side in SIDES for item in load_published_items(side)]
        timings["load"] = time.perf_counter() - started
        encoder = encoder or self._saved_encoder() or self._fresh_encoder()
        if not encoder.is_fitted and not items:
            # nothing to fit the offline encoder on, nothing to find: no version yet
            with self._lock:
                self._adopt(MatchEngine.delta_only(LexicalOnlyEncoder(), config=self.engine_config()), None)
            return BuildReport({side: 0 for side in SIDES}, 0, 0, encoder.name, None, None, built=False)
        if not encoder.is_fitted:
            started = time.perf_counter()
            encoder.fit([document_text(i) for i in items])
            self._fitted_on = len(items)
            timings["fit"] = time.perf_counter() - started
        started = time.perf_counter()
        vectors, encoded, _ = self._vectors_for(items, encoder, progress)
        timings["encode"] = time.perf_counter() - started
        counts = {side: sum(1 for i in items if i.side == side) for side in SIDES}
        name = self._corpus_version(items, encoder)
        current = self.store.current()
        report = BuildReport(
            counts=counts,
            encoded=encoded,
            cached=len(items) - encoded,
            encoder_name=encoder.name,
            fingerprint=encoder.fingerprint,
            previous_fingerprint=None,
            timings=timings,
            version=name,
        )
        if current is not None and current.version == name and not force:
            report.built = False
            if self._version is None or self._version.version != name:
                self._open_current()
            return report
        started = time.perf_counter()
        engine = MatchEngine(encoder, config=self.engine_config(), hnsw_threshold=self.hnsw_threshold)
        engine.build(items, vectors)
        timings["index"] = time.perf_counter() - started
        started = time.perf_counter()
        folder = self.store.new_build()
        try:
            engine.save(folder, name)
        except BaseException:
            self.store.discard(folder)
            raise
        newest = max((t for side in SIDES for t in stamps[side].values()), default=None)
        meta = {
            "stamp": newest.isoformat() if newest is not None else None,
            "counts": counts,
            "encoder": encoder.name,
            "fingerprint": encoder.fingerprint,
            "fitted_on": self._fitted_on,
        }
        self.store.publish(folder, name, meta)
        timings["save"] = time.perf_counter() - started
        del engine
        with self._lock:
            self._open_current()
        logger.info("matching: published engine version %s (%s)", name, counts)
        return report

    def _saved_encoder(self) -> Encoder | None:
        """The fitted offline encoder of the current version, if it is usable."""
        if self._base_encoder().is_fitted:
            return None
        version = self.store.current()
        if version is None:
            return None
        try:
            saved = load_encoder(version.path / "encoder")
        except Exception as exc:  # noqa: BLE001 - any unreadable state means "refit"
            logger.info("matching: saved encoder state not usable (%s); refitting", exc)
            return None
        if saved.name != self._base_encoder().name or not saved.is_fitted:
            return None
        self._fitted_on = version.meta.get("fitted_on")
        return saved

    def rebuild(
        self, refit: bool = True, progress: Progress | None = None, prune: bool = True
    ) -> BuildReport:
        """Full build from the database (``flask matching rebuild``, never inside a request).

        ``refit`` fits a fresh offline encoder on the current corpus (a new fingerprint when
        the corpus changed, so vectors are re-encoded); otherwise the fitted state of the
        current version is kept. Every vector the cache lacks is encoded here, in this process.
        A new version is always written and published; ``prune`` then drops cache rows that no
        longer match. Other workers open the new version on their next query.
        """
        if not self.may_encode_corpus():
            raise RuntimeError("a full rebuild encodes the corpus: run it from the CLI or a job")
        with self._lock:
            current = self._engine.encoder if self._engine is not None else None
            previous = current.fingerprint if current is not None and _is_real(current) else None
            if previous is None and self.store.current() is not None:
                previous = self.store.current().meta.get("fingerprint")
            encoder: Encoder | None = None
            if refit:
                encoder = self._fresh_encoder()
            report = self.build_version(encoder, progress, force=True)
            report.previous_fingerprint = previous
            index_sync.bump(VECTORS)
            db.session.commit()
            self._synced = self._read_sync_stamp()
            self._side_synced = dict.fromkeys(SIDES, self._synced)
            if prune:
                report.pruned = self.prune_cache()
            return report

    def _serve_without_version(self) -> None:
        """No version to open (nothing built yet) while serving: never build one here. Queue
        the build job and answer from a delta of the published entries when there are few of
        them (BM25 with the delta's own statistics, cached vectors or none); otherwise answer
        empty with the status 「索引构建中」 until the job has published a version."""
        self._job_wanted = True
        base = self._base_encoder()
        encoder = base if base.is_fitted else LexicalOnlyEncoder()
        total = sum(self._published_count(side) for side in SIDES)
        engine = MatchEngine.delta_only(encoder, config=self.engine_config())
        self._adopt(engine, None)
        self._delta_capped = total > DELTA_ONLY_LIMIT

    @staticmethod
    def _published_totals(side: str) -> tuple[int, int]:
        """(count, sum of the ids) of the published rows of one side, in one index-only scan."""
        model = MODELS[side]
        totals = select(func.count(), func.coalesce(func.sum(model.id), 0)).select_from(model)
        count, id_sum = db.session.execute(totals.where(model.status == PUBLISHED)).one()
        return int(count), int(id_sum)

    @staticmethod
    def _published_count(side: str) -> int:
        model = MODELS[side]
        count = select(func.count()).select_from(model).where(model.status == PUBLISHED)
        return db.session.scalar(count) or 0

    def _refresh_delta(self, sides: Sequence[str] = SIDES, stamp_now: SyncStamp | None = None) -> None:
        """Bring the delta of ``sides`` up to date: the rows changed since the version's stamp
        (one query per side), checked against the version's counts; see the module docstring.

        Incremental: only rows whose ``updated_at`` differs from the one the delta holds are
        loaded and tokenised again. Entries held without their vector (pending) are looked up
        in the embedding cache again only when the ``vectors`` row of ``stamp_now`` moved since
        the side was last refreshed (the encoding job bumps it after storing vectors), so a
        publish does not re-read every earlier pending entry."""
        engine = self._engine
        assert engine is not None
        version = self._version
        stamp = None
        if version is not None and version.meta.get("stamp"):
            stamp = datetime.fromisoformat(version.meta["stamp"])
        encoder = engine.encoder
        for side in sides:
            model = MODELS[side]
            if version is None:
                if self._delta_capped:
                    continue
                query = select(model.id, model.status, model.updated_at).where(model.status == PUBLISHED)
            else:
                query = select(model.id, model.status, model.updated_at)
                if stamp is not None:
                    query = query.where(model.updated_at > stamp)
            newer = {row_id: (status, updated) for row_id, status, updated in db.session.execute(query)}
            published = {i: updated for i, (status, updated) in newer.items() if status == PUBLISHED}
            gone = [i for i, (status, _) in newer.items() if status != PUBLISHED]
            if version is not None:
                extra, missing = self._base_drift(engine, side, model, stamp, newer)
                published.update(extra)
                gone.extend(missing)
            held = self._delta_rows[side]
            for item_id in gone:
                engine.remove(side, item_id)
                held.pop(item_id, None)
                self._pending.discard((side, item_id))
            for item_id in [i for i in held if i not in published]:
                engine.remove(side, item_id)  # an old delta row no longer newer: cannot happen
                del held[item_id]
            changed = {i for i, updated in published.items() if held.get(i) != updated}
            previous = self._side_synced.get(side)
            vectors_moved = side in self._needs_refresh or None in (stamp_now, previous)
            if not vectors_moved and previous is not None and stamp_now is not None:
                vectors_moved = previous[1] != stamp_now[1]
            waiting: set[int] = set()
            if vectors_moved:
                waiting = {i for s, i in self._pending if s == side and i in published} - changed
            if not changed and not waiting:
                continue
            items = load_published_items(side, sorted(changed | waiting))
            if _is_real(encoder):
                vectors, _, pending = self._vectors_for(items, encoder)
            else:  # lexical-only until the job has fitted the offline encoder
                vectors, pending = {}, {(i.side, i.id) for i in items}
            for item in items:
                key = (item.side, item.id)
                if key in pending:
                    if item.id in changed:  # new or edited text: indexed lexically for now
                        engine.upsert(item, np.zeros(encoder.dim, dtype=np.float32))
                else:
                    engine.upsert(item, vectors[key])
                    self._pending.discard(key)
                    self._requested.discard(key)
                held[item.id] = published[item.id]
            self._note_pending(pending if _is_real(encoder) else set())  # (the job is queued already)
        self._needs_refresh.difference_update(sides)

    def _base_drift(
        self, engine: MatchEngine, side: str, model: Any, stamp: datetime | None, newer: dict
    ) -> tuple[dict[int, datetime], list[int]]:
        """Rows not newer than the stamp that the version does not hold as they are: published
        later with an old ``updated_at`` (a frozen clock, a long transaction) or deleted. Found
        by one aggregate (count and sum of the ids); only when it disagrees, by comparing the ids.

        The older published rows are all published rows minus the newer published ones:
        ``count(*), sum(id) WHERE status = 'published'`` is an index-only scan, whereas the older
        rows themselves (``updated_at <= stamp``) are nearly the whole table.
        The sum also catches a deleted row and a late one that would leave the count unchanged."""
        n_published, id_sum = self._published_totals(side)
        newer_published = [i for i, (status, _) in newer.items() if status == PUBLISHED]
        base_ids = engine.base_ids(side)
        newer_ids = np.fromiter(newer, dtype=np.int64, count=len(newer))
        newer_in_base = newer_ids[np.isin(newer_ids, base_ids)]
        if (
            n_published - len(newer_published) == len(base_ids) - len(newer_in_base)
            and id_sum - sum(newer_published) == int(base_ids.sum()) - int(newer_in_base.sum())
        ):
            return {}, []
        rows = select(model.id, model.updated_at).where(model.status == PUBLISHED)
        if stamp is not None:
            rows = rows.where(model.updated_at <= stamp)
        old_rows = dict(db.session.execute(rows).all())
        old_ids = np.fromiter(old_rows, dtype=np.int64)
        extra = {int(i): old_rows[int(i)] for i in np.setdiff1d(old_ids, base_ids).tolist()}
        missing = [int(i) for i in np.setdiff1d(base_ids, old_ids).tolist() if int(i) not in newer]
        return extra, missing

    def _sync(self, sides: Sequence[str] = SIDES) -> MatchEngine | None:
        """Bring the engine up to date for a query of ``sides`` (see the module docstring): open
        a newer version if the pointer moved, else refresh the delta of ``sides`` when the
        ``index_state`` rows moved since that side was refreshed. A side no query needs is not
        read (a product search after a publish scans no opportunities); it is refreshed by the
        next query that needs it."""
        if not self.enabled:
            return None
        stamp = self._read_sync_stamp()
        with self._lock:
            if self._engine is None or self._version is None or self._pointer_key() != self._pointer_seen:
                self._open_current()
            if self._version is None:
                if self.may_encode_corpus():
                    self.build_version()  # CLI, job or script: it may build
                elif self._engine is None:
                    self._serve_without_version()
            stale = [
                side for side in sides
                if side in self._needs_refresh or stamp[0] is None or self._side_synced.get(side) != stamp
            ]
            if stale:
                self._refresh_delta(stale, stamp)
                self._side_synced.update(dict.fromkeys(stale, stamp))
            self._synced = stamp
        if self._queue_encoding():
            return self._sync(sides)  # the job ran in this process (immediate mode): take its version
        return self._engine

    def preload(self) -> None:
        """Load the encoder (the e5-small model) and open the current index version now, e.g. in
        a gunicorn master before it forks, so that the workers share their memory pages
        copy-on-write and a fresh worker's first query opens nothing. Encodes nothing, builds
        nothing and reads no database (the delta is refreshed by the first query)."""
        if not self.enabled:
            return
        self._base_encoder()
        try:
            with self._lock:
                self._open_current()
        except Exception:  # never keep a server from starting: the first query opens it
            logger.warning("matching: the index version could not be opened at start", exc_info=True)

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
        engine = self._sync((EntryKind.PRODUCT.value,))
        if engine is None:
            return []
        item = item_for(opportunity)
        # The learned re-ranker reorders the hits when a model is active (services/matching/learning.py).
        return self._results(EntryKind.PRODUCT, learning.rerank(item, engine.products_for(item, k, filters)))

    def opportunities_for_product(
        self, product: Product, k: int = 20, filters: Filters | None = None
    ) -> list[MatchResult]:
        """Published opportunities ranked for a product (which may itself be unpublished)."""
        check_k(k)
        engine = self._sync((EntryKind.OPPORTUNITY.value,))
        if engine is None:
            return []
        return self._results(EntryKind.OPPORTUNITY, engine.opportunities_for(item_for(product), k, filters))

    def search(self, text: str, side: str, k: int = 20, filters: Filters | None = None) -> list[MatchResult]:
        """Free text against the published entries of one side."""
        text = check_query_text(text)
        check_side(side)
        check_k(k)
        engine = self._sync((side,))
        if engine is None:
            return []
        return self._results(side, engine.search(text, side, k, filters))

    def similar(self, kind: str, entry: Entry, k: int = SIMILAR_K) -> list[MatchResult]:
        """Published near-duplicates of ``entry`` on its own side (never the entry itself)."""
        check_side(kind)
        check_k(k)
        engine = self._sync((kind,))
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
            # no version yet while there is something to index (the job is queued)
            building=self.enabled and self._version is None and (self._delta_capped or self.pending > 0
                                                                 or sum(counts.values()) > 0),
            index_version=self._version.version if self._version is not None else None,
            delta=engine.delta_size() if engine is not None else 0,
        )


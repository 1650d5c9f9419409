"""The app side of the matching engine: published entries in, ranked and explained matches out.

Each app keeps one :class:`MatchingService` in ``app.extensions["matching"]``. It wraps a
:class:`matching.MatchEngine` built from the PUBLISHED opportunities and products.

Sources of truth and accelerators:

* The database is the source of truth. Every document vector is cached in
  :class:`~marketplace.models.EmbeddingCache`, keyed by (kind, id, sha256 of the document
  text, encoder fingerprint), so a restart over an unchanged corpus encodes nothing.
* ``MATCHING_INDEX_DIR`` holds snapshots written by :meth:`matching.MatchEngine.save`
  (``snap-<corpus version>-<fingerprint>/``, including the fitted encoder state) and a
  ``current.json`` pointer. They only make a start faster: a missing or stale snapshot is
  rebuilt from the database and the cache. Deleting the directory loses nothing; the offline
  encoder is then refitted on the corpus, deterministically, so the same corpus gives the same
  fingerprint and the cache still hits.
* The offline encoder is fitted on :meth:`MatchingService.rebuild` (``flask matching
  rebuild`` / ``refit``), never on an ordinary edit.

Freshness: services bump :mod:`marketplace.services.index_sync` whenever what is public
changes. Before every query the service reads that row (one small query); when it moved, it
refreshes incrementally: it compares ``(id, updated_at)`` of the published rows per side with
what it indexed, upserts the new or changed entries (vector from the cache, or encoded and
cached) and removes the ones no longer published. When the row does not exist (nothing was
ever bumped) the comparison runs on every query. When a ``flask matching rebuild`` in another
process has written a snapshot with another encoder fingerprint, the worker reloads it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from flask import Flask, current_app
from sqlalchemy import delete, insert, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import joinedload, selectinload

from marketplace import timeutil
from marketplace.extensions import db
from marketplace.models import (
    EmbeddingCache,
    EntryKind,
    EntryStatus,
    IndexState,
    Maturity,
    Opportunity,
    Product,
    ProductField,
    ProductTag,
    User,
)
from marketplace.reference import reference
from marketplace.services import entries as entry_service
from marketplace.services import index_sync
from marketplace.services.accounts import require_staff
from marketplace.services.errors import NotFound, PermissionDenied, ValidationFailed
from matching import Encoder, Filters, Hit, IndexMismatch, Item, MatchConfig, MatchEngine, document_text
from matching.encoders import build_encoder, load_encoder

logger = logging.getLogger(__name__)

EXTENSION_KEY = "matching"
SIDES: tuple[str, ...] = (EntryKind.OPPORTUNITY.value, EntryKind.PRODUCT.value)
MAX_K = 100
MAX_QUERY_CHARS = 500
#: Near-duplicates shown on a detail page.
SIMILAR_K = 5
#: Bumped whenever the way an Item is built from a row changes (invalidates snapshots).
ITEM_FORMAT = 1
POINTER_FILE = "current.json"
_CHUNK = 500
_ENCODE_BATCH = 256
_MODELS: dict[str, type[Opportunity] | type[Product]] = {
    EntryKind.OPPORTUNITY: Opportunity,
    EntryKind.PRODUCT: Product,
}

Entry = Opportunity | Product
Progress = Callable[[int, int], None]


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


@dataclass
class EntryReport:
    """Everything the matching page of one entry shows."""

    entry: Entry
    results: list[MatchResult]
    similar: list[MatchResult]
    status: MatchingStatus | None


# -------------------------------------------------------------------- items from rows


@lru_cache(maxsize=8)
def _tag_patterns(tags: tuple[str, ...]) -> list[tuple[str, re.Pattern[str]]]:
    patterns = []
    for tag in tags:
        alternatives = [re.escape(a) for a in tag.split("/") if a]
        # ASCII alternatives (5G, AR, GIS) must not be part of a longer ASCII word.
        body = "|".join(f"(?<![A-Za-z0-9]){a}(?![A-Za-z0-9])" if a.isascii() else a for a in alternatives)
        patterns.append((tag, re.compile(body, re.IGNORECASE)))
    return patterns


def mentioned_tags(text: str) -> tuple[str, ...]:
    """Technology tags (from ``seeds/tags.json``) named in an opportunity's text.

    Opportunities have no tag field; deriving tags from the text lets the tag signal and the
    「技术标签」 reason work for needs that name a technology.
    """
    return tuple(tag for tag, pattern in _tag_patterns(reference().tags) if pattern.search(text))


def opportunity_item(
    id: int, title: str, description: str, category: str, area: str, city: str, county: str | None
) -> Item:
    return Item(
        id=id,
        side=EntryKind.OPPORTUNITY.value,
        title=title,
        text=description,
        categories=(category,),
        areas=(area,) if area else (),
        region_city=city,
        region_county=county or None,
        tags=mentioned_tags(f"{title}\n{description}"),
    )


def product_item(
    id: int,
    name: str,
    description: str,
    cases: str,
    categories: Sequence[str],
    areas: Iterable[str],
    tags: Sequence[str],
    maturity: str,
    city: str,
    county: str | None,
) -> Item:
    return Item(
        id=id,
        side=EntryKind.PRODUCT.value,
        title=name,
        text="\n".join(p for p in (description.strip(), (cases or "").strip()) if p),
        categories=tuple(sorted(categories)),
        areas=tuple(sorted(set(areas))),
        region_city=city,
        region_county=county or None,
        tags=tuple(sorted(tags)),
        maturity=maturity or None,
    )


def item_for(entry: Entry) -> Item:
    """The engine item of an entry row, whatever its status (a draft can be a query)."""
    if isinstance(entry, Opportunity):
        return opportunity_item(
            entry.id,
            entry.title,
            entry.description,
            entry.field_category,
            entry.field_area,
            entry.region_city,
            entry.region_county,
        )
    return product_item(
        entry.id,
        entry.name,
        entry.description,
        entry.cases,
        entry.categories,
        entry.areas,
        entry.tags,
        entry.maturity,
        entry.region_city,
        entry.region_county,
    )


def _chunks(values: Sequence[int], size: int = _CHUNK) -> Iterable[Sequence[int]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def load_published_items(side: str, ids: Sequence[int] | None = None) -> list[Item]:
    """Items of the published entries of one side (all, or those among ``ids``), by id."""
    if ids is not None:
        return [item for chunk in _chunks(sorted(ids)) for item in _load_items(side, chunk)]
    return _load_items(side, None)


def _load_items(side: str, ids: Sequence[int] | None) -> list[Item]:
    published = EntryStatus.PUBLISHED
    if side == EntryKind.OPPORTUNITY:
        stmt = select(
            Opportunity.id,
            Opportunity.title,
            Opportunity.description,
            Opportunity.field_category,
            Opportunity.field_area,
            Opportunity.region_city,
            Opportunity.region_county,
        ).where(Opportunity.status == published)
        if ids is not None:
            stmt = stmt.where(Opportunity.id.in_(ids))
        return [opportunity_item(*row) for row in db.session.execute(stmt.order_by(Opportunity.id))]

    stmt = select(
        Product.id,
        Product.name,
        Product.description,
        Product.cases,
        Product.maturity,
        Product.region_city,
        Product.region_county,
    ).where(Product.status == published)
    field_stmt = (
        select(ProductField.product_id, ProductField.category, ProductField.area)
        .join(Product, Product.id == ProductField.product_id)
        .where(Product.status == published)
    )
    tag_stmt = (
        select(ProductTag.product_id, ProductTag.tag)
        .join(Product, Product.id == ProductTag.product_id)
        .where(Product.status == published)
    )
    if ids is not None:
        stmt = stmt.where(Product.id.in_(ids))
        field_stmt = field_stmt.where(ProductField.product_id.in_(ids))
        tag_stmt = tag_stmt.where(ProductTag.product_id.in_(ids))
    categories: dict[int, list[str]] = {}
    areas: dict[int, list[str]] = {}
    for product_id, category, area in db.session.execute(field_stmt):
        categories.setdefault(product_id, []).append(category)
        areas.setdefault(product_id, []).append(area)
    tags: dict[int, list[str]] = {}
    for product_id, tag in db.session.execute(tag_stmt):
        tags.setdefault(product_id, []).append(tag)
    return [
        product_item(
            row.id,
            row.name,
            row.description,
            row.cases,
            categories.get(row.id, []),
            areas.get(row.id, []),
            tags.get(row.id, []),
            row.maturity,
            row.region_city,
            row.region_county,
        )
        for row in db.session.execute(stmt.order_by(Product.id))
    ]


def _published_stamps(side: str) -> dict[int, datetime]:
    model = _MODELS[side]
    rows = db.session.execute(select(model.id, model.updated_at).where(model.status == EntryStatus.PUBLISHED))
    return {item_id: updated_at for item_id, updated_at in rows}


def _load_rows(side: str, ids: Sequence[int]) -> dict[int, Entry]:
    """Published rows by id, with what the result cards show, in one query (+ selectins)."""
    if not ids:
        return {}
    model = _MODELS[side]
    if side == EntryKind.OPPORTUNITY:
        options = [joinedload(Opportunity.publisher)]
    else:
        options = [
            joinedload(Product.owner),
            selectinload(Product.field_rows),
            selectinload(Product.tag_rows),
        ]
    rows = db.session.scalars(
        select(model).where(model.id.in_(list(ids)), model.status == EntryStatus.PUBLISHED).options(*options)
    ).unique()
    return {row.id: row for row in rows}


def _text_hash(item: Item) -> str:
    return hashlib.sha256(document_text(item).encode("utf-8")).hexdigest()


# -------------------------------------------------------------------- input checks


def check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise ValidationFailed({"k": f"返回条数应为 1 到 {MAX_K} 之间的整数"})
    return k


def check_side(side: str) -> str:
    if side not in SIDES:
        raise ValidationFailed({"side": "检索对象只能是产品清单或机会清单"})
    return side


def check_query_text(text: str | None) -> str:
    text = (text or "").strip()
    if not text:
        raise ValidationFailed({"q": "请输入要检索的内容"})
    if len(text) > MAX_QUERY_CHARS:
        raise ValidationFailed({"q": f"检索内容不能超过{MAX_QUERY_CHARS}个字"})
    return text


def build_filters(
    target: str,
    region: str | None = None,
    maturity: str | None = None,
    tag: str | None = None,
    category: str | None = None,
    area: str | None = None,
    include_closed: bool = True,
) -> Filters:
    """Hard filters on the ``target`` side; an unknown or inapplicable value raises
    :class:`ValidationFailed` (field → Chinese message). Empty values mean "any".

    ``include_closed=False`` keeps only opportunities still open for answers (征集中).
    """
    check_side(target)
    ref = reference()
    errors: dict[str, str] = {}
    region, maturity, tag, category, area = (v or None for v in (region, maturity, tag, category, area))
    if region is not None and region not in ref.cities:
        errors["region"] = f"未知的地市：{region}"
    if category is not None and category not in ref.categories:
        errors["category"] = f"未知的应用领域：{category}"
    if area is not None and area not in ref.area_names:
        errors["area"] = f"未知的应用领域大类：{area}"
    if maturity is not None:
        if target != EntryKind.PRODUCT:
            errors["maturity"] = "机会清单不能按成熟度筛选"
        elif maturity not in {m.value for m in Maturity}:
            errors["maturity"] = f"未知的成熟度：{maturity}"
    if tag is not None:
        if target != EntryKind.PRODUCT:
            errors["tag"] = "机会清单不能按技术标签筛选"
        elif tag not in ref.tags:
            errors["tag"] = f"未知的技术标签：{tag}"
    if errors:
        raise ValidationFailed(errors)
    return Filters(
        categories=(category,) if category else None,
        areas=(area,) if area else None,
        region_city=region,
        maturity=maturity,
        tags=(tag,) if tag else None,
        allowed_ids=(
            open_opportunity_ids() if target == EntryKind.OPPORTUNITY and not include_closed else None
        ),
    )


def open_opportunity_ids() -> frozenset[int]:
    """Published opportunities whose deadline day (Beijing time) is not over."""
    return frozenset(
        db.session.scalars(
            select(Opportunity.id).where(
                Opportunity.status == EntryStatus.PUBLISHED,
                or_(Opportunity.deadline.is_(None), Opportunity.deadline >= timeutil.local_today()),
            )
        )
    )


def require_match_access(user: User | None, entry: Entry) -> None:
    """The matching pages of an entry are for its own organization and for organizers."""
    if entry_service.is_owner(user, entry) or _is_staff(user):
        return
    if entry.is_public:
        raise PermissionDenied("只有发布单位和组织方可以查看该条目的匹配结果")
    raise NotFound("条目不存在")


def _is_staff(user: User | None) -> bool:
    return bool(user is not None and user.is_authenticated and user.is_staff)


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
        self.enabled = bool(enabled)
        self._lock = threading.RLock()
        self._template: Encoder | None = None
        self._fallback_reason: str | None = None
        self._engine: MatchEngine | None = None
        self._stamps: dict[str, dict[int, datetime]] = {side: {} for side in SIDES}
        self._synced: tuple[int, datetime | None] | None = None
        self._fitted_on: int | None = None

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> MatchingService:
        return cls(
            model_spec=config.get("MATCHING_MODEL"),
            index_dir=config["MATCHING_INDEX_DIR"],
            hnsw_threshold=int(config.get("MATCHING_HNSW_THRESHOLD", 20_000)),
            config=MatchConfig.from_mapping(config.get("MATCHING_WEIGHTS") or {}),
            enabled=bool(config.get("MATCHING_ENABLED", True)),
            model_dir=config.get("MATCHING_MODEL_DIR"),
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
        if not engine.encoder.is_fitted:
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

    def _vectors_for(
        self, items: Sequence[Item], encoder: Encoder, progress: Progress | None = None
    ) -> tuple[dict[tuple[str, int], np.ndarray], int]:
        """Vectors of ``items``: from the cache, else encoded (and cached). Returns (vectors, #encoded)."""
        fingerprint = encoder.fingerprint
        hashes = {(i.side, i.id): _text_hash(i) for i in items}
        vectors: dict[tuple[str, int], np.ndarray] = {}
        for side in SIDES:
            ids = [i.id for i in items if i.side == side]
            for chunk in _chunks(ids):
                rows = db.session.execute(
                    select(
                        EmbeddingCache.item_id,
                        EmbeddingCache.text_hash,
                        EmbeddingCache.dim,
                        EmbeddingCache.vector,
                    ).where(
                        EmbeddingCache.fingerprint == fingerprint,
                        EmbeddingCache.item_kind == side,
                        EmbeddingCache.item_id.in_(chunk),
                    )
                )
                for item_id, text_hash, dim, blob in rows:
                    if hashes[(side, item_id)] == text_hash and dim == encoder.dim:
                        vectors[(side, item_id)] = np.frombuffer(blob, dtype=np.float32)
        missing = [i for i in items if (i.side, i.id) not in vectors]
        if progress is not None:
            progress(0, len(missing))
        for start in range(0, len(missing), _ENCODE_BATCH):
            batch = missing[start : start + _ENCODE_BATCH]
            encoded = encoder.encode([document_text(i) for i in batch], kind="document")
            rows = []
            for item, vec in zip(batch, encoded, strict=True):
                vec = np.ascontiguousarray(vec, dtype=np.float32)
                vectors[(item.side, item.id)] = vec
                rows.append(
                    {
                        "item_kind": item.side,
                        "item_id": item.id,
                        "text_hash": hashes[(item.side, item.id)],
                        "fingerprint": fingerprint,
                        "dim": int(vec.shape[0]),
                        "vector": vec.tobytes(),
                    }
                )
            self._store(rows)
            if progress is not None:
                progress(start + len(batch), len(missing))
        return vectors, len(missing)

    @staticmethod
    def _store(rows: list[dict[str, Any]]) -> None:
        """Insert cache rows on a separate connection; rows another worker stored first are skipped."""
        if not rows:
            return
        try:
            with db.engine.begin() as conn:
                conn.execute(insert(EmbeddingCache), rows)
        except IntegrityError:
            for row in rows:
                try:
                    with db.engine.begin() as conn:
                        conn.execute(insert(EmbeddingCache), [row])
                except IntegrityError:
                    continue

    def prune_cache(self) -> int:
        """Delete cache rows of other fingerprints and of texts no longer published."""
        with self._lock:
            self._sync()
            engine = self._engine
            if engine is None or not engine.encoder.is_fitted:
                return 0
            fingerprint = engine.encoder.fingerprint
            keep = {(i.side, i.id, _text_hash(i)) for side in SIDES for i in load_published_items(side)}
            stale = [
                row_id
                for row_id, kind, item_id, text_hash in db.session.execute(
                    select(
                        EmbeddingCache.id,
                        EmbeddingCache.item_kind,
                        EmbeddingCache.item_id,
                        EmbeddingCache.text_hash,
                    ).where(EmbeddingCache.fingerprint == fingerprint)
                )
                if (kind, item_id, text_hash) not in keep
            ]
            with db.engine.begin() as conn:
                removed = (
                    conn.execute(
                        delete(EmbeddingCache).where(EmbeddingCache.fingerprint != fingerprint)
                    ).rowcount
                    or 0
                )
                for chunk in _chunks(stale):
                    removed += (
                        conn.execute(delete(EmbeddingCache).where(EmbeddingCache.id.in_(chunk))).rowcount or 0
                    )
            return removed

    # ---------------------------------------------------------------- building

    @staticmethod
    def _read_sync_stamp() -> tuple[int, datetime | None] | None:
        row = db.session.execute(
            select(IndexState.version, IndexState.updated_at).where(IndexState.name == index_sync.ENTRIES)
        ).first()
        return (row[0], row[1]) if row is not None else None

    def _build(
        self,
        stamps: dict[str, dict[int, datetime]],
        encoder: Encoder | None,
        progress: Progress | None = None,
    ) -> BuildReport:
        """Build the engine from the database and the cache; fit ``encoder`` if it is unfitted."""
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
            started = time.perf_counter()
            encoder.fit([document_text(i) for i in items])
            self._fitted_on = len(items)
            timings["fit"] = time.perf_counter() - started
        encoded = 0
        engine = MatchEngine(encoder, config=self.config, hnsw_threshold=self.hnsw_threshold)
        if encoder.is_fitted:
            started = time.perf_counter()
            vectors, encoded = self._vectors_for(items, encoder, progress)
            timings["encode"] = time.perf_counter() - started
            started = time.perf_counter()
            engine.build(items, vectors)
            timings["index"] = time.perf_counter() - started
            started = time.perf_counter()
            self._save_snapshot(engine, self._corpus_version(stamps))
            timings["save"] = time.perf_counter() - started
        self._engine = engine
        # Rows published between the two reads are indexed without a stamp: the next refresh
        # upserts them again, which is harmless.
        self._stamps = stamps
        counts = {side: engine.count(side) for side in SIDES}
        return BuildReport(
            counts=counts,
            encoded=encoded,
            cached=len(items) - encoded,
            encoder_name=encoder.name,
            fingerprint=encoder.fingerprint if encoder.is_fitted else None,
            previous_fingerprint=None,
            timings=timings,
        )

    def _load_or_build(self) -> None:
        """Start: load the snapshot if it matches the corpus, else rebuild from DB + cache."""
        stamps = {side: _published_stamps(side) for side in SIDES}
        version = self._corpus_version(stamps)
        base = self._base_encoder()
        snapshot = self._snapshot_dir()
        if snapshot is not None:
            try:
                self._engine = MatchEngine.load(
                    snapshot,
                    encoder=self._fresh_encoder(),
                    expected_corpus_version=version,
                    config=self.config,
                )
                self._stamps = stamps
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
        """Full build from the database (``flask matching rebuild``).

        ``refit`` fits a fresh offline encoder on the current corpus (a new fingerprint when
        the corpus changed, so vectors are re-encoded); otherwise the fitted state of the
        current engine or snapshot is kept. ``prune`` then drops cache rows that no longer
        match. Other workers notice the new snapshot on their next query.
        """
        with self._lock:
            previous = (
                self._engine.encoder.fingerprint if self._engine and self._engine.encoder.is_fitted else None
            )
            encoder: Encoder | None = None
            if not refit:
                if self._engine is not None and self._engine.encoder.is_fitted:
                    encoder = self._engine.encoder
                elif not self._base_encoder().is_fitted:
                    encoder = self._saved_encoder()
            stamps = {side: _published_stamps(side) for side in SIDES}
            report = self._build(stamps, encoder, progress)
            report.previous_fingerprint = previous
            # Tell the other workers (they reload when the snapshot's fingerprint differs).
            index_sync.bump()
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
        if (
            pointer
            and encoder.is_fitted
            and pointer.get("encoder") == encoder.name
            and pointer.get("fingerprint") != encoder.fingerprint
        ):
            self._load_or_build()  # another process refitted: adopt its encoder
            return
        current = {side: _published_stamps(side) for side in SIDES}
        if not encoder.is_fitted:
            if any(current.values()):
                self._build(current, None)
            return
        for side in SIDES:
            known = self._stamps[side]
            for item_id in [i for i in known if i not in current[side]]:
                engine.remove(side, item_id)
                del known[item_id]
            changed = [i for i, stamp in current[side].items() if known.get(i) != stamp]
            if not changed:
                continue
            items = load_published_items(side, changed)
            vectors, _ = self._vectors_for(items, encoder)
            for item in items:
                engine.upsert(item, vectors[(item.side, item.id)])
                known[item.id] = current[side][item.id]

    def _sync(self) -> MatchEngine | None:
        """Bring the engine up to date with the database (see the module docstring)."""
        if not self.enabled:
            return None
        stamp = self._read_sync_stamp()
        with self._lock:
            if self._engine is None:
                self._load_or_build()
            elif stamp is None or stamp != self._synced:
                self._refresh()
            self._synced = stamp
            return self._engine

    # ---------------------------------------------------------------- queries

    def _results(self, side: str, hits: list[Hit]) -> list[MatchResult]:
        rows = _load_rows(side, [h.id for h in hits])
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
        """Near-duplicates of an entry that is not indexed (a draft, or an edit under review).

        Candidates come from the fused search with the entry's text; near-duplicates share most
        of their words, so they are among them. They are kept and ranked by cosine, as in
        :meth:`MatchEngine.similar`.
        """
        if not engine.encoder.is_fitted:
            return []
        vec = engine.encode_items([item])[0]
        threshold = engine.config.duplicate_threshold
        found = []
        for hit in engine.search(document_text(item), item.side, k=engine.config.candidate_pool):
            if hit.id == item.id:
                continue
            other = engine.vector(item.side, hit.id)
            cosine = float(np.dot(vec, other)) if other is not None else 0.0
            if cosine >= threshold:
                dense = max(0.0, min(1.0, cosine))
                found.append(
                    Hit(
                        id=hit.id,
                        side=hit.side,
                        score=round(dense, 6),
                        dense=round(dense, 6),
                        lexical=hit.lexical,
                        structured=hit.structured,
                        breakdown={**hit.breakdown, "dense": round(dense, 6)},
                        matched_terms=hit.matched_terms,
                        reasons=[
                            f"内容高度相似（相似度{dense:.2f}）",
                            *[r for r in hit.reasons if r != "语义相似度高"],
                        ],
                    )
                )
        found.sort(key=lambda h: (-h.score, h.id))
        return found[:k]

    def status(self) -> MatchingStatus:
        engine = self._sync()
        encoder = engine.encoder if engine is not None else None
        counts = {side: engine.count(side) if engine is not None else 0 for side in SIDES}
        return MatchingStatus(
            enabled=self.enabled,
            model_spec=self.model_spec,
            encoder_name=encoder.name if encoder is not None else None,
            fingerprint=encoder.fingerprint if encoder is not None and encoder.is_fitted else None,
            fallback_reason=self.fallback_reason if self.enabled else None,
            counts=counts,
            # VectorIndex switches to HNSW once a side reaches the threshold.
            index_kind={side: "hnsw" if n >= self.hnsw_threshold else "flat" for side, n in counts.items()},
            version=self._synced[0] if self._synced else None,
            fitted_on=self._fitted_on,
        )


# -------------------------------------------------------------------- app wiring


def init_app(app: Flask) -> MatchingService:
    """Attach a :class:`MatchingService` to ``app`` (once). Nothing is loaded until the first query."""
    if EXTENSION_KEY in app.extensions:
        raise RuntimeError("the matching service is already registered on this app")
    service = MatchingService.from_config(app.config)
    app.extensions[EXTENSION_KEY] = service
    return service


def get_service() -> MatchingService:
    """The matching service of the current app."""
    return current_app.extensions[EXTENSION_KEY]


def products_for_opportunity(
    opportunity: Opportunity, k: int = 20, filters: Filters | None = None
) -> list[MatchResult]:
    return get_service().products_for_opportunity(opportunity, k, filters)


def opportunities_for_product(
    product: Product, k: int = 20, filters: Filters | None = None
) -> list[MatchResult]:
    return get_service().opportunities_for_product(product, k, filters)


def search(text: str, side: str, k: int = 20, filters: Filters | None = None) -> list[MatchResult]:
    return get_service().search(text, side, k, filters)


def similar(kind: str, entry: Entry, k: int = SIMILAR_K) -> list[MatchResult]:
    return get_service().similar(kind, entry, k)


def status() -> MatchingStatus:
    return get_service().status()


# -------------------------------------------------------------------- page-level reports


def get_queryable_entry(user: User | None, kind: str, entry_id: int) -> Entry:
    """An entry usable as a query by ``user``: published, or the user's own / staff (else 404)."""
    entry = entry_service.get_entry(kind, entry_id)
    entry_service.require_view(user, entry)
    return entry


def opportunity_report(
    user: User | None,
    opportunity_id: int,
    k: int = 20,
    *,
    region: str | None = None,
    maturity: str | None = None,
    tag: str | None = None,
) -> EntryReport:
    """The products page of an opportunity: for its publisher's members and organizers."""
    entry = entry_service.get_entry(EntryKind.OPPORTUNITY, opportunity_id)
    require_match_access(user, entry)
    filters = build_filters(EntryKind.PRODUCT, region=region, maturity=maturity, tag=tag)
    service = get_service()
    staff = _is_staff(user)
    return EntryReport(
        entry=entry,
        results=service.products_for_opportunity(entry, k, filters),
        similar=service.similar(EntryKind.OPPORTUNITY, entry) if staff else [],
        status=service.status() if staff else None,
    )


def product_report(
    user: User | None,
    product_id: int,
    k: int = 20,
    *,
    region: str | None = None,
    category: str | None = None,
    include_closed: bool = False,
) -> EntryReport:
    """The opportunities page of a product (open needs unless ``include_closed``): for its
    firm's members and organizers."""
    entry = entry_service.get_entry(EntryKind.PRODUCT, product_id)
    require_match_access(user, entry)
    filters = build_filters(
        EntryKind.OPPORTUNITY, region=region, category=category, include_closed=include_closed
    )
    service = get_service()
    staff = _is_staff(user)
    return EntryReport(
        entry=entry,
        results=service.opportunities_for_product(entry, k, filters),
        similar=service.similar(EntryKind.PRODUCT, entry) if staff else [],
        status=service.status() if staff else None,
    )


def search_report(
    user: User | None, text: str, side: str, k: int = 20, include_closed: bool = False,
    **filter_values: str | None,
) -> tuple[list[MatchResult], MatchingStatus]:
    """Organizer search 「找能做……的企业」 over one side (needs: open ones unless
    ``include_closed``), with the engine status."""
    require_staff(user)
    filters = build_filters(side, include_closed=include_closed, **filter_values)
    service = get_service()
    return service.search(text, side, k, filters), service.status()


def products_for_opportunity_id(
    user: User | None, opportunity_id: int, k: int = 20, **filter_values: str | None
) -> tuple[Opportunity, list[MatchResult]]:
    """API: products for an opportunity that is published, or the caller's own / staff's."""
    check_k(k)
    filters = build_filters(EntryKind.PRODUCT, **filter_values)
    entry = get_queryable_entry(user, EntryKind.OPPORTUNITY, opportunity_id)
    return entry, get_service().products_for_opportunity(entry, k, filters)


def opportunities_for_product_id(
    user: User | None, product_id: int, k: int = 20, include_closed: bool = False,
    **filter_values: str | None,
) -> tuple[Product, list[MatchResult]]:
    """API: opportunities (open ones unless ``include_closed``) for a product that is
    published, or the caller's own / staff's."""
    check_k(k)
    filters = build_filters(EntryKind.OPPORTUNITY, include_closed=include_closed, **filter_values)
    entry = get_queryable_entry(user, EntryKind.PRODUCT, product_id)
    return entry, get_service().opportunities_for_product(entry, k, filters)


def search_text(
    text: str, side: str, k: int = 20, include_closed: bool = False, **filter_values: str | None
) -> list[MatchResult]:
    """API: free text against the published entries of one side (needs: open ones unless
    ``include_closed``)."""
    text = check_query_text(text)
    check_k(k)
    filters = build_filters(check_side(side), include_closed=include_closed, **filter_values)
    return get_service().search(text, side, k, filters)


def encoder_name() -> str | None:
    """Name of the encoder in use (after the first query)."""
    encoder = get_service().encoder
    return encoder.name if encoder is not None else None


def engine_status(user: User | None) -> MatchingStatus:
    """The engine status, for organizers."""
    require_staff(user)
    return get_service().status()

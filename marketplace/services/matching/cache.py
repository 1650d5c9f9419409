"""The embedding cache: document vectors in the ``embedding_cache`` table.

A row is keyed by (kind, id, sha256 of the document text, encoder fingerprint), so an edited
text or another encoder never reuses a stale vector, and a vector once stored is never
encoded again. Web workers only *read* rows (:func:`cached_vectors`); the encoding job and
the CLI write them (:func:`encode_and_store`), each batch in its own short transaction on a
separate connection, so a process killed mid-way leaves only whole, valid rows behind.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError

from marketplace.extensions import db
from marketplace.models import EmbeddingCache
from marketplace.services.matching.items import SIDES, chunks, text_hash
from matching import Encoder, Item, document_text

#: Documents encoded (and committed) together.
ENCODE_BATCH = 256

Key = tuple[str, int]
Progress = Callable[[int, int], None]


def _cached_rows(items: Sequence[Item], fingerprint: str, with_vectors: bool) -> dict[Key, list[tuple]]:
    """``{(side, id): (text_hash, dim[, blob])}`` of the cache rows of ``items`` for ``fingerprint``."""
    columns = [EmbeddingCache.item_id, EmbeddingCache.text_hash, EmbeddingCache.dim]
    if with_vectors:
        columns.append(EmbeddingCache.vector)
    found: dict[Key, list[tuple]] = {}
    for side in SIDES:
        ids = [i.id for i in items if i.side == side]
        for chunk in chunks(ids):
            rows = db.session.execute(
                select(*columns).where(
                    EmbeddingCache.fingerprint == fingerprint,
                    EmbeddingCache.item_kind == side,
                    EmbeddingCache.item_id.in_(chunk),
                )
            )
            for item_id, *rest in rows:
                # An id can have rows for several texts (before and after an edit).
                found.setdefault((side, item_id), []).append(tuple(rest))
    return found


def cached_vectors(items: Sequence[Item], encoder: Encoder) -> dict[Key, np.ndarray]:
    """The cached vectors of ``items`` for ``encoder`` (items without one are left out)."""
    hashes = {(i.side, i.id): text_hash(i) for i in items}
    vectors: dict[Key, np.ndarray] = {}
    for key, rows in _cached_rows(items, encoder.fingerprint, with_vectors=True).items():
        for row_hash, dim, blob in rows:
            if row_hash == hashes[key] and dim == encoder.dim:
                vectors[key] = np.frombuffer(blob, dtype=np.float32)
    return vectors


def missing_items(items: Sequence[Item], encoder: Encoder) -> list[Item]:
    """The items that have no cache row for their current text and ``encoder`` (no blobs read)."""
    present = {
        (key, row_hash)
        for key, rows in _cached_rows(items, encoder.fingerprint, with_vectors=False).items()
        for row_hash, dim in rows
        if dim == encoder.dim
    }
    return [i for i in items if ((i.side, i.id), text_hash(i)) not in present]


def encode_and_store(
    items: Sequence[Item],
    encoder: Encoder,
    progress: Progress | None = None,
    batch_size: int = ENCODE_BATCH,
) -> dict[Key, np.ndarray]:
    """Encode ``items`` as documents and store their vectors, one committed batch at a time.

    This is the only place where corpus entries are encoded for the index. It never runs on
    the request path (see :mod:`marketplace.services.matching.encoding`).
    """
    vectors: dict[Key, np.ndarray] = {}
    if progress is not None:
        progress(0, len(items))
    for start in range(0, len(items), batch_size):
        batch = items[start : start + batch_size]
        encoded = encoder.encode([document_text(i) for i in batch], kind="document")
        rows = []
        for item, vec in zip(batch, encoded, strict=True):
            vec = np.ascontiguousarray(vec, dtype=np.float32)
            vectors[(item.side, item.id)] = vec
            rows.append(
                {
                    "item_kind": item.side,
                    "item_id": item.id,
                    "text_hash": text_hash(item),
                    "fingerprint": encoder.fingerprint,
                    "dim": int(vec.shape[0]),
                    "vector": vec.tobytes(),
                }
            )
        store(rows)
        if progress is not None:
            progress(start + len(batch), len(items))
    return vectors


def store(rows: list[dict[str, Any]]) -> None:
    """Insert cache rows in one transaction on a separate connection; rows another process
    stored first (same key) are skipped, so two encoders racing on the same entry are harmless."""
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


def prune(fingerprint: str, keep: set[tuple[str, int, str]]) -> int:
    """Delete rows of other fingerprints, and rows of ``fingerprint`` whose (kind, id, text
    hash) is not in ``keep`` (texts no longer published). Returns how many were deleted."""
    stale = [
        row_id
        for row_id, kind, item_id, row_hash in db.session.execute(
            select(
                EmbeddingCache.id,
                EmbeddingCache.item_kind,
                EmbeddingCache.item_id,
                EmbeddingCache.text_hash,
            ).where(EmbeddingCache.fingerprint == fingerprint)
        )
        if (kind, item_id, row_hash) not in keep
    ]
    with db.engine.begin() as conn:
        other = delete(EmbeddingCache).where(EmbeddingCache.fingerprint != fingerprint)
        removed = conn.execute(other).rowcount or 0
        for chunk in chunks(stale):
            removed += conn.execute(delete(EmbeddingCache).where(EmbeddingCache.id.in_(chunk))).rowcount or 0
    return removed

"""Persistent state of the matching engine: the embedding cache and the index version."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from marketplace.extensions import db
from marketplace.models.base import utcnow


class EmbeddingCache(db.Model):
    """One encoded entry, so that a restart does not re-encode unchanged text."""

    __tablename__ = "embedding_cache"
    __table_args__ = (
        UniqueConstraint("item_kind", "item_id", "text_hash", "fingerprint", name="uq_embedding_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_kind: Mapped[str] = mapped_column(String(20))
    item_id: Mapped[int] = mapped_column(Integer)
    text_hash: Mapped[str] = mapped_column(String(64))
    fingerprint: Mapped[str] = mapped_column(String(64), index=True)
    dim: Mapped[int] = mapped_column(Integer)
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class IndexState(db.Model):
    """A version counter per index; workers reload their in-memory index when it moves."""

    __tablename__ = "index_state"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

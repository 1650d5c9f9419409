"""Persistent state of the matching engine: the embedding cache and the index version."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, DateTime, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from marketplace.extensions import db
from marketplace.models.base import utcnow
from marketplace.models.enums import LabelledEnum


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


class RankingKind(LabelledEnum):
    """What a :class:`RankingModel` replaces: the fusion of signals, or the encoder."""

    RERANKER = "reranker", "学习排序模型"
    ENCODER = "encoder", "微调语义模型"


class RankingStatus(LabelledEnum):
    """``candidate``: trained and evaluated, not better than what runs; ``active``: in use (at
    most one per kind); ``retired``: was active, replaced or switched off; ``failed``: training
    stopped with an error (``reason`` says which)."""

    CANDIDATE = "candidate", "未启用"
    ACTIVE = "active", "使用中"
    RETIRED = "retired", "已停用"
    FAILED = "failed", "训练失败"


class RankingModel(db.Model):
    """One trained ranking model (learned re-ranker or fine-tuned encoder) and its held-out
    evaluation against what was running when it was trained.

    ``payload`` holds a re-ranker's serialised model (LightGBM text model or logistic
    coefficients); a fine-tuned encoder lives in the folder ``path`` beside the base model.
    ``metrics`` holds the held-out numbers (for example ``{"learned": {"ndcg@10": …},
    "handset": {...}, "margin": …, "folds": 5, "needs": …}``) and ``reason`` says, in Chinese,
    why the model was or was not switched on.
    """

    __tablename__ = "ranking_model"
    __table_args__ = (Index("ix_ranking_model_kind_status", "kind", "status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    version: Mapped[str] = mapped_column(String(64), unique=True)
    algorithm: Mapped[str] = mapped_column(String(30))
    status: Mapped[str] = mapped_column(String(20), default=RankingStatus.CANDIDATE)
    judgements: Mapped[int] = mapped_column(Integer, default=0)
    needs: Mapped[int] = mapped_column(Integer, default=0)
    features: Mapped[list[str]] = mapped_column(JSON, default=list)
    metrics: Mapped[dict] = mapped_column(JSON, default=dict)
    reason: Mapped[str] = mapped_column(Text, default="")
    payload: Mapped[bytes | None] = mapped_column(LargeBinary)
    path: Mapped[str | None] = mapped_column(String(500))
    trained_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    job_id: Mapped[int | None] = mapped_column(ForeignKey("job.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    activated_at: Mapped[datetime | None] = mapped_column(DateTime)
    retired_at: Mapped[datetime | None] = mapped_column(DateTime)

    @property
    def kind_label(self) -> str:
        return RankingKind.label_of(self.kind)

    @property
    def status_label(self) -> str:
        return RankingStatus.label_of(self.status)

"""The learned re-ranker in the app (issue 14 §2): training, switching, and re-ranking.

:func:`learn` (``flask matching learn``, the organizers' button, the nightly job
``matching.learn``):

1. collects the graded judgements (:func:`marketplace.services.judgements.collect`);
2. for every judged (published) need, asks the engine with its **hand-set** weights for its top
   :data:`CANDIDATES` products, plus the judged products outside them (ranked below, from
   ``CANDIDATES + 1`` on). Each candidate becomes a row ``(need, product, features, grade)``:
   the features of :func:`matching.learning.features_for_hit`, the grade of its judgement, 0
   for a candidate nobody acted on. A firm-level judgement grades the firm's best-ranked
   candidate product that has no judgement of its own;
3. the history features of a candidate (the firm's answers, selections and signings on the
   platform) are computed **without the need being judged** and only from records older than
   the need's first judgement, so that no decision feeds its own label;
4. :func:`matching.learning.evaluate_switch` compares, held out by need, the learned ranking
   with the hand-set one; the model is then trained on everything and stored in
   ``ranking_model``. It becomes ACTIVE (the previous active model is retired) only when the
   evaluation says so; otherwise it is a CANDIDATE with the reason, and a model that was active
   is retired as well: the freshest held-out evaluation decides, and the engine returns to the
   hand-set weights.

Below :data:`matching.learning.MIN_JUDGEMENTS` judgements nothing is trained
(:class:`NotEnoughJudgements`, with the reason in Chinese).

At query time :func:`rerank` reorders the engine's hits for a need with the active model and
puts the reasons of the features that contributed most first, in the same 推荐理由 language.
:func:`active_reranker` keeps the loaded model per matching service (so per process) and
looks at the database at most every ``MATCHING_RERANKER_CHECK_SECONDS`` seconds (default 30);
a process that switches a model on forgets its copy at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
import weakref
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import current_app
from sqlalchemy import func, select

from marketplace import timeutil
from marketplace.extensions import db
from marketplace.models import Opportunity, Product, RankingKind, RankingModel, RankingStatus, User
from marketplace.services import audit, judgements
from marketplace.services.errors import DomainError
from matching import Filters, Hit, Item
from matching import learning as ml

logger = logging.getLogger("marketplace.services.matching")

LEARN_JOB = "matching.learn"
LEARN_JOB_TITLE = "训练学习排序模型"
#: The engine's top candidates per judged need that enter the training set.
CANDIDATES = 30
DEFAULT_CHECK_SECONDS = 30.0
#: Reasons of the top contributing features put first on a re-ranked hit.
TOP_REASONS = 3

#: The engine reason that says what each feature measures (by the reason's opening words).
_REASON_PREFIX: dict[str, tuple[str, ...]] = {
    "dense": ("语义相似度高", "内容高度相似"),
    "lexical": ("共同关键词",),
    "matched_terms": ("共同关键词",),
    "thesaurus": ("近义词",),
    "field": ("同属",),
    "structured": ("同属", "同在", "技术标签", "成熟度"),
    "city": ("同在",),
    "county": ("同在",),
    "tags": ("技术标签",),
    "maturity": ("成熟度",),
}

#: Set inside :func:`handset_only`: :func:`rerank` leaves the engine's order alone.
_handset_only: ContextVar[bool] = ContextVar("matching_handset_only", default=False)


class NotEnoughJudgements(DomainError):
    """Too few judgements to train on; the engine keeps the hand-set weights."""


@contextlib.contextmanager
def handset_only() -> Iterator[None]:
    """Inside this block the engine ranks with its hand-set weights only (training uses it)."""
    token = _handset_only.set(True)
    try:
        yield
    finally:
        _handset_only.reset(token)


# ---------------------------------------------------------------- the active model


@dataclass(frozen=True)
class ActiveRanking:
    """What runs: the learned model (with its row's summary) or nothing (hand-set weights)."""

    model_id: int
    version: str
    algorithm: str
    activated_at: datetime | None
    reranker: Any  # matching.learning.Reranker


@dataclass
class _Cached:
    stamp: tuple[int, datetime | None] | None
    active: ActiveRanking | None
    checked: float


_cache: weakref.WeakKeyDictionary[Any, _Cached] = weakref.WeakKeyDictionary()
_cache_lock = threading.Lock()


def _service() -> Any:
    from marketplace.services.matching.reports import get_service

    return get_service()


def _check_seconds() -> float:
    return float(current_app.config.get("MATCHING_RERANKER_CHECK_SECONDS", DEFAULT_CHECK_SECONDS))


def _active_stamp() -> tuple[int, datetime | None] | None:
    row = db.session.execute(
        select(RankingModel.id, RankingModel.activated_at)
        .where(RankingModel.kind == RankingKind.RERANKER, RankingModel.status == RankingStatus.ACTIVE)
        .order_by(RankingModel.id.desc())
        .limit(1)
    ).first()
    return (row[0], row[1]) if row is not None else None


def active_reranker() -> ActiveRanking | None:
    """The active learned re-ranker of this process, or None (hand-set weights).

    Cached per matching service; the ``ranking_model`` table is read again at most every
    ``MATCHING_RERANKER_CHECK_SECONDS`` seconds, and the payload only when the active row changed.
    """
    owner = _service()
    now = time.monotonic()
    with _cache_lock:
        cached = _cache.get(owner)
        if cached is not None and now - cached.checked < _check_seconds():
            return cached.active
    stamp = _active_stamp()
    if cached is not None and cached.stamp == stamp:
        cached.checked = now
        return cached.active
    active = None
    if stamp is not None:
        row = db.session.get(RankingModel, stamp[0])
        if row is not None and row.payload:
            try:
                reranker = ml.Reranker.from_bytes(row.payload)
            except (ValueError, ml.ModelUnavailable) as exc:
                # A model this worker cannot load must not break the rankings: hand-set weights.
                logger.warning("matching: active re-ranker %s not usable here (%s)", row.version, exc)
            else:
                active = ActiveRanking(row.id, row.version, row.algorithm, row.activated_at, reranker)
    with _cache_lock:
        _cache[owner] = _Cached(stamp, active, now)
    return active


def forget_active() -> None:
    """Drop this process's copy of the active model (after a switch)."""
    with _cache_lock:
        _cache.pop(_service(), None)


def ranking_label() -> str:
    """「人工权重」 or 「学习排序模型 vX」: what ranks the needs' products now."""
    active = active_reranker()
    return f"{RankingKind.RERANKER.label} {active.version}" if active is not None else "人工权重"


# ---------------------------------------------------------------- features


def _owners(product_ids: Sequence[int]) -> dict[int, int]:
    if not product_ids:
        return {}
    return dict(db.session.execute(
        select(Product.id, Product.owner_id).where(Product.id.in_(list(product_ids)))
    ).all())


def _hit_features(
    hits: Sequence[Hit], owners: dict[int, int], events: list[judgements.HistoryEvent], need_id: int | None,
    before: datetime = judgements.FOREVER, first_rank: int = 1, label_keys: Iterable[str] = (),
) -> list[tuple[dict[str, float], frozenset[str]]]:
    """Features of each hit at its rank (from ``first_rank``), and the decision keys its
    history was counted from."""
    out = []
    for rank, hit in enumerate(hits, start=first_rank):
        history, used = judgements.history_for(
            events, owners.get(hit.id, -1), exclude_need=need_id, before=before, exclude_keys=label_keys
        )
        out.append((ml.features_for_hit(hit, rank, history), used))
    return out


# ---------------------------------------------------------------- re-ranking


def _reordered_reasons(hit: Hit, contributions: list[tuple[str, float]]) -> list[str]:
    """The hit's reasons with those of its top positive contributions first; a contribution
    the engine has no reason for (the firm's history) is said by :func:`ml.reasons_for`."""
    first: list[str] = []
    unsaid: list[tuple[str, float]] = []
    for name, value in contributions:
        if value <= 0:
            continue
        prefixes = _REASON_PREFIX.get(name, ())
        matched = [r for r in hit.reasons if r.startswith(prefixes)] if prefixes else []
        if matched:
            first += [r for r in matched if r not in first]
        else:
            unsaid.append((name, value))
    extra = [r for r in ml.reasons_for(unsaid) if r not in first] if unsaid else []
    head = first + extra
    return head + [r for r in hit.reasons if r not in head]


def rerank(need_item: Item, hits: list[Hit]) -> list[Hit]:
    """The engine's hits for a need, reordered by the active learned model (unchanged when none
    is active, inside :func:`handset_only`, or with fewer than two hits).

    Each re-ranked hit is a copy: its ``breakdown`` gains ``learned`` (the model's score) and
    ``engine_rank``, and its reasons start with those of its top contributing features.
    """
    if _handset_only.get() or len(hits) < 2:
        return hits
    active = active_reranker()
    if active is None:
        return hits
    owners = _owners([h.id for h in hits])
    events = judgements.history_events(set(owners.values()))
    need_id = need_item.id if need_item.side == "opportunity" else None
    feats = [f for f, _used in _hit_features(hits, owners, events, need_id)]
    scores = [float(s) for s in active.reranker.score(feats)]
    order = sorted(range(len(hits)), key=lambda i: (-scores[i], i))
    out = []
    for i in order:
        hit = hits[i]
        contributions = active.reranker.contributions(feats[i], top=TOP_REASONS)
        out.append(dataclasses.replace(
            hit,
            breakdown={**hit.breakdown, "learned": round(scores[i], 6), "engine_rank": float(i + 1)},
            reasons=_reordered_reasons(hit, contributions),
        ))
    return out


# ---------------------------------------------------------------- training


@dataclass
class TrainingSet:
    """The rows handed to :func:`matching.learning.build_dataset`, and what went into them."""

    #: ``(need, product, features, grade, label decision keys, history decision keys)``
    rows: list[tuple[int, int, dict[str, float], int, frozenset[str], frozenset[str]]]
    judgements: int
    needs: int


def _grades_for(
    need_judgements: list[Any], ranked: list[tuple[int, int]]
) -> dict[int, int]:
    """product id → grade for one need: product-level judgements, then each firm-level one on
    the firm's best-ranked candidate product without a judgement of its own.
    ``ranked`` is [(product id, owner id)] in the engine's order."""
    grades = {j.product_id: j.grade for j in need_judgements if j.product_id is not None}
    for j in need_judgements:
        if j.product_id is not None:
            continue
        firm = j.organization_id
        target = next((pid for pid, owner in ranked if owner == firm and pid not in grades), None)
        if target is not None:
            grades[target] = j.grade
    return grades


def training_rows(found: list[Any], progress: Any = None) -> TrainingSet:
    """Build the training rows from judgements (see the module docstring, steps 2 and 3)."""
    service = _service()
    by_need: dict[int, list[Any]] = defaultdict(list)
    for j in found:
        by_need[j.need_id].append(j)
    needs = {
        o.id: o for o in db.session.scalars(select(Opportunity).where(Opportunity.id.in_(list(by_need))))
    }
    events = judgements.history_events()
    rows: list[tuple[int, int, dict[str, float], int, frozenset[str], frozenset[str]]] = []
    used_judgements = 0
    used_needs = 0
    if progress is not None:
        progress.start(len(by_need), "为每个有判断的需求计算候选特征")
    with handset_only():
        for need_id, need_judgements in sorted(by_need.items()):
            need = needs.get(need_id)
            if need is None:
                continue
            results = service.products_for_opportunity(need, CANDIDATES)
            hits = [r.hit for r in results]
            owners = {r.entry.id: r.entry.owner_id for r in results}
            wanted = {j.product_id for j in need_judgements if j.product_id is not None} - set(owners)
            if wanted:
                extra = service.products_for_opportunity(
                    need, min(len(wanted), 200), Filters(allowed_ids=frozenset(wanted))
                )
                hits += [r.hit for r in extra]
                owners.update({r.entry.id: r.entry.owner_id for r in extra})
            ranked = [(h.id, owners[h.id]) for h in hits]
            grades = _grades_for(need_judgements, ranked)
            label_keys = frozenset(j.decision_key for j in need_judgements)
            cutoff = min(j.at for j in need_judgements)
            feats = _hit_features(hits[:len(results)], owners, events, need_id, cutoff, label_keys=label_keys)
            feats += _hit_features(hits[len(results):], owners, events, need_id, cutoff,
                                   first_rank=CANDIDATES + 1, label_keys=label_keys)
            for hit, (f, used) in zip(hits, feats, strict=True):
                rows.append((need_id, hit.id, f, grades.get(hit.id, 0), label_keys, used))
            counted = sum(1 for pid in grades if pid in owners)
            if counted:
                used_judgements += counted
                used_needs += 1
            if progress is not None:
                progress.advance(1)
    return TrainingSet(rows=rows, judgements=used_judgements, needs=used_needs)


def _next_version() -> str:
    count = db.session.scalar(
        select(func.count()).select_from(RankingModel).where(RankingModel.kind == RankingKind.RERANKER)
    ) or 0
    return f"v{count + 1}"


def too_few_reason(n: int) -> str:
    return (f"可用于训练的判断只有 {n} 条，少于 {ml.MIN_JUDGEMENTS} 条，暂不训练学习排序模型，"
            "继续使用人工权重。")


def learn(actor: User | None = None, progress: Any = None, job_id: int | None = None) -> RankingModel:
    """Train, evaluate and store a re-ranker; switch it on only if it clearly beats the
    hand-set weights on held-out needs. Commits. Raises :class:`NotEnoughJudgements`."""
    found = judgements.collect()
    if len(found) < ml.MIN_JUDGEMENTS:
        raise NotEnoughJudgements(too_few_reason(len(found)))
    data = training_rows(found, progress)
    if data.judgements < ml.MIN_JUDGEMENTS:
        raise NotEnoughJudgements(too_few_reason(data.judgements))
    if progress is not None:
        progress.set_message("留出评估（按需求交叉验证）")
    dataset = ml.build_dataset(data.rows)
    # The algorithm follows the number of real judgements, not of rows (most rows are the
    # engine's candidates nobody acted on, graded 0).
    algorithm = ml.choose_algorithm(data.judgements)
    report = ml.evaluate_switch(dataset, algorithm=algorithm, n_judgements=data.judgements)
    if progress is not None:
        progress.set_message("在全部判断上训练")
    try:
        reranker = ml.train(dataset, algorithm=algorithm)
    except ml.NotEnoughJudgements:
        raise NotEnoughJudgements(
            f"{data.judgements} 条判断在每个需求下的评级都相同，无法学习排序，继续使用人工权重。"
        ) from None
    now = timeutil.now_naive_utc()
    model = RankingModel(
        kind=RankingKind.RERANKER.value,
        version=_next_version(),
        algorithm=reranker.algorithm,
        status=RankingStatus.CANDIDATE.value,
        judgements=data.judgements,
        needs=data.needs,
        features=list(reranker.features),
        metrics=_json_metrics(report.metrics),
        reason=report.reason,
        payload=reranker.to_bytes(),
        trained_by_id=actor.id if actor is not None else None,
        job_id=job_id,
        created_at=now,
    )
    db.session.add(model)
    db.session.flush()
    previous = db.session.scalars(
        select(RankingModel).where(
            RankingModel.kind == RankingKind.RERANKER, RankingModel.status == RankingStatus.ACTIVE,
            RankingModel.id != model.id,
        )
    ).all()
    for old in previous:
        old.status = RankingStatus.RETIRED.value
        old.retired_at = now
    audit.record(actor, "matching.learn", model,
                 f"训练学习排序模型 {model.version}（{model.algorithm}，{data.judgements} 条判断，"
                 f"{data.needs} 个需求）")
    if report.switch_on:
        model.status = RankingStatus.ACTIVE.value
        model.activated_at = now
        audit.record(actor, "matching.switch", model, f"启用学习排序模型 {model.version}：{report.reason}")
    elif previous:
        retired = "、".join(o.version for o in previous)
        summary = f"停用学习排序模型 {retired}，恢复人工权重：{report.reason}"
        audit.record(actor, "matching.switch", model, summary)
    db.session.commit()
    forget_active()
    return model


def _json_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """Plain JSON numbers (numpy scalars become floats)."""

    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k): clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [clean(v) for v in value]
        if hasattr(value, "item") and callable(value.item):
            return value.item()
        return value

    return clean(dict(metrics))


# ---------------------------------------------------------------- the organizers' page


@dataclass
class LearningPage:
    """Everything ``/matching/learning`` shows."""

    counts: list[tuple[int, str, str, int]]  # (grade, code, label, count)
    total_judgements: int
    judged_needs: int
    min_judgements: int
    active: RankingModel | None
    latest: RankingModel | None
    history: list[RankingModel]

    @property
    def enough(self) -> bool:
        return self.total_judgements >= self.min_judgements

    @property
    def why_handset(self) -> str | None:
        """Why the hand-set weights rank (None while a learned model is active)."""
        if self.active is not None:
            return None
        if self.latest is not None and self.latest.reason:
            return self.latest.reason
        if not self.enough:
            return too_few_reason(self.total_judgements)
        return "尚未训练学习排序模型，继续使用人工权重。"

    @staticmethod
    def algorithm_label(algorithm: str) -> str:
        return ml.ALGORITHM_LABELS.get(algorithm, algorithm)


def page(user: User | None, limit: int = 50) -> LearningPage:
    """The learning status page, for organizers only."""
    from marketplace.services.accounts import require_staff

    require_staff(user)
    raw = judgements.counts()
    found = judgements.collect()
    history = list(db.session.scalars(
        select(RankingModel).where(RankingModel.kind == RankingKind.RERANKER)
        .order_by(RankingModel.id.desc()).limit(limit)
    ))
    active = next((m for m in history if m.status == RankingStatus.ACTIVE), None)
    if active is None:
        active = db.session.scalar(select(RankingModel).where(
            RankingModel.kind == RankingKind.RERANKER, RankingModel.status == RankingStatus.ACTIVE))
    return LearningPage(
        counts=[(s.grade, s.code, s.label, raw.get(s.code, 0)) for s in judgements.SOURCES.values()],
        total_judgements=len(found),
        judged_needs=len({j.need_id for j in found}),
        min_judgements=ml.MIN_JUDGEMENTS,
        active=active,
        latest=history[0] if history else None,
        history=history,
    )


def queue_learning(user: User | None) -> Any:
    """The organizers' button: a tracked job ``matching.learn`` (returns the Job row)."""
    from marketplace.services import jobs as job_records
    from marketplace.services.accounts import require_staff

    require_staff(user)
    job = job_records.create(LEARN_JOB, title=LEARN_JOB_TITLE, actor=user)
    return job_records.submit(job)

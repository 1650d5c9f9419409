"""Fine-tuning the encoder on the platform's positive pairs, in the app (issue 14 §3).

:func:`finetune` (``flask matching finetune``, the tracked job ``matching.finetune`` and the
nightly ``matching.finetune_nightly``):

1. refuses the offline encoder (TF-IDF + SVD has nothing to fine-tune) and a pretrained model
   that could not be loaded (:class:`FineTuneRefused`);
2. builds the pairs (:func:`collect_pairs`) from the graded judgements
   (:func:`marketplace.services.judgements.collect`): every product-level judgement with grade
   >= 2 on a published need and product is a pair (need text → product text, both the engine's
   :func:`matching.document_text`); the need's grade-0 judgements (an organizer removed the
   product from the top 10, the firm declined as 「不匹配」) are its hard negatives, dealt in turn
   to its pairs. Below ``MATCHING_FINETUNE_MIN_PAIRS`` pairs (default 200; ``--min-pairs``)
   nothing is trained (:class:`NotEnoughPairs`) unless ``force``;
3. holds out about a fifth of the judged needs (:func:`matching.finetune.split_needs`, stable by
   need id) and fine-tunes the configured base model (the e5-small folder under
   ``MATCHING_MODEL_DIR``, or the ``st:`` model) on the pairs of the other needs only; the new
   folder is ``<MATCHING_MODEL_DIR>/<base>-ft-<UTC time>``;
4. compares it with the encoder that runs now (the base, or the fine-tuned version switched on
   earlier) by dense nDCG@10: on the held-out needs against their judgements, ranking a pool of
   every judged product plus published products up to ``MATCHING_FINETUNE_EVAL_POOL`` (default
   2000), and on the dev set ``seeds/eval`` as a guard (never trained on);
5. stores a :class:`~marketplace.models.RankingModel` (kind ``encoder``; ``metrics`` holds both
   comparisons and the training run, ``reason`` says in Chinese why it was or was not switched
   on). When :func:`matching.finetune.decide` says so, the row becomes ACTIVE (the previous
   active encoder is retired) and the encoding job is queued: it re-encodes every published
   entry with the new fingerprint and publishes a new engine version, which every worker then
   opens. Otherwise the running encoder stays and the new folder is deleted (470 MB for
   e5-small); the row keeps the numbers and the reason.

**How the service uses it.** :meth:`MatchingService._base_encoder` asks :func:`active_encoder`
for the active row (cached per service; the database is read at most every
``MATCHING_ENCODER_CHECK_SECONDS`` seconds, default 30, and always inside the encoding job) and
builds :class:`matching.finetune.FineTunedEncoder` on its folder instead of the configured model.
A worker keeps answering from the engine version it has open (built with the previous encoder,
whose query vectors match it) until the job has published the version built with the new one.
An active row that was fine-tuned from another base than the configured ``MATCHING_MODEL`` (the
operator changed models) is ignored.
"""

from __future__ import annotations

import logging
import os
import random
import re
import shutil
import threading
import time
import weakref
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import current_app, has_app_context
from sqlalchemy import exc as sa_exc
from sqlalchemy import func, select

from marketplace import timeutil
from marketplace.extensions import db
from marketplace.models import EntryKind, EntryStatus, Product, RankingKind, RankingModel, RankingStatus, User
from marketplace.services import audit, judgements
from marketplace.services.errors import DomainError
from matching import Encoder, document_text
from matching import finetune as ft
from matching.encoders import DEFAULT_MODEL, EncoderLoadError, SentenceTransformerEncoder

logger = logging.getLogger("marketplace.services.matching")

FINETUNE_JOB = "matching.finetune"
FINETUNE_JOB_TITLE = "微调语义模型"
DEFAULT_MIN_PAIRS = 200
DEFAULT_EVAL_POOL = 2000
DEFAULT_CHECK_SECONDS = 30.0
#: Judgements of at least this grade are positive pairs; grade 0 ones are hard negatives.
POSITIVE_GRADE = 2
#: The engine ranks products for a need with the need's *document* vector (MatchEngine.products_for).
NEED_KIND = "document"
ALGORITHM = "mnrl"


class NotEnoughPairs(DomainError):
    """Too few positive pairs to fine-tune; the running encoder stays."""


class FineTuneRefused(DomainError):
    """The configured encoder cannot be fine-tuned (the offline encoder, a model not loadable)."""


# ---------------------------------------------------------------- the base model


@dataclass(frozen=True)
class BaseModel:
    """The configured sentence-transformers model a fine-tune starts from."""

    spec: str  # "e5-small" or "st:<name or path>"
    name: str  # the encoder name ("e5-small", "st:...")
    source: str  # the folder (or Hub name) sentence-transformers loads
    query_prompt: str
    document_prompt: str


def configured_spec(service: Any) -> str:
    """The configured ``MATCHING_MODEL`` as :func:`matching.build_encoder` resolves it."""
    spec = (service.model_spec or "").strip()
    if spec.lower() in {"", "default"}:
        spec = os.environ.get("MATCHING_MODEL", "").strip()
        if spec.lower() in {"", "default"}:
            spec = DEFAULT_MODEL
    return spec


def _is_offline(spec: str) -> bool:
    return spec.lower() == "offline" or spec.lower().startswith("offline:")


def base_model(service: Any) -> BaseModel:
    """The configured pretrained model; raises :class:`FineTuneRefused` for the offline encoder
    or a model that cannot be loaded."""
    from matching import models

    spec = configured_spec(service)
    if _is_offline(spec):
        raise FineTuneRefused(
            "当前使用离线编码器（TF-IDF + SVD），它没有可微调的神经网络权重；"
            "请先配置 MATCHING_MODEL=e5-small 或 st:<模型>。"
            "(The offline encoder cannot be fine-tuned: set MATCHING_MODEL to e5-small or st:<model>.)"
        )
    if spec.lower() == DEFAULT_MODEL:
        folder = models.installed_model(models.E5_SMALL, service.model_dir)
        if folder is None:
            raise FineTuneRefused(
                "e5-small 模型尚未安装，无法微调：请先运行 flask matching install-model。"
                "(e5-small is not installed: run flask matching install-model.)"
            )
        return BaseModel(spec, DEFAULT_MODEL, str(folder), models.QUERY_PROMPT, models.PASSAGE_PROMPT)
    model = spec[3:] if spec.startswith("st:") else spec
    try:
        encoder = SentenceTransformerEncoder(model)
    except EncoderLoadError as exc:
        raise FineTuneRefused(f"无法加载模型 {model}，不能微调：{exc}") from exc
    return BaseModel(f"st:{model}", encoder.name, model, encoder.query_prompt or "",
                     encoder.document_prompt or "")


def _model_dir(service: Any) -> Path:
    from matching import models

    return models.default_model_dir(service.model_dir or current_app.config.get("MATCHING_MODEL_DIR"))


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name.removeprefix("st:")).strip("-.")[-40:] or "model"


# ---------------------------------------------------------------- the active encoder (service hook)


@dataclass(frozen=True)
class ActiveEncoder:
    """The fine-tuned encoder switched on (what the service loads instead of the configured one)."""

    model_id: int
    version: str
    path: str
    base_name: str
    query_prompt: str
    document_prompt: str


_cache: weakref.WeakKeyDictionary[Any, tuple[float, ActiveEncoder | None]] = weakref.WeakKeyDictionary()
_cache_lock = threading.Lock()


def forget(service: Any | None = None) -> None:
    """Make the next :func:`active_encoder` read the database (after a switch)."""
    with _cache_lock:
        if service is None:
            _cache.clear()
        else:
            _cache.pop(service, None)


def _read_active(spec: str) -> ActiveEncoder | None:
    row = db.session.execute(
        select(RankingModel.id, RankingModel.version, RankingModel.path, RankingModel.metrics)
        .where(RankingModel.kind == RankingKind.ENCODER, RankingModel.status == RankingStatus.ACTIVE)
        .order_by(RankingModel.id.desc())
        .limit(1)
    ).first()
    if row is None or not row.path:
        return None
    base = (row.metrics or {}).get("base") or {}
    if base.get("spec") != spec:
        return None  # fine-tuned from another model than the one configured now
    if not Path(row.path).is_dir():
        logger.warning("matching: the active fine-tuned encoder %s is missing (%s)", row.version, row.path)
        return None
    return ActiveEncoder(row.id, row.version, row.path, base.get("name") or spec,
                         base.get("query_prompt") or "", base.get("document_prompt") or "")


def active_encoder(service: Any, fresh: bool = False) -> ActiveEncoder | None:
    """The active fine-tuned encoder for ``service`` (``None``: use the configured one).

    Cached per service for ``MATCHING_ENCODER_CHECK_SECONDS``; ``fresh`` reads the database now.
    Never reads it for the offline encoder, nor outside an app context."""
    if not has_app_context():
        return None
    spec = configured_spec(service)
    if _is_offline(spec):
        return None
    now = time.monotonic()
    ttl = float(current_app.config.get("MATCHING_ENCODER_CHECK_SECONDS", DEFAULT_CHECK_SECONDS))
    with _cache_lock:
        cached = _cache.get(service)
    if cached is not None and not fresh and now - cached[0] < ttl:
        return cached[1]
    try:
        active = _read_active(spec)
    except (sa_exc.OperationalError, sa_exc.ProgrammingError) as exc:  # tables not created yet
        db.session.rollback()
        logger.info("matching: cannot read the active encoder (%s)", exc)
        active = None
    with _cache_lock:
        _cache[service] = (now, active)
    return active


def load_encoder(active: ActiveEncoder) -> Encoder:
    """The fine-tuned encoder of ``active`` (raises :class:`EncoderLoadError`)."""
    return ft.FineTunedEncoder(active.path, base_name=active.base_name, query_prompt=active.query_prompt,
                               document_prompt=active.document_prompt)


# ---------------------------------------------------------------- pairs


@dataclass
class PairSet:
    """The training pairs of every judged need, and what went into them."""

    pairs: list[ft.TrainingPair]
    #: need id → {product id: grade} (every product-level judgement of a published pair)
    qrels: dict[int, dict[int, float]]
    need_texts: dict[int, str]
    product_texts: dict[int, str]

    @property
    def needs(self) -> set[int]:
        return {int(p.need_id) for p in self.pairs}

    @property
    def negatives(self) -> int:
        return sum(1 for p in self.pairs if p.negative is not None)


def _texts(side: str, ids: set[int]) -> dict[int, str]:
    from marketplace.services.matching.items import load_published_items

    return {item.id: document_text(item) for item in load_published_items(side, sorted(ids))} if ids else {}


def collect_pairs() -> PairSet:
    """Positive pairs (grade >= 2) with hard negatives (grade 0) from the judgements."""
    found = [j for j in judgements.collect() if j.product_id is not None]
    need_texts = _texts(EntryKind.OPPORTUNITY.value, {j.need_id for j in found})
    product_texts = _texts(EntryKind.PRODUCT.value, {int(j.product_id) for j in found})  # type: ignore[arg-type]
    qrels: dict[int, dict[int, float]] = defaultdict(dict)
    for j in found:
        if j.need_id in need_texts and j.product_id in product_texts:
            qrels[j.need_id][int(j.product_id)] = float(j.grade)  # type: ignore[arg-type]
    pairs: list[ft.TrainingPair] = []
    for need_id, graded in sorted(qrels.items()):
        positives = sorted(p for p, g in graded.items() if g >= POSITIVE_GRADE)
        negatives = sorted(p for p, g in graded.items() if g == 0)
        for i, product_id in enumerate(positives):
            negative = product_texts[negatives[i % len(negatives)]] if negatives else None
            pairs.append(ft.TrainingPair(need_id, product_id, need_texts[need_id], product_texts[product_id],
                                         negative))
    return PairSet(pairs, dict(qrels), need_texts, product_texts)


def min_pairs() -> int:
    return int(current_app.config.get("MATCHING_FINETUNE_MIN_PAIRS", DEFAULT_MIN_PAIRS))


def too_few_reason(n: int, minimum: int) -> str:
    return (f"可用于微调的正向配对（评级 ≥ {POSITIVE_GRADE} 的需求—产品判断）只有 {n} 对，少于 {minimum} 对，"
            "暂不微调语义模型，继续使用当前模型。")


# ---------------------------------------------------------------- evaluation


def _pool(judged: set[int], size: int, seed: int = 0) -> set[int]:
    """Every judged product plus published products drawn at random (fixed seed) up to ``size``."""
    published = list(db.session.scalars(
        select(Product.id).where(Product.status == EntryStatus.PUBLISHED).order_by(Product.id)
    ))
    others = [p for p in published if p not in judged]
    room = max(0, size - len(judged))
    extra = random.Random(seed).sample(others, room) if room < len(others) else others
    return set(judged) | set(extra)


def _dev_set() -> tuple[dict[str, str], dict[str, str], dict[str, dict[str, float]]] | None:
    """Need texts, product texts and qrels of ``<SEEDS_DIR>/eval`` (``None`` when absent)."""
    from matching.evaluate import _need_item, _product_item, load_set

    folder = Path(current_app.config.get("SEEDS_DIR", "seeds")) / "eval"
    try:
        dev = load_set(folder)
    except (FileNotFoundError, OSError, ValueError):
        return None
    needs = {str(r["id"]): document_text(_need_item(r, i)) for i, r in enumerate(dev.needs)}
    products = {str(r.get("id") or r.get("key")): document_text(_product_item(r, i))
                for i, r in enumerate(dev.products)}
    return needs, products, dev.qrels


def evaluate(
    reference: Encoder, candidate: Encoder, data: PairSet, held_out: frozenset[Any], pool_size: int,
    guard: bool = True,
) -> tuple[ft.Comparison, ft.Comparison | None]:
    """(held-out comparison, dev-set comparison or ``None``) of ``candidate`` against ``reference``."""
    held_qrels = {n: data.qrels[n] for n in held_out if n in data.qrels}
    judged = {p for graded in data.qrels.values() for p in graded}
    pool = _pool(judged, pool_size)
    texts = dict(data.product_texts)
    missing = pool - set(texts)
    texts.update(_texts(EntryKind.PRODUCT.value, missing))
    products = {p: texts[p] for p in sorted(pool) if p in texts}
    needs = {n: data.need_texts[n] for n in held_qrels}
    ref = ft.dense_ndcg(reference, needs, products, held_qrels, need_kind=NEED_KIND)
    cand = ft.dense_ndcg(candidate, needs, products, held_qrels, need_kind=NEED_KIND)
    held = ft.compare(ref, cand)
    dev = _dev_set() if guard else None
    if dev is None:
        return held, None
    dev_needs, dev_products, dev_qrels = dev
    ref_dev = ft.dense_ndcg(reference, dev_needs, dev_products, dev_qrels, need_kind=NEED_KIND)
    cand_dev = ft.dense_ndcg(candidate, dev_needs, dev_products, dev_qrels, need_kind=NEED_KIND)
    return held, ft.compare(ref_dev, cand_dev)


# ---------------------------------------------------------------- the run


def _service() -> Any:
    from marketplace.services.matching.reports import get_service

    return get_service()


def _advance(progress: Any) -> Any:
    if progress is None:
        return None
    from marketplace.services import jobs as job_records

    return job_records.as_callback(progress)


def _say(progress: Any, message: str) -> None:
    if progress is not None:
        progress.set_message(message)


def finetune(
    actor: User | None = None,
    progress: Any = None,
    *,
    min_pairs_override: int | None = None,
    epochs: int = ft.DEFAULT_EPOCHS,
    force: bool = False,
    job_id: int | None = None,
) -> RankingModel:
    """Fine-tune, evaluate, store and perhaps switch (see the module docstring). Commits.

    Raises :class:`FineTuneRefused` or :class:`NotEnoughPairs` (nothing is stored then)."""
    service = _service()
    if not service.enabled:
        raise FineTuneRefused("智能匹配已关闭（MATCHING_ENABLED=0），不能微调。")
    base = base_model(service)
    data = collect_pairs()
    minimum = min_pairs() if min_pairs_override is None else int(min_pairs_override)
    if len(data.pairs) < minimum and not force:
        raise NotEnoughPairs(too_few_reason(len(data.pairs), minimum))
    try:
        train_needs, held_out = ft.split_needs(sorted(data.needs))
    except ft.NotEnoughPairs:
        raise NotEnoughPairs(
            f"只有 {len(data.needs)} 个需求有正向判断，至少需要 2 个（一个留出评估）。"
        ) from None
    train_pairs = [p for p in data.pairs if p.need_id in train_needs]
    stamp = timeutil.now_naive_utc()
    version = f"{_slug(base.name)}-ft-{stamp:%Y%m%d-%H%M%S}"
    dest = _model_dir(service) / version
    suffix = 1
    while dest.exists() or db.session.scalar(
        select(func.count()).select_from(RankingModel).where(RankingModel.version == dest.name)
    ):  # two runs within one second (or a frozen clock): keep every version apart
        suffix += 1
        dest = _model_dir(service) / f"{version}-{suffix}"
    version = dest.name
    _say(progress, f"微调 {base.name}：{len(train_pairs)} 对（{len(train_needs)} 个需求），"
                   f"留出 {len(held_out)} 个需求")
    try:
        result = ft.fine_tune(
            base.source, train_pairs, dest, anchor_prompt=base.document_prompt,
            positive_prompt=base.document_prompt, epochs=epochs, progress=_advance(progress),
        )
    except ft.NotEnoughPairs as exc:
        raise NotEnoughPairs(f"训练配对不足以组成批次（{exc}），继续使用当前模型。") from None
    try:
        _say(progress, "留出评估：当前模型与微调模型的 nDCG@10")
        forget(service)
        reference = service.writer_encoder()  # what runs now: the base or the active fine-tune
        candidate = ft.FineTunedEncoder(dest, base_name=base.name, query_prompt=base.query_prompt,
                                        document_prompt=base.document_prompt)
        pool_size = int(current_app.config.get("MATCHING_FINETUNE_EVAL_POOL", DEFAULT_EVAL_POOL))
        held, guard = evaluate(reference, candidate, data, held_out, pool_size)
        decision = ft.decide(held, guard)
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    metrics = {
        "base": {"spec": base.spec, "name": base.name, "source": base.source,
                 "query_prompt": base.query_prompt, "document_prompt": base.document_prompt},
        "reference": reference.name,
        "held_out": held.to_dict(),
        "dev_guard": guard.to_dict() if guard is not None else None,
        "min_gain": ft.MIN_GAIN,
        "guard_margin": ft.GUARD_MARGIN,
        "pairs": len(data.pairs),
        "train_pairs": len(train_pairs),
        "hard_negatives": sum(1 for p in train_pairs if p.negative is not None),
        "train_needs": sorted(int(n) for n in train_needs),
        "held_out_needs": sorted(int(n) for n in held_out),
        "pool": pool_size,
        "training": {k: v for k, v in result.to_dict().items() if k not in {"path", "losses"}},
        "loss_first_last": [result.losses[0], result.losses[-1]] if result.losses else [],
    }
    model = RankingModel(
        kind=RankingKind.ENCODER.value,
        version=version,
        algorithm=ALGORITHM,
        status=RankingStatus.CANDIDATE.value,
        judgements=len(data.pairs),
        needs=len(train_needs),
        features=[],
        metrics=metrics,
        reason=decision.reason,
        path=str(dest),
        trained_by_id=actor.id if actor is not None else None,
        job_id=job_id,
        created_at=stamp,
    )
    db.session.add(model)
    db.session.flush()
    audit.record(actor, "matching.finetune", model,
                 f"微调语义模型 {version}（{len(train_pairs)} 对，{len(train_needs)} 个需求，"
                 f"{result.seconds:.0f} 秒）")
    if decision.switch_on:
        for old in db.session.scalars(select(RankingModel).where(
            RankingModel.kind == RankingKind.ENCODER, RankingModel.status == RankingStatus.ACTIVE,
            RankingModel.id != model.id,
        )):
            old.status = RankingStatus.RETIRED.value
            old.retired_at = stamp
        model.status = RankingStatus.ACTIVE.value
        model.activated_at = stamp
        audit.record(actor, "matching.switch", model, f"启用微调语义模型 {version}：{decision.reason}")
    else:
        shutil.rmtree(dest, ignore_errors=True)
        model.path = None
        model.metrics = {**metrics, "folder_removed": str(dest)}
    db.session.commit()
    if decision.switch_on:
        forget(service)
        _say(progress, "已启用微调模型，后台重新编码全部条目")
        from marketplace.services.matching import encoding

        encoding.queue_now()  # re-encodes the corpus with the new fingerprint, then a new version
    return model


def new_pairs_since_last_model() -> bool:
    """Whether enough positive pairs exist and they grew by a quarter of the minimum since the
    last fine-tune (or none was made): what the nightly job asks before training."""
    n = len(collect_pairs().pairs)
    if n < min_pairs():
        return False
    last = db.session.scalar(
        select(RankingModel.judgements).where(RankingModel.kind == RankingKind.ENCODER)
        .order_by(RankingModel.id.desc()).limit(1)
    )
    return last is None or n >= int(last) + max(1, min_pairs() // 4)


def queue_finetune(user: User | None, **params: Any) -> Any:
    """A tracked job ``matching.finetune`` (returns the Job row)."""
    from marketplace.services import jobs as job_records

    job = job_records.create(FINETUNE_JOB, title=FINETUNE_JOB_TITLE, actor=user, params=params)
    return job_records.submit(job)

"""Fine-tuning the sentence-transformers encoder on the platform's positive pairs (issue 14 §3).

Pure library: no Flask, no database. The app turns its judgements into :class:`TrainingPair`
rows (need text → product text, optionally a hard negative product text); this module

* splits the needs into training and held-out needs (:func:`split_needs`: a held-out need is
  never trained on, neither as an anchor nor through its negatives),
* fine-tunes a sentence-transformers folder with ``MultipleNegativesRankingLoss`` and writes the
  result as a new folder (:func:`fine_tune`), and
* compares two encoders by dense-only nDCG@10 (:func:`dense_ndcg`, :func:`compare`) and decides
  whether the fine-tuned one may replace the running one (:func:`decide`).

**Training.** One plain torch loop around the sentence-transformers loss (the library's
``SentenceTransformerTrainer`` and ``model.fit`` need the ``datasets`` and ``accelerate``
packages, which this project does not install; the loss, the model and the saved folder are
the library's own). ``MultipleNegativesRankingLoss`` treats every other product of a batch as a
negative for a need; a pair with a hard negative (a product the organizer removed from the need's
top 10, or that the firm declined as 「不匹配」) adds that product as a third column. A batch holds
either pairs only or triplets only, and never two pairs of the same need or the same product (so
that a need's second good product is never pushed away as an "in-batch negative").

**Frozen word embedding.** multilingual-e5-small has 118 M parameters, of which the word
embedding (250,002 pieces x 384) holds 96 M. It is frozen (``requires_grad = False``): AdamW then
keeps state for 22 M parameters only, an epoch is several times faster on a CPU, and the rare
pieces that a few hundred pairs never touch keep their pretrained vectors.

**Prompts.** Each side gets the prompt the engine encodes it with. The engine ranks products for a
need with the need's *document* vector (``passage: `` for e5-small, see
:meth:`matching.engine.MatchEngine.products_for`), so that is what the caller should pass as
``anchor_prompt``; ``query: `` is only used for free-text searches.

**Sequence length.** Training truncates at ``max_seq_length`` (default 128 tokens: the opening of
a product text carries its name, field and summary; at 256 a 200-pair epoch of e5-small peaked at
11 GB of memory, at 128 at 6.1 GB — docs/benchmarks.md); the saved folder keeps the base model's own
limit, so the engine encodes exactly as it did with the base model.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from matching.encoders import Encoder, SentenceTransformerEncoder
from matching.metrics import ndcg_at_k, paired_bootstrap_ci

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_EPOCHS",
    "DEFAULT_LEARNING_RATE",
    "DEFAULT_MAX_SEQ_LENGTH",
    "GUARD_MARGIN",
    "HOLDOUT_SHARE",
    "K",
    "MARKER_FILE",
    "MIN_GAIN",
    "Comparison",
    "Decision",
    "FineTuneResult",
    "FineTunedEncoder",
    "NotEnoughPairs",
    "TrainingPair",
    "batches",
    "compare",
    "decide",
    "dense_ndcg",
    "fine_tune",
    "freeze_word_embeddings",
    "read_marker",
    "split_needs",
]

DEFAULT_EPOCHS = 1
#: Small batches: a CPU step stays short and 200 pairs still make 13 optimizer steps.
DEFAULT_BATCH_SIZE = 16
DEFAULT_LEARNING_RATE = 2e-5
DEFAULT_MAX_SEQ_LENGTH = 128
#: ``MultipleNegativesRankingLoss``'s default (temperature 0.05).
DEFAULT_SCALE = 20.0
WARMUP_SHARE = 0.1
#: Share of the needs held out for the switch decision (at least one need).
HOLDOUT_SHARE = 0.2
#: The fine-tuned encoder replaces the running one only when held-out nDCG@10 rises by this
#: much (and the paired 95 % interval is above 0): the same bar as the learned re-ranker
#: (:data:`matching.learning.MIN_MARGIN`); a switch re-encodes the whole corpus.
MIN_GAIN = 0.01
#: ... and the dev set (seeds/eval), which is never trained on, may not drop by more than this.
GUARD_MARGIN = 0.01
K = 10
#: Written into every fine-tuned folder: what it was trained from and on.
MARKER_FILE = "finetune.json"

Progress = Callable[[int, int], None]


class NotEnoughPairs(ValueError):
    """Too few pairs (or needs) to train and hold some out."""


@dataclass(frozen=True)
class TrainingPair:
    """A need and a product it was judged relevant for (grade >= 2); ``negative`` is the text of
    a product judged wrong for the same need (grade 0), or ``None``."""

    need_id: Hashable
    product_id: Hashable
    anchor: str
    positive: str
    negative: str | None = None


# ------------------------------------------------------------------------------ data


def _need_fraction(seed: int, need: Hashable) -> float:
    """A fixed number in [0, 1) per need (a hash of its id)."""
    digest = hashlib.sha256(f"{seed}:{need!r}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_needs(
    need_ids: Sequence[Hashable], holdout_share: float = HOLDOUT_SHARE, seed: int = 0
) -> tuple[frozenset[Hashable], frozenset[Hashable]]:
    """``(training needs, held-out needs)``. A need is held out when a hash of its id falls
    below ``holdout_share``, so its side never depends on the other needs: a need held out once
    stays held out as judgements accumulate, and a model trained earlier never saw it. With
    none (or all) falling there, the need with the smallest (largest) hash changes side, so each
    side has at least one need."""
    needs = sorted(set(need_ids), key=lambda n: _need_fraction(seed, n))
    if len(needs) < 2:
        raise NotEnoughPairs(f"need at least 2 judged needs to hold one out, got {len(needs)}")
    n_held = sum(1 for n in needs if _need_fraction(seed, n) < holdout_share)
    n_held = min(len(needs) - 1, max(1, n_held))
    return frozenset(needs[n_held:]), frozenset(needs[:n_held])


def batches(pairs: Sequence[TrainingPair], batch_size: int, seed: int = 0) -> list[list[TrainingPair]]:
    """Shuffled batches of at most ``batch_size`` pairs (see the module docstring): pairs with
    and without a negative never share a batch; no need and no product occurs twice in one.
    Batches of a single pair without a negative are dropped (nothing to contrast with)."""
    rng = random.Random(seed)
    out: list[list[TrainingPair]] = []
    for group in ([p for p in pairs if p.negative is None], [p for p in pairs if p.negative is not None]):
        pending = list(group)
        rng.shuffle(pending)
        while pending:
            batch: list[TrainingPair] = []
            needs: set[Hashable] = set()
            products: set[Hashable] = set()
            rest: list[TrainingPair] = []
            for pair in pending:
                if len(batch) < batch_size and pair.need_id not in needs and pair.product_id not in products:
                    batch.append(pair)
                    needs.add(pair.need_id)
                    products.add(pair.product_id)
                else:
                    rest.append(pair)
            out.append(batch)
            pending = rest
    out = [b for b in out if len(b) > 1 or b[0].negative is not None]
    rng.shuffle(out)
    return out


# ------------------------------------------------------------------------------ training


def freeze_word_embeddings(model: Any) -> int:
    """Set ``requires_grad = False`` on every ``embeddings.word_embeddings`` of ``model``;
    returns the number of parameters frozen (raises when there is none)."""
    frozen = 0
    for name, module in model.named_modules():
        if name == "word_embeddings" or name.endswith(".word_embeddings"):
            for param in module.parameters():
                if param.requires_grad:
                    param.requires_grad = False
                    frozen += param.numel()
    if not frozen:
        raise ValueError("the model has no embeddings.word_embeddings to freeze")
    return frozen


@dataclass
class FineTuneResult:
    """What :func:`fine_tune` did."""

    path: str
    base: str
    pairs: int
    triplets: int
    needs: int
    epochs: int
    steps: int
    batch_size: int
    learning_rate: float
    max_seq_length: int
    seconds: float
    #: CPU seconds of the process over the epoch(s) (all threads): on a loaded machine the wall
    #: time says little, the CPU time divided by the cores says what an idle machine would take.
    cpu_seconds: float
    frozen_parameters: int
    trainable_parameters: int
    losses: list[float] = field(default_factory=list)
    anchor_prompt: str = ""
    positive_prompt: str = ""

    @property
    def seconds_per_epoch(self) -> float:
        return self.seconds / self.epochs if self.epochs else 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _linear_schedule(total: int) -> Callable[[int], float]:
    warmup = max(1, math.ceil(total * WARMUP_SHARE))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


def fine_tune(
    base: str | os.PathLike[str],
    pairs: Sequence[TrainingPair],
    dest: str | os.PathLike[str],
    *,
    anchor_prompt: str = "",
    positive_prompt: str = "",
    epochs: int = DEFAULT_EPOCHS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    learning_rate: float = DEFAULT_LEARNING_RATE,
    max_seq_length: int | None = DEFAULT_MAX_SEQ_LENGTH,
    scale: float = DEFAULT_SCALE,
    seed: int = 0,
    threads: int | None = None,
    freeze_words: bool = True,
    progress: Progress | None = None,
) -> FineTuneResult:
    """Fine-tune the sentence-transformers model ``base`` (a folder or a Hub name in the local
    cache) on ``pairs`` and save it as the folder ``dest`` (written beside it under a temporary
    name, then renamed: a crash leaves no half folder). ``dest`` must not exist.

    Negatives of the pairs are the third column of ``MultipleNegativesRankingLoss``; the word
    embedding is frozen (``freeze_words=False`` trains it too: only for measuring what freezing
    saves). ``progress(done, total)`` is called after every optimizer step.
    """
    if epochs < 1:
        raise ValueError("epochs must be at least 1")
    if batch_size < 2:
        raise ValueError("batch_size must be at least 2 (in-batch negatives)")
    dest = Path(dest)
    if dest.exists():
        raise FileExistsError(f"{dest} exists already")
    plan = [batches(pairs, batch_size, seed + epoch) for epoch in range(epochs)]
    total = sum(len(p) for p in plan)
    if not total:
        raise NotEnoughPairs("no training batch: need at least 2 pairs of different needs and products")
    if Path(os.path.expanduser(str(base))).is_dir():
        os.environ["HF_HUB_OFFLINE"] = "1"

    import torch

    previous_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        return _train_and_save(
            base, pairs, dest, plan, total,
            anchor_prompt=anchor_prompt, positive_prompt=positive_prompt, epochs=epochs,
            batch_size=batch_size, learning_rate=learning_rate, max_seq_length=max_seq_length,
            scale=scale, seed=seed, freeze_words=freeze_words, progress=progress,
        )
    finally:
        torch.set_num_threads(previous_threads)


def _train_and_save(
    base: str | os.PathLike[str], pairs: Sequence[TrainingPair], dest: Path,
    plan: list[list[list[TrainingPair]]], total: int, *, anchor_prompt: str, positive_prompt: str,
    epochs: int, batch_size: int, learning_rate: float, max_seq_length: int | None, scale: float,
    seed: int, freeze_words: bool, progress: Progress | None,
) -> FineTuneResult:
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    torch.manual_seed(seed)
    model = SentenceTransformer(str(base), device="cpu")
    started, cpu_started = time.perf_counter(), time.process_time()
    saved_max = model.max_seq_length
    if max_seq_length:
        model.max_seq_length = min(int(saved_max or max_seq_length), int(max_seq_length))
    train_length = int(model.max_seq_length or 0)
    frozen = freeze_word_embeddings(model) if freeze_words else 0
    params = [p for p in model.parameters() if p.requires_grad]
    trainable = sum(p.numel() for p in params)
    loss_fn = MultipleNegativesRankingLoss(model, scale=scale)
    optimizer = torch.optim.AdamW(params, lr=learning_rate, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _linear_schedule(total))
    losses: list[float] = []
    model.train()
    done = 0
    for epoch_batches in plan:
        for batch in epoch_batches:
            columns = [
                [anchor_prompt + p.anchor for p in batch],
                [positive_prompt + p.positive for p in batch],
            ]
            if batch[0].negative is not None:
                columns.append([positive_prompt + (p.negative or "") for p in batch])
            features = [model.preprocess(column) for column in columns]
            loss = loss_fn(features, None)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(round(float(loss.detach()), 5))
            done += 1
            if progress is not None:
                progress(done, total)
    model.eval()
    model.max_seq_length = saved_max
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_started
    result = FineTuneResult(
        path=str(dest),
        base=str(base),
        pairs=len(pairs),
        triplets=sum(1 for p in pairs if p.negative is not None),
        needs=len({p.need_id for p in pairs}),
        epochs=epochs,
        steps=total,
        batch_size=batch_size,
        learning_rate=learning_rate,
        max_seq_length=train_length,
        seconds=round(seconds, 2),
        cpu_seconds=round(cpu_seconds, 2),
        frozen_parameters=frozen,
        trainable_parameters=trainable,
        losses=losses,
        anchor_prompt=anchor_prompt,
        positive_prompt=positive_prompt,
    )
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    try:
        model.save(str(tmp), create_model_card=False)
        marker = {**result.to_dict(), "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        marker.pop("path")
        (tmp / MARKER_FILE).write_text(json.dumps(marker, ensure_ascii=False, indent=2), encoding="utf-8")
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return result


def read_marker(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The :data:`MARKER_FILE` of a fine-tuned folder (``None``: not one, or incomplete)."""
    try:
        marker = json.loads((Path(folder) / MARKER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None


class FineTunedEncoder(SentenceTransformerEncoder):
    """A fine-tuned folder, encoded like the base it came from.

    Its name is ``<base name>+ft:<folder name>`` so that the engine's shipped fusion weights of
    the base family (``MatchConfig.for_encoder``: "e5-small" …) still apply; the fingerprint is
    the folder's own (a new version re-encodes the corpus).
    """

    def __init__(
        self,
        folder: str | os.PathLike[str],
        *,
        base_name: str,
        query_prompt: str | None,
        document_prompt: str | None,
        batch_size: int = 32,
    ) -> None:
        self.base_name = base_name
        super().__init__(
            str(folder), query_prompt=query_prompt or "", document_prompt=document_prompt or "",
            batch_size=batch_size,
        )

    @property
    def name(self) -> str:
        return f"{self.base_name}+ft:{Path(self.model_spec).name}"


# ------------------------------------------------------------------------------ evaluation


def dense_ndcg(
    encoder: Encoder,
    needs: Mapping[Hashable, str],
    products: Mapping[Hashable, str],
    qrels: Mapping[Hashable, Mapping[Hashable, float]],
    *,
    need_kind: str = "document",
    k: int = K,
) -> dict[Hashable, float | None]:
    """nDCG@k per need of the dense ranking alone: every product of ``products`` ranked by
    cosine to the need's vector (encoded as ``need_kind``, what the engine uses)."""
    need_ids = [n for n in needs if n in qrels]
    product_ids = list(products)
    if not need_ids or not product_ids:
        return {}
    need_vecs = encoder.encode([needs[n] for n in need_ids], kind=need_kind)  # type: ignore[arg-type]
    product_vecs = encoder.encode([products[p] for p in product_ids], kind="document")
    scores = need_vecs @ product_vecs.T
    depth = min(k, len(product_ids))
    out: dict[Hashable, float | None] = {}
    for row, need in enumerate(need_ids):
        top = np.argsort(-scores[row], kind="stable")[:depth]
        out[need] = ndcg_at_k([product_ids[i] for i in top], qrels[need], k)
    return out


@dataclass
class Comparison:
    """Dense nDCG@k of two encoders on the same needs, paired."""

    reference: float
    candidate: float
    diff: float
    ci95: tuple[float, float]
    needs: int

    def to_dict(self) -> dict[str, Any]:
        return {
            f"reference_ndcg@{K}": round(self.reference, 4),
            f"candidate_ndcg@{K}": round(self.candidate, 4),
            "diff": round(self.diff, 4),
            "ci95": [round(v, 4) for v in self.ci95],
            "needs": self.needs,
        }


def compare(
    reference: Mapping[Hashable, float | None], candidate: Mapping[Hashable, float | None], seed: int = 0
) -> Comparison:
    """Paired comparison of two :func:`dense_ndcg` results (needs defined in both)."""
    needs = [n for n in reference if reference[n] is not None and candidate.get(n) is not None]
    a = [float(candidate[n]) for n in needs]  # type: ignore[arg-type]
    b = [float(reference[n]) for n in needs]  # type: ignore[arg-type]
    paired = paired_bootstrap_ci(a, b, seed=seed)
    lo, hi = paired["ci"]  # type: ignore[misc]
    return Comparison(
        reference=float(np.mean(b)) if b else 0.0,
        candidate=float(np.mean(a)) if a else 0.0,
        diff=float(paired["diff"]),
        ci95=(float(lo), float(hi)),
        needs=len(needs),
    )


@dataclass
class Decision:
    """Whether the fine-tuned encoder replaces the running one, and why (in Chinese)."""

    switch_on: bool
    reason: str


def decide(
    held_out: Comparison,
    guard: Comparison | None,
    *,
    min_gain: float = MIN_GAIN,
    guard_margin: float = GUARD_MARGIN,
) -> Decision:
    """The switch rule: held-out nDCG@10 rises by at least ``min_gain`` with the paired 95 %
    interval above 0, and the dev set (when given) drops by at most ``guard_margin``."""
    summary = (
        f"在 {held_out.needs} 个留出需求（未参与训练）上，微调模型的向量检索 nDCG@{K} 为 "
        f"{held_out.candidate:.3f}，当前模型为 {held_out.reference:.3f}，差值 {held_out.diff:+.3f}"
        f"（95% 置信区间 [{held_out.ci95[0]:+.3f}, {held_out.ci95[1]:+.3f}]）"
    )
    if guard is not None:
        summary += (
            f"；开发评测集（{guard.needs} 个需求）上为 {guard.candidate:.3f} 对 {guard.reference:.3f}，"
            f"差值 {guard.diff:+.3f}"
        )
    if held_out.needs == 0:
        return Decision(False, "没有可评估的留出需求（留出需求都没有正向判断），继续使用当前模型。")
    if held_out.diff < min_gain:
        return Decision(False, f"{summary}。提升不足 {min_gain:.2f}，继续使用当前模型。")
    if held_out.ci95[0] <= 0:
        return Decision(False, f"{summary}。置信区间下限未超过 0，提升尚不可靠，继续使用当前模型。")
    if guard is not None and guard.diff < -guard_margin:
        return Decision(
            False, f"{summary}。开发评测集下降超过 {guard_margin:.2f}，可能过拟合，继续使用当前模型。"
        )
    return Decision(True, f"{summary}。提升至少 {min_gain:.2f} 且开发评测集未明显下降，启用微调模型。")

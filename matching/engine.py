"""Hybrid matching of opportunities (机会清单) and products (产品清单), with explanations.

The engine holds two sides, ``"product"`` and ``"opportunity"``; each side has a dense
:class:`~matching.vector_index.VectorIndex`, a BM25 :class:`~matching.lexical.LexicalIndex`
and facet sets for hard filters. A query is an item (indexed or a draft) or free text.

**Built once, opened many times.** :meth:`MatchEngine.build` builds the sides in memory (the
build job, the CLI, the evaluation); :meth:`MatchEngine.save` writes them as a *version*:
``.npy`` arrays, the FAISS index, items as JSON lines with offsets, facet postings.
:meth:`MatchEngine.load` opens a version read-only and memory-mapped (:class:`_OpenedSide`):
nothing is rebuilt, so every process that opens the same folder shares its pages. Items
published or changed later go into a small in-memory delta of the opened side (vectors scored
exactly, BM25 with the version's statistics); changed and removed ids are masked out of the
version. Both kinds of side answer the same questions (``dense_top``, ``lexical_query``,
``item``, ``allowed`` ...), so ranking code does not care which one it talks to, and an opened
version ranks exactly as the engine that saved it (the same float32 sums in the same order).

**Candidates, not the corpus.** A query scores BM25 once, from its own terms' posting lists
(:meth:`matching.lexical.LexicalIndex.score`); the top-N of that and of the dense index make the
candidate pool, and every signal is computed for the candidates only. Only the ``k`` returned
hits are explained, with ``idf``/``doc_freq`` cached per token for the index's lifetime.
The structured signal of the whole pool comes from per-side fact arrays (:class:`_Facts`: value
codes of city, county, categories, areas and tags, and the maturity score), saved with a version
and memory-mapped, so no candidate is decoded; explanations read each hit's whole words stored at
build time (:class:`_MutableWords` / :class:`_FrozenWords`) and order the query's words once per
query (:class:`_ExplainPlan`). These paths do the same float operations in the same order as the
per-item formulas, so scores are bit-identical to them.

Ranking, for one query against one side:

1. **Hard filters.** :class:`Filters` (categories, areas, city, county, maturity, tags,
   ``allowed_ids``) give the allowed id set; nothing outside it is ever returned.
2. **Candidates.** The union of the dense top-N and the BM25 top-N inside the allowed set,
   ``N = max(config.candidate_pool, k)``.
3. **Signals per candidate**, each in [0, 1]:

   * ``dense = clip(cosine(query, item), 0, 1)``
   * ``lexical = bm25(query, item) / max(bm25 over the candidate pool)`` (0 if no term matches)
   * ``structured = Σ_j w_j · s_j / Σ_j w_j`` over the sub-signals

     - ``field``: 1 if a category is shared, 0.5 if only an area (应用领域大类) is shared
     - ``city``: 1 if both have the same ``region_city``
     - ``county``: 1 if both have the same ``region_county``
     - ``tags``: |shared tags| / |query tags|
     - ``maturity``: the candidate's maturity (规模化推广 1, 试点应用 0.6, 研发中 0.3, unknown 0)

4. **Fusion.** ``score = w_dense · dense + w_lexical · lexical + w_structured · structured``,
   sorted by score (ties by id). Weights live in :class:`MatchConfig`.

``similar()`` (near-duplicates on one side) ranks by plain cosine and keeps hits whose cosine
is at least ``min_score`` (default ``config.duplicate_threshold``).

Each :class:`Hit` carries the breakdown of every component, the matched terms and short
Chinese reasons (「同属交通出行领域」「共同关键词：车位、诱导」「近义词：扬尘 ≈ 颗粒物」「同在南昌市」 ...).

The lexical query is the query's tokens with weight 1 plus the thesaurus terms of its words
with weight ``config.synonym_weight`` (see :func:`matching.text.expand_query`). Explanations
only name **whole words** present in both texts (:func:`matching.text.words`: no bigram, no
「动车」 inside 「电动车」) that are not generic filler (``data/generic_words.txt``), and
thesaurus pairs (a query word whose group-mate the item uses). When a hit owes more to the
dense signal than to the lexical one, :attr:`Hit.evidence` holds the closest pair of sentences
(one from each text) by the engine's own encoder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import mmap
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from matching.encoders import Encoder, load_encoder
from matching.lexical import DeltaLexical, FrozenLexicalIndex, LexicalIndex
from matching.text import (
    expand_query,
    generic_words,
    split_sentences,
    stopwords,
    thesaurus,
    tokenize,
    tokenizer_fingerprint,
    words,
)
from matching.vector_index import FrozenVectorIndex, VectorIndex

__all__ = [
    "SIDES",
    "Item",
    "Filters",
    "MatchConfig",
    "Hit",
    "Evidence",
    "MatchEngine",
    "IndexMismatch",
    "document_text",
    "MATURITY_LABELS",
]

SIDES = ("product", "opportunity")
_FORMAT_VERSION = 3  # 3: structured facts and whole words per item
#: sentence vectors kept for the 「语义最接近」 evidence (per engine)
_SENTENCE_CACHE_SIZE = 4096
_MANIFEST = "manifest.json"

#: Maturity codes (and their Chinese labels) → structured score.
MATURITY_SCORES: dict[str, float] = {
    "scale": 1.0,
    "pilot": 0.6,
    "rnd": 0.3,
    "规模化推广": 1.0,
    "试点应用": 0.6,
    "研发中": 0.3,
}
#: Maturity code → label shown in reasons.
MATURITY_LABELS: dict[str, str] = {"scale": "规模化推广", "pilot": "试点应用", "rnd": "研发中"}


class IndexMismatch(RuntimeError):
    """A saved index does not fit the current encoder or corpus version; rebuild it."""


@dataclass(frozen=True)
class Item:
    """One matchable entry: a product or an opportunity, with plain structured fields."""

    id: int
    side: str
    title: str
    text: str
    categories: tuple[str, ...] = ()
    areas: tuple[str, ...] = ()
    region_city: str | None = None
    region_county: str | None = None
    tags: tuple[str, ...] = ()
    maturity: str | None = None

    def __post_init__(self) -> None:
        if self.side not in SIDES:
            raise ValueError(f"side must be one of {SIDES}, not {self.side!r}")
        for name in ("categories", "areas", "tags"):
            value = getattr(self, name)
            if isinstance(value, str):
                object.__setattr__(self, name, (value,) if value else ())
            elif not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(value))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        data = dataclasses.asdict(self)
        for name in ("categories", "areas", "tags"):
            data[name] = list(data[name])
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Item:
        """Inverse of :meth:`to_dict`."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in names})


def document_text(item: Item) -> str:
    """The canonical text that is encoded for ``item``: title, categories, tags, then text.

    The app hashes it (with the encoder fingerprint) as the key of its vector cache.
    """
    parts = [item.title.strip()]
    if item.categories:
        parts.append("、".join(item.categories))
    if item.tags:
        parts.append("、".join(item.tags))
    parts.append(item.text.strip())
    return "\n".join(p for p in parts if p)


@dataclass(frozen=True)
class Filters:
    """Hard constraints on the side being searched. Unset (``None``/empty) means no constraint.

    Tuple-valued filters match when any value overlaps; ``maturity`` accepts one value or a
    tuple of accepted values.
    """

    categories: tuple[str, ...] | None = None
    areas: tuple[str, ...] | None = None
    region_city: str | None = None
    region_county: str | None = None
    maturity: str | tuple[str, ...] | None = None
    tags: tuple[str, ...] | None = None
    allowed_ids: frozenset[int] | None = None

    def is_empty(self) -> bool:
        """True when no constraint is set."""
        return (
            not any(
                [self.categories, self.areas, self.region_city, self.region_county, self.maturity, self.tags]
            )
            and self.allowed_ids is None
        )


#: Shipped defaults per encoder family (the name's prefix). The fusion weights were chosen by
#: 5-fold cross-validation over the needs of both dev sets (seeds/eval + seeds/eval2; every fold
#: chose 0.85–0.90 / 0.10–0.15 / 0–0.05 for e5-small; see docs/benchmarks.md). The two cosine
#: thresholds are calibrated on e5-small's score distribution, not on relevance labels: a
#: near-duplicate needs a cosine above what the best ordinary candidate reaches (about 0.93), and
#: 「语义相似度高」 is said only above the typical top-10 cosine (about 0.90).
ENCODER_DEFAULTS: dict[str, dict[str, float]] = {
    "e5-small": {
        "w_dense": 0.90,
        "w_lexical": 0.10,
        "w_structured": 0.0,
        "synonym_weight": 0.5,
        "duplicate_threshold": 0.95,
        "semantic_reason_threshold": 0.90,
    },
}


@dataclass(frozen=True)
class MatchConfig:
    """Fusion weights and knobs (see the module docstring for the formula)."""

    # Defaults chosen on the seeds/eval dev set (see docs/matching.md, "Choosing the weights").
    w_dense: float = 0.35
    w_lexical: float = 0.55
    w_structured: float = 0.10
    # structured sub-weights (normalised by their sum)
    w_field: float = 0.40
    w_city: float = 0.15
    w_county: float = 0.05
    w_tags: float = 0.20
    w_maturity: float = 0.20
    #: dense top-N and BM25 top-N are merged into the candidate pool
    candidate_pool: int = 100
    #: cosine at or above which ``similar()`` reports a near-duplicate
    duplicate_threshold: float = 0.85
    #: cosine at or above which a hit gets the reason 「语义相似度高」
    semantic_reason_threshold: float = 0.6
    #: how many matched terms are shown in 「共同关键词」
    max_reason_terms: int = 5
    #: BM25 query weight of a thesaurus expansion (an exact query token weighs 1)
    synonym_weight: float = 0.5
    #: sentences per text compared for the 「语义最接近」 evidence
    evidence_max_sentences: int = 12
    #: evidence is computed for at most this many of the returned hits (the first ones)
    evidence_max_hits: int = 20

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"MatchConfig.{f.name} must be a finite number, not {value!r}")
            if value < 0:
                raise ValueError(f"MatchConfig.{f.name} must not be negative")
        if self.w_dense + self.w_lexical + self.w_structured <= 0:
            raise ValueError("at least one of w_dense, w_lexical, w_structured must be positive")
        if self.candidate_pool < 1 or self.max_reason_terms < 1:
            raise ValueError("candidate_pool and max_reason_terms must be at least 1")
        if self.synonym_weight > 1:
            raise ValueError("synonym_weight must be at most 1 (an expansion never outweighs the word)")
        if self.duplicate_threshold > 1 or self.semantic_reason_threshold > 1:
            raise ValueError("thresholds are cosines and must be at most 1")

    @classmethod
    def for_encoder(cls, encoder_name: str | None, overrides: Mapping[str, Any] | None = None) -> MatchConfig:
        """The shipped defaults for an encoder family (:data:`ENCODER_DEFAULTS`), then ``overrides``.

        Fusion weights only mean something for the encoder they were chosen with: e5-small's
        cosines are compressed (the top candidate averages 0.93, the 50th 0.88), the offline
        encoder's spread from 0.75 to 0.05. An encoder without an entry keeps the class defaults.
        """
        base: dict[str, Any] = {}
        for prefix, values in ENCODER_DEFAULTS.items():
            if encoder_name and encoder_name.startswith(prefix):
                base = dict(values)
                break
        return cls.from_mapping({**base, **dict(overrides or {})})

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any] | None) -> MatchConfig:
        """Build from a dict (e.g. app config). Unknown keys are ignored; bad values raise
        ``ValueError``. Integer knobs must be whole numbers."""
        if not mapping:
            return cls()
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name not in mapping:
                continue
            value = mapping[f.name]
            if isinstance(value, str):
                try:
                    value = float(value)
                except ValueError:
                    raise ValueError(
                        f"MatchConfig.{f.name} must be a number, not {mapping[f.name]!r}"
                    ) from None
            if f.type in ("int", int):
                if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
                    raise ValueError(f"MatchConfig.{f.name} must be an integer, not {mapping[f.name]!r}")
                value = int(value)
            kwargs[f.name] = value
        return cls(**kwargs)

    def to_dict(self) -> dict[str, float]:
        """Plain dict of all knobs."""
        return dataclasses.asdict(self)


class Evidence(NamedTuple):
    """The closest pair of sentences of a semantic match: one from the query (the need, for
    ``products_for``), one from the hit, and their cosine under the engine's encoder."""

    query_sentence: str
    item_sentence: str
    cosine: float


@dataclass
class Hit:
    """One ranked result with its explanation.

    ``matched_terms`` are whole words found in both texts (acronyms in their written case);
    ``related_terms`` are thesaurus pairs ``(query word, item word)``; ``evidence`` is set on
    hits whose match is mainly semantic (see :class:`Evidence`).
    """

    id: int
    side: str
    score: float
    dense: float
    lexical: float
    structured: float
    breakdown: dict[str, float] = field(default_factory=dict)
    matched_terms: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    related_terms: list[tuple[str, str]] = field(default_factory=list)
    evidence: Evidence | None = None

    @property
    def reason(self) -> str:
        """「推荐理由：…；…」 joined from :attr:`reasons`."""
        return "推荐理由：" + ("；".join(self.reasons) if self.reasons else "综合相关度较高")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict, including ``reason``."""
        data = dataclasses.asdict(self)
        data["related_terms"] = [list(pair) for pair in self.related_terms]
        data["evidence"] = self.evidence._asdict() if self.evidence is not None else None
        data["reason"] = self.reason
        return data


# ------------------------------------------------------------------------------------------------


_ASCII_TERM = re.compile(r"[a-z0-9][a-z0-9.\-]*")
#: a side this large has a meaningful document frequency; below it, df says little
_DF_MIN_DOCS = 50
#: explanations skip words found in more than this share of a side's documents
_DF_MAX_SHARE = 0.4


@dataclass
class _Query:
    """What the ranking and the explanations need to know about a query."""

    text: str  # the text the words come from (document text of an item, or the free text)
    weights: dict[str, float]  # weighted lexical query (exact 1, thesaurus expansions lower)
    words: frozenset[str]  # whole words (with compound parts)
    sentences: list[str]  # for the 「语义最接近」 evidence
    kind: str  # "query" or "document": how its sentences are encoded
    #: per side searched: the query's words ordered for explanations (see _ExplainPlan)
    plans: dict[int, _ExplainPlan] = field(default_factory=dict)


@dataclass
class _ExplainPlan:
    """What explanations need from a query's words, worked out once per query and side:
    the informative words rarest first, and per thesaurus word (rarest first) its informative
    group-mates that the query does not use (rarest first)."""

    shown_order: list[str]
    synonyms: list[tuple[str, list[str]]]


def _showable(term: str) -> bool:
    """A whole word worth naming in an explanation: two or more characters, not a number,
    not a stopword or generic filler (企业, 一体, 下降 …)."""
    return len(term) >= 2 and not term.isdigit() and term not in stopwords() and term not in generic_words()


def _written_case(term: str, texts: Sequence[str]) -> str:
    """An English term as it is written in ``texts`` (ADAS, NB-IoT), else as given."""
    if not _ASCII_TERM.fullmatch(term):
        return term
    pattern = re.compile(r"(?<![A-Za-z0-9])" + re.escape(term) + r"(?![A-Za-z0-9])", re.IGNORECASE)
    for text in texts:
        found = pattern.search(text or "")
        if found:
            return found.group()
    return term


def _own_text(item: Item) -> str:
    """Title and text: what explanations look in (shared categories and tags have reasons of
    their own, so their words are not 「共同关键词」)."""
    return f"{item.title}\n{item.text}"


def _item_sentences(item: Item, limit: int) -> list[str]:
    """The title and the sentences of the text (not the category and tag lines)."""
    return [s for s in dict.fromkeys([item.title.strip(), *split_sentences(item.text)]) if s][:limit]


def _pairs(scores: np.ndarray, ids: np.ndarray) -> list[tuple[int, float]]:
    """``(id, score)`` of the first query row of a vector search, without the empty slots."""
    return [(int(i), float(c)) for i, c in zip(ids[0].tolist(), scores[0].tolist(), strict=True) if i >= 0]


def _structured(cfg: MatchConfig, query: Item | None, item: Item) -> tuple[float, dict[str, float]]:
    """The structured signal (see the module docstring) and its sub-signals, for one item."""
    parts = {"field": 0.0, "city": 0.0, "county": 0.0, "tags": 0.0, "maturity": 0.0}
    if query is not None:
        if set(query.categories) & set(item.categories):
            parts["field"] = 1.0
        elif set(query.areas) & set(item.areas):
            parts["field"] = 0.5
        if query.region_city and query.region_city == item.region_city:
            parts["city"] = 1.0
            if query.region_county and query.region_county == item.region_county:
                parts["county"] = 1.0
        if query.tags:
            parts["tags"] = len(set(query.tags) & set(item.tags)) / len(set(query.tags))
    if item.maturity:
        parts["maturity"] = MATURITY_SCORES.get(item.maturity, 0.0)
    weights = {
        "field": cfg.w_field,
        "city": cfg.w_city,
        "county": cfg.w_county,
        "tags": cfg.w_tags,
        "maturity": cfg.w_maturity,
    }
    total = sum(weights.values())
    value = sum(weights[n] * parts[n] for n in parts) / total if total > 0 else 0.0
    return value, parts


# ------------------------------------------------------------------------------------------------
# Per-item facts kept as arrays: the structured signal of a whole candidate pool is computed with
# a few numpy operations, and explanations read an item's whole words without tokenising it.

#: words longer than this go into a small JSON list instead of the fixed-width vocabulary array
_WORD_WIDTH = 24
_NO_VALUE = -1  # padding / missing value in the fact arrays
_UNKNOWN = -2  # a query value the side has never seen (matches nothing)


def _maturity_score(item: Item) -> float:
    return MATURITY_SCORES.get(item.maturity, 0.0) if item.maturity else 0.0


class _Facts:
    """The structured fields of one side's items as arrays, one row per item.

    ``city``/``county`` hold value codes (``-1`` for none), ``maturity`` the maturity score, and
    ``categories``/``areas``/``tags`` the *distinct* value codes of each item, padded with ``-1``
    to the widest item. Codes come from one vocabulary shared by all fields (``values``).
    :class:`_MutableFacts` grows with the in-memory side; :class:`_FrozenFacts` maps the arrays
    a saved version holds (rows in the order of the version's sorted item ids).
    """

    MULTI = ("categories", "areas", "tags")
    codes: dict[str, int]
    arrays: dict[str, np.ndarray]

    def code(self, value: str | None) -> int:
        return _UNKNOWN if value is None else self.codes.get(value, _UNKNOWN)

    def code_array(self, values: Iterable[str]) -> np.ndarray:
        return np.asarray(sorted({self.code(v) for v in values}), dtype=np.int32)

    def structured(self, cfg: MatchConfig, query: Item | None, rows: np.ndarray) -> np.ndarray:
        """:meth:`MatchEngine._structured` of ``query`` against the items at ``rows`` (float64,
        the same operations in the same order, so the values are identical)."""
        a = self.arrays
        n = len(rows)
        zero = np.zeros(n, dtype=np.float64)
        field_part = city_part = county_part = tags_part = zero
        if query is not None:
            cats = self.code_array(query.categories)
            areas = self.code_array(query.areas)
            shared_cat = np.isin(a["categories"][rows], cats).any(axis=1) if len(cats) else np.zeros(n, bool)
            shared_area = np.isin(a["areas"][rows], areas).any(axis=1) if len(areas) else np.zeros(n, bool)
            field_part = np.where(shared_cat, 1.0, np.where(shared_area, 0.5, 0.0))
            if query.region_city:
                same_city = a["city"][rows] == self.code(query.region_city)
                city_part = same_city.astype(np.float64)
                if query.region_county:
                    county_part = (same_city & (a["county"][rows] == self.code(query.region_county))).astype(
                        np.float64
                    )
            if query.tags:
                wanted = self.code_array(query.tags)
                shared = np.isin(a["tags"][rows], wanted[wanted >= 0]).sum(axis=1)
                tags_part = shared / len(set(query.tags))
        maturity_part = np.asarray(a["maturity"][rows], dtype=np.float64)
        weights = (cfg.w_field, cfg.w_city, cfg.w_county, cfg.w_tags, cfg.w_maturity)
        total = sum(weights)
        if not total > 0:
            return zero
        acc = weights[0] * field_part
        for w, part in zip(weights[1:], (city_part, county_part, tags_part, maturity_part), strict=True):
            acc = acc + w * part
        return acc / total


class _MutableFacts(_Facts):
    """The facts of an in-memory side: rows are slots, reused when an item is replaced."""

    def __init__(self) -> None:
        self.codes = {}
        self.slot: dict[int, int] = {}
        self._free: list[int] = []
        self._size = 0
        self.arrays = {
            "city": np.full(0, _NO_VALUE, dtype=np.int32),
            "county": np.full(0, _NO_VALUE, dtype=np.int32),
            "maturity": np.zeros(0, dtype=np.float64),
            **{name: np.full((0, 0), _NO_VALUE, dtype=np.int32) for name in self.MULTI},
        }

    def _intern(self, value: str | None) -> int:
        if value is None:
            return _NO_VALUE
        code = self.codes.get(value)
        if code is None:
            code = self.codes[value] = len(self.codes)
        return code

    def _grow(self, rows: int, widths: Mapping[str, int]) -> None:
        a = self.arrays
        capacity = len(a["city"])
        new_capacity = max(capacity, rows)
        if new_capacity > capacity:
            new_capacity = max(new_capacity, 2 * capacity, 64)
        for name in ("city", "county", "maturity"):
            if new_capacity > capacity:
                fill = 0.0 if name == "maturity" else _NO_VALUE
                grown = np.full(new_capacity, fill, dtype=a[name].dtype)
                grown[:capacity] = a[name]
                a[name] = grown
        for name in self.MULTI:
            old = a[name]
            width = max(old.shape[1], widths[name])
            if new_capacity > old.shape[0] or width > old.shape[1]:
                grown = np.full((new_capacity, width), _NO_VALUE, dtype=np.int32)
                grown[: old.shape[0], : old.shape[1]] = old
                a[name] = grown

    def upsert(self, item: Item) -> None:
        multi = {name: sorted({self._intern(v) for v in getattr(item, name)}) for name in self.MULTI}
        row = self.slot.get(item.id)
        if row is None:
            row = self._free.pop() if self._free else self._size
            if row == self._size:
                self._size += 1
            self.slot[item.id] = row
        self._grow(self._size, {name: len(codes) for name, codes in multi.items()})
        a = self.arrays
        a["city"][row] = self._intern(item.region_city)
        a["county"][row] = self._intern(item.region_county)
        a["maturity"][row] = _maturity_score(item)
        for name, codes in multi.items():
            a[name][row] = _NO_VALUE
            a[name][row, : len(codes)] = codes

    def remove(self, item_id: int) -> None:
        row = self.slot.pop(item_id, None)
        if row is not None:
            self._free.append(row)

    def rows(self, ids: Sequence[int]) -> np.ndarray:
        slot = self.slot
        return np.fromiter((slot[i] for i in ids), dtype=np.int64, count=len(ids))

    def save(self, path: Path, ids: Sequence[int]) -> None:
        """Write the rows of ``ids`` (in that order) for :class:`_FrozenFacts`."""
        rows = self.rows(ids)
        for name, arr in self.arrays.items():
            np.save(path / f"facts_{name}.npy", np.ascontiguousarray(arr[rows]))
        values = sorted(self.codes, key=self.codes.__getitem__)
        (path / "facts_values.json").write_text(json.dumps(values, ensure_ascii=False), encoding="utf-8")


class _FrozenFacts(_Facts):
    """The facts of a saved version, memory-mapped; row ``r`` is the item ``items_ids[r]``."""

    NAMES = ("city", "county", "maturity", "categories", "areas", "tags")

    def __init__(self, path: Path) -> None:
        values = json.loads((path / "facts_values.json").read_text(encoding="utf-8"))
        self.codes = {value: code for code, value in enumerate(values)}
        self.arrays = {name: np.load(path / f"facts_{name}.npy", mmap_mode="r") for name in self.NAMES}
        self.files = [path / f"facts_{name}.npy" for name in self.NAMES]


class _MutableWords:
    """The whole words (:func:`matching.text.words` of title and text) of every item of an
    in-memory side, computed once when the item is indexed; equal words share one string."""

    def __init__(self) -> None:
        self._canonical: dict[str, str] = {}
        self._words: dict[int, tuple[str, ...]] = {}

    def upsert(self, item: Item) -> None:
        canonical = self._canonical
        found = dict.fromkeys(words(_own_text(item)))
        self._words[item.id] = tuple(canonical.setdefault(w, w) for w in found)

    def remove(self, item_id: int) -> None:
        self._words.pop(item_id, None)

    def get(self, item_id: int) -> frozenset[str] | None:
        found = self._words.get(item_id)
        return None if found is None else frozenset(found)

    def save(self, path: Path, ids: Sequence[int]) -> None:
        """Write the words of ``ids`` (in that order) for :class:`_FrozenWords`: a sorted
        fixed-width vocabulary (longer words in JSON after it) and one id list per item."""
        vocab = sorted({w for i in ids for w in self._words[i]})
        short = [w for w in vocab if len(w) <= _WORD_WIDTH]
        long = [w for w in vocab if len(w) > _WORD_WIDTH]
        code = {w: n for n, w in enumerate(short + long)}
        indptr = np.zeros(len(ids) + 1, dtype=np.int64)
        chunks = []
        for n, item_id in enumerate(ids):
            found = [code[w] for w in self._words[item_id]]
            chunks.append(np.asarray(found, dtype=np.int32))
            indptr[n + 1] = indptr[n] + len(found)
        np.save(path / "words_indptr.npy", indptr)
        np.save(path / "words_ids.npy", np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int32))
        np.save(path / "words_vocab.npy", np.asarray(short, dtype=f"<U{_WORD_WIDTH}"))
        (path / "words_long.json").write_text(json.dumps(long, ensure_ascii=False), encoding="utf-8")


class _FrozenWords:
    """The whole words of a saved version's items (see :meth:`_MutableWords.save`), mapped."""

    def __init__(self, path: Path) -> None:
        self.indptr = np.load(path / "words_indptr.npy", mmap_mode="r")
        self.ids = np.load(path / "words_ids.npy", mmap_mode="r")
        self.vocab = np.load(path / "words_vocab.npy", mmap_mode="r")
        self.long = json.loads((path / "words_long.json").read_text(encoding="utf-8"))
        self.files = [path / n for n in ("words_indptr.npy", "words_ids.npy", "words_vocab.npy")]

    def at(self, row: int) -> frozenset[str]:
        codes = np.asarray(self.ids[int(self.indptr[row]) : int(self.indptr[row + 1])], dtype=np.int64)
        n_short = len(self.vocab)
        if not len(codes) or int(codes.max()) < n_short:
            return frozenset(self.vocab[codes].tolist())
        vocab, long = self.vocab, self.long
        return frozenset(str(vocab[c]) if c < n_short else long[c - n_short] for c in codes.tolist())


class _Side:
    """Per-side state built in memory: items, dense index, BM25 index and facet sets.

    :class:`MatchEngine` talks to a side only through the methods below, which
    :class:`_OpenedSide` (a version opened from files, plus its delta) implements too.
    """

    FACETS = ("categories", "areas", "region_city", "region_county", "maturity", "tags")

    def __init__(self, name: str, dim: int, hnsw_threshold: int) -> None:
        self.name = name
        self.items: dict[int, Item] = {}
        self.vectors = VectorIndex(dim, hnsw_threshold=hnsw_threshold)
        self.lexical = LexicalIndex()
        self.facets: dict[str, dict[str, set[int]]] = {f: {} for f in self.FACETS}
        self.facts = _MutableFacts()
        self.words = _MutableWords()

    def add(self, item: Item) -> None:
        """Index ``item``'s facets, structured facts and whole words (not its vectors/BM25)."""
        self.items[item.id] = item
        self.index_facets(item)
        self.facts.upsert(item)
        self.words.upsert(item)

    def __len__(self) -> int:
        return len(self.items)

    @staticmethod
    def facet_values(item: Item, facet: str) -> tuple[str, ...]:
        value = getattr(item, facet)
        if value is None:
            return ()
        return value if isinstance(value, tuple) else (value,)

    def index_facets(self, item: Item) -> None:
        for facet in self.FACETS:
            for value in self.facet_values(item, facet):
                self.facets[facet].setdefault(value, set()).add(item.id)

    def unindex_facets(self, item: Item) -> None:
        for facet in self.FACETS:
            for value in self.facet_values(item, facet):
                ids = self.facets[facet].get(value)
                if ids is not None:
                    ids.discard(item.id)
                    if not ids:
                        del self.facets[facet][value]

    @staticmethod
    def wanted_facets(filters: Filters) -> dict[str, tuple[str, ...] | None]:
        return {
            "categories": filters.categories,
            "areas": filters.areas,
            "region_city": (filters.region_city,) if filters.region_city else None,
            "region_county": (filters.region_county,) if filters.region_county else None,
            "maturity": (filters.maturity,) if isinstance(filters.maturity, str) else filters.maturity,
            "tags": filters.tags,
        }

    def allowed(self, filters: Filters | None) -> set[int] | None:
        """Ids that pass ``filters`` (``None`` = everything)."""
        if filters is None or filters.is_empty():
            return None
        result: set[int] | None = None
        for facet, values in self.wanted_facets(filters).items():
            if not values:
                continue
            ids: set[int] = set()
            for value in values:
                ids |= self.facets[facet].get(value, set())
            result = ids if result is None else result & ids
        if filters.allowed_ids is not None:
            allowed = {i for i in filters.allowed_ids if i in self.items}
            result = allowed if result is None else result & allowed
        return result

    # ---------------------------------------------------------------- what the engine asks

    def item(self, item_id: int) -> Item | None:
        return self.items.get(item_id)

    def vector(self, item_id: int) -> np.ndarray | None:
        return self.vectors.get(item_id)

    def dense_top(self, vec: np.ndarray, k: int, allowed: set[int] | None) -> list[tuple[int, float]]:
        """Top-``k`` ``(id, cosine)`` by the dense index, best first."""
        scores, ids = self.vectors.search(vec[None, :], k, allowed_ids=allowed)
        return _pairs(scores, ids)

    def dense_scores(self, vec: np.ndarray, ids: Iterable[int]) -> dict[int, float]:
        return self.vectors.scores_for(vec, ids)

    def lexical_query(self, weights: Mapping[str, float]) -> Any:
        """BM25 of a query, computed once: ``.top(k, allowed)`` and ``.scores_for(ids)``."""
        return self.lexical.score(weights)

    def doc_freq(self, term: str) -> int:
        return self.lexical.doc_freq(term)

    def idf(self, term: str) -> float:
        return self.lexical.idf(term)

    def structured_scores(self, cfg: MatchConfig, query: Item | None, ids: Sequence[int]) -> np.ndarray:
        """The structured signal of ``query`` against the indexed ``ids`` (float64 array)."""
        return self.facts.structured(cfg, query, self.facts.rows(ids))

    def item_words(self, item_id: int) -> frozenset[str]:
        """The whole words of an indexed item's title and text (computed when indexed)."""
        found = self.words.get(item_id)
        if found is None:
            item = self.items[item_id]
            return frozenset(words(_own_text(item)))
        return found

    def upsert(self, item: Item, vec: np.ndarray) -> None:
        old = self.items.get(item.id)
        if old is not None:
            self.unindex_facets(old)
        self.add(item)
        self.vectors.upsert([item.id], vec[None, :])
        self.lexical.upsert(item.id, tokenize(document_text(item)))

    def remove(self, item_id: int) -> bool:
        item = self.items.pop(int(item_id), None)
        if item is None:
            return False
        self.unindex_facets(item)
        self.facts.remove(item.id)
        self.words.remove(item.id)
        self.vectors.remove([item.id])
        self.lexical.remove(item.id)
        return True

    # ---------------------------------------------------------------- persistence

    def save(self, path: Path) -> None:
        """Write the side in the memory-mappable layout :class:`_OpenedSide` reads."""
        path.mkdir(parents=True, exist_ok=True)
        self.vectors.save(path / "vectors")
        self.lexical.save(path / "lexical")
        ids = sorted(self.items)
        offsets = [0]
        with open(path / "items.jsonl", "wb") as fh:
            for item_id in ids:
                line = json.dumps(self.items[item_id].to_dict(), ensure_ascii=False).encode("utf-8") + b"\n"
                fh.write(line)
                offsets.append(offsets[-1] + len(line))
        np.save(path / "items_ids.npy", np.asarray(ids, dtype=np.int64))
        np.save(path / "items_offsets.npy", np.asarray(offsets, dtype=np.int64))
        self.facts.save(path, ids)
        self.words.save(path, ids)
        spans: dict[str, dict[str, list[int]]] = {}
        chunks: list[np.ndarray] = []
        at = 0
        for facet in self.FACETS:
            spans[facet] = {}
            for value in sorted(self.facets[facet]):
                members = np.asarray(sorted(self.facets[facet][value]), dtype=np.int64)
                spans[facet][value] = [at, at + len(members)]
                chunks.append(members)
                at += len(members)
        np.save(path / "facet_ids.npy", np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int64))
        (path / "facets.json").write_text(json.dumps(spans, ensure_ascii=False), encoding="utf-8")


class _ItemStore(Mapping[int, Item]):
    """The items of an opened side: one JSON line per item in a memory-mapped file, decoded on
    demand (a small LRU keeps the recent ones), looked up by binary search over the ids."""

    def __init__(self, path: Path, cache_size: int = 4096) -> None:
        self.ids = np.load(path / "items_ids.npy", mmap_mode="r")
        self.offsets = np.load(path / "items_offsets.npy", mmap_mode="r")
        self._file = open(path / "items.jsonl", "rb")  # noqa: SIM115 - closed with the mapping
        size = os.fstat(self._file.fileno()).st_size
        self._data: Any = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
        self._cache: OrderedDict[int, Item] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self.files = [path / "items_ids.npy", path / "items_offsets.npy", path / "items.jsonl"]

    def position(self, item_id: int) -> int | None:
        n = len(self.ids)
        if not n:
            return None
        at = int(np.searchsorted(self.ids, item_id))
        return at if at < n and int(self.ids[at]) == item_id else None

    def __getitem__(self, item_id: int) -> Item:
        item_id = int(item_id)
        with self._lock:
            item = self._cache.get(item_id)
            if item is not None:
                self._cache.move_to_end(item_id)
                return item
        at = self.position(item_id)
        if at is None:
            raise KeyError(item_id)
        raw = self._data[int(self.offsets[at]) : int(self.offsets[at + 1])]
        data = json.loads(raw)
        for name in ("categories", "areas", "tags"):
            data[name] = tuple(data[name])
        item = Item(**data)  # written by Item.to_dict: exactly the fields
        with self._lock:
            self._cache[item_id] = item
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return item

    def __contains__(self, item_id: object) -> bool:
        try:
            return self.position(int(item_id)) is not None  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return False

    def __iter__(self):
        return iter(int(i) for i in self.ids)

    def __len__(self) -> int:
        return len(self.ids)


class _OverlayItems(Mapping[int, Item]):
    """The live items of an opened side: the delta first, then the base minus masked ids."""

    def __init__(self, side: _OpenedSide) -> None:
        self._side = side

    def __getitem__(self, item_id: int) -> Item:
        item = self._side.item(int(item_id))
        if item is None:
            raise KeyError(item_id)
        return item

    def __contains__(self, item_id: object) -> bool:
        try:
            return self._side.item(int(item_id)) is not None  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return False

    def __iter__(self):
        side = self._side
        yield from side.delta_items
        if side.base_items is not None:
            for item_id in side.base_items:
                if item_id not in side.masked:
                    yield item_id

    def __len__(self) -> int:
        return len(self._side)


class _MergedLexical:
    """One query's BM25 over an opened side: the frozen matrix (masked ids excluded) and the
    delta, merged."""

    def __init__(self, side: _OpenedSide, weights: Mapping[str, float]) -> None:
        self._side = side
        self._base = side.base_lexical.score(weights) if side.base_lexical is not None else None
        self._delta = side.delta_lexical.scores(weights)

    def top(self, k: int, allowed_ids: Iterable[int] | None = None) -> list[tuple[int, float]]:
        side = self._side
        found = []
        if self._base is not None:
            found = self._base.top(k, allowed_ids, side.masked or None)
        if self._delta:
            allowed = None if allowed_ids is None else set(allowed_ids)
            found += [(i, s) for i, s in self._delta.items() if allowed is None or i in allowed]
            found.sort(key=lambda pair: (-pair[1], pair[0]))
        return found[:k]

    def scores_for(self, ids: Iterable[int]) -> dict[int, float]:
        side = self._side
        ids = list(ids)
        out: dict[int, float] = {}
        base_ids = [i for i in ids if i not in side.delta_items and i not in side.masked]
        if self._base is not None and base_ids:
            out.update(self._base.scores_for(base_ids))
        for i in ids:
            if i in side.delta_items:
                out[i] = self._delta.get(i, 0.0)
        return out


class _OpenedSide:
    """A side opened read-only from a saved version (memory-mapped), plus an in-memory delta.

    Entries published or changed after the version was written live in the delta (their
    items, vectors and BM25 documents, scored with the base's statistics); ids that were
    changed or removed are *masked* out of the base. Nothing here builds an index.
    """

    def __init__(self, name: str, dim: int, path: Path | None) -> None:
        self.name = name
        self.dim = dim
        self.base_items: _ItemStore | None = None
        self.base_vectors: FrozenVectorIndex | None = None
        self.base_lexical: FrozenLexicalIndex | None = None
        self.base_facets: dict[str, dict[str, list[int]]] = {}
        self.base_facet_ids: np.ndarray = np.zeros(0, dtype=np.int64)
        self.base_facts: _FrozenFacts | None = None
        self.base_words: _FrozenWords | None = None
        if path is not None:
            self.base_items = _ItemStore(path)
            self.base_facts = _FrozenFacts(path)
            self.base_words = _FrozenWords(path)
            self.base_vectors = VectorIndex.open(path / "vectors")
            self.base_lexical = LexicalIndex.open(path / "lexical")
            self.base_facets = json.loads((path / "facets.json").read_text(encoding="utf-8"))
            self.base_facet_ids = np.load(path / "facet_ids.npy", mmap_mode="r")
            n = len(self.base_items)
            if len(self.base_vectors) != n or len(self.base_lexical) != n:
                raise ValueError(f"{name}: vectors, BM25 and items disagree")
        self.masked: set[int] = set()
        self.delta_items: dict[int, Item] = {}
        self.delta_words: dict[int, frozenset[str]] = {}
        self.delta_vectors: dict[int, np.ndarray] = {}
        self.delta_lexical = DeltaLexical(self.base_lexical)
        self.items = _OverlayItems(self)
        self._idf: dict[str, float] = {}

    def files(self) -> list[Path]:
        """The memory-mapped files of the base (for tests and the benchmark)."""
        out: list[Path] = []
        for part in (self.base_items, self.base_vectors, self.base_lexical, self.base_facts, self.base_words):
            out += list(getattr(part, "files", []))
        return out

    def _in_base(self, item_id: int) -> bool:
        return self.base_items is not None and item_id in self.base_items

    def __len__(self) -> int:
        base = len(self.base_items) if self.base_items is not None else 0
        hidden = sum(1 for i in self.masked if self._in_base(i))
        return base - hidden + len(self.delta_items)

    def item(self, item_id: int) -> Item | None:
        item = self.delta_items.get(item_id)
        if item is not None:
            return item
        if item_id in self.masked or self.base_items is None:
            return None
        try:
            return self.base_items[item_id]
        except KeyError:
            return None

    def vector(self, item_id: int) -> np.ndarray | None:
        vec = self.delta_vectors.get(item_id)
        if vec is not None:
            return vec.copy()
        if item_id in self.masked or self.base_vectors is None:
            return None
        return self.base_vectors.get(item_id)

    def _base_facet(self, facet: str, value: str) -> np.ndarray:
        span = self.base_facets.get(facet, {}).get(value)
        if span is None:
            return np.zeros(0, dtype=np.int64)
        return np.asarray(self.base_facet_ids[span[0] : span[1]], dtype=np.int64)

    def allowed(self, filters: Filters | None) -> set[int] | None:
        if filters is None or filters.is_empty():
            return None
        base: np.ndarray | None = None
        delta = dict(self.delta_items)
        for facet, values in _Side.wanted_facets(filters).items():
            if not values:
                continue
            ids = np.unique(np.concatenate([self._base_facet(facet, v) for v in values]))
            base = ids if base is None else np.intersect1d(base, ids, assume_unique=True)
            wanted = set(values)
            delta = {i: it for i, it in delta.items() if wanted & set(_Side.facet_values(it, facet))}
        result = None
        if base is not None:  # some facet is filtered: the base ids that pass, then the delta
            result = (set(base.tolist()) - self.masked) | set(delta)
        if filters.allowed_ids is not None:
            allowed = self.live_ids(filters.allowed_ids)
            result = allowed if result is None else result & allowed
        return result

    def live_ids(self, ids: Iterable[int]) -> set[int]:
        """The ids among ``ids`` that are indexed (delta, or base and not masked), without
        decoding any item."""
        wanted = np.fromiter((int(i) for i in ids), dtype=np.int64)
        live = {int(i) for i in wanted.tolist() if int(i) in self.delta_items}
        if self.base_items is not None and len(wanted):
            in_base = wanted[np.isin(wanted, np.asarray(self.base_items.ids))]
            live |= set(in_base.tolist()) - self.masked
        return live

    def dense_top(self, vec: np.ndarray, k: int, allowed: set[int] | None) -> list[tuple[int, float]]:
        found: list[tuple[int, float]] = []
        if self.base_vectors is not None and len(self.base_vectors):
            scores, ids = self.base_vectors.search(
                vec[None, :], k, allowed_ids=allowed, excluded_ids=self.masked
            )
            found = _pairs(scores, ids)
        if self.delta_vectors:
            keys = [i for i in self.delta_vectors if allowed is None or i in allowed]
            if keys:
                sims = np.stack([self.delta_vectors[i] for i in keys]) @ np.asarray(vec, dtype=np.float32)
                found += list(zip(keys, sims.tolist(), strict=True))
                found.sort(key=lambda pair: (-pair[1], pair[0]))
        return found[:k]

    def dense_scores(self, vec: np.ndarray, ids: Iterable[int]) -> dict[int, float]:
        ids = list(ids)
        out: dict[int, float] = {}
        base_ids = [i for i in ids if i not in self.delta_vectors and i not in self.masked]
        if self.base_vectors is not None and base_ids:
            out.update(self.base_vectors.scores_for(vec, base_ids))
        q = np.asarray(vec, dtype=np.float32).reshape(-1)
        for i in ids:
            if i in self.delta_vectors:
                out[i] = float(self.delta_vectors[i] @ q)
        return out

    def lexical_query(self, weights: Mapping[str, float]) -> _MergedLexical:
        return _MergedLexical(self, weights)

    def doc_freq(self, term: str) -> int:
        return self.base_lexical.doc_freq(term) if self.base_lexical is not None else 0

    def idf(self, term: str) -> float:
        if self.base_lexical is None:  # delta-only: the statistics move with the delta
            return self.delta_lexical.idf(term)
        # the base never changes, so the idf of a term is fixed for the life of this side
        value = self._idf.get(term)
        if value is None:
            value = self._idf[term] = self.delta_lexical.idf(term)
        return value

    def _base_rows(self, ids: Sequence[int]) -> np.ndarray:
        """Rows of base items (ids known to be in the base) in the version's files."""
        wanted = np.asarray(ids, dtype=np.int64)
        return np.searchsorted(np.asarray(self.base_items.ids), wanted).astype(np.int64)

    def structured_scores(self, cfg: MatchConfig, query: Item | None, ids: Sequence[int]) -> np.ndarray:
        """The structured signal of ``query`` against the live ``ids``: base items from the
        mapped fact arrays (nothing decoded), delta items from their :class:`Item`."""
        out = np.zeros(len(ids), dtype=np.float64)
        in_delta = [n for n, i in enumerate(ids) if i in self.delta_items]
        if len(in_delta) < len(ids):
            delta_at = set(in_delta)
            at = [n for n in range(len(ids)) if n not in delta_at]
            rows = self._base_rows([ids[n] for n in at])
            out[at] = self.base_facts.structured(cfg, query, rows)
        for n in in_delta:
            out[n] = _structured(cfg, query, self.delta_items[ids[n]])[0]
        return out

    def item_words(self, item_id: int) -> frozenset[str]:
        """The whole words of a live item's title and text (saved with the version, or
        computed when the item entered the delta)."""
        found = self.delta_words.get(item_id)
        if found is not None:
            return found
        delta_item = self.delta_items.get(item_id)
        if delta_item is not None:  # computed on first use: publishing stays cheap
            found = self.delta_words[item_id] = frozenset(words(_own_text(delta_item)))
            return found
        row = self.base_items.position(item_id) if self.base_items is not None else None
        if row is None or item_id in self.masked:
            raise KeyError(item_id)
        return self.base_words.at(row)

    def upsert(self, item: Item, vec: np.ndarray) -> None:
        if self._in_base(item.id):
            self.masked.add(item.id)
        self.delta_items[item.id] = item
        self.delta_words.pop(item.id, None)
        self.delta_vectors[item.id] = np.ascontiguousarray(vec, dtype=np.float32)
        self.delta_lexical.upsert(item.id, tokenize(document_text(item)))

    def remove(self, item_id: int) -> bool:
        item_id = int(item_id)
        present = self.item(item_id) is not None
        self.delta_items.pop(item_id, None)
        self.delta_words.pop(item_id, None)
        self.delta_vectors.pop(item_id, None)
        self.delta_lexical.remove(item_id)
        if self._in_base(item_id):
            self.masked.add(item_id)
        return present


class MatchEngine:
    """Both sides of the marketplace, searchable against each other (thread-safe).

    ``encoder`` may be unfitted: :meth:`build` fits it on the document texts of all items.
    """

    def __init__(
        self,
        encoder: Encoder,
        config: MatchConfig | None = None,
        hnsw_threshold: int = 20_000,
    ) -> None:
        self.encoder = encoder
        self.config = config or MatchConfig.for_encoder(encoder.name)
        self.hnsw_threshold = int(hnsw_threshold)
        self._lock = threading.RLock()
        self._sides: dict[str, Any] = {}
        #: set when the engine was opened from a saved version (see :meth:`load`)
        self.opened_from: Path | None = None
        self._sentence_cache: OrderedDict[tuple[str, str, str], np.ndarray] = OrderedDict()
        if encoder.is_fitted:
            self._reset_sides()

    # ---------------------------------------------------------------- building

    def _reset_sides(self) -> None:
        self._sides = {s: _Side(s, self.encoder.dim, self.hnsw_threshold) for s in SIDES}

    def _side(self, side: str) -> Any:
        if side not in SIDES:
            raise ValueError(f"side must be one of {SIDES}, not {side!r}")
        if not self._sides:
            if not self.encoder.is_fitted:
                return _Side(side, 1, self.hnsw_threshold)  # empty placeholder before build
            self._reset_sides()
        return self._sides[side]

    def encode_items(self, items: Sequence[Item]) -> np.ndarray:
        """Document vectors for ``items`` (float32, L2-normalised rows)."""
        return self.encoder.encode([document_text(i) for i in items], kind="document")

    def build(
        self,
        items: Iterable[Item],
        vectors: Mapping[tuple[str, int], np.ndarray] | None = None,
    ) -> None:
        """(Re)build both sides from ``items``.

        ``vectors`` maps ``(side, id)`` to a cached document vector; only items without one are
        encoded. An unfitted encoder is first fitted on all items' document texts.
        """
        items = list(items)
        vectors = vectors or {}
        with self._lock:
            if not self.encoder.is_fitted:
                if not items:
                    self._sides = {}
                    return
                self.encoder.fit([document_text(i) for i in items])
            self._reset_sides()
            dim = self.encoder.dim
            missing = [i for i in items if (i.side, i.id) not in vectors]
            encoded = self.encode_items(missing) if missing else np.zeros((0, dim), dtype=np.float32)
            fresh = {(i.side, i.id): encoded[n] for n, i in enumerate(missing)}
            for side_name in SIDES:
                side = self._sides[side_name]
                side_items = [i for i in items if i.side == side_name]
                for item in side_items:
                    if item.id in side.items:
                        raise ValueError(f"duplicate item {side_name}:{item.id}")
                    side.add(item)
                if not side_items:
                    continue
                mat = np.stack(
                    [
                        np.asarray(
                            vectors[(i.side, i.id)] if (i.side, i.id) in vectors else fresh[(i.side, i.id)],
                            dtype=np.float32,
                        ).reshape(-1)
                        for i in side_items
                    ]
                )
                if mat.shape[1] != dim:
                    raise ValueError(f"cached vectors have dim {mat.shape[1]}, encoder has {dim}")
                side.vectors.add([i.id for i in side_items], mat)
                side.lexical.build(
                    [i.id for i in side_items], [tokenize(document_text(i)) for i in side_items]
                )

    def upsert(self, item: Item, vector: np.ndarray | None = None) -> None:
        """Insert or replace one item (encoded unless ``vector`` is given). On an opened engine
        the item goes into the in-memory delta and its saved version is masked."""
        with self._lock:
            if not self.encoder.is_fitted:
                current = [i for s in self._sides.values() for i in s.items.values()]
                self.build([*[i for i in current if (i.side, i.id) != (item.side, item.id)], item])
                return
            side = self._side(item.side)
            vec = (
                self.encode_items([item])[0]
                if vector is None
                else np.asarray(vector, dtype=np.float32).reshape(-1)
            )
            if len(vec) != self.encoder.dim:
                raise ValueError(f"vector has dim {len(vec)}, encoder has {self.encoder.dim}")
            side.upsert(item, vec)

    def remove(self, side: str, item_id: int) -> bool:
        """Remove one item; returns whether it was present."""
        with self._lock:
            if not self._sides:
                return False
            return self._side(side).remove(int(item_id))

    def get(self, side: str, item_id: int) -> Item | None:
        """The indexed item, or ``None``."""
        if not self._sides:
            return None
        return self._side(side).item(int(item_id))

    def __len__(self) -> int:
        return sum(len(s) for s in self._sides.values())

    def count(self, side: str) -> int:
        """Number of indexed items on one side."""
        return len(self._side(side)) if self._sides else 0

    def vector(self, side: str, item_id: int) -> np.ndarray | None:
        """The stored document vector of an indexed item."""
        return self._side(side).vector(int(item_id)) if self._sides else None

    # ---------------------------------------------------------------- queries

    def products_for(self, item_or_id: Item | int, k: int = 20, filters: Filters | None = None) -> list[Hit]:
        """Products ranked for an opportunity (indexed id, or an :class:`Item`, e.g. a draft)."""
        return self._for(item_or_id, "opportunity", "product", k, filters)

    def opportunities_for(
        self, item_or_id: Item | int, k: int = 20, filters: Filters | None = None
    ) -> list[Hit]:
        """Opportunities ranked for a product (indexed id, or an :class:`Item`)."""
        return self._for(item_or_id, "product", "opportunity", k, filters)

    def _resolve(self, item_or_id: Item | int, side: str) -> Item:
        if isinstance(item_or_id, Item):
            return item_or_id
        item = self.get(side, int(item_or_id))
        if item is None:
            raise KeyError(f"no {side} with id {item_or_id}")
        return item

    def _for(
        self, item_or_id: Item | int, query_side: str, target: str, k: int, filters: Filters | None
    ) -> list[Hit]:
        with self._lock:
            if not self._sides:
                return []
            query = self._resolve(item_or_id, query_side)
            vec = None
            if query.side in self._sides and self._sides[query.side].item(query.id) == query:
                vec = self._sides[query.side].vector(query.id)
            if vec is None:
                vec = self.encode_items([query])[0]
            return self._rank(vec, self._item_query(query), query, target, k, filters)

    def search(self, text: str, side: str, k: int = 20, filters: Filters | None = None) -> list[Hit]:
        """Free-text search of one side."""
        with self._lock:
            if not self._sides or not text.strip():
                return []
            vec = self.encoder.encode([text], kind="query")[0]
            return self._rank(vec, self._text_query(text), None, side, k, filters)

    def _item_query(self, item: Item) -> _Query:
        text = document_text(item)
        return _Query(
            text=_own_text(item),
            weights=expand_query(text, self.config.synonym_weight),
            words=frozenset(words(_own_text(item))),
            sentences=_item_sentences(item, self.config.evidence_max_sentences),
            kind="query",
        )

    def _text_query(self, text: str) -> _Query:
        return _Query(
            text=text,
            weights=expand_query(text, self.config.synonym_weight),
            words=frozenset(words(text)),
            sentences=split_sentences(text)[: self.config.evidence_max_sentences] or [text.strip()],
            kind="query",
        )

    def similar(self, side: str, item_id: int, k: int = 5, min_score: float | None = None) -> list[Hit]:
        """Near-duplicates of an indexed item within its own side, by cosine (itself excluded)."""
        threshold = self.config.duplicate_threshold if min_score is None else float(min_score)
        with self._lock:
            s = self._side(side)
            item = self._resolve(item_id, side)
            vec = s.vector(item.id)
            if vec is None:
                return []
            return self._similar_by_vector(s, item, vec, k, threshold)

    def similar_to(
        self, item: Item, vec: np.ndarray, k: int = 5, min_score: float | None = None
    ) -> list[Hit]:
        """Near-duplicates of an item that is not indexed as it stands (a draft, an edit under
        review, a row of an import), given its vector: the side's vectors are searched by cosine
        and only the hits above the threshold are explained. An indexed item with the same id (the
        published version of an edit) is excluded."""
        threshold = self.config.duplicate_threshold if min_score is None else float(min_score)
        with self._lock:
            if item.side not in self._sides:
                return []
            vec = np.asarray(vec, dtype=np.float32)
            return self._similar_by_vector(self._side(item.side), item, vec, k, threshold)

    def _similar_by_vector(
        self, s: Any, item: Item, vec: np.ndarray, k: int, threshold: float
    ) -> list[Hit]:
        pairs = [(i, c) for i, c in s.dense_top(vec, k + 1, None) if i != item.id and c >= threshold][:k]
        if not pairs:
            return []
        q = self._item_query(item)
        lex = s.lexical_query(q.weights).scores_for([i for i, _ in pairs] + [item.id])
        best = max([lex.get(i, 0.0) for i, _ in pairs] + [lex.get(item.id, 0.0)]) or 1.0
        hits = []
        for other_id, cos in pairs:
            dense = max(0.0, min(1.0, cos))
            hit = self._explain(
                item,
                s.item(other_id),
                target=item.side,
                dense=dense,
                lexical=lex.get(other_id, 0.0) / best,
                q=q,
                score=dense,
            )
            hit.reasons.insert(0, f"内容高度相似（相似度{dense:.2f}）")
            hits.append(hit)
        return hits

    def _rank(
        self,
        vec: np.ndarray,
        q: _Query,
        query: Item | None,
        target: str,
        k: int,
        filters: Filters | None,
    ) -> list[Hit]:
        side = self._side(target)
        if k <= 0 or not len(side):
            return []
        allowed = side.allowed(filters)
        if allowed is not None and not allowed:
            return []
        exclude = query.id if query is not None and query.side == target else None
        pool = max(self.config.candidate_pool, k) + (exclude is not None)
        dense = dict(side.dense_top(vec, pool, allowed))
        # BM25 once per query, over the query terms' posting lists only: the top-N pool and
        # the scores of the dense candidates come from the same computation.
        lexical = side.lexical_query(q.weights)
        lex_top = lexical.top(pool, allowed)
        candidates = (set(dense) | {i for i, _ in lex_top}) - {exclude}
        missing_dense = [i for i in candidates if i not in dense]
        if missing_dense:
            dense.update(side.dense_scores(vec, missing_dense))
        lex_all = dict(lex_top)
        missing_lex = [i for i in candidates if i not in lex_all]
        if missing_lex and len(lex_top) >= pool:  # otherwise every positive score is in lex_top
            lex_all.update(lexical.scores_for(missing_lex))
        best_lex = max(lex_all.values(), default=0.0)
        cfg = self.config
        # every signal for the whole pool at once: float64 arrays, the same operations in the
        # same order as the per-item formulas (see _structured), so the scores are identical
        cids = list(candidates)
        if not cids:
            return []
        cand = np.asarray(cids, dtype=np.int64)
        n_cand = len(cids)
        d = np.clip(np.fromiter((dense.get(c, 0.0) for c in cids), np.float64, count=n_cand), 0.0, 1.0)
        lx = np.fromiter((lex_all.get(c, 0.0) for c in cids), np.float64, count=n_cand)
        lx = lx / best_lex if best_lex > 0 else np.zeros(n_cand, dtype=np.float64)
        struct = (
            side.structured_scores(cfg, query, cids)
            if cfg.w_structured
            else np.zeros(len(cids), dtype=np.float64)
        )
        score = cfg.w_dense * d + cfg.w_lexical * lx + cfg.w_structured * struct
        top = np.lexsort((cand, -score))[:k].tolist()
        hits = [
            self._explain(
                query,
                side.item(cids[n]),
                target=target,
                dense=float(d[n]),
                lexical=float(lx[n]),
                q=q,
                score=float(score[n]),
            )
            for n in top
        ]
        self._attach_evidence(q, side, hits)
        return hits

    # ---------------------------------------------------------------- signals & explanations

    def _structured(self, query: Item | None, item: Item) -> tuple[float, dict[str, float]]:
        """The structured signal of ``item`` for ``query`` and its sub-signals."""
        return _structured(self.config, query, item)

    def _explain(
        self,
        query: Item | None,
        item: Item,
        *,
        target: str,
        dense: float,
        lexical: float,
        q: _Query,
        score: float,
    ) -> Hit:
        cfg = self.config
        structured, parts = self._structured(query, item)
        side = self._side(target)
        shown, related = self._shared_terms(q, item, side)
        reasons: list[str] = []
        if query is not None:
            shared_cats = [c for c in item.categories if c in set(query.categories)]
            shared_areas = [a for a in item.areas if a in set(query.areas)]
            if shared_cats:
                reasons.append(f"同属{'、'.join(shared_cats)}领域")
            elif shared_areas:
                reasons.append(f"同属{'、'.join(shared_areas)}领域")
        if shown:
            reasons.append(f"共同关键词：{'、'.join(shown)}")
        if related:
            reasons.append("近义词：" + "、".join(f"{a} ≈ {b}" for a, b in related))
        if query is not None and parts["city"]:
            place = f"{item.region_city}{item.region_county}" if parts["county"] else item.region_city
            reasons.append(f"同在{place}")
        if query is not None and query.tags:
            shared_tags = [t for t in item.tags if t in set(query.tags)]
            if shared_tags:
                reasons.append(f"技术标签：{'、'.join(shared_tags)}")
        if item.maturity and item.side == "product":
            reasons.append(f"成熟度：{MATURITY_LABELS.get(item.maturity, item.maturity)}")
        if dense >= cfg.semantic_reason_threshold:
            reasons.append("语义相似度高")
        breakdown = {
            "dense": round(dense, 6),
            "lexical": round(lexical, 6),
            "structured": round(structured, 6),
            "dense_weighted": round(cfg.w_dense * dense, 6),
            "lexical_weighted": round(cfg.w_lexical * lexical, 6),
            "structured_weighted": round(cfg.w_structured * structured, 6),
            **{f"structured_{name}": round(value, 6) for name, value in parts.items()},
        }
        return Hit(
            id=item.id,
            side=item.side,
            score=round(float(score), 6),
            dense=round(dense, 6),
            lexical=round(lexical, 6),
            structured=round(structured, 6),
            breakdown=breakdown,
            matched_terms=shown,
            reasons=reasons,
            related_terms=related,
        )

    def _plan(self, q: _Query, side: Any) -> _ExplainPlan:
        """The query's explanation plan for ``side`` (cached on the query)."""
        plan = q.plans.get(id(side))
        if plan is not None:
            return plan
        n_docs = len(side)
        stats: dict[str, tuple[bool, float]] = {}

        def informative(term: str) -> bool:
            return stat(term)[0]

        def stat(term: str) -> tuple[bool, float]:
            found = stats.get(term)
            if found is None:
                ok = _showable(term) and (
                    n_docs < _DF_MIN_DOCS or side.doc_freq(term) <= _DF_MAX_SHARE * n_docs
                )
                found = stats[term] = (ok, side.idf(term) if ok else 0.0)
            return found

        def rarest_first(terms: Iterable[str]) -> list[str]:
            return sorted(terms, key=lambda t: (-stat(t)[1], t))

        th = thesaurus()
        shown_order = rarest_first(t for t in q.words if informative(t))
        synonyms = [
            (word, rarest_first(m for m in th.related(word) if m not in q.words and informative(m)))
            for word in rarest_first(w for w in q.words if w in th and informative(w))
        ]
        plan = q.plans[id(side)] = _ExplainPlan(shown_order, synonyms)
        return plan

    def _shared_terms(self, q: _Query, item: Item, side: Any) -> tuple[list[str], list[tuple[str, str]]]:
        """Whole words shared by the query and ``item`` (rarest first, none inside a longer one
        shown, written case), and thesaurus pairs (query word, item word) for words the item
        does not share but expresses with a group-mate."""
        cfg = self.config
        plan = self._plan(q, side)
        try:
            item_words = side.item_words(item.id)
        except KeyError:  # not indexed as it stands (a draft)
            item_words = frozenset(words(_own_text(item)))
        shown: list[str] = []
        for term in plan.shown_order:
            if term not in item_words:
                continue
            if any(term in other for other in shown):
                continue
            shown = [s for s in shown if s not in term]
            shown.append(term)
            if len(shown) >= cfg.max_reason_terms:
                break
        pairs: dict[str, str] = {}
        for word, mates in plan.synonyms:
            if word in item_words:
                continue
            for mate in mates:
                if mate in item_words:
                    if mate not in pairs.values() and not any(mate in s for s in shown):
                        pairs[word] = mate
                    break
            if len(pairs) >= 3:
                break
        if not shown and not pairs:
            return [], []
        texts = (q.text, _own_text(item))
        related = [(_written_case(a, texts), _written_case(b, texts)) for a, b in pairs.items()]
        return [_written_case(t, texts) for t in shown], related

    # ---------------------------------------------------------------- sentence evidence

    def _attach_evidence(self, q: _Query, side: Any, hits: list[Hit]) -> None:
        """Set :attr:`Hit.evidence` on the returned hits whose match is mainly semantic: the
        dense signal contributes at least as much as the lexical one, or no word is shared.

        Sentences (at most ``evidence_max_sentences`` per text) are encoded in one batch per
        kind with the engine's encoder (the query's with the query prompt) and cached."""
        cfg = self.config
        todo = [
            hit
            for hit in hits[: cfg.evidence_max_hits]
            if hit.dense > 0
            and (
                cfg.w_dense * hit.dense >= cfg.w_lexical * hit.lexical
                or not (hit.matched_terms or hit.related_terms)
            )
        ]
        if not todo or not q.sentences or not self.encoder.is_fitted:
            return
        item_sentences = {h.id: _item_sentences(side.item(h.id), cfg.evidence_max_sentences) for h in todo}
        q_vecs = np.stack(list(self._sentence_vectors(q.sentences, q.kind).values()))
        doc_vecs = self._sentence_vectors(
            list(dict.fromkeys(s for sents in item_sentences.values() for s in sents)), "document"
        )
        for hit in todo:
            sents = item_sentences[hit.id]
            if not sents:
                continue
            sims = q_vecs @ np.stack([doc_vecs[s] for s in sents]).T
            qi, di = np.unravel_index(int(np.argmax(sims)), sims.shape)
            cosine = float(sims[qi, di])
            if cosine > 0:
                hit.evidence = Evidence(q.sentences[qi], sents[di], round(cosine, 4))

    def _sentence_vectors(self, sentences: list[str], kind: str) -> dict[str, np.ndarray]:
        """``{sentence: vector}`` in the order given (sentences must be distinct), from an LRU
        cache keyed by encoder fingerprint, kind and sentence."""
        cache = self._sentence_cache
        fingerprint = self.encoder.fingerprint
        keys = [(fingerprint, kind, s) for s in sentences]
        missing = list(dict.fromkeys(key for key in keys if key not in cache))
        if missing:
            vectors = self.encoder.encode([key[2] for key in missing], kind=kind)
            for key, vec in zip(missing, vectors, strict=True):
                cache[key] = np.asarray(vec, dtype=np.float32)
        for key in keys:
            cache.move_to_end(key)
        while len(cache) > _SENTENCE_CACHE_SIZE:
            cache.popitem(last=False)
        return {key[2]: cache[key] for key in keys}

    # ---------------------------------------------------------------- persistence

    def save(self, directory: str | os.PathLike[str], corpus_version: str) -> None:
        """Write a version of the engine to ``directory``, in the layout :meth:`load` maps.

        Per side: ``vectors/`` (the vector store as ``.npy`` and the FAISS index), ``lexical/``
        (the BM25 score matrix as ``.npy`` arrays), ``items.jsonl`` with its offsets, and the
        facet postings. Plus the encoder state and ``manifest.json``. Only an engine built in
        memory (:meth:`build`) can be saved; ``corpus_version`` is an opaque string from the
        caller (e.g. a hash of the published rows); :meth:`load` refuses an index whose version
        differs.
        """
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        with self._lock:
            if not self.encoder.is_fitted:
                raise RuntimeError("nothing to save: the engine has not been built")
            if self.opened_from is not None:
                raise RuntimeError("an opened engine is saved by building a new version, not re-saved")
            if not self._sides:
                self._reset_sides()
            self.encoder.save(path / "encoder")
            for name, side in self._sides.items():
                side.save(path / name)
            manifest = {
                "format": _FORMAT_VERSION,
                "encoder_name": self.encoder.name,
                "fingerprint": self.encoder.fingerprint,
                "dim": self.encoder.dim,
                "tokenizer": tokenizer_fingerprint(),
                "corpus_version": corpus_version,
                "config": self.config.to_dict(),
                "hnsw_threshold": self.hnsw_threshold,
                "counts": {name: len(side) for name, side in self._sides.items()},
            }
            (path / _MANIFEST).write_text(
                json.dumps(manifest, ensure_ascii=False, indent=2), encoding="utf-8"
            )

    @classmethod
    def load(
        cls,
        directory: str | os.PathLike[str],
        encoder: Encoder | None = None,
        expected_corpus_version: str | None = None,
        config: MatchConfig | None = None,
    ) -> MatchEngine:
        """Open a version written by :meth:`save`: read-only, memory-mapped, nothing built.

        * ``encoder=None``: use the encoder saved with the index.
        * an unfitted encoder of the same name (the app's fresh offline encoder): the saved
          fitted state is used.
        * a fitted encoder: its fingerprint must equal the saved one.

        The opened engine answers queries from the mapped files; :meth:`upsert` and
        :meth:`remove` go to a small in-memory delta (see :class:`_OpenedSide`). Raises
        :class:`IndexMismatch` when the encoder or ``expected_corpus_version`` does not match,
        or the files are missing/unreadable, so the caller can rebuild.
        """
        path = Path(directory)
        try:
            manifest = json.loads((path / _MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise IndexMismatch(f"no readable index in {path}: {exc}") from exc
        if manifest.get("format") != _FORMAT_VERSION:
            raise IndexMismatch(f"index format {manifest.get('format')} != {_FORMAT_VERSION}")
        if manifest.get("tokenizer") != tokenizer_fingerprint():
            # saved BM25 tokens come from other dictionaries or another thesaurus
            raise IndexMismatch(f"tokenizer {manifest.get('tokenizer')} != {tokenizer_fingerprint()}")
        if expected_corpus_version is not None and manifest["corpus_version"] != expected_corpus_version:
            raise IndexMismatch(
                f"corpus version {manifest['corpus_version']!r} != expected {expected_corpus_version!r}"
            )
        if encoder is None or not encoder.is_fitted:
            if encoder is not None and encoder.name != manifest["encoder_name"]:
                raise IndexMismatch(f"encoder {encoder.name!r} != saved {manifest['encoder_name']!r}")
            try:
                encoder = load_encoder(path / "encoder")
            except Exception as exc:
                raise IndexMismatch(f"cannot load the saved encoder: {exc}") from exc
        if encoder.fingerprint != manifest["fingerprint"]:
            raise IndexMismatch(
                f"encoder fingerprint {encoder.fingerprint} != saved {manifest['fingerprint']}"
            )
        engine = cls(
            encoder,
            config=config or MatchConfig.from_mapping(manifest.get("config")),
            hnsw_threshold=manifest.get("hnsw_threshold", 20_000),
        )
        try:
            engine._sides = {name: _OpenedSide(name, encoder.dim, path / name) for name in SIDES}
        except (OSError, ValueError, KeyError) as exc:
            raise IndexMismatch(f"damaged index in {path}: {exc}") from exc
        engine.opened_from = path
        engine.corpus_version = str(manifest["corpus_version"])
        return engine

    #: The saved version an engine was opened as (``None`` for an engine built in memory).
    corpus_version: str | None = None

    @classmethod
    def delta_only(cls, encoder: Encoder, config: MatchConfig | None = None) -> MatchEngine:
        """An engine with no saved version: every item lives in the in-memory delta (for a
        worker that has no version to open yet; BM25 uses the delta's own statistics)."""
        engine = cls(encoder, config=config)
        engine._sides = {name: _OpenedSide(name, encoder.dim, None) for name in SIDES}
        return engine

    def files(self) -> list[Path]:
        """The memory-mapped files of an opened engine (empty for an engine built in memory)."""
        return [f for side in self._sides.values() if isinstance(side, _OpenedSide) for f in side.files()]

    def base_ids(self, side: str) -> np.ndarray:
        """Ids held by the saved version of an opened side (sorted; empty otherwise)."""
        s = self._sides.get(side) if self._sides else None
        if isinstance(s, _OpenedSide) and s.base_items is not None:
            return np.asarray(s.base_items.ids, dtype=np.int64)
        return np.zeros(0, dtype=np.int64)

    def delta_size(self) -> int:
        """Items held in the in-memory delta of an opened engine."""
        return sum(len(s.delta_items) for s in self._sides.values() if isinstance(s, _OpenedSide))

    @staticmethod
    def corpus_version_of(items: Iterable[Item]) -> str:
        """A stable hash of the items (handy as ``corpus_version``)."""
        h = hashlib.sha256()
        for item in sorted(items, key=lambda i: (i.side, i.id)):
            h.update(json.dumps(item.to_dict(), ensure_ascii=False, sort_keys=True).encode())
        return h.hexdigest()[:16]

"""Text normalisation, tokenisation, whole words and the domain thesaurus.

Tokens are what both the BM25 index and the offline encoder see:

* ``normalize`` folds full-width characters to half-width, lower-cases and collapses
  whitespace.
* ``tokenize`` segments every Chinese run with jieba (precise mode, no HMM) using the domain
  user dictionary in ``data/userdict.txt`` plus every thesaurus term, drops stopwords
  (``data/stopwords.txt``) and single-character pieces of longer runs, adds the parts of
  compound words of three or more characters (see ``words``), and adds the character bigrams
  of each run, so that 「停车」 still overlaps 「智慧停车诱导系统」 even when jieba keeps a longer
  word whole. English words and acronyms are kept whole and lower-cased (``5g``, ``nb-iot``,
  ``agv``); hyphenated ones also yield their parts (``nb``, ``iot``), and ``VR/AR`` yields
  ``vr``, ``ar``.
* ``words`` is ``tokenize`` without the bigrams: only whole words. A compound dictionary word
  also yields its parts, found by segmenting the compound itself with the compound excluded
  (「停车诱导」 → 停车、诱导; 「电动车」 → 电动、车, never 「动车」; 「疲劳驾驶」 → 疲劳、驾驶, never
  「劳驾」). Explanations and the portal keyword search only ever match whole words.
* The **thesaurus** (``seeds/thesaurus.tsv``; see :class:`Thesaurus`) groups domain terms that
  mean nearly the same thing (扬尘 ≈ 颗粒物, 泊位 ≈ 车位). ``expand_query`` weighs a query's own
  tokens 1 and the thesaurus terms of its words ``SYNONYM_WEIGHT`` (lower than exact);
  ``query_tokens`` is the flat, unweighted list of the same tokens.

The thesaurus is package data: ``matching/data/thesaurus.tsv`` is a symbolic link to the file in
``seeds/``. ``use_thesaurus(path)`` switches to another file (or none) for the whole process.

jieba is initialised lazily, once, under a lock, on a private ``jieba.Tokenizer`` so the
global jieba state of other code is not touched (only its logger is quietened).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import threading
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import jieba

__all__ = [
    "normalize",
    "tokenize",
    "words",
    "compound_parts",
    "query_tokens",
    "expand_query",
    "query_terms",
    "synonym_groups",
    "stopwords",
    "generic_words",
    "is_word",
    "split_sentences",
    "Thesaurus",
    "ThesaurusGroup",
    "thesaurus",
    "use_thesaurus",
    "tokenizer_fingerprint",
    "SYNONYM_WEIGHT",
]

#: Weight of a thesaurus expansion relative to an exact query term (BM25 query weight).
SYNONYM_WEIGHT = 0.5

_CJK_OR_WORD = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]+|[a-z0-9]+(?:[-.][a-z0-9]+)*")
_CJK_ONLY = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]+")
_WHITESPACE = re.compile(r"\s+")
_DIGITS = re.compile(r"[0-9.]+")
_USER_WORD_FREQ = 800

_lock = threading.RLock()
_tokenizer: jieba.Tokenizer | None = None
_logp: dict[str, float] = {}
_log_min = 0.0


def _read_text_lines(text: str) -> list[str]:
    lines = []
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            lines.append(line)
    return lines


def _read_lines(name: str) -> list[str]:
    return _read_text_lines(resources.files("matching.data").joinpath(name).read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def stopwords() -> frozenset[str]:
    """The stopword set (normalised)."""
    return frozenset(normalize(w) for w in _read_lines("stopwords.txt"))


@lru_cache(maxsize=1)
def generic_words() -> frozenset[str]:
    """Words that are indexed and searchable but too generic to be shown as a reason
    (``data/generic_words.txt``: 企业, 系统, 一体, 下降 …)."""
    return frozenset(normalize(w) for line in _read_lines("generic_words.txt") for w in line.split())


@lru_cache(maxsize=1)
def _stop_chars() -> frozenset[str]:
    # Single-character stopwords: a bigram containing one of them is noise (「车的」).
    return frozenset(w for w in stopwords() if len(w) == 1)


# -------------------------------------------------------------------- thesaurus


@dataclass(frozen=True)
class ThesaurusGroup:
    """One concept: terms that mean nearly the same in this domain, and its category."""

    category: str
    terms: tuple[str, ...]


class Thesaurus:
    """Concept groups of domain terms, each in one category of ``seeds/taxonomy.json``.

    File format (UTF-8, one group per line, ``#`` starts a comment)::

        生态保护<TAB>扬尘<TAB>颗粒物<TAB>粉尘

    Terms are normalised (lower-cased, half-width). A term may belong to several groups.
    """

    def __init__(self, groups: Iterable[ThesaurusGroup], source: str = "") -> None:
        self.groups: tuple[ThesaurusGroup, ...] = tuple(groups)
        self.source = source
        index: dict[str, list[int]] = {}
        for n, group in enumerate(self.groups):
            for term in group.terms:
                index.setdefault(term, []).append(n)
        self._index = {term: tuple(ns) for term, ns in index.items()}
        self._related: dict[str, tuple[str, ...]] = {}
        for term, ns in self._index.items():
            related = dict.fromkeys(t for n in ns for t in self.groups[n].terms if t != term)
            self._related[term] = tuple(related)
        digest = hashlib.sha256()
        for group in self.groups:
            digest.update(("\t".join((group.category, *group.terms)) + "\n").encode())
        self.fingerprint = digest.hexdigest()[:12]

    @classmethod
    def parse(cls, text: str, source: str = "") -> Thesaurus:
        """Parse the TSV text; a line with fewer than two distinct terms is an error."""
        groups = []
        for number, line in enumerate(_read_text_lines(text), start=1):
            fields = [f.strip() for f in line.split("\t") if f.strip()]
            if len(fields) < 3:
                raise ValueError(
                    f"{source or 'thesaurus'}: group {number} needs a category and 2+ terms: {line!r}"
                )
            terms = tuple(dict.fromkeys(normalize(t) for t in fields[1:]))
            if len(terms) < 2:
                raise ValueError(f"{source or 'thesaurus'}: group {number} repeats one term: {line!r}")
            groups.append(ThesaurusGroup(fields[0], terms))
        return cls(groups, source)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Thesaurus:
        """Read a thesaurus file."""
        return cls.parse(Path(path).read_text(encoding="utf-8"), source=str(path))

    def __len__(self) -> int:
        return len(self.groups)

    def __contains__(self, term: object) -> bool:
        return term in self._index

    def terms(self) -> frozenset[str]:
        """Every term of every group."""
        return frozenset(self._index)

    def related(self, term: str) -> tuple[str, ...]:
        """The other terms of every group that contains ``term`` (empty if none)."""
        return self._related.get(term, ())

    def categories(self) -> frozenset[str]:
        """The categories the groups are filed under."""
        return frozenset(g.category for g in self.groups)


_thesaurus: Thesaurus | None = None
_thesaurus_set = False


def _default_thesaurus() -> Thesaurus | None:
    ref = resources.files("matching.data").joinpath("thesaurus.tsv")
    try:
        text = ref.read_text(encoding="utf-8")
    except (FileNotFoundError, OSError):  # a checkout without seeds/: run without
        return None
    return Thesaurus.parse(text, source="matching/data/thesaurus.tsv")


def thesaurus() -> Thesaurus:
    """The active thesaurus (the packaged ``seeds/thesaurus.tsv`` unless :func:`use_thesaurus`
    chose another); an empty one when there is none."""
    global _thesaurus, _thesaurus_set
    if not _thesaurus_set:
        with _lock:
            if not _thesaurus_set:
                _thesaurus = _default_thesaurus()
                _thesaurus_set = True
    return _thesaurus if _thesaurus is not None else _EMPTY


_EMPTY = Thesaurus(())


def use_thesaurus(source: str | os.PathLike[str] | Thesaurus | None) -> Thesaurus:
    """Use another thesaurus for the whole process: a path, a :class:`Thesaurus`, or ``None``
    for none. The jieba dictionary is rebuilt on the next tokenisation, so indexes built before
    the switch must be rebuilt (their ``tokenizer_fingerprint`` differs)."""
    global _thesaurus, _thesaurus_set, _tokenizer
    loaded = source if isinstance(source, Thesaurus) or source is None else Thesaurus.load(source)
    with _lock:
        _thesaurus = loaded
        _thesaurus_set = True
        _tokenizer = None
        _segment.cache_clear()
        _parts.cache_clear()
        _words_of_run.cache_clear()
    return thesaurus()


def synonym_groups() -> tuple[tuple[str, ...], ...]:
    """The term groups of the active thesaurus (normalised)."""
    return tuple(g.terms for g in thesaurus().groups)


def tokenizer_fingerprint() -> str:
    """Changes whenever the dictionaries or the thesaurus change what ``tokenize`` returns."""
    digest = hashlib.sha256()
    for name in ("userdict.txt", "stopwords.txt"):
        digest.update(resources.files("matching.data").joinpath(name).read_bytes())
    digest.update(thesaurus().fingerprint.encode())
    digest.update(b"tokenize-v2")  # bump when the algorithm changes
    return digest.hexdigest()[:12]


# -------------------------------------------------------------------- jieba


def _jieba() -> jieba.Tokenizer:
    """Return the shared private jieba tokenizer, initialising it once (thread-safe)."""
    global _tokenizer
    tok = _tokenizer
    if tok is not None:
        return tok
    with _lock:
        if _tokenizer is None:
            import jieba

            jieba.setLogLevel(logging.WARNING)
            tok = jieba.Tokenizer()
            tok.initialize()
            for line in _read_lines("userdict.txt"):
                parts = line.split()
                freq = int(parts[1]) if len(parts) > 1 else _USER_WORD_FREQ
                tok.add_word(normalize(parts[0]), freq)
            for term in sorted(thesaurus().terms()):
                # Thesaurus terms must segment as whole words; ASCII terms are whole anyway.
                if len(term) > 1 and _CJK_ONLY.fullmatch(term) and not tok.FREQ.get(term):
                    tok.add_word(term, _USER_WORD_FREQ)
            _build_logp(tok)
            _tokenizer = tok
        return _tokenizer


def is_word(term: str) -> bool:
    """True for a dictionary word (jieba's or the domain dictionary), not a mere bigram.

    Character bigrams help recall but many cross word boundaries (「作方」 from 「合作方」).
    """
    if not term or not _CJK_ONLY.fullmatch(term):
        return True
    return bool(_jieba().FREQ.get(term))


def _build_logp(tok: jieba.Tokenizer) -> None:
    """Precompute log-probabilities of dictionary words for the fast segmenter."""
    global _logp, _log_min
    log_total = math.log(tok.total)
    _logp = {w: math.log(f) - log_total for w, f in tok.FREQ.items() if f}
    _log_min = -log_total


def _best_path(run: str, forbid_whole: bool) -> tuple[str, ...]:
    """Maximum-probability segmentation of ``run`` over the prefix dictionary DAG
    (jieba's precise mode without HMM). ``forbid_whole`` excludes the span of the whole run,
    which splits a compound word into its own parts."""
    logp = _logp
    log_min = _log_min
    prefixes = _tokenizer.FREQ  # words and their prefixes (prefixes have frequency 0)
    n = len(run)
    best = [0.0] * (n + 1)
    nxt = [0] * (n + 1)
    for i in range(n - 1, -1, -1):
        score = logp.get(run[i], log_min) + best[i + 1]
        end = i + 1
        j = i + 2
        while j <= n:
            frag = run[i:j]
            if frag not in prefixes:
                break
            lp = logp.get(frag)
            if lp is not None and lp + best[j] > score and not (forbid_whole and i == 0 and j == n):
                score = lp + best[j]
                end = j
            j += 1
        best[i] = score
        nxt[i] = end
    out = []
    i = 0
    while i < n:
        out.append(run[i : nxt[i]])
        i = nxt[i]
    return tuple(out)


@lru_cache(maxsize=65536)
def _segment(run: str) -> tuple[str, ...]:
    """Segment one run of Chinese characters (same output as jieba's precise mode without HMM,
    about twice as fast; runs repeat a lot in this domain, hence the cache)."""
    return _best_path(run, forbid_whole=False)


@lru_cache(maxsize=65536)
def _parts(word: str) -> tuple[str, ...]:
    """The dictionary words inside a compound word of three or more characters, found by
    segmenting it without its own span, recursively (「城市生命线」 → 城市、生命线、生命).
    Single characters and stopwords are left out; nothing crosses a part boundary."""
    if len(word) < 3 or not _CJK_ONLY.fullmatch(word):
        return ()
    stop = stopwords()
    out: list[str] = []
    for part in _best_path(word, forbid_whole=True):
        if len(part) > 1 and part not in stop:
            out.append(part)
            out.extend(_parts(part))
    return tuple(dict.fromkeys(out))


# Full-width ASCII variants (U+FF01–U+FF5E) and the ideographic space. A translate table is
# ~20x faster than NFKC on CJK text and covers what users actually type; other compatibility
# characters (①, ㎡, ﹐ …) go through NFKC only when present.
_FULL_TO_HALF = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}
_OTHER_COMPAT = re.compile(r"[\u2460-\u24ff\u3200-\u33ff\ufe10-\ufe6f\uff5f-\uffef]")


def normalize(text: str) -> str:
    """Fold full-width forms to half-width, lower-case and collapse whitespace."""
    if not text:
        return ""
    text = text.translate(_FULL_TO_HALF)
    if _OTHER_COMPAT.search(text):
        text = unicodedata.normalize("NFKC", text)
    return _WHITESPACE.sub(" ", text.lower()).strip()


def _english_tokens(word: str, out: list[str], parts: bool = True) -> None:
    if _DIGITS.fullmatch(word):
        # Plain numbers (years, amounts) are noise; long codes such as 12345 hotline are kept.
        if len(word) >= 5 and word.isdigit():
            out.append(word)
        return
    out.append(word)
    if parts and ("-" in word or "." in word):
        for part in re.split(r"[-.]", word):
            if len(part) > 1 and not part.isdigit():
                out.append(part)


@lru_cache(maxsize=65536)
def _words_of_run(run: str) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """``(words, with_unknown, parts)`` of one Chinese run: its segmentation without stopwords
    and single characters; the same with the unknown words in place, i.e. consecutive single
    characters joined, as jieba's HMM would (「泊安科技」 → 泊安、科技); and the parts of its
    compound words that are not words of the run already.

    ``tokenize`` leaves the unknown words out (its bigrams already cover them, and as rare
    tokens they would outweigh real words in BM25); ``words`` has no bigrams and keeps them."""
    stop = stopwords()
    if len(run) == 1:
        single = (run,) if run not in stop else ()
        return single, single, ()
    top_words: list[str] = []
    with_unknown: list[str] = []
    singles: list[str] = []
    for w in (*_segment(run), "的"):
        if len(w) == 1 and w not in stop:
            singles.append(w)
            continue
        if len(singles) > 1:
            with_unknown.append("".join(singles))
        singles = []
        if len(w) > 1 and w not in stop:
            top_words.append(w)
            with_unknown.append(w)
    top = tuple(top_words)
    seen = set(top)
    parts = []
    for w in top:
        for part in _parts(w):
            if part not in seen:
                seen.add(part)
                parts.append(part)
    return top, tuple(with_unknown), tuple(parts)


def tokenize(text: str) -> list[str]:
    """Tokenise ``text`` into jieba words, compound parts of 3+ characters, Chinese character
    bigrams and English words.

    The result keeps duplicates (term frequency matters for BM25) and document order.
    """
    norm = normalize(text)
    if not norm:
        return []
    _jieba()
    stop = stopwords()
    stop_chars = _stop_chars()
    out: list[str] = []
    for match in _CJK_OR_WORD.finditer(norm):
        run = match.group()
        if not ("\u3400" <= run[0] <= "\u9fff"):
            _english_tokens(run, out)
            continue
        top, _, parts = _words_of_run(run)
        out.extend(top)
        if len(run) < 3:
            continue
        out.extend(p for p in parts if len(p) > 2)  # 2-character parts are bigrams below
        seen = set(_segment(run))
        for i in range(len(run) - 1):
            bigram = run[i : i + 2]
            if bigram in seen or bigram in stop:
                continue
            if bigram[0] in stop_chars or bigram[1] in stop_chars:
                continue
            out.append(bigram)
    return out


def words(text: str, parts: bool = True) -> list[str]:
    """The whole words of ``text``: jieba + dictionary segmentation without stopwords and
    single characters inside longer runs, runs of single characters joined into one unknown
    word (「泊安」), English words as in :func:`tokenize`, and (with
    ``parts``) the parts of compound words and of hyphenated English words. No bigrams.
    Duplicates and order are kept."""
    norm = normalize(text)
    if not norm:
        return []
    _jieba()
    out: list[str] = []
    for match in _CJK_OR_WORD.finditer(norm):
        run = match.group()
        if not ("\u3400" <= run[0] <= "\u9fff"):
            _english_tokens(run, out, parts)
            continue
        _, with_unknown, inner = _words_of_run(run)
        out.extend(with_unknown)
        if parts:
            out.extend(inner)
    return out


def compound_parts(word: str) -> tuple[str, ...]:
    """The first-level split of a compound word when every piece is a word of two or more
    characters (「养老服务」 → 养老、服务); empty otherwise (「电动车」 → 电动 + 车 has a single
    character, so it is not split)."""
    normalized = normalize(word)
    if len(normalized) < 3 or not _CJK_ONLY.fullmatch(normalized):
        return ()
    _jieba()
    pieces = _best_path(normalized, forbid_whole=True)
    if len(pieces) < 2 or any(len(p) < 2 or p in stopwords() for p in pieces):
        return ()
    return pieces


def query_terms(text: str) -> list[str]:
    """The distinct whole words a user typed (no compound parts, no bigrams), in order."""
    return list(dict.fromkeys(words(text, parts=False)))


def expand_query(text: str, synonym_weight: float = SYNONYM_WEIGHT) -> dict[str, float]:
    """Weighted query tokens: every token of ``tokenize(text)`` with weight 1, plus the
    thesaurus terms related to any whole word of ``text`` with ``synonym_weight``.

    A group fires only on a whole word (「电动车」 does not fire a group of 「动车」).
    """
    weights = dict.fromkeys(tokenize(text), 1.0)
    if synonym_weight <= 0:
        return weights
    th = thesaurus()
    for word in dict.fromkeys(words(text)):
        for related in th.related(word):
            if related not in weights:
                weights[related] = float(synonym_weight)
    return weights


def query_tokens(text: str) -> list[str]:
    """Tokenise a query and expand it with the thesaurus (unweighted; see
    :func:`expand_query` for the weights). Duplicates are removed, order is kept."""
    return list(expand_query(text))


# -------------------------------------------------------------------- sentences

_SENTENCE_END = re.compile(r"(?<=[。！？；!?;])|\n+|(?<=[.])\s+")
_LIST_MARK = re.compile(r"^\s*(?:[（(]?\d{1,2}[)）.、．]|[一二三四五六七八九十]{1,2}[、.．]|[-•·*])\s*")


def split_sentences(text: str, max_chars: int = 120) -> list[str]:
    """Split ``text`` into sentences on 。！？；!?; and line breaks, dropping list markers
    (「1.」「（二）」) and fragments without a Chinese character or letter. Long sentences are
    cut at a comma near ``max_chars``, or hard at ``max_chars``."""
    out: list[str] = []
    for raw in _SENTENCE_END.split(text or ""):
        piece = _LIST_MARK.sub("", raw.strip()).strip()
        while len(piece) > max_chars:
            cut = max(piece.rfind("，", 0, max_chars), piece.rfind(",", 0, max_chars))
            cut = cut + 1 if cut >= max_chars // 3 else max_chars
            head, piece = piece[:cut].strip(), piece[cut:].strip()
            if re.search(r"[\u4e00-\u9fffA-Za-z]", head):
                out.append(head)
        if re.search(r"[\u4e00-\u9fffA-Za-z]", piece):
            out.append(piece)
    return out

"""Text normalisation and tokenisation for Chinese/English scenario and product texts.

Tokens are what both the BM25 index and the offline encoder see:

* ``normalize`` folds full-width characters to half-width, lower-cases and collapses
  whitespace.
* ``tokenize`` segments every Chinese run with jieba (precise mode, no HMM) using the domain
  user dictionary in ``data/userdict.txt``, drops stopwords (``data/stopwords.txt``) and
  single-character pieces of longer runs, and adds the character bigrams of each run, so that
  「停车」 still overlaps 「智慧停车诱导系统」 even when jieba keeps 「智慧停车」 whole.
  English words and acronyms are kept whole and lower-cased (``5g``, ``nb-iot``, ``agv``);
  hyphenated ones also yield their parts (``nb``, ``iot``), and ``VR/AR`` yields ``vr``, ``ar``.
* ``query_tokens`` adds synonym expansion from ``data/synonyms.txt``.

jieba is initialised lazily, once, under a lock, on a private ``jieba.Tokenizer`` so the
global jieba state of other code is not touched (only its logger is quietened).
"""

from __future__ import annotations

import logging
import math
import re
import threading
import unicodedata
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import jieba

__all__ = ["normalize", "tokenize", "query_tokens", "synonym_groups", "stopwords"]

_CJK_OR_WORD = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]+|[a-z0-9]+(?:[-.][a-z0-9]+)*")
_CJK_ONLY = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]+")
_WHITESPACE = re.compile(r"\s+")
_DIGITS = re.compile(r"[0-9.]+")
_USER_WORD_FREQ = 800

_lock = threading.Lock()
_tokenizer: jieba.Tokenizer | None = None
_logp: dict[str, float] = {}
_log_min = 0.0


def _read_lines(name: str) -> list[str]:
    text = resources.files("matching.data").joinpath(name).read_text(encoding="utf-8")
    lines = []
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            lines.append(line)
    return lines


@lru_cache(maxsize=1)
def stopwords() -> frozenset[str]:
    """The stopword set (normalised)."""
    return frozenset(normalize(w) for w in _read_lines("stopwords.txt"))


@lru_cache(maxsize=1)
def _stop_chars() -> frozenset[str]:
    # Single-character stopwords: a bigram containing one of them is noise (「车的」).
    return frozenset(w for w in stopwords() if len(w) == 1)


@lru_cache(maxsize=1)
def synonym_groups() -> tuple[tuple[str, ...], ...]:
    """Synonym groups from ``data/synonyms.txt`` (normalised)."""
    return tuple(tuple(normalize(w) for w in line.split()) for line in _read_lines("synonyms.txt"))


def _jieba() -> jieba.Tokenizer:
    """Return the shared private jieba tokenizer, initialising it once (thread-safe)."""
    global _tokenizer
    if _tokenizer is not None:
        return _tokenizer
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
            for group in synonym_groups():
                for word in group:
                    if len(word) > 1 and word not in tok.FREQ:
                        tok.add_word(word, _USER_WORD_FREQ)
            _build_logp(tok)
            _tokenizer = tok
    return _tokenizer


def is_word(term: str) -> bool:
    """True for a dictionary word (jieba's or the domain dictionary), not a mere bigram.

    Character bigrams help recall but many cross word boundaries (「作方」 from 「合作方」);
    explanations show only real words.
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


@lru_cache(maxsize=65536)
def _segment(run: str) -> tuple[str, ...]:
    """Segment one run of Chinese characters.

    Same model as jieba's precise mode without HMM (maximum-probability path over the prefix
    dictionary DAG), but written as one tight loop over precomputed log-probabilities, which is
    about twice as fast; runs repeat a lot in this domain, hence the cache.
    """
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
            if lp is not None and lp + best[j] > score:
                score = lp + best[j]
                end = j
            j += 1
        best[i] = score
        nxt[i] = end
    words = []
    i = 0
    while i < n:
        words.append(run[i : nxt[i]])
        i = nxt[i]
    return tuple(words)


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


def _english_tokens(word: str, out: list[str]) -> None:
    if _DIGITS.fullmatch(word):
        # Plain numbers (years, amounts) are noise; long codes such as 12345 hotline are kept.
        if len(word) >= 5 and word.isdigit():
            out.append(word)
        return
    out.append(word)
    if "-" in word or "." in word:
        for part in re.split(r"[-.]", word):
            if len(part) > 1 and not part.isdigit():
                out.append(part)


def tokenize(text: str) -> list[str]:
    """Tokenise ``text`` into jieba words, Chinese character bigrams and English words.

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
        if len(run) == 1:
            if run not in stop:
                out.append(run)
            continue
        words = _segment(run)
        for w in words:
            if len(w) > 1 and w not in stop:
                out.append(w)
        if len(run) > 2:
            seen = set(words)
            for i in range(len(run) - 1):
                bigram = run[i : i + 2]
                if bigram in seen or bigram in stop:
                    continue
                if bigram[0] in stop_chars or bigram[1] in stop_chars:
                    continue
                out.append(bigram)
    return out


def query_tokens(text: str) -> list[str]:
    """Tokenise a query and expand it with synonyms.

    A synonym group fires when any of its words occurs in the normalised query text (substring
    match, so it works whatever jieba does with the surrounding characters); the group's other
    words are then appended. Duplicates are removed, order is kept.
    """
    tokens = tokenize(text)
    norm = normalize(text)
    seen = set(tokens)
    result = list(dict.fromkeys(tokens))
    for group in synonym_groups():
        if any(word in norm or word in seen for word in group):
            for word in group:
                if word not in seen:
                    seen.add(word)
                    result.append(word)
    return result

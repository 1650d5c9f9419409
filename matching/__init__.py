"""Matching engine for the scenario opportunity marketplace (no Flask, no database).

Plain items in, ranked hits with explanations out::

    from matching import Item, MatchEngine, build_encoder

    engine = MatchEngine(build_encoder(None))
    engine.build(items)
    hits = engine.products_for(opportunity_id, k=20)
    hits[0].reason  # 「推荐理由：同属交通出行领域；共同关键词：车位、诱导；同在南昌市」

Importing this package is cheap: jieba, FAISS, bm25s, scikit-learn and torch are imported
on first use.
"""

from matching.encoders import Encoder, EncoderLoadError, build_encoder, load_encoder
from matching.engine import (
    Filters,
    Hit,
    IndexMismatch,
    Item,
    MatchConfig,
    MatchEngine,
    document_text,
)
from matching.lexical import LexicalIndex
from matching.text import normalize, query_tokens, tokenize
from matching.vector_index import VectorIndex

__all__ = [
    "normalize",
    "tokenize",
    "query_tokens",
    "build_encoder",
    "load_encoder",
    "Encoder",
    "EncoderLoadError",
    "VectorIndex",
    "LexicalIndex",
    "Item",
    "Hit",
    "Filters",
    "MatchConfig",
    "MatchEngine",
    "document_text",
    "IndexMismatch",
]

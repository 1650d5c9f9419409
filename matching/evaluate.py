"""Offline evaluation of BM25 alone, dense alone and the fused ranking against graded qrels.

Usage::

    python -m matching.evaluate --needs needs.jsonl --products products.jsonl \\
        --qrels qrels.tsv [--model SPEC] [--k 10] [--config weights.json]

prints one JSON object::

    {"encoder": "offline-tfidf-svd-256", "n_needs": 40, "n_products": 120,
     "bm25": {"ndcg@10": ..., "recall@10": ..., "recall@50": ..., "mrr": ...},
     "dense": {...}, "hybrid": {...}}

File formats:

* needs JSONL: ``{"id", "title", "description", "field"?, "region"?}``
* products JSONL: ``{"id", "name", "description", "field"? (string or list; "fields" also
  accepted), "tags"? (list), "maturity"?, "company"?}``. ``field`` is free text, used as text.
* qrels TSV: ``need_id<TAB>product_id<TAB>grade`` (grade 0–3; ``#`` lines and a header
  line are skipped).

Ids in the files are strings; they are mapped to ints internally. See
:mod:`matching.metrics` for the metric conventions.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from matching.encoders import build_encoder
from matching.engine import Item, MatchConfig, MatchEngine, document_text
from matching.metrics import mean, ndcg_at_k, recall_at_k, reciprocal_rank
from matching.text import query_tokens

__all__ = ["evaluate", "load_jsonl", "load_qrels", "main"]

Qrels = Mapping[str, Mapping[str, float]]


def load_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Records of a JSONL file (blank lines skipped). A ``.json`` file holding a list also works."""
    text = Path(path).read_text(encoding="utf-8")
    if Path(path).suffix == ".json" and text.lstrip().startswith("["):
        return list(json.loads(text))
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def load_qrels(path: str | Path) -> dict[str, dict[str, float]]:
    """``{need_id: {product_id: grade}}`` from a TSV file."""
    qrels: dict[str, dict[str, float]] = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.replace("\t", " ").split()
        if len(parts) == 4:  # TREC form: need 0 product grade
            parts = [parts[0], parts[2], parts[3]]
        if len(parts) != 3:
            raise ValueError(f"bad qrels line: {line!r}")
        try:
            grade = float(parts[2])
        except ValueError:
            continue  # header
        qrels.setdefault(parts[0], {})[parts[1]] = grade
    return qrels


def _as_tuple(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,) if value.strip() else ()
    return tuple(str(v) for v in value if str(v).strip())


def _need_item(record: Mapping[str, Any], internal_id: int) -> Item:
    fields = _as_tuple(record.get("field") or record.get("fields") or record.get("field_category"))
    region = record.get("region") or record.get("region_city")
    title = str(record.get("title") or record.get("name") or "")
    text = " ".join(p for p in ["、".join(fields), str(record.get("description") or "")] if p)
    return Item(
        id=internal_id,
        side="opportunity",
        title=title,
        text=text,
        region_city=str(region) if region else None,
    )


def _product_item(record: Mapping[str, Any], internal_id: int) -> Item:
    fields = _as_tuple(record.get("field") or record.get("fields"))
    title = str(record.get("name") or record.get("title") or "")
    text = " ".join(p for p in ["、".join(fields), str(record.get("description") or "")] if p)
    maturity = record.get("maturity")
    return Item(
        id=internal_id,
        side="product",
        title=title,
        text=text,
        tags=_as_tuple(record.get("tags")),
        maturity=str(maturity) if maturity else None,
    )


def _metrics(rankings: Mapping[str, Sequence[str]], qrels: Qrels, k: int) -> dict[str, float]:
    ndcg, rec_k, rec_50, rr = [], [], [], []
    for need_id, judged in qrels.items():
        if need_id not in rankings:
            continue
        ranked = rankings[need_id]
        ndcg.append(ndcg_at_k(ranked, judged, k))
        rec_k.append(recall_at_k(ranked, judged, k))
        rec_50.append(recall_at_k(ranked, judged, 50))
        rr.append(reciprocal_rank(ranked, judged))
    return {
        f"ndcg@{k}": round(mean(ndcg), 4),
        f"recall@{k}": round(mean(rec_k), 4),
        "recall@50": round(mean(rec_50), 4),
        "mrr": round(mean(rr), 4),
    }


def _load(value: Any, loader: Any) -> Any:
    return loader(value) if isinstance(value, str | Path) else value


def evaluate(
    needs: Iterable[Mapping[str, Any]] | str | Path,
    products: Iterable[Mapping[str, Any]] | str | Path,
    qrels: Qrels | str | Path,
    encoder_spec: str | None = None,
    k: int = 10,
    config: MatchConfig | Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate the three rankings; arguments are records (or file paths) as described above.

    The encoder is fitted on needs and products together (unlabelled text only).
    """
    need_records = list(_load(needs, load_jsonl))
    product_records = list(_load(products, load_jsonl))
    judgements: Qrels = _load(qrels, load_qrels)
    if not isinstance(config, MatchConfig):
        config = MatchConfig.from_mapping(config)
    need_items = [_need_item(r, i) for i, r in enumerate(need_records)]
    product_items = [_product_item(r, i) for i, r in enumerate(product_records)]
    need_key = {i: str(r.get("id")) for i, r in enumerate(need_records)}
    product_key = {i: str(r.get("id") or r.get("key")) for i, r in enumerate(product_records)}

    encoder = build_encoder(encoder_spec)
    engine = MatchEngine(encoder, config=config)
    engine.build(need_items + product_items)
    depth = max(k, 50)
    side = engine._side("product")

    rankings: dict[str, dict[str, list[str]]] = {"bm25": {}, "dense": {}, "hybrid": {}}
    for item in need_items:
        key = need_key[item.id]
        q_tokens = query_tokens(document_text(item))
        lexical = side.lexical.search(q_tokens, depth)
        rankings["bm25"][key] = [product_key[i] for i, _ in lexical]
        vec = engine.vector("opportunity", item.id)
        _, dense_ids = side.vectors.search(vec[None, :], depth)
        rankings["dense"][key] = [product_key[int(i)] for i in dense_ids[0] if i >= 0]
        hits = engine.products_for(item.id, k=depth)
        rankings["hybrid"][key] = [product_key[h.id] for h in hits]

    result: dict[str, Any] = {
        "encoder": encoder.name,
        "n_needs": len(need_items),
        "n_products": len(product_items),
    }
    if encoder.fallback_reason:
        result["fallback_reason"] = encoder.fallback_reason
    for name in ("bm25", "dense", "hybrid"):
        result[name] = _metrics(rankings[name], judgements, k)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; prints one JSON object to stdout."""
    parser = argparse.ArgumentParser(prog="python -m matching.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("--needs", required=True, help="needs JSONL")
    parser.add_argument("--products", required=True, help="products JSONL")
    parser.add_argument("--qrels", required=True, help="qrels TSV: need_id, product_id, grade")
    parser.add_argument("--model", default=None, help="encoder spec: default | st:<name or path>")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--config", default=None, help="JSON file or inline JSON with MatchConfig values")
    args = parser.parse_args(argv)
    config = None
    if args.config:
        raw = Path(args.config).read_text(encoding="utf-8") if Path(args.config).is_file() else args.config
        config = MatchConfig.from_mapping(json.loads(raw))
    result = evaluate(args.needs, args.products, args.qrels, encoder_spec=args.model, k=args.k, config=config)
    json.dump(result, sys.stdout, ensure_ascii=False)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

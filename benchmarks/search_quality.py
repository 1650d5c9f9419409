"""Quality of the portal keyword search on the demo seed data.

    python benchmarks/search_quality.py                 # the shipped cut-off, every query
    python benchmarks/search_quality.py --cv            # two-fold choice of the cut-off, held out
    python benchmarks/search_quality.py --pool 30       # print the top 30 of each query (to judge)

Seeds a temporary SQLite database with ``flask seed``'s data (``seeds/``), runs each query of
``seeds/search_eval.json`` through :func:`marketplace.services.search.search` (one side per
query, every result page; the index files are built first, as the background job would) and
reports, per query and on average:

* **P@10**: share of the first ``min(10, number of results)`` results that are listed in
  ``must`` (an entry not listed counts as wrong: the lists were written to be complete for
  their query). A query with no result scores 0.
* **recall**: share of ``must`` among all results (the whole ranked list, not the first page).
* **must-not hits**: results listed in ``must_not``, anywhere in the list.
* the number of results.

``--cv`` splits the queries into two folds (even and odd positions), picks the cut-off that
maximises the mean F1 of P@10 and recall on one fold and reports it on the other, both ways.
It is a measurement script, not a test; it works on older code too (without the cut-off).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("SECRET_KEY", "benchmark-only")

from marketplace import create_app  # noqa: E402
from marketplace.extensions import db  # noqa: E402
from marketplace.services import search as search_service  # noqa: E402
from marketplace.services.seeding import load_seeds  # noqa: E402

GRID = (0.0, 0.1, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.7, 0.8)


def run_queries(queries: list[dict], cutoff: float | None) -> list[list[str]]:
    """Every query's ranked titles (names for products)."""
    index = search_service.get_index()
    if cutoff is not None:
        if not hasattr(index, "relative_cutoff"):
            raise SystemExit("this version of the search has no relative cut-off")
        index.relative_cutoff = cutoff
    out = []
    for query in queries:
        page = search_service.search(query["side"], query["q"], per_page=10_000)
        out.append([entry.title if query["side"] == "opportunity" else entry.name for entry in page.items])
    return out


def measure(query: dict, ranked: list[str], k: int) -> dict:
    must, must_not = set(query["must"]), set(query.get("must_not", ()))
    top = ranked[:k]
    precision = sum(t in must for t in top) / len(top) if top else 0.0
    recall = sum(t in must for t in ranked) / len(must) if must else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "must_not": sum(t in must_not for t in ranked),
        "results": len(ranked),
    }


def summary(rows: list[dict]) -> dict:
    return {
        "queries": len(rows),
        "P@10": statistics.fmean(r["precision"] for r in rows),
        "recall": statistics.fmean(r["recall"] for r in rows),
        "F1": statistics.fmean(r["f1"] for r in rows),
        "must_not_hits": sum(r["must_not"] for r in rows),
        "queries_with_must_not_hits": sum(r["must_not"] > 0 for r in rows),
        "mean_results": statistics.fmean(r["results"] for r in rows),
    }


def print_summary(label: str, s: dict) -> None:
    print(
        f"{label:<34} n={s['queries']:>2}  P@10 {s['P@10']:.3f}  recall {s['recall']:.3f}  "
        f"F1 {s['F1']:.3f}  must-not hits {s['must_not_hits']} "
        f"(in {s['queries_with_must_not_hits']} queries)  results/query {s['mean_results']:.1f}"
    )


def check_titles(queries: list[dict]) -> None:
    """Every title in the set must be a published seed entry of the query's side."""
    from sqlalchemy import select

    from marketplace.models import EntryStatus, Opportunity, Product

    published = EntryStatus.PUBLISHED
    titles = {
        "opportunity": set(
            db.session.scalars(select(Opportunity.title).where(Opportunity.status == published))
        ),
        "product": set(db.session.scalars(select(Product.name).where(Product.status == published))),
    }
    missing = [
        (q["id"], t)
        for q in queries
        for t in (*q["must"], *q.get("must_not", ()))
        if t not in titles[q["side"]]
    ]
    if missing:
        raise SystemExit(f"unknown or unpublished titles in the eval set: {missing}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eval", default=str(ROOT / "seeds" / "search_eval.json"))
    parser.add_argument("--cutoff", type=float, default=None, help="default: the shipped value")
    parser.add_argument("--cv", action="store_true", help="choose the cut-off by two-fold CV")
    parser.add_argument("--pool", type=int, default=0, help="print the top N results of each query")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--per-query", action="store_true")
    args = parser.parse_args()

    queries = json.loads(Path(args.eval).read_text(encoding="utf-8"))["queries"]
    tmpdir = tempfile.TemporaryDirectory(prefix="bench-search-")
    app = create_app({
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{Path(tmpdir.name) / 'search.db'}",
        "MATCHING_INDEX_DIR": str(Path(tmpdir.name) / "index"),
        "MATCHING_ENABLED": False,
        "HUEY_IMMEDIATE": True,  # never queue into the instance's job queue
        "SEARCH_BUILD_ON_CHANGE": False,  # built once below
    })
    with app.app_context():
        db.create_all()
        load_seeds(str(ROOT / "seeds"))
        db.session.commit()
        if hasattr(search_service, "build_search_index"):  # the shared index files (issue 13)
            search_service.build_search_index()
        if not args.pool:
            check_titles(queries)

        if args.pool:
            for query, ranked in zip(queries, run_queries(queries, args.cutoff), strict=True):
                print(f"## {query['id']} [{query['side']}] {query['q']}  ({len(ranked)} results)")
                for n, title in enumerate(ranked[: args.pool], 1):
                    wrong = title in query.get("must_not", ())
                    mark = "+" if title in query["must"] else ("-" if wrong else " ")
                    print(f"  {n:>2} {mark} {title}")
            return

        if args.cv:
            folds = (queries[0::2], queries[1::2])
            rows_by_cutoff = {}
            for cutoff in GRID:
                ranked = run_queries(queries, cutoff)
                rows_by_cutoff[cutoff] = [measure(q, r, args.k) for q, r in zip(queries, ranked, strict=True)]
            held_out = []
            for fold in (0, 1):
                choose = [i for i in range(len(queries)) if i % 2 == fold]
                report = [i for i in range(len(queries)) if i % 2 != fold]
                scores = {
                    c: statistics.fmean(rows_by_cutoff[c][i]["f1"] for i in choose) for c in GRID
                }
                best = max(GRID, key=lambda c: (round(scores[c], 6), -c))
                print(f"fold {'AB'[fold]} ({len(folds[fold])} queries): F1 by cut-off "
                      + ", ".join(f"{c:g}: {scores[c]:.3f}" for c in GRID) + f" -> {best:g}")
                rows = [rows_by_cutoff[best][i] for i in report]
                print_summary(f"  held out on fold {'BA'[fold]} (cut-off {best:g})", summary(rows))
                held_out.extend(rows)
            print_summary("held out, both folds", summary(held_out))
            return

        ranked = run_queries(queries, args.cutoff)
        rows = [measure(q, r, args.k) for q, r in zip(queries, ranked, strict=True)]
        if args.per_query:
            for query, row in zip(queries, rows, strict=True):
                print(f"{query['id']:<4} {query['q']:<14} P@10 {row['precision']:.2f}  recall "
                      f"{row['recall']:.2f}  must-not {row['must_not']}  results {row['results']}")
        cutoff = getattr(search_service.get_index(), "relative_cutoff", None)
        label = f"all queries (cut-off {cutoff:g})" if cutoff is not None else "all queries (no cut-off)"
        print_summary(label, summary(rows))
        print_summary("  fold A (even positions)", summary(rows[0::2]))
        print_summary("  fold B (odd positions)", summary(rows[1::2]))


if __name__ == "__main__":
    main()

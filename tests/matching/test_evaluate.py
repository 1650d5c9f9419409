"""Evaluation CLI and function on a tiny fixture."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from matching.evaluate import evaluate, load_qrels, main
from tests.matching.conftest import OPPORTUNITIES, PRODUCTS


@pytest.fixture
def dev_set(tmp_path):
    needs = tmp_path / "needs.jsonl"
    products = tmp_path / "products.jsonl"
    qrels = tmp_path / "qrels.tsv"
    with needs.open("w", encoding="utf-8") as fh:
        for o in OPPORTUNITIES:
            fh.write(
                json.dumps(
                    {
                        "id": f"N-{o.id}",
                        "title": o.title,
                        "description": o.text,
                        "field": o.categories[0],
                        "region": o.region_city,
                    },
                    ensure_ascii=False,
                )
                + "\n"
            )
    with products.open("w", encoding="utf-8") as fh:
        for p in PRODUCTS:
            record = {
                "id": f"P-{p.id}",
                "name": p.title,
                "description": p.text,
                "field": list(p.categories) if p.id % 2 else "某种不在分类里的领域",
                "tags": list(p.tags),
                "maturity": p.maturity,
                "company": "某公司",
            }
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    qrels.write_text(
        "need_id\tproduct_id\tgrade\n"
        "N-101\tP-1\t3\nN-101\tP-13\t3\nN-101\tP-2\t2\nN-101\tP-7\t0\n"
        "N-102\tP-3\t3\nN-102\tP-4\t1\nN-103\tP-5\t3\nN-103\tP-6\t1\nN-104\tP-8\t3\n",
        encoding="utf-8",
    )
    return needs, products, qrels


def test_load_qrels_skips_header(dev_set):
    assert load_qrels(dev_set[2])["N-101"] == {"P-1": 3.0, "P-13": 3.0, "P-2": 2.0, "P-7": 0.0}


def test_evaluate_function(dev_set):
    result = evaluate(*dev_set, k=5)
    assert result["n_needs"] == 4 and result["n_products"] == len(PRODUCTS)
    assert result["encoder"].startswith("offline")
    for name in ("bm25", "dense", "hybrid"):
        assert set(result[name]) == {"ndcg@5", "recall@5", "recall@50", "mrr"}
        assert all(0 <= v <= 1 for v in result[name].values())
    assert result["hybrid"]["mrr"] > 0.5


def test_cli_prints_one_json_object(dev_set, capsys):
    needs, products, qrels = dev_set
    assert main(["--needs", str(needs), "--products", str(products), "--qrels", str(qrels), "--k", "10"]) == 0
    out = capsys.readouterr().out.strip()
    data = json.loads(out)
    assert {"encoder", "n_needs", "n_products", "bm25", "dense", "hybrid"} <= set(data)
    assert set(data["hybrid"]) == {"ndcg@10", "recall@10", "recall@50", "mrr"}


def test_module_entry_point(dev_set):
    needs, products, qrels = dev_set
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "matching.evaluate",
            "--needs",
            str(needs),
            "--products",
            str(products),
            "--qrels",
            str(qrels),
            "--config",
            '{"w_dense": 0.5}',
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(out.stdout)["n_needs"] == 4

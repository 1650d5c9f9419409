"""Evaluation CLI and function on a tiny fixture."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from matching import MatchConfig
from matching.evaluate import EvalSet, combine_sets, evaluate, evaluate_sets, load_qrels, load_set, main
from tests.matching.conftest import OPPORTUNITIES, PRODUCTS

SMALL_GRID = {"w_dense": [0.0, 0.35, 1.0], "w_lexical": [0.55], "w_structured": [0.0, 0.1]}


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
    result = evaluate(*dev_set, k=5, cv=5)
    assert result["n_needs"] == 4 and result["n_products"] == len(PRODUCTS)
    assert result["encoder"].startswith("offline")
    assert result["mode"] == "cv"
    for name in ("bm25", "dense", "hybrid"):
        assert set(result[name]) == {"ndcg@5", "recall@5", "recall@50", "mrr"}
        assert all(0 <= v <= 1 for v in result[name].values())
    assert result["hybrid"]["mrr"] > 0.5
    assert result["cv"]["folds"] == 4  # capped at the number of needs
    assert sum(c["n_test"] for c in result["cv"]["chosen"]) == 4
    assert result["cv"]["fusion_check"] == {"needs": 4, "mismatched": 0}


def test_the_default_mode_is_the_shipped_engine(dev_set):
    assert evaluate(*dev_set, k=5)["mode"] == "fixed"


def test_fixed_mode_is_the_engine_with_the_given_weights(dev_set):
    weights = {"w_dense": 0.6, "w_lexical": 0.3, "w_structured": 0.1}
    result = evaluate(*dev_set, k=5, cv=0, config=weights)
    assert result["mode"] == "fixed" and "cv" not in result
    assert {k: result["weights"][k] for k in weights} == weights
    # BM25 alone and dense alone do not depend on the weights
    other = evaluate(*dev_set, k=5, cv=0, config={"w_dense": 0.1, "w_lexical": 0.9, "w_structured": 0})
    assert other["bm25"] == result["bm25"] and other["dense"] == result["dense"]


def test_confidence_intervals_contain_the_estimates_and_are_deterministic(dev_set):
    a = evaluate(*dev_set, k=5, grid=SMALL_GRID, resamples=300, seed=1)
    b = evaluate(*dev_set, k=5, grid=SMALL_GRID, resamples=300, seed=1)
    assert a == b
    for name in ("bm25", "dense", "hybrid"):
        for metric in ("ndcg@5", "recall@5", "mrr"):
            lo, hi = a["ci95"][name][metric]
            assert lo - 1e-4 <= a[name][metric] <= hi + 1e-4
    diff = a["ci95"]["hybrid_minus_bm25"]["ndcg@5"]
    assert diff["ci95"][0] - 1e-4 <= diff["diff"] <= diff["ci95"][1] + 1e-4
    assert diff["diff"] == pytest.approx(a["hybrid"]["ndcg@5"] - a["bm25"]["ndcg@5"], abs=2e-4)
    assert a["bootstrap"] == {"resamples": 300, "seed": 1, "unit": "need", "method": "percentile"}
    assert "ci95" not in evaluate(*dev_set, k=5, grid=SMALL_GRID, resamples=0)


def test_held_out_weights_ignore_the_held_out_needs_judgements(dev_set, tmp_path):
    """Poison the judgements of one need: only the folds that train on it may change."""
    needs, products, qrels = dev_set
    clean = load_qrels(qrels)
    poisoned = {n: dict(j) for n, j in clean.items()}
    poisoned["N-104"] = {"P-12": 3.0}  # the unrelated blockchain product
    a = evaluate(needs, products, clean, k=5, cv=4, grid=SMALL_GRID, resamples=0)
    b = evaluate(needs, products, poisoned, k=5, cv=4, grid=SMALL_GRID, resamples=0)
    # folds are the same (they depend on the seed and the need ids only) ...
    assert [c["n_test"] for c in a["cv"]["chosen"]] == [c["n_test"] for c in b["cv"]["chosen"]]
    # ... and the fold that holds N-104 out chose its weights without it
    from matching.tuning import make_folds

    keys = ["N-101", "N-102", "N-103", "N-104"]
    folds = make_folds(["dev"] * 4, 4, 0)
    held = next(n for n, f in enumerate(folds) if keys.index("N-104") in f)
    assert a["cv"]["chosen"][held]["weights"] == b["cv"]["chosen"][held]["weights"]


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


def _write_set(folder, prefix, opportunities, products, qrels_lines):
    folder.mkdir(parents=True)
    with (folder / "needs.jsonl").open("w", encoding="utf-8") as fh:
        for o in opportunities:
            record = {"id": f"N{prefix}{o.id}", "title": o.title, "description": o.text}
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    with (folder / "products.jsonl").open("w", encoding="utf-8") as fh:
        for p in products:
            fh.write(
                json.dumps(
                    {
                        "id": f"P{prefix}{p.id}",
                        "name": p.title,
                        "description": p.text,
                        "maturity": p.maturity,
                    },
                    ensure_ascii=False,
                )
                + "\n"
            )
    (folder / "qrels.tsv").write_text(
        "".join(f"N{prefix}{n}\tP{prefix}{p}\t{g}\n" for n, p, g in qrels_lines), encoding="utf-8"
    )


@pytest.fixture
def two_part_set(tmp_path):
    root = tmp_path / "eval2"
    _write_set(
        root / "part_a", "A-", OPPORTUNITIES[:2], PRODUCTS[:7], [(101, 1, 3), (101, 2, 2), (102, 3, 3)]
    )
    _write_set(root / "part_b", "B-", OPPORTUNITIES[2:], PRODUCTS[7:], [(103, 8, 0), (104, 8, 3)])
    # P-5 (the reservoir product) is in part A: a part-B need may find it in the combined set
    with (root / "part_b" / "qrels.tsv").open("a", encoding="utf-8") as fh:
        fh.write("NB-103\tPA-5\t3\n")
    return root


def test_load_set_concatenates_parts(two_part_set):
    s = load_set(two_part_set)
    assert s.name == "eval2" and len(s.needs) == 4 and len(s.products) == len(PRODUCTS)
    assert [p.rsplit("/", 1)[-1] for p in s.parts] == ["part_a", "part_b"]
    assert s.qrels["NB-103"] == {"PB-8": 0.0, "PA-5": 3.0}
    assert s.check() == {"qrels_unknown_needs": 0, "qrels_unknown_products": 0}
    with pytest.raises(ValueError, match="duplicate"):
        combine_sets([load_set(two_part_set / "part_a"), load_set(two_part_set / "part_a")])
    with pytest.raises(FileNotFoundError):
        load_set(two_part_set / "part_a" / "nothing")


def test_several_sets_rank_within_their_own_products(two_part_set):
    a = load_set(two_part_set / "part_a")
    b = load_set(two_part_set / "part_b")
    b.qrels["NB-103"].pop("PA-5")
    result = evaluate_sets([a, b], k=5, cv=5, grid=SMALL_GRID, resamples=100)
    assert set(result["per_set"]) == {"part_a", "part_b"}
    assert result["n_products"] == len(PRODUCTS) and result["n_judged_needs"] == 4
    assert result["cv"]["fusion_check"]["mismatched"] == 0
    assert [s["name"] for s in result["sets"]] == ["part_a", "part_b"]


def test_cli_set_and_model_offline(two_part_set, capsys):
    assert (
        main(
            [
                "--set",
                str(two_part_set),
                "--model",
                "offline",
                "--k",
                "10",
                "--bootstrap",
                "200",
                "--grid",
                json.dumps(SMALL_GRID),
                "--cv",
                "5",
            ]
        )
        == 0
    )
    data = json.loads(capsys.readouterr().out)
    assert data["encoder"].startswith("offline-tfidf-svd") and "fallback_reason" not in data
    assert data["n_needs"] == 4 and data["mode"] == "cv"
    for name in ("bm25", "dense", "hybrid"):
        assert {"ndcg@10", "recall@10", "mrr"} <= set(data[name])
        assert set(data["ci95"][name]) == {"ndcg@10", "recall@10", "mrr"}
    assert set(data["ci95"]["hybrid_minus_bm25"]["ndcg@10"]) == {"diff", "ci95", "p_le_0"}


def test_cli_fixed_mode_and_missing_model(dev_set, capsys, offline_env):
    needs, products, qrels = dev_set
    args = ["--needs", str(needs), "--products", str(products), "--qrels", str(qrels), "--cv", "0"]
    assert main([*args, "--model", "/nonexistent/model/folder", "--config", '{"w_dense": 0.5}']) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["mode"] == "fixed" and data["weights"]["w_dense"] == 0.5
    assert "fallback_reason" in data  # never reported as if the model had been used


def test_evaluate_sets_reuses_a_given_encoder(dev_set):
    from matching import build_encoder

    needs, products, qrels = dev_set
    s = EvalSet(
        "dev",
        [json.loads(x) for x in needs.read_text().splitlines()],
        [json.loads(x) for x in products.read_text().splitlines()],
        load_qrels(qrels),
    )
    result = evaluate_sets([s], encoder=build_encoder("offline"), cv=0, resamples=0, config=MatchConfig())
    assert result["mode"] == "fixed" and result["encoder"].startswith("offline")

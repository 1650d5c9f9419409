"""Write seeds/eval/products.jsonl from seeds/products/*.json (stdlib only).

The evaluation file format (see docs/matching.md) is the one `python -m matching.evaluate`
reads: id, name, description, field, tags, maturity, company. Run it after editing the product
seeds: ``python seeds/eval/export_products.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    records = []
    for path in sorted((HERE.parent / "products").glob("*.json")):
        records.extend(json.loads(path.read_text(encoding="utf-8")))
    out = HERE / "products.jsonl"
    with out.open("w", encoding="utf-8") as fh:
        for rec in records:
            description = rec["description"]
            if rec.get("cases"):
                description += "\n典型案例：" + rec["cases"]
            row = {
                "id": rec["key"],
                "name": rec["name"],
                "description": description,
                "field": rec["fields"],
                "tags": rec.get("tags", []),
                "maturity": rec.get("maturity"),
                "company": rec["owner"],
            }
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"wrote {len(records)} products to {out}")


if __name__ == "__main__":
    main()

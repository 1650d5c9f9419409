"""Reference data kept in ``seeds/``: the field taxonomy, Jiangxi regions and tags.

Loaded once per seeds directory and cached; everything returned is immutable.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from flask import current_app


@dataclass(frozen=True)
class Reference:
    areas: tuple[tuple[str, tuple[str, ...]], ...]
    category_area: dict[str, str]
    category_keywords: dict[str, tuple[str, ...]]
    cities: tuple[str, ...]
    city_counties: dict[str, tuple[str, ...]]
    tags: tuple[str, ...]

    @property
    def categories(self) -> tuple[str, ...]:
        return tuple(self.category_area)

    @property
    def area_names(self) -> tuple[str, ...]:
        return tuple(a for a, _ in self.areas)

    def area_of(self, category: str) -> str | None:
        return self.category_area.get(category)

    def is_valid_region(self, city: str | None, county: str | None) -> bool:
        if city not in self.city_counties:
            return False
        return not county or county in self.city_counties[city]

    def category_choices(self) -> list[tuple[str, list[tuple[str, str]]]]:
        """Choices grouped by area, for ``<optgroup>`` selects."""
        return [(area, [(c, c) for c in cats]) for area, cats in self.areas]


@lru_cache(maxsize=4)
def load_reference(seeds_dir: str) -> Reference:
    root = Path(seeds_dir)
    taxonomy = json.loads((root / "taxonomy.json").read_text(encoding="utf-8"))
    regions = json.loads((root / "regions.json").read_text(encoding="utf-8"))
    tags = json.loads((root / "tags.json").read_text(encoding="utf-8"))
    areas = []
    category_area: dict[str, str] = {}
    keywords: dict[str, tuple[str, ...]] = {}
    for area in taxonomy["areas"]:
        cats = tuple(c["name"] for c in area["categories"])
        areas.append((area["name"], cats))
        for c in area["categories"]:
            category_area[c["name"]] = area["name"]
            keywords[c["name"]] = tuple(c.get("keywords", ()))
    city_counties = {c["name"]: tuple(c["counties"]) for c in regions["cities"]}
    return Reference(
        areas=tuple(areas),
        category_area=category_area,
        category_keywords=keywords,
        cities=tuple(city_counties),
        city_counties=city_counties,
        tags=tuple(tags),
    )


def reference() -> Reference:
    """The reference data of the current app."""
    return load_reference(current_app.config["SEEDS_DIR"])

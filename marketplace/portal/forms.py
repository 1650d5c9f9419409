"""Filter and search forms of the public portal.

They are GET forms bound to ``request.args`` with CSRF off (nothing changes state). Every
select's choices come from the enums, the reference data or the published batches, so an
unknown value gets a Chinese form error and that filter is ignored; it never reaches a query.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from flask_wtf import FlaskForm
from wtforms import SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import Length, Optional, ValidationError
from wtforms.widgets import Select

from marketplace.models import Batch, EntryKind, Maturity, Tier
from marketplace.models.enums import LabelledEnum
from marketplace.reference import reference
from marketplace.services.portal import _BoundedCache
from marketplace.services.search import EntryFilters

MAX_QUERY_LENGTH = 100
#: Rendered selects kept per process (each: one field, its choices, value and attributes).
RENDERED_SELECTS = 512


class RememberedSelect(Select):
    """WTForms' ``<select>`` widget, each distinct rendering kept (bounded, least recently used).

    The filter forms render the same few hundred options (reference data, published batches)
    on every list and search request; WTForms escapes and formats each option every time. The
    key holds everything the output depends on (id, name, value, attributes, flags, choices), so
    a remembered rendering is exactly what WTForms would produce.
    """

    def __init__(self) -> None:
        super().__init__()
        self._rendered = _BoundedCache(RENDERED_SELECTS)

    def __call__(self, field, **kwargs):
        flags = getattr(field, "flags", None)
        key = (
            type(field), field.id, field.name, repr(field.data),
            tuple(sorted((k, repr(v)) for k, v in kwargs.items())),
            tuple(bool(getattr(flags, k, False)) for k in self.validation_attrs),
            tuple((c.value, c.label, c.optgroup, repr(c.render_kw)) for c in field.choices or ()),
        )
        html = self._rendered.get(key)
        if html is None:
            html = super().__call__(field, **kwargs)
            self._rendered.put(key, html)
        return html


class StrictSelect(SelectField):
    """A select whose unknown values get a Chinese error."""

    widget = RememberedSelect()

    def pre_validate(self, form) -> None:
        if self.data not in {choice.value for choice in self.choices}:
            raise ValidationError(f"无效的{self.label.text}")


class ChoiceFilter(StrictSelect):
    """A filter select; ``""`` means "any"."""

    def __init__(self, label: str, any_label: str, **kwargs):
        kwargs.setdefault("default", "")
        super().__init__(label, **kwargs)
        self.any_label = any_label

    def set_options(self, options: Iterable[SelectChoice]) -> None:
        self.choices = [SelectChoice("", self.any_label), *options]

    @property
    def value(self) -> str | None:
        """The chosen value when it is valid, else None."""
        if self.errors:
            return None
        return self.data or None


def _enum_choices(any_label: str, enum: type[LabelledEnum]) -> list[SelectChoice]:
    return [SelectChoice("", any_label), *(SelectChoice(v, label) for v, label in enum.choices())]


class FilterForm(FlaskForm):
    """Filters shared by the opportunity list, the product list and the search page."""

    class Meta:
        csrf = False

    q = StringField(
        "关键词",
        validators=[
            Optional(),
            Length(max=MAX_QUERY_LENGTH, message=f"关键词不能超过{MAX_QUERY_LENGTH}个字"),
        ],
        filters=[lambda v: v.strip() if isinstance(v, str) else v],
    )
    batch = ChoiceFilter("批次", "全部批次")
    area = ChoiceFilter("应用领域", "全部领域")
    category = ChoiceFilter("细分领域", "全部细分领域")
    city = ChoiceFilter("地市", "全部地市")
    county = ChoiceFilter("区县", "全部区县")

    def __init__(self, formdata, batches: Iterable[Batch] = (), **kwargs):
        super().__init__(formdata, **kwargs)
        ref = reference()
        self.batch.set_options(SelectChoice(str(b.id), b.title) for b in batches)
        self.area.set_options(SelectChoice(a) for a in ref.area_names)
        self.category.set_options(
            SelectChoice(c, optgroup=area) for area, categories in ref.areas for c in categories
        )
        self.city.set_options(SelectChoice(c) for c in ref.cities)
        # The county list follows the city in the browser (app.js); without JS, after 筛选.
        self.city.render_kw = {"data-counties": json.dumps(ref.city_counties, ensure_ascii=False),
                               "data-county-target": self.county.id}
        # Counties of the chosen city; without a valid city any county is an error.
        self.county.set_options(SelectChoice(c) for c in ref.city_counties.get(self.city.data or "", ()))

    def keyword(self) -> str:
        """The search keywords, or "" when absent or invalid."""
        return "" if self.q.errors else (self.q.data or "")

    def filters(self) -> EntryFilters:
        """The valid filters; invalid ones (already reported as field errors) are dropped."""
        batch = self.batch.value
        return EntryFilters(
            batch_id=int(batch) if batch else None,
            area=self.area.value,
            category=self.category.value,
            city=self.city.value,
            county=self.county.value if self.city.value else None,
            **self._side_filters(),
        )

    def _side_filters(self) -> dict[str, str | None]:
        return {}


STATE_CHOICES = [SelectChoice("open", "征集中"), SelectChoice("closed", "已截止")]


class OpportunityFilterForm(FilterForm):
    tier = ChoiceFilter("场景层级", "全部层级", choices=_enum_choices("全部层级", Tier))
    state = ChoiceFilter("征集状态", "全部（征集中在前）", choices=[SelectChoice("", "全部（征集中在前）"),
                                                              *STATE_CHOICES])

    def _side_filters(self) -> dict[str, str | None]:
        return {"tier": self.tier.value, "state": self.state.value}


class ProductFilterForm(FilterForm):
    maturity = ChoiceFilter("成熟度", "全部成熟度", choices=_enum_choices("全部成熟度", Maturity))
    tag = ChoiceFilter("技术标签", "全部标签")

    def __init__(self, formdata, batches: Iterable[Batch] = (), **kwargs):
        super().__init__(formdata, batches, **kwargs)
        self.tag.set_options(SelectChoice(t) for t in reference().tags)

    def _side_filters(self) -> dict[str, str | None]:
        return {"maturity": self.maturity.value, "tag": self.tag.value}


SIDE_CHOICES = [
    SelectChoice("all", "全部"),
    SelectChoice("opportunities", "机会清单"),
    SelectChoice("products", "产品清单"),
]
SIDE_KINDS: dict[str, tuple[str, ...]] = {
    "all": (EntryKind.OPPORTUNITY, EntryKind.PRODUCT),
    "opportunities": (EntryKind.OPPORTUNITY,),
    "products": (EntryKind.PRODUCT,),
}


class SearchForm(ProductFilterForm):
    """Keyword search over both lists, with every filter of either side."""

    side = StrictSelect("搜索范围", choices=SIDE_CHOICES, default="all")
    tier = ChoiceFilter("场景层级", "全部层级", choices=_enum_choices("全部层级", Tier))

    def side_value(self) -> str:
        """The chosen side, ``"all"`` when it is missing or invalid."""
        return "all" if self.side.errors or self.side.data not in SIDE_KINDS else self.side.data

    def sides(self) -> tuple[str, ...]:
        """The lists to search."""
        return SIDE_KINDS[self.side_value()]

    def _side_filters(self) -> dict[str, str | None]:
        return {"tier": self.tier.value, **super()._side_filters()}

"""Filter forms of the matching pages.

They are GET forms bound to ``request.args`` with CSRF off (nothing changes state). Select
choices come from the enums and the reference data, so an unknown value gets a Chinese error
beside the field and is not used as a filter.
"""

from __future__ import annotations

from collections.abc import Iterable

from flask_wtf import FlaskForm
from wtforms import BooleanField, IntegerField, SelectField, StringField
from wtforms.validators import Length, NumberRange, Optional, ValidationError

from marketplace.models import EntryKind, Maturity
from marketplace.reference import reference
from marketplace.services.errors import ValidationFailed
from marketplace.services.matching import MAX_K, MAX_QUERY_CHARS


class ChoiceFilter(SelectField):
    """A filter select; ``""`` means "any", anything not offered is an error."""

    def __init__(self, label: str, any_label: str, **kwargs):
        kwargs.setdefault("default", "")
        super().__init__(label, **kwargs)
        self.any_label = any_label

    def set_options(self, options: Iterable[tuple[str, str]]) -> None:
        self.choices = [("", self.any_label), *options]

    def pre_validate(self, form) -> None:
        if self.data not in {value for value, _ in self.choices}:
            raise ValidationError(f"无效的{self.label.text}")

    @property
    def value(self) -> str | None:
        """The chosen value when it is valid, else ``None``."""
        return None if self.errors else (self.data or None)


class _FilterForm(FlaskForm):
    class Meta:
        csrf = False

    def filter_values(self) -> dict[str, str | None]:
        """The valid filter choices, by the service's parameter names."""
        return {name: self[name].value for name in self.FILTERS}

    def attach(self, exc: ValidationFailed) -> list[str]:
        """Show a service's field errors beside the fields; returns messages without a field."""
        unplaced = []
        for name, message in exc.errors.items():
            if name in self:
                self[name].errors = [*self[name].errors, message]
            else:
                unplaced.append(message)
        return unplaced


def _cities() -> list[tuple[str, str]]:
    return [(c, c) for c in reference().cities]


class ProductFilterForm(_FilterForm):
    """Filters on the candidate products of an opportunity."""

    FILTERS = ("region", "maturity", "tag")

    region = ChoiceFilter("地市", "全部地市")
    maturity = ChoiceFilter("成熟度", "全部成熟度")
    tag = ChoiceFilter("技术标签", "全部标签")

    def __init__(self, formdata, **kwargs):
        super().__init__(formdata, **kwargs)
        self.region.set_options(_cities())
        self.maturity.set_options(Maturity.choices())
        self.tag.set_options((t, t) for t in reference().tags)


class OpportunityFilterForm(_FilterForm):
    """Filters on the open opportunities for a product."""

    FILTERS = ("region", "category")

    region = ChoiceFilter("地市", "全部地市")
    category = ChoiceFilter("应用领域", "全部领域")
    include_closed = BooleanField("包含已截止的需求")

    def __init__(self, formdata, **kwargs):
        super().__init__(formdata, **kwargs)
        self.region.set_options(_cities())
        self.category.set_options((c, c) for c in reference().categories)


class WholeNumberField(IntegerField):
    """An integer field whose parse error is in Chinese."""

    def process_formdata(self, valuelist):
        if not valuelist or valuelist[0] in ("", None):
            return
        try:
            self.data = int(valuelist[0])
        except ValueError as exc:
            self.data = None
            raise ValueError("请输入整数") from exc


SIDE_CHOICES = [(EntryKind.PRODUCT.value, "找企业产品"), (EntryKind.OPPORTUNITY.value, "找场景需求")]


class MatchSearchForm(_FilterForm):
    """The organizer's free-text search 「找能做……的企业」."""

    FILTERS = ("region", "category", "maturity", "tag")

    q = StringField(
        "需求描述",
        validators=[
            Optional(),
            Length(max=MAX_QUERY_CHARS, message=f"检索内容不能超过{MAX_QUERY_CHARS}个字"),
        ],
        filters=[lambda v: v.strip() if isinstance(v, str) else v],
    )
    side = ChoiceFilter("检索对象", "找企业产品", default=EntryKind.PRODUCT.value)
    k = WholeNumberField(
        "返回条数",
        default=20,
        validators=[
            Optional(),
            NumberRange(min=1, max=MAX_K, message=f"返回条数应为 1 到 {MAX_K} 之间的整数"),
        ],
    )
    region = ChoiceFilter("地市", "全部地市")
    category = ChoiceFilter("应用领域", "全部领域")
    maturity = ChoiceFilter("成熟度（仅产品）", "全部成熟度")
    tag = ChoiceFilter("技术标签（仅产品）", "全部标签")
    include_closed = BooleanField("包含已截止的需求（仅场景需求）")

    def __init__(self, formdata, **kwargs):
        super().__init__(formdata, **kwargs)
        self.side.choices = SIDE_CHOICES
        self.region.set_options(_cities())
        self.category.set_options((c, c) for c in reference().categories)
        self.maturity.set_options(Maturity.choices())
        self.tag.set_options((t, t) for t in reference().tags)

    @property
    def submitted(self) -> bool:
        return bool(self.q.raw_data)

    @property
    def k_value(self) -> int:
        return self.k.data if isinstance(self.k.data, int) else 20

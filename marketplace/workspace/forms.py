"""Forms of the member workspace: opportunities, products and the organization profile.

The forms check each field (length, choices from the enums and the reference data, numbers,
dates); :mod:`marketplace.services.entries` then enforces the business rules.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from wtforms import (
    DateField,
    DecimalField,
    SelectField,
    SelectMultipleField,
    StringField,
    SubmitField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, NumberRange, Optional, ValidationError
from wtforms.widgets import CheckboxInput, ListWidget

from marketplace.auth.forms import PHONE, BaseForm, OrganizationForm, RegionMixin, choices_of
from marketplace.models import CooperationMode, Maturity, Tier
from marketplace.reference import reference
from marketplace.services.entries import (
    MAX_DESCRIPTION,
    MAX_PRODUCT_FIELDS,
    MAX_TAGS,
    MIN_DESCRIPTION,
    OPPORTUNITY_FIELDS,
    PRODUCT_FIELDS,
)

MAX_BUDGET = Decimal("9999999999")


class MultiCheckboxField(SelectMultipleField):
    """A multi-select rendered as checkboxes."""

    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class MoneyField(DecimalField):
    """万元 amounts: rejects NaN, infinities and absurd magnitudes while parsing."""

    def process_formdata(self, valuelist):
        if not valuelist or not valuelist[0].strip():
            self.data = None
            return
        try:
            value = Decimal(valuelist[0].strip())
        except (InvalidOperation, ValueError) as exc:
            self.data = None
            raise ValueError("请输入数字") from exc
        if not value.is_finite() or abs(value) > MAX_BUDGET:
            self.data = None
            raise ValueError("请输入合理的金额")
        self.data = value


def category_choices(placeholder: str | None) -> list[SelectChoice]:
    """应用领域 grouped by area (``<optgroup>``)."""
    head = [SelectChoice("", placeholder)] if placeholder is not None else []
    return head + [
        SelectChoice(value, label, optgroup=area)
        for area, categories in reference().category_choices()
        for value, label in categories
    ]


def _budget(label: str) -> MoneyField:
    return MoneyField(
        label,
        places=None,
        validators=[Optional(), NumberRange(min=0, message="金额不能为负数")],
        render_kw={"min": 0, "step": "0.01", "inputmode": "decimal"},
    )


class EntryForm(RegionMixin, BaseForm):
    """Common behaviour: choices from the reference data and the dict for the service."""

    FIELDS: tuple[str, ...] = ()

    def entry_data(self) -> dict:
        """The submitted values keyed like ``services.entries.*_FIELDS``."""
        return {name: self._fields[name].data for name in self.FIELDS}


class OpportunityForm(EntryForm):
    FIELDS = OPPORTUNITY_FIELDS

    title = StringField(
        "标题",
        validators=[DataRequired("请填写标题"), Length(4, 120, message="标题应为4–120个字")],
    )
    description = TextAreaField(
        "需求描述",
        validators=[
            DataRequired("请填写需求描述"),
            Length(
                MIN_DESCRIPTION,
                MAX_DESCRIPTION,
                message=f"需求描述应为{MIN_DESCRIPTION}–{MAX_DESCRIPTION}个字",
            ),
        ],
        description="说明场景现状、痛点、期望的解决方案和应用条件",
        render_kw={"rows": 6},
    )
    field_category = SelectField(
        "应用领域",
        validators=[DataRequired("请选择应用领域")],
        invalid_choice_message="请选择有效的应用领域",
    )
    tier = SelectField(
        "场景层级",
        validators=[DataRequired("请选择场景层级")],
        invalid_choice_message="请选择有效的场景层级",
    )
    budget_min = _budget("预算下限（万元）")
    budget_max = _budget("预算上限（万元）")
    cooperation_modes = MultiCheckboxField(
        "合作方式",
        validators=[DataRequired("请至少选择一种合作方式")],
        invalid_choice_message="合作方式无效",
    )
    deadline = DateField(
        "答题截止日期",
        validators=[Optional()],
        invalid_value_message="日期格式无效，请按“年-月-日”填写",
    )
    contact_name = StringField(
        "联系人",
        validators=[DataRequired("请填写联系人"), Length(max=50, message="联系人不能超过50个字")],
    )
    contact_phone = StringField("联系电话", validators=[DataRequired("请填写联系电话"), PHONE])
    submit = SubmitField("保存")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.field_category.choices = category_choices("请选择应用领域")
        self.tier.choices = choices_of(Tier.choices(), "请选择场景层级")
        self.cooperation_modes.choices = choices_of(CooperationMode.choices())
        self.init_region_choices()

    def validate_budget_max(self, field) -> None:
        low, high = self.budget_min.data, field.data
        if low is not None and high is not None and low > high:
            raise ValidationError("预算上限不能低于预算下限")


class ProductForm(EntryForm):
    FIELDS = PRODUCT_FIELDS

    name = StringField(
        "产品名称",
        validators=[DataRequired("请填写产品名称"), Length(2, 120, message="产品名称应为2–120个字")],
    )
    description = TextAreaField(
        "产品介绍",
        validators=[
            DataRequired("请填写产品介绍"),
            Length(
                MIN_DESCRIPTION,
                MAX_DESCRIPTION,
                message=f"产品介绍应为{MIN_DESCRIPTION}–{MAX_DESCRIPTION}个字",
            ),
        ],
        description="说明产品的功能、技术路线、部署方式和优势",
        render_kw={"rows": 6},
    )
    #: Checkboxes grouped by area, with a keyword filter (templates/workspace/_macros.html).
    fields = MultiCheckboxField(
        "应用领域",
        validators=[DataRequired("请至少选择一个应用领域")],
        invalid_choice_message="应用领域无效",
        description=f"可选1–{MAX_PRODUCT_FIELDS}个，按领域分组勾选",
    )
    tags = MultiCheckboxField(
        "技术标签",
        invalid_choice_message="技术标签无效",
        description=f"最多{MAX_TAGS}个",
    )
    maturity = SelectField(
        "成熟度",
        validators=[DataRequired("请选择成熟度")],
        invalid_choice_message="请选择有效的成熟度",
    )
    cases = TextAreaField(
        "典型案例",
        validators=[Length(max=MAX_DESCRIPTION, message=f"典型案例不能超过{MAX_DESCRIPTION}个字")],
        render_kw={"rows": 4},
    )
    submit = SubmitField("保存")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields.choices = category_choices(None)
        self.tags.choices = choices_of((t, t) for t in reference().tags)
        self.maturity.choices = choices_of(Maturity.choices(), "请选择成熟度")
        self.init_region_choices()

    def validate_fields(self, field) -> None:
        if len(set(field.data or [])) > MAX_PRODUCT_FIELDS:
            raise ValidationError(f"应用领域最多选择{MAX_PRODUCT_FIELDS}个")

    def validate_tags(self, field) -> None:
        if len(set(field.data or [])) > MAX_TAGS:
            raise ValidationError(f"技术标签最多选择{MAX_TAGS}个")


class ProfileForm(OrganizationForm):
    """The workspace profile: the organization kind is fixed after registration."""

    kind = None
    submit = SubmitField("保存单位信息")

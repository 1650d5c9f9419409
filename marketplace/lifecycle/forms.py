"""Forms of the lifecycle domain (stages, signings, labs). Fields are checked here; the rules
(dates, who may, which firms and products) live in ``services/lifecycle.py`` and ``services/labs.py``."""

from __future__ import annotations

from flask_wtf.file import FileField
from wtforms import DateField, SelectField, SelectMultipleField, StringField, SubmitField, TextAreaField
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional

from marketplace.auth.forms import BaseForm, choices_of
from marketplace.models import LabKind, LabService
from marketplace.reference import reference
from marketplace.services.labs import MAX_INTRO, MAX_NAME
from marketplace.services.lifecycle import MAX_NOTE, MAX_TITLE
from marketplace.workspace.forms import MoneyField, MultiCheckboxField

DATE_MESSAGE = "日期格式无效，请按“年-月-日”填写"


def optional_int(value):
    """Select values: "" (nothing chosen) becomes None, anything else an int (or a form error)."""
    if value in (None, ""):
        return None
    return int(value)


def _day(label: str) -> DateField:
    # InputRequired (not DataRequired): a malformed date keeps its own message beside the field.
    return DateField(
        label,
        validators=[InputRequired(f"请填写{label}")],
        invalid_value_message=DATE_MESSAGE,
        description="北京时间，不能晚于今天",
    )


class IdField(SelectField):
    """A select of ids ("" is none) whose malformed value gets the field's Chinese message."""

    def process_formdata(self, valuelist):
        if not valuelist:
            return
        try:
            self.data = optional_int(valuelist[0])
        except ValueError as exc:
            self.data = None
            raise ValueError(self.invalid_choice_message) from exc


class IdsField(SelectMultipleField):
    """A multi-select of ids whose malformed values get the field's Chinese message."""

    def process_formdata(self, valuelist):
        try:
            self.data = [int(x) for x in valuelist]
        except ValueError as exc:
            self.data = []
            raise ValueError(self.invalid_choice_message) from exc


class StageForm(BaseForm):
    """One lifecycle step: its date, a note and optional evidence."""

    happened_on = _day("日期")
    note = TextAreaField(
        "说明",
        validators=[Optional(), Length(max=MAX_NOTE, message=f"说明不能超过{MAX_NOTE}个字")],
        description="仅发布单位、实施单位和组织方可见",
        render_kw={"rows": 2},
    )
    evidence = FileField("证明材料（PDF 或图片，选填）")


class SigningForm(BaseForm):
    title = StringField(
        "签约项目名称",
        validators=[
            DataRequired("请填写签约项目名称"),
            Length(2, MAX_TITLE, message=f"签约项目名称应为2–{MAX_TITLE}个字"),
        ],
        description="公开显示",
        render_kw={"placeholder": "例如：修水县小型水库雨水情测报与安全监测设施建设项目"},
    )
    signed_on = _day("签约日期")
    amount_wan = MoneyField(
        "签约金额（万元，选填）",
        places=None,
        validators=[Optional(), NumberRange(min=0, message="签约金额不能为负数")],
        render_kw={"min": 0, "step": "0.01", "inputmode": "decimal"},
    )
    event_id = IdField(
        "签约活动（选填）",
        coerce=optional_int,
        validators=[Optional()],
        invalid_choice_message="请选择有效的活动",
    )
    consortium_id = IdField(
        "联合体（选填）",
        coerce=optional_int,
        validators=[Optional()],
        invalid_choice_message="请选择有效的联合体",
        description="选择已选定答题的联合体，其成员自动列为签约企业",
    )
    organization_ids = IdsField(
        "签约企业",
        coerce=int,
        validators=[Optional()],
        invalid_choice_message="请选择已认证的企业",
        description="可多选（按住 Ctrl 或 ⌘ 点选）",
    )
    product_ids = IdsField(
        "签约产品（选填）",
        coerce=int,
        validators=[Optional()],
        invalid_choice_message="请选择已发布的产品",
        description="只能选择签约企业的已发布产品",
    )
    note = TextAreaField(
        "备注（选填）",
        validators=[
            Optional(),
            Length(max=MAX_NOTE, message=f"备注不能超过{MAX_NOTE}个字"),
        ],
        description="仅发布单位、签约企业和组织方可见",
        render_kw={"rows": 3},
    )
    submit = SubmitField("保存签约")

    def set_choices(self, events, consortia, parties, products) -> None:
        self.event_id.choices = choices_of(
            ((e.id, f"{e.title}（{e.kind_label}）") for e in events), "不关联活动"
        )
        self.consortium_id.choices = choices_of(((c.id, c.name) for c in consortia), "不选择联合体")
        self.organization_ids.choices = [(o.id, o.name) for o in parties]
        self.product_ids.choices = [(p.id, f"{p.name}（{p.owner.name}）") for p in products]
        #: owner of each product, for the template's data-owner attributes (static/lifecycle.js)
        self.product_owners = {p.id: p.owner_id for p in products}

    def signing_data(self) -> dict:
        return {
            "title": self.title.data,
            "signed_on": self.signed_on.data,
            "amount_wan": self.amount_wan.data,
            "event_id": self.event_id.data,
            "consortium_id": self.consortium_id.data,
            "organization_ids": self.organization_ids.data or [],
            "product_ids": self.product_ids.data or [],
            "note": self.note.data,
        }


class LabLinkForm(BaseForm):
    lab_id = IdField(
        "实验室",
        coerce=optional_int,
        validators=[InputRequired("请选择实验室")],
        invalid_choice_message="请选择运行中的实验室",
    )
    service = SelectField(
        "服务内容", validators=[DataRequired("请选择服务内容")], invalid_choice_message="请选择服务内容"
    )
    linked_on = _day("对接日期")
    note = TextAreaField(
        "说明（选填）",
        validators=[
            Optional(),
            Length(max=MAX_NOTE, message=f"说明不能超过{MAX_NOTE}个字"),
        ],
        description="仅发布单位、实施单位和组织方可见",
        render_kw={"rows": 2},
    )
    submit = SubmitField("对接实验室")

    def set_choices(self, labs) -> None:
        self.lab_id.choices = choices_of(
            ((lab.id, f"{lab.name}（{lab.kind_label}）") for lab in labs), "请选择实验室"
        )
        self.service.choices = choices_of(LabService.choices(), "请选择服务内容")

    def link_data(self) -> dict:
        return {
            "lab_id": self.lab_id.data,
            "service": self.service.data,
            "linked_on": self.linked_on.data,
            "note": self.note.data,
        }


class LabForm(BaseForm):
    organization_id = IdField(
        "依托单位",
        coerce=optional_int,
        validators=[InputRequired("请选择依托单位")],
        invalid_choice_message="请选择已认证的单位",
    )
    kind = SelectField(
        "实验室类型", validators=[DataRequired("请选择实验室类型")], invalid_choice_message="请选择实验室类型"
    )
    name = StringField(
        "实验室名称",
        validators=[
            DataRequired("请填写实验室名称"),
            Length(4, MAX_NAME, message=f"实验室名称应为4–{MAX_NAME}个字"),
        ],
        render_kw={"placeholder": "例如：江西省智能制造创新应用实验室"},
    )
    designated_on = _day("认定日期")
    focus_fields = MultiCheckboxField(
        "聚焦领域", validators=[DataRequired("请至少选择一个聚焦领域")], invalid_choice_message="聚焦领域无效"
    )
    services = MultiCheckboxField(
        "服务内容", validators=[DataRequired("请至少选择一项服务")], invalid_choice_message="服务内容无效"
    )
    intro = TextAreaField(
        "实验室简介",
        validators=[
            Optional(),
            Length(max=MAX_INTRO, message=f"简介不能超过{MAX_INTRO}个字"),
        ],
        render_kw={"rows": 5},
    )
    submit = SubmitField("保存")

    def set_choices(self, organizations, editing: bool) -> None:
        self.organization_id.choices = choices_of(
            ((o.id, f"{o.name}（{o.kind_label}）") for o in organizations), "请选择依托单位"
        )
        self.kind.choices = choices_of(LabKind.choices(), "请选择实验室类型")
        self.focus_fields.choices = [(c, c) for c in reference().categories]
        self.services.choices = LabService.choices()
        if editing:
            # The organisation, kind and date of a designation do not change.
            for name in ("organization_id", "kind", "designated_on"):
                delattr(self, name)

    def lab_data(self) -> dict:
        data = {
            "name": self.name.data,
            "focus_fields": self.focus_fields.data or [],
            "services": self.services.data or [],
            "intro": self.intro.data,
        }
        for name in ("organization_id", "kind", "designated_on"):
            if name in self._fields:
                data[name] = self._fields[name].data
        return data


class LabFilterForm(BaseForm):
    """The public directory's filters (GET, no CSRF)."""

    class Meta:
        csrf = False

    kind = SelectField("类型", validators=[Optional()], invalid_choice_message="类型无效")
    field = SelectField("聚焦领域", validators=[Optional()], invalid_choice_message="领域无效")
    city = SelectField("所在设区市", validators=[Optional()], invalid_choice_message="地区无效")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.kind.choices = choices_of(LabKind.choices(), "全部类型")
        self.field.choices = choices_of(((c, c) for c in reference().categories), "全部领域")
        self.city.choices = choices_of(((c, c) for c in reference().cities), "全部地区")

    def value(self, name: str) -> str | None:
        field = self._fields[name]
        return field.data if field.data and not field.errors else None

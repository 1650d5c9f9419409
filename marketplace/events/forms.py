"""Forms of the events domain. Fields are checked here; the rules live in the services."""

from __future__ import annotations

from wtforms import (
    DateField,
    FieldList,
    Form,
    FormField,
    IntegerField,
    SelectField,
    SelectMultipleField,
    StringField,
    SubmitField,
    TextAreaField,
    TimeField,
)
from wtforms.i18n import get_translations
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional, ValidationError

from marketplace.auth.forms import BaseForm, choices_of
from marketplace.models import DeclineReason, EventKind, Product
from marketplace.services.events import (
    MAX_CAPACITY,
    MAX_DESCRIPTION,
    MAX_NOTE,
    MAX_REASON,
    MAX_TITLE,
    MAX_URL,
    MAX_VENUE,
)
from marketplace.services.meetings import (
    MAX_BREAKS,
    MAX_CAP,
    MAX_SESSIONS,
    MAX_SLOT_MINUTES,
    MAX_TABLES,
    MIN_SLOT_MINUTES,
)
from marketplace.services.shortlists import MAX_TARGET
from marketplace.workspace.forms import MultiCheckboxField


def _no_nul(form, field):
    if field.data and isinstance(field.data, str) and "\x00" in field.data:
        raise ValidationError("包含无效字符")


class EventForm(BaseForm):
    kind = SelectField("活动类型", validators=[DataRequired("请选择活动类型")],
                       invalid_choice_message="请选择活动类型")
    title = StringField("活动名称", validators=[
        DataRequired("请填写活动名称"),
        Length(2, MAX_TITLE, message=f"活动名称应为2–{MAX_TITLE}个字"),
        _no_nul,
    ], render_kw={"placeholder": "例如：2026年智慧交通场景沙龙（南昌站）"})
    day = DateField("活动日期", validators=[DataRequired("请填写活动日期")], description="北京时间")
    start_time = TimeField("开始时间", validators=[DataRequired("请填写开始时间")])
    end_time = TimeField("结束时间（选填）", validators=[Optional()])
    venue = StringField("举办地点", validators=[
        Optional(), Length(max=MAX_VENUE, message=f"举办地点不能超过{MAX_VENUE}个字"), _no_nul,
    ], description="线下地点与线上链接至少填写一项")
    online_url = StringField("线上链接（选填）", validators=[
        Optional(), Length(max=MAX_URL, message=f"链接不能超过{MAX_URL}个字符"), _no_nul,
    ], render_kw={"placeholder": "https://"}, description="只接受 http:// 或 https:// 链接")
    capacity = IntegerField("名额（家）", validators=[
        InputRequired("请填写名额"), NumberRange(1, MAX_CAPACITY, message=f"名额应为1–{MAX_CAPACITY}"),
    ], render_kw={"min": 1, "inputmode": "numeric"}, description="按已确认报名的企业数计算")
    registration_deadline = DateField("报名截止日期", validators=[DataRequired("请填写报名截止日期")],
                                      description="当天 23:59（北京时间）截止")
    description = TextAreaField("活动介绍", validators=[
        Optional(), Length(max=MAX_DESCRIPTION, message=f"活动介绍不能超过{MAX_DESCRIPTION}个字"), _no_nul,
    ], render_kw={"rows": 6})
    submit = SubmitField("保存")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.kind.choices = choices_of(EventKind.choices(), "请选择活动类型")

    def event_data(self) -> dict:
        return {
            "kind": self.kind.data, "title": self.title.data, "day": self.day.data,
            "start_time": self.start_time.data, "end_time": self.end_time.data, "venue": self.venue.data,
            "online_url": self.online_url.data, "capacity": self.capacity.data,
            "registration_deadline": self.registration_deadline.data, "description": self.description.data,
        }


class ReasonForm(BaseForm):
    """A workflow step with an optional (or, for some steps, required) reason."""

    reason = TextAreaField("原因", validators=[
        Optional(), Length(max=MAX_REASON, message=f"原因不能超过{MAX_REASON}个字"), _no_nul,
    ], render_kw={"rows": 2})


class RegistrationForm(BaseForm):
    product_ids = MultiCheckboxField("携带参展的产品（选填）", coerce=int, validators=[Optional()],
                                     invalid_choice_message="只能选择本单位已发布的产品")
    note = TextAreaField("报名说明（选填）", validators=[
        Optional(), Length(max=MAX_NOTE, message=f"报名说明不能超过{MAX_NOTE}个字"), _no_nul,
    ], render_kw={"rows": 3, "placeholder": "例如：拟派2人参加，希望与交通类需求单位对接"})
    submit = SubmitField("提交报名")

    def set_products(self, products: list[Product]) -> None:
        self.product_ids.choices = [(p.id, p.name) for p in products]


class AddNeedForm(BaseForm):
    opportunity_id = IntegerField("需求", validators=[InputRequired("请选择需求"),
                                                    NumberRange(1, 2**31 - 1, message="需求无效")])


class AddBatchForm(BaseForm):
    batch_id = SelectField("机会清单批次", coerce=int, validators=[DataRequired("请选择批次")],
                           invalid_choice_message="请选择机会清单批次")

    def set_batches(self, batches) -> None:
        self.batch_id.choices = [(0, "请选择批次")] + [(b.id, b.title) for b in batches]


class ShortlistSettingsForm(BaseForm):
    target_size = IntegerField("目标家数", validators=[
        InputRequired("请填写目标家数"), NumberRange(1, MAX_TARGET, message=f"目标家数应为1–{MAX_TARGET}"),
    ], render_kw={"min": 1, "max": MAX_TARGET})
    note = TextAreaField("名单说明（选填）", validators=[
        Optional(), Length(max=2000, message="名单说明不能超过2000个字"), _no_nul,
    ], render_kw={"rows": 2})


class AddFirmForm(BaseForm):
    organization = StringField("单位名称", validators=[
        DataRequired("请输入单位名称"), Length(max=100, message="单位名称过长"), _no_nul,
    ], render_kw={"list": "firm-names", "autocomplete": "off", "placeholder": "输入单位全称或关键字"})
    reason = StringField("加入理由（选填）", validators=[
        Optional(), Length(max=MAX_REASON, message=f"理由不能超过{MAX_REASON}个字"), _no_nul,
    ])


class AddProductForm(BaseForm):
    product = StringField("产品名称或编号", validators=[
        DataRequired("请输入产品名称或编号"), Length(max=120, message="产品名称过长"), _no_nul,
    ], description="输入完整名称、名称中的关键字，或产品详情页地址中的编号（/products/123 中的 123）")


class EntryNoteForm(BaseForm):
    note = StringField("备注", validators=[
        Optional(), Length(max=MAX_NOTE, message=f"备注不能超过{MAX_NOTE}个字"), _no_nul,
    ])


class MoveForm(BaseForm):
    to_rank = IntegerField("位置", validators=[InputRequired("请填写位置"),
                                             NumberRange(1, 10_000, message="位置无效")])


class InviteForm(BaseForm):
    entry_ids = SelectMultipleField("选择企业", coerce=int, validators=[Optional()],
                                    invalid_choice_message="只能邀请本名单中的企业")

    def set_entries(self, entries) -> None:
        self.entry_ids.choices = [(e.id, e.organization.name) for e in entries]


class AnswerForm(BaseForm):
    reason = SelectField("婉拒原因", validators=[Optional()], invalid_choice_message="请选择婉拒原因")
    detail = StringField("说明", validators=[
        Optional(), Length(max=MAX_REASON, message=f"说明不能超过{MAX_REASON}个字"), _no_nul,
    ], render_kw={"placeholder": "选择「其他」时必填"})

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.reason.choices = choices_of(DeclineReason.choices(), "请选择原因")


# ---------------------------------------------------------------- 1:1 meetings


class PeriodForm(Form):
    """One session (场次) or break (茶歇) row of the plan, in Beijing time; a blank row is ignored."""

    name = StringField("名称", validators=[Optional(), Length(max=20, message="名称不能超过20个字"), _no_nul])
    day = DateField("日期", validators=[Optional()])
    start = TimeField("开始", validators=[Optional()])
    end = TimeField("结束", validators=[Optional()])

    class Meta:
        def get_translations(self, form):
            return get_translations(["zh"])


class MeetingPlanForm(BaseForm):
    sessions = FieldList(FormField(PeriodForm), min_entries=MAX_SESSIONS, max_entries=MAX_SESSIONS)
    breaks = FieldList(FormField(PeriodForm), min_entries=MAX_BREAKS, max_entries=MAX_BREAKS)
    slot_minutes = IntegerField("每场洽谈时长（分钟）", validators=[
        InputRequired("请填写每场洽谈时长"),
        NumberRange(MIN_SLOT_MINUTES, MAX_SLOT_MINUTES,
                    message=f"每场洽谈时长应为{MIN_SLOT_MINUTES}–{MAX_SLOT_MINUTES}分钟"),
    ], render_kw={"min": MIN_SLOT_MINUTES, "max": MAX_SLOT_MINUTES})
    tables = IntegerField("洽谈桌数", validators=[
        InputRequired("请填写洽谈桌数"), NumberRange(1, MAX_TABLES, message=f"洽谈桌数应为1–{MAX_TABLES}"),
    ], render_kw={"min": 1, "max": MAX_TABLES})
    max_per_firm = IntegerField("每家企业最多洽谈（场）", validators=[
        InputRequired("请填写每家企业的洽谈上限"), NumberRange(1, MAX_CAP, message=f"上限应为1–{MAX_CAP}"),
    ], render_kw={"min": 1, "max": MAX_CAP})
    max_per_need = IntegerField("每项需求最多洽谈（场）", validators=[
        InputRequired("请填写每项需求的洽谈上限"), NumberRange(1, MAX_CAP, message=f"上限应为1–{MAX_CAP}"),
    ], render_kw={"min": 1, "max": MAX_CAP})
    submit = SubmitField("保存洽谈安排")

    def plan_data(self) -> dict:
        return {
            "sessions": [row.data for row in self.sessions], "breaks": [row.data for row in self.breaks],
            "slot_minutes": self.slot_minutes.data, "tables": self.tables.data,
            "max_per_firm": self.max_per_firm.data, "max_per_need": self.max_per_need.data,
        }

    def attach_plan_errors(self, errors: dict[str, str]) -> None:
        """Service keys such as ``sessions-0-end`` go beside that row's field."""
        rest = {}
        for key, message in errors.items():
            parts = key.split("-")
            if len(parts) == 3 and parts[0] in ("sessions", "breaks") and parts[1].isdigit():
                rows = getattr(self, parts[0])
                if int(parts[1]) < len(rows) and parts[2] in rows[int(parts[1])].form._fields:
                    subfield = rows[int(parts[1])].form[parts[2]]
                    subfield.errors = [*subfield.errors, message]
                    continue
            rest[key] = message
        self.attach_errors({k: v for k, v in rest.items() if k not in ("sessions", "breaks")})
        for key in ("sessions", "breaks"):
            if key in rest:
                self.form_errors.append(rest[key])


class PlaceForm(BaseForm):
    """A slot (its start, naive-UTC ISO) and a table; the scheduler checks both."""

    slot = StringField("时段", validators=[DataRequired("请选择洽谈时段"), Length(max=40, message="时段无效"),
                                         _no_nul])
    table = IntegerField("洽谈桌", validators=[InputRequired("请选择洽谈桌"),
                                            NumberRange(1, 10_000, message="洽谈桌无效")])


class AddMeetingForm(PlaceForm):
    entry_id = IntegerField("企业与需求", validators=[InputRequired("请选择企业与需求"),
                                                  NumberRange(1, 2**31 - 1, message="请选择企业与需求")])
    note = StringField("备注（选填）", validators=[
        Optional(), Length(max=MAX_NOTE, message=f"备注不能超过{MAX_NOTE}个字"), _no_nul,
    ])


class SwapForm(BaseForm):
    other = IntegerField("交换对象", validators=[InputRequired("请选择要交换的洽谈"),
                                             NumberRange(1, 2**31 - 1, message="请选择要交换的洽谈")])

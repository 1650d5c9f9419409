"""Forms of 企业答题 and 联合体. Fields are checked here; the rules live in the service."""

from __future__ import annotations

from flask_wtf.file import FileField
from wtforms import BooleanField, SelectField, StringField, SubmitField, TextAreaField
from wtforms.validators import DataRequired, Length, NumberRange, Optional

from marketplace.auth.forms import PHONE, BaseForm, choices_of
from marketplace.models import ConsortiumRole, Product
from marketplace.services.responses import MAX_COMMENT, MAX_PLAN, MAX_SUMMARY, MIN_SUMMARY
from marketplace.workspace.forms import MoneyField, MultiCheckboxField


class ResponseForm(BaseForm):
    summary = TextAreaField(
        "方案摘要",
        validators=[
            DataRequired("请填写方案摘要"),
            Length(MIN_SUMMARY, MAX_SUMMARY, message=f"方案摘要应为{MIN_SUMMARY}–{MAX_SUMMARY}个字"),
        ],
        description="说明针对该场景需求的解决思路、核心功能、技术路线和预期成效",
        render_kw={"rows": 7},
    )
    product_ids = MultiCheckboxField(
        "使用的产品",
        coerce=int,
        validators=[DataRequired("请至少选择一个已发布的产品")],
        invalid_choice_message="只能选择本单位（或联合体成员）已发布的产品",
    )
    delivery_plan = TextAreaField(
        "实施计划与周期",
        validators=[Optional(), Length(max=MAX_PLAN, message=f"实施计划不能超过{MAX_PLAN}个字")],
        description="例如：第1–2月完成调研与方案深化，第3–5月部署试点，第6月验收",
        render_kw={"rows": 4},
    )
    quote = MoneyField(
        "报价（万元，选填）",
        places=None,
        validators=[Optional(), NumberRange(min=0, message="报价不能为负数")],
        render_kw={"min": 0, "step": "0.01", "inputmode": "decimal"},
    )
    contact_name = StringField(
        "联系人", validators=[DataRequired("请填写联系人"), Length(max=50, message="联系人不能超过50个字")]
    )
    contact_phone = StringField("联系电话", validators=[DataRequired("请填写联系电话"), PHONE])
    attachment = FileField("方案附件（PDF，选填）")
    remove_attachment = BooleanField("删除已上传的附件")
    save = SubmitField("保存草稿")
    submit_response = SubmitField("提交答题")

    def set_products(self, products: list[Product]) -> None:
        self.product_ids.choices = [
            (p.id, f"{p.name}（{p.owner.name}）") for p in products
        ]

    def response_data(self) -> dict:
        return {
            "summary": self.summary.data,
            "delivery_plan": self.delivery_plan.data,
            "quote": self.quote.data,
            "contact_name": self.contact_name.data,
            "contact_phone": self.contact_phone.data,
            "product_ids": self.product_ids.data or [],
        }


class ReviewForm(BaseForm):
    """A workflow step with an optional comment (the firm sees it)."""

    comment = TextAreaField(
        "意见（答题单位可见）",
        validators=[Optional(), Length(max=MAX_COMMENT, message=f"意见不能超过{MAX_COMMENT}个字")],
        render_kw={"rows": 2},
    )


class ConsortiumForm(BaseForm):
    name = StringField(
        "联合体名称",
        validators=[DataRequired("请填写联合体名称"), Length(2, 100, message="联合体名称应为2–100个字")],
        render_kw={"placeholder": "例如：赣江新区智慧停车场景建设联合体"},
    )
    submit = SubmitField("创建联合体")


class InviteForm(BaseForm):
    organization = StringField(
        "受邀单位",
        validators=[DataRequired("请填写受邀单位"), Length(max=100, message="单位名称过长")],
        description="输入完整的单位名称或统一社会信用代码（须已通过认证）",
        render_kw={"list": "organization-names", "autocomplete": "off"},
    )
    role = SelectField("成员角色", validators=[DataRequired("请选择成员角色")],
                       invalid_choice_message="请选择有效的成员角色")
    note = StringField(
        "分工说明（选填）", validators=[Optional(), Length(max=200, message="说明不能超过200个字")]
    )
    submit = SubmitField("发送邀请")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.role.choices = choices_of(
            [(r.value, r.label) for r in ConsortiumRole if r != ConsortiumRole.LEAD], "请选择角色"
        )

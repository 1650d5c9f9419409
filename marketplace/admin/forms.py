"""Forms of the organizer back office. Error messages are Chinese and shown beside the fields."""

from __future__ import annotations

from collections.abc import Iterable

from flask_wtf import FlaskForm
from wtforms import (
    EmailField,
    PasswordField,
    RadioField,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Email, EqualTo, Length, Optional, Regexp, ValidationError

from marketplace.models import EntryKind, OrgKind, Role
from marketplace.passwords import MAX_LENGTH as MAX_PASSWORD_LENGTH
from marketplace.passwords import RULE_HINT

#: Object types an audit event may point at (the model's table name) and their labels.
AUDIT_OBJECT_TYPES: dict[str, str] = {
    "opportunity": "机会清单",
    "product": "产品清单",
    "batch": "批次",
    "organization": "单位",
    "user": "用户",
    "entry_revision": "修改记录",
}


def choices_of(pairs: Iterable[tuple[object, str]], placeholder: str | None = None) -> list[SelectChoice]:
    """Select options from (value, label) pairs, optionally after an empty "all" option."""
    head = [SelectChoice("", placeholder)] if placeholder is not None else []
    return head + [SelectChoice(value, label) for value, label in pairs]


def int_or_none(value: object) -> int | None:
    """Coerce a submitted id; anything that is not a positive integer becomes ``None``."""
    if isinstance(value, int):
        return value
    text = str(value or "").strip()
    return int(text) if text.isdigit() and len(text) <= 9 else None


class ApproveForm(FlaskForm):
    """Approve an entry into a batch.

    The choices shown are the open batches, but any id is accepted here: whether the batch
    is still open and of the right kind is a business rule the service checks and explains.
    """

    batch_id = SelectField(
        "入选批次", coerce=int_or_none, validate_choice=False,
        validators=[DataRequired(message="请选择入选批次")],
    )


class CommentForm(FlaskForm):
    """A return (退回) with the reviewer's comment, which the owner will read."""

    comment = TextAreaField(
        "退回意见",
        validators=[
            DataRequired(message="请填写退回意见"),
            Length(max=2000, message="退回意见不能超过2000字"),
        ],
        render_kw={"rows": 4, "placeholder": "请说明需要修改或补充的内容，提交单位将看到此意见"},
    )


class IdentityReturnForm(FlaskForm):
    """Returning a pending change of name / credit code, with the reason the organization reads."""

    comment = TextAreaField(
        "退回原因",
        validators=[
            DataRequired(message="请填写退回原因"),
            Length(max=400, message="原因不能超过400字"),
        ],
        render_kw={"rows": 2},
    )


class RevokeForm(FlaskForm):
    """Revoking an organization's verification needs a reason for the audit log."""

    comment = TextAreaField(
        "取消认证原因",
        validators=[
            DataRequired(message="请填写取消认证的原因"),
            Length(max=400, message="原因不能超过400字"),
        ],
        render_kw={"rows": 3},
    )


class BatchForm(FlaskForm):
    kind = SelectField(
        "清单类型", choices=choices_of(EntryKind.choices()), invalid_choice_message="请选择有效的清单类型",
        validators=[DataRequired(message="请选择清单类型")],
    )
    title = StringField(
        "批次名称",
        validators=[
            DataRequired(message="请填写批次名称"),
            Length(min=4, max=100, message="批次名称应为4–100个字"),
        ],
        render_kw={"placeholder": "如：2026年第三批机会清单"},
    )
    description = TextAreaField(
        "批次说明",
        validators=[Optional(), Length(max=2000, message="批次说明不能超过2000字")],
        render_kw={"rows": 4},
    )


class _FilterForm(FlaskForm):
    """GET filter forms bind to the query string and need no CSRF token."""

    class Meta:
        csrf = False


class OrganizationFilterForm(_FilterForm):
    verified = SelectField(
        "认证状态", default="", choices=choices_of([("0", "待认证"), ("1", "已认证")], "全部"),
        invalid_choice_message="认证状态无效",
    )
    kind = SelectField(
        "单位类型", default="", choices=choices_of(OrgKind.choices(), "全部类型"),
        invalid_choice_message="单位类型无效",
    )
    q = StringField(
        "关键词", validators=[Length(max=100, message="关键词不能超过100个字")],
        render_kw={"placeholder": "单位名称或信用代码"},
    )


class AuditFilterForm(_FilterForm):
    """Object type and action choices are set by the view (known values plus those in the log)."""

    object_type = SelectField("对象类型", default="", invalid_choice_message="对象类型无效")
    object_id = StringField(
        "对象编号",
        validators=[Optional(), Regexp(r"^\d{1,9}$", message="对象编号应为正整数")],
    )
    actor = StringField(
        "操作人邮箱",
        validators=[
            Optional(),
            Length(max=120, message="邮箱不能超过120个字符"),
            Email(message="请输入有效的邮箱地址", check_deliverability=False),
        ],
        render_kw={"list": "staff-emails", "placeholder": "操作人邮箱"},
    )
    action = SelectField("操作", default="", invalid_choice_message="操作类型无效")


class UserFilterForm(_FilterForm):
    role = SelectField(
        "角色", default="", choices=choices_of(Role.choices(), "全部角色"), invalid_choice_message="角色无效"
    )
    q = StringField(
        "关键词", validators=[Length(max=100, message="关键词不能超过100个字")],
        render_kw={"placeholder": "姓名或邮箱"},
    )


class StaffAccountForm(FlaskForm):
    """An admin creates an organizer account: an initial password, or an emailed link."""

    name = StringField(
        "姓名", validators=[DataRequired(message="请填写姓名"), Length(max=50, message="姓名不能超过50个字")]
    )
    email = EmailField(
        "登录邮箱",
        validators=[
            DataRequired(message="请填写登录邮箱"),
            Email(message="邮箱格式不正确", check_deliverability=False),
            Length(max=120, message="邮箱过长"),
        ],
    )
    phone = StringField(
        "手机",
        validators=[Optional(), Regexp(r"^[0-9+\-()（） ]{5,30}$", message="请输入有效的电话号码")],
    )
    password_mode = RadioField(
        "密码",
        choices=choices_of([("link", "发送设置密码的邮件（推荐）"), ("password", "由我设置初始密码")]),
        default="link",
        validators=[DataRequired(message="请选择密码的设置方式")],
        invalid_choice_message="请选择有效的方式",
    )
    password = PasswordField(
        "初始密码",
        validators=[Length(max=MAX_PASSWORD_LENGTH, message=f"密码不能超过{MAX_PASSWORD_LENGTH}位")],
        description=RULE_HINT + " 请通过安全渠道告知对方，并提醒其登录后修改。",
    )
    confirm = PasswordField(
        "确认初始密码", validators=[EqualTo("password", message="两次输入的密码不一致")]
    )

    def validate_password(self, field) -> None:
        if self.password_mode.data == "password" and not field.data:
            raise ValidationError("请设置初始密码，或改为发送设置密码的邮件")

    def initial_password(self) -> str | None:
        return self.password.data if self.password_mode.data == "password" else None


class BulkApproveForm(FlaskForm):
    """批量通过: the ticked entries of one kind and the open batch they go into.

    Ids and the batch are checked by ``services.review`` (state, kind, batch still open).
    """

    kind = SelectField(choices=choices_of(EntryKind.choices()), invalid_choice_message="清单类型无效")
    entries = SelectMultipleField("所选条目", validate_choice=False)
    batch_id = SelectField(
        "入选批次", coerce=int_or_none, validate_choice=False,
        validators=[DataRequired(message="请选择入选批次")],
    )

"""The form of the API token page (the revoke buttons use ``EmptyForm``)."""

from __future__ import annotations

from wtforms import DateField, StringField, SubmitField
from wtforms.validators import DataRequired, Length, Optional

from marketplace.auth.forms import BaseForm
from marketplace.services.api_tokens import MAX_LIFETIME_DAYS, MAX_NAME_LENGTH


class ApiTokenForm(BaseForm):
    name = StringField(
        "令牌名称",
        validators=[
            DataRequired("请填写令牌名称"),
            Length(max=MAX_NAME_LENGTH, message=f"令牌名称不能超过{MAX_NAME_LENGTH}个字"),
        ],
        description="说明用途，例如“数据对接脚本”",
    )
    expires_on = DateField(
        "有效期至",
        validators=[Optional()],
        description=f"北京时间当天 23:59 失效；最长 {MAX_LIFETIME_DAYS} 天；不填则一直有效，直到撤销",
    )
    submit = SubmitField("创建令牌")

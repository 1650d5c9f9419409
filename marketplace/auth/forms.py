"""Login and registration forms, plus the form helpers shared with the workspace.

Every form derives from :class:`BaseForm`, which switches WTForms' built-in messages to
Chinese. Choice fields get their choices from the enums and the reference data, so an unknown
value becomes a form error beside the field instead of reaching a service.
"""

from __future__ import annotations

from collections.abc import Iterable

from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import (
    BooleanField,
    EmailField,
    PasswordField,
    SelectField,
    StringField,
    SubmitField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.i18n import get_translations
from wtforms.validators import (
    DataRequired,
    Email,
    EqualTo,
    Length,
    Optional,
    Regexp,
    ValidationError,
)

from marketplace import credit_code
from marketplace.models import OrgKind
from marketplace.passwords import MAX_LENGTH as MAX_PASSWORD_LENGTH
from marketplace.passwords import RULE_HINT, password_problem
from marketplace.reference import reference
from marketplace.services.accounts import PHONE_PATTERN, OrganizationData, Upload, UserData

LICENSE_ACCEPT = ".pdf,.png,.jpg,.jpeg,application/pdf,image/png,image/jpeg"
PHONE = Regexp(PHONE_PATTERN, message="请输入有效的电话号码")


class BaseForm(FlaskForm):
    """A Flask-WTF form whose built-in WTForms messages are in Chinese."""

    class Meta:
        def get_translations(self, form):
            return get_translations(["zh"])

    def attach_errors(self, errors: dict[str, str], aliases: dict[str, str] | None = None) -> None:
        """Show a service's ``ValidationFailed.errors`` beside the matching fields.

        ``aliases`` maps a service key to a form field name when they differ. Keys without a
        field become form-level errors (``form.form_errors``).
        """
        aliases = aliases or {}
        for key, message in errors.items():
            field = self._fields.get(aliases.get(key, key))
            if field is not None:
                field.errors = [*field.errors, message]
            else:
                self.form_errors.append(message)


class EmptyForm(BaseForm):
    """CSRF protection for one-button POST actions."""


def choices_of(pairs: Iterable[tuple[str, str]], placeholder: str | None = None) -> list[SelectChoice]:
    head = [SelectChoice("", placeholder)] if placeholder is not None else []
    return head + [SelectChoice(value, label) for value, label in pairs]


def city_choices() -> list[SelectChoice]:
    return choices_of(((c, c) for c in reference().cities), "请选择设区市")


def county_choices() -> list[SelectChoice]:
    """Every county, grouped by city; ``data-city`` lets static/app.js filter them."""
    ref = reference()
    return [SelectChoice("", "全市（不限区县）")] + [
        SelectChoice(county, county, {"data-city": city}, optgroup=city)
        for city in ref.cities
        for county in ref.city_counties[city]
    ]


class RegionMixin:
    """所在设区市 + 区县; the server checks that the county belongs to the city."""

    region_city = SelectField(
        "所在设区市",
        validators=[DataRequired("请选择设区市")],
        invalid_choice_message="请选择有效的设区市",
        render_kw={"data-county-select": "region_county"},
    )
    region_county = SelectField("区县", default="", invalid_choice_message="请选择有效的区县")

    def init_region_choices(self) -> None:
        self.region_city.choices = city_choices()
        self.region_county.choices = county_choices()

    def validate_region_county(self, field) -> None:
        city = self.region_city.data
        if field.data and city in reference().city_counties:
            if field.data not in reference().city_counties[city]:
                raise ValidationError(f"所选区县不属于{city}")


class CreditCode:
    """WTForms validator for 统一社会信用代码; the Chinese reason shows beside the field."""

    def __call__(self, form, field) -> None:
        try:
            credit_code.validate(field.data or "")
        except credit_code.CreditCodeError as exc:
            raise ValidationError(str(exc)) from exc


class LoginForm(BaseForm):
    email = EmailField(
        "邮箱", validators=[DataRequired("请输入邮箱"), Length(max=120, message="邮箱过长")]
    )
    password = PasswordField(
        "密码", validators=[DataRequired("请输入密码"), Length(max=128, message="密码过长")]
    )
    remember = BooleanField("记住我")
    submit = SubmitField("登录")


class OrganizationForm(RegionMixin, BaseForm):
    """An organization's profile (registration and the workspace profile page)."""

    name = StringField(
        "单位名称",
        validators=[DataRequired("请填写单位名称"), Length(max=100, message="单位名称不能超过100个字")],
    )
    kind = SelectField(
        "单位类型",
        validators=[DataRequired("请选择单位类型")],
        invalid_choice_message="请选择有效的单位类型",
    )
    credit_code = StringField(
        "统一社会信用代码",
        validators=[DataRequired("请填写统一社会信用代码"), CreditCode()],
        description="18位，由登记管理部门核发，可在营业执照或登记证书上找到",
    )
    contact_name = StringField(
        "联系人",
        validators=[DataRequired("请填写联系人"), Length(max=50, message="联系人不能超过50个字")],
    )
    contact_phone = StringField("联系电话", validators=[DataRequired("请填写联系电话"), PHONE])
    contact_email = EmailField(
        "联系邮箱",
        validators=[Optional(), Email("邮箱格式不正确"), Length(max=120, message="邮箱过长")],
    )
    address = StringField("地址", validators=[Length(max=200, message="地址不能超过200个字")])
    intro = TextAreaField(
        "单位简介",
        validators=[Length(max=2000, message="单位简介不能超过2000个字")],
        render_kw={"rows": 4},
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "kind" in self._fields:
            self.kind.choices = choices_of(OrgKind.choices(), "请选择单位类型")
        self.init_region_choices()

    def organization_data(self, kind: str | None = None) -> OrganizationData:
        """The typed values for the accounts service; ``kind`` overrides a missing field."""
        return OrganizationData(
            name=self.name.data.strip(),
            kind=kind if kind is not None else self.kind.data,
            credit_code=self.credit_code.data,
            region_city=self.region_city.data,
            region_county=self.region_county.data or None,
            contact_name=self.contact_name.data.strip(),
            contact_phone=self.contact_phone.data.strip(),
            contact_email=(self.contact_email.data or "").strip(),
            address=(self.address.data or "").strip(),
            intro=(self.intro.data or "").strip(),
        )


class RegisterForm(OrganizationForm):
    """An organization registers together with its first user."""

    user_name = StringField(
        "姓名", validators=[DataRequired("请填写姓名"), Length(max=50, message="姓名不能超过50个字")]
    )
    email = EmailField(
        "登录邮箱",
        validators=[
            DataRequired("请填写登录邮箱"),
            Email("邮箱格式不正确"),
            Length(max=120, message="邮箱过长"),
        ],
    )
    phone = StringField("手机", validators=[DataRequired("请填写手机号码"), PHONE])
    password = PasswordField(
        "密码",
        validators=[
            DataRequired("请设置密码"),
            Length(max=MAX_PASSWORD_LENGTH, message=f"密码不能超过{MAX_PASSWORD_LENGTH}位"),
        ],
        description=RULE_HINT,
    )
    confirm = PasswordField(
        "确认密码",
        validators=[DataRequired("请再次输入密码"), EqualTo("password", "两次输入的密码不一致")],
    )
    license = FileField(
        "营业执照或统一社会信用代码证书（选填）",
        description=(
            "图片（PNG、JPEG）或 PDF，不超过 10 MB；组织方认证单位时核对。也可以注册后在单位信息页上传。"
            "如表单有误需重新提交，请重新选择文件。"
        ),
        render_kw={"accept": LICENSE_ACCEPT},
    )
    submit = SubmitField("提交注册")

    def license_upload(self) -> Upload | None:
        return file_upload(self.license)

    def validate_password(self, field) -> None:
        """The password rule (``marketplace.passwords``), with the reason beside the field."""
        problem = password_problem(
            field.data or "",
            email=self.email.data or "",
            name=self.user_name.data or "",
            organization=self.name.data or "",
            credit_code=self.credit_code.data or "",
        )
        if problem:
            raise ValidationError(problem)

    def user_data(self) -> UserData:
        return UserData(
            email=self.email.data,
            password=self.password.data,
            name=self.user_name.data.strip(),
            phone=self.phone.data.strip(),
        )



def file_upload(field: FileField) -> Upload | None:
    """The uploaded file of ``field`` for a service, or None when no file was chosen."""
    data = field.data
    if data is None or not getattr(data, "filename", None):
        return None
    return Upload(stream=data.stream, filename=data.filename)


def _new_password_field(label: str = "新密码") -> PasswordField:
    return PasswordField(
        label,
        validators=[
            DataRequired("请设置密码"),
            Length(max=MAX_PASSWORD_LENGTH, message=f"密码不能超过{MAX_PASSWORD_LENGTH}位"),
        ],
        description=RULE_HINT,
    )


def _confirm_field() -> PasswordField:
    return PasswordField(
        "确认新密码",
        validators=[DataRequired("请再次输入密码"), EqualTo("password", "两次输入的密码不一致")],
    )


class ChangePasswordForm(BaseForm):
    """The password rule itself is checked by the service (it knows the account's details)."""

    current_password = PasswordField(
        "当前密码",
        validators=[DataRequired("请输入当前密码"), Length(max=MAX_PASSWORD_LENGTH, message="密码过长")],
    )
    password = _new_password_field()
    confirm = _confirm_field()
    submit = SubmitField("修改密码")


def _strip(value: str | None) -> str | None:
    return value.strip() if isinstance(value, str) else value


class ForgotPasswordForm(BaseForm):
    email = EmailField(
        "登录邮箱",
        filters=[_strip],
        validators=[
            DataRequired("请输入登录邮箱"),
            Email("邮箱格式不正确"),
            Length(max=120, message="邮箱过长"),
        ],
    )
    submit = SubmitField("发送重置链接")


class ResetPasswordForm(BaseForm):
    password = _new_password_field()
    confirm = _confirm_field()
    submit = SubmitField("设置新密码")


class InviteForm(BaseForm):
    email = EmailField(
        "同事的邮箱",
        filters=[_strip],
        validators=[
            DataRequired("请输入邮箱"),
            Email("邮箱格式不正确"),
            Length(max=120, message="邮箱过长"),
        ],
        render_kw={"placeholder": "name@example.cn"},
    )
    submit = SubmitField("发送邀请")


class AcceptInvitationForm(BaseForm):
    """An invited colleague's account; the email is the invitation's."""

    name = StringField(
        "姓名", validators=[DataRequired("请填写姓名"), Length(max=50, message="姓名不能超过50个字")]
    )
    phone = StringField("手机", validators=[DataRequired("请填写手机号码"), PHONE])
    password = _new_password_field("密码")
    confirm = PasswordField(
        "确认密码",
        validators=[DataRequired("请再次输入密码"), EqualTo("password", "两次输入的密码不一致")],
    )
    submit = SubmitField("创建账号并加入")


class LicenseForm(BaseForm):
    license = FileField(
        "营业执照或统一社会信用代码证书",
        validators=[FileRequired("请选择要上传的文件")],
        description="图片（PNG、JPEG）或 PDF，不超过 10 MB，按文件内容识别类型。",
        render_kw={"accept": LICENSE_ACCEPT},
    )
    submit = SubmitField("上传")

    def license_upload(self) -> Upload | None:
        return file_upload(self.license)

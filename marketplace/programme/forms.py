"""Forms of the programme domain. Fields are checked here; the rules live in the services."""

from __future__ import annotations

from flask_wtf.file import FileField
from wtforms import IntegerField, SelectField, StringField, SubmitField, TextAreaField
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional, ValidationError

from marketplace import timeutil
from marketplace.auth.forms import BaseForm, RegionMixin, choices_of
from marketplace.models import DesignationKind, DesignationStatus
from marketplace.reference import reference
from marketplace.services.programme import MAX_DESCRIPTION, MAX_NAME, MAX_NOTE, MAX_TARGET, MIN_YEAR


def _no_nul(form, field):
    if field.data and isinstance(field.data, str) and "\x00" in field.data:
        raise ValidationError("包含无效字符")


def _year_field(label: str = "认定年度") -> IntegerField:
    return IntegerField(label, validators=[
        InputRequired("请填写年度"),
        NumberRange(MIN_YEAR, 2100, message=f"年度应为 {MIN_YEAR} 年以后的四位数字"),
    ], render_kw={"inputmode": "numeric", "min": MIN_YEAR})


class YearDefaultMixin:
    """A new form starts at this Beijing year."""

    def default_year(self) -> None:
        if self.year.data is None and not self.is_submitted():
            self.year.data = timeutil.local_today().year


def _description_field() -> TextAreaField:
    return TextAreaField("推荐理由 / 主要成效", validators=[
        Optional(), Length(max=MAX_DESCRIPTION, message=f"不能超过{MAX_DESCRIPTION}个字"), _no_nul,
    ], render_kw={"rows": 5}, description="公开：认定后显示在「成果」页面")


def _evidence_field() -> FileField:
    return FileField("证明材料（PDF 或图片，选填）",
                     description="仅组织方和相关单位可见；按文件内容识别类型")


class DesignationFilterForm(BaseForm):
    """The list's filters, bound to ``request.args`` (no CSRF on a GET)."""

    class Meta:
        csrf = False

    kind = SelectField("类别", default="")
    year = SelectField("年度", default="")
    status = SelectField("状态", default="")
    city = SelectField("地市", default="")

    def __init__(self, *args, years: list[int], **kwargs):
        super().__init__(*args, **kwargs)
        self.kind.choices = choices_of(DesignationKind.choices(), "全部类别")
        self.status.choices = choices_of(DesignationStatus.choices(), "全部状态")
        self.year.choices = choices_of(((str(y), f"{y}年") for y in years), "全部年度")
        self.city.choices = choices_of(((c, c) for c in reference().cities), "全部地市")

    def filters(self) -> dict:
        """Valid filters only: an unknown value is ignored, never an error page."""
        self.validate()
        values = {name: getattr(self, name).data if name not in self.errors else ""
                  for name in ("kind", "status", "city", "year")}
        values["year"] = int(values["year"]) if values["year"] else None
        return values


class ZoneForm(RegionMixin, YearDefaultMixin, BaseForm):
    year = _year_field()
    name = StringField("示范区名称", validators=[
        DataRequired("请填写示范区名称"), Length(2, MAX_NAME, message=f"名称应为2–{MAX_NAME}个字"), _no_nul,
    ], render_kw={"placeholder": "例如：南昌高新区数字经济应用场景示范区"},
        description="园区名称写在示范区名称中")
    need_ids = TextAreaField("示范区内的场景需求编号", validators=[Optional(), Length(max=2000), _no_nul],
                             render_kw={"rows": 2, "placeholder": "例如：12, 15, 18"},
                             description="已发布、位于该地区的需求编号（需求页面地址中的数字），以逗号或空格分隔")
    description = _description_field()
    evidence = _evidence_field()
    submit = SubmitField("提交推荐")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.init_region_choices()
        self.default_year()
        self.region_city.label.text = "所在设区市"
        self.region_county.label.text = "区县（选填）"


class ProjectForm(YearDefaultMixin, BaseForm):
    year = _year_field()
    opportunity_id = SelectField("示范推广阶段的场景需求", coerce=int,
                                 validators=[DataRequired("请选择场景需求")],
                                 invalid_choice_message="请选择示范推广阶段的场景需求",
                                 description="承建单位（选定答题单位、联合体成员和签约方）自动记入")
    description = _description_field()
    evidence = _evidence_field()
    submit = SubmitField("提交推荐")

    def __init__(self, *args, needs: list, **kwargs):
        super().__init__(*args, **kwargs)
        self.default_year()
        self.opportunity_id.choices = choices_of(
            [(0, "请选择场景需求")] + [(n.id, f"#{n.id} {n.title}（{n.publisher.name}）") for n in needs])


class FirmForm(YearDefaultMixin, BaseForm):
    year = _year_field()
    organization = StringField("企业名称或统一社会信用代码", validators=[
        DataRequired("请填写企业名称或统一社会信用代码"), Length(max=100), _no_nul,
    ], description="已认证的民营企业或国有企业")
    description = _description_field()
    evidence = _evidence_field()
    submit = SubmitField("提交推荐")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.default_year()


class SelfRecommendForm(YearDefaultMixin, BaseForm):
    year = _year_field("申报年度")
    description = TextAreaField("申报理由 / 成长情况", validators=[
        DataRequired("请填写申报理由"),
        Length(max=MAX_DESCRIPTION, message=f"不能超过{MAX_DESCRIPTION}个字"), _no_nul,
    ], render_kw={"rows": 6}, description="如营收增速、研发投入、场景落地情况；认定后公开")
    evidence = _evidence_field()
    submit = SubmitField("提交申报")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.default_year()


KIND_FORMS = {DesignationKind.ZONE: ZoneForm, DesignationKind.PROJECT: ProjectForm,
              DesignationKind.FIRM: FirmForm}


class DecisionForm(BaseForm):
    note = TextAreaField("评审意见", validators=[
        Optional(), Length(max=MAX_NOTE, message=f"不能超过{MAX_NOTE}个字"), _no_nul,
    ], render_kw={"rows": 3}, description="不予认定时必填；相关单位可见")
    evidence = _evidence_field()


class TargetForm(YearDefaultMixin, BaseForm):
    year = _year_field("年度")
    kind = SelectField("类别", validators=[DataRequired("请选择类别")], invalid_choice_message="请选择类别")
    scope = SelectField("口径", choices=choices_of([("annual", "当年新增"), ("cumulative", "截至当年累计")]),
                        default="annual", invalid_choice_message="请选择口径")
    target = IntegerField("目标（项/家）", validators=[
        InputRequired("请填写目标"), NumberRange(0, MAX_TARGET, message=f"目标应为 0–{MAX_TARGET}"),
    ], render_kw={"inputmode": "numeric", "min": 0})
    submit = SubmitField("保存目标")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.kind.choices = choices_of(DesignationKind.choices(), "请选择类别")
        self.default_year()

    def target_data(self) -> dict:
        return {"year": self.year.data, "kind": self.kind.data, "target": self.target.data,
                "cumulative": self.scope.data == "cumulative"}


class DashboardFilterForm(BaseForm):
    class Meta:
        csrf = False

    year = SelectField("年度", default="")
    city = SelectField("地市", default="")

    def __init__(self, *args, years: list[int], **kwargs):
        super().__init__(*args, **kwargs)
        self.year.choices = choices_of(((str(y), f"{y}年") for y in years), "全部年度")
        self.city.choices = choices_of(((c, c) for c in reference().cities), "全省")

    def values(self) -> tuple[int | None, str | None]:
        self.validate()
        year = int(self.year.data) if self.year.data and "year" not in self.errors else None
        city = self.city.data if self.city.data and "city" not in self.errors else None
        return year, city

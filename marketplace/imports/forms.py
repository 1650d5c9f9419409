"""The upload form of 批量导入. Fields are checked here; who may import what is the service's."""

from __future__ import annotations

from collections.abc import Iterable

from flask_wtf.file import FileField, FileRequired
from wtforms import SelectField, SubmitField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, ValidationError

from marketplace.auth.forms import BaseForm
from marketplace.models import Batch
from marketplace.services import spreadsheets

#: The batch kind (``EntryKind``) each importable list goes into.
BATCH_KIND = {spreadsheets.OPPORTUNITIES: "opportunity", spreadsheets.PRODUCTS: "product"}


class ImportForm(BaseForm):
    kind = SelectField(
        "清单类型",
        validators=[DataRequired("请选择要导入的清单类型")],
        invalid_choice_message="请选择可导入的清单类型",
        render_kw={"data-import-kind": ""},
    )
    batch = SelectField(
        "导入批次（选填）",
        default="",
        invalid_choice_message="请选择征集中的批次",
        description="选择征集中的批次时，条目直接作为「已入选待发布」导入该批次；不选则作为草稿导入",
        render_kw={"data-import-batch": ""},
    )
    file = FileField(
        "清单文件",
        validators=[FileRequired("请选择要导入的文件")],
        description="XLSX 或 CSV（UTF-8 或 GB18030 编码），请使用下方模板的列",
        render_kw={"accept": ".xlsx,.csv"},
    )
    submit = SubmitField("上传并预览")

    def __init__(self, kinds: Iterable[str], batches: Iterable[Batch] = (), **kwargs):
        super().__init__(**kwargs)
        self.kind.choices = [SelectChoice("", "请选择清单类型")] + [
            SelectChoice(k, spreadsheets.KIND_LABELS[k]) for k in kinds
        ]
        self._batches = {str(b.id): b for b in batches}
        self.batch.choices = [SelectChoice("", "不加入批次")] + [
            SelectChoice(str(b.id), b.title, {"data-kind": b.kind}, optgroup=b.kind_label)
            for b in self._batches.values()
        ]

    @property
    def offers_batches(self) -> bool:
        return bool(self._batches)

    def validate_batch(self, field) -> None:
        batch = self._batches.get(field.data or "")
        if batch is not None and BATCH_KIND.get(self.kind.data) != batch.kind:
            label = spreadsheets.KIND_LABELS.get(self.kind.data, "该清单")
            raise ValidationError(f"「{batch.title}」不是{label}的批次")

    def chosen_batch_id(self, value: str | None) -> bool:
        """Whether ``value`` is one of the offered batches (to preselect it)."""
        return (value or "") in self._batches

    def chosen_batch(self) -> Batch | None:
        return self._batches.get(self.batch.data or "")


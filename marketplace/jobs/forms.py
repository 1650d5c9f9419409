"""Forms of the job pages: the list filters (GET, no CSRF). One-button POSTs use ``EmptyForm``."""

from __future__ import annotations

from wtforms import SelectField

from marketplace.auth.forms import BaseForm, choices_of
from marketplace.models import JobStatus


class JobFilterForm(BaseForm):
    """Filters of 「后台任务」 bound to ``request.args``; the kinds are the ones the user can see."""

    class Meta:
        csrf = False

    kind = SelectField("任务类型", default="", validate_choice=True)
    status = SelectField(
        "状态", choices=choices_of(JobStatus.choices(), "全部状态"), default="", validate_choice=True
    )

    def __init__(self, *args, kinds: list[tuple[str, str]], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.kind.choices = choices_of(kinds, "全部类型")

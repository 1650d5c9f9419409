"""Forms of the notification pages."""

from __future__ import annotations

from wtforms import SelectMultipleField, SubmitField
from wtforms.widgets import CheckboxInput, ListWidget

from marketplace.auth.forms import BaseForm, choices_of
from marketplace.models import NotificationKind


class MultiCheckboxField(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class EmailPreferencesForm(BaseForm):
    """One checkbox per notification kind: send an email copy or not."""

    email_kinds = MultiCheckboxField(
        "邮件提醒", choices=choices_of(NotificationKind.choices()), validate_choice=True
    )
    submit = SubmitField("保存设置")

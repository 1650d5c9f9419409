"""Who may see the contact details (联系人, 电话, 邮箱) of an entry's publisher.

Public pages show every published entry to anyone, but the publisher's contact details only to
logged-in members of verified organizations, to the publisher's own members and to organizers
and admins (issue 12, item 10). Pages, the API and exports ask :func:`can_view_contact`.
"""

from __future__ import annotations

from typing import Any

#: What the pages say instead of the details.
HIDDEN_NOTE = "登录并通过单位认证后可查看联系方式"


def can_view_contact(user: Any, entry: Any = None) -> bool:
    """May ``user`` see the contact details of ``entry``'s publisher (any entry when None)?"""
    if user is None or not getattr(user, "is_authenticated", False):
        return False
    if user.is_staff:
        return True
    organization = user.organization
    if organization is None:
        return False
    if entry is not None and organization.id == entry.owner_id:
        return True
    return bool(organization.verified)

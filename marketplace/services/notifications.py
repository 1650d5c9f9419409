"""In-app notifications (站内通知) and their email copies.

Other services report a change with :func:`notify`, :func:`notify_organization` or
:func:`notify_staff`. These only add rows to the current session and never commit, so the
notification commits (or rolls back) in the same transaction as the change it reports. Each
notification also gets an email in the outbox (:mod:`marketplace.services.mail`) unless the user
switched email off for that kind on ``/notifications/settings``.

A notification belongs to one user; :func:`can_access` is the only permission rule, and every
page asks it (another user's notification is a 404).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from urllib.parse import urlsplit

from flask import current_app
from flask_sqlalchemy.pagination import Pagination
from sqlalchemy import func, select, update

from marketplace import timeutil
from marketplace.extensions import db
from marketplace.models import (
    Batch,
    EntryKind,
    Notification,
    NotificationKind,
    NotificationPreference,
    Role,
    User,
)
from marketplace.services import mail
from marketplace.services.errors import NotFound, ValidationFailed

MAX_TITLE = 200

# ---------------------------------------------------------------- writing


def _check_url(url: str) -> str:
    """Only internal paths are stored, so following a notification never leaves the site."""
    url = (url or "").strip()
    if not url:
        return ""
    parts = urlsplit(url)
    if (
        not url.startswith("/")
        or url.startswith("//")
        or "\\" in url
        or parts.scheme
        or parts.netloc
        or any(ord(c) < 32 for c in url)
    ):
        raise ValueError(f"notification url must be an internal path, not {url!r}")
    return url


def is_internal_path(url: str) -> bool:
    try:
        return bool(_check_url(url))
    except ValueError:
        return False


def notify(
    users: Iterable[User], kind: str, title: str, body: str = "", url: str = ""
) -> list[Notification]:
    """Add a notification for each user (and its email, per their preferences) to the session.

    Nothing is committed: the caller's commit saves them with the change they report.
    Inactive users are skipped and duplicates collapse. ``url`` must be an internal path.
    """
    kind = NotificationKind(kind)
    url = _check_url(url)
    title = (title or "").strip()[:MAX_TITLE]
    recipients: dict[int, User] = {}
    for user in users:
        if user is not None and user.active and user.id not in recipients:
            recipients[user.id] = user
    if not recipients:
        return []
    muted = set(
        db.session.scalars(
            select(NotificationPreference.user_id).where(
                NotificationPreference.user_id.in_(recipients),
                NotificationPreference.kind == kind.value,
                NotificationPreference.email_enabled.is_(False),
            )
        )
    )
    created = []
    for user in recipients.values():
        notification = Notification(
            user_id=user.id, kind=kind.value, title=title, body=body or "", url=url,
            created_at=timeutil.now_naive_utc(),
        )
        db.session.add(notification)
        created.append(notification)
        if user.id not in muted and user.email:
            mail.notification_email(user, notification)
    return created


def notify_organization(
    org_id: int, kind: str, title: str, body: str = "", url: str = ""
) -> list[Notification]:
    """Notify every active user of the organization."""
    users = db.session.scalars(select(User).where(User.organization_id == org_id, User.active.is_(True)))
    return notify(users, kind, title, body, url)


def notify_staff(kind: str, title: str, body: str = "", url: str = "") -> list[Notification]:
    """Notify every active organizer and admin."""
    users = db.session.scalars(
        select(User).where(User.role.in_((Role.ORGANIZER, Role.ADMIN)), User.active.is_(True))
    )
    return notify(users, kind, title, body, url)


# ---------------------------------------------------------------- links


def path_for(endpoint: str, **values) -> str:
    """The internal path of a route, also outside a request (jobs have none)."""
    return current_app.url_map.bind("localhost").build(endpoint, values)


def entry_path(entry, public: bool = False) -> str:
    """The owner's workspace page of an entry, or its public page."""
    kind = "opportunity" if entry.kind == EntryKind.OPPORTUNITY else "product"
    if public:
        return path_for(f"portal.{kind}", id=entry.id)
    return path_for(f"workspace.{kind}", entry_id=entry.id)


# ---------------------------------------------------------------- the entry workflow


def entry_returned(entry, comment: str) -> None:
    notify_organization(
        entry.owner_id,
        NotificationKind.ENTRY_RETURNED,
        f"「{entry.display_name}」被退回修改",
        f"退回意见：{comment}",
        entry_path(entry),
    )


def entry_approved(entry, batch: Batch) -> None:
    notify_organization(
        entry.owner_id,
        NotificationKind.ENTRY_APPROVED,
        f"「{entry.display_name}」审核通过，入选「{batch.title}」",
        "该条目将随批次发布后公开。",
        entry_path(entry),
    )


def batch_published(batch: Batch, published: Iterable) -> None:
    """One notification per owning organization, naming its entries that became public."""
    by_owner: dict[int, list] = {}
    for entry in published:
        by_owner.setdefault(entry.owner_id, []).append(entry)
    for owner_id, owned in by_owner.items():
        owned.sort(key=lambda e: e.id)
        first = owned[0]
        if len(owned) == 1:
            title = f"「{first.display_name}」已随「{batch.title}」发布"
            url = entry_path(first, public=True)
        else:
            title = f"「{batch.title}」已发布，贵单位{len(owned)}个条目已公开"
            url = path_for("portal.batch", id=batch.id)
        body = "\n".join(f"· {e.display_name}" for e in owned)
        notify_organization(owner_id, NotificationKind.ENTRY_PUBLISHED, title, body, url)


# ---------------------------------------------------------------- reading


def can_access(user: User | None, notification: Notification) -> bool:
    """A notification is visible to, and changed by, its recipient only."""
    return bool(user is not None and user.is_authenticated and notification.user_id == user.id)


def get_notification(user: User, notification_id: int) -> Notification:
    notification = db.session.get(Notification, notification_id)
    if notification is None or not can_access(user, notification):
        raise NotFound("通知不存在")
    return notification


def unread_count(user: User) -> int:
    return db.session.scalar(
        select(func.count()).select_from(Notification).where(
            Notification.user_id == user.id, Notification.read_at.is_(None)
        )
    ) or 0


def notifications_page(user: User, page: int = 1, per_page: int = 20) -> Pagination:
    """The user's notifications, newest first."""
    stmt = (
        select(Notification)
        .where(Notification.user_id == user.id)
        .order_by(Notification.created_at.desc(), Notification.id.desc())
    )
    return db.paginate(stmt, page=page, per_page=per_page, error_out=False)


def _now() -> datetime:
    return timeutil.now_naive_utc()


def mark_read(user: User, notification_id: int) -> Notification:
    notification = get_notification(user, notification_id)
    if notification.read_at is None:
        notification.read_at = _now()
        db.session.commit()
    return notification


def mark_all_read(user: User) -> int:
    """Mark every unread notification of the user read; returns how many."""
    result = db.session.execute(
        update(Notification)
        .where(Notification.user_id == user.id, Notification.read_at.is_(None))
        .values(read_at=_now())
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    return result.rowcount


# ---------------------------------------------------------------- email preferences


def email_preferences(user: User) -> dict[str, bool]:
    """Email on/off for every notification kind (on unless switched off)."""
    stored = dict(
        db.session.execute(
            select(NotificationPreference.kind, NotificationPreference.email_enabled).where(
                NotificationPreference.user_id == user.id
            )
        ).all()
    )
    return {kind.value: stored.get(kind.value, True) for kind in NotificationKind}


def set_email_preferences(user: User, enabled_kinds: Iterable[str]) -> None:
    """Email on for ``enabled_kinds``, off for every other kind."""
    enabled = set(enabled_kinds)
    unknown = enabled - {k.value for k in NotificationKind}
    if unknown:
        raise ValidationFailed({"email_kinds": "通知类型无效"})
    rows = {
        p.kind: p
        for p in db.session.scalars(
            select(NotificationPreference).where(NotificationPreference.user_id == user.id)
        )
    }
    for kind in NotificationKind:
        row = rows.get(kind.value)
        if row is None:
            row = NotificationPreference(user_id=user.id, kind=kind.value)
            db.session.add(row)
        row.email_enabled = kind.value in enabled
    db.session.commit()

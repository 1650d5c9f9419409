"""Notifications driven by the matching engine: needs closing soon, and new matching needs.

Both digests run daily as periodic jobs (:mod:`marketplace.jobs.tasks`) and on demand with
``flask notifications digest``. A firm "matches" a need when one of its published products is
among the engine's candidates for that need (:func:`matching.products_for_opportunity`) with a
fused score of at least ``NOTIFY_MATCH_THRESHOLD``. A firm never hears about its own needs.

* **deadline_soon**: a published need whose deadline (a Beijing date) is today or within the
  next ``NOTIFY_DEADLINE_DAYS`` days, told to each user of a matching firm once per need.
* **new_match**: needs published in the last ``NOTIFY_NEW_MATCH_DAYS`` days and still open,
  that the user was not told about yet (by either digest), in one digest per user per Beijing
  day at most. A need
  that arrives after today's digest waits for tomorrow's.

What each user was told is recorded in :class:`MatchAlert` (unique per user, kind and need),
so a rerun, or two consumers running the same digest, sends nothing twice. Each user's
notification and alerts commit together.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from marketplace import timeutil
from marketplace.extensions import db
from marketplace.models import (
    EntryStatus,
    MatchAlert,
    Notification,
    NotificationKind,
    Opportunity,
    User,
)
from marketplace.services import matching, notifications

logger = logging.getLogger(__name__)

#: Candidates looked at per need.
CANDIDATES = 50


@dataclass
class DigestReport:
    needs: int = 0
    notified_users: int = 0
    skipped: int = 0
    user_ids: list[int] = field(default_factory=list)


@dataclass
class _Match:
    need: Opportunity
    products: list[str]
    best_product_id: int
    score: float


def _matching_firms(need: Opportunity) -> dict[int, _Match]:
    """Organizations with a published product matching ``need``, by organization id."""
    threshold = float(current_app.config["NOTIFY_MATCH_THRESHOLD"])
    firms: dict[int, _Match] = {}
    for result in matching.products_for_opportunity(need, k=CANDIDATES):
        owner_id = result.entry.owner_id
        if result.hit.score < threshold or owner_id == need.publisher_id:
            continue
        match = firms.get(owner_id)
        if match is None:
            firms[owner_id] = _Match(need, [result.entry.name], result.entry.id, result.hit.score)
        elif result.entry.name not in match.products:
            match.products.append(result.entry.name)
    return firms


def _users_by_org(org_ids: set[int]) -> dict[int, list[User]]:
    users: dict[int, list[User]] = {}
    if org_ids:
        for user in db.session.scalars(
            select(User).where(User.organization_id.in_(org_ids), User.active.is_(True)).order_by(User.id)
        ):
            users.setdefault(user.organization_id, []).append(user)
    return users


def _told(user_id: int, kinds: tuple[str, ...], need_ids: list[int]) -> set[int]:
    return set(
        db.session.scalars(
            select(MatchAlert.opportunity_id).where(
                MatchAlert.user_id == user_id,
                MatchAlert.kind.in_(kinds),
                MatchAlert.opportunity_id.in_(need_ids),
            )
        )
    )


def _commit_alerts(user: User, kind: str, needs: list[Opportunity], title: str, body: str, url: str) -> bool:
    """Notify one user about ``needs`` and record it, in one transaction."""
    user_id = user.id
    try:
        [notification] = notifications.notify([user], kind, title, body, url)
        for need in needs:
            db.session.add(
                MatchAlert(user_id=user_id, kind=kind, opportunity_id=need.id, notification=notification)
            )
        db.session.commit()
    except IntegrityError:  # another run told this user first
        db.session.rollback()
        logger.info("match alert %s for user %s already sent by another run", kind, user_id)
        return False
    return True


def _open_published_needs():
    today = timeutil.local_today()
    return select(Opportunity).where(
        Opportunity.status == EntryStatus.PUBLISHED,
        (Opportunity.deadline.is_(None)) | (Opportunity.deadline >= today),
    )


def deadline_digest() -> DigestReport:
    """Tell matching firms about needs whose deadline is near (once per user and need)."""
    kind = NotificationKind.DEADLINE_SOON.value
    today = timeutil.local_today()
    horizon = today + timedelta(days=int(current_app.config["NOTIFY_DEADLINE_DAYS"]))
    needs = list(
        db.session.scalars(
            _open_published_needs()
            .where(Opportunity.deadline.is_not(None), Opportunity.deadline <= horizon)
            .order_by(Opportunity.deadline, Opportunity.id)
        )
    )
    report = DigestReport(needs=len(needs))
    for need in needs:
        firms = _matching_firms(need)
        users = _users_by_org(set(firms))
        left = timeutil.days_left(need.deadline)
        when = "今天" if left == 0 else f"{left}天后"
        for org_id, match in firms.items():
            for user in users.get(org_id, []):
                if _told(user.id, (kind,), [need.id]):
                    report.skipped += 1
                    continue
                title = f"匹配的需求「{need.title}」将于{when}截止"
                body = (
                    f"答题截止日期：{need.deadline:%Y-%m-%d}（北京时间当日24时）。\n"
                    f"发布单位：{need.publisher.name}\n"
                    f"贵单位的匹配产品：{'、'.join(match.products)}"
                )
                url = notifications.entry_path(need, public=True)
                if _commit_alerts(user, kind, [need], title, body, url):
                    report.notified_users += 1
                    report.user_ids.append(user.id)
    return report


def new_match_digest() -> DigestReport:
    """One digest per user per day of newly published needs matching the user's products."""
    kind = NotificationKind.NEW_MATCH.value
    now = timeutil.now_utc()
    since = (now - timedelta(days=int(current_app.config["NOTIFY_NEW_MATCH_DAYS"]))).replace(tzinfo=None)
    needs = list(
        db.session.scalars(
            _open_published_needs()
            .where(Opportunity.published_at >= since)
            .order_by(Opportunity.published_at, Opportunity.id)
        )
    )
    report = DigestReport(needs=len(needs))
    per_org: dict[int, list[_Match]] = {}
    for need in needs:
        for org_id, match in _matching_firms(need).items():
            per_org.setdefault(org_id, []).append(match)
    users = _users_by_org(set(per_org))
    day_start = timeutil.start_of_local_day(timeutil.local_today()).replace(tzinfo=None)
    for org_id, matches in per_org.items():
        for user in users.get(org_id, []):
            # A need the user already heard about as closing soon is not news either.
            told = _told(user.id, (kind, NotificationKind.DEADLINE_SOON.value), [m.need.id for m in matches])
            fresh = [m for m in matches if m.need.id not in told]
            if not fresh:
                continue
            had_digest_today = db.session.scalar(
                select(Notification.id).where(
                    Notification.user_id == user.id,
                    Notification.kind == kind,
                    Notification.created_at >= day_start,
                ).limit(1)
            )
            if had_digest_today is not None:
                report.skipped += 1
                continue
            fresh.sort(key=lambda m: -m.score)
            title = (
                f"新发布的需求「{fresh[0].need.title}」与贵单位产品匹配"
                if len(fresh) == 1
                else f"有{len(fresh)}条新发布的场景需求与贵单位产品匹配"
            )
            body = "\n".join(
                f"· {m.need.title}（{m.need.publisher.name}；匹配产品：{'、'.join(m.products)}）"
                for m in fresh
            )
            url = (
                notifications.entry_path(fresh[0].need, public=True)
                if len(fresh) == 1
                else notifications.path_for("matching.product", id=fresh[0].best_product_id)
            )
            if _commit_alerts(user, kind, [m.need for m in fresh], title, body, url):
                report.notified_users += 1
                report.user_ids.append(user.id)
    return report

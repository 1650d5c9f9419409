"""站内通知: the service API, the pages, permissions, email preferences, workflow hooks, digests."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import event, func, select

from marketplace import timeutil
from marketplace.models import (
    EmailOutbox,
    EntryStatus,
    MatchAlert,
    Notification,
    NotificationKind,
    NotificationPreference,
    Organization,
    User,
)
from marketplace.services import batches, entries, match_alerts, notifications
from marketplace.services.errors import NotFound
from tests.conftest import csrf_token


@dataclass
class World:
    firm: Organization
    alice: User
    bob: User
    other_firm: Organization
    carol: User
    organizer: User
    admin: User


@pytest.fixture
def world(make) -> World:
    firm = make.org(name="南昌泊位通科技有限公司")
    other = make.org(name="九江康养智能科技有限公司")
    return World(
        firm=firm,
        alice=make.user(firm, name="王丽"),
        bob=make.user(firm, name="李强"),
        other_firm=other,
        carol=make.user(other, name="赵敏"),
        organizer=make.organizer(),
        admin=make.admin(),
    )


def count(db, model, **where) -> int:
    stmt = select(func.count()).select_from(model)
    for key, value in where.items():
        stmt = stmt.where(getattr(model, key) == value)
    return db.session.scalar(stmt)


def freeze(monkeypatch, moment: datetime) -> None:
    monkeypatch.setattr(timeutil, "now_utc", lambda: moment)


# ---------------------------------------------------------------- the service API


def test_notify_commits_with_the_callers_transaction(db, world):
    notifications.notify([world.alice], NotificationKind.ENTRY_APPROVED, "条目审核通过", url="/my/")
    db.session.rollback()  # the change being reported failed
    assert count(db, Notification) == 0
    assert count(db, EmailOutbox) == 0

    notifications.notify([world.alice], NotificationKind.ENTRY_APPROVED, "条目审核通过", url="/my/")
    db.session.commit()
    [row] = db.session.scalars(select(Notification)).all()
    assert (row.user_id, row.kind, row.title, row.url, row.read_at) == (
        world.alice.id, "entry_approved", "条目审核通过", "/my/", None,
    )
    assert count(db, EmailOutbox, notification_id=row.id, recipient=world.alice.email) == 1


def test_notify_skips_inactive_users_and_collapses_duplicates(db, make, world):
    gone = make.user(world.firm, active=False)
    created = notifications.notify(
        [world.alice, world.alice, gone, world.bob, world.alice], NotificationKind.NEW_MATCH, "新的匹配需求"
    )
    db.session.commit()
    assert sorted(n.user_id for n in created) == sorted([world.alice.id, world.bob.id])
    assert count(db, Notification) == 2
    assert count(db, EmailOutbox) == 2


def test_notify_with_nobody_adds_nothing(db):
    assert notifications.notify([], NotificationKind.NEW_MATCH, "无人") == []


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example.com/",
        "//evil.example.com/x",
        "javascript:alert(1)",
        "/\\evil.example.com",
        "my/x",
    ],
)
def test_notify_accepts_internal_paths_only(world, url):
    with pytest.raises(ValueError):
        notifications.notify([world.alice], NotificationKind.NEW_MATCH, "标题", url=url)


def test_notify_rejects_an_unknown_kind(world):
    with pytest.raises(ValueError):
        notifications.notify([world.alice], "no_such_kind", "标题")


def test_notify_organization_reaches_its_active_users_only(db, make, world):
    make.user(world.firm, active=False)
    notifications.notify_organization(world.firm.id, NotificationKind.RESPONSE_NEW, "新的答题")
    db.session.commit()
    recipients = set(db.session.scalars(select(Notification.user_id)))
    assert recipients == {world.alice.id, world.bob.id}


def test_notify_staff_reaches_organizers_and_admins(db, world):
    notifications.notify_staff(NotificationKind.RESPONSE_NEW, "有新的答题待查看")
    db.session.commit()
    recipients = set(db.session.scalars(select(Notification.user_id)))
    assert recipients == {world.organizer.id, world.admin.id}


def test_every_kind_has_a_chinese_label():
    labels = dict(NotificationKind.choices())
    assert labels["deadline_soon"] == "关注的需求即将截止"
    assert labels["new_match"] == "新的匹配需求"
    assert len(labels) >= 9
    assert all(re.search(r"[\u4e00-\u9fff]", label) for label in labels.values())


# ---------------------------------------------------------------- email preferences


def test_email_is_skipped_for_a_kind_the_user_switched_off(db, world):
    notifications.set_email_preferences(world.alice, [k for k in NotificationKind if k != "new_match"])
    notifications.notify([world.alice, world.bob], NotificationKind.NEW_MATCH, "新的匹配需求")
    notifications.notify([world.alice], NotificationKind.ENTRY_RETURNED, "条目被退回")
    db.session.commit()
    assert count(db, Notification, user_id=world.alice.id) == 2  # the in-app ones always
    outbox = db.session.execute(select(EmailOutbox.recipient, EmailOutbox.subject)).all()
    assert sorted(outbox) == sorted(
        [(world.bob.email, "【全景江西】新的匹配需求"), (world.alice.email, "【全景江西】条目被退回")]
    )


def test_preferences_default_to_email_on(world):
    assert set(notifications.email_preferences(world.alice).values()) == {True}


def test_settings_page_saves_the_checked_kinds(client, auth, db, world):
    auth.login(world.alice)
    html = client.get("/notifications/settings").get_data(as_text=True)
    assert html.count('type="checkbox"') == len(NotificationKind)
    assert "联合体邀请" in html
    response = auth.post(
        "/notifications/settings", {"email_kinds": ["entry_returned", "deadline_soon"]}, follow_redirects=True
    )
    assert "邮件提醒设置已保存" in response.get_data(as_text=True)
    prefs = notifications.email_preferences(world.alice)
    assert {k for k, on in prefs.items() if on} == {"entry_returned", "deadline_soon"}
    assert count(db, NotificationPreference, user_id=world.bob.id) == 0


def test_settings_page_refuses_an_unknown_kind(client, auth, world):
    auth.login(world.alice)
    response = auth.post("/notifications/settings", {"email_kinds": ["entry_returned", "bogus"]})
    assert response.status_code == 200
    assert "邮件提醒设置已保存" not in response.get_data(as_text=True)
    assert set(notifications.email_preferences(world.alice).values()) == {True}


def test_settings_post_without_csrf_token_is_refused(client, auth, world):
    auth.login(world.alice)
    response = client.post("/notifications/settings", data={"email_kinds": ["entry_returned"]})
    assert response.status_code == 400
    assert set(notifications.email_preferences(world.alice).values()) == {True}


def test_profile_page_links_to_the_settings(client, auth, world):
    auth.login(world.alice)
    assert "/notifications/settings" in client.get("/my/organization").get_data(as_text=True)


# ---------------------------------------------------------------- pages


def _notify(db, user, title="通知", url="", kind=NotificationKind.ENTRY_APPROVED, **kw) -> Notification:
    [row] = notifications.notify([user], kind, title, url=url, **kw)
    db.session.commit()
    return row


def test_bell_shows_the_unread_count(client, auth, db, world):
    for i in range(3):
        _notify(db, world.alice, f"通知{i}")
    _notify(db, world.carol)
    auth.login(world.alice)
    html = client.get("/").get_data(as_text=True)
    assert re.search(r'id="notification-count">3<', html)
    notifications.mark_all_read(world.alice)
    html = client.get("/").get_data(as_text=True)
    assert 'id="notification-bell"' in html
    assert 'id="notification-count"' not in html


def test_bell_costs_one_query_per_page(client, auth, db, world):
    _notify(db, world.alice)
    auth.login(world.alice)
    statements: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        client.get("/notifications/")
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    counts = [s for s in statements if "count(" in s.lower() and "notification" in s.lower()]
    # One for the bell (shared with the page heading), one for the pagination total.
    assert len(counts) == 2


def test_anonymous_visitors_see_no_bell(client):
    assert 'id="notification-bell"' not in client.get("/").get_data(as_text=True)


def test_list_is_newest_first_in_beijing_time_with_unread_highlighted(client, auth, db, monkeypatch, world):
    freeze(monkeypatch, datetime(2026, 12, 1, 16, 30, tzinfo=UTC))  # 2026-12-02 00:30 in Beijing
    old = _notify(db, world.alice, "较早的通知")
    freeze(monkeypatch, datetime(2026, 12, 1, 17, 0, tzinfo=UTC))
    _notify(db, world.alice, "较新的通知")
    _notify(db, world.carol, "别人的通知")
    notifications.mark_read(world.alice, old.id)
    auth.login(world.alice)
    html = client.get("/notifications/").get_data(as_text=True)
    assert html.index("较新的通知") < html.index("较早的通知")
    assert "别人的通知" not in html
    assert "2026-12-02 00:30" in html and "2026-12-02 01:00" in html
    assert html.count("notification-unread") == 1


def test_list_is_paginated(client, auth, db, app, world):
    per_page = app.config["PER_PAGE"]
    for i in range(per_page + 2):
        notifications.notify([world.alice], NotificationKind.NEW_MATCH, f"第{i}条通知")
    db.session.commit()
    auth.login(world.alice)
    first = client.get("/notifications/").get_data(as_text=True)
    second = client.get("/notifications/?page=2").get_data(as_text=True)
    assert first.count("notification-unread") == per_page
    assert second.count("notification-unread") == 2


def test_mark_one_read(client, auth, db, world):
    row = _notify(db, world.alice)
    auth.login(world.alice)
    response = auth.post(f"/notifications/{row.id}/read")
    assert response.status_code == 302
    assert db.session.get(Notification, row.id).read_at is not None


def test_following_the_link_marks_read_and_redirects(client, auth, db, world):
    row = _notify(db, world.alice, url="/my/opportunities/7")
    auth.login(world.alice)
    response = auth.post(f"/notifications/{row.id}/open")
    assert response.status_code == 302
    assert response.headers["Location"] == "/my/opportunities/7"
    assert db.session.get(Notification, row.id).read_at is not None


def test_a_notification_without_link_opens_the_list(client, auth, db, world):
    row = _notify(db, world.alice)
    auth.login(world.alice)
    response = auth.post(f"/notifications/{row.id}/open")
    assert response.headers["Location"].startswith("/notifications/")


def test_mark_all_read_touches_only_my_notifications(client, auth, db, world):
    mine = [_notify(db, world.alice) for _ in range(2)]
    theirs = _notify(db, world.bob)
    auth.login(world.alice)
    response = auth.post("/notifications/read-all", follow_redirects=True)
    assert "已将2条通知标记为已读" in response.get_data(as_text=True)
    assert all(db.session.get(Notification, n.id).read_at is not None for n in mine)
    assert db.session.get(Notification, theirs.id).read_at is None


@pytest.mark.parametrize("action", ["read", "open"])
def test_another_users_notification_is_not_found(client, auth, db, world, action):
    theirs = _notify(db, world.carol, url="/my/")
    auth.login(world.alice)
    assert auth.post(f"/notifications/{theirs.id}/{action}").status_code == 404
    assert auth.post(f"/notifications/{theirs.id + 1000}/{action}").status_code == 404
    assert db.session.get(Notification, theirs.id).read_at is None


def test_service_refuses_another_users_notification(db, world):
    theirs = _notify(db, world.carol)
    with pytest.raises(NotFound):
        notifications.mark_read(world.alice, theirs.id)
    assert not notifications.can_access(world.alice, theirs)
    assert notifications.can_access(world.carol, theirs)


@pytest.mark.parametrize("url", ["/notifications/", "/notifications/settings"])
def test_anonymous_get_goes_to_login(client, url):
    response = client.get(url)
    assert response.status_code == 302
    assert "/auth/login" in response.headers["Location"]


@pytest.mark.parametrize("path", ["/{id}/read", "/{id}/open", "/read-all"])
def test_anonymous_post_goes_to_login(client, db, world, path):
    row = _notify(db, world.alice)
    token = csrf_token(client)
    response = client.post("/notifications" + path.format(id=row.id), data={"csrf_token": token})
    assert response.status_code == 302
    assert "/auth/login" in response.headers["Location"]
    assert db.session.get(Notification, row.id).read_at is None


@pytest.mark.parametrize("path", ["/{id}/read", "/{id}/open", "/read-all"])
def test_post_without_csrf_token_is_refused(client, auth, db, world, path):
    row = _notify(db, world.alice)
    auth.login(world.alice)
    response = client.post("/notifications" + path.format(id=row.id))
    assert response.status_code == 400
    assert db.session.get(Notification, row.id).read_at is None


# ---------------------------------------------------------------- workflow hooks


@pytest.fixture
def gov(make) -> tuple[Organization, User, User]:
    org = make.org(kind="government", name="南昌市东湖区数据管理局")
    return org, make.user(org), make.user(org)


def _titles(db, user) -> list[str]:
    return list(db.session.scalars(select(Notification.title).where(Notification.user_id == user.id)))


def test_returning_an_entry_notifies_its_organization_with_the_comment(db, make, world, gov):
    org, clerk, colleague = gov
    opp = make.opportunity(org, EntryStatus.SUBMITTED, title="老旧小区智慧停车诱导系统建设")
    entries.return_entry(world.organizer, opp, "请补充预算依据")
    for user in (clerk, colleague):
        [row] = db.session.scalars(select(Notification).where(Notification.user_id == user.id))
        assert row.kind == NotificationKind.ENTRY_RETURNED
        assert "老旧小区智慧停车诱导系统建设" in row.title
        assert "请补充预算依据" in row.body
        assert row.url == f"/my/opportunities/{opp.id}"
    assert _titles(db, world.alice) == []
    assert count(db, EmailOutbox) == 2


def test_approving_an_entry_notifies_its_organization(db, make, world):
    product = make.product(world.firm, EntryStatus.SUBMITTED)
    batch = make.batch("product")
    entries.approve(world.organizer, product, batch)
    [row] = db.session.scalars(select(Notification).where(Notification.user_id == world.alice.id))
    assert row.kind == NotificationKind.ENTRY_APPROVED
    assert batch.title in row.title
    assert row.url == f"/my/products/{product.id}"
    assert _titles(db, world.carol) == []


def test_publishing_a_batch_notifies_each_owner_once(db, make, world, gov):
    org, clerk, _ = gov
    batch = make.batch("opportunity")
    one = make.opportunity(org, EntryStatus.APPROVED, batch, title="智慧停车需求一")
    make.opportunity(org, EntryStatus.APPROVED, batch, title="智慧停车需求二")
    other_gov = make.org(kind="government")
    other_clerk = make.user(other_gov)
    single = make.opportunity(other_gov, EntryStatus.APPROVED, batch, title="社区养老需求")
    batches.publish_batch(world.organizer, batch)
    [grouped] = db.session.scalars(select(Notification).where(Notification.user_id == clerk.id))
    assert grouped.kind == NotificationKind.ENTRY_PUBLISHED
    assert "2个条目已公开" in grouped.title
    assert "智慧停车需求一" in grouped.body and "智慧停车需求二" in grouped.body
    assert grouped.url == f"/batches/{batch.id}"
    [alone] = db.session.scalars(select(Notification).where(Notification.user_id == other_clerk.id))
    assert "社区养老需求" in alone.title
    assert alone.url == f"/opportunities/{single.id}"
    assert one.status == EntryStatus.PUBLISHED


def test_a_refused_workflow_step_notifies_nobody(db, make, world, gov):
    org, clerk, _ = gov
    opp = make.opportunity(org, EntryStatus.DRAFT)
    with pytest.raises(Exception):  # noqa: B017 - any refusal
        entries.return_entry(world.organizer, opp, "意见")
    db.session.rollback()
    assert count(db, Notification) == 0


# ---------------------------------------------------------------- matching digests

NOW = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)  # 2026-12-01 10:00 Beijing time
TODAY = date(2026, 12, 1)


@dataclass
class Market:
    gov: Organization
    firm: Organization
    firm_user: User
    care_firm: Organization
    care_user: User


@pytest.fixture
def market(make, monkeypatch) -> Market:
    """A parking firm and an elderly-care firm, each with one published product."""
    freeze(monkeypatch, NOW)
    gov = make.org(kind="government", name="南昌市东湖区数据管理局")
    make.user(gov)
    firm = make.org(name="南昌泊位通科技有限公司")
    care_firm = make.org(name="九江康养智能科技有限公司", region_city="九江市", region_county="浔阳区")
    market = Market(gov, firm, make.user(firm), care_firm, make.user(care_firm))
    make.product(firm, EntryStatus.PUBLISHED, fields=("交通出行",), tags=("物联网",))
    make.product(
        care_firm,
        EntryStatus.PUBLISHED,
        name="居家养老智能监护平台",
        description="面向独居老人的跌倒检测、紧急呼叫与健康监测平台，结合物联网传感器提供上门养老服务。",
        cases="已在九江市浔阳区服务独居老人3000名。",
        fields=("社会保障",),
        tags=("物联网", "人工智能"),
        maturity="pilot",
        region_city="九江市",
        region_county="浔阳区",
    )
    return market


def parking_need(make, market: Market, deadline: date | None, published: datetime = NOW, **kw):
    kw.setdefault("title", f"老旧小区智慧停车诱导系统建设（截止{deadline}）")
    return make.opportunity(
        market.gov, EntryStatus.PUBLISHED, deadline=deadline,
        published_at=published.replace(tzinfo=None), **kw,
    )


def kinds_for(db, user) -> list[tuple[str, str]]:
    rows = db.session.execute(
        select(Notification.kind, Notification.title)
        .where(Notification.user_id == user.id)
        .order_by(Notification.id)
    )
    return [tuple(r) for r in rows]


def test_deadline_digest_tells_matching_firms_inside_the_three_day_window(db, make, market, monkeypatch):
    today = parking_need(make, market, TODAY, title="今天截止的停车诱导需求")
    in_three = parking_need(make, market, TODAY + timedelta(days=3), title="三天后截止的停车诱导需求")
    parking_need(make, market, TODAY + timedelta(days=4), title="四天后截止的停车诱导需求")
    parking_need(make, market, TODAY - timedelta(days=1), title="昨天已截止的停车诱导需求")
    parking_need(make, market, None, title="长期有效的停车诱导需求")

    report = match_alerts.deadline_digest()
    assert report.needs == 2
    told = dict(
        db.session.execute(
            select(MatchAlert.opportunity_id, MatchAlert.user_id).where(MatchAlert.kind == "deadline_soon")
        ).all()
    )
    assert told == {today.id: market.firm_user.id, in_three.id: market.firm_user.id}
    titles = [t for k, t in kinds_for(db, market.firm_user) if k == "deadline_soon"]
    assert any("今天截止" in t and "将于今天截止" in t for t in titles)
    assert any("三天后截止" in t and "3天后截止" in t for t in titles)
    assert kinds_for(db, market.care_user) == []  # its product does not match parking
    # the need's own publisher never hears about it
    assert all(u.organization_id != market.gov.id for u in db.session.scalars(
        select(User).join(Notification, Notification.user_id == User.id)))


def test_deadline_digest_does_not_repeat_and_follows_the_beijing_day(db, make, market, monkeypatch):
    parking_need(make, market, TODAY + timedelta(days=3), title="三天后截止的停车诱导需求")
    later = parking_need(make, market, TODAY + timedelta(days=4), title="四天后截止的停车诱导需求")
    assert match_alerts.deadline_digest().notified_users == 1
    assert match_alerts.deadline_digest().notified_users == 0  # rerun: nothing new

    freeze(monkeypatch, datetime(2026, 12, 1, 15, 59, tzinfo=UTC))  # 23:59 Beijing: still 12-01
    assert match_alerts.deadline_digest().notified_users == 0
    freeze(monkeypatch, datetime(2026, 12, 1, 16, 0, tzinfo=UTC))  # 00:00 Beijing on 12-02
    report = match_alerts.deadline_digest()
    assert report.user_ids == [market.firm_user.id]
    assert db.session.scalar(
        select(MatchAlert.opportunity_id)
        .where(MatchAlert.kind == "deadline_soon")
        .order_by(MatchAlert.id.desc())
    ) == later.id
    assert len([k for k, _ in kinds_for(db, market.firm_user) if k == "deadline_soon"]) == 2


def test_a_threshold_above_every_score_tells_nobody(app, db, make, market, monkeypatch):
    monkeypatch.setitem(app.config, "NOTIFY_MATCH_THRESHOLD", 1.01)
    parking_need(make, market, TODAY + timedelta(days=1))
    assert match_alerts.deadline_digest().notified_users == 0
    assert count(db, Notification) == 0


def test_new_match_digest_is_one_per_user_per_day(db, make, market, monkeypatch):
    first = parking_need(make, market, TODAY + timedelta(days=30), title="停车诱导需求甲",
                         published=NOW - timedelta(days=1))
    second = parking_need(make, market, TODAY + timedelta(days=30), title="停车泊位共享需求乙",
                          published=NOW - timedelta(hours=2))
    parking_need(make, market, TODAY + timedelta(days=30), title="停车诱导老需求丙",
                 published=NOW - timedelta(days=10))  # older than the look-back window

    report = match_alerts.new_match_digest()
    assert report.user_ids == [market.firm_user.id]
    [(kind, title)] = kinds_for(db, market.firm_user)
    assert (kind, title) == ("new_match", "有2条新发布的场景需求与贵单位产品匹配")
    body = db.session.scalar(select(Notification.body))
    assert "停车诱导需求甲" in body and "停车泊位共享需求乙" in body and "丙" not in body
    assert set(db.session.scalars(select(MatchAlert.opportunity_id))) == {first.id, second.id}
    assert match_alerts.new_match_digest().notified_users == 0  # rerun

    # A need published later the same day waits for tomorrow's digest.
    freeze(monkeypatch, NOW + timedelta(hours=3))
    third = parking_need(make, market, TODAY + timedelta(days=30), title="停车诱导需求丁",
                         published=NOW + timedelta(hours=3))
    report = match_alerts.new_match_digest()
    assert (report.notified_users, report.skipped) == (0, 1)
    freeze(monkeypatch, NOW + timedelta(days=1))
    report = match_alerts.new_match_digest()
    assert report.user_ids == [market.firm_user.id]
    newest = db.session.scalar(select(Notification).order_by(Notification.id.desc()))
    assert newest.title == "新发布的需求「停车诱导需求丁」与贵单位产品匹配"
    assert newest.url == f"/opportunities/{third.id}"
    assert match_alerts.new_match_digest().notified_users == 0


def test_digest_cli_reports_what_it_sent(runner, make, market):
    parking_need(make, market, TODAY + timedelta(days=2))
    result = runner.invoke(args=["notifications", "digest"])
    assert result.exit_code == 0, result.output
    assert "deadline (即将截止): 1 needs looked at, 1 users notified" in result.output
    # the same need is no news for the new_match digest any more
    assert "new (新的匹配需求): 1 needs looked at, 0 users notified" in result.output
    again = runner.invoke(args=["notifications", "digest", "--kind", "deadline"])
    assert "0 users notified" in again.output

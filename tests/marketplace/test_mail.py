"""Email through the outbox: SMTP delivery, retries with back-off, giving up, leases, the log."""

from __future__ import annotations

import logging
import socket
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.policy import default as default_policy

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from marketplace import timeutil
from marketplace.models import EmailOutbox, Notification, NotificationKind, OutboxStatus
from marketplace.services import mail, notifications

NOW = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)


class Inbox:
    """An aiosmtpd handler that keeps every message it receives."""

    def __init__(self) -> None:
        self.envelopes = []

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"

    @property
    def messages(self):
        return [
            message_from_bytes(e.original_content or e.content, policy=default_policy) for e in self.envelopes
        ]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SmtpServer:
    def __init__(self, port: int) -> None:
        self.port = port
        self.inbox = Inbox()
        self._controller: Controller | None = None

    def start(self) -> None:
        self._controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


@pytest.fixture
def smtp(app, monkeypatch):
    """A local SMTP server (not started yet) that the app is configured to use."""
    server = SmtpServer(free_port())
    monkeypatch.setitem(app.config, "MAIL_SERVER", "127.0.0.1")
    monkeypatch.setitem(app.config, "MAIL_PORT", server.port)
    monkeypatch.setitem(app.config, "MAIL_TIMEOUT", 5)
    yield server
    server.stop()


@pytest.fixture
def clock(monkeypatch):
    """A frozen clock: ``clock.now`` is what the app sees; ``clock.advance(seconds)``."""

    class Clock:
        now = NOW

        def advance(self, seconds: float) -> None:
            self.now = self.now + timedelta(seconds=seconds)

    frozen = Clock()
    monkeypatch.setattr(timeutil, "now_utc", lambda: frozen.now)
    return frozen


@pytest.fixture
def member(make):
    return make.user(make.org(), name="王丽", email="wangli@example.cn")


def outbox(db) -> EmailOutbox:
    db.session.expire_all()
    [row] = db.session.scalars(select(EmailOutbox)).all()
    return row


def test_a_notification_delivers_exactly_one_email(db, smtp, member):
    smtp.start()
    notifications.notify([member], NotificationKind.ENTRY_RETURNED, "「智慧停车」被退回修改",
                         "退回意见：请补充预算", url="/my/opportunities/3")
    db.session.commit()  # the commit queues a drain, which runs at once in the tests

    [envelope] = smtp.inbox.envelopes
    assert envelope.rcpt_tos == ["wangli@example.cn"]
    [message] = smtp.inbox.messages
    assert message["Subject"] == "【全景江西】「智慧停车」被退回修改"
    assert message["To"] == "wangli@example.cn"
    body = message.get_content()
    assert "王丽，您好" in body and "退回意见：请补充预算" in body
    assert "http://127.0.0.1:5000/my/opportunities/3" in body
    row = outbox(db)
    assert (row.status, row.attempts, row.last_error) == (OutboxStatus.SENT, 1, None)
    assert row.sent_at is not None

    assert mail.drain_outbox().claimed == 0  # idempotent: nothing is sent twice
    assert len(smtp.inbox.envelopes) == 1


def test_smtp_down_keeps_the_notification_and_retries_until_it_is_up(app, db, smtp, clock, member):
    notifications.notify([member], NotificationKind.NEW_MATCH, "有2条新发布的场景需求与贵单位产品匹配")
    db.session.commit()  # the server is not started: connection refused

    row = outbox(db)
    assert (row.status, row.attempts) == (OutboxStatus.PENDING, 1)
    assert "ConnectionRefused" in row.last_error
    assert row.next_attempt_at == NOW.replace(tzinfo=None) + timedelta(seconds=60)
    [notification] = db.session.scalars(select(Notification)).all()
    assert notification.read_at is None and row.notification_id == notification.id

    assert mail.drain_outbox().claimed == 0  # not due yet
    clock.advance(60)
    report = mail.drain_outbox()
    assert (report.sent, report.retrying) == (0, 1)
    row = outbox(db)
    assert row.attempts == 2
    assert row.next_attempt_at == clock.now.replace(tzinfo=None) + timedelta(seconds=120)  # back-off doubles

    smtp.start()
    clock.advance(119)
    assert mail.drain_outbox().claimed == 0
    clock.advance(1)
    assert mail.drain_outbox().sent == 1
    row = outbox(db)
    assert (row.status, row.attempts) == (OutboxStatus.SENT, 3)
    [message] = smtp.inbox.messages
    assert message["Subject"] == "【全景江西】有2条新发布的场景需求与贵单位产品匹配"
    assert db.session.get(Notification, notification.id).title == notification.title


def test_sending_gives_up_after_the_last_attempt(app, db, smtp, clock, member, monkeypatch):
    monkeypatch.setitem(app.config, "MAIL_MAX_ATTEMPTS", 2)
    notifications.notify([member], NotificationKind.NEW_MATCH, "匹配需求")
    db.session.commit()
    clock.advance(60)
    assert mail.drain_outbox().failed == 1
    row = outbox(db)
    assert (row.status, row.attempts) == (OutboxStatus.FAILED, 2)
    smtp.start()
    clock.advance(3600)
    assert mail.drain_outbox().claimed == 0
    assert smtp.inbox.envelopes == []
    assert db.session.scalars(select(Notification)).one()  # the in-app notification stays


def test_a_rolled_back_notification_sends_nothing(db, smtp, member):
    smtp.start()
    notifications.notify([member], NotificationKind.NEW_MATCH, "不会发送")
    db.session.rollback()
    db.session.commit()
    assert mail.drain_outbox().claimed == 0
    assert smtp.inbox.envelopes == []


def test_without_mail_server_the_email_is_written_to_the_log(db, member, caplog):
    caplog.set_level(logging.INFO, logger="marketplace.services.mail")
    notifications.notify([member], NotificationKind.ENTRY_APPROVED, "「智慧停车」审核通过")
    db.session.commit()
    assert outbox(db).status == OutboxStatus.SENT
    logged = caplog.text
    assert "wangli@example.cn" in logged and "「智慧停车」审核通过" in logged


def test_a_claimed_row_is_left_to_its_drain_until_the_lease_runs_out(app, db, smtp, clock, member):
    """Two drains at once: the second finds nothing to do; a dead drain's rows come back."""
    mail.queue_email(member.email, "租约测试", "正文")
    db.session.flush()
    first = mail._claim("a" * 32, 10)
    assert [r.recipient for r in first] == [member.email]
    assert mail._claim("b" * 32, 10) == []  # already leased

    smtp.start()
    assert mail.drain_outbox().claimed == 0  # the first drain "died" holding the lease
    clock.advance(mail.LEASE.total_seconds() + 1)
    assert mail.drain_outbox().sent == 1
    assert len(smtp.inbox.envelopes) == 1
    assert outbox(db).lease_token is None


def test_a_late_result_from_a_drain_that_lost_its_lease_is_ignored(db, clock, member):
    mail.queue_email(member.email, "租约测试", "正文")
    db.session.flush()
    [stale] = mail._claim("a" * 32, 10)
    clock.advance(mail.LEASE.total_seconds() + 1)
    assert mail.drain_outbox().sent == 1  # a second drain took the row over and sent it (log)
    mail._finish(stale, "a" * 32, OSError("too late"), {"MAIL_RETRY_SECONDS": 60, "MAIL_MAX_ATTEMPTS": 6})
    row = outbox(db)
    assert (row.status, row.last_error) == (OutboxStatus.SENT, None)

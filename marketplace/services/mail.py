"""Email through an outbox (DESIGN.md, "Notifications and email").

Writing an email only adds an :class:`EmailOutbox` row to the current session, so it commits
(or rolls back) with the change it reports. After a commit that added outbox rows, a drain job
is queued (:func:`_drain_after_commit`); a periodic drain catches anything left over, such as
rows waiting for a retry or rows whose queueing failed.

:func:`drain_outbox` sends the due rows: over SMTP when ``MAIL_SERVER`` is set, otherwise by
writing them to the log. It is safe to run twice at once: a drain first *claims* rows by
writing a lease (a random token and an expiry) in a short transaction, and only sends the rows
it claimed; on PostgreSQL the candidate rows are also locked with ``FOR UPDATE SKIP LOCKED`` so
that concurrent drains do not wait on each other. A row claimed by a drain that died becomes
claimable again when its lease runs out, so delivery is at least once.

A failed send increments ``attempts``, keeps the error in ``last_error`` and moves
``next_attempt_at`` back exponentially (``MAIL_RETRY_SECONDS`` × 2^(attempts-1)); after
``MAIL_MAX_ATTEMPTS`` the row is ``failed`` for good. Sending never touches the notification.
"""

from __future__ import annotations

import logging
import smtplib
import uuid
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr

from flask import current_app
from sqlalchemy import and_, event, or_, select, update
from sqlalchemy.orm import Session

from marketplace import jobs, timeutil
from marketplace.extensions import db
from marketplace.models import EmailOutbox, Notification, OutboxStatus, User

logger = logging.getLogger(__name__)

DRAIN_JOB = "mail.drain_outbox"
#: Rows claimed per round of a drain.
BATCH_SIZE = 50
#: How long a claim lasts; well above ``BATCH_SIZE`` × the SMTP timeout is not needed, since a
#: round commits every row as soon as it is sent.
LEASE = timedelta(minutes=10)
#: Rounds per drain run, so that one run always ends.
MAX_ROUNDS = 100
SUBJECT_PREFIX = "【全景江西】"
_SESSION_FLAG = "outbox_rows_added"


@dataclass
class DrainReport:
    sent: int = 0
    retrying: int = 0
    failed: int = 0

    @property
    def claimed(self) -> int:
        return self.sent + self.retrying + self.failed


# ---------------------------------------------------------------- writing


def queue_email(
    recipient: str, subject: str, body: str, notification: Notification | None = None
) -> EmailOutbox:
    """Add an email to the outbox in the current session (not committed)."""
    row = EmailOutbox(
        recipient=recipient,
        subject=subject[:200],
        body=body,
        notification=notification,
        status=OutboxStatus.PENDING,
        attempts=0,
        next_attempt_at=timeutil.now_naive_utc(),
    )
    db.session.add(row)
    db.session.info[_SESSION_FLAG] = True
    return row


def notification_email(user: User, notification: Notification) -> EmailOutbox:
    """The email copy of a notification, in the outbox."""
    site = current_app.config.get("SITE_URL", "").rstrip("/")
    lines = [f"{user.name}，您好：", "", notification.title]
    if notification.body:
        lines += ["", notification.body]
    if notification.url:
        lines += ["", f"查看详情：{site}{notification.url}"]
    lines += [
        "",
        "——",
        "全景江西 · 场景机会对接平台（本邮件由系统自动发送，请勿直接回复）",
        f"不想再收到此类邮件？请在 {site}/notifications/settings 修改邮件提醒设置。",
    ]
    return queue_email(user.email, SUBJECT_PREFIX + notification.title, "\n".join(lines), notification)


@event.listens_for(Session, "after_commit")
def _drain_after_commit(session: Session) -> None:
    """Queue a drain once a transaction that added outbox rows has committed."""
    if not session.info.pop(_SESSION_FLAG, False):
        return
    try:
        jobs.enqueue(DRAIN_JOB)
    except Exception:  # the periodic drain will send them; never fail the committed request
        logger.exception("could not queue the outbox drain; the periodic drain will send the emails")


@event.listens_for(Session, "after_soft_rollback")
def _forget_rolled_back(session: Session, previous_transaction) -> None:
    session.info.pop(_SESSION_FLAG, None)


# ---------------------------------------------------------------- sending


class _LogTransport:
    """No ``MAIL_SERVER``: every email is written to the log."""

    def send(self, message: EmailMessage) -> None:
        logger.info(
            "email (MAIL_SERVER not set, not sent) to=%s subject=%s\n%s",
            message["To"], message["Subject"], message.get_content(),
        )

    def close(self) -> None:
        pass


class _SmtpTransport:
    """One SMTP connection per drain round, opened on the first message."""

    def __init__(self, config: dict) -> None:
        self.config = config
        self._conn: smtplib.SMTP | None = None
        self._connect_error: Exception | None = None

    def _connect(self) -> smtplib.SMTP:
        cfg = self.config
        conn = smtplib.SMTP(cfg["MAIL_SERVER"], int(cfg.get("MAIL_PORT") or 25), timeout=cfg["MAIL_TIMEOUT"])
        try:
            if cfg.get("MAIL_USE_TLS"):
                conn.starttls()
            if cfg.get("MAIL_USERNAME"):
                conn.login(cfg["MAIL_USERNAME"], cfg.get("MAIL_PASSWORD") or "")
        except Exception:
            conn.close()
            raise
        return conn

    def send(self, message: EmailMessage) -> None:
        if self._connect_error is not None:  # do not hammer a server that is down
            raise self._connect_error
        if self._conn is None:
            try:
                self._conn = self._connect()
            except Exception as exc:
                self._connect_error = exc
                raise
        try:
            self._conn.send_message(message)
        except smtplib.SMTPServerDisconnected:
            self._conn = None
            raise

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.quit()
            except (OSError, smtplib.SMTPException):
                self._conn.close()
            self._conn = None


def _transport(config: dict) -> _LogTransport | _SmtpTransport:
    return _SmtpTransport(config) if config.get("MAIL_SERVER") else _LogTransport()


def build_message(row: EmailOutbox, sender: str) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = row.subject
    message["From"] = sender
    message["To"] = row.recipient
    message["Date"] = formatdate(timeutil.now_utc().timestamp())
    domain = parseaddr(sender)[1].rpartition("@")[2] or "localhost"
    message["Message-ID"] = make_msgid(f"outbox{row.id}", domain=domain)
    message.set_content(row.body)
    return message


def _claim(token: str, limit: int) -> list[EmailOutbox]:
    """Lease up to ``limit`` due rows to this drain and return them (committed)."""
    now = timeutil.now_naive_utc()
    claimable = or_(
        and_(EmailOutbox.status == OutboxStatus.PENDING, EmailOutbox.next_attempt_at <= now),
        and_(EmailOutbox.status == OutboxStatus.SENDING, EmailOutbox.lease_until < now),
    )
    ids = list(
        db.session.scalars(
            select(EmailOutbox.id)
            .where(claimable)
            .order_by(EmailOutbox.next_attempt_at, EmailOutbox.id)
            .limit(limit)
            .with_for_update(skip_locked=True)  # PostgreSQL; SQLite serialises writers anyway
        )
    )
    if ids:
        # ``claimable`` again: another drain may have taken a row since the select.
        db.session.execute(
            update(EmailOutbox)
            .where(EmailOutbox.id.in_(ids), claimable)
            .values(status=OutboxStatus.SENDING, lease_token=token, lease_until=now + LEASE)
            .execution_options(synchronize_session=False)
        )
    db.session.commit()
    if not ids:
        return []
    return list(db.session.scalars(select(EmailOutbox).where(EmailOutbox.lease_token == token)))


def _finish(row: EmailOutbox, token: str, error: Exception | None, config: dict) -> str:
    """Record the outcome of one send (only if this drain still holds the row)."""
    now = timeutil.now_naive_utc()
    attempts = row.attempts + 1
    if error is None:
        values = dict(status=OutboxStatus.SENT, sent_at=now, last_error=None)
    else:
        base = float(config["MAIL_RETRY_SECONDS"])
        gave_up = attempts >= int(config["MAIL_MAX_ATTEMPTS"])
        values = dict(
            status=OutboxStatus.FAILED if gave_up else OutboxStatus.PENDING,
            last_error=f"{type(error).__name__}: {error}"[:2000],
            next_attempt_at=now + timedelta(seconds=base * 2 ** (attempts - 1)),
        )
    db.session.execute(
        update(EmailOutbox)
        .where(EmailOutbox.id == row.id, EmailOutbox.lease_token == token)
        .values(attempts=attempts, lease_token=None, lease_until=None, **values)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    return values["status"]


def drain_outbox(batch_size: int = BATCH_SIZE) -> DrainReport:
    """Send every due outbox row (see the module docstring). Returns what happened."""
    config = current_app.config
    sender = config["MAIL_DEFAULT_SENDER"]
    report = DrainReport()
    for _ in range(MAX_ROUNDS):
        token = uuid.uuid4().hex
        rows = _claim(token, batch_size)
        if not rows:
            break
        transport = _transport(config)
        try:
            for row in rows:
                error: Exception | None = None
                try:
                    transport.send(build_message(row, sender))
                except (OSError, smtplib.SMTPException) as exc:
                    error = exc
                    logger.warning("email %s to %s not sent: %s", row.id, row.recipient, exc)
                status = _finish(row, token, error, config)
                if status == OutboxStatus.SENT:
                    report.sent += 1
                elif status == OutboxStatus.FAILED:
                    report.failed += 1
                    logger.error("email %s to %s given up after %s attempts", row.id, row.recipient,
                                 row.attempts + 1)
                else:
                    report.retrying += 1
        finally:
            transport.close()
    if report.claimed:
        logger.info("outbox drain: %s sent, %s to retry, %s failed", report.sent, report.retrying,
                    report.failed)
    return report

"""Background jobs: the Huey instance from the config, jobs in an app context, a real consumer."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
from huey import RedisHuey, SqliteHuey
from sqlalchemy import select

from marketplace import create_app, jobs
from marketplace.config import PROJECT_ROOT
from marketplace.extensions import db as _db
from marketplace.jobs import tasks
from marketplace.models import EmailOutbox, NotificationKind, OutboxStatus
from marketplace.services import matching, notifications
from tests.marketplace.test_mail import SmtpServer, free_port


def test_default_queue_is_sqlite_in_the_instance_folder(tmp_path):
    huey = jobs.create_huey({"HUEY_SQLITE_PATH": str(tmp_path / "huey.db"), "HUEY_IMMEDIATE": False})
    assert isinstance(huey, SqliteHuey)
    assert huey.storage.filename == str(tmp_path / "huey.db")
    assert not huey.immediate


def test_redis_url_selects_redis(tmp_path):
    huey = jobs.create_huey(
        {"REDIS_URL": "redis://127.0.0.1:6399/3", "HUEY_SQLITE_PATH": str(tmp_path / "x.db"),
         "HUEY_IMMEDIATE": False}
    )
    assert isinstance(huey, RedisHuey)  # connects lazily: no Redis is needed to build it
    assert not (tmp_path / "x.db").exists()


def test_testing_apps_run_jobs_immediately(app):
    assert app.extensions["jobs"].huey.immediate
    assert jobs.create_huey({"TESTING": True, "HUEY_SQLITE_PATH": "unused.db"}).immediate


def test_every_job_is_registered(app):
    registered = {name for name in app.extensions["jobs"].tasks if not name.startswith("tests.")}
    assert {
        tasks.DRAIN_OUTBOX, tasks.DEADLINE_DIGEST, tasks.NEW_MATCH_DIGEST, matching.ENCODE_JOB,
        tasks.SWEEP_STALE_JOBS,
    } <= registered  # other domains (imports) add their own


def test_unknown_job_is_refused(app):
    with pytest.raises(LookupError):
        jobs.enqueue("no.such.job")


@pytest.mark.no_app
def test_a_job_runs_in_its_own_app_context(app):
    """Enqueued from outside any app context, the job still finds its app and database."""
    with app.app_context():
        _db.session.add(EmailOutbox(recipient="a@example.cn", subject="主题", body="正文"))
        _db.session.commit()
    try:
        app.extensions["jobs"].enqueue(tasks.DRAIN_OUTBOX)  # immediate mode: runs now
        with app.app_context():
            assert _db.session.scalar(select(EmailOutbox.status)) == OutboxStatus.SENT
    finally:
        with app.app_context():
            _db.session.execute(EmailOutbox.__table__.delete())
            _db.session.commit()


def test_digests_run_daily_at_nine_beijing_time():
    schedule = tasks.daily_digest_time({"NOTIFY_DIGEST_HOUR": 9})
    assert schedule(datetime(2026, 12, 1, 1, 0))  # 09:00 Beijing = 01:00 UTC
    assert not schedule(datetime(2026, 12, 1, 9, 0))
    assert not schedule(datetime(2026, 12, 1, 1, 1))
    assert tasks.every_minute({})(datetime(2026, 12, 1, 13, 37))


def test_consume_refuses_immediate_mode(runner):
    result = runner.invoke(args=["jobs", "consume"])
    assert result.exit_code != 0
    assert "HUEY_IMMEDIATE" in result.output


def _wait_for(predicate, timeout: float, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if process.poll() is not None:
            pytest.fail(f"consumer exited with {process.returncode}:\n{log.read_text()}")
        time.sleep(0.2)
    pytest.fail(f"timed out; consumer output:\n{log.read_text()}")


def test_a_real_consumer_drains_the_outbox(app, database_url, make, tmp_path):
    """``flask jobs consume`` in its own process picks up a drain queued by the web side."""
    smtp = SmtpServer(free_port())
    smtp.start()
    queue_file = tmp_path / "huey.db"
    settings = {
        "SQLALCHEMY_DATABASE_URI": database_url,
        "HUEY_SQLITE_PATH": str(queue_file),
        "HUEY_IMMEDIATE": False,
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": smtp.port,
        "MATCHING_INDEX_DIR": app.config["MATCHING_INDEX_DIR"],
    }
    env = {
        **os.environ,
        "FLASK_APP": "wsgi.py",
        "SECRET_KEY": "test-secret",
        "DATABASE_URL": database_url,
        "HUEY_SQLITE_PATH": str(queue_file),
        "HUEY_IMMEDIATE": "0",
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": str(smtp.port),
        "MATCHING_INDEX_DIR": app.config["MATCHING_INDEX_DIR"],
    }
    log = tmp_path / "consumer.log"
    web = create_app({"TESTING": True, "SECRET_KEY": "test-secret", **settings})
    member = make.user(make.org(), email="consumer@example.cn")
    with log.open("w") as out:
        consumer = subprocess.Popen(
            [sys.executable, "-m", "flask", "jobs", "consume", "--no-periodic"],
            cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        with web.app_context():
            notifications.notify([_db.session.get(type(member), member.id)], NotificationKind.NEW_MATCH,
                                 "真实消费者测试")
            _db.session.commit()  # queues the drain in the SQLite queue file, nothing runs here
            assert _db.session.scalar(select(EmailOutbox.status)) == OutboxStatus.PENDING
            web.extensions["jobs"].enqueue(tasks.DRAIN_OUTBOX)  # a second drain: harmless

            def sent() -> bool:
                _db.session.rollback()
                return _db.session.scalar(select(EmailOutbox.status)) == OutboxStatus.SENT

            _wait_for(sent, 30, consumer, log)
            _db.session.remove()
        assert [e.rcpt_tos for e in smtp.inbox.envelopes] == [["consumer@example.cn"]]
    finally:
        consumer.send_signal(signal.SIGINT)  # graceful stop
        try:
            consumer.wait(timeout=15)
        except subprocess.TimeoutExpired:
            consumer.kill()
            consumer.wait()
        smtp.stop()
        with web.app_context():
            _db.engine.dispose()
    assert consumer.returncode == 0, log.read_text()

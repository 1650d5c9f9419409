"""Job records (后台任务): the life of a tracked job, rollback on failure, live progress, the stale
sweep, the CLI, and a real consumer killed mid-job.

The tracked jobs below are registered when this module is imported (before the test app is
built), under names starting with ``tests.``. The real consumer imports them through
``FLASK_APP=tests.marketplace.test_jobs_records:create_app``.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from marketplace import create_app, jobs, timeutil
from marketplace.config import PROJECT_ROOT
from marketplace.credit_code import make_code
from marketplace.extensions import db
from marketplace.jobs import tracked_job
from marketplace.models import Job, JobStatus, Organization
from marketplace.services import jobs as job_records
from marketplace.services.errors import DomainError
from tests import factories

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)  # 16:00 in Beijing

#: Hooks a test sets for the duration of one job (called between progress steps).
HOOKS: dict[str, object] = {}
CALLS: list[int] = []


def _new_org(name: str) -> Organization:
    """An organization written by a job (a random credit code: the consumer process has its own
    factory counter)."""
    body = "MA" + "".join(random.choices(factories._ORG_ALPHABET, k=6))
    code = make_code("91", "360100", body)
    org = Organization(name=name, kind="enterprise", credit_code=code, region_city="南昌市")
    db.session.add(org)
    db.session.flush()
    return org


@tracked_job("tests.jobs.steps")
def steps_job(job: Job, progress: job_records.Progress) -> dict:
    """Three steps; writes one organization (committed with the success)."""
    CALLS.append(job.id)
    assert (job.status, job.attempts) == (JobStatus.RUNNING, 1) and job.started_at is not None
    progress.start(3, "开始处理")
    _new_org(f"任务写入的单位{job.id}")
    for n in range(3):
        progress.advance(1, f"第{n + 1}步")
        hook = HOOKS.get("between_steps")
        if hook:
            hook(job)
    return {"summary": "已处理3步", "url": "/jobs/", "params": job.params}


@tracked_job("tests.jobs.write_then_fail")
def write_then_fail_job(job: Job, progress: job_records.Progress) -> None:
    progress.start(2, "写入中")
    _new_org(f"不应留下的单位{job.id}")
    progress.advance()
    raise RuntimeError("boom: simulated bug")


@tracked_job("tests.jobs.domain_error")
def domain_error_job(job: Job, progress: job_records.Progress) -> None:
    _new_org(f"不应留下的单位{job.id}")
    raise DomainError("第3行「单位名称」：不能为空")


@tracked_job("tests.jobs.interrupted")
def interrupted_job(job: Job, progress: job_records.Progress) -> None:
    _new_org(f"不应留下的单位{job.id}")
    raise KeyboardInterrupt


@tracked_job("tests.jobs.not_json")
def not_json_job(job: Job, progress: job_records.Progress) -> dict:
    return {"when": datetime(2026, 1, 1)}


@tracked_job("tests.jobs.flaky")
def flaky_job(job: Job, progress: job_records.Progress) -> dict:
    if job.attempts == 1:
        raise DomainError("第一次运行失败")
    return {"summary": f"第{job.attempts}次运行成功"}


@tracked_job("tests.jobs.swept_midway")
def swept_midway_job(job: Job, progress: job_records.Progress) -> dict:
    HOOKS["sweep"]()
    _new_org(f"不应留下的单位{job.id}")
    return {"summary": "不该成功"}


@tracked_job("tests.jobs.gate")
def gate_job(job: Job, progress: job_records.Progress) -> dict:
    """For the real consumer: write, report progress, then wait for the gate file (or be killed)."""
    gate = Path(job.params["gate"])
    progress.start(10, "等待放行")
    _new_org(f"等待放行的单位{job.id}")
    progress.advance(1, "已写入第1条")
    deadline = time.monotonic() + 120
    while not gate.exists():
        if time.monotonic() > deadline:
            raise RuntimeError("gate never opened")
        time.sleep(0.1)
    progress.advance(9, "已放行")
    return {"summary": "放行后完成"}


@pytest.fixture(autouse=True)
def _reset_hooks(app):
    HOOKS.clear()
    CALLS.clear()
    yield
    HOOKS.clear()
    app.extensions["jobs"].huey.storage.flush_all()  # live records outlive the emptied tables


def freeze(monkeypatch, moment: datetime) -> None:
    monkeypatch.setattr(timeutil, "now_utc", lambda: moment)


def org_count() -> int:
    db.session.rollback()
    return db.session.scalar(select(func.count()).select_from(Organization))


def run(kind: str, **kwargs) -> Job:
    job = job_records.create(kind, title=f"测试任务 {kind}", **kwargs)
    return job_records.submit(job)


# ---------------------------------------------------------------- the life of a job


def test_create_writes_a_queued_row(make):
    member = make.user(make.org())
    job = job_records.create(
        "tests.jobs.steps", title="导入产品清单：products.xlsx", actor=member,
        organization=member.organization, params={"kind": "products", "批次": 3}, total=120,
    )
    row = db.session.get(Job, job.id)
    assert (row.status, row.done, row.total, row.attempts) == (JobStatus.QUEUED, 0, 120, 0)
    assert (row.actor_id, row.organization_id) == (member.id, member.organization_id)
    assert row.params == {"kind": "products", "批次": 3}
    assert row.started_at is None and row.finished_at is None


def test_a_job_runs_from_queued_through_running_to_succeeded(make, monkeypatch):
    freeze(monkeypatch, T0)
    seen = []
    HOOKS["between_steps"] = lambda job: seen.append(job.status)
    job = run("tests.jobs.steps", params={"file": "a.xlsx"})
    assert seen == [JobStatus.RUNNING] * 3
    assert job.status == JobStatus.SUCCEEDED
    assert (job.done, job.total, job.attempts) == (3, 3, 1)
    assert job.message == "第3步"
    assert job.result == {"summary": "已处理3步", "url": "/jobs/", "params": {"file": "a.xlsx"}}
    assert job.started_at == job.finished_at == T0.replace(tzinfo=None)
    assert job.error is None


def test_what_a_job_writes_is_committed_with_its_success(make):
    before = org_count()
    job = run("tests.jobs.steps")
    assert org_count() == before + 1
    assert db.session.scalar(select(Organization.name).where(Organization.name == f"任务写入的单位{job.id}"))


def test_a_failing_job_rolls_back_what_it_wrote(make):
    make.org()
    before = org_count()
    job = run("tests.jobs.write_then_fail")
    assert org_count() == before
    assert job.status == JobStatus.FAILED
    assert job.message == job_records.FAILED_MESSAGE == "任务执行出错，未写入任何更改"
    assert "RuntimeError: boom: simulated bug" in job.error
    assert job.finished_at is not None and job.result is None
    assert (job.done, job.total) == (1, 2)  # how far it got


def test_a_failure_is_logged_with_its_traceback(make, caplog):
    with caplog.at_level(logging.ERROR, logger="marketplace.jobs"):
        run("tests.jobs.write_then_fail")
    assert "boom: simulated bug" in caplog.text and "Traceback" in caplog.text


def test_a_domain_error_shows_its_own_message(make):
    before = org_count()
    job = run("tests.jobs.domain_error")
    assert job.status == JobStatus.FAILED
    assert job.message == "第3行「单位名称」：不能为空"
    assert org_count() == before


def test_a_failed_job_is_not_retried_by_huey(make):
    job = run("tests.jobs.write_then_fail")
    assert job.attempts == 1
    assert list(jobs.get_queue().huey.pending()) == []


def test_an_interrupted_worker_marks_the_job_failed_and_stops(make):
    before = org_count()
    job = run("tests.jobs.interrupted")  # re-raised to Huey, which stops the task there
    assert (job.status, job.message) == (JobStatus.FAILED, job_records.INTERRUPTED_MESSAGE)
    assert org_count() == before


def test_a_result_that_is_not_json_fails_the_job(make):
    job = run("tests.jobs.not_json")
    assert job.status == JobStatus.FAILED
    assert job.message == job_records.FAILED_MESSAGE
    assert "not JSON serializable" in job.error


def test_a_job_that_is_not_queued_is_not_run_again(make):
    job = run("tests.jobs.steps")
    assert CALLS == [job.id]
    jobs.enqueue("tests.jobs.steps", job.id)  # a duplicate delivery
    jobs.enqueue("tests.jobs.steps", 2**31 - 1)  # a job that does not exist
    assert CALLS == [job.id]
    db.session.refresh(job)
    assert job.attempts == 1


def test_submit_refuses_a_kind_that_is_not_a_tracked_job(make):
    job = job_records.create("mail.drain_outbox", title="不是被跟踪的任务")
    with pytest.raises(LookupError):
        job_records.submit(job)


def test_a_retried_job_runs_again(make):
    member = make.user(make.org())
    job = run("tests.jobs.flaky", actor=member)
    assert (job.status, job.message) == (JobStatus.FAILED, "第一次运行失败")
    job_records.retry(member, job)
    assert (job.status, job.attempts, job.result) == (JobStatus.SUCCEEDED, 2, {"summary": "第2次运行成功"})
    assert job.error is None


def test_only_a_failed_job_can_be_retried(make):
    member = make.user(make.org())
    job = run("tests.jobs.steps", actor=member)
    assert not job_records.can(member, "retry", job)
    with pytest.raises(DomainError):
        job_records.retry(member, job)


def test_the_transition_table_drives_the_states():
    table = {(a, t.target) for a, t in job_records.TRANSITIONS.items()}
    assert table == {
        ("start", JobStatus.RUNNING), ("succeed", JobStatus.SUCCEEDED), ("fail", JobStatus.FAILED),
        ("interrupt", JobStatus.FAILED), ("retry", JobStatus.QUEUED),
    }
    assert job_records.TRANSITIONS["interrupt"].who == job_records.SWEEP


# ---------------------------------------------------------------- progress during a run


def _status_from_outside(app, client, job_id: int) -> dict:
    """The status endpoint, read through a new app context (its own database connection)."""
    with app.app_context():
        response = client.get(f"/jobs/{job_id}/status.json")
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json()


def _row_from_outside(app, job_id: int) -> tuple[int, int | None]:
    with app.app_context():
        row = db.session.get(Job, job_id)
        return row.done, row.total


def test_progress_is_visible_while_the_job_holds_its_write_transaction(app, make, auth, client, monkeypatch):
    monkeypatch.setattr(job_records, "LIVE_INTERVAL", 0)
    monkeypatch.setattr(job_records, "ROW_INTERVAL", 0)
    member = make.user(make.org())
    auth.login(member)
    seen, rows = [], []

    def look(job):
        state = _status_from_outside(app, client, job.id)
        seen.append((state["status"], state["done"], state["total"], state["percent"], state["message"]))
        rows.append(_row_from_outside(app, job.id))

    HOOKS["between_steps"] = look
    job = run("tests.jobs.steps", actor=member)
    assert job.status == JobStatus.SUCCEEDED
    assert seen == [
        ("running", 1, 3, 33, "第1步"), ("running", 2, 3, 67, "第2步"), ("running", 3, 3, 100, "第3步"),
    ]
    if db.engine.dialect.name == "sqlite":
        # The job's write transaction holds the database lock: after the start, the row waits
        # for the end.
        assert rows == [(0, 3)] * 3
    else:
        # PostgreSQL: a separate connection writes the row beside the open transaction.
        assert rows == [(1, 3), (2, 3), (3, 3)]


def test_progress_is_flushed_to_the_row_when_no_write_is_open(app, make, monkeypatch):
    monkeypatch.setattr(job_records, "ROW_INTERVAL", 0)
    rows = []

    def reads_only(job, progress):
        db.session.scalar(select(func.count()).select_from(Organization))
        progress.start(4, "只读")
        progress.advance(2)
        rows.append(_row_from_outside(app, job.id))
        return None

    job = job_records.create("tests.jobs.steps", title="只读任务")
    job_records.run_tracked(job.id, reads_only)
    assert rows == [(2, 4)]
    db.session.refresh(job)
    assert (job.status, job.done, job.total) == (JobStatus.SUCCEEDED, 4, 4)


def test_live_progress_writes_are_throttled(make, monkeypatch):
    puts = []
    monkeypatch.setattr(job_records, "_put_live", lambda job_id, record, *args: puts.append(record["done"]))
    clock = [100.0]
    monkeypatch.setattr(job_records, "_clock", lambda: clock[0])
    job = job_records.create("tests.jobs.steps", title="节流")
    progress = job_records.JobProgress(job, db.session)
    progress.start(1000)
    for _ in range(1000):  # 1000 steps in 2 seconds
        clock[0] += 0.002
        progress.advance()
    assert puts[0] == 0 and 4 <= len(puts) <= 6  # start + about 2 per second
    assert progress.done == 1000


def test_a_throttled_report_reaches_users_within_the_live_interval(make, monkeypatch):
    """A job that reports twice in a row and then works for long (an import's slow step): the
    second report is throttled, and the heartbeat thread sends it at the throttle's trailing
    edge, not at the next 30-second heartbeat."""
    records = []
    monkeypatch.setattr(job_records, "_put_live", lambda job_id, record, *args: records.append(dict(record)))
    job = job_records.create("tests.jobs.steps", title="节流后补发")
    progress = job_records.JobProgress(job, db.session)
    with job_records.Heartbeat(progress, interval=30):
        progress.start(10, "开始")
        progress.advance(1, "已写入第1条")  # within LIVE_INTERVAL of start: throttled
        assert [r["done"] for r in records] == [0]
        deadline = time.monotonic() + 5
        while len(records) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert records[-1]["done"] == 1 and records[-1]["message"] == "已写入第1条"
        assert time.monotonic() < deadline
        sent = len(records)
        time.sleep(job_records.LIVE_INTERVAL * 3)
    assert len(records) == sent  # nothing more to send: no heartbeat before its 30 s


def test_the_heartbeat_thread_refreshes_the_live_record_until_stopped(make, monkeypatch):
    beats = []
    monkeypatch.setattr(job_records, "_put_live", lambda job_id, record, *args: beats.append(job_id))
    job = job_records.create("tests.jobs.steps", title="心跳")
    with job_records.Heartbeat(job_records.JobProgress(job, db.session), interval=0.02):
        deadline = time.monotonic() + 10
        while len(beats) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert len(beats) >= 3 and set(beats) == {job.id}
    stopped = len(beats)
    time.sleep(0.1)
    assert len(beats) == stopped


def test_the_heartbeat_stays_well_inside_the_stale_limit(app, monkeypatch):
    assert job_records.heartbeat_seconds() == 30
    monkeypatch.setitem(app.config, "JOB_STALE_SECONDS", 20)
    assert job_records.heartbeat_seconds() == 5


def test_the_live_record_is_dropped_when_the_job_ends(make):
    job = run("tests.jobs.steps")
    assert job_records.live_record(job.id) is None


def test_progress_adapter_turns_absolute_counts_into_steps():
    events = []

    class Recorder:
        def start(self, total, message=""):
            events.append(("start", total))

        def advance(self, n=1, message=None):
            events.append(("advance", n))

        def set_message(self, message):
            events.append(("message", message))

    report = job_records.as_callback(Recorder())
    for done, total in [(0, 10), (4, 10), (10, 10), (0, 3), (3, 3)]:
        report(done, total)
    assert events == [("start", 10), ("advance", 4), ("advance", 6), ("start", 3), ("advance", 3)]


def test_null_progress_accepts_the_protocol():
    progress = job_records.NullProgress()
    progress.start(None, "x")
    progress.advance(3, "y")
    progress.set_message("z")


def test_click_progress_draws_a_bar():
    @click.command()
    def command():
        with job_records.ClickProgress("导入产品") as progress:
            progress.start(5)
            for _ in range(5):
                progress.advance()
        click.echo("done")

    result = CliRunner().invoke(command)
    assert result.exit_code == 0, result.output
    assert "导入产品" in result.output and result.output.rstrip().endswith("done")


# ---------------------------------------------------------------- the stale sweep


def _running_since(make, moment: datetime, kind: str = "tests.jobs.steps") -> Job:
    job = job_records.create(kind, title="运行中的任务")
    job.status = JobStatus.RUNNING
    job.started_at = job.heartbeat_at = moment.replace(tzinfo=None)
    db.session.commit()
    return job


def test_a_running_job_without_heartbeat_for_too_long_is_marked_failed(make, monkeypatch):
    job = _running_since(make, T0)
    freeze(monkeypatch, T0 + timedelta(seconds=599))
    assert job_records.sweep_stale() == []
    freeze(monkeypatch, T0 + timedelta(seconds=601))
    assert job_records.sweep_stale() == [job.id]
    db.session.refresh(job)
    assert job.status == JobStatus.FAILED
    assert job.message == "后台进程中断，任务未完成，未写入任何更改"
    assert job.finished_at == (T0 + timedelta(seconds=601)).replace(tzinfo=None)
    assert "no sign of life" in job.error


def test_a_fresh_live_heartbeat_keeps_a_job_alive(make, monkeypatch):
    job = _running_since(make, T0)
    freeze(monkeypatch, T0 + timedelta(seconds=590))
    job_records.JobProgress(job, db.session).beat()  # the worker's heartbeat thread
    freeze(monkeypatch, T0 + timedelta(seconds=700))
    assert job_records.sweep_stale() == []
    freeze(monkeypatch, T0 + timedelta(seconds=1200))
    assert job_records.sweep_stale() == [job.id]


def test_the_stale_limit_comes_from_the_config(app, make, monkeypatch):
    monkeypatch.setitem(app.config, "JOB_STALE_SECONDS", 60)
    job = _running_since(make, T0)
    freeze(monkeypatch, T0 + timedelta(seconds=61))
    assert job_records.sweep_stale() == [job.id]


def test_the_sweep_leaves_queued_and_finished_jobs_alone(make, monkeypatch):
    freeze(monkeypatch, T0)
    queued = job_records.create("tests.jobs.steps", title="排队")
    done = run("tests.jobs.steps")
    freeze(monkeypatch, T0 + timedelta(days=3))
    assert job_records.sweep_stale() == []
    db.session.refresh(queued)
    db.session.refresh(done)
    assert (queued.status, done.status) == (JobStatus.QUEUED, JobStatus.SUCCEEDED)


def test_a_job_swept_before_it_ends_rolls_its_work_back(app, make, monkeypatch):
    freeze(monkeypatch, T0)

    def sweep_from_elsewhere():
        freeze(monkeypatch, T0 + timedelta(hours=1))
        with app.app_context():
            assert len(job_records.sweep_stale()) == 1

    HOOKS["sweep"] = sweep_from_elsewhere
    before = org_count()
    job = run("tests.jobs.swept_midway")
    assert (job.status, job.message) == (JobStatus.FAILED, job_records.INTERRUPTED_MESSAGE)
    assert org_count() == before


def test_the_sweep_is_a_periodic_job(app):
    from marketplace.jobs import tasks

    spec = jobs._REGISTRY[tasks.SWEEP_STALE_JOBS]
    schedule = spec.schedule(app.config)
    assert schedule(datetime(2026, 12, 1, 8, 5)) and not schedule(datetime(2026, 12, 1, 8, 6))


def test_the_consumer_sweeps_before_it_starts(make, database_url, tmp_path, monkeypatch):
    worker = create_app({
        "TESTING": True, "SECRET_KEY": "x", "SQLALCHEMY_DATABASE_URI": database_url,
        "HUEY_IMMEDIATE": False, "HUEY_SQLITE_PATH": str(tmp_path / "huey.db"),
    })
    job = _running_since(make, T0)
    freeze(monkeypatch, T0 + timedelta(hours=2))
    started = []

    class Consumer:
        def run(self):
            started.append(True)

    huey = worker.extensions["jobs"].huey
    monkeypatch.setattr(huey, "create_consumer", lambda **kwargs: Consumer())
    with worker.app_context():  # the CLI runs in the current app context
        try:
            result = worker.test_cli_runner().invoke(args=["jobs", "consume", "--no-periodic"])
        finally:
            db.session.remove()
            db.engine.dispose()
    assert result.exit_code == 0, result.output
    assert f"marked 1 interrupted job(s) failed: {job.id}" in result.output and started == [True]
    db.session.refresh(job)
    assert job.status == JobStatus.FAILED


# ---------------------------------------------------------------- the CLI


def test_jobs_list_prints_recent_jobs(make, runner):
    member = make.user(make.org(), email="importer@example.cn")
    ok = run("tests.jobs.steps", actor=member)
    failed = run("tests.jobs.write_then_fail")
    result = runner.invoke(args=["jobs", "list"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith(f"#{failed.id} ") and lines[1].startswith(f"#{ok.id} ")
    assert "succeeded" in lines[1] and "3/3 100%" in lines[1] and "importer@example.cn" in lines[1]
    assert "failed" in lines[0] and "任务执行出错" in lines[0]


def test_jobs_list_filters_by_status(make, runner):
    run("tests.jobs.steps")
    failed = run("tests.jobs.write_then_fail")
    result = runner.invoke(args=["jobs", "list", "--status", "failed"])
    assert result.exit_code == 0
    assert [line.split()[0] for line in result.output.splitlines()] == [f"#{failed.id}"]
    assert runner.invoke(args=["jobs", "list", "--status", "nonsense"]).exit_code != 0


def test_jobs_list_without_jobs(runner):
    assert runner.invoke(args=["jobs", "list"]).output.strip() == "no jobs"


# ---------------------------------------------------------------- index encoding has a record


def test_index_encoding_leaves_a_job_record_for_organizers(make):
    from marketplace.models import EntryStatus
    from marketplace.services import batches, matching
    from tests.marketplace.test_matching_app import build_corpus

    corpus = build_corpus(make)
    matching.get_service().rebuild()
    batch = make.batch("product")
    make.product(corpus.firm, EntryStatus.APPROVED, batch, name="智慧停车泊位共享新品", fields=("交通出行",))
    batches.publish_batch(make.organizer(), batch)
    records = db.session.scalars(select(Job).where(Job.kind == matching.ENCODE_JOB)).all()
    assert [(j.title, j.status, j.done, j.total, j.actor_id) for j in records] == [
        ("更新匹配索引向量", JobStatus.SUCCEEDED, 1, 1, None)
    ]
    matching.encoding.encode_entries_job()  # nothing left to encode: no new record
    assert db.session.scalar(select(func.count()).select_from(Job)) == 1


# ---------------------------------------------------------------- a real consumer


def _wait(predicate, timeout: float, process: subprocess.Popen, log: Path, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        db.session.rollback()
        if predicate():
            return
        if process.poll() is not None:
            pytest.fail(f"consumer exited with {process.returncode} waiting for {what}:\n{log.read_text()}")
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}; consumer output:\n{log.read_text()}")


def test_a_real_consumer_runs_a_job_and_a_killed_one_is_swept(app, make, database_url, tmp_path, monkeypatch):
    """``flask jobs consume`` in its own process runs a tracked job to success, shows the live
    progress of the next one to the web side, and is SIGKILLed mid-job: nothing it wrote stays,
    and the sweep marks the job failed."""
    queue_file = tmp_path / "huey.db"
    web = create_app({
        "TESTING": True, "SECRET_KEY": "test-secret", "SQLALCHEMY_DATABASE_URI": database_url,
        "HUEY_IMMEDIATE": False, "HUEY_SQLITE_PATH": str(queue_file),
        "MATCHING_INDEX_DIR": app.config["MATCHING_INDEX_DIR"],
    })
    env = {
        **os.environ,
        "FLASK_APP": "tests.marketplace.test_jobs_records:create_app",
        "SECRET_KEY": "test-secret",
        "DATABASE_URL": database_url,
        "HUEY_SQLITE_PATH": str(queue_file),
        "HUEY_IMMEDIATE": "0",
        "MATCHING_MODEL": "offline",
        "MATCHING_INDEX_DIR": app.config["MATCHING_INDEX_DIR"],
    }
    log = tmp_path / "consumer.log"
    gate = tmp_path / "gate"
    member = make.user(make.org())
    before = org_count()
    with web.app_context():  # both queued in the file before the consumer starts; nothing runs here
        first = job_records.submit(job_records.create("tests.jobs.steps", title="真实消费者", actor=member))
        second = job_records.submit(
            job_records.create("tests.jobs.gate", title="被杀死的任务", params={"gate": str(gate)})
        )
        first_id, second_id = first.id, second.id
        assert (first.status, second.status) == (JobStatus.QUEUED, JobStatus.QUEUED)
        db.session.remove()
    with log.open("w") as out:
        consumer = subprocess.Popen(
            [sys.executable, "-m", "flask", "jobs", "consume", "--no-periodic"],
            cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        with web.app_context():

            def first_done() -> bool:
                return db.session.get(Job, first_id).status == JobStatus.SUCCEEDED

            _wait(first_done, 60, consumer, log, "the first job")
            assert db.session.get(Job, first_id).result["summary"] == "已处理3步"

            def mid_run() -> bool:
                state = job_records.snapshot(db.session.get(Job, second_id))
                return state.status == JobStatus.RUNNING and state.done == 1

            _wait(mid_run, 60, consumer, log, "the second job's progress")
            state = job_records.snapshot(db.session.get(Job, second_id))
            assert (state.total, state.message, state.percent) == (10, "已写入第1条", 10)
            db.session.remove()
    finally:
        if consumer.poll() is None:
            consumer.send_signal(signal.SIGKILL)
        consumer.wait(timeout=15)
    assert consumer.returncode == -signal.SIGKILL, log.read_text()
    assert org_count() == before + 1  # the first job's organization; the killed one left nothing
    killed = db.session.get(Job, second_id)
    assert killed.status == JobStatus.RUNNING  # nobody has noticed yet
    freeze(monkeypatch, timeutil.now_utc() + timedelta(seconds=job_records.DEFAULT_STALE_SECONDS + 60))
    with web.app_context():
        assert job_records.sweep_stale() == [second_id]
        db.session.remove()
        db.engine.dispose()
    db.session.refresh(killed)
    assert (killed.status, killed.message) == (JobStatus.FAILED, job_records.INTERRUPTED_MESSAGE)
    assert org_count() == before + 1

"""后台任务 pages: who sees which job, the list and its filters, the job page with its progress bar,
the JSON status, retrying a failed job, and malformed ids."""

from __future__ import annotations

import pytest
from flask import g

from marketplace.extensions import db
from marketplace.models import Job, JobStatus
from marketplace.services import jobs as job_records
from tests.conftest import AuthActions
from tests.marketplace.test_jobs_records import run  # also registers the tests.jobs.* jobs

VIEWERS = ["anonymous", "actor", "colleague", "other_member", "organizer", "admin"]
MAY_VIEW = {"actor", "organizer", "admin"}


@pytest.fixture(autouse=True)
def _forget_live_records(app):
    """Live progress lives in the (in-memory) queue storage, which outlives the emptied tables."""
    yield
    app.extensions["jobs"].huey.storage.flush_all()


@pytest.fixture
def people(make):
    home = make.org()
    actor = make.user(home)
    return {
        "actor": actor,
        "colleague": make.user(home),
        "other_member": make.user(make.org()),
        "organizer": make.organizer(),
        "admin": make.admin(),
        "home": home,
    }


def _job(people, status: str = JobStatus.RUNNING, **kw) -> Job:
    job = job_records.create(
        "tests.jobs.steps", title="导入产品清单：产品.xlsx", actor=people["actor"],
        organization=people["home"], **kw,
    )
    job.status = status
    db.session.commit()
    return job


def _login(auth, people, who: str) -> None:
    if who != "anonymous":
        auth.login(people[who])


@pytest.mark.parametrize("who", VIEWERS)
def test_who_may_see_a_job_page(client, auth, people, who):
    job = _job(people)
    _login(auth, people, who)
    response = client.get(f"/jobs/{job.id}")
    if who == "anonymous":
        assert response.status_code == 302 and "/auth/login" in response.headers["Location"]
    else:
        assert response.status_code == (200 if who in MAY_VIEW else 403)


@pytest.mark.parametrize("who", VIEWERS)
def test_who_may_read_a_jobs_status(client, auth, people, who):
    job = _job(people)
    _login(auth, people, who)
    response = client.get(f"/jobs/{job.id}/status.json")
    expected = 401 if who == "anonymous" else 200 if who in MAY_VIEW else 403
    assert response.status_code == expected
    assert response.is_json
    if expected != 200:
        assert "error" in response.get_json() and "title" not in response.get_json()


@pytest.mark.parametrize("who", VIEWERS)
def test_the_permission_function_matches_the_pages(people, who):
    job = _job(people)
    user = people.get(who)
    assert job_records.can_view(user, job) is (who in MAY_VIEW)


def test_a_job_without_actor_is_for_organizers_only(make, people):
    job = job_records.create("matching.encode_entries", title="更新匹配索引向量")
    assert [who for who in VIEWERS if job_records.can_view(people.get(who), job)] == ["organizer", "admin"]


@pytest.mark.parametrize(
    "url", ["/jobs/abc", "/jobs/0", "/jobs/-1", "/jobs/1.5", "/jobs/99999999999999", "/jobs/2147483647",
            "/jobs/0/status.json", "/jobs/abc/status.json", "/jobs/99999999999999/status.json"],
)
def test_malformed_or_unknown_ids_are_404(client, auth, people, url):
    auth.login(people["organizer"])
    assert client.get(url).status_code == 404


def test_unknown_job_status_is_a_json_404(client, auth, people):
    auth.login(people["actor"])
    response = client.get("/jobs/2147483647/status.json")
    assert response.status_code == 404 and response.get_json()["error"]["message"] == "任务不存在"


def test_the_status_json_carries_the_progress(client, auth, people):
    job = _job(people, total=40)
    job.done, job.message = 10, "正在校验第10行"
    db.session.commit()
    auth.login(people["actor"])
    data = client.get(f"/jobs/{job.id}/status.json").get_json()
    keys = ("status", "status_label", "finished", "done", "total", "percent", "message")
    assert {k: data[k] for k in keys} == {
        "status": "running", "status_label": "进行中", "finished": False, "done": 10, "total": 40,
        "percent": 25, "message": "正在校验第10行",
    }
    assert data["url"] is None and data["result"] is None


def test_the_status_json_prefers_the_live_record_of_a_running_job(client, auth, people):
    job = _job(people, total=40)
    progress = job_records.JobProgress(job, db.session)
    progress.total, progress.done, progress.message = 40, 30, "写入中"
    progress.beat()
    auth.login(people["actor"])
    data = client.get(f"/jobs/{job.id}/status.json").get_json()
    assert (data["done"], data["percent"], data["message"]) == (30, 75, "写入中")


def test_a_running_job_page_shows_a_progress_bar_that_refreshes(client, auth, people):
    job = _job(people, total=200)
    job.done, job.message = 50, "正在校验"
    db.session.commit()
    auth.login(people["actor"])
    html = client.get(f"/jobs/{job.id}").get_data(as_text=True)
    assert f'data-status-url="/jobs/{job.id}/status.json"' in html and 'data-finished="0"' in html
    assert '<progress class="job-progress-bar w-100" max="100" value="25"' in html
    assert "25%" in html and "正在校验" in html and "50 / 200" in html
    assert "/static/jobs.js" in html
    assert "<noscript>" in html and "刷新页面" in html


def test_a_succeeded_job_links_its_result(client, auth, people):
    auth.login(people["actor"])
    job = run("tests.jobs.steps", actor=people["actor"])
    html = client.get(f"/jobs/{job.id}").get_data(as_text=True)
    assert "任务已完成" in html and "已处理3步" in html
    assert 'href="/jobs/">查看结果</a>' in html
    main = html.split('<main', 1)[1]
    assert 'data-finished="1"' in html and "<noscript>" not in main


def test_a_result_link_to_another_site_is_not_shown(make, people):
    job = _job(people, status=JobStatus.SUCCEEDED)
    job.result = {"url": "//evil.example.com/x"}
    db.session.commit()
    assert job_records.snapshot(job).url is None


@pytest.mark.parametrize("who, sees_detail", [("actor", False), ("organizer", True)])
def test_a_failed_job_shows_its_message_and_organizers_the_detail(client, auth, people, who, sees_detail):
    job = run("tests.jobs.write_then_fail", actor=people["actor"])
    auth.login(people[who])
    html = client.get(f"/jobs/{job.id}").get_data(as_text=True)
    assert "任务失败" in html and "任务执行出错，未写入任何更改" in html
    assert ("boom: simulated bug" in html) is sees_detail


def test_the_list_shows_a_member_only_their_own_jobs(client, auth, people):
    mine = _job(people)
    theirs = job_records.create("tests.jobs.steps", title="别人的任务", actor=people["colleague"])
    auth.login(people["actor"])
    html = client.get("/jobs/").get_data(as_text=True)
    assert "我的后台任务" in html
    assert f'href="/jobs/{mine.id}"' in html and f'href="/jobs/{theirs.id}"' not in html


def test_organizers_see_every_job_and_filter_by_kind_and_status(client, auth, people):
    member_job = _job(people)
    failed = run("tests.jobs.write_then_fail")
    system = job_records.create("matching.encode_entries", title="更新匹配索引向量")
    auth.login(people["organizer"])
    listed = client.get("/jobs/").get_data(as_text=True)
    assert all(f'href="/jobs/{j.id}"' in listed for j in (member_job, failed, system))
    by_status = client.get("/jobs/?status=failed").get_data(as_text=True)
    assert f'href="/jobs/{failed.id}"' in by_status and f'href="/jobs/{member_job.id}"' not in by_status
    by_kind = client.get("/jobs/?kind=matching.encode_entries").get_data(as_text=True)
    assert f'href="/jobs/{system.id}"' in by_kind and f'href="/jobs/{failed.id}"' not in by_kind
    assert "匹配索引向量" in by_kind


@pytest.mark.parametrize(
    "query, status",
    [("status=nonsense", 200), ("kind=no.such.kind", 200), ("page=abc", 200), ("page=-3", 200),
     ("status=" + "x" * 5000, 200), ("status=%00", 400)],
)
def test_malformed_filters_are_not_server_errors(client, auth, people, query, status):
    _job(people)
    auth.login(people["organizer"])
    assert client.get(f"/jobs/?{query}").status_code == status


def test_an_invalid_filter_is_explained_and_ignored(client, auth, people):
    job = _job(people)
    auth.login(people["organizer"])
    html = client.get("/jobs/?status=nonsense").get_data(as_text=True)
    assert f'href="/jobs/{job.id}"' in html and "is-invalid" in html


def test_the_user_menu_links_the_jobs(client, auth, people):
    auth.login(people["actor"])
    html = client.get("/jobs/").get_data(as_text=True)
    assert 'href="/jobs/"' in html and "后台任务" in html


def test_retrying_a_failed_job_from_its_page(client, auth, people):
    job = run("tests.jobs.flaky", actor=people["actor"])
    auth.login(people["actor"])
    html = client.get(f"/jobs/{job.id}").get_data(as_text=True)
    assert f'action="/jobs/{job.id}/retry"' in html
    response = auth.post(f"/jobs/{job.id}/retry")
    assert response.status_code == 302
    db.session.refresh(job)
    assert (job.status, job.attempts) == (JobStatus.SUCCEEDED, 2)


def test_retry_needs_the_csrf_token(client, auth, people):
    job = run("tests.jobs.flaky", actor=people["actor"])
    auth.login(people["actor"])
    assert client.post(f"/jobs/{job.id}/retry").status_code == 400
    db.session.refresh(job)
    assert job.status == JobStatus.FAILED


@pytest.mark.parametrize("who, status", [("colleague", 403), ("other_member", 403), ("organizer", 302)])
def test_who_may_retry(app, client, people, who, status):
    job = run("tests.jobs.flaky", actor=people["actor"])
    g.pop("_login_user", None)
    g.pop("csrf_token", None)
    auth = AuthActions(client)
    auth.login(people[who])
    assert auth.post(f"/jobs/{job.id}/retry").status_code == status


def test_a_job_that_cannot_be_retried_has_no_button(client, auth, people):
    job = run("tests.jobs.steps", actor=people["actor"])
    auth.login(people["actor"])
    assert f'action="/jobs/{job.id}/retry"' not in client.get(f"/jobs/{job.id}").get_data(as_text=True)
    response = auth.post(f"/jobs/{job.id}/retry", follow_redirects=True)
    assert response.status_code == 200 and "该任务当前状态不能重新运行" in response.get_data(as_text=True)
    db.session.refresh(job)
    assert (job.status, job.attempts) == (JobStatus.SUCCEEDED, 1)


def test_the_progress_macro_renders_for_other_pages(app, people):
    from flask import render_template_string

    job = _job(people, total=4)
    with app.test_request_context("/"):
        html = render_template_string(
            "{% from 'jobs/_progress.html' import job_progress %}"
            "{{ job_progress(job, reload_when_done=true) }}",
            job=job,
        )
    assert f'id="job-progress-{job.id}"' in html and "data-reload-when-done" in html and "<progress" in html

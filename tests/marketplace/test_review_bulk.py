"""Bulk approve in the review queue (issue 12, item 9).

An organizer ticks submitted entries of one kind, chooses an open batch, sees a confirmation
page and confirms. The service approves them all in one transaction, with the same per-entry
rules as a single approval, or none of them; each entry gets its audit event and notification.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from sqlalchemy import func, select

from marketplace.extensions import db
from marketplace.models import AuditEvent, BatchStatus, EntryStatus, Notification, Opportunity
from marketplace.services import review
from marketplace.services.errors import PermissionDenied, ValidationFailed

SUBMITTED = EntryStatus.SUBMITTED


@pytest.fixture
def world(make):
    publisher = make.org(kind="government")
    firm = make.org(kind="enterprise")
    batch = make.batch("opportunity")
    return SimpleNamespace(
        publisher=publisher,
        firm=firm,
        member=make.user(publisher),
        publisher_user=make.user(publisher),
        organizer=make.organizer(),
        admin=make.admin(),
        batch=batch,
        product_batch=make.batch("product"),
        published_batch=make.batch("opportunity", status=BatchStatus.PUBLISHED),
        first=make.opportunity(publisher, status=SUBMITTED, title="鹰潭市智慧路灯单灯控制改造"),
        second=make.opportunity(publisher, status=SUBMITTED, title="上饶市农村污水处理设施远程监管"),
        draft=make.opportunity(publisher, status=EntryStatus.DRAFT, title="抚州市中小学课后服务管理平台"),
        product=make.product(firm, status=EntryStatus.SUBMITTED),
    )


def _statuses(*entries) -> list[str]:
    db.session.expire_all()
    return [db.session.get(type(e), e.id).status for e in entries]


def _form(world, *entries, batch=None, kind="opportunity") -> dict:
    return {"kind": kind, "batch_id": str((batch or world.batch).id), "entries": [str(e.id) for e in entries]}


# ---------------------------------------------------------------- who may


@pytest.mark.parametrize(
    ("actor", "expected"),
    [("anonymous", 302), ("member", 403), ("publisher_user", 403), ("organizer", 302), ("admin", 302)],
)
def test_only_organizers_and_admins_may_bulk_approve(client, auth, world, actor, expected):
    if actor != "anonymous":
        auth.login(getattr(world, actor))
    response = auth.post("/admin/review/bulk/approve", _form(world, world.first, world.second))
    assert response.status_code == expected
    done = actor in ("organizer", "admin")
    assert _statuses(world.first, world.second) == [EntryStatus.APPROVED if done else SUBMITTED] * 2
    if actor == "anonymous":
        assert "/auth/login" in response.headers["Location"]


def test_the_service_refuses_members(world):
    with pytest.raises(PermissionDenied):
        review.bulk_approve(world.member, "opportunity", [world.first.id], world.batch.id)


# ---------------------------------------------------------------- the two steps


def test_the_queue_offers_checkboxes_and_the_open_batches_of_each_kind(client, auth, world):
    auth.login(world.organizer)
    html = client.get("/admin/review").get_data(as_text=True)
    assert f'name="entries" value="{world.first.id}"' in html
    assert f'<option value="{world.batch.id}">{world.batch.title}</option>' in html
    assert f'<option value="{world.published_batch.id}"' not in html
    assert f'<option value="{world.product_batch.id}">' in html  # the product section's own batch


def test_step_one_shows_the_selection_and_changes_nothing(client, auth, world):
    auth.login(world.organizer)
    response = auth.post("/admin/review/bulk", _form(world, world.first, world.second))
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "确认批量通过（2 个）" in html
    assert world.first.title in html and world.second.title in html and world.batch.title in html
    assert _statuses(world.first, world.second) == [EntryStatus.SUBMITTED] * 2


def test_confirming_approves_every_entry_into_the_batch(client, auth, world):
    auth.login(world.organizer)
    response = auth.post("/admin/review/bulk/approve", _form(world, world.first, world.second))
    assert response.status_code == 302
    db.session.expire_all()
    for entry in (world.first, world.second):
        fresh = db.session.get(Opportunity, entry.id)
        assert (fresh.status, fresh.batch_id) == (EntryStatus.APPROVED, world.batch.id)
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert f"已批量审核通过2个条目，入选「{world.batch.title}」" in page


def test_each_entry_gets_its_audit_event_and_notification(world):
    review.bulk_approve(world.organizer, "opportunity", [world.first.id, world.second.id], world.batch.id)
    events = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "entry.approve")).all()
    assert sorted(e.object_id for e in events) == sorted([world.first.id, world.second.id])
    assert all(e.actor_id == world.organizer.id and "批量审核通过" in e.summary for e in events)
    notes = db.session.scalar(
        select(func.count(Notification.id)).where(Notification.user_id == world.member.id)
    )
    assert notes == 2


# ---------------------------------------------------------------- all or nothing


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("not submitted", "「抚州市中小学课后服务管理平台」：「草稿」状态的条目不能审核通过"),
        ("published batch", "该批次已发布，不能再加入条目"),
        ("other kind of batch", "请选择同类清单的批次"),
        ("no entries", "请至少勾选一个待审核条目"),
        ("unknown entry", "部分所选条目不存在"),
    ],
)
def test_any_problem_leaves_every_entry_untouched(world, case, message):
    ids, batch = [world.first.id, world.second.id], world.batch
    if case == "not submitted":
        ids.append(world.draft.id)
    elif case == "published batch":
        batch = world.published_batch
    elif case == "other kind of batch":
        batch = world.product_batch
    elif case == "no entries":
        ids = []
    elif case == "unknown entry":
        ids.append(world.draft.id + 1000)
    with pytest.raises(ValidationFailed) as raised:
        review.bulk_approve(world.organizer, "opportunity", ids, batch.id)
    assert message in raised.value.message
    assert _statuses(world.first, world.second, world.draft) == [
        EntryStatus.SUBMITTED, EntryStatus.SUBMITTED, EntryStatus.DRAFT
    ]
    approvals = select(func.count(AuditEvent.id)).where(AuditEvent.action == "entry.approve")
    assert db.session.scalar(approvals) == 0


def test_an_entry_approved_meanwhile_makes_the_confirmation_fail_with_its_name(client, auth, world):
    auth.login(world.organizer)
    review.bulk_approve(world.organizer, "opportunity", [world.second.id], world.batch.id)
    response = auth.post("/admin/review/bulk/approve", _form(world, world.first, world.second))
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "均未处理" in page and world.second.title in page
    assert _statuses(world.first) == [EntryStatus.SUBMITTED]


@pytest.mark.parametrize(
    "data",
    [
        {"kind": "opportunity", "batch_id": "1", "entries": ["abc"]},
        {"kind": "opportunity", "batch_id": "1", "entries": ["9" * 30]},
        {"kind": "spaceship", "batch_id": "1", "entries": ["1"]},
        {"kind": "opportunity", "batch_id": "x", "entries": ["1"]},
        {"kind": "opportunity", "entries": ["1"]},
    ],
)
def test_malformed_input_goes_back_to_the_queue_with_a_message(client, auth, world, data):
    auth.login(world.organizer)
    for url in ("/admin/review/bulk", "/admin/review/bulk/approve"):
        response = auth.post(url, data)
        assert response.status_code == 302
        assert "/admin/review" in response.headers["Location"]
    assert _statuses(world.first) == [EntryStatus.SUBMITTED]

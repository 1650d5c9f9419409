"""The audit trail: every service state change writes an event, and the audit page finds them."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from sqlalchemy import select

from marketplace.admin.routes import ACTION_LABELS
from marketplace.extensions import db
from marketplace.models import AuditEvent, BatchStatus, EntryStatus, Role
from marketplace.models.base import utcnow
from marketplace.services import accounts, audit, batches, entries
from marketplace.services.accounts import OrganizationData, UserData
from marketplace.services.errors import DomainError


@pytest.fixture
def world(make):
    org = make.org(kind="government")
    firm = make.org(kind="enterprise", verified=False)
    return SimpleNamespace(
        org=org,
        firm=firm,
        member=make.user(org),
        firm_member=make.user(firm),
        organizer=make.organizer(),
        admin=make.admin(),
        batch=make.batch("opportunity"),
    )


def _published_with_revision(make, w):
    entry = make.opportunity(w.org, status=EntryStatus.PUBLISHED, batch=make.batch(status="published"))
    data = dict(make.OPPORTUNITY_FORM, title="修改后的停车诱导需求", deadline=entry.deadline)
    return entry, entries.update_entry(w.member, entry, data)


def _entry_create(make, w):
    data = dict(make.OPPORTUNITY_FORM, deadline=None)
    return w.member, entries.create_entry(w.member, "opportunity", data)


def _entry_update(make, w):
    entry = make.opportunity(w.org)
    entries.update_entry(w.member, entry, dict(make.OPPORTUNITY_FORM, deadline=entry.deadline))
    return w.member, entry


def _entry_submit(make, w):
    entry = make.opportunity(w.org)
    entries.submit(w.member, entry)
    return w.member, entry


def _entry_withdraw(make, w):
    entry = make.opportunity(w.org, status=EntryStatus.SUBMITTED)
    entries.withdraw(w.member, entry)
    return w.member, entry


def _entry_restore(make, w):
    entry = make.opportunity(w.org, status=EntryStatus.WITHDRAWN)
    entries.restore(w.member, entry)
    return w.member, entry


def _entry_approve(make, w):
    entry = make.opportunity(w.org, status=EntryStatus.SUBMITTED)
    entries.approve(w.organizer, entry, w.batch)
    return w.organizer, entry


def _entry_return(make, w):
    entry = make.opportunity(w.org, status=EntryStatus.SUBMITTED)
    entries.return_entry(w.organizer, entry, "请补充材料")
    return w.organizer, entry


def _revision_submit(make, w):
    entry, _ = _published_with_revision(make, w)
    return w.member, entry


def _revision_approve(make, w):
    entry, revision = _published_with_revision(make, w)
    entries.approve_revision(w.organizer, revision)
    return w.organizer, entry


def _revision_return(make, w):
    entry, revision = _published_with_revision(make, w)
    entries.return_revision(w.organizer, revision, "请说明修改原因")
    return w.organizer, entry


def _batch_create(make, w):
    return w.organizer, batches.create_batch(w.organizer, "product", "2026年第三批产品清单")


def _batch_publish(make, w):
    make.opportunity(w.org, status=EntryStatus.APPROVED, batch=w.batch)
    batches.publish_batch(w.organizer, w.batch)
    return w.organizer, w.batch


def _org_register(make, w):
    org = OrganizationData(
        name="江西测试科技有限公司", kind="enterprise", credit_code=make.credit_code("enterprise"),
        region_city="南昌市", region_county="红谷滩区",
    )
    user = accounts.register_organization(org, UserData("new@example.cn", make.PASSWORD, "新用户"))
    return user, user.organization


def _org_update(make, w):
    data = OrganizationData(
        name=w.org.name, kind=w.org.kind, credit_code=w.org.credit_code,
        region_city=w.org.region_city, region_county=w.org.region_county, intro="新的简介",
    )
    accounts.update_organization(w.member, w.org, data)
    return w.member, w.org


def _org_verify(make, w):
    accounts.verify_organization(w.organizer, w.firm)
    return w.organizer, w.firm


def _org_unverify(make, w):
    accounts.revoke_verification(w.organizer, w.org, "资质过期")
    return w.organizer, w.org


def _with_pending_name(w):
    w.org.pending_name, w.org.pending_since = "江西改名科技有限公司", utcnow()
    db.session.commit()


def _org_identity_approve(make, w):
    _with_pending_name(w)
    accounts.approve_identity_change(w.organizer, w.org)
    return w.organizer, w.org


def _org_identity_return(make, w):
    _with_pending_name(w)
    accounts.return_identity_change(w.organizer, w.org, "与营业执照不符")
    return w.organizer, w.org


def _user_create(make, w):
    user = accounts.create_user("staff2@example.cn", make.PASSWORD, "新组织方", Role.ORGANIZER, actor=w.admin)
    return w.admin, user


def _user_deactivate(make, w):
    accounts.set_user_active(w.admin, w.member, False)
    return w.admin, w.member


def _user_activate(make, w):
    w.member.active = False
    db.session.commit()
    accounts.set_user_active(w.admin, w.member, True)
    return w.admin, w.member


STATE_CHANGES = {
    "entry.create": _entry_create,
    "entry.update": _entry_update,
    "entry.submit": _entry_submit,
    "entry.withdraw": _entry_withdraw,
    "entry.restore": _entry_restore,
    "entry.approve": _entry_approve,
    "entry.return": _entry_return,
    "revision.submit": _revision_submit,
    "revision.approve": _revision_approve,
    "revision.return": _revision_return,
    "batch.create": _batch_create,
    "batch.publish": _batch_publish,
    "org.register": _org_register,
    "org.update": _org_update,
    "org.verify": _org_verify,
    "org.unverify": _org_unverify,
    "org.identity_approve": _org_identity_approve,
    "org.identity_return": _org_identity_return,
    "user.create": _user_create,
    "user.activate": _user_activate,
    "user.deactivate": _user_deactivate,
}


def _events(action: str) -> list[AuditEvent]:
    return list(db.session.scalars(select(AuditEvent).where(AuditEvent.action == action)))


def test_every_audited_action_has_a_chinese_label():
    # The account actions (user.password_*, org.invite…) are audited and tested in test_account_*.py.
    assert set(STATE_CHANGES) <= set(ACTION_LABELS)


@pytest.mark.parametrize("action", list(STATE_CHANGES))
def test_state_change_writes_an_audit_event(make, world, action):
    actor, obj = STATE_CHANGES[action](make, world)

    [event] = _events(action)
    assert event.actor_id == actor.id
    assert event.object_type == obj.__tablename__
    assert event.object_id == obj.id
    assert event.created_at is not None


@pytest.mark.parametrize("action", list(STATE_CHANGES))
def test_audit_page_shows_each_action_with_its_label(client, auth, make, world, action):
    STATE_CHANGES[action](make, world)
    auth.login(world.organizer)

    html = client.get("/admin/audit", query_string={"action": action}).get_data(as_text=True)

    assert f'<span class="badge text-bg-light border">{ACTION_LABELS[action]}</span>' in html


def test_refused_change_writes_no_event(make, world):
    draft = make.opportunity(world.org)
    with pytest.raises(DomainError):
        entries.approve(world.organizer, draft, world.batch)
    db.session.rollback()
    assert _events("entry.approve") == []


def test_rolled_back_publish_writes_no_event(world):
    with pytest.raises(DomainError):
        batches.publish_batch(world.organizer, world.batch)
    assert _events("batch.publish") == []
    assert world.batch.status == BatchStatus.COLLECTING


# ---------------------------------------------------------------- the audit page


@pytest.fixture
def log(make, world):
    """Four events with distinct summaries: two objects, two actors."""
    first = make.opportunity(world.org)
    second = make.opportunity(world.org)
    audit.record(world.member, "entry.create", first, "摘要甲")
    audit.record(world.organizer, "entry.return", first, "摘要乙")
    audit.record(world.member, "entry.create", second, "摘要丙")
    audit.record(world.organizer, "batch.create", world.batch, "摘要丁")
    db.session.commit()
    return SimpleNamespace(first=first, second=second)


def _shown(html: str) -> set[str]:
    return {s for s in ("摘要甲", "摘要乙", "摘要丙", "摘要丁") if s in html}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, {"摘要甲", "摘要乙", "摘要丙", "摘要丁"}),
        ({"object_type": "opportunity"}, {"摘要甲", "摘要乙", "摘要丙"}),
        ({"object_type": "batch"}, {"摘要丁"}),
        ({"object_type": "opportunity", "object_id": "{first}"}, {"摘要甲", "摘要乙"}),
        ({"object_type": "opportunity", "object_id": "{second}"}, {"摘要丙"}),
        ({"actor": "{member}"}, {"摘要甲", "摘要丙"}),
        ({"actor": "{organizer_upper}"}, {"摘要乙", "摘要丁"}),
        ({"actor": "{organizer}", "object_type": "opportunity"}, {"摘要乙"}),
        ({"action": "entry.create"}, {"摘要甲", "摘要丙"}),
        ({"object_type": "user"}, set()),
    ],
)
def test_audit_page_filters(client, auth, world, log, query, expected):
    values = {
        "first": log.first.id,
        "second": log.second.id,
        "member": world.member.email,
        "organizer": world.organizer.email,
        "organizer_upper": world.organizer.email.upper(),
    }
    query = {k: v.format(**values) for k, v in query.items()}
    auth.login(world.organizer)

    response = client.get("/admin/audit", query_string=query)

    assert response.status_code == 200
    assert _shown(response.get_data(as_text=True)) == expected


def test_audit_page_links_objects_and_names_actors(client, auth, world, log):
    auth.login(world.organizer)

    html = client.get("/admin/audit").get_data(as_text=True)

    assert f"/admin/review/opportunity/{log.first.id}" in html
    assert f"/admin/batches/{world.batch.id}" in html
    assert world.member.name in html
    assert '<span class="badge text-bg-light border">退回修改</span>' in html


def test_audit_page_paginates(client, auth, world):
    for n in range(35):
        audit.record(world.organizer, "batch.create", world.batch, f"第{n:02d}条")
    db.session.commit()
    auth.login(world.organizer)

    first = client.get("/admin/audit").get_data(as_text=True)
    second = client.get("/admin/audit?page=2").get_data(as_text=True)

    assert "第34条" in first and "第00条" not in first
    assert "第00条" in second and "第34条" not in second


def test_unknown_actor_email_shows_an_error_and_no_events(client, auth, world, log):
    auth.login(world.organizer)

    html = client.get("/admin/audit?actor=nobody@example.cn").get_data(as_text=True)

    assert "未找到该邮箱对应的用户" in html
    assert _shown(html) == set()


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ("object_id=abc", "对象编号应为正整数"),
        ("object_id=-1", "对象编号应为正整数"),
        ("object_id=1.5", "对象编号应为正整数"),
        ("object_id=99999999999999999999999", "对象编号应为正整数"),
        ("object_type=%3Cscript%3E", "对象类型无效"),
        ("action=drop+table", "操作类型无效"),
        ("actor=not-an-email", "请输入有效的邮箱地址"),
        ("actor=" + "a" * 300 + "@example.cn", "邮箱不能超过120个字符"),
        ("page=abc", None),
        ("page=-5", None),
        ("page=99999", None),
        ("object_id=x%01y&page=%FF", "对象编号应为正整数"),
    ],
)
def test_malformed_filters_never_fail(client, auth, world, log, query, error):
    auth.login(world.organizer)

    response = client.get(f"/admin/audit?{query}")

    assert response.status_code == 200
    html = response.get_data(as_text=True)
    if error:
        assert error in html
        assert _shown(html) == {"摘要甲", "摘要乙", "摘要丙", "摘要丁"}  # the bad filter is ignored


@pytest.mark.parametrize("role", ["member", "anonymous"])
def test_audit_page_is_staff_only(client, auth, world, role):
    if role == "member":
        auth.login(world.member)
    response = client.get("/admin/audit")
    assert response.status_code == (403 if role == "member" else 302)

"""The organizer back office, through HTTP: who may do what, and what each action does."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import pytest

from marketplace.extensions import db
from marketplace.models import (
    Batch,
    BatchStatus,
    EntryRevision,
    EntryStatus,
    Opportunity,
    Organization,
    RevisionStatus,
    User,
)
from marketplace.services import entries

# ---------------------------------------------------------------- fixtures


@pytest.fixture
def world(make):
    """Two verified organizations with a member each, an organizer, an admin and some work."""
    org_a = make.org(kind="government")
    org_b = make.org(kind="enterprise")
    pending_org = make.org(kind="enterprise", verified=False)
    open_batch = make.batch("opportunity")
    return SimpleNamespace(
        org_a=org_a,
        org_b=org_b,
        pending_org=pending_org,
        member_a=make.user(org_a),
        member_b=make.user(org_b),
        pending_member=make.user(pending_org),
        organizer=make.organizer(),
        admin=make.admin(),
        open_batch=open_batch,
        published_batch=make.batch("opportunity", status=BatchStatus.PUBLISHED),
        submitted=make.opportunity(org_a, status=EntryStatus.SUBMITTED),
        approved=make.opportunity(org_a, status=EntryStatus.APPROVED, batch=open_batch),
    )


def _login(auth, world, actor: str) -> None:
    if actor != "anonymous":
        auth.login(getattr(world, actor))


def _reload(obj):
    db.session.expire_all()
    return db.session.get(type(obj), obj.id)


def _text(response) -> str:
    return response.get_data(as_text=True)


# ---------------------------------------------------------------- permission matrix


@dataclass(frozen=True)
class Action:
    """One back-office view or action; ``done`` tells whether its state change happened."""

    method: str
    url: object
    data: object = None
    done: object = None
    admin_only: bool = False


ACTIONS = {
    "dashboard": Action("GET", lambda w: "/admin/"),
    "review queue": Action("GET", lambda w: "/admin/review"),
    "review entry": Action("GET", lambda w: f"/admin/review/opportunity/{w.submitted.id}"),
    "approve": Action(
        "POST",
        lambda w: f"/admin/review/opportunity/{w.submitted.id}/approve",
        lambda w: {"batch_id": w.open_batch.id},
        lambda w: _reload(w.submitted).status == EntryStatus.APPROVED,
    ),
    "return": Action(
        "POST",
        lambda w: f"/admin/review/opportunity/{w.submitted.id}/return",
        lambda w: {"comment": "请补充预算依据"},
        lambda w: _reload(w.submitted).status == EntryStatus.RETURNED,
    ),
    "batch list": Action("GET", lambda w: "/admin/batches"),
    "batch detail": Action("GET", lambda w: f"/admin/batches/{w.open_batch.id}"),
    "create batch": Action(
        "POST",
        lambda w: "/admin/batches/new",
        lambda w: {"kind": "opportunity", "title": "2026年第三批机会清单", "description": ""},
        lambda w: db.session.query(Batch).filter_by(title="2026年第三批机会清单").count() == 1,
    ),
    "publish batch": Action(
        "POST",
        lambda w: f"/admin/batches/{w.open_batch.id}/publish",
        None,
        lambda w: _reload(w.open_batch).status == BatchStatus.PUBLISHED,
    ),
    "organization list": Action("GET", lambda w: "/admin/organizations"),
    "organization detail": Action("GET", lambda w: f"/admin/organizations/{w.pending_org.id}"),
    "verify organization": Action(
        "POST",
        lambda w: f"/admin/organizations/{w.pending_org.id}/verify",
        None,
        lambda w: _reload(w.pending_org).verified,
    ),
    "revoke verification": Action(
        "POST",
        lambda w: f"/admin/organizations/{w.org_b.id}/revoke",
        lambda w: {"comment": "营业执照已注销"},
        lambda w: not _reload(w.org_b).verified,
    ),
    "audit log": Action("GET", lambda w: "/admin/audit"),
    "users page": Action("GET", lambda w: "/admin/users", admin_only=True),
    "deactivate user": Action(
        "POST",
        lambda w: f"/admin/users/{w.pending_member.id}/deactivate",
        None,
        lambda w: not _reload(w.pending_member).active,
        admin_only=True,
    ),
}
ACTORS = ["anonymous", "member_a", "member_b", "organizer", "admin"]


def _expected(actor: str, action: Action) -> str:
    if actor == "anonymous":
        return "login"
    if actor.startswith("member"):
        return "forbidden"
    if actor == "organizer" and action.admin_only:
        return "forbidden"
    return "allowed"


@pytest.mark.parametrize("actor", ACTORS)
@pytest.mark.parametrize("name", list(ACTIONS))
def test_permission_matrix(client, auth, world, actor, name):
    action = ACTIONS[name]
    _login(auth, world, actor)
    url = action.url(world)
    if action.method == "GET":
        response = client.get(url)
    else:
        response = auth.post(url, action.data(world) if action.data else {})

    expected = _expected(actor, action)
    if expected == "login":
        assert response.status_code == 302
        assert response.headers["Location"].startswith("/auth/login")
    elif expected == "forbidden":
        assert response.status_code == 403
    else:
        assert response.status_code == (200 if action.method == "GET" else 302)
        assert not response.headers.get("Location", "").startswith("/auth/login")
    if action.done is not None:
        assert action.done(world) is (expected == "allowed")


def test_admin_link_in_navigation_only_for_staff(client, auth, world):
    auth.login(world.member_a)
    assert "组织方后台" not in _text(client.get("/my/"))
    auth.logout()
    auth.login(world.organizer)
    assert "组织方后台" in _text(client.get("/admin/"))


# ---------------------------------------------------------------- review queue


def test_review_queue_lists_submitted_entries_and_revisions_only(client, auth, make, world):
    make.opportunity(world.org_a, status=EntryStatus.DRAFT, title="草稿中的停车需求不应出现")
    product = make.product(world.org_b, status=EntryStatus.SUBMITTED, name="待审核的智能巡检机器人")
    published = make.product(world.org_b, status=EntryStatus.PUBLISHED, name="已发布的水质监测平台")
    db.session.add(EntryRevision(entry_kind="product", entry_id=published.id, data={"name": "改名后"}))
    db.session.commit()
    auth.login(world.organizer)

    html = _text(client.get("/admin/review"))

    assert world.submitted.title in html
    assert product.name in html
    assert world.org_a.name in html
    assert "已发布的水质监测平台" in html  # its pending revision
    assert "草稿中的停车需求不应出现" not in html


def test_review_queue_filters_by_kind(client, auth, make, world):
    product = make.product(world.org_b, status=EntryStatus.SUBMITTED, name="待审核的智能巡检机器人")
    auth.login(world.organizer)

    html = _text(client.get("/admin/review?kind=product"))

    assert product.name in html
    assert world.submitted.title not in html


@pytest.mark.parametrize("kind", ["nonsense", "'\"<script>", "OPPORTUNITY"])
def test_review_queue_ignores_an_unknown_kind_with_a_message(client, auth, world, kind):
    auth.login(world.organizer)

    response = client.get("/admin/review", query_string={"kind": kind})

    assert response.status_code == 200
    assert "未知的清单类型" in _text(response)
    assert world.submitted.title in _text(response)


@pytest.mark.parametrize("url", ["/admin/review/nonsense/1", "/admin/review/opportunity/999999"])
def test_review_entry_not_found(client, auth, world, url):
    auth.login(world.organizer)
    assert client.get(url).status_code == 404


def test_review_entry_without_open_batch_links_to_batch_creation(client, auth, make, world):
    product = make.product(world.org_b, status=EntryStatus.SUBMITTED)
    auth.login(world.organizer)

    html = _text(client.get(f"/admin/review/product/{product.id}"))

    assert "目前没有征集中的产品清单批次" in html
    assert "/admin/batches/new?kind=product" in html


def test_review_entry_offers_only_open_batches_of_its_kind(client, auth, make, world):
    other_kind = make.batch("product")
    auth.login(world.organizer)

    html = _text(client.get(f"/admin/review/opportunity/{world.submitted.id}"))

    assert world.open_batch.title in html
    assert world.published_batch.title not in html
    assert other_kind.title not in html


# ---------------------------------------------------------------- approve


def test_approve_into_open_batch(client, auth, world):
    auth.login(world.organizer)

    response = auth.post(
        f"/admin/review/opportunity/{world.submitted.id}/approve",
        {"batch_id": world.open_batch.id},
        follow_redirects=True,
    )

    entry = _reload(world.submitted)
    assert entry.status == EntryStatus.APPROVED
    assert entry.batch_id == world.open_batch.id
    assert f"已入选「{world.open_batch.title}」" in _text(response)


@pytest.mark.parametrize(
    ("status", "batch", "message"),
    [
        (EntryStatus.SUBMITTED, "published_batch", "该批次已发布，不能再加入条目"),
        (EntryStatus.SUBMITTED, "product_batch", "请选择同类清单的批次"),
        (EntryStatus.SUBMITTED, "missing", "批次不存在"),
        (EntryStatus.DRAFT, "open_batch", "「草稿」状态的条目不能审核通过"),
        (EntryStatus.RETURNED, "open_batch", "「退回修改」状态的条目不能审核通过"),
        (EntryStatus.PUBLISHED, "open_batch", "「已发布」状态的条目不能审核通过"),
    ],
)
def test_approve_refused_with_message(client, auth, make, world, status, batch, message):
    entry = make.opportunity(world.org_a, status=status)
    batch_id = {
        "published_batch": world.published_batch.id,
        "product_batch": make.batch("product").id,
        "missing": 987654,
        "open_batch": world.open_batch.id,
    }[batch]
    auth.login(world.organizer)

    response = auth.post(
        f"/admin/review/opportunity/{entry.id}/approve", {"batch_id": batch_id}, follow_redirects=True
    )

    assert message in _text(response)
    assert _reload(entry).status == status
    assert _reload(entry).batch_id is None


@pytest.mark.parametrize("batch_id", ["", "abc", "-3", "1.5"])
def test_approve_requires_a_batch_choice(client, auth, world, batch_id):
    auth.login(world.organizer)

    response = auth.post(
        f"/admin/review/opportunity/{world.submitted.id}/approve", {"batch_id": batch_id}
    )

    assert response.status_code == 200
    assert "请选择入选批次" in _text(response)
    assert _reload(world.submitted).status == EntryStatus.SUBMITTED


# ---------------------------------------------------------------- return


@pytest.mark.parametrize("comment", ["", "   \n  "])
def test_return_without_comment_shows_form_error(client, auth, world, comment):
    auth.login(world.organizer)

    response = auth.post(
        f"/admin/review/opportunity/{world.submitted.id}/return", {"comment": comment}
    )

    assert response.status_code == 200
    assert "请填写退回意见" in _text(response)
    assert _reload(world.submitted).status == EntryStatus.SUBMITTED


def test_return_with_overlong_comment_shows_form_error(client, auth, world):
    auth.login(world.organizer)

    response = auth.post(
        f"/admin/review/opportunity/{world.submitted.id}/return", {"comment": "长" * 2001}
    )

    assert "退回意见不能超过2000字" in _text(response)
    assert _reload(world.submitted).status == EntryStatus.SUBMITTED


def test_return_with_comment_is_visible_to_the_owner(client, auth, world):
    auth.login(world.organizer)
    auth.post(
        f"/admin/review/opportunity/{world.submitted.id}/return",
        {"comment": "请补充停车场现状照片和预算测算依据"},
    )
    entry = _reload(world.submitted)
    assert entry.status == EntryStatus.RETURNED
    assert entry.review_comment == "请补充停车场现状照片和预算测算依据"

    auth.logout()
    auth.login(world.member_a)
    assert "请补充停车场现状照片和预算测算依据" in _text(client.get(f"/my/opportunities/{entry.id}"))


def test_return_an_approved_entry_takes_it_out_of_the_batch(client, auth, world):
    auth.login(world.organizer)

    auth.post(f"/admin/review/opportunity/{world.approved.id}/return", {"comment": "联系人信息有误"})

    entry = _reload(world.approved)
    assert entry.status == EntryStatus.RETURNED
    assert entry.batch_id is None


def test_return_a_draft_is_refused(client, auth, make, world):
    draft = make.opportunity(world.org_a, status=EntryStatus.DRAFT)
    auth.login(world.organizer)

    response = auth.post(
        f"/admin/review/opportunity/{draft.id}/return", {"comment": "意见"}, follow_redirects=True
    )

    assert "「草稿」状态的条目不能退回" in _text(response)
    assert _reload(draft).status == EntryStatus.DRAFT


# ---------------------------------------------------------------- batches


def test_create_batch_redirects_to_it(client, auth, world):
    auth.login(world.organizer)

    response = auth.post(
        "/admin/batches/new",
        {"kind": "product", "title": "2026年第三批产品清单", "description": "第三批产品征集"},
        follow_redirects=True,
    )

    batch = db.session.query(Batch).filter_by(title="2026年第三批产品清单").one()
    assert batch.kind == "product"
    assert batch.status == BatchStatus.COLLECTING
    assert "已新建批次「2026年第三批产品清单」" in _text(response)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"kind": "opportunity", "title": ""}, "请填写批次名称"),
        ({"kind": "opportunity", "title": "三批"}, "批次名称应为4–100个字"),
        ({"kind": "opportunity", "title": "长" * 101}, "批次名称应为4–100个字"),
        ({"kind": "events", "title": "2026年第三批机会清单"}, "请选择有效的清单类型"),
        ({"kind": "opportunity", "title": "{existing}"}, "已有同名批次"),
    ],
)
def test_create_batch_validation(client, auth, world, data, message):
    data = {k: v.format(existing=world.open_batch.title) for k, v in data.items()}
    auth.login(world.organizer)
    before = db.session.query(Batch).count()

    response = auth.post("/admin/batches/new", data)

    assert response.status_code == 200
    assert message in _text(response)
    assert f'value="{data["title"]}"' in _text(response)  # the input is kept
    assert db.session.query(Batch).count() == before


def test_new_batch_form_preselects_kind(client, auth, world):
    auth.login(world.organizer)
    html = _text(client.get("/admin/batches/new?kind=product"))
    assert '<option selected value="product">' in html


def test_batch_detail_lists_approved_entries_to_publish(client, auth, make, world):
    returned = make.opportunity(world.org_a, status=EntryStatus.RETURNED, title="被退回的需求不在批次里")
    auth.login(world.organizer)

    html = _text(client.get(f"/admin/batches/{world.open_batch.id}"))

    assert "将随本批次发布的条目" in html
    assert world.approved.title in html
    assert returned.title not in html
    assert "发布批次（1条）" in html


def test_batch_list_shows_counts_per_status(client, auth, make, world):
    make.opportunity(world.org_a, status=EntryStatus.APPROVED, batch=world.open_batch)
    auth.login(world.organizer)

    html = _text(client.get("/admin/batches"))

    assert world.open_batch.title in html
    assert world.published_batch.title in html
    assert "已入选待发布</span> 2" in html


def test_publish_batch_makes_approved_entries_public(client, auth, make, world):
    second = make.opportunity(world.org_b, status=EntryStatus.APPROVED, batch=world.open_batch)
    auth.login(world.organizer)

    response = auth.post(f"/admin/batches/{world.open_batch.id}/publish", follow_redirects=True)

    batch = _reload(world.open_batch)
    assert batch.status == BatchStatus.PUBLISHED
    assert batch.published_on is not None
    for entry in (world.approved, second):
        assert _reload(entry).status == EntryStatus.PUBLISHED
        assert _reload(entry).published_at is not None
    assert _reload(world.submitted).status == EntryStatus.SUBMITTED
    assert "2条进入公开清单" in _text(response)


def test_publish_empty_batch_is_refused_with_message(client, auth, make, world):
    empty = make.batch("product")
    auth.login(world.organizer)

    response = auth.post(f"/admin/batches/{empty.id}/publish", follow_redirects=True)

    assert "批次中没有已入选的条目，不能发布空批次" in _text(response)
    assert _reload(empty).status == BatchStatus.COLLECTING


def test_publish_published_batch_is_refused(client, auth, world):
    auth.login(world.organizer)

    response = auth.post(f"/admin/batches/{world.published_batch.id}/publish", follow_redirects=True)

    assert "该批次已发布" in _text(response)


def test_batch_not_found(client, auth, world):
    auth.login(world.organizer)
    assert client.get("/admin/batches/424242").status_code == 404


# ---------------------------------------------------------------- revisions


@pytest.fixture
def revision(make, world):
    """A published opportunity of org A and its submitted revision (new title and budget)."""
    entry = make.opportunity(world.org_a, status=EntryStatus.PUBLISHED, batch=world.published_batch)
    data = dict(
        make.OPPORTUNITY_FORM,
        title="老旧小区智慧停车诱导系统建设（二期）",
        budget_max="200",
        deadline=entry.deadline,
    )
    return entries.update_entry(world.member_a, entry, data)


def test_revision_page_shows_the_changed_fields(client, auth, world, revision):
    auth.login(world.organizer)

    html = _text(client.get(f"/admin/revisions/{revision.id}"))

    assert 'data-field="title"' in html
    assert 'data-field="budget_max"' in html
    assert 'data-field="description"' not in html
    assert 'data-field="budget_min"' not in html  # 50 and "50.00" are the same amount
    assert "老旧小区智慧停车诱导系统建设（二期）" in html
    assert "共修改 <strong>2</strong> 项" in html


def test_revision_approve_copies_the_changes_onto_the_entry(client, auth, world, revision):
    auth.login(world.organizer)

    auth.post(f"/admin/revisions/{revision.id}/approve")

    entry = db.session.get(Opportunity, revision.entry_id)
    db.session.refresh(entry)
    assert entry.title == "老旧小区智慧停车诱导系统建设（二期）"
    assert entry.budget_max == 200
    assert entry.status == EntryStatus.PUBLISHED
    assert _reload(revision).status == RevisionStatus.APPROVED


def test_revision_return_keeps_the_public_values(client, auth, world, revision):
    auth.login(world.organizer)

    response = auth.post(
        f"/admin/revisions/{revision.id}/return", {"comment": "二期范围请另行申报"}, follow_redirects=True
    )

    entry = db.session.get(Opportunity, revision.entry_id)
    db.session.refresh(entry)
    assert entry.title == "老旧小区智慧停车诱导系统建设"
    assert _reload(revision).status == RevisionStatus.RETURNED
    assert _reload(revision).review_comment == "二期范围请另行申报"
    assert "公开页面继续显示原内容" in _text(response)


def test_revision_return_without_comment_shows_form_error(client, auth, world, revision):
    auth.login(world.organizer)

    response = auth.post(f"/admin/revisions/{revision.id}/return", {"comment": ""})

    assert response.status_code == 200
    assert "请填写退回意见" in _text(response)
    assert _reload(revision).status == RevisionStatus.SUBMITTED


def test_revision_approved_twice_is_refused(client, auth, world, revision):
    auth.login(world.organizer)
    auth.post(f"/admin/revisions/{revision.id}/approve")

    response = auth.post(f"/admin/revisions/{revision.id}/approve", follow_redirects=True)

    assert "「修改已通过」的修改不能审核通过" in _text(response)


# ---------------------------------------------------------------- organizations


def test_verify_organization_then_its_member_can_submit(client, auth, make, world):
    draft = make.opportunity(world.pending_org, status=EntryStatus.DRAFT)
    auth.login(world.pending_member)
    auth.post(f"/my/opportunities/{draft.id}/submit")
    assert _reload(draft).status == EntryStatus.DRAFT  # not yet verified
    auth.logout()

    auth.login(world.organizer)
    response = auth.post(f"/admin/organizations/{world.pending_org.id}/verify", follow_redirects=True)
    assert "该单位现在可以提交清单" in _text(response)
    assert _reload(world.pending_org).verified
    auth.logout()

    auth.login(world.pending_member)
    auth.post(f"/my/opportunities/{draft.id}/submit")
    assert _reload(draft).status == EntryStatus.SUBMITTED


def test_verify_verified_organization_is_refused(client, auth, world):
    auth.login(world.organizer)

    response = auth.post(f"/admin/organizations/{world.org_a.id}/verify", follow_redirects=True)

    assert "该单位已认证" in _text(response)


def test_revoke_without_reason_shows_form_error(client, auth, world):
    auth.login(world.organizer)

    response = auth.post(f"/admin/organizations/{world.org_a.id}/revoke", {"comment": ""})

    assert response.status_code == 200
    assert "请填写取消认证的原因" in _text(response)
    assert _reload(world.org_a).verified


def test_organization_queue_lists_unverified_first_with_first_user(client, auth, world):
    auth.login(world.organizer)

    html = _text(client.get("/admin/organizations"))

    assert html.index(world.pending_org.name) < html.index(world.org_a.name)
    assert world.pending_org.credit_code in html
    assert world.pending_member.email in html


@pytest.mark.parametrize(
    ("query", "shown", "hidden"),
    [
        ({"verified": "0"}, ["pending_org"], ["org_a", "org_b"]),
        ({"verified": "1"}, ["org_a", "org_b"], ["pending_org"]),
        ({"kind": "government"}, ["org_a"], ["org_b", "pending_org"]),
        ({"q": "{org_b.name}"}, ["org_b"], ["org_a", "pending_org"]),
        ({"q": "{org_a.credit_code}"}, ["org_a"], ["org_b", "pending_org"]),
        ({"verified": "maybe", "kind": "alien"}, ["org_a", "org_b", "pending_org"], []),
        ({"q": "%"}, [], ["org_a", "org_b", "pending_org"]),
    ],
)
def test_organization_filters(client, auth, world, query, shown, hidden):
    query = {k: v.format(org_a=world.org_a, org_b=world.org_b) for k, v in query.items()}
    auth.login(world.organizer)

    response = client.get("/admin/organizations", query_string=query)

    assert response.status_code == 200
    html = _text(response)
    for name in shown:
        assert getattr(world, name).name in html
    for name in hidden:
        assert getattr(world, name).name not in html


def test_organization_detail_shows_users_and_entries(client, auth, world):
    auth.login(world.organizer)

    html = _text(client.get(f"/admin/organizations/{world.org_a.id}"))

    assert world.member_a.email in html
    assert world.submitted.title in html
    assert "取消认证" in html


# ---------------------------------------------------------------- users


def test_users_page_lists_role_organization_and_state(client, auth, world):
    auth.login(world.admin)

    html = _text(client.get("/admin/users"))

    assert world.member_a.email in html
    assert world.org_a.name in html
    assert "组织方" in html


def test_deactivated_user_cannot_log_in_and_can_be_reactivated(client, auth, world):
    auth.login(world.admin)
    auth.post(f"/admin/users/{world.member_b.id}/deactivate")
    assert not _reload(world.member_b).active

    auth.post(f"/admin/users/{world.member_b.id}/activate")
    assert _reload(world.member_b).active


def test_admin_cannot_deactivate_themselves(client, auth, world):
    auth.login(world.admin)

    response = auth.post(f"/admin/users/{world.admin.id}/deactivate", follow_redirects=True)

    assert "不能停用自己的账号" in _text(response)
    assert db.session.get(User, world.admin.id).active


def test_deactivate_unknown_user_is_not_found(client, auth, world):
    auth.login(world.admin)
    assert auth.post("/admin/users/999999/deactivate").status_code == 404


# ---------------------------------------------------------------- dashboard


def test_dashboard_counts(client, auth, make, world):
    make.product(world.org_b, status=EntryStatus.SUBMITTED)
    make.product(world.org_b, status=EntryStatus.SUBMITTED)
    auth.login(world.organizer)

    html = _text(client.get("/admin/"))

    assert 'data-count="queue-opportunity">1<' in html
    assert 'data-count="queue-product">2<' in html
    assert 'data-count="unverified">1<' in html
    assert world.open_batch.title in html
    assert "已入选 1" in html


def test_csrf_is_required_for_admin_actions(client, auth, world):
    auth.login(world.organizer)

    response = client.post(f"/admin/organizations/{world.pending_org.id}/verify")

    assert response.status_code == 400
    assert not db.session.get(Organization, world.pending_org.id).verified

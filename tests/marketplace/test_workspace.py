"""The member workspace through HTTP: permissions, the entry workflow, revisions and the profile.

Access policy (documented in ``marketplace/workspace/routes.py``):

* members act only on their own organization's entries;
* another organization's unpublished entry is a 404 (its existence stays hidden), a published
  one is a 403 for owner-only actions;
* organizers and admins may *read* the owner page of any entry (read-only, no action buttons)
  and get 403 for everything else in the workspace;
* anonymous visitors are sent to the login page.
"""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import func, select

from marketplace.models import (
    EntryRevision,
    EntryStatus,
    Opportunity,
    Organization,
    Product,
    RevisionStatus,
)
from marketplace.services import batches, entries

SLUGS = {"opportunity": "opportunities", "product": "products"}
MODELS = {"opportunity": Opportunity, "product": Product}
ACTORS = ["anonymous", "owner", "other", "organizer", "admin"]


@pytest.fixture
def world(make):
    firm = make.org(kind="enterprise", name="甲科技有限公司")
    rival = make.org(kind="enterprise", name="乙科技有限公司")
    return {
        "firm": firm,
        "rival": rival,
        "owner": make.user(firm),
        "other": make.user(rival),
        "organizer": make.organizer(),
        "admin": make.admin(),
    }


def make_entry(make, org, kind, status=EntryStatus.DRAFT, **kw):
    batch = None
    if status in (EntryStatus.APPROVED, EntryStatus.PUBLISHED):
        batch = make.batch(kind, status="published" if status == EntryStatus.PUBLISHED else "collecting")
    if kind == "opportunity":
        return make.opportunity(org, status=status, batch=batch, **kw)
    return make.product(org, status=status, batch=batch, **kw)


def form_for(make, kind, **changes) -> dict:
    data = dict(make.OPPORTUNITY_FORM if kind == "opportunity" else make.PRODUCT_FORM)
    data.update(changes)
    return data


def title_key(kind) -> str:
    return "title" if kind == "opportunity" else "name"


def reload(db, entry):
    db.session.expire_all()
    return db.session.get(type(entry), entry.id)


def login_as(auth, world, actor):
    if actor != "anonymous":
        response = auth.login(world[actor])
        assert response.status_code == 302


def flashes(client) -> str:
    """Follow-up page HTML (shows the flashed messages)."""
    return client.get("/my/").get_data(as_text=True)


# ---------------------------------------------------------------- permission matrix

#: action → (status the entry starts in, status expected after the owner's action,
#:           outcome per actor in ACTORS order). "ok" means the owner's action worked.
MATRIX = {
    "view": (EntryStatus.DRAFT, None, ["login", "ok", 404, "ok", "ok"]),
    "edit_get": (EntryStatus.DRAFT, None, ["login", "ok", 404, 403, 403]),
    "edit_post": (EntryStatus.DRAFT, EntryStatus.DRAFT, ["login", "ok", 404, 403, 403]),
    "submit": (EntryStatus.DRAFT, EntryStatus.SUBMITTED, ["login", "ok", 404, 403, 403]),
    "withdraw": (EntryStatus.SUBMITTED, EntryStatus.WITHDRAWN, ["login", "ok", 404, 403, 403]),
    "restore": (EntryStatus.WITHDRAWN, EntryStatus.DRAFT, ["login", "ok", 404, 403, 403]),
}
CASES = [
    pytest.param(kind, action, actor, outcomes[i], id=f"{kind}-{action}-{actor}")
    for kind in ("opportunity", "product")
    for action, (_, _, outcomes) in MATRIX.items()
    for i, actor in enumerate(ACTORS)
]


def perform(auth, client, make, kind, action, entry):
    base = f"/my/{SLUGS[kind]}/{entry.id}"
    if action == "view":
        return client.get(base)
    if action == "edit_get":
        return client.get(f"{base}/edit")
    if action == "edit_post":
        return auth.post(f"{base}/edit", form_for(make, kind, **{title_key(kind): "改过的标题名称"}))
    return auth.post(f"{base}/{action}")


@pytest.mark.parametrize(("kind", "action", "actor", "expected"), CASES)
def test_permission_matrix(auth, client, make, db, world, kind, action, actor, expected):
    start, after, _ = MATRIX[action]
    entry = make_entry(make, world["firm"], kind, start)
    original_title = entry.display_name
    login_as(auth, world, actor)

    response = perform(auth, client, make, kind, action, entry)

    if expected == "login":
        assert response.status_code == 302
        login_url = response.headers["Location"]
        assert login_url.startswith("/auth/login?next=" if action in ("view", "edit_get") else "/auth/login")
    elif expected == "ok" and action in ("view", "edit_get"):
        assert response.status_code == 200
    elif expected == "ok":
        assert response.status_code == 302
        assert response.headers["Location"] == f"/my/{SLUGS[kind]}/{entry.id}"
    else:
        assert response.status_code == expected

    stored = reload(db, entry)
    changed = expected == "ok" and action not in ("view", "edit_get")
    assert stored.status == (after if changed else start)
    assert stored.display_name == ("改过的标题名称" if changed and action == "edit_post" else original_title)


@pytest.mark.parametrize("kind", ["opportunity", "product"])
@pytest.mark.parametrize("action", ["submit", "withdraw", "edit"])
def test_other_org_gets_403_on_a_published_entry(auth, make, db, world, kind, action):
    entry = make_entry(make, world["firm"], kind, EntryStatus.PUBLISHED)
    login_as(auth, world, "other")
    url = f"/my/{SLUGS[kind]}/{entry.id}/{action}"
    data = form_for(make, kind) if action == "edit" else {}
    assert auth.post(url, data).status_code == 403
    assert reload(db, entry).status == EntryStatus.PUBLISHED
    assert db.session.scalar(select(func.count(EntryRevision.id))) == 0


def test_other_org_cannot_open_owner_page_of_a_published_entry(auth, client, make, world):
    entry = make_entry(make, world["firm"], "opportunity", EntryStatus.PUBLISHED)
    login_as(auth, world, "other")
    assert client.get(f"/my/opportunities/{entry.id}").status_code == 404


@pytest.mark.parametrize("actor", ["organizer", "admin"])
def test_staff_view_is_read_only(auth, client, make, world, actor):
    entry = make_entry(make, world["firm"], "opportunity", EntryStatus.DRAFT)
    login_as(auth, world, actor)
    html = client.get(f"/my/opportunities/{entry.id}").get_data(as_text=True)
    assert "组织方只读视图" in html
    assert f"/my/opportunities/{entry.id}/submit" not in html
    assert f"/my/opportunities/{entry.id}/edit" not in html


@pytest.mark.parametrize("actor", ["organizer", "admin"])
@pytest.mark.parametrize(
    "url", ["/my/", "/my/organization", "/my/opportunities/new", "/my/products/new"]
)
def test_staff_without_organization_get_403_in_the_workspace(auth, client, world, actor, url):
    login_as(auth, world, actor)
    response = client.get(url)
    assert response.status_code == 403
    assert "工作台仅供单位用户使用" in response.get_data(as_text=True)


# ---------------------------------------------------------------- ids and kinds


@pytest.mark.parametrize(
    "url",
    [
        "/my/opportunities/abc",
        "/my/opportunities/999999",
        "/my/opportunities/99999999999999999999",
        "/my/opportunities/-1",
        "/my/products/0/edit",
        "/my/products/1.5",
    ],
)
def test_malformed_or_unknown_ids_are_404(auth, client, world, url):
    login_as(auth, world, "owner")
    assert client.get(url).status_code == 404


@pytest.mark.parametrize(
    "path",
    ["/my/widgets/{id}/submit", "/my/opportunities/{id}/explode", "/my/opportunities/999999/submit",
     "/my/opportunities/99999999999999999999/withdraw"],
)
def test_unknown_kind_action_or_id_in_action_url_is_404(auth, make, db, world, path):
    entry = make_entry(make, world["firm"], "opportunity")
    login_as(auth, world, "owner")
    assert auth.post(path.format(id=entry.id)).status_code == 404
    assert reload(db, entry).status == EntryStatus.DRAFT


def test_an_opportunity_id_is_not_found_as_a_product(auth, client, make, world):
    entry = make_entry(make, world["firm"], "opportunity")
    login_as(auth, world, "owner")
    assert client.get(f"/my/products/{entry.id + 1000}").status_code == 404


def test_actions_require_post(auth, client, make, world):
    entry = make_entry(make, world["firm"], "opportunity")
    login_as(auth, world, "owner")
    assert client.get(f"/my/opportunities/{entry.id}/submit").status_code == 405


# ---------------------------------------------------------------- workflow rules as messages


def test_unverified_organization_cannot_submit(auth, client, make, db):
    org = make.org(verified=False)
    entry = make.opportunity(org)
    auth.login(make.user(org))
    response = auth.post(f"/my/opportunities/{entry.id}/submit")
    assert response.status_code == 302
    assert response.headers["Location"] == f"/my/opportunities/{entry.id}"
    html = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "本单位尚未通过组织方认证，暂不能提交审核" in html
    assert "alert-danger" in html
    assert reload(db, entry).status == EntryStatus.DRAFT


@pytest.mark.parametrize(
    ("status", "action", "message"),
    [
        (EntryStatus.DRAFT, "restore", "只有已撤回的条目可以恢复为草稿"),
        (EntryStatus.WITHDRAWN, "withdraw", "该条目已撤回"),
        (EntryStatus.SUBMITTED, "submit", "「待审核」状态的条目不能提交审核"),
    ],
)
def test_refused_transition_is_flashed_not_an_error_page(
    auth, client, make, db, world, status, action, message
):
    entry = make_entry(make, world["firm"], "opportunity", status)
    login_as(auth, world, "owner")
    response = auth.post(f"/my/opportunities/{entry.id}/{action}")
    assert response.status_code == 302
    assert message in client.get(response.headers["Location"]).get_data(as_text=True)
    assert reload(db, entry).status == status


@pytest.mark.parametrize("status", [EntryStatus.SUBMITTED, EntryStatus.APPROVED])
def test_entries_under_review_cannot_be_edited(auth, client, make, db, world, status):
    entry = make_entry(make, world["firm"], "opportunity", status)
    login_as(auth, world, "owner")
    response = client.get(f"/my/opportunities/{entry.id}/edit")
    assert response.status_code == 302
    assert "不能修改；如需修改，请先撤回" in client.get(response.headers["Location"]).get_data(as_text=True)
    data = form_for(make, "opportunity", title="新标题新标题")
    response = auth.post(f"/my/opportunities/{entry.id}/edit", data)
    assert response.status_code == 302
    assert reload(db, entry).title == make.OPPORTUNITY_FORM["title"]


@pytest.mark.parametrize(
    ("status", "offered"),
    [
        (EntryStatus.DRAFT, {"edit", "submit", "withdraw"}),
        (EntryStatus.RETURNED, {"edit", "submit", "withdraw"}),
        (EntryStatus.SUBMITTED, {"withdraw"}),
        (EntryStatus.APPROVED, {"withdraw"}),
        (EntryStatus.PUBLISHED, {"edit", "withdraw"}),
        (EntryStatus.WITHDRAWN, {"edit", "restore"}),
    ],
)
def test_owner_page_offers_the_actions_valid_for_the_status(auth, client, make, world, status, offered):
    entry = make_entry(make, world["firm"], "opportunity", status)
    login_as(auth, world, "owner")
    html = client.get(f"/my/opportunities/{entry.id}").get_data(as_text=True)
    for action in ("edit", "submit", "withdraw", "restore"):
        assert (f'/my/opportunities/{entry.id}/{action}"' in html) == (action in offered), action
    if "withdraw" in offered:
        assert 'data-confirm="' in html


def test_owner_page_shows_return_comment_and_history(auth, client, make, db, world):
    entry = make_entry(make, world["firm"], "opportunity", EntryStatus.SUBMITTED)
    entries.return_entry(world["organizer"], entry, "请补充预算测算依据")
    login_as(auth, world, "owner")
    html = client.get(f"/my/opportunities/{entry.id}").get_data(as_text=True)
    assert "组织方退回意见" in html and "请补充预算测算依据" in html
    assert "处理记录" in html and "退回修改：请补充预算测算依据" in html
    assert world["organizer"].name in html


# ---------------------------------------------------------------- revisions of published entries


@pytest.mark.parametrize("kind", ["opportunity", "product"])
def test_editing_a_published_entry_creates_a_revision_and_keeps_the_public_row(
    auth, client, make, db, world, kind
):
    entry = make_entry(make, world["firm"], kind, EntryStatus.PUBLISHED)
    original = entry.display_name
    login_as(auth, world, "owner")
    data = form_for(make, kind, **{title_key(kind): "修订后的新名称"})
    response = auth.post(f"/my/{SLUGS[kind]}/{entry.id}/edit", data)
    assert response.status_code == 302
    detail = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "修改已提交审核，审核通过前公开页面仍显示原内容" in detail
    assert "修改待审核：公开页面仍显示原内容" in detail

    stored = reload(db, entry)
    assert stored.status == EntryStatus.PUBLISHED
    assert stored.display_name == original
    revision = db.session.scalar(select(EntryRevision))
    assert revision.status == RevisionStatus.SUBMITTED
    assert revision.data[title_key(kind)] == "修订后的新名称"

    # The edit form now shows the pending version.
    form_html = client.get(f"/my/{SLUGS[kind]}/{entry.id}/edit").get_data(as_text=True)
    assert "修订后的新名称" in form_html


def test_returned_revision_shows_its_comment(auth, client, make, db, world):
    entry = make_entry(make, world["firm"], "opportunity", EntryStatus.PUBLISHED)
    data = form_for(make, "opportunity", title="修订后的新标题", deadline=None)
    revision = entries.update_entry(world["owner"], entry, data)
    entries.return_revision(world["organizer"], revision, "标题不得含广告用语")
    login_as(auth, world, "owner")
    html = client.get(f"/my/opportunities/{entry.id}").get_data(as_text=True)
    assert "修改被退回" in html and "标题不得含广告用语" in html


def test_unverified_org_cannot_revise_a_published_entry(auth, client, make, db):
    org = make.org(verified=False)
    entry = make.opportunity(org, status=EntryStatus.PUBLISHED)
    auth.login(make.user(org))
    data = form_for(make, "opportunity", title="修订后的新标题")
    response = auth.post(f"/my/opportunities/{entry.id}/edit", data)
    assert response.status_code == 302
    assert "暂不能提交审核" in client.get(response.headers["Location"]).get_data(as_text=True)
    assert db.session.scalar(select(func.count(EntryRevision.id))) == 0


# ---------------------------------------------------------------- the whole workflow through HTTP


def test_opportunity_workflow_through_http(auth, client, make, db, world):
    login_as(auth, world, "owner")
    response = auth.post("/my/opportunities/new", form_for(make, "opportunity"))
    assert response.status_code == 302
    entry = db.session.scalar(select(Opportunity))
    assert response.headers["Location"] == f"/my/opportunities/{entry.id}"
    assert (entry.status, entry.publisher_id) == (EntryStatus.DRAFT, world["firm"].id)
    assert entry.cooperation_modes == ["procurement", "joint_rnd"]

    assert auth.post(f"/my/opportunities/{entry.id}/submit").status_code == 302
    assert reload(db, entry).status == EntryStatus.SUBMITTED

    batch = make.batch("opportunity")
    entries.approve(world["organizer"], reload(db, entry), batch)
    batches.publish_batch(world["organizer"], batch)
    html = client.get(f"/my/opportunities/{entry.id}").get_data(as_text=True)
    assert "已发布" in html and batch.title in html
    assert f'href="/opportunities/{entry.id}"' in html  # link to the public page

    assert auth.post(f"/my/opportunities/{entry.id}/withdraw").status_code == 302
    assert reload(db, entry).status == EntryStatus.WITHDRAWN
    assert auth.post(f"/my/opportunities/{entry.id}/restore").status_code == 302
    assert reload(db, entry).status == EntryStatus.DRAFT

    history = client.get(f"/my/opportunities/{entry.id}").get_data(as_text=True)
    for summary in ("新建「", "提交审核", "审核通过", "撤回（已从公开清单移除）", "恢复为草稿"):
        assert summary in history


def test_product_creation_through_http(auth, make, db, world):
    login_as(auth, world, "owner")
    response = auth.post("/my/products/new", form_for(make, "product"))
    assert response.status_code == 302
    product = db.session.scalar(select(Product))
    assert product.owner_id == world["firm"].id
    assert product.categories == ["交通出行"]
    assert sorted(product.tags) == ["人工智能", "物联网"]


def test_new_opportunity_form_is_prefilled_from_the_organization(auth, client, make):
    org = make.org(contact_name="赵六", contact_phone="0791-86112233")
    auth.login(make.user(org))
    html = client.get("/my/opportunities/new").get_data(as_text=True)
    assert 'value="赵六"' in html and 'value="0791-86112233"' in html
    assert '<optgroup label="数字生活">' in html


# ---------------------------------------------------------------- products need a product-owning kind


@pytest.mark.parametrize("kind", ["government", "institution", "soe"])
def test_non_product_owner_kinds_cannot_create_products(auth, client, make, db, kind):
    org = make.org(kind=kind)
    auth.login(make.user(org))
    response = client.get("/my/products/new")
    assert response.status_code == 403
    assert "不能发布产品清单" in response.get_data(as_text=True)
    assert auth.post("/my/products/new", form_for(make, "product")).status_code == 403
    assert db.session.scalar(select(func.count(Product.id))) == 0
    index = client.get("/my/").get_data(as_text=True)
    assert "我的产品清单" not in index and "/my/products/new" not in index


# ---------------------------------------------------------------- the overview page


def test_index_shows_organization_card_counts_and_tables(auth, client, make, world):
    make_entry(make, world["firm"], "opportunity", EntryStatus.DRAFT, title="草稿中的场景需求")
    make_entry(make, world["firm"], "opportunity", EntryStatus.PUBLISHED, title="已经发布的场景需求")
    make_entry(make, world["firm"], "product", EntryStatus.SUBMITTED, name="待审核的产品名称")
    make_entry(make, world["rival"], "opportunity", EntryStatus.DRAFT, title="别家单位的场景需求")
    login_as(auth, world, "owner")
    html = client.get("/my/").get_data(as_text=True)
    assert world["firm"].name in html and world["firm"].credit_code in html and "已认证" in html
    assert "草稿中的场景需求" in html and "已经发布的场景需求" in html and "待审核的产品名称" in html
    assert "别家单位的场景需求" not in html
    assert "我的产品清单" in html
    assert "table-responsive" in html


def test_index_warns_unverified_organizations(auth, client, make):
    org = make.org(verified=False)
    auth.login(make.user(org))
    html = client.get("/my/").get_data(as_text=True)
    assert "本单位尚未通过组织方认证" in html and "待认证" in html


def test_index_filters_by_status(auth, client, make, world):
    make_entry(make, world["firm"], "opportunity", EntryStatus.DRAFT, title="草稿中的场景需求")
    make_entry(make, world["firm"], "opportunity", EntryStatus.RETURNED, title="被退回的场景需求")
    login_as(auth, world, "owner")
    html = client.get("/my/?status=returned").get_data(as_text=True)
    assert "被退回的场景需求" in html and "草稿中的场景需求" not in html


def test_index_rejects_an_unknown_status(auth, client, world):
    login_as(auth, world, "owner")
    assert client.get("/my/?status=bogus").status_code == 400


def test_index_paginates_each_list(auth, client, make, world, app, monkeypatch):
    monkeypatch.setitem(app.config, "PER_PAGE", 2)
    for i in range(3):
        make_entry(make, world["firm"], "opportunity", title=f"分页测试需求{i}")
    login_as(auth, world, "owner")
    first = client.get("/my/").get_data(as_text=True)
    second = client.get("/my/?opp_page=2").get_data(as_text=True)
    assert sum(f"分页测试需求{i}" in first for i in range(3)) == 2
    assert sum(f"分页测试需求{i}" in second for i in range(3)) == 1
    assert "opp_page=2" in first
    assert client.get("/my/?opp_page=abc&prod_page=-3").status_code == 200


# ---------------------------------------------------------------- organization profile


def test_profile_update_saves_contact_details(auth, client, make, db, world):
    login_as(auth, world, "owner")
    firm = world["firm"]
    data = {
        "name": firm.name, "credit_code": firm.credit_code, "region_city": "九江市",
        "region_county": "浔阳区", "contact_name": "钱七", "contact_phone": "0792-8123456",
        "contact_email": "", "address": "", "intro": "新的简介",
    }
    response = auth.post("/my/organization", data)
    assert response.status_code == 302
    stored = db.session.get(Organization, firm.id)
    db.session.refresh(stored)
    assert (stored.region_city, stored.contact_name, stored.verified) == ("九江市", "钱七", True)
    assert "单位信息已保存" in client.get("/my/organization").get_data(as_text=True)


def test_profile_name_change_waits_for_an_organizer(auth, client, make, db, world):
    login_as(auth, world, "owner")
    firm = world["firm"]
    old_name = firm.name
    data = {
        "name": "甲科技集团有限公司", "credit_code": firm.credit_code, "region_city": "南昌市",
        "region_county": "", "contact_name": "张三", "contact_phone": "0791-86000000",
    }
    response = auth.post("/my/organization", data)
    assert response.status_code == 302
    html = client.get("/my/organization").get_data(as_text=True)
    assert "已提交组织方审核" in html and "变更待审核" in html
    assert 'value="甲科技集团有限公司"' in html  # the form shows what was asked for
    db.session.expire_all()
    stored = db.session.get(Organization, firm.id)
    assert (stored.name, stored.pending_name, stored.verified) == (old_name, "甲科技集团有限公司", True)


def test_profile_duplicate_credit_code_shows_beside_the_field(auth, make, db, world):
    login_as(auth, world, "owner")
    data = {
        "name": world["firm"].name, "credit_code": world["rival"].credit_code, "region_city": "南昌市",
        "contact_name": "张三", "contact_phone": "0791-86000000", "intro": "保留的简介内容",
    }
    response = auth.post("/my/organization", data)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "该统一社会信用代码已注册" in html and "保留的简介内容" in html
    db.session.expire_all()
    assert db.session.get(Organization, world["firm"].id).credit_code != world["rival"].credit_code


def test_profile_kind_cannot_be_changed(auth, make, db):
    org = make.org(kind="government")
    auth.login(make.user(org))
    data = {
        "name": org.name, "kind": "enterprise", "credit_code": org.credit_code, "region_city": "南昌市",
        "contact_name": "张三", "contact_phone": "0791-86000000",
    }
    assert auth.post("/my/organization", data).status_code == 302
    db.session.expire_all()
    assert db.session.get(Organization, org.id).kind == "government"


def test_deadline_in_the_past_is_refused_by_the_service(auth, make, db, world):
    login_as(auth, world, "owner")
    data = form_for(make, "opportunity", deadline=date(2020, 1, 1).isoformat())
    response = auth.post("/my/opportunities/new", data)
    assert response.status_code == 200
    assert "答题截止日期不能早于今天" in response.get_data(as_text=True)
    assert db.session.scalar(select(func.count(Opportunity.id))) == 0

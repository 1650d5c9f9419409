"""The entry lifecycle, enforced in the service layer: every transition, allowed and refused."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from marketplace import timeutil
from marketplace.models import (
    AuditEvent,
    BatchStatus,
    EntryRevision,
    EntryStatus,
    RevisionStatus,
)
from marketplace.services import batches, entries, index_sync
from marketplace.services.errors import (
    DomainError,
    InvalidTransition,
    PermissionDenied,
    ValidationFailed,
)

ALL_STATUSES = [s.value for s in EntryStatus]


@pytest.fixture
def world(make):
    org = make.org(kind="government")
    firm = make.org(kind="enterprise")
    return {
        "org": org,
        "firm": firm,
        "member": make.user(org),
        "firm_member": make.user(firm),
        "other": make.user(make.org(kind="government")),
        "staff": make.organizer(),
        "batch": make.batch("opportunity"),
        "product_batch": make.batch("product"),
    }


def _entry(make, world, status, kind="opportunity"):
    if kind == "opportunity":
        batch = world["batch"] if status in ("approved", "published") else None
        return make.opportunity(world["org"], status=status, batch=batch)
    batch = world["product_batch"] if status in ("approved", "published") else None
    return make.product(world["firm"], status=status, batch=batch)


def _owner(world, kind):
    return world["member"] if kind == "opportunity" else world["firm_member"]


def _actions(world):
    return {
        "submit": lambda e, owner: entries.submit(owner, e),
        "approve": lambda e, owner: entries.approve(
            world["staff"], e, world["batch"] if e.kind == "opportunity" else world["product_batch"]
        ),
        "return": lambda e, owner: entries.return_entry(world["staff"], e, "请补充技术指标"),
        "withdraw": lambda e, owner: entries.withdraw(owner, e),
        "restore": lambda e, owner: entries.restore(owner, e),
    }


#: (action, from-status) pairs that the workflow allows, and the status they lead to.
ALLOWED = {
    ("submit", "draft"): "submitted",
    ("submit", "returned"): "submitted",
    ("approve", "submitted"): "approved",
    ("return", "submitted"): "returned",
    ("return", "approved"): "returned",
    ("withdraw", "draft"): "withdrawn",
    ("withdraw", "submitted"): "withdrawn",
    ("withdraw", "returned"): "withdrawn",
    ("withdraw", "approved"): "withdrawn",
    ("withdraw", "published"): "withdrawn",
    ("restore", "withdrawn"): "draft",
}


@pytest.mark.parametrize("kind", ["opportunity", "product"])
@pytest.mark.parametrize("action", ["submit", "approve", "return", "withdraw", "restore"])
@pytest.mark.parametrize("status", ALL_STATUSES)
def test_transition_matrix(make, world, kind, action, status):
    entry = _entry(make, world, status, kind)
    run = _actions(world)[action]
    expected = ALLOWED.get((action, status))
    if expected is None:
        with pytest.raises(InvalidTransition):
            run(entry, _owner(world, kind))
        assert entry.status == status
    else:
        run(entry, _owner(world, kind))
        assert entry.status == expected


def test_approve_puts_entry_into_batch_and_publication_makes_it_public(make, world):
    opp = _entry(make, world, "submitted")
    entries.approve(world["staff"], opp, world["batch"])
    assert opp.batch_id == world["batch"].id
    assert batches.publish_batch(world["staff"], world["batch"]) == 1
    assert opp.status == EntryStatus.PUBLISHED
    assert opp.published_at is not None
    assert world["batch"].status == BatchStatus.PUBLISHED
    assert world["batch"].published_on == timeutil.local_today()


def test_publish_leaves_other_statuses_alone(make, world):
    approved = _entry(make, world, "approved")
    submitted = _entry(make, world, "submitted")
    batches.publish_batch(world["staff"], world["batch"])
    assert approved.status == EntryStatus.PUBLISHED
    assert submitted.status == EntryStatus.SUBMITTED


def test_publishing_an_empty_batch_is_refused(world):
    with pytest.raises(InvalidTransition, match="空批次"):
        batches.publish_batch(world["staff"], world["batch"])
    assert world["batch"].status == BatchStatus.COLLECTING


def test_publishing_a_published_batch_twice_is_refused(make, world):
    _entry(make, world, "approved")
    batches.publish_batch(world["staff"], world["batch"])
    with pytest.raises(InvalidTransition):
        batches.publish_batch(world["staff"], world["batch"])


def test_approve_into_published_batch_is_refused(make, world):
    closed = make.batch("opportunity", status=BatchStatus.PUBLISHED)
    opp = _entry(make, world, "submitted")
    with pytest.raises(InvalidTransition):
        entries.approve(world["staff"], opp, closed)
    assert opp.status == EntryStatus.SUBMITTED


def test_approve_into_batch_of_other_kind_is_refused(make, world):
    opp = _entry(make, world, "submitted")
    with pytest.raises(DomainError, match="同类清单"):
        entries.approve(world["staff"], opp, world["product_batch"])


def test_return_requires_a_comment(make, world):
    opp = _entry(make, world, "submitted")
    with pytest.raises(ValidationFailed) as info:
        entries.return_entry(world["staff"], opp, "   ")
    assert "comment" in info.value.errors
    assert opp.status == EntryStatus.SUBMITTED


def test_return_of_approved_entry_takes_it_out_of_the_batch(make, world):
    opp = _entry(make, world, "approved")
    entries.return_entry(world["staff"], opp, "预算与建设内容不匹配")
    assert opp.batch_id is None
    assert opp.review_comment == "预算与建设内容不匹配"


def test_withdrawing_approved_entry_leaves_the_batch(make, world):
    opp = _entry(make, world, "approved")
    entries.withdraw(world["member"], opp)
    assert opp.batch_id is None


def test_unverified_organization_cannot_submit(make):
    org = make.org(kind="government", verified=False)
    member = make.user(org)
    opp = make.opportunity(org)
    with pytest.raises(DomainError, match="认证"):
        entries.submit(member, opp)
    assert opp.status == EntryStatus.DRAFT


@pytest.mark.parametrize("action", ["submit", "withdraw", "restore", "edit"])
def test_member_of_another_organization_cannot_act(make, world, action):
    opp = _entry(make, world, "withdrawn" if action == "restore" else "draft")
    other = world["other"]
    with pytest.raises(PermissionDenied):
        if action == "edit":
            entries.update_entry(other, opp, dict(make.OPPORTUNITY_FORM))
        else:
            getattr(entries, action)(other, opp)


@pytest.mark.parametrize("action", ["submit", "withdraw", "edit"])
def test_organizer_cannot_act_as_owner(make, world, action):
    opp = _entry(make, world, "draft")
    with pytest.raises(PermissionDenied):
        if action == "edit":
            entries.update_entry(world["staff"], opp, dict(make.OPPORTUNITY_FORM))
        else:
            getattr(entries, action)(world["staff"], opp)


@pytest.mark.parametrize("action", ["approve", "return", "publish"])
def test_members_cannot_review(make, world, action):
    opp = _entry(make, world, "submitted")
    with pytest.raises(PermissionDenied):
        if action == "approve":
            entries.approve(world["member"], opp, world["batch"])
        elif action == "return":
            entries.return_entry(world["member"], opp, "x")
        else:
            batches.publish_batch(world["member"], world["batch"])


def test_create_entry_is_a_draft_of_the_actors_organization(make, world):
    form = dict(make.OPPORTUNITY_FORM, deadline=date.today() + timedelta(days=30))
    opp = entries.create_entry(world["member"], "opportunity", form)
    assert opp.status == EntryStatus.DRAFT
    assert opp.publisher_id == world["org"].id
    assert opp.field_area == "数字生活"
    assert opp.budget_min == Decimal("50.00")


def test_government_cannot_create_products(make, world):
    with pytest.raises(PermissionDenied):
        entries.create_entry(world["member"], "product", dict(make.PRODUCT_FORM))


def test_firm_creates_product_with_fields_and_tags(make, world):
    product = entries.create_entry(world["firm_member"], "product", dict(make.PRODUCT_FORM))
    assert product.categories == ["交通出行"]
    assert product.areas == ["数字生活"]
    assert product.tags == ["人工智能", "物联网"]


@pytest.mark.parametrize(
    ("field", "value", "error_field"),
    [
        ("description", "太短了", "description"),
        ("title", "x" * 121, "title"),
        ("field_category", "不存在的领域", "field_category"),
        ("tier", "huge", "tier"),
        ("region_county", "朝阳区", "region_county"),
        ("region_city", "长沙市", "region_city"),
        ("budget_min", "abc", "budget_min"),
        ("budget_min", "-5", "budget_min"),
        ("budget_max", "10", "budget_max"),
        ("cooperation_modes", ["barter"], "cooperation_modes"),
        ("cooperation_modes", [], "cooperation_modes"),
        ("deadline", date(2020, 1, 1), "deadline"),
    ],
)
def test_opportunity_business_rules(make, world, field, value, error_field):
    form = dict(make.OPPORTUNITY_FORM, deadline=None)
    form[field] = value
    with pytest.raises(ValidationFailed) as info:
        entries.create_entry(world["member"], "opportunity", form)
    assert error_field in info.value.errors


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("fields", []),
        ("fields", ["不存在"]),
        ("tags", ["量子纠缠"]),
        ("maturity", "mature"),
        ("fields", ["交通出行", "医疗健康", "教育就业", "文化旅游", "社会保障", "金融服务"]),
    ],
)
def test_product_business_rules(make, world, field, value):
    form = dict(make.PRODUCT_FORM)
    form[field] = value
    with pytest.raises(ValidationFailed) as info:
        entries.create_entry(world["firm_member"], "product", form)
    assert field in info.value.errors


@pytest.mark.parametrize("status", ["draft", "returned"])
def test_owner_edits_unpublished_entry_in_place(make, world, status):
    opp = _entry(make, world, status)
    form = dict(make.OPPORTUNITY_FORM, title="修改后的标题：停车诱导", deadline=None)
    assert entries.update_entry(world["member"], opp, form) is None
    assert opp.title == "修改后的标题：停车诱导"
    assert opp.status == status


def test_editing_a_withdrawn_entry_makes_it_a_draft(make, world):
    opp = _entry(make, world, "withdrawn")
    entries.update_entry(world["member"], opp, dict(make.OPPORTUNITY_FORM, deadline=None))
    assert opp.status == EntryStatus.DRAFT


@pytest.mark.parametrize("status", ["submitted", "approved"])
def test_entries_under_review_cannot_be_edited(make, world, status):
    opp = _entry(make, world, status)
    with pytest.raises(InvalidTransition, match="撤回"):
        entries.update_entry(world["member"], opp, dict(make.OPPORTUNITY_FORM, deadline=None))


class TestEditingPublishedEntries:
    """The public keeps seeing the last approved version until the change is approved."""

    def _edit(self, make, world):
        opp = _entry(make, world, "published")
        form = dict(make.OPPORTUNITY_FORM, title="新标题：全域智慧停车", deadline=None)
        revision = entries.update_entry(world["member"], opp, form)
        return opp, revision

    def test_edit_creates_a_submitted_revision_and_keeps_public_row(self, make, world):
        opp, revision = self._edit(make, world)
        assert revision.status == RevisionStatus.SUBMITTED
        assert opp.status == EntryStatus.PUBLISHED
        assert opp.title == make.OPPORTUNITY_FORM["title"]
        assert entries.editable_values(opp)["title"] == "新标题：全域智慧停车"

    def test_second_edit_updates_the_same_revision(self, make, world, db):
        opp, revision = self._edit(make, world)
        entries.update_entry(
            world["member"], opp, dict(make.OPPORTUNITY_FORM, title="第三版标题", deadline=None)
        )
        revisions = db.session.scalars(select(EntryRevision)).all()
        assert len(revisions) == 1
        assert revisions[0].data["title"] == "第三版标题"

    def test_approving_the_revision_updates_the_public_row(self, make, world):
        opp, revision = self._edit(make, world)
        version = index_sync.current_version()
        entries.approve_revision(world["staff"], revision)
        assert opp.title == "新标题：全域智慧停车"
        assert opp.status == EntryStatus.PUBLISHED
        assert revision.status == RevisionStatus.APPROVED
        assert index_sync.current_version() == version + 1

    def test_returning_the_revision_keeps_the_public_row(self, make, world):
        opp, revision = self._edit(make, world)
        entries.return_revision(world["staff"], revision, "标题不规范")
        assert opp.title == make.OPPORTUNITY_FORM["title"]
        assert revision.status == RevisionStatus.RETURNED
        assert entries.pending_revision(opp) is revision

    def test_revision_cannot_be_approved_twice(self, make, world):
        _, revision = self._edit(make, world)
        entries.approve_revision(world["staff"], revision)
        with pytest.raises(InvalidTransition):
            entries.approve_revision(world["staff"], revision)

    def test_withdrawing_discards_the_pending_revision(self, make, world):
        opp, revision = self._edit(make, world)
        entries.withdraw(world["member"], opp)
        assert revision.status == RevisionStatus.DISCARDED
        with pytest.raises(InvalidTransition):
            entries.approve_revision(world["staff"], revision)

    def test_product_revision_replaces_fields_and_tags(self, make, world):
        product = _entry(make, world, "published", kind="product")
        form = dict(make.PRODUCT_FORM, fields=["医疗健康", "社会保障"], tags=["5G"])
        revision = entries.update_entry(world["firm_member"], product, form)
        assert product.categories == ["交通出行"]
        entries.approve_revision(world["staff"], revision)
        assert sorted(product.categories) == ["医疗健康", "社会保障"]
        assert product.tags == ["5G"]


@pytest.mark.parametrize(
    ("status", "bumps"),
    [("published", True), ("approved", False), ("draft", False)],
)
def test_withdraw_bumps_the_index_version_only_for_public_entries(make, world, status, bumps):
    opp = _entry(make, world, status)
    before = index_sync.current_version()
    entries.withdraw(world["member"], opp)
    assert (index_sync.current_version() > before) is bumps


def test_every_state_change_is_audited(make, world, db):
    opp = entries.create_entry(world["member"], "opportunity", dict(make.OPPORTUNITY_FORM, deadline=None))
    entries.submit(world["member"], opp)
    entries.return_entry(world["staff"], opp, "补充材料")
    entries.submit(world["member"], opp)
    entries.approve(world["staff"], opp, world["batch"])
    batches.publish_batch(world["staff"], world["batch"])
    entries.withdraw(world["member"], opp)
    entries.restore(world["member"], opp)
    actions = db.session.scalars(
        select(AuditEvent.action).where(AuditEvent.object_type == "opportunity").order_by(AuditEvent.id)
    ).all()
    assert actions == [
        "entry.create",
        "entry.submit",
        "entry.return",
        "entry.submit",
        "entry.approve",
        "entry.withdraw",
        "entry.restore",
    ]
    publish = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "batch.publish"))
    assert publish.actor_id == world["staff"].id and "1条" in publish.summary

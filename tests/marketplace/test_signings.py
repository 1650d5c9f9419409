"""项目签约: who records them, the rules on firms, products, amounts, dates and events, the move to
创新研发, edits and deletions, notifications and the event page."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import func, select

from marketplace.models import (
    AuditEvent,
    EntryStatus,
    Event,
    Notification,
    NotificationKind,
    OrgKind,
    ScenarioStage,
    Signing,
    StageChange,
)
from marketplace.services import lifecycle as service
from marketplace.services.errors import InvalidTransition, NotFound, PermissionDenied, ValidationFailed
from tests.marketplace import test_lifecycle as base
from tests.marketplace.test_lifecycle import INSIDERS, ROLES, at_stage, login_as

clock = base.clock
world = base.world

SIGNED_ON = date(2026, 7, 12)


def data(w, **overrides) -> dict:
    values = {
        "title": "修水县小型水库雨水情测报和大坝安全监测设施建设项目",
        "signed_on": SIGNED_ON,
        "amount_wan": 386,
        "event_id": None,
        "consortium_id": None,
        "organization_ids": [w.firm.id],
        "product_ids": [w.product.id],
        "note": "质保三年，按季度结算运维费",
    }
    values.update(overrides)
    return values


def make_event(
    db, kind: str = "signing", status: str = "finished", title: str = "2026年应用场景项目集中签约仪式"
):
    event = Event(
        kind=kind,
        title=title,
        status=status,
        starts_at=datetime(2026, 7, 12, 6, 30),
        capacity=100,
        registration_deadline=date(2026, 7, 5),
        venue="南昌市红谷滩区江西省数字经济创新发展中心",
    )
    db.session.add(event)
    db.session.commit()
    return event


# ---------------------------------------------------------------- recording


def test_a_signing_moves_a_published_need_to_rnd_on_its_date(world, db):
    signing = service.record_signing(world.publisher_user, world.need, data(world))
    assert [p.organization_id for p in signing.parties] == [world.firm.id]
    assert [p.product_id for p in signing.products] == [world.product.id]
    assert signing.amount_wan == 386 and signing.created_by_id == world.publisher_user.id
    step = db.session.scalars(select(StageChange)).one()
    assert (step.from_stage, step.to_stage, step.happened_on, step.signing_id) == (
        "published",
        "rnd",
        SIGNED_ON,
        signing.id,
    )
    assert world.need.stage == ScenarioStage.RND


@pytest.mark.parametrize("stage", ["rnd", "pilot", "demonstration"])
def test_a_signing_on_a_need_already_past_publication_moves_nothing(world, db, stage):
    at_stage(db, world.need, stage, day=date(2026, 6, 1))
    service.record_signing(world.organizer, world.need, data(world))
    assert world.need.stage == stage
    assert db.session.scalar(select(func.count()).select_from(StageChange)) == 1


def test_no_signing_on_a_terminated_need(world, db):
    at_stage(db, world.need, "terminated")
    with pytest.raises(InvalidTransition, match="已终止"):
        service.record_signing(world.organizer, world.need, data(world))


@pytest.mark.parametrize("role", ROLES)
def test_who_may_record_a_signing(world, db, role):
    user = world.user(role)
    allowed = role in ("publisher_user", "organizer", "admin")
    assert service.can(user, "record_signing", world.need) is allowed
    if allowed:
        assert service.record_signing(user, world.need, data(world)).id
    else:
        with pytest.raises(PermissionDenied):
            service.record_signing(user, world.need, data(world))
        assert db.session.scalar(select(func.count()).select_from(Signing)) == 0


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"organization_ids": []}, "organization_ids", "请至少选择一家签约企业"),
        ({"title": "项"}, "title", "签约项目名称应为2到200个字"),
        ({"amount_wan": -1}, "amount_wan", "签约金额不能为负数"),
        ({"amount_wan": "很多"}, "amount_wan", "签约金额请输入数字"),
        ({"signed_on": date(2026, 12, 2)}, "signed_on", "签约日期不能晚于今天（北京时间）"),
        ({"signed_on": date(2026, 3, 27)}, "signed_on", "签约日期不能早于需求发布日期（2026-03-28）"),
        ({"signed_on": "2026-07-12"}, "signed_on", "请填写有效的签约日期"),
        ({"product_ids": [999999]}, "product_ids", "只能选择签约企业已发布的产品"),
        ({"consortium_id": 999999}, "consortium_id", "只能选择该需求已选定答题的联合体"),
        ({"event_id": 999999}, "event_id", "请选择已发布的签约仪式或供需对接会"),
    ],
)
def test_signing_fields_are_checked(world, db, overrides, field, message):
    with pytest.raises(ValidationFailed) as exc:
        service.record_signing(world.publisher_user, world.need, data(world, **overrides))
    assert message in exc.value.errors[field]
    assert db.session.scalar(select(func.count()).select_from(Signing)) == 0
    assert world.need.stage == "published"


def test_amounts_are_optional_and_zero_is_allowed(world):
    assert (
        service.record_signing(world.organizer, world.need, data(world, amount_wan=None)).amount_wan is None
    )
    other = service.record_signing(world.organizer, world.need, data(world, title="二期", amount_wan=0))
    assert other.amount_wan == 0


def test_the_publisher_is_not_a_party(world):
    with pytest.raises(ValidationFailed) as exc:
        service.record_signing(
            world.organizer, world.need, data(world, organization_ids=[world.publisher.id])
        )
    assert "不必列为签约企业" in exc.value.errors["organization_ids"]


def test_parties_must_be_verified(world, make):
    pending = make.org(kind=OrgKind.ENTERPRISE, verified=False)
    with pytest.raises(ValidationFailed, match="须已通过组织方认证"):
        service.record_signing(
            world.organizer, world.need, data(world, organization_ids=[pending.id], product_ids=[])
        )


def test_products_belong_to_the_parties_and_are_published(world, make):
    with pytest.raises(ValidationFailed, match="签约企业已发布的产品"):
        service.record_signing(world.organizer, world.need, data(world, product_ids=[world.other_product.id]))
    draft = make.product(world.firm, status=EntryStatus.DRAFT, name="草稿产品")
    with pytest.raises(ValidationFailed, match="签约企业已发布的产品"):
        service.record_signing(world.organizer, world.need, data(world, product_ids=[draft.id]))


def test_picking_the_consortium_signs_with_its_accepted_members(world):
    signing = service.record_signing(
        world.organizer,
        world.need,
        data(
            world,
            organization_ids=[],
            consortium_id=world.consortium.id,
            product_ids=[world.partner_product.id],
        ),
    )
    assert {p.organization_id for p in signing.parties} == {world.firm.id, world.partner.id}
    assert signing.consortium_id == world.consortium.id


def test_a_consortium_without_a_selected_response_cannot_be_picked(world, db):
    world.response.status = "rejected"
    db.session.commit()
    with pytest.raises(ValidationFailed, match="已选定答题的联合体"):
        service.record_signing(world.organizer, world.need, data(world, consortium_id=world.consortium.id))


@pytest.mark.parametrize(
    ("kind", "status", "ok"),
    [
        ("signing", "finished", True),
        ("matchmaking", "open", True),
        ("salon", "finished", False),
        ("roadshow", "finished", False),
        ("signing", "draft", False),
        ("signing", "cancelled", False),
    ],
)
def test_the_event_is_a_published_signing_or_matchmaking_event(world, db, kind, status, ok):
    event = make_event(db, kind=kind, status=status)
    if ok:
        assert (
            service.record_signing(world.organizer, world.need, data(world, event_id=event.id)).event_id
            == event.id
        )
    else:
        with pytest.raises(ValidationFailed, match="签约仪式或供需对接会"):
            service.record_signing(world.organizer, world.need, data(world, event_id=event.id))


def test_a_signing_is_audited_and_notifies_the_publisher_and_the_parties(world, db, make):
    colleague = make.user(world.publisher)
    service.record_signing(world.organizer, world.need, data(world))
    signing_notes = db.session.scalars(
        select(Notification).where(Notification.kind == NotificationKind.SIGNING)
    ).all()
    assert {n.user_id for n in signing_notes} == {world.publisher_user.id, colleague.id, world.firm_user.id}
    assert all("修水县小型水库" in n.title for n in signing_notes)
    stage_notes = db.session.scalars(
        select(Notification).where(Notification.kind == NotificationKind.STAGE_CHANGED)
    ).all()
    assert {n.user_id for n in stage_notes} == {
        world.publisher_user.id,
        colleague.id,
        world.firm_user.id,
        world.partner_user.id,
    }
    actions = set(db.session.scalars(select(AuditEvent.action)))
    assert {"signing.create", "opportunity.stage.start_rnd"} <= actions


# ---------------------------------------------------------------- editing and deleting


@pytest.mark.parametrize("role", ROLES[1:])
def test_who_may_edit_and_delete_a_signing(world, role):
    signing = service.record_signing(world.organizer, world.need, data(world))
    user = world.user(role)
    allowed = role in ("publisher_user", "organizer", "admin")
    assert service.can(user, "edit", signing) is allowed
    assert service.can(user, "delete", signing) is allowed
    if not allowed:
        with pytest.raises(PermissionDenied):
            service.update_signing(user, signing, data(world, title="改名"))
        with pytest.raises(PermissionDenied):
            service.delete_signing(user, signing)


def test_editing_moves_the_step_it_caused_with_it(world, db):
    signing = service.record_signing(world.publisher_user, world.need, data(world))
    service.update_signing(
        world.publisher_user,
        signing,
        data(
            world,
            signed_on=date(2026, 7, 1),
            organization_ids=[world.firm.id, world.partner.id],
            product_ids=[],
        ),
    )
    step = db.session.scalars(select(StageChange)).one()
    assert step.happened_on == date(2026, 7, 1)
    assert {p.organization_id for p in signing.parties} == {world.firm.id, world.partner.id}
    assert signing.products == []


def test_an_edit_cannot_date_the_signing_after_the_next_step(world, db):
    signing = service.record_signing(world.publisher_user, world.need, data(world))
    service.change_stage(world.publisher_user, world.need, "start_pilot", date(2026, 8, 1))
    with pytest.raises(ValidationFailed, match="不能晚于下一阶段日期（2026-08-01）"):
        service.update_signing(world.publisher_user, signing, data(world, signed_on=date(2026, 8, 2)))
    assert db.session.get(Signing, signing.id).signed_on == SIGNED_ON


def test_deleting_a_signing_keeps_the_history(world, db):
    signing = service.record_signing(world.publisher_user, world.need, data(world))
    service.delete_signing(world.organizer, signing)
    assert db.session.scalar(select(func.count()).select_from(Signing)) == 0
    step = db.session.scalars(select(StageChange)).one()
    assert step.to_stage == "rnd" and step.signing_id is None
    assert world.need.stage == "rnd"
    assert db.session.scalars(select(AuditEvent).where(AuditEvent.action == "signing.delete")).one()


def test_a_signing_of_an_unpublished_need_does_not_exist(world, db):
    signing = service.record_signing(world.publisher_user, world.need, data(world))
    world.need.status = EntryStatus.WITHDRAWN
    db.session.commit()
    with pytest.raises(NotFound):
        service.get_signing(signing.id)


# ---------------------------------------------------------------- pages


def test_the_event_page_lists_its_signings_without_notes(client, world, db):
    event = make_event(db)
    service.record_signing(world.organizer, world.need, data(world, event_id=event.id))
    html = client.get(f"/events/{event.id}").get_data(as_text=True)
    assert "本次活动签约项目（1）" in html and "修水县小型水库雨水情测报和大坝安全监测设施建设项目" in html
    assert "386 万元" in html and world.firm.name in html
    assert "质保三年" not in html


def test_an_unpublished_needs_signing_is_not_on_the_event_page(client, world, db):
    event = make_event(db)
    service.record_signing(world.organizer, world.need, data(world, event_id=event.id))
    world.need.status = EntryStatus.WITHDRAWN
    db.session.commit()
    assert "本次活动签约项目" not in client.get(f"/events/{event.id}").get_data(as_text=True)


@pytest.mark.parametrize("role", ROLES)
def test_who_opens_the_signing_form(app, world, role):
    client, _ = login_as(app, world, role)
    reply = client.get(f"/lifecycle/opportunities/{world.need.id}/signings/new")
    if role == "anonymous":
        assert reply.status_code == 302
    elif role in ("publisher_user", "organizer", "admin"):
        assert reply.status_code == 200
    else:
        assert reply.status_code == (403 if role in INSIDERS else 404)


def test_the_publisher_records_a_signing_through_the_form(app, world, db):
    client, auth = login_as(app, world, "publisher_user")
    reply = auth.post(
        f"/lifecycle/opportunities/{world.need.id}/signings/new",
        {
            "title": "修水县小型水库监测设施建设项目",
            "signed_on": "2026-07-12",
            "amount_wan": "386.5",
            "event_id": "",
            "consortium_id": "",
            "organization_ids": [str(world.firm.id)],
            "product_ids": [str(world.product.id)],
            "note": "质保三年",
        },
    )
    assert reply.status_code == 302
    signing = db.session.scalars(select(Signing)).one()
    assert float(signing.amount_wan) == 386.5 and signing.signed_on == SIGNED_ON
    assert world.need.stage == "rnd"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("amount_wan", "-5", "签约金额不能为负数"),
        ("amount_wan", "abc", "请输入数字"),
        ("signed_on", "2026-02-30", "日期格式无效"),
        ("organization_ids", ["abc"], "请选择已认证的企业"),
        ("event_id", "99999999999", "请选择有效的活动"),
        ("event_id", "abc", "请选择有效的活动"),
        ("signed_on", "", "请填写签约日期"),
    ],
)
def test_malformed_signing_input_is_a_400_with_the_message(app, world, db, field, value, message):
    client, auth = login_as(app, world, "organizer")
    form = {
        "title": "修水县小型水库监测设施建设项目",
        "signed_on": "2026-07-12",
        "organization_ids": [str(world.firm.id)],
    }
    form[field] = value
    reply = auth.post(f"/lifecycle/opportunities/{world.need.id}/signings/new", form)
    assert reply.status_code == 400
    assert message in reply.get_data(as_text=True)
    assert db.session.scalar(select(func.count()).select_from(Signing)) == 0


def test_a_party_firm_cannot_delete_a_signing_through_the_page(app, world, db):
    signing = service.record_signing(world.organizer, world.need, data(world))
    client, auth = login_as(app, world, "firm_user")
    assert auth.post(f"/lifecycle/signings/{signing.id}/delete").status_code == 403
    assert db.session.get(Signing, signing.id) is not None


def test_the_organizer_edits_a_signing_through_the_form(app, world, db):
    signing = service.record_signing(world.organizer, world.need, data(world))
    client, auth = login_as(app, world, "organizer")
    page = client.get(f"/lifecycle/signings/{signing.id}/edit").get_data(as_text=True)
    assert "修水县小型水库雨水情测报和大坝安全监测设施建设项目" in page
    reply = auth.post(
        f"/lifecycle/signings/{signing.id}/edit",
        {
            "title": "修水县水库监测项目（一期）",
            "signed_on": (SIGNED_ON - timedelta(days=2)).isoformat(),
            "organization_ids": [str(world.firm.id)],
        },
    )
    assert reply.status_code == 302
    db.session.expire_all()
    signing = db.session.get(Signing, signing.id)
    assert signing.title == "修水县水库监测项目（一期）" and signing.products == []


def test_the_form_offers_the_delivering_firms_first(world):
    names = [o.name for o in service.party_choices(world.need)]
    assert set(names[:2]) == {world.firm.name, world.partner.name}
    assert world.publisher.name not in names and world.other_firm.name in names

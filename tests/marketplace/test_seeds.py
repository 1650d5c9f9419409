"""The demo seeds load completely and idempotently."""

from __future__ import annotations

from collections import Counter

from sqlalchemy import func, select

from marketplace.models import (
    AuditEvent,
    Batch,
    BatchStatus,
    EntryStatus,
    Opportunity,
    Organization,
    Product,
    User,
)
from marketplace.reference import reference
from marketplace.services.seeding import load_seeds


def _counts(db):
    return {
        model.__name__: db.session.scalar(select(func.count()).select_from(model))
        for model in (Organization, User, Batch, Opportunity, Product, AuditEvent)
    }


def test_seeds_load_twice_without_changes(app, db):
    first = load_seeds(app.config["SEEDS_DIR"])
    assert first.changed
    counts = _counts(db)
    stamps = db.session.execute(select(Product.id, Product.updated_at)).all()
    second = load_seeds(app.config["SEEDS_DIR"])
    assert not second.changed
    assert _counts(db) == counts
    assert db.session.execute(select(Product.id, Product.updated_at)).all() == stamps


def test_seeds_cover_the_required_volume_and_variety(app, db):
    load_seeds(app.config["SEEDS_DIR"])
    orgs = db.session.scalars(select(Organization)).all()
    assert len(orgs) >= 40
    assert {o.kind for o in orgs} == {"government", "institution", "soe", "enterprise", "research", "service"}
    assert {o.region_city for o in orgs} >= set(reference().cities) - {"赣江新区"}
    opps = db.session.scalars(select(Opportunity)).all()
    products = db.session.scalars(select(Product)).all()
    assert len(opps) >= 80 and len(products) >= 250
    assert {o.field_area for o in opps} == set(reference().area_names)
    assert len({o.field_category for o in opps}) >= 14
    for entries in (opps, products):
        statuses = Counter(e.status for e in entries)
        assert set(statuses) == {s.value for s in EntryStatus}
    published = db.session.scalars(select(Batch).where(Batch.status == BatchStatus.PUBLISHED)).all()
    # 机会清单 batches from 2023 to 2026 (the programme's history), 产品清单 batches in 2026.
    assert Counter(b.kind for b in published) == {"opportunity": 5, "product": 2}
    lengths = sorted(len(o.description) for o in opps)
    assert lengths[0] < 150 and lengths[-1] > 400


def test_seeded_products_belong_to_product_owner_kinds(app, db):
    load_seeds(app.config["SEEDS_DIR"])
    kinds = set(
        db.session.scalars(select(Organization.kind).join(Product, Product.owner_id == Organization.id))
    )
    assert kinds <= {"enterprise", "research", "service"}


def test_seeded_demo_accounts_can_log_in(app, db, auth):
    report = load_seeds(app.config["SEEDS_DIR"])
    roles = {u.role for u in db.session.scalars(select(User))}
    assert {"organizer", "member"} <= roles
    email, password, _ = report.demo_accounts[0]
    response = auth.login(email, password)
    assert response.status_code == 302


def test_seeded_responses_follow_the_rules(app, db):
    from marketplace.models import Consortium, Notification, Response
    from marketplace.models.enums import PRODUCT_OWNER_KINDS

    load_seeds(app.config["SEEDS_DIR"])
    responses = db.session.scalars(select(Response)).all()
    assert len({r.opportunity_id for r in responses}) >= 20
    assert set(Counter(r.status for r in responses)) == {
        "draft", "submitted", "shortlisted", "selected", "rejected", "withdrawn"
    }
    for r in responses:
        assert r.opportunity.status == EntryStatus.PUBLISHED
        assert r.organization.kind in PRODUCT_OWNER_KINDS and r.organization.verified
        owners = {r.organization_id} | set(r.consortium.accepted_organization_ids if r.consortium else ())
        assert r.product_rows and all(p.owner_id in owners and p.status == "published" for p in r.products)
        if r.status == "draft":
            assert r.opportunity.is_open and r.submitted_at is None
        else:
            assert r.submitted_at is not None
    live = Counter((r.opportunity_id, r.organization_id) for r in responses if r.status != "withdrawn")
    assert max(live.values()) == 1
    consortia = db.session.scalars(select(Consortium)).all()
    assert len(consortia) >= 3 and any(c.pending for c in consortia)
    firm = db.session.scalar(select(User).where(User.email == "firm@demo.jxcj.cn"))
    gov = db.session.scalar(select(User).where(User.email == "gov@demo.jxcj.cn"))
    for user in (firm, gov):
        count = select(func.count()).select_from(Notification).where(Notification.user_id == user.id)
        assert db.session.scalar(count)
    assert {r.status for r in responses if r.organization_id == firm.organization_id} == {
        "draft", "submitted", "shortlisted", "selected", "rejected", "withdrawn"
    }

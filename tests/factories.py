"""Test data factories. The password hash is computed once for the whole run."""

from __future__ import annotations

import itertools
from datetime import date, timedelta
from decimal import Decimal

from werkzeug.security import generate_password_hash

from marketplace.credit_code import make_code
from marketplace.extensions import db
from marketplace.models import (
    Batch,
    BatchStatus,
    EntryStatus,
    Opportunity,
    Organization,
    OrgKind,
    Product,
    ProductField,
    ProductTag,
    Role,
    User,
)
from marketplace.models.base import utcnow

PASSWORD = "correct-horse-42"
# A cheap hash method: check_password_hash reads the method from the hash, so logins in
# tests stay fast while production hashes keep werkzeug's default (scrypt).
PASSWORD_HASH = generate_password_hash(PASSWORD, method="pbkdf2:sha256:1000")
_seq = itertools.count(1)
_ORG_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"


def _org_body(n: int) -> str:
    digits = []
    for _ in range(6):
        n, r = divmod(n, len(_ORG_ALPHABET))
        digits.append(_ORG_ALPHABET[r])
    return "MA" + "".join(reversed(digits))


def credit_code(kind: str = OrgKind.ENTERPRISE) -> str:
    prefix = {"government": "11", "institution": "12", "research": "12", "service": "52"}.get(kind, "91")
    return make_code(prefix, "360100", _org_body(next(_seq)))


def org(kind: str = OrgKind.ENTERPRISE, verified: bool = True, **kw) -> Organization:
    n = next(_seq)
    values = dict(
        name=f"测试单位{n}",
        kind=kind,
        credit_code=credit_code(kind),
        region_city="南昌市",
        region_county="红谷滩区",
        contact_name="张三",
        contact_phone="0791-86000000",
        verified=verified,
    )
    values.update(kw)
    obj = Organization(**values)
    db.session.add(obj)
    db.session.commit()
    return obj


def user(organization: Organization | None = None, role: str = Role.MEMBER, **kw) -> User:
    n = next(_seq)
    values = dict(
        email=f"user{n}@example.cn",
        name=f"用户{n}",
        role=role,
        organization=organization,
        password_hash=PASSWORD_HASH,
        active=True,
    )
    values.update(kw)
    obj = User(**values)
    db.session.add(obj)
    db.session.commit()
    return obj


def organizer(**kw) -> User:
    return user(None, role=Role.ORGANIZER, **kw)


def admin(**kw) -> User:
    return user(None, role=Role.ADMIN, **kw)


def batch(kind: str = "opportunity", status: str = BatchStatus.COLLECTING, **kw) -> Batch:
    n = next(_seq)
    label = "机会" if kind == "opportunity" else "产品"
    values = dict(title=f"2026年第{n}批{label}清单", kind=kind, status=status)
    if status == BatchStatus.PUBLISHED:
        values["published_on"] = date(2026, 3, 28)
    values.update(kw)
    obj = Batch(**values)
    db.session.add(obj)
    db.session.commit()
    return obj


OPPORTUNITY_FORM = {
    "title": "老旧小区智慧停车诱导系统建设",
    "description": "辖区老旧小区停车位紧张，夜间车辆乱停乱放严重，需要建设停车诱导和泊位共享系统。",
    "field_category": "交通出行",
    "tier": "focused",
    "region_city": "南昌市",
    "region_county": "东湖区",
    "budget_min": "50",
    "budget_max": "120",
    "cooperation_modes": ["procurement", "joint_rnd"],
    "deadline": (date.today() + timedelta(days=60)).isoformat(),
    "contact_name": "王敏",
    "contact_phone": "0791-88123456",
}

PRODUCT_FORM = {
    "name": "城市级静态交通一体化运营平台",
    "description": "基于地磁与高位视频的泊位检测，提供车位引导、反向寻车、无感支付和运营分析。",
    "fields": ["交通出行"],
    "tags": ["物联网", "人工智能"],
    "maturity": "scale",
    "cases": "已在南昌市东湖区部署，覆盖泊位8000个。",
    "region_city": "南昌市",
    "region_county": "青山湖区",
}


def opportunity(
    publisher: Organization, status: str = EntryStatus.DRAFT, batch: Batch | None = None, **kw
) -> Opportunity:
    values = dict(OPPORTUNITY_FORM)
    values.pop("region_county")
    values.update(
        region_county="东湖区",
        field_area="数字生活",
        budget_min=Decimal("50"),
        budget_max=Decimal("120"),
        deadline=date.today() + timedelta(days=60),
        publisher_id=publisher.id,
        status=status,
        batch_id=batch.id if batch else None,
    )
    if status == EntryStatus.PUBLISHED:
        values["published_at"] = utcnow()
    values.update(kw)
    obj = Opportunity(**values)
    db.session.add(obj)
    db.session.commit()
    return obj


def product(owner: Organization, status: str = EntryStatus.DRAFT, batch: Batch | None = None,
            fields: tuple[str, ...] = ("交通出行",), tags: tuple[str, ...] = ("物联网",), **kw) -> Product:
    from marketplace.reference import reference

    values = dict(
        name=PRODUCT_FORM["name"],
        description=PRODUCT_FORM["description"],
        maturity="scale",
        cases=PRODUCT_FORM["cases"],
        region_city="南昌市",
        region_county="青山湖区",
        owner_id=owner.id,
        status=status,
        batch_id=batch.id if batch else None,
    )
    if status == EntryStatus.PUBLISHED:
        values["published_at"] = utcnow()
    values.update(kw)
    obj = Product(**values)
    obj.field_rows = [ProductField(category=c, area=reference().area_of(c)) for c in fields]
    obj.tag_rows = [ProductTag(tag=t) for t in tags]
    db.session.add(obj)
    db.session.commit()
    return obj


RESPONSE_SUMMARY = (
    "我司拟以城市级静态交通一体化运营平台为基础，针对老旧小区夜间停车难问题，部署高位视频与地磁"
    "泊位检测，建设车位诱导屏和错时共享小程序，三个月内完成试点并接入区级停车数据平台。"
)


def response(opportunity: Opportunity, organization: Organization, products=(), status: str = "draft",
             **kw):
    """A response row written directly (bypassing the service), for read-side tests."""
    from marketplace.models import Response, ResponseProduct

    values = dict(
        opportunity_id=opportunity.id,
        organization_id=organization.id,
        status=status,
        summary=RESPONSE_SUMMARY,
        delivery_plan="第1月调研，第2–3月部署试点。",
        quote=Decimal("88"),
        contact_name="李工",
        contact_phone="13800000000",
    )
    if status != "draft":
        values["submitted_at"] = utcnow()
    values.update(kw)
    obj = Response(**values)
    obj.product_rows = [ResponseProduct(product_id=p.id) for p in products]
    db.session.add(obj)
    db.session.commit()
    return obj

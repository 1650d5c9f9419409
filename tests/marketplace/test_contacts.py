"""Publishers' contact details on the public pages (issue 12, item 10).

Shown to logged-in members of verified organizations, the publisher's own members, organizers
and admins; everyone else reads 「登录并通过单位认证后可查看联系方式」 instead.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from marketplace.models import EntryStatus
from marketplace.services.contacts import HIDDEN_NOTE, can_view_contact

NEED_PHONE = "0797-8123456"
FIRM_PHONE = "0791-86663210"
FIRM_EMAIL = "bd@ganxin-iot.cn"


@pytest.fixture
def world(make):
    publisher = make.org(kind="government", name="赣州市城市管理局")
    firm = make.org(kind="enterprise", name="江西赣鑫物联科技有限公司", contact_phone=FIRM_PHONE,
                    contact_email=FIRM_EMAIL)
    other = make.org(kind="enterprise")
    unverified = make.org(kind="enterprise", verified=False)
    batch = make.batch("opportunity", status="published")
    product_batch = make.batch("product", status="published")
    return SimpleNamespace(
        anonymous=None,
        publisher_member=make.user(publisher),
        firm_member=make.user(firm),
        other_member=make.user(other),
        unverified_member=make.user(unverified),
        organizer=make.organizer(),
        admin=make.admin(),
        need=make.opportunity(publisher, status=EntryStatus.PUBLISHED, batch=batch, contact_phone=NEED_PHONE),
        product=make.product(firm, status=EntryStatus.PUBLISHED, batch=product_batch),
    )


#: who → (sees the need's contact, sees the product's contact)
MATRIX = {
    "anonymous": (False, False),
    "unverified_member": (False, False),
    "other_member": (True, True),  # a verified organization, neither publisher nor owner
    "publisher_member": (True, True),
    "firm_member": (True, True),
    "organizer": (True, True),
    "admin": (True, True),
}


@pytest.mark.parametrize("who", MATRIX)
def test_the_opportunity_page_shows_the_contact_only_to_those_allowed(client, auth, world, who):
    if who != "anonymous":
        auth.login(getattr(world, who))
    html = client.get(f"/opportunities/{world.need.id}").get_data(as_text=True)
    allowed = MATRIX[who][0]
    assert (NEED_PHONE in html) is allowed
    assert (HIDDEN_NOTE in html) is not allowed


@pytest.mark.parametrize("who", MATRIX)
def test_the_product_page_shows_the_contact_only_to_those_allowed(client, auth, world, who):
    if who != "anonymous":
        auth.login(getattr(world, who))
    html = client.get(f"/products/{world.product.id}").get_data(as_text=True)
    allowed = MATRIX[who][1]
    assert (FIRM_PHONE in html) is allowed and (FIRM_EMAIL in html) is allowed
    assert (HIDDEN_NOTE in html) is not allowed


def test_an_unverified_member_still_sees_the_contact_of_its_own_entries(make):
    organization = make.org(kind="enterprise", verified=False)
    member = make.user(organization)
    own = make.product(organization, status=EntryStatus.PUBLISHED)
    assert can_view_contact(member, own)
    assert not can_view_contact(member, None)


def test_anonymous_visitors_get_a_login_link_back_to_the_page(client, world):
    html = client.get(f"/opportunities/{world.need.id}").get_data(as_text=True)
    assert f"/auth/login?next=/opportunities/{world.need.id}" in html

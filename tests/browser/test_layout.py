"""Layout and accessibility checks on the main pages, for each kind of visitor (issue 12).

* 390×844: the page body never scrolls sideways, and every button in a table is in view (tables
  stack into cards or keep their action column on screen).
* 1366×900: the navbar holds on one line and no menu item wraps mid-word.
* axe-core finds no serious or critical violation; every form control has a label; the keyboard
  focus is visible; the page declares its language.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from tests.browser import support

pytestmark = [pytest.mark.browser, pytest.mark.no_app]

ROLES = ("anonymous", "firm", "gov", "organizer", "admin")


@pytest.fixture(scope="module")
def ids(live):
    """Ids of seeded pages: a published need, a published product, a published batch."""
    from marketplace.models import Batch, BatchStatus, EntryStatus, Event, Opportunity, Product

    with live.app.app_context():
        from marketplace.extensions import db

        def first(stmt):
            return db.session.scalar(stmt.limit(1))

        return {
            "need": first(select(Opportunity.id).where(Opportunity.status == EntryStatus.PUBLISHED)),
            "product": first(select(Product.id).where(Product.status == EntryStatus.PUBLISHED)),
            "batch": first(select(Batch.id).where(Batch.published_on.is_not(None))),
            "open_batch": first(select(Batch.id).where(Batch.status == BatchStatus.COLLECTING)),
            "event": first(select(Event.id).where(Event.status == "open")),
            "gov_need": first(
                select(Opportunity.id)
                .where(Opportunity.status == EntryStatus.PUBLISHED)
                .where(Opportunity.publisher.has(name="南昌市交通运输局"))
            ),
        }


@pytest.fixture(scope="module")
def pages(chromium, live, accounts):
    """One logged-in browser context per role, reused by every check of this module."""
    opened: dict[str, tuple] = {}

    def get(role: str):
        if role not in opened:
            context = chromium.new_context(viewport=support.DESKTOP, locale="zh-CN")
            context.set_default_timeout(30_000)
            page = context.new_page()
            console = support.Console()
            console.watch(page)
            if role != "anonymous":
                support.login(page, live.url, accounts[role])
            opened[role] = (page, console)
        page, console = opened[role]
        console.errors.clear()
        return page, console

    yield get
    for page, _ in opened.values():
        page.context.close()


#: (role, path) of the pages checked; {need}, {product}, {batch}, {gov_need} come from ``ids``.
PAGES = [
    ("anonymous", "/"),
    ("anonymous", "/opportunities"),
    ("anonymous", "/products?city=南昌市"),
    ("anonymous", "/opportunities/{need}"),
    ("anonymous", "/products/{product}"),
    ("anonymous", "/batches"),
    ("anonymous", "/batches/{batch}"),
    ("anonymous", "/search?q=停车"),
    ("anonymous", "/events"),
    ("anonymous", "/auth/login"),
    ("anonymous", "/auth/register"),
    ("firm", "/my/"),
    ("firm", "/my/products/new"),
    ("firm", "/responses/mine"),
    ("firm", "/notifications/"),
    ("gov", "/my/"),
    ("gov", "/my/opportunities/new"),
    ("gov", "/matching/opportunities/{gov_need}"),
    ("gov", "/responses/opportunities/{gov_need}"),
    ("organizer", "/admin/"),
    ("organizer", "/admin/batches/{open_batch}"),
    ("organizer", "/events/{event}/manage"),
    ("organizer", "/admin/review"),
    ("organizer", "/admin/batches"),
    ("organizer", "/admin/organizations"),
    ("organizer", "/admin/audit"),
    ("organizer", "/events/manage"),
]
#: The pages axe-core checks (the main page of each journey).
AXE_PAGES = [
    ("anonymous", "/"),
    ("anonymous", "/opportunities"),
    ("anonymous", "/opportunities/{need}"),
    ("anonymous", "/products/{product}"),
    ("anonymous", "/search?q=停车"),
    ("anonymous", "/auth/register"),
    ("firm", "/my/"),
    ("firm", "/my/products/new"),
    ("gov", "/matching/opportunities/{gov_need}"),
    ("organizer", "/admin/review"),
]


def _open(pages, live, ids, role: str, path: str, size=support.DESKTOP):
    page, console = pages(role)
    page.set_viewport_size(size)
    response = page.goto(live.url + path.format(**ids))
    assert response is not None and response.status == 200, f"{path}: HTTP {response and response.status}"
    return page, console


@pytest.mark.parametrize(("role", "path"), PAGES, ids=[f"{r}:{p}" for r, p in PAGES])
def test_phone_layout(pages, live, ids, role, path):
    page, console = _open(pages, live, ids, role, path, support.PHONE)
    assert support.horizontal_overflow(page) <= 0, f"{path} scrolls sideways at 390 px"
    assert support.hidden_table_actions(page) == [], f"{path}: table buttons out of view at 390 px"
    console.assert_clean()


@pytest.mark.parametrize("role", ROLES)
def test_navbar_holds_on_one_line_at_1366(pages, live, ids, role):
    for path in ("/", "/opportunities/{need}"):
        page, console = _open(pages, live, ids, role, path)
        assert support.navbar_rows(page) == 1, f"navbar wraps for {role} on {path}"
        assert support.broken_nav_labels(page) == []
        console.assert_clean()


def test_navbar_menus_open_with_the_keyboard_and_close_with_escape(pages, live, ids):
    page, console = _open(pages, live, ids, "organizer", "/")
    summary = page.locator("#nav-staff-menu > summary")
    summary.focus()
    assert support.focus_ring_visible(page)
    page.keyboard.press("Enter")
    menu = page.locator("#nav-staff-menu .dropdown-menu")
    assert menu.is_visible()
    page.keyboard.press("Escape")
    assert not menu.is_visible()
    focused = page.evaluate("document.activeElement.id || document.activeElement.parentElement.id")
    assert focused == "nav-staff-menu"
    console.assert_clean()


@pytest.mark.parametrize(("role", "path"), AXE_PAGES, ids=[f"{r}:{p}" for r, p in AXE_PAGES])
def test_no_serious_accessibility_violations(pages, live, ids, role, path):
    page, console = _open(pages, live, ids, role, path)
    assert page.evaluate("document.documentElement.lang") == "zh-CN"
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll('main input, main select, main textarea')]
            .filter(el => el.type !== 'hidden' && el.type !== 'submit' && el.type !== 'button')
            .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                          && !el.getAttribute('aria-labelledby') && !el.title)
            .map(el => el.name || el.id)"""
    )
    assert unlabelled == [], f"{path}: controls without a label: {unlabelled}"
    violations = support.axe_violations(page)
    assert violations == [], f"{path}:\n" + "\n".join(violations)
    console.assert_clean()


def test_keyboard_focus_is_visible(pages, live, ids):
    page, console = _open(pages, live, ids, "anonymous", "/opportunities")
    page.locator("body").click(position={"x": 5, "y": 300})
    invisible = []
    for _ in range(12):
        page.keyboard.press("Tab")
        if not support.focus_ring_visible(page):
            invisible.append(page.evaluate("document.activeElement.outerHTML.slice(0, 120)"))
    assert invisible == [], "focus not visible on:\n" + "\n".join(invisible)
    console.assert_clean()


def test_favicon_is_served(pages, live, ids):
    page, _ = _open(pages, live, ids, "anonymous", "/")
    response = page.request.get(live.url + "/favicon.ico")
    assert response.status == 200 and response.headers["content-type"].startswith("image/")
    assert page.locator("link[rel=icon]").count() == 1

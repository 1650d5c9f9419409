"""Fixtures of the browser tests (marker ``browser``; ``./manage.sh test -m browser``).

One seeded live server and one headless Chromium per session; each test gets a fresh browser
context (cookies) at 1366×900 whose console errors, uncaught exceptions and failed requests
are collected in ``console``.
"""

from __future__ import annotations

import pytest

from tests.browser import support
from tests.browser.live import LiveServer, demo_accounts


@pytest.fixture(scope="session")
def live():
    with LiveServer() as server:
        yield server


@pytest.fixture(scope="session")
def accounts():
    return demo_accounts()


@pytest.fixture(scope="session")
def chromium():
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install -r requirements.txt")
    if support.chromium_path() is None:
        pytest.fail("Chromium not found: apt-get install -y chromium fonts-noto-cjk")
    with sync_api.sync_playwright() as playwright:
        browser = support.launch(playwright)
        yield browser
        browser.close()


@pytest.fixture
def console():
    return support.Console()


@pytest.fixture
def page(chromium, console):
    context = chromium.new_context(viewport=support.DESKTOP, locale="zh-CN", timezone_id="Asia/Shanghai")
    context.set_default_timeout(30_000)
    page = context.new_page()
    console.watch(page)
    page.on("dialog", lambda dialog: dialog.accept())  # data-confirm: the user says yes
    yield page
    context.close()

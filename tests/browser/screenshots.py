"""Regenerate the README's screenshots: ``python -m tests.browser.screenshots`` (or
``./manage.sh screenshots``).

Serves the seeded demo (see :mod:`tests.browser.live`) and saves four 1366×900 PNGs in
``docs/screenshots/``: the portal, a need's candidate products with their reasons, a firm's
workspace and the organizer's review queue.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("SECRET_KEY", "screenshots")
os.environ.setdefault("MATCHING_MODEL", "offline")

from playwright.sync_api import sync_playwright  # noqa: E402

from marketplace.config import PROJECT_ROOT  # noqa: E402
from tests.browser import support  # noqa: E402
from tests.browser.live import LiveServer, demo_accounts  # noqa: E402

OUT = PROJECT_ROOT / "docs" / "screenshots"


def take(out: Path = OUT) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    accounts = demo_accounts()
    saved: list[Path] = []
    with LiveServer() as live, sync_playwright() as playwright:
        browser = support.launch(playwright)

        def session(role: str | None):
            context = browser.new_context(viewport=support.DESKTOP, locale="zh-CN")
            page = context.new_page()
            if role:
                support.login(page, live.url, accounts[role])
            return page

        def save(page, name: str) -> None:
            path = out / f"{name}.png"
            page.screenshot(path=str(path))
            saved.append(path)

        page = session(None)
        page.goto(live.url + "/")
        save(page, "portal")

        page = session("gov")
        page.goto(live.url + "/my/")
        page.locator("#needs .need-item").first.get_by_role("link", name="全部候选产品").click()
        page.locator("[data-result-id]").first.wait_for()
        save(page, "candidates")

        page = session("firm")
        page.goto(live.url + "/my/")
        save(page, "firm-workspace")

        page = session("organizer")
        page.goto(live.url + "/admin/review")
        boxes = page.locator("#bulk-opportunity tbody input[type=checkbox]")
        for i in range(min(2, boxes.count())):
            boxes.nth(i).check()
        save(page, "review-queue")
        browser.close()
    return saved


if __name__ == "__main__":
    for written in take(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT):
        print(f"wrote {written}")

"""Helpers for the browser tests: Chromium, logins, screenshots, layout and accessibility checks.

Chromium is Debian's ``/usr/bin/chromium`` (``BROWSER_EXECUTABLE`` overrides it), driven by
Playwright's Python package; Playwright's own browser downloads are never used.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright

HERE = Path(__file__).resolve().parent
ARTIFACTS = HERE / "artifacts"
AXE_JS = HERE / "node_modules" / "axe-core" / "axe.min.js"

DESKTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def chromium_path() -> str | None:
    found = os.environ.get("BROWSER_EXECUTABLE") or shutil.which("chromium") or "/usr/bin/chromium"
    return found if Path(found).exists() else None


def launch(playwright: Playwright) -> Browser:
    return playwright.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)


def ensure_axe() -> Path:
    """axe-core from npm into tests/browser/node_modules (package.json pins it), once."""
    if not AXE_JS.exists():
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent"], cwd=HERE, check=True)
    return AXE_JS


@dataclass
class Console:
    """Errors a page reported: console errors, uncaught exceptions, failed requests."""

    errors: list[str] = field(default_factory=list)

    def watch(self, page: Page) -> None:
        def on_console(message: ConsoleMessage) -> None:
            if message.type == "error":
                self.errors.append(f"console: {message.text} @ {page.url}")

        page.on("console", on_console)
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc} @ {page.url}"))
        page.on(
            "response",
            lambda response: self.errors.append(f"HTTP {response.status} {response.url}")
            if response.status >= 500
            or (response.status == 404 and response.request.resource_type != "document")
            else None,
        )

    def assert_clean(self) -> None:
        assert not self.errors, "errors in the browser:\n" + "\n".join(self.errors)


def field(scope, label: str):
    """The form control labelled ``label`` (a required field's label ends with "*")."""
    return scope.get_by_label(re.compile(r"^\s*" + re.escape(label) + r"(\s*\*)?\s*$"))


def login(page: Page, base: str, account) -> None:
    page.goto(f"{base}/auth/login")
    field(page, "邮箱").fill(account.email)
    field(page, "密码").fill(account.password)
    page.locator("main").get_by_role("button", name="登录").click()
    page.wait_for_load_state()
    assert "/auth/login" not in page.url, f"login failed for {account.email}"


def shoot(page: Page, name: str, full_page: bool = False) -> list[Path]:
    """Screenshots of the current page at desktop and phone width (the viewport is restored)."""
    ARTIFACTS.mkdir(exist_ok=True)
    before = page.viewport_size or DESKTOP
    paths = []
    for label, size in (("1366", DESKTOP), ("390", PHONE)):
        page.set_viewport_size(size)
        path = ARTIFACTS / f"{name}-{label}.png"
        page.screenshot(path=str(path), full_page=full_page)
        paths.append(path)
    page.set_viewport_size(before)
    return paths


# ---------------------------------------------------------------- layout


def horizontal_overflow(page: Page) -> int:
    """How many pixels the page is wider than the viewport (0 when nothing sticks out)."""
    return page.evaluate(
        "() => Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)"
        " - document.documentElement.clientWidth"
    )


def navbar_rows(page: Page) -> int:
    """How many lines the navbar's visible items take (1 when everything sits on one line)."""
    return page.evaluate(
        """() => {
          const items = [...document.querySelectorAll(
              'nav.navbar .navbar-brand, nav.navbar .nav-item, nav.navbar form[role=search]')]
            .filter(el => el.offsetParent !== null);
          const centres = items.map(el => el.getBoundingClientRect())
            .map(r => (r.top + r.bottom) / 2).sort((a, b) => a - b);
          let rows = centres.length ? 1 : 0;
          for (let i = 1; i < centres.length; i++) { if (centres[i] - centres[i - 1] > 12) rows += 1; }
          return rows;
        }"""
    )


def broken_nav_labels(page: Page) -> list[str]:
    """Navbar links or buttons whose text wraps onto a second line."""
    return page.evaluate(
        """() => [...document.querySelectorAll('nav.navbar .nav-link, nav.navbar .btn, .navbar-brand')]
            .filter(el => el.offsetParent !== null)
            .filter(el => {
              const lineHeight = parseFloat(getComputedStyle(el).lineHeight) || 24;
              return el.getBoundingClientRect().height > lineHeight * 1.6 + 16;
            })
            .map(el => el.textContent.trim())"""
    )


def hidden_table_actions(page: Page) -> list[str]:
    """Buttons in tables that a phone user cannot see: outside the viewport or clipped by the
    table's scrolling box (sticky action cells and stacked cards keep them in view)."""
    return page.evaluate(
        """() => {
          const out = [];
          const vw = document.documentElement.clientWidth;
          for (const button of document.querySelectorAll('main table .btn, main table button')) {
            if (button.offsetParent === null) continue;
            const r = button.getBoundingClientRect();
            let box = button.closest('.table-responsive');
            const clip = box ? box.getBoundingClientRect() : {left: 0, right: vw};
            const outside = r.left < Math.max(0, clip.left) - 1 || r.right > Math.min(vw, clip.right) + 1;
            if (outside || r.width < 8) {
              out.push(button.textContent.trim() + ' @ ' + Math.round(r.left) + '..' + Math.round(r.right));
            }
          }
          return out;
        }"""
    )


# ---------------------------------------------------------------- accessibility


def axe_violations(page: Page, impacts: tuple[str, ...] = ("serious", "critical")) -> list[str]:
    """axe-core's violations of the given impact on the current page, as readable lines.

    The script is evaluated through the DevTools protocol, so the page's CSP (script-src
    'self') stays on for everything else.
    """
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate(ensure_axe().read_text(encoding="utf-8"))
    result = page.evaluate(
        """async () => {
          const r = await axe.run(document, {resultTypes: ['violations']});
          return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
            nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))}));
        }"""
    )
    return [
        f"{v['impact']}: {v['id']} ({v['help']}) → {', '.join(v['nodes'])}"
        for v in result
        if v["impact"] in impacts
    ]


def focus_ring_visible(page: Page) -> bool:
    """Whether the element that has keyboard focus draws an outline or a focus shadow."""
    return page.evaluate(
        """() => {
          const el = document.activeElement;
          if (!el || el === document.body) return false;
          const s = getComputedStyle(el);
          const outline = s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2;
          const shadow = s.boxShadow && s.boxShadow !== 'none';
          return outline || shadow;
        }"""
    )


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "page"

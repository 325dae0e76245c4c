"""A real browser for UI tests: Debian's Chromium driven by Playwright (from PyPI).

Playwright's own browser download is not available here, so it launches the system binary
(`/usr/bin/chromium`, installed by `.ci/run`), headless, with the flags that keep Chromium
off the network. A `Browser` dismisses Dagster's first-run dialog the way a user would (its
"Skip" button) whenever it shows, and `shot(name)` saves a screenshot: into `RLX_UI_SCREENSHOTS`
when set (the README's screenshots: `RLX_UI_SCREENSHOTS=docs ./quickstart.sh test -m
browser`), and always on a failure, next to the test's other files.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("RLX_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOTS_VARIABLE = "RLX_UI_SCREENSHOTS"
REPO = Path(__file__).resolve().parents[1]


def chromium_or_skip() -> str:
    if not Path(CHROMIUM).is_file() and not shutil.which(CHROMIUM):
        pytest.skip(f"No Chromium at {CHROMIUM}; install Debian's chromium (.ci/run does) or "
                    "set RLX_CHROMIUM.")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    return CHROMIUM


class Browser:
    def __init__(self, page, base_url: str, failures: Path) -> None:
        self.page, self.base_url, self.failures = page, base_url.rstrip("/"), failures
        # The UI's first-run dialog ("Join the Dagster community") can open at any moment
        # while a page loads (seconds late on a busy machine) and then covers every button:
        # Playwright dismisses it whenever it shows, before each action.
        self.welcome = page.get_by_text("Join the Dagster community")
        page.add_locator_handler(self.welcome, self.dismiss_welcome)
        keep = os.environ.get(SCREENSHOTS_VARIABLE)
        self.keep = REPO / keep if keep else None  # relative to the repository

    def open(self, path: str, wait_for: str | None = None, timeout: float = 30.0) -> None:
        """Go to `path` in the UI and wait for `wait_for` text."""
        self.page.goto(self.base_url + path)
        if wait_for:
            self.page.get_by_text(wait_for, exact=False).first.wait_for(timeout=timeout * 1e3)

    def dismiss_welcome(self) -> None:
        self.page.get_by_role("button", name="Skip").click()

    def shot(self, name: str) -> Path:
        target = (self.keep or self.failures) / f"{name}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        # A screenshot is no action, so the handler would not run for it; an auto-waiting
        # assertion is one (clicking Skip here instead races the handler for the button).
        from playwright.sync_api import expect

        expect(self.welcome).to_be_hidden()
        self.page.screenshot(path=str(target), full_page=False)
        return target

    def text(self) -> str:
        return self.page.inner_text("body")


@contextmanager
def browser(base_url: str, failures: Path, name: str) -> Iterator[Browser]:
    """A page on `base_url`; on any failure, a screenshot `<name>-failure.png` in `failures`
    whose path the error then names."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=chromium_or_skip(), args=FLAGS)
        try:
            page = chromium.new_page(viewport={"width": 1400, "height": 900})
            ui = Browser(page, base_url, failures)
            try:
                yield ui
            except Exception as exc:
                shot = failures / f"{name}-failure.png"
                page.screenshot(path=str(shot), full_page=True)
                raise AssertionError(f"{exc}\n(screenshot of the page: {shot})") from exc
        finally:
            chromium.close()

"""Debian's Chromium under Playwright, headless and off the network: shared by the browser tests."""
import contextlib
import os

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic"]


def sync_api():
    """Playwright's sync API, or skip the test when Chromium or Playwright is missing."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} not found: install Debian's chromium to run the browser test")
    return pytest.importorskip(
        "playwright.sync_api", reason="the playwright Python package is not installed")


def launch(pw):
    return pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


@contextlib.contextmanager
def page(url: str):
    """A 1400x1000 page on `url` (30 s per action), in a Chromium closed afterwards."""
    api = sync_api()
    with api.sync_playwright() as pw:
        browser = launch(pw)
        try:
            tab = browser.new_page(viewport={"width": 1400, "height": 1000})
            tab.set_default_timeout(30_000)
            tab.goto(url)
            yield tab
        finally:
            browser.close()

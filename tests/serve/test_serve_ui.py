"""The web UI in headless Chromium (Debian's, see .ci/run): ask, watch the answer stream, open a citation."""

from __future__ import annotations

import shutil

import pytest

from support.stack import require_layers

require_layers()

from support.live_server import LiveServer

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (.ci/run installs it)")


def test_ask_shows_streamed_answer_citations_source_and_timings(live_server: LiveServer) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        try:
            page = browser.new_page()
            page.goto(live_server.url)
            expect(page.locator("#collection option")).not_to_have_count(0)
            page.fill("#question", "Which lava flows quickly?")
            page.click("#ask")
            expect(page.locator("#status")).to_contain_text("done", timeout=60_000)
            assert page.text_content("#answer")  # the random-weight model streams newlines: present, not stripped
            citations = page.locator("#citations li")
            expect(citations.first).to_contain_text("Volcanoes")
            citations.first.click()
            expect(page.locator("#source")).to_contain_text("lava")
            expect(page.locator("#timings")).to_contain_text("embed")
        finally:
            browser.close()

"""The web UI in headless Chromium (Debian's, see .ci/run): the default collection preselected, the answer
streaming, sources with snippets, inline [n] links, a confidence badge, the timing bar, an upload with progress."""

from __future__ import annotations

import shutil

import pytest

from support.stack import require_layers

require_layers()

import httpx  # noqa: E402

from support.live_server import COLLECTION, LiveServer  # noqa: E402

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


@pytest.fixture
def page(live_server: LiveServer):  # type: ignore[no-untyped-def]
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        try:
            page = browser.new_page()
            page.goto(live_server.url)
            yield page
        finally:
            browser.close()


def test_ask_shows_streamed_answer_sources_badge_and_timing_bar(page, live_server: LiveServer) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    httpx.post(f"{live_server.url}/v1/collections", json={"name": "aaa-first"})  # alphabetically before the default
    page.reload()
    expect(page.locator("#collection option")).not_to_have_count(0)
    assert page.input_value("#collection") == COLLECTION  # the server's default, not the first in the list
    page.fill("#question", "Which lava flows quickly?")
    page.click("#ask")
    expect(page.locator("#status")).to_contain_text("done", timeout=60_000)
    assert page.text_content("#answer")  # the random-weight model streams newlines: present, not stripped
    sources = page.locator("#citations li")
    expect(sources.first).to_contain_text("Volcanoes")
    expect(sources.first.locator(".snippet")).to_contain_text("lava")
    sources.first.locator("summary").click()
    expect(sources.first.locator(".chunk")).to_be_visible()
    expect(page.locator("#badge")).to_be_visible()  # confidence, and a warning when it is low
    expect(page.locator("#badge")).to_contain_text("onfidence")
    expect(page.locator("#legend")).to_contain_text("embed")
    assert page.locator("#bar div").count() >= 3


def test_inline_markers_link_to_their_sources(page) -> None:  # type: ignore[no-untyped-def]
    """The page turns the answer's [n] into links (checked on a rendered answer: the tiny model does not cite)."""
    from playwright.sync_api import expect

    page.evaluate("""() => { showCitations([{number: 1, chunk_id: "c", source: "/d/volcano.md", title: "Volcanoes",
        heading: "Etna", page: 3, score: 1, text: "Etna is on Sicily."}]);
        renderAnswer("Etna is on Sicily [1]. <b>not html</b> [7]", new Set([1])); }""")
    link = page.locator("#answer a.cite")
    expect(link).to_have_count(1)  # [7] names no source: left as text
    expect(page.locator("#answer")).to_contain_text("<b>not html</b>")  # answer text is never markup
    link.click()
    expect(page.locator("#src-1")).to_have_class("target")
    expect(page.locator("#src-1 summary")).to_contain_text("Volcanoes › Etna · p. 3")


def test_an_unrelated_question_shows_not_found(page) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    page.fill("#question", "Who won the 2018 FIFA World Cup?")
    page.click("#ask")
    expect(page.locator("#badge")).to_contain_text("Not found in these documents", timeout=30_000)


def test_upload_shows_progress_and_the_report(page, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    note = tmp_path / "kettles.md"
    note.write_text("# Kettles\n\nA kettle whistles when steam forces its way through the spout.\n")
    page.set_input_files("#files", str(note))
    page.click("#upload")
    expect(page.locator("#upload-status")).to_contain_text("1 added", timeout=60_000)
    assert page.eval_on_selector("#progress", "p => p.value") == 1

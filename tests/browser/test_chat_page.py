"""The chat page in a real headless Chromium against a real daphne and the fake Groq (slow tokens).

Needs the system Chromium at /usr/bin/chromium (a user's machine may lack it: skipped with the reason).
Screenshots of the page (desktop and phone) are written to /tmp/lorebot-chat-*.png.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import sync_playwright

from tests.daphne_server import Daphne, Site, make_site, start_daphne
from tests.fakes.groq import FakeGroqServer

CHROMIUM = os.getenv("CHROMIUM", "/usr/bin/chromium")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not shutil.which(CHROMIUM), reason=f"no Chromium at {CHROMIUM} (set CHROMIUM=…)"),
]

SCREENSHOTS = "/tmp/lorebot-chat-{}.png"


@pytest.fixture(scope="module")
def fake_groq() -> Iterator[FakeGroqServer]:
    # 40 ms per token: slow enough to see the answer grow, fast enough for a short test.
    with FakeGroqServer(token_delay=0.04, first_token_delay=0.1) as fake:
        yield fake


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, fake_groq: FakeGroqServer) -> Site:
    return make_site(tmp_path_factory.mktemp("browser") / "data", users=("ann",), GROQ_API_KEY="gsk-test",
                     GROQ_BASE_URL=fake_groq.base_url, GROQ_MAX_RETRIES="0",
                     CHAT_RATE_LIMIT_USER="0", CHAT_RATE_LIMIT_CONVERSATION="0")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield browser
        browser.close()


def open_chat(browser: Any, server: Daphne, site: Site, path: str = "/chat/", **context: Any) -> Any:
    ctx = browser.new_context(**context)
    ctx.add_cookies([{"name": "sessionid", "value": site.sessions["ann"], "url": server.http_url}])
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors
    response = page.goto(server.http_url + path)
    assert response.status == 200, f"{path} answered {response.status}"
    page.wait_for_selector('#status[data-state="online"]')
    return page


def ask(page: Any, text: str) -> None:
    page.fill("#question", text)
    page.press("#question", "Enter")


def wait_for_answer(page: Any, count: int) -> None:
    page.wait_for_function(
        "n => document.querySelectorAll('.msg.assistant:not(.streaming)').length >= n", arg=count, timeout=30000
    )


def test_a_question_streams_in_then_citations_and_feedback_work(browser: Any, server: Daphne, site: Site) -> None:
    page = open_chat(browser, server, site)
    ask(page, "How do I roll back a release?")
    # Streaming: the answer is visible while it is still being written, and it grows.
    page.wait_for_function(
        "() => { const b = document.querySelector('.msg.assistant.streaming .body p:not(.typing)');"
        " return b && b.textContent.split(' ').length >= 3; }"
    )
    partial = page.inner_text(".msg.assistant .body")
    assert page.is_visible("#stop") and not page.is_visible("#send")
    wait_for_answer(page, 1)
    final = page.inner_text(".msg.assistant .body")
    assert final.startswith("According to the documents") and len(final) > len(partial)
    assert page.is_visible("#send")

    # A [n] marker points at its numbered source; clicking it highlights the source.
    page.click(".msg.assistant a.cite >> nth=0")
    page.wait_for_selector(".citations li.flash")
    # A console document opens in the source viewer, at the cited passage, in a new tab.
    with page.context.expect_page() as opened:
        page.click(".citations a.source:text('Deployment')")
    assert re.search(r"/sources/1/\?passage=\d+#passage$", opened.value.url), opened.value.url
    opened.value.close()

    page.click(".feedback .vote[data-value='1']")
    page.wait_for_selector(".feedback .vote[data-value='1'][aria-pressed='true']")

    # Enter sends, Shift+Enter is a new line.
    page.fill("#question", "first line")
    page.press("#question", "Shift+Enter")
    page.keyboard.type("second line")
    assert page.input_value("#question") == "first line\nsecond line"
    page.fill("#question", "")
    assert page.errors == []


def test_stop_cancels_and_a_reload_restores_the_conversation(browser: Any, server: Daphne, site: Site) -> None:
    page = open_chat(browser, server, site)
    ask(page, "When do releases go out?")
    wait_for_answer(page, 1)
    ask(page, "and how do I roll back one?")
    page.wait_for_selector(".msg.assistant.streaming .body p:not(.typing)")
    page.click("#stop")
    wait_for_answer(page, 2)
    assert "Stopped." in page.inner_text(".msg.assistant >> nth=1")
    assert "c=" in page.url

    page.reload()
    page.wait_for_selector('#status[data-state="online"]')
    page.wait_for_function("() => document.querySelectorAll('.msg').length === 4")
    assert page.inner_text(".msg.user >> nth=0") == "When do releases go out?"
    assert "Stopped." in page.inner_text(".msg.assistant >> nth=1")
    assert page.locator(".conversation.current").count() == 1

    # "New chat", then reopening the conversation from the sidebar.
    page.click("#new-chat")
    assert page.locator(".msg").count() == 0
    page.click(".conversation.current, .conversation >> nth=0")
    page.wait_for_function("() => document.querySelectorAll('.msg').length >= 2")
    assert page.errors == []


def test_an_answer_finished_by_the_orphan_sweep_shows_its_text_and_says_it_stopped(
        browser: Any, server: Daphne, site: Site) -> None:
    """What a reader sees of an answer whose daphne was killed mid-answer (console/ops/orphans.py)."""
    import sqlite3

    page = open_chat(browser, server, site)
    ask(page, "Who is notified on a rollback?")
    wait_for_answer(page, 1)
    with sqlite3.connect(site.data_dir / "lorebot.sqlite3") as db:  # as the sweep leaves it
        db.execute("UPDATE console_message SET error = 'interrupted', text = 'Rollbacks notify the' WHERE id = "
                   "(SELECT MAX(id) FROM console_message WHERE role = 'assistant')")
    page.reload()
    page.wait_for_selector('#status[data-state="online"]')
    page.wait_for_selector(".msg.assistant:not(.streaming)")
    answer = page.inner_text(".msg.assistant >> nth=-1")
    assert "Rollbacks notify the" in answer and "The server stopped before this answer finished" in answer
    assert page.errors == []


def test_a_dropped_connection_reconnects_by_itself(browser: Any, site: Site) -> None:
    """The server dies mid-conversation; a new process on the same port picks the conversation up."""
    first = start_daphne(site, name="doomed")
    try:
        page = open_chat(browser, first, site)
        ask(page, "When do releases go out?")
        wait_for_answer(page, 1)
        first.process.kill()
        first.process.wait()
        page.wait_for_selector('#status[data-state="offline"]', timeout=15000)
        second = start_daphne(site, name="revived", port=first.port)
        try:
            page.wait_for_selector('#status[data-state="online"]', timeout=30000)
            page.wait_for_function("() => document.querySelectorAll('.msg').length === 2")
            ask(page, "and how do I roll back one?")
            wait_for_answer(page, 2)
            assert page.errors == []
        finally:
            second.stop()
    finally:
        first.stop()


def test_markdown_is_rendered_safely(browser: Any, server: Daphne, site: Site) -> None:
    page = open_chat(browser, server, site)
    source = (
        "<img src=x onerror=alert(1)> **bold** *it* `<b>code</b>` [ok](https://example.com/a?b=1&c=2)"
        " [bad](javascript:alert(1)) [evil](https://x.example/\"onmouseover=\"alert) [2]\n\n"
        "- one\n- two\n\n```\n<script>alert(1)</script>\n```"
    )
    html = page.evaluate("s => LorebotMarkdown.render(s, {citePrefix: 'cite-9-'})", source)
    page.evaluate("h => { const d = document.createElement('div'); d.id = 'probe'; d.innerHTML = h;"
                  " document.body.appendChild(d); }", html)
    probe = page.locator("#probe")
    assert probe.locator("img, script, [onerror], [onmouseover]").count() == 0
    hrefs = probe.locator("a").evaluate_all("els => els.map(a => a.getAttribute('href'))")
    assert hrefs == ["https://example.com/a?b=1&c=2", 'https://x.example/"onmouseover="alert', "#cite-9-2"]
    assert probe.locator("strong").inner_text() == "bold" and probe.locator("em").inner_text() == "it"
    assert probe.locator("p > code").inner_text() == "<b>code</b>"
    assert probe.locator("li").count() == 2 and "<script>" in probe.locator("pre code").inner_text()
    assert "[bad](javascript:alert(1))" in probe.inner_text()


def test_an_extractive_answer_with_code_and_a_list_renders_cleanly(browser: Any, server: Daphne, site: Site) -> None:
    page = open_chat(browser, server, site)
    source = ("- `class csv.DictWriter(f, *args, **kwds)`: Create a writer. [1]\n"
              "- The list is [2]:\n  - The directory named by `TMPDIR`.\n  - `heap[0]` is the smallest item.\n\n"
              "```python\nx = a**2 + b**2\n```\n")
    html = page.evaluate("s => LorebotMarkdown.render(s, {citePrefix: 'cite-9-'})", source)
    page.evaluate("h => { const d = document.createElement('div'); d.id = 'probe'; d.innerHTML = h;"
                  " document.body.appendChild(d); }", html)
    probe = page.locator("#probe")
    assert probe.locator("strong, em").count() == 0  # the asterisks are code
    codes = probe.locator("li code").evaluate_all("els => els.map(c => c.textContent)")
    assert codes == ["class csv.DictWriter(f, *args, **kwds)", "TMPDIR", "heap[0]"]
    assert probe.locator("li").count() == 4 and probe.locator("pre code").inner_text() == "x = a**2 + b**2"
    assert probe.locator("a.cite").evaluate_all("els => els.map(a => a.dataset.n)") == ["1", "2"]


def test_screenshots_on_a_laptop_and_a_phone(browser: Any, server: Daphne, site: Site) -> None:
    page = open_chat(browser, server, site, viewport={"width": 1280, "height": 800})
    ask(page, "How do I roll back a release?")
    wait_for_answer(page, 1)
    page.click(".feedback .vote[data-value='1']")
    ask(page, "When do releases go out?")
    page.wait_for_selector(".msg.assistant.streaming .body p:not(.typing)")
    page.screenshot(path=SCREENSHOTS.format("desktop-streaming"))
    wait_for_answer(page, 2)
    page.wait_for_timeout(300)
    page.screenshot(path=SCREENSHOTS.format("desktop"))
    url = page.url

    phone = open_chat(browser, server, site, path=url.split(server.http_url, 1)[1],
                      viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True, has_touch=True)
    phone.wait_for_function("() => document.querySelectorAll('.msg').length === 4")
    phone.wait_for_timeout(300)
    phone.screenshot(path=SCREENSHOTS.format("phone"))
    assert phone.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth"), "no sideways scrolling"
    phone.click("#menu")
    phone.wait_for_timeout(300)
    phone.screenshot(path=SCREENSHOTS.format("phone-sidebar"))
    assert phone.is_visible(".conversation")


def test_link_slack_or_discord_shows_a_one_time_code_that_the_bots_redeem(browser: Any, server: Daphne, site: Site) -> None:
    import subprocess

    from tests.daphne_server import PYTHON, ROOT

    page = open_chat(browser, server, site)
    assert not page.is_visible("#link-panel")
    page.click("#link-account")
    page.wait_for_function("() => /^[A-Z2-9]{8}$/.test(document.getElementById('link-code').textContent)")
    code = page.inner_text("#link-code")
    panel = page.inner_text("#link-panel")
    assert f"link {code}" in panel and f"/lorebot link {code}" in panel and "works once, until" in panel

    def redeem(text: str) -> str:
        script = ("from console.chat.links import redeem_code; "
                  f"print(redeem_code({text!r}, platform='slack', external_user='T0:U0ANN').outcome)")
        return subprocess.run([PYTHON, str(ROOT / "manage.py"), "shell", "-c", script], env=site.env, cwd=ROOT,
                              check=True, capture_output=True, text=True).stdout.split()[-1]

    assert redeem(code) == "linked"
    assert redeem(code) == "used"
    page.click("#link-account")  # a new code, and the page says the Slack account is linked
    page.wait_for_function("c => document.getElementById('link-code').textContent !== c", arg=code)
    assert "Already linked: Slack." in page.inner_text("#link-panel")
    page.click("#link-close")
    assert not page.is_visible("#link-panel") and code not in page.content()
    assert page.errors == []

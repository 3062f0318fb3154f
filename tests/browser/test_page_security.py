"""In a real Chromium: the pages pass their Content-Security-Policy, and a page on another port cannot read chats.

The console and admin pages run on pytest-django's live server; the chat page and the socket need a
real daphne. Every page is watched for CSP violations (`securitypolicyviolation`) and console errors.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model

from console.models import Conversation, Document, IngestJob, Message
from tests.browser.watch import problems_on, watch
from tests.daphne_server import Daphne, Site, free_port, make_site

pytestmark = [pytest.mark.slow]


@pytest.mark.django_db(transaction=True)
def test_the_watch_catches_an_inline_script_and_style_under_lorebot_s_policy(live_server: Any, page: Any) -> None:
    """The detector itself: a page with the real policy and inline code must be reported."""
    policy = page.request.get(f"{live_server.url}/health").headers["content-security-policy"]
    page.route(f"{live_server.url}/probe", lambda route: route.fulfill(
        status=200, content_type="text/html", headers={"Content-Security-Policy": policy},
        body='<p style="color: red">x</p><script>document.title = "ran"</script>',
    ))
    console = watch(page)
    page.goto(f"{live_server.url}/probe")
    found = problems_on(page, console)
    assert any("CSP style-src" in p for p in found) and any("CSP script-src" in p for p in found), found
    assert page.title() != "ran"


@pytest.mark.django_db(transaction=True)
def test_the_console_and_admin_pages_raise_no_csp_violation_or_console_error(
    live_server: Any, data_dir: Path, page: Any
) -> None:
    base = live_server.url
    get_user_model().objects.create_superuser("root", password="s3cret-pw")
    doc = Document.objects.create(checksum="a" * 64, title="Handbook", original_filename="handbook.md",
                                  status="indexed", chunk_count=0)
    job = IngestJob.objects.create(state="running", stage="embedding", progress_done=1, progress_total=2)
    conversation = Conversation.objects.create(surface="web", external_key="k1", title="A question")
    Message.objects.create(conversation=conversation, role="user", text="When do releases go out?")
    Message.objects.create(conversation=conversation, role="assistant", text="On Tuesdays [1].", provider="extractive",
                           citations=[{"n": 1, "document_id": doc.engine_id, "title": "Handbook", "source": "handbook.md"}])
    console = watch(page)

    page.goto(f"{base}/accounts/login/")
    assert problems_on(page, console) == []
    page.fill("input[name=username]", "root")
    page.fill("input[name=password]", "s3cret-pw")
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/console/")

    paths = ["/console/", "/console/documents/", f"/console/documents/{doc.pk}/", "/console/jobs/",
             f"/console/jobs/{job.pk}/", "/console/conversations/", f"/console/conversations/{conversation.pk}/",
             "/admin/", "/admin/console/document/", f"/admin/console/document/{doc.pk}/change/",
             "/admin/console/ingestjob/", "/admin/auth/user/add/"]
    for path in paths:
        page.goto(base + path)
        assert problems_on(page, console) == [], path

    # The progress bars' widths, once inline styles, still show: half done is half wide.
    page.goto(f"{base}/console/jobs/{job.pk}/")
    outer, inner = (page.locator(s).bounding_box() for s in ('[data-field="progress"]', '[data-field="progress"] .bar'))
    assert outer and inner and abs(inner["width"] / outer["width"] - 0.5) < 0.02
    page.goto(f"{base}/console/jobs/")
    bar = page.locator(".progress.small .bar").first
    page.wait_for_function("b => b.getBoundingClientRect().width > 0", arg=bar.element_handle())
    assert problems_on(page, console) == []


# -- the chat page and its socket, on a real daphne ----------------------------------------------

# Opens the chat socket, asks for the user's conversations, resolves to what happened.
TRY_SOCKET = """port => new Promise((done) => {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/ws/chat/`);
  ws.onopen = () => ws.send(JSON.stringify({type: "conversations"}));
  ws.onmessage = (e) => done("read " + e.data);
  ws.onclose = (e) => done("closed " + e.code);
})"""
ATTACK = "<!doctype html><title>waiting</title><script>(%s)(%d).then((r) => { document.title = r; });</script>"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    return make_site(tmp_path_factory.mktemp("page-security") / "data", users=("ann",))


@pytest.fixture(scope="module")
def other_port(server: Daphne) -> Iterator[str]:
    """Another web server on another port of the same host, serving a page that tries the chat socket."""
    body = (ATTACK % (TRY_SOCKET, server.port)).encode()

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Page)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()


def _logged_in(console_browser: Any, server: Daphne, site: Site) -> Any:
    context = console_browser.new_context()
    context.set_default_timeout(30_000)
    context.add_cookies([{"name": "sessionid", "value": site.sessions["ann"], "url": server.http_url}])
    return context.new_page()


def test_the_chat_page_asks_and_answers_with_no_csp_violation(console_browser: Any, server: Daphne, site: Site) -> None:
    page = _logged_in(console_browser, server, site)
    console = watch(page)
    page.goto(f"{server.http_url}/chat/")
    page.wait_for_selector('#status[data-state="online"]')
    page.fill("#question", "How do I roll back a release?")
    page.press("#question", "Enter")
    page.wait_for_selector(".msg.assistant:not(.streaming) .citations", timeout=60_000)
    assert "rollback" in page.inner_text(".msg.assistant .body").lower()
    assert problems_on(page, console) == []


def test_a_page_on_another_port_of_the_same_host_cannot_read_the_user_s_chats(
    console_browser: Any, server: Daphne, site: Site, other_port: str
) -> None:
    page = _logged_in(console_browser, server, site)
    page.goto(other_port)
    page.wait_for_function("() => document.title !== 'waiting'")
    assert page.title() == "closed 1006", "refused at the handshake: the page never got a frame"
    assert "websocket.origin_refused" in server.log.read_text()

    # The same script from Lorebot's own origin is answered: the cookie was there all along.
    page.goto(f"{server.http_url}/health")
    assert page.evaluate(TRY_SOCKET, server.port).startswith('read {"type": "conversations"')

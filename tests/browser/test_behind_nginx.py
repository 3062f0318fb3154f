"""Production as the README deploys it: the shipped nginx config, TLS, daphne and a worker, used by a real Chromium.

Debian's nginx runs unprivileged on its own prefix with a self-signed certificate, in front of one
daphne process and one `manage.py db_worker` sharing a site (tests/nginx_server.py). Through it: a
login, a console upload that gets indexed, a question over the chat socket citing the upload, and
/metrics allowed or refused as configured. Skipped only where nginx (or Chromium) is not installed.
"""

from __future__ import annotations

import http.client
import json
import re
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect
from websockets.typing import Origin

from tests.browser.watch import problems_on, watch
from tests.daphne_server import PYTHON, ROOT, Daphne, Site, free_port, make_site, start_daphne
from tests.nginx_server import NGINX, Nginx, make_certificate, nginx_prefix, render_site, start_nginx, write_config

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not NGINX, reason="nginx is not installed (apt-get install -y nginx)")]

TOKEN = "scrape-" + "t" * 24
UPLOAD = b"# Deploy keys\n\nThe deploy key rotates every ninety days. Ask the platform team for a new one.\n"


@dataclass
class Stack:
    nginx: Nginx
    http_port: int  # the server block that redirects to https
    daphne: Daphne
    site: Site
    cert: Path

    @property
    def url(self) -> str:
        return self.nginx.url

    def tls(self) -> ssl.SSLContext:
        """Verifies nginx's certificate for real: it is its own authority."""
        return ssl.create_default_context(cafile=str(self.cert))

    def get(self, port: int, path: str, *, source: str = "127.0.0.1", tls: bool = True,
            **headers: str) -> http.client.HTTPResponse:
        conn = (http.client.HTTPSConnection("localhost", port, timeout=30, source_address=(source, 0), context=self.tls())
                if tls else http.client.HTTPConnection("localhost", port, timeout=30, source_address=(source, 0)))
        conn.request("GET", path, headers={k.replace("_", "-"): v for k, v in headers.items()})
        response = conn.getresponse()
        response.read()
        conn.close()
        return response


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    https_port, http_port = free_port(), free_port()
    site = make_site(
        tmp_path_factory.mktemp("nginx") / "data", users=("ann",),
        DJANGO_ALLOWED_HOSTS="localhost,127.0.0.1", LOREBOT_PUBLIC_URL=f"https://localhost:{https_port}",
        TRUSTED_PROXIES="127.0.0.1", METRICS_ALLOWED_IPS="127.0.0.1", METRICS_BEARER_TOKEN=TOKEN, LOG_LEVEL="INFO",
    )
    manage = [PYTHON, str(ROOT / "manage.py")]
    subprocess.run([*manage, "collectstatic", "--noinput", "-v", "0"], env=site.env, cwd=ROOT, check=True)
    daphne = start_daphne(site)
    worker_log = (site.data_dir / "worker.log").open("wb")
    worker = subprocess.Popen([*manage, "db_worker", "--no-startup-delay", "--interval", "0.2"], env=site.env, cwd=ROOT,
                              stdout=worker_log, stderr=subprocess.STDOUT)
    try:
        with nginx_prefix() as prefix:
            shutil.copytree(site.data_dir / "static", prefix / "static")
            cert, key = make_certificate(prefix)
            conf = write_config(prefix, render_site(prefix, cert=cert, key=key, https_port=https_port, http_port=http_port,
                                                    upstream_port=daphne.port, static_dir=prefix / "static"))
            nginx = start_nginx(prefix, conf, https_port)
            try:
                yield Stack(nginx, http_port, daphne, site, cert)
            finally:
                nginx.stop()
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        daphne.stop()


def test_log_in_upload_and_ask_in_chromium_through_nginx_over_tls(console_browser: Any, stack: Stack, tmp_path: Path) -> None:
    context = console_browser.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 860})
    context.set_default_timeout(30_000)
    page = context.new_page()
    console = watch(page)

    page.goto(f"{stack.url}/console/")
    assert page.url.startswith(f"{stack.url}/accounts/login/")
    assert problems_on(page, console) == []
    page.fill("input[name=username]", "ann")
    page.fill("input[name=password]", "pw")
    page.click("button[type=submit]")  # a POST with its CSRF token, behind TLS: 403 before
    page.wait_for_url(f"{stack.url}/console/")
    assert page.locator("h1").inner_text() == "Dashboard"
    dashboard = page.request.get(f"{stack.url}/console/")
    assert dashboard.headers["strict-transport-security"] == "max-age=31536000"
    assert "script-src 'self'" in dashboard.headers["content-security-policy"]
    assert problems_on(page, console) == []
    cookies = {c["name"]: c for c in context.cookies()}
    assert cookies["sessionid"]["secure"] and cookies["sessionid"]["httpOnly"]
    assert cookies["csrftoken"]["secure"] and cookies["csrftoken"]["httpOnly"]

    # A console upload: multipart through nginx, indexed by the worker, its progress polled through nginx.
    page.goto(f"{stack.url}/console/documents/")
    (tmp_path / "deploy-keys.md").write_bytes(UPLOAD)
    page.set_input_files("input[name=files]", str(tmp_path / "deploy-keys.md"))
    page.click("text=Upload and index")
    page.wait_for_url(re.compile(r"/console/jobs/\d+/$"))
    assert "1 file accepted" in page.locator(".flash").inner_text()
    state = page.locator('[data-job-live] [data-field="state"]', has_text=re.compile("succeeded", re.IGNORECASE))
    state.wait_for(timeout=120_000)
    assert problems_on(page, console) == []

    # The chat socket (wss through nginx's upgrade) answers from the upload.
    page.goto(f"{stack.url}/chat/")
    page.wait_for_selector('#status[data-state="online"]')
    page.fill("#question", "How often does the deploy key rotate?")
    page.press("#question", "Enter")
    page.wait_for_selector(".msg.assistant:not(.streaming) .citations", timeout=60_000)
    assert "ninety days" in page.inner_text(".msg.assistant .body")
    assert "Deploy keys" in page.inner_text(".msg.assistant .citations")
    assert problems_on(page, console) == []

    static = page.request.get(f"{stack.url}/static/chat/chat.js")  # from nginx's disk, not daphne
    assert static.ok and static.headers["cache-control"] == "max-age=604800"
    context.close()


def test_metrics_through_nginx_are_allowed_or_refused_as_configured(stack: Stack) -> None:
    allowed = stack.get(stack.nginx.https_port, "/metrics")
    assert allowed.status == 200, "METRICS_ALLOWED_IPS=127.0.0.1: nginx's X-Forwarded-For names the real client"
    # Another address claiming to be an allowed one: nginx appends the real peer, the app believes only that.
    spoofed = stack.get(stack.nginx.https_port, "/metrics", source="127.0.0.2", X_Forwarded_For="127.0.0.1")
    assert spoofed.status == 403
    scraper = stack.get(stack.nginx.https_port, "/metrics", source="127.0.0.2", Authorization=f"Bearer {TOKEN}")
    assert scraper.status == 200


def test_nginx_passes_host_request_id_and_https_and_only_nginx_may_say_https(stack: Stack) -> None:
    forwarded = stack.get(stack.nginx.https_port, "/health", X_Request_ID="e2e-rid-42", X_Forwarded_Proto="http")
    assert forwarded.status == 200, "Host got through, with its port, and is allowed"
    assert forwarded.headers.get_all("X-Request-ID") == ["e2e-rid-42"], "one copy, the caller's"
    assert forwarded.headers["Strict-Transport-Security"], "nginx overwrote the client's X-Forwarded-Proto with https"
    logged = [json.loads(line) for line in stack.daphne.log.read_text().splitlines()
              if line.startswith("{") and "e2e-rid-42" in line]
    assert [(e["event"], e["client_ip"], e["path"]) for e in logged] == [("http.request", "127.0.0.1", "/health")]
    assert re.fullmatch(r"[0-9a-f]{32}", stack.get(stack.nginx.https_port, "/health").headers["X-Request-ID"])

    # A client talking to daphne directly is not a trusted proxy: its X-Forwarded-Proto is dropped.
    direct = stack.get(stack.daphne.port, "/health", source="127.0.0.2", tls=False, X_Forwarded_Proto="https")
    assert direct.status == 200 and "Strict-Transport-Security" not in direct.headers

    redirect = stack.get(stack.http_port, "/console/?x=1", tls=False)
    assert redirect.status == 301 and redirect.headers["Location"] == "https://localhost/console/?x=1"


def test_the_chat_socket_through_nginx_refuses_a_page_from_another_port(stack: Stack) -> None:
    # The sync client: Playwright's sync API keeps an event loop running in this thread.
    url, cookie = f"wss://localhost:{stack.nginx.https_port}/ws/chat/", {"Cookie": stack.site.cookie("ann")}
    with pytest.raises(InvalidStatus) as refused:
        connect(url, ssl=stack.tls(), additional_headers=cookie, origin=Origin(f"https://localhost:{stack.nginx.https_port + 1}"),
                open_timeout=30)
    assert refused.value.response.status_code == 403
    with connect(url, ssl=stack.tls(), additional_headers=cookie, origin=Origin(stack.url), open_timeout=30) as ws:
        ws.send(json.dumps({"type": "conversations"}))
        assert json.loads(ws.recv(timeout=30))["type"] == "conversations"

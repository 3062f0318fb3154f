"""Fault: the Chroma server (CHROMA_URL) goes down under a running daphne, then comes back.

Readiness says so (503, vector_store error), a question that needs Chroma gets a clear error frame
rather than a traceback or a hang, nothing crashes, and once `chroma run` is back on the same port and
data folder, answers work again without restarting Lorebot; down again, what the process holds in memory
still answers.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.typing import Origin

from tests.daphne_server import Daphne, Site, free_port, make_site, start_daphne

pytestmark = pytest.mark.slow

CHROMA = Path(sys.executable).with_name("chroma")


class ChromaServer:
    """`chroma run` on a fixed port and folder, so it can be stopped and started again as the same server."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [str(CHROMA), "run", "--path", str(self.path), "--host", "127.0.0.1", "--port", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={"ANONYMIZED_TELEMETRY": "False", "PATH": "/usr/bin:/bin"},
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                assert self.process.poll() is None, "chroma run exited early"
                assert time.monotonic() < deadline, "chroma run did not start in 60 s"
                time.sleep(0.2)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)


def ready(server: Daphne) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"{server.http_url}/health/ready", timeout=15) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def wait_ready(server: Daphne, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status, body = ready(server)
        if status == 200:
            return body
        assert time.monotonic() < deadline, f"not ready after {timeout} s: {body}"
        time.sleep(0.5)


async def ask(server: Daphne, site: Site, text: str) -> list[dict[str, Any]]:
    async with connect(server.ws_url, origin=Origin(server.http_url), additional_headers={"Cookie": site.cookie("ann")},
                       open_timeout=10) as ws:
        await ws.send(json.dumps({"type": "ask", "text": text}))
        frames: list[dict[str, Any]] = []
        while True:
            frames.append(json.loads(await ws.recv()))
            last = frames[-1]
            if last["type"] == "done" or (last["type"] == "error" and last.get("fatal", True)):
                return frames


@pytest.fixture
def chroma(tmp_path: Path) -> Iterator[ChromaServer]:
    assert CHROMA.exists() or shutil.which("chroma"), "the chroma command (chromadb's) is missing; run make install"
    server = ChromaServer(tmp_path / "chroma-server")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def lorebot(tmp_path: Path, chroma: ChromaServer) -> Iterator[tuple[Daphne, Site]]:
    site = make_site(tmp_path / "data", CHROMA_URL=chroma.url)
    server = start_daphne(site)
    yield server, site
    server.stop()


async def test_chroma_down_is_reported_answered_clearly_and_recovered_from(
        chroma: ChromaServer, lorebot: tuple[Daphne, Site]) -> None:
    server, site = lorebot
    body = wait_ready(server)
    assert body["checks"]["vector_store"]["status"] == "ok" and body["checks"]["vector_store"]["detail"]["chunks"] > 0

    chroma.stop()  # before this process has read any vector or passage: the question needs Chroma
    status, body = ready(server)
    assert status == 503 and body["status"] == "not_ready"
    assert body["checks"]["vector_store"]["status"] == "error"
    assert "vector store unavailable" in body["checks"]["vector_store"]["detail"]
    assert body["checks"]["database"]["status"] == "ok"
    started = time.monotonic()
    frames = await ask(server, site, "How do I roll back a release?")
    assert time.monotonic() - started < 30
    assert [f["type"] for f in frames] == ["start", "error"]
    assert frames[-1]["code"] == "retrieval_unavailable" and frames[-1]["fatal"] is True
    assert "Search is unavailable right now" in frames[-1]["message"] and "Traceback" not in frames[-1]["message"]
    assert server.process.poll() is None
    with urllib.request.urlopen(f"{server.http_url}/health", timeout=5) as response:
        assert response.status == 200

    chroma.start()  # the same port and data folder, Lorebot untouched
    wait_ready(server, timeout=60)
    frames = await ask(server, site, "How do I roll back a release?")
    assert frames[-1]["type"] == "done" and frames[-2]["items"][0]["title"] == "Deployment"

    # Down again: a question over what this process already holds (a small index's vectors, the passages
    # read at this index version) is still answered; readiness says the store is down all the same.
    chroma.stop()
    assert ready(server)[0] == 503
    frames = await ask(server, site, "How do I roll back a release?")
    assert frames[-1]["type"] == "done" and frames[-2]["items"][0]["title"] == "Deployment"
    log = server.log.read_text()
    assert "Traceback" not in log, log[-3000:]

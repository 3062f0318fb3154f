"""Every line a production process writes is one JSON object: the worker's, daphne's, Django's, the libraries'."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import threading
import urllib.request
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from websockets.sync.client import connect
from websockets.typing import Origin

from console.ops.logs import configure_logging
from tests.daphne_server import PYTHON, ROOT, make_site, start_daphne
from tests.fakes.groq import FakeGroqServer

SECRET_QUESTION = "What is the zebra-passphrase of the vault?"


def not_json(text: str) -> list[str]:
    bad = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            if not isinstance(json.loads(line), dict):
                bad.append(line)
        except ValueError:
            bad.append(line)
    return bad


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    configure_logging("json", "DEBUG", stream=buffer)
    yield buffer
    configure_logging(settings.LOG_FORMAT, settings.LOG_LEVEL)


def test_warnings_and_exceptions_that_end_a_thread_are_json_events(captured: io.StringIO) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        logging.captureWarnings(False)  # pytest records warnings itself; route them as a server process does
        logging.captureWarnings(True)
        warnings.warn("this API is going away", DeprecationWarning, stacklevel=1)

    def broken() -> None:
        raise RuntimeError("the thread broke")

    thread = threading.Thread(target=broken, name="doomed")
    thread.start()
    thread.join()
    sys.excepthook(ValueError, ValueError("the program broke"), None)
    assert not_json(captured.getvalue()) == []
    events = [json.loads(line) for line in captured.getvalue().splitlines()]
    by_event = {e["event"]: e for e in events}
    assert "this API is going away" in next(e["event"] for e in events if e["logger"] == "py.warnings")
    assert by_event["python.thread_died"]["thread"] == "doomed" and "the thread broke" in by_event["python.thread_died"]["exception"]
    assert by_event["python.uncaught_exception"]["level"] == "critical"


@pytest.mark.parametrize("library", ["groq._base_client", "openai._base_client", "httpx", "slack_sdk.web.base_client",
                                     "slack_bolt.App", "discord.gateway", "chromadb.api", "urllib3.connectionpool",
                                     "django.db.backends"])
def test_at_debug_a_librarys_request_bodies_stay_out_of_the_logs(captured: io.StringIO, library: str) -> None:
    logging.getLogger(library).debug("Request options: %s", {"json_data": {"messages": [SECRET_QUESTION]}})
    logging.getLogger(library).info("HTTP Request: POST %s", SECRET_QUESTION)
    # A library that sets its own level (discord.py's setup_logging does) is held by the handler too.
    logging.getLogger(library).setLevel(logging.DEBUG)
    logging.getLogger(library).debug("payload %s", SECRET_QUESTION)
    logging.getLogger(library).warning("Retrying request in 0.5 seconds")
    out = captured.getvalue()
    assert "zebra" not in out
    assert "Retrying request in 0.5 seconds" in out, "a library's warnings still reach the logs"


def test_with_log_content_the_libraries_follow_log_level() -> None:
    buffer = io.StringIO()
    configure_logging("json", "DEBUG", log_content=True, stream=buffer)
    try:
        logging.getLogger("groq._base_client").debug("Request options: %s", SECRET_QUESTION)
    finally:
        configure_logging(settings.LOG_FORMAT, settings.LOG_LEVEL)
    assert "zebra" in buffer.getvalue()


# -- real processes ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fake_groq() -> Iterator[FakeGroqServer]:
    with FakeGroqServer() as fake:
        yield fake


_QUEUE_UPLOAD = """
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from console.ingest import uploads
user = get_user_model().objects.get(username="ann")
files = [SimpleUploadedFile("notes.md", b"# Notes\\n\\nThe vault opens on Mondays.\\n"),
         SimpleUploadedFile("broken.pdf", b"%PDF-1.4 not really")]
print(uploads.submit_uploads(files, user).job.pk)
"""


@pytest.mark.slow
def test_every_line_of_the_worker_and_daphne_is_json_even_at_debug(tmp_path: Path, fake_groq: FakeGroqServer) -> None:
    """The finding: 466 worker lines were not JSON, and the groq SDK logged whole requests at DEBUG."""
    site = make_site(tmp_path / "data", GROQ_API_KEY="gsk-test", GROQ_BASE_URL=fake_groq.base_url,
                     GROQ_MAX_RETRIES="0", LOG_LEVEL="DEBUG", LOG_FORMAT="json")
    manage = [PYTHON, str(ROOT / "manage.py")]
    subprocess.run([*manage, "shell", "-c", _QUEUE_UPLOAD], env=site.env, cwd=ROOT, check=True, capture_output=True)
    worker = subprocess.run([*manage, "db_worker", "--batch"], env=site.env, cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    assert worker.returncode == 0, worker.stderr[-2000:]
    worker_out = worker.stdout + worker.stderr
    assert not_json(worker_out) == []
    assert any(json.loads(line)["event"].startswith("ingest.") for line in worker_out.splitlines() if line.strip())

    # daphne with its access log on (no -v 0): its entries are JSON events too.
    server = start_daphne(site, LOG_LEVEL="DEBUG")
    try:
        with connect(server.ws_url, origin=Origin(server.http_url), additional_headers={"Cookie": site.cookie("ann")}) as ws:
            ws.send(json.dumps({"type": "ask", "text": SECRET_QUESTION}))
            while json.loads(ws.recv(timeout=30))["type"] != "done":
                pass
        urllib.request.urlopen(f"{server.http_url}/health/ready", timeout=30).read()
    finally:
        server.stop()
    daphne_out = server.log.read_text()
    assert not_json(daphne_out) == []
    events: list[dict[str, Any]] = [json.loads(line) for line in daphne_out.splitlines() if line.strip()]
    assert any(e["event"] == "daphne.access" and "WSCONNECT" in e["request"] for e in events)
    assert "zebra" not in daphne_out, "question text reached the logs through a library's DEBUG output"
    # Nothing went wrong, and stopping (SIGTERM) closes the LLM client: an open aiohttp session is an error.
    assert [e["event"] for e in events if e.get("level") in ("error", "critical")] == []


def test_a_command_answered_by_the_llm_closes_its_client(tmp_path: Path, fake_groq: FakeGroqServer) -> None:
    site = make_site(tmp_path / "data", GROQ_API_KEY="gsk-test", GROQ_BASE_URL=fake_groq.base_url, GROQ_MAX_RETRIES="0")
    asked = subprocess.run([PYTHON, str(ROOT / "manage.py"), "ask", "How do I roll back a release?"], env=site.env,
                           cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert asked.returncode == 0, asked.stderr[-2000:]
    assert "groq/" in asked.stdout and "According to the documents" in asked.stdout
    assert "Unclosed" not in asked.stdout + asked.stderr  # aiohttp's complaint about a session left open

"""Structured logs as an operator reads them: the real JSON lines, one per event, from real requests."""

from __future__ import annotations

import asyncio
import io
import ipaddress
import json
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.test import AsyncClient, Client, override_settings
from django.urls import include, path

from console import chat
from console.engine import get_engine, set_engine
from console.ingest import uploads, worker
from console.models import IngestJob
from console.ops import warmup
from console.ops.logs import configure_logging
from console.tasks import enqueue_job
from tests.support import DEPLOY, ask_chat

pytestmark = pytest.mark.django_db

Lines = Callable[[], list[dict[str, Any]]]


# -- a URLconf with the real site plus views that exercise the engine and fail on purpose ---------


def _boom(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("the view broke")


def _engine_work(request: HttpRequest) -> JsonResponse:
    result = get_engine().ingest_file(Path(settings.RAG_DATA_DIR) / "missing.md")
    return JsonResponse({"status": result.status})


async def _async_engine_work(request: HttpRequest) -> JsonResponse:
    # The engine's work runs in another thread, as the chat service's retrieval does.
    result = await asyncio.to_thread(get_engine().ingest_file, Path(settings.RAG_DATA_DIR) / "missing.md")
    return JsonResponse({"status": result.status})


_slow_view_entered = asyncio.Event()


async def _slow(request: HttpRequest) -> JsonResponse:
    _slow_view_entered.set()
    await asyncio.Event().wait()  # never answers: the client hangs up first
    return JsonResponse({})


urlpatterns = [
    path("test/boom", _boom),
    path("test/slow", _slow),
    path("test/engine", _engine_work),
    path("test/async-engine", _async_engine_work),
    path("", include("console.urls")),
]


@pytest.fixture
def logs() -> Iterator[Lines]:
    """The process's real log output (JSON renderer, root handler), captured in a buffer."""
    buffer = io.StringIO()
    configure_logging("json", "INFO", stream=buffer)

    def lines() -> list[dict[str, Any]]:
        return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]

    with override_settings(ROOT_URLCONF=__name__):
        yield lines
    configure_logging(settings.LOG_FORMAT, settings.LOG_LEVEL)


@pytest.fixture
def warmup_running(monkeypatch: pytest.MonkeyPatch) -> None:
    """A warm-up that has started and not finished, as in the seconds after a server starts."""
    running = warmup.Warmup()
    running.started_at = time.monotonic()
    monkeypatch.setattr(warmup, "warmup", running)


def access_events(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in lines if e["event"] == "http.request"]


# -- request id and access log ------------------------------------------------------------------


def test_each_request_logs_one_access_event_with_the_callers_request_id(logs: Lines) -> None:
    response = Client(REMOTE_ADDR="192.0.2.10").get("/health?probe=1", headers={"X-Request-ID": "req-42.a_b"})
    assert response["X-Request-ID"] == "req-42.a_b"
    [event] = access_events(logs())
    assert event["request_id"] == "req-42.a_b"
    assert (event["method"], event["path"], event["route"], event["status"]) == ("GET", "/health", "/health", 200)
    assert event["client_ip"] == "192.0.2.10" and event["component"] == "http"
    assert isinstance(event["latency_ms"], float) and event["level"] == "info"


@pytest.mark.parametrize("incoming", ["", "has space", "x" * 200, "<script>", "id\nforged"])
def test_an_insane_request_id_is_replaced_by_a_fresh_one(logs: Lines, incoming: str) -> None:
    response = Client().get("/health", headers={"X-Request-ID": incoming} if incoming else {})
    generated = response["X-Request-ID"]
    assert generated != incoming and len(generated) == 32 and generated.isalnum()
    assert access_events(logs())[0]["request_id"] == generated


def test_two_requests_get_two_ids(logs: Lines) -> None:
    client = Client()
    assert client.get("/health")["X-Request-ID"] != client.get("/health")["X-Request-ID"]


def test_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy(logs: Lines) -> None:
    Client(REMOTE_ADDR="198.51.100.20").get("/health", headers={"X-Forwarded-For": "203.0.113.5"})
    with override_settings(TRUSTED_PROXIES=[ipaddress.ip_network("10.0.0.0/8")]):
        Client(REMOTE_ADDR="10.1.2.3").get("/health", headers={"X-Forwarded-For": "1.2.3.4, 203.0.113.5, 10.9.9.9"})
    untrusted, proxied = access_events(logs())
    assert untrusted["client_ip"] == "198.51.100.20"
    # 1.2.3.4 is what the client claimed; 203.0.113.5 is who connected to our first proxy.
    assert proxied["client_ip"] == "203.0.113.5"


# -- the id follows the work --------------------------------------------------------------------


def test_the_engines_events_carry_the_request_id(logs: Lines, tmp_path: Path) -> None:
    with override_settings(RAG_DATA_DIR=tmp_path):
        set_engine(None)
        try:
            sync = Client().get("/test/engine", headers={"X-Request-ID": "sync-1"})
            asynchronous = asyncio.run(AsyncClient().get("/test/async-engine", headers={"X-Request-ID": "async-1"}))
        finally:
            set_engine(None)
    assert sync.json() == asynchronous.json() == {"status": "failed"}
    failed = [e for e in logs() if e["event"] == "ingest.failed"]
    assert [(e["request_id"], e["component"]) for e in failed] == [("sync-1", "engine"), ("async-1", "engine")]


@pytest.mark.slow
def test_the_job_worker_binds_the_job_id_to_the_engines_events(
        logs: Lines, data_dir: Path, django_capture_on_commit_callbacks: Any) -> None:
    staff = User.objects.create_user("ada", password="pw", is_staff=True)
    with django_capture_on_commit_callbacks(execute=True):
        result = uploads.submit_uploads([SimpleUploadedFile("deploy.md", DEPLOY.encode())], staff)
    assert result.job is not None
    worker.process_job(result.job.pk, requeue=enqueue_job)
    assert IngestJob.objects.get(pk=result.job.pk).state == IngestJob.State.SUCCEEDED
    indexed = [e for e in logs() if e["event"] == "ingest.indexed"]
    assert indexed and all(e["job_id"] == result.job.pk and e["component"] == "engine" for e in indexed)
    # Unbound when the job ends: later events of this thread do not claim to be part of it.
    Client().get("/health")
    assert "job_id" not in access_events(logs())[-1]


# -- errors, components, content ----------------------------------------------------------------


def test_an_unhandled_error_is_logged_once_with_its_traceback(logs: Lines) -> None:
    response = Client(raise_request_exception=False).get("/test/boom", headers={"X-Request-ID": "err-1"})
    assert response.status_code == 500
    lines = logs()
    with_trace = [e for e in lines if "exception" in e]
    assert len(with_trace) == 1
    [error] = with_trace
    assert "Traceback" in error["exception"] and "RuntimeError: the view broke" in error["exception"]
    assert error["request_id"] == "err-1" and error["component"] == "http"
    assert sum("the view broke" in json.dumps(e) for e in lines) == 1
    [access] = access_events(lines)
    assert (access["status"], access["level"], access["request_id"]) == (500, "warning", "err-1")


def test_a_5xx_response_without_an_exception_is_logged_once(logs: Lines, warmup_running: None) -> None:
    assert Client().get("/health/ready").status_code == 503  # still warming
    [event] = logs()
    assert event["event"] == "http.request" and event["status"] == 503


async def test_a_client_that_hangs_up_mid_request_is_logged_as_499_not_as_a_server_error(logs: Lines) -> None:
    from django.core.handlers.asgi import ASGIHandler

    from console.ops.metrics import HTTP_REQUESTS

    before = HTTP_REQUESTS.labels("GET", "/test/slow", "499")._value.get()
    messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await messages.put({"type": "http.request", "body": b"", "more_body": False})
    sent: list[dict[str, Any]] = []

    async def send(message: Mapping[str, Any]) -> None:
        sent.append(dict(message))

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": "/test/slow", "raw_path": b"/test/slow", "query_string": b"", "root_path": "",
             "headers": [(b"host", b"127.0.0.1")], "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 80)}
    _slow_view_entered.clear()
    request = asyncio.create_task(ASGIHandler()(scope, messages.get, send))
    await asyncio.wait_for(_slow_view_entered.wait(), 10)
    await messages.put({"type": "http.disconnect"})  # the client hangs up while the view runs
    await asyncio.wait_for(request, 10)
    assert sent == []  # nobody to answer
    [event] = access_events(logs())
    assert (event["status"], event["level"], event["outcome"]) == (499, "info", "client disconnected")
    assert HTTP_REQUESTS.labels("GET", "/test/slow", "499")._value.get() == before + 1


def test_a_404_is_logged_once_by_the_access_log_only(logs: Lines) -> None:
    Client().get("/no/such/page")
    lines = logs()
    assert len(lines) == 1 and lines[0]["route"] == "<unmatched>" and lines[0]["status"] == 404


QUESTION = "Where does the zebra deployment pipeline keep its rollback tags?"


@pytest.fixture
def chatting(chat_engine: object) -> None:
    """The chat service answering from a small engine."""


@pytest.mark.django_db(transaction=True)  # the chat service's ORM calls run on pool threads' connections
def test_every_event_names_its_component_and_no_question_text_is_logged(logs: Lines, chatting: None) -> None:
    events = ask_chat(surface="cli", conversation_key="k1", user_key="u1", text=QUESTION)
    assert isinstance(events[-1], chat.AnswerDone)
    Client(raise_request_exception=False).get("/test/boom")
    Client().get("/health")
    lines = logs()
    assert {"chat.answered", "http.request"} <= {e["event"] for e in lines}
    assert all(e.get("component") for e in lines), [e for e in lines if not e.get("component")]
    assert "zebra" not in "\n".join(json.dumps(e) for e in lines)
    [answered] = [e for e in lines if e["event"] == "chat.answered"]
    assert answered["question"] == f"<{len(QUESTION)} characters; LOG_CONTENT=True to log them>"


@pytest.mark.django_db(transaction=True)
def test_log_content_lets_the_question_through(logs: Lines, chatting: None) -> None:
    buffer = io.StringIO()
    configure_logging("json", "INFO", log_content=True, stream=buffer)
    ask_chat(surface="cli", conversation_key="k2", user_key="u1", text=QUESTION)
    answered = [json.loads(line) for line in buffer.getvalue().splitlines() if '"chat.answered"' in line]
    assert answered[0]["question"] == QUESTION

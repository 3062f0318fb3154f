"""Faults: the LLM failing a third of its calls, and Redis (the channel layer) going away and coming back.

Chroma-server-down is in test_chroma_down.py; a worker SIGKILLed mid-job under the scale-out
configuration is in test_scale_out.py.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from console import chat
from console.models import Message
from ragcore import Engine
from tests.daphne_server import Daphne, free_port, make_site, start_daphne
from tests.fakes.groq import FakeGroqServer
from tests.support import answer_text, ask_chat, serving_deploy

QUESTIONS = 20


def llm_errors() -> float:
    return REGISTRY.get_sample_value("rag_pipeline_errors_total", {"component": "llm"}) or 0.0


@pytest.fixture
def flaky_groq() -> Iterator[FakeGroqServer]:
    # A timeout hangs 3 s against a 0.5 s client timeout, so the batch stays quick.
    with FakeGroqServer(fail_rate=0.3, seed=7, hang_seconds=3.0) as fake:
        yield fake


@pytest.fixture
def engine(tmp_path: Path, flaky_groq: FakeGroqServer) -> Iterator[Engine]:
    with serving_deploy(tmp_path, groq_api_key="gsk-test", groq_base_url=flaky_groq.base_url,
                        groq_timeout=0.5, groq_max_retries=1) as engine:
        yield engine


@pytest.mark.slow  # twenty answers, some waiting out a hung LLM call
@pytest.mark.django_db(transaction=True)  # the chat service's ORM calls run on pool threads' connections
def test_every_question_is_answered_when_the_llm_fails_a_third_of_its_calls(
    engine: Engine, flaky_groq: FakeGroqServer, settings: object
) -> None:
    settings.CHAT_RATE_LIMIT_USER = settings.CHAT_RATE_LIMIT_CONVERSATION = "0"  # type: ignore[attr-defined]
    errors_before = llm_errors()
    answers = []
    for i in range(QUESTIONS):
        events = ask_chat(surface="web", conversation_key=f"fault-{i}", user_key="ops",
                          text=f"How do I roll back a release? ({i})")
        assert isinstance(events[-1], chat.AnswerDone), events
        assert not any(isinstance(e, chat.AnswerError) and e.fatal for e in events)
        text = answer_text(events)
        citations = next(e.items for e in events if isinstance(e, chat.AnswerCitations))
        assert text.strip() and citations and citations[0].title == "Deployment"
        answers.append((events, text))

    fallbacks = [(events, text) for events, text in answers if events[-1].extractive]
    from_groq = [(events, text) for events, text in answers if not events[-1].extractive]
    calls = flaky_groq.chat_requests()
    # The fake drew its faults: some answers survived a fault by retrying, some fell back, most are Groq's.
    assert len(calls) > QUESTIONS, "no call was retried"
    assert fallbacks and len(from_groq) > QUESTIONS // 2
    for events, text in fallbacks:
        done = events[-1]
        assert done.provider == "extractive" and done.fallback_reason
        stored = Message.objects.get(pk=done.message_id)
        assert stored.error == done.fallback_reason and stored.text == text  # marked in the database too
        interrupted = [e for e in events if isinstance(e, chat.AnswerError)]
        if interrupted:  # a stream broken mid-answer says so before the extractive answer follows
            assert interrupted[0].code.startswith("llm_") and not interrupted[0].fatal
    for events, text in from_groq:
        assert events[-1].provider == "groq" and text.startswith("According to the documents")
    # Each answer that fell back counted one LLM error, whatever the fault was.
    assert llm_errors() - errors_before == len(fallbacks)


# -- Redis down under the Redis channel layer --------------------------------------------------------


def _pongs(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[tuple[int, list[subprocess.Popen[bytes]], Callable[[], object]]]:
    """A redis-server of this test's own on a free port: stopping it never touches the shared one."""
    binary = shutil.which("redis-server")
    if not binary:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    running: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
                                 "--dir", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not _pongs(port):
            assert proc.poll() is None and time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        running.append(proc)
        return proc

    start()
    yield port, running, start
    for proc in running:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def ask_over(server: Daphne, cookie: str, text: str) -> tuple[list[dict[str, Any]], int | None]:
    """The frames of one answer, and the close code if the server closed the socket instead."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    frames: list[dict[str, Any]] = []
    async with connect(server.ws_url, origin=server.http_url, additional_headers={"Cookie": cookie},  # type: ignore[arg-type]
                       open_timeout=10) as ws:
        try:
            await ws.send(json.dumps({"type": "ask", "text": text}))
            while True:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 30))
                frames.append(frame)
                if frame["type"] == "done" or (frame["type"] == "error" and frame.get("fatal", True)):
                    return frames, None
        except ConnectionClosed as closed:
            return frames, closed.rcvd.code if closed.rcvd else None


def health(server: Daphne) -> int:
    with urllib.request.urlopen(f"{server.http_url}/health", timeout=5) as response:
        return int(response.status)


@pytest.mark.slow
async def test_chat_over_one_daphne_fails_clearly_while_redis_is_down_and_recovers_by_itself(
    tmp_path: Path, private_redis: tuple[int, list[subprocess.Popen[bytes]], Callable[[], object]]
) -> None:
    port, running, start = private_redis
    site = make_site(tmp_path / "data", REDIS_URL=f"redis://127.0.0.1:{port}/0")
    server = start_daphne(site)
    try:
        before, closed = await ask_over(server, site.cookie("ann"), "How do I roll back a release?")
        assert closed is None and before[-1]["type"] == "done"

        running[-1].kill()  # Redis goes away without a goodbye
        running[-1].wait()
        during, closed = await ask_over(server, site.cookie("ann"), "When do releases go out?")
        if closed is None:  # the consumer does without the layer: the answer comes as usual
            assert during[-1]["type"] == "done"
        else:
            # Channels' consumer waits on the layer beside the socket, so a dead layer ends the
            # socket with 1011 (internal error), which the chat page answers by reconnecting.
            assert closed == 1011 and not any(f["type"] == "done" for f in during)
        assert health(server) == 200 and server.process.poll() is None  # the process itself carries on

        start()  # Redis back on the same port: the layer reconnects with no restart
        after, closed = await ask_over(server, site.cookie("ann"), "How do I roll back a release?")
        assert closed is None and after[-1]["type"] == "done"
        assert [c["title"] for c in after[-2]["items"]] == [c["title"] for c in before[-2]["items"]]
    finally:
        server.stop()

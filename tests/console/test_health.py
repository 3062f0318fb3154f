"""/health (liveness) and /health/ready (readiness), and questions asked while the server warms up."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.cache import cache
from django.test import Client, override_settings

import console.engine
from console.chat import service as chat
from console.engine import Warmup
from ragcore import Engine
from tests.fakes.groq import FakeGroqServer
from tests.support import DEPLOY, make_engine

pytestmark = pytest.mark.django_db


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class HeldEngine:
    """The process engine, handed to the warm-up only when the test lets go (a slow model load)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.release = threading.Event()

    def __call__(self) -> Engine:
        if threading.current_thread().name == "lorebot-warmup":
            assert self.release.wait(30), "the test never released the warm-up"
        return self.engine


@pytest.fixture
def warmup(monkeypatch: pytest.MonkeyPatch) -> Warmup:
    """A fresh, not yet started warm-up for this process."""
    fresh = Warmup()
    monkeypatch.setattr(console.engine, "warmup", fresh)
    return fresh


@pytest.fixture
def engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HeldEngine]:
    engine = make_engine(tmp_path / "data")
    doc = tmp_path / "deploy.md"
    doc.write_text(DEPLOY)
    engine.ingest_file(doc)
    held = HeldEngine(engine)
    monkeypatch.setattr(console.engine, "get_engine", held)
    monkeypatch.setattr(chat, "get_engine", held)
    cache.clear()
    yield held
    held.release.set()
    cache.clear()


def ready() -> tuple[int, dict]:  # type: ignore[type-arg]
    response = Client().get("/health/ready")
    return response.status_code, response.json()


def test_liveness_touches_no_dependency(django_assert_num_queries) -> None:  # type: ignore[no-untyped-def]
    with django_assert_num_queries(0):
        started = time.perf_counter()
        response = Client().get("/health")
    assert response.json() == {"status": "ok"} and time.perf_counter() - started < 0.5


def test_readiness_says_warming_until_the_warm_up_is_done_then_lists_every_check(
        warmup: Warmup, engine: HeldEngine) -> None:
    status, body = ready()  # the first probe starts the warm-up of a process whose server did not
    assert status == 503 and body["status"] == "warming"
    assert body["checks"]["database"]["status"] == "ok" and body["checks"]["vector_store"]["status"] == "warming"
    engine.release.set()
    assert warmup.done.wait(10)
    status, body = ready()
    assert status == 200 and body["status"] == "ready", body
    checks = body["checks"]
    assert {name: c["status"] for name, c in checks.items()} == {
        "database": "ok", "vector_store": "ok", "bm25_index": "ok", "embedding_model": "ok",
        "llm": "degraded: extractive fallback",
    }
    assert checks["vector_store"]["detail"] == {"chunks": engine.engine.store.count()} and checks["bm25_index"]["detail"]["chunks"] > 0
    assert all(isinstance(c["ms"], float) for c in checks.values())
    assert body["warmup"]["state"] == "done" and body["warmup"]["seconds"] >= 0


@pytest.mark.django_db(transaction=True)  # the question is asked from another thread, on its own connection
def test_a_question_asked_while_warming_waits_and_is_answered(warmup: Warmup, engine: HeldEngine) -> None:
    warmup.start()
    events: list[chat.ChatEvent] = []
    asking = threading.Thread(target=lambda: events.extend(
        chat.reply(surface="cli", conversation_key="w1", user_key="u1", text="How do I roll back a release?")))
    asking.start()
    time.sleep(0.5)
    assert events == [] and asking.is_alive()  # waiting for the warm-up, not failing
    engine.release.set()
    asking.join(10)
    assert [e.type for e in events][0] == "start" and events[-1].type == "done"


async def test_an_async_question_waits_too_but_not_forever(warmup: Warmup, engine: HeldEngine) -> None:
    warmup.start()
    with override_settings(WARMUP_WAIT_SECONDS=0.3):
        started = time.perf_counter()
        events = [e async for e in chat.areply(surface="web", conversation_key="w2", user_key="u1", text="Rollback?")]
    assert [e.to_dict()["code"] for e in events] == ["warming_up"]
    assert "starting up" in events[0].data["message"] and events[0].data["fatal"] is True
    assert 0.3 <= time.perf_counter() - started < 2


def test_a_reachable_llm_is_ok_and_an_unreachable_one_is_degraded_but_ready(
        warmup: Warmup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeGroqServer() as fake:
        engine = make_engine(tmp_path / "data", groq_api_key="gsk-test", groq_base_url=fake.base_url)
        monkeypatch.setattr(console.engine, "get_engine", lambda: engine)
        warmup.start()
        assert warmup.done.wait(10)
        status, body = ready()
        assert status == 200 and body["checks"]["llm"]["status"] == "ok"
    down = make_engine(tmp_path / "data", groq_api_key="gsk-test", groq_base_url=f"http://127.0.0.1:{_free_port()}",
                       groq_max_retries=0, groq_timeout=2)
    monkeypatch.setattr(console.engine, "get_engine", lambda: down)
    status, body = ready()
    assert status == 200 and body["checks"]["llm"]["status"] == "degraded: extractive fallback"
    assert "Connection" in body["checks"]["llm"]["detail"] or "connect" in body["checks"]["llm"]["detail"].lower()


def test_an_unreachable_vector_store_makes_the_process_not_ready(
        warmup: Warmup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = make_engine(tmp_path / "data", chroma_url=f"http://127.0.0.1:{_free_port()}")
    monkeypatch.setattr(console.engine, "get_engine", lambda: engine)
    warmup.start()
    assert warmup.done.wait(30)
    assert "vector_store" in warmup.errors
    status, body = ready()
    assert status == 503 and body["status"] == "not_ready"
    assert body["checks"]["vector_store"]["status"] == "error"
    assert "vector store unavailable" in body["checks"]["vector_store"]["detail"]
    assert body["checks"]["database"]["status"] == body["checks"]["bm25_index"]["status"] == "ok"

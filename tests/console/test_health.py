"""/health (liveness) and /health/ready (readiness), and questions asked while the server warms up."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
from django.conf import settings
from django.test import Client, override_settings

from console import chat
from console.engine import set_engine
from console.ops import warmup as warmups
from console.ops.warmup import Warmup
from ragcore import Engine
from tests.fakes.groq import FakeGroqServer, FakeOpenAIServer
from tests.support import HashingEmbedder, ask_chat, make_engine, serving_deploy

pytestmark = pytest.mark.django_db


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class HeldEmbedder(HashingEmbedder):
    """A model whose load (the warm-up's first embedding) waits until the test lets go: a slow start."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def embed_query(self, text: str) -> np.ndarray:
        if threading.current_thread().name == "lorebot-warmup":
            assert self.release.wait(30), "the test never released the warm-up"
        return super().embed_query(text)


@pytest.fixture(autouse=True)
def no_engine_left() -> Iterator[None]:
    yield
    set_engine(None)


@pytest.fixture
def warmup(monkeypatch: pytest.MonkeyPatch) -> Warmup:
    """A fresh, not yet started warm-up for this process."""
    fresh = Warmup()
    monkeypatch.setattr(warmups, "warmup", fresh)
    return fresh


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    """The process's engine, with a model that loads only when the test says so (`release`)."""
    embedder = HeldEmbedder()
    with serving_deploy(tmp_path, embedder=embedder) as engine:
        yield engine
        embedder.release.set()


def release(engine: Engine) -> None:
    cast(HeldEmbedder, engine.embedder).release.set()


def ready() -> tuple[int, dict[str, Any]]:
    response = Client().get("/health/ready")
    return response.status_code, response.json()


def test_liveness_touches_no_dependency(django_assert_num_queries: Any) -> None:
    Client().get("/health")  # the first request of a process loads every URL module; that is not the probe's cost
    with django_assert_num_queries(0):
        started = time.perf_counter()
        response = Client().get("/health")
    assert response.json() == {"status": "ok"} and time.perf_counter() - started < 0.5


def test_readiness_says_warming_until_the_warm_up_is_done_then_lists_every_check(
        warmup: Warmup, engine: Engine) -> None:
    status, body = ready()  # the first probe starts the warm-up of a process whose server did not
    assert status == 503 and body["status"] == "warming"
    assert body["checks"]["database"]["status"] == "ok" and body["checks"]["vector_store"]["status"] == "warming"
    release(engine)
    assert warmup.done.wait(10)
    status, body = ready()
    assert status == 200 and body["status"] == "ready", body
    checks = body["checks"]
    assert {name: c["status"] for name, c in checks.items()} == {
        "database": "ok", "originals": "ok", "vector_store": "ok", "bm25_index": "ok", "embedding_model": "ok",
        "llm": "degraded: extractive fallback", "disk": "ok", "sources": "ok",
    }
    assert checks["vector_store"]["detail"] == {"chunks": engine.store.count()} and checks["bm25_index"]["detail"]["chunks"] > 0
    keyword = checks["bm25_index"]["detail"]
    assert (keyword["store"], keyword["behind_versions"], keyword["lag_seconds"]) == ("folder", 0, 0.0)
    assert keyword["location"] == str(engine.settings.bm25_path)
    assert checks["originals"]["detail"] == {"storage": "folder", "location": f"folder {settings.RAG_DATA_DIR}/raw"}
    assert all(isinstance(c["ms"], float) for c in checks.values())
    assert body["warmup"]["state"] == "done" and body["warmup"]["seconds"] >= 0


@pytest.mark.django_db(transaction=True)  # the question is asked from another thread, on its own connection
def test_a_question_asked_while_warming_waits_and_is_answered(warmup: Warmup, engine: Engine) -> None:
    warmup.start()
    events: list[chat.ChatEvent] = []
    asking = threading.Thread(target=lambda: events.extend(
        ask_chat(surface="cli", conversation_key="w1", user_key="u1", text="How do I roll back a release?")))
    asking.start()
    asking.join(0.5)
    assert events == [] and asking.is_alive()  # waiting for the warm-up, not failing
    release(engine)
    asking.join(10)
    assert isinstance(events[0], chat.AnswerStarted) and isinstance(events[-1], chat.AnswerDone)


async def test_an_async_question_waits_too_but_not_forever(warmup: Warmup, engine: Engine) -> None:
    warmup.start()
    with override_settings(WARMUP_WAIT_SECONDS=0.3):
        started = time.perf_counter()
        events = [e async for e in chat.areply(surface="web", conversation_key="w2", user_key="u1", text="Rollback?")]
    [refused] = events
    assert isinstance(refused, chat.AnswerError) and refused.code == "warming_up" and refused.fatal
    assert "starting up" in refused.message
    assert 0.3 <= time.perf_counter() - started < 2


def test_a_reachable_llm_is_ok_and_an_unreachable_one_is_degraded_but_ready(
        warmup: Warmup, tmp_path: Path) -> None:
    with FakeGroqServer() as fake:
        engine = make_engine(tmp_path / "data", groq_api_key="gsk-test", groq_base_url=fake.base_url)
        set_engine(engine)
        warmup.start()
        assert warmup.done.wait(10)
        status, body = ready()
        assert status == 200 and body["checks"]["llm"]["status"] == "ok"
        assert body["checks"]["llm"]["provider"] == "groq"
    down = make_engine(tmp_path / "data", groq_api_key="gsk-test", groq_base_url=f"http://127.0.0.1:{_free_port()}",
                       groq_max_retries=0, groq_timeout=2)
    set_engine(down)
    status, body = ready()
    assert status == 200 and body["checks"]["llm"]["status"] == "degraded: extractive fallback"
    assert "Connection" in body["checks"]["llm"]["detail"] or "connect" in body["checks"]["llm"]["detail"].lower()


def test_readiness_reports_an_openai_compatible_provider_and_its_model(
        warmup: Warmup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeOpenAIServer() as fake:
        engine = make_engine(tmp_path / "data", llm_provider="openai", llm_base_url=fake.base_url,
                             llm_model="llama-3.1-8b-instant")
        set_engine(engine)
        warmup.start()
        assert warmup.done.wait(10)
        status, body = ready()
        llm = body["checks"]["llm"]
        assert fake.base_url in llm["detail"]
    assert status == 200 and llm["status"] == "ok"
    assert (llm["provider"], llm["model"]) == ("openai", "llama-3.1-8b-instant")


def test_without_a_model_readiness_says_extractive(warmup: Warmup, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    engine = make_engine(tmp_path / "data")
    set_engine(engine)
    warmup.start()
    assert warmup.done.wait(30)
    _, body = ready()
    assert body["checks"]["llm"]["provider"] == "extractive"
    assert body["checks"]["llm"]["status"] == "degraded: extractive fallback"


def test_an_unreachable_vector_store_makes_the_process_not_ready(
        warmup: Warmup, tmp_path: Path) -> None:
    engine = make_engine(tmp_path / "data", chroma_url=f"http://127.0.0.1:{_free_port()}")
    set_engine(engine)
    warmup.start()
    assert warmup.done.wait(30)
    assert "vector_store" in warmup.errors
    status, body = ready()
    assert status == 503 and body["status"] == "not_ready"
    assert body["checks"]["vector_store"]["status"] == "error"
    assert "vector store unavailable" in body["checks"]["vector_store"]["detail"]
    assert body["checks"]["database"]["status"] == body["checks"]["bm25_index"]["status"] == "ok"


def test_a_full_data_disk_makes_readiness_degraded_and_says_why(warmup: Warmup, engine: Engine) -> None:
    release(engine)
    ready()
    assert warmup.done.wait(10)
    with override_settings(INGEST_MIN_FREE_MB=10**12):  # more than any disk has: this one counts as full
        status, body = ready()
    assert status == 200 and body["status"] == "degraded", body  # questions are still answered
    disk = body["checks"]["disk"]
    assert disk["status"] == "degraded: disk full" and "is full" in disk["detail"] and "INGEST_MIN_FREE_MB" in disk["detail"]
    status, body = ready()
    assert body["status"] == "ready" and body["checks"]["disk"]["free_mb"] > 0

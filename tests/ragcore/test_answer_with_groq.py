"""Answers through the real groq SDK against the fake Groq server, and the fallbacks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ragcore import Engine
from ragcore.extractive import NOTICE
from ragcore.types import CitationsEvent, DoneEvent, ErrorEvent, TokenEvent
from tests.fakes.groq import FakeGroqServer
from tests.support import DEPLOY, make_engine


@pytest.fixture(scope="module")
def fake_groq() -> Iterator[FakeGroqServer]:
    with FakeGroqServer() as fake:
        yield fake


@pytest.fixture
def engine(tmp_path: Path, fake_groq: FakeGroqServer) -> Engine:
    fake_groq.reset()
    engine = make_engine(
        tmp_path / "data", groq_api_key="gsk-test", groq_base_url=fake_groq.base_url,
        groq_timeout=1.0, groq_max_retries=1,
    )
    doc = tmp_path / "deploy.md"
    doc.write_text(DEPLOY)
    engine.ingest_file(doc)
    return engine


def test_it_streams_a_grounded_answer_with_citations(engine: Engine, fake_groq: FakeGroqServer) -> None:
    fake_groq.token_delay = 0.01  # as a model writes: deltas that arrive in one read would come as one
    events = list(engine.stream("How do I roll back a release?"))
    tokens = [e for e in events if isinstance(e, TokenEvent)]
    assert len(tokens) > 3, "the answer should arrive as it is written"
    done = events[-1]
    assert isinstance(done, DoneEvent) and isinstance(events[-2], CitationsEvent)
    answer = done.answer
    assert answer.provider == "groq" and not answer.extractive
    assert answer.text.startswith("According to the documents")
    assert [c.n for c in answer.citations] == sorted({c.n for c in answer.citations})
    assert answer.citations[0].title == "Deployment"
    assert answer.usage.completion_tokens > 0
    prompt = fake_groq.chat_requests()[-1].prompt
    assert '<source n="1"' in prompt and "Question: How do I roll back a release?" in prompt


def test_a_citation_of_a_source_that_does_not_exist_is_never_shown(engine: Engine) -> None:
    answer = engine.answer("How do I roll back a release? FAULT_CITE99")
    assert "[99]" not in answer.text
    assert all(c.n != 99 for c in answer.citations)


@pytest.mark.parametrize("fault", ["FAULT_500", "FAULT_429", "FAULT_TIMEOUT"])
def test_it_falls_back_to_an_extractive_answer_when_groq_fails(engine: Engine, fault: str) -> None:
    answer = engine.answer(f"How do I roll back a release? {fault}")
    assert answer.extractive and answer.provider == "extractive"
    assert answer.fallback_reason.startswith("llm_")
    assert answer.text.startswith(NOTICE)
    assert answer.citations


def test_a_stream_broken_mid_answer_is_flagged_then_answered_extractively(engine: Engine) -> None:
    events = list(engine.stream("How do I roll back a release? FAULT_BROKEN"))
    errors = [e for e in events if isinstance(e, ErrorEvent)]
    assert len(errors) == 1 and not errors[0].fatal and errors[0].code == "llm_interrupted"
    answer = events[-1].answer
    assert NOTICE in answer.text and answer.fallback_reason == "llm_interrupted"


def test_no_llm_call_is_made_when_nothing_relevant_is_found(engine: Engine, fake_groq: FakeGroqServer) -> None:
    before = len(fake_groq.chat_requests())
    answer = engine.answer("zebra quantum saxophone")
    assert answer.not_covered and answer.provider == "none"
    assert [c.n for c in answer.citations] == [1]  # the closest passage, named in the decline
    assert len(fake_groq.chat_requests()) == before


def test_the_prompt_asks_the_model_to_say_when_the_sources_do_not_answer(engine: Engine,
                                                                         fake_groq: FakeGroqServer) -> None:
    fake_groq.reply = "Your documents don't cover this. They only describe rollbacks [2]."
    try:
        answer = engine.answer("How do I roll back a release to a Tuesday?")
    finally:
        fake_groq.reply = None
    system = fake_groq.chat_requests()[-1].body["messages"][0]["content"]
    assert "Your documents don't cover this." in system
    assert answer.not_covered and answer.provider == "groq"
    assert answer.text.endswith("rollbacks [1].")  # numbered from 1 like any answer


async def test_the_async_stream_gives_the_same_answer(engine: Engine) -> None:
    events = [e async for e in engine.astream("How do I roll back a release?")]
    assert isinstance(events[-1], DoneEvent)
    assert events[-1].answer.provider == "groq"
    assert events[-1].answer.citations


def test_the_engine_checks_report_every_dependency_and_the_llm(engine: Engine) -> None:
    checks = engine.check_health()
    assert list(checks) == ["vector_store", "bm25_index", "embedding_model", "llm"]
    assert all(c.status == "ok" for c in checks.values()), checks
    assert checks["bm25_index"].detail == {
        "chunks": len(engine.bm25), "store": "folder", "location": str(engine.settings.bm25_path),
        "version": engine.bm25.version, "behind_versions": 0, "lag_seconds": 0.0,
        "last_refresh_lag_seconds": engine.bm25.freshness().last_refresh_seconds,
    }

"""LLM_PROVIDER=openai: the real openai SDK against a fake OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ragcore.errors import GenerationError
from ragcore.generation import OpenAIGenerator, build_messages, make_generator
from ragcore.settings import RagSettings
from ragcore.types import DoneEvent, ErrorEvent, TokenEvent
from tests.fakes.groq import INVALID_KEY, FakeOpenAIServer, assert_sends_what_create_sends, split_tokens
from tests.support import DEPLOY, make_engine
from tests.support import PROMPT_CHUNKS as CHUNKS
from tests.support import PROMPT_REPLY as EXPECTED


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as server:
        yield server


@pytest.fixture(autouse=True)
def fresh_fake(fake: FakeOpenAIServer) -> None:
    fake.reset()


def settings_for(fake: FakeOpenAIServer, **changes: object) -> RagSettings:
    base = RagSettings(llm_provider="openai", llm_base_url=fake.base_url, llm_model="llama3.2",
                       llm_timeout=5.0, llm_max_retries=2)
    return base.with_changes(**changes)


def make_openai(fake: FakeOpenAIServer, **changes: object) -> OpenAIGenerator:
    generator = make_generator(settings_for(fake, **changes))
    assert isinstance(generator, OpenAIGenerator)
    return generator


def ask(question: str) -> list[dict[str, str]]:
    return build_messages(question, CHUNKS)


def error_of(generator: OpenAIGenerator, question: str) -> tuple[GenerationError, list[str]]:
    tokens: list[str] = []
    with pytest.raises(GenerationError) as info:
        for delta in generator.stream(ask(question)):
            tokens.append(delta)
    return info.value, tokens


def test_the_provider_is_chosen_by_llm_provider() -> None:
    assert RagSettings().provider == "extractive"
    assert RagSettings(groq_api_key="gsk-x").provider == "groq"  # GROQ_API_KEY alone keeps working
    assert RagSettings(groq_api_key="gsk-x", llm_provider="extractive").provider == "extractive"
    assert make_generator(RagSettings()) is None
    with pytest.raises(ValueError, match="LLM_MODEL"):
        RagSettings(llm_provider="openai")
    with pytest.raises(ValueError, match="llm_provider"):
        RagSettings(llm_provider="ollama")


def test_from_env_reads_the_llm_variables() -> None:
    settings = RagSettings.from_env({"LLM_PROVIDER": "openai", "LLM_BASE_URL": "http://127.0.0.1:11434/v1",
                                     "LLM_MODEL": "llama3.2", "LLM_TIMEOUT": "12.5", "LLM_MAX_RETRIES": "1"})
    assert (settings.provider, settings.llm_base_url, settings.llm_model) == ("openai", "http://127.0.0.1:11434/v1", "llama3.2")
    assert (settings.llm_timeout, settings.llm_max_retries, settings.llm_api_key) == (12.5, 1, "")


def test_it_streams_tokens_and_reads_the_usage_chunk(fake: FakeOpenAIServer) -> None:
    generator = make_openai(fake)
    stream = generator.stream(ask("What comes first?"))
    tokens = list(stream)
    assert "".join(tokens) == EXPECTED
    assert stream.finish_reason == "stop"
    assert stream.usage.completion_tokens == len(split_tokens(EXPECTED)) and stream.usage.prompt_tokens > 0
    body = fake.chat_requests()[0].body
    assert body["model"] == "llama3.2" and body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}  # else OpenAI-style servers send no usage
    assert body["max_tokens"] == RagSettings().max_answer_tokens  # what Ollama and llama.cpp read


def test_it_sends_what_the_sdks_own_create_would_send(fake: FakeOpenAIServer) -> None:
    generator = make_openai(fake, llm_api_key="sk-local-123")
    assert_sends_what_create_sends(generator, fake, ask("q"))


def test_it_asks_openai_itself_for_max_completion_tokens() -> None:
    generator = OpenAIGenerator(RagSettings(llm_provider="openai", llm_model="gpt-4o-mini", llm_api_key="sk-x"))
    request = generator._request(ask("q"), True)
    assert "max_completion_tokens" in request and "max_tokens" not in request
    assert str(generator._client.base_url).startswith("https://api.openai.com/v1")


async def test_astream_streams_on_the_event_loop(fake: FakeOpenAIServer) -> None:
    generator = make_openai(fake)
    stream = generator.astream(ask("q"))
    tokens = [t async for t in stream]
    assert "".join(tokens) == EXPECTED
    assert stream.usage.completion_tokens == len(split_tokens(EXPECTED))
    await generator.aclose()


def test_a_local_server_needs_no_key_and_the_environment_is_never_read(
    fake: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", INVALID_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("OPENAI_ORG_ID", "org-from-env")
    assert "".join(make_openai(fake).stream(ask("q"))) == EXPECTED
    headers = fake.chat_requests()[0].headers
    assert headers["authorization"] == "Bearer no-key"
    assert "openai-organization" not in headers


def test_a_configured_key_is_sent(fake: FakeOpenAIServer) -> None:
    list(make_openai(fake, llm_api_key="sk-local-123").stream(ask("q")))
    assert fake.chat_requests()[0].headers["authorization"] == "Bearer sk-local-123"


@pytest.mark.parametrize(("question", "code", "requests"), [
    ("FAULT_429", "llm_rate_limited", 3),  # retried by the SDK (LLM_MAX_RETRIES=2), then given up
    ("FAULT_500", "llm_unavailable", 3),
])
def test_errors_are_retried_then_mapped_to_codes(fake: FakeOpenAIServer, question: str, code: str, requests: int) -> None:
    error, tokens = error_of(make_openai(fake), question)
    assert error.code == code and tokens == []
    assert len(fake.chat_requests()) == requests
    assert "OpenAI-compatible server" in str(error)


def test_a_flaky_server_succeeds_after_a_retry(fake: FakeOpenAIServer) -> None:
    assert "".join(make_openai(fake).stream(ask("FAULT_FLAKY"))) == EXPECTED
    assert len(fake.chat_requests()) == 2


def test_a_hung_server_times_out(fake: FakeOpenAIServer) -> None:
    started = time.monotonic()
    error, _ = error_of(make_openai(fake, llm_timeout=0.5, llm_max_retries=0), "FAULT_TIMEOUT")
    assert error.code == "llm_timeout"
    assert time.monotonic() - started < 3.0


def test_a_broken_stream_is_interrupted_and_not_retried(fake: FakeOpenAIServer) -> None:
    error, tokens = error_of(make_openai(fake), "FAULT_BROKEN")
    assert error.code == "llm_interrupted" and tokens == ["According", " to", " the"]
    assert len(fake.chat_requests()) == 1


def test_a_stream_without_finish_reason_is_interrupted(fake: FakeOpenAIServer) -> None:
    error, _ = error_of(make_openai(fake), "FAULT_NOFINISH")
    assert error.code == "llm_interrupted"


def test_a_rejected_key_is_llm_auth_and_never_shown(fake: FakeOpenAIServer) -> None:
    error, _ = error_of(make_openai(fake, llm_api_key=INVALID_KEY), "q")
    assert error.code == "llm_auth" and INVALID_KEY not in str(error)


def test_the_health_check_names_the_server_and_model(fake: FakeOpenAIServer) -> None:
    fake.reply = None
    with pytest.raises(GenerationError, match="does not offer model 'llama3.2'"):
        make_openai(fake).check()
    assert make_openai(fake, llm_model="llama-3.1-8b-instant").check().endswith("offers llama-3.1-8b-instant")


# -- through the engine ---------------------------------------------------------------------------


@pytest.fixture
def engine(tmp_path: Path, fake: FakeOpenAIServer):
    engine = make_engine(tmp_path / "data", llm_provider="openai", llm_base_url=fake.base_url, llm_model="llama3.2",
                         llm_timeout=5.0, llm_max_retries=0)
    doc = tmp_path / "deploy.md"
    doc.write_text(DEPLOY)
    engine.ingest_file(doc)
    return engine


def test_the_engine_answers_through_the_openai_server_with_usage(engine, fake: FakeOpenAIServer) -> None:
    answer = engine.answer("How do I roll back a release?")
    assert (answer.provider, answer.model, answer.extractive) == ("openai", "llama3.2", False)
    assert answer.usage.completion_tokens > 0
    assert [c.n for c in answer.citations] == list(range(1, len(answer.citations) + 1))
    assert "rollback" in answer.text.lower()


def test_the_engine_falls_back_to_extractive_when_the_server_breaks(engine, fake: FakeOpenAIServer) -> None:
    events = list(engine.stream("How do I roll back a release? FAULT_BROKEN"))
    errors = [e for e in events if isinstance(e, ErrorEvent)]
    assert [e.code for e in errors] == ["llm_interrupted"] and not errors[0].fatal
    done = events[-1]
    assert isinstance(done, DoneEvent)
    assert done.answer.extractive and done.answer.fallback_reason == "llm_interrupted"
    assert "".join(e.text for e in events if isinstance(e, TokenEvent)) == done.answer.text


def test_the_engine_falls_back_when_the_server_is_down(engine, fake: FakeOpenAIServer) -> None:
    answer = engine.answer("How do I roll back a release? FAULT_500")
    assert answer.extractive and answer.fallback_reason == "llm_unavailable"
    assert answer.citations


def test_the_async_engine_path_uses_the_openai_server(engine, fake: FakeOpenAIServer) -> None:
    async def run() -> DoneEvent:
        events = [e async for e in engine.astream("How do I roll back a release?")]
        await engine.generator.aclose()
        assert isinstance(events[-1], DoneEvent)
        return events[-1]

    done = asyncio.run(run())
    assert done.answer.provider == "openai" and done.answer.usage.completion_tokens > 0


async def test_a_ragged_stream_reads_as_the_same_text_and_usage(fake: FakeOpenAIServer) -> None:
    # \r\n endings, comments and event lines, cut across HTTP chunks; the usage in its choice-less chunk.
    fake.reply = "Déployez d’abord — puis vérifiez ✓ 日本語 [1]."
    generator = make_openai(fake)
    stream = generator.astream(ask("q FAULT_RAGGED"))
    tokens = [t async for t in stream]
    assert "".join(tokens) == fake.reply
    assert stream.finish_reason == "stop" and stream.usage.completion_tokens == len(split_tokens(fake.reply))
    await generator.aclose()

"""The `/ws/chat/` consumer, in-process with WebsocketCommunicator, through the real ASGI stack."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.sessions.backends.db import SessionStore
from django.core.cache import cache
from django.test import override_settings

from console import chat
from console.asgi import application
from console.chat import consumer
from console.engine import set_engine
from console.models import Conversation, Feedback, Message
from ragcore import Engine
from tests.fakes.groq import FakeGroqServer, split_tokens
from tests.support import DEPLOY, make_engine

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = (b"origin", b"http://127.0.0.1")
HOST = (b"host", b"127.0.0.1")  # the socket's own origin is its scheme, Host and port


@pytest.fixture(scope="module")
def fake_groq() -> Iterator[FakeGroqServer]:
    with FakeGroqServer() as fake:
        yield fake


def _engine(tmp_path: Path, **groq: Any) -> Engine:
    """The process's engine for the test: a small one holding the DEPLOY document."""
    engine = make_engine(tmp_path / "data", **groq)
    doc = tmp_path / "deploy.md"
    doc.write_text(DEPLOY)
    engine.ingest_file(doc)
    set_engine(engine)
    return engine


@pytest.fixture(autouse=True)
def clean_up() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()
    set_engine(None)


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    """The offline (extractive) engine: instant answers."""
    return _engine(tmp_path)


@pytest.fixture
def groq_engine(tmp_path: Path, fake_groq: FakeGroqServer) -> Iterator[Engine]:
    """An engine answering through the real groq SDK and the fake Groq, 20 ms per token."""
    fake_groq.reset()
    fake_groq.token_delay = 0.02
    yield _engine(tmp_path, groq_api_key="gsk-test", groq_base_url=fake_groq.base_url,
                  groq_timeout=2.0, groq_max_retries=0)
    fake_groq.reset()


def _session_cookie(username: str, *, staff: bool = False) -> tuple[Any, bytes]:
    user = get_user_model().objects.create_user(username, password="pw", is_staff=staff)
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return user, f"sessionid={session.session_key}".encode()


@pytest.fixture
async def alice() -> bytes:
    return (await sync_to_async(_session_cookie)("alice"))[1]


@pytest.fixture
async def mallory() -> bytes:
    return (await sync_to_async(_session_cookie)("mallory"))[1]


async def open_socket(cookie: bytes | None, origin: tuple[bytes, bytes] = ORIGIN) -> WebsocketCommunicator:
    headers = [HOST, origin] + ([(b"cookie", cookie)] if cookie else [])
    comm = WebsocketCommunicator(application, "/ws/chat/", headers=headers)
    connected, _ = await comm.connect(timeout=5)
    assert connected
    return comm


async def frames_until(comm: WebsocketCommunicator, *types: str, timeout: float = 10) -> list[dict[str, Any]]:
    """Every frame up to and including the first of `types`."""
    frames = []
    while True:
        frame = await comm.receive_json_from(timeout=timeout)
        frames.append(frame)
        if frame["type"] in types:
            return frames


async def ask(comm: WebsocketCommunicator, text: str, **extra: object) -> list[dict[str, Any]]:
    await comm.send_json_to({"type": "ask", "text": text, **extra})
    return await frames_until(comm, "done", "error", "cancelled")


async def answer(comm: WebsocketCommunicator, text: str, **extra: object) -> list[dict[str, Any]]:
    """Frames of one whole answer, through `done`."""
    await comm.send_json_to({"type": "ask", "text": text, **extra})
    return await frames_until(comm, "done")


# -- asking -------------------------------------------------------------------------------


async def test_it_streams_an_answer_and_stores_the_exchange(engine: Engine, alice: bytes) -> None:
    comm = await open_socket(alice)
    frames = await answer(comm, "How do I roll back a release?")
    types = [f["type"] for f in frames]
    assert types[0] == "start" and types[-2:] == ["citations", "done"]
    assert "token" in types  # an extractive answer is ready at once: its tokens share a frame or two
    start, citations, done = frames[0], frames[-2], frames[-1]
    assert set(start) == {"type", "conversation_id", "message_id", "question_id"}
    assert citations["items"][0]["title"] == "Deployment" and citations["items"][0]["n"] == 1
    assert done["message_id"] == start["message_id"] and done["latency_ms"] > 0 and "usage" in done
    stored = await sync_to_async(Message.objects.get)(pk=done["message_id"])
    assert stored.text == "".join(f["text"] for f in frames if f["type"] == "token")
    assert stored.citations and stored.error == ""
    conversation = await sync_to_async(Conversation.objects.get)(pk=start["conversation_id"])
    assert conversation.surface == "web" and conversation.user_key.startswith("user:")
    assert conversation.title == "How do I roll back a release?"
    await comm.disconnect()


async def test_frames_are_handled_without_a_hop_to_the_db_thread_each(
    engine: Engine, alice: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """channels hands every received frame to the DB thread first to close old connections; this consumer
    does not (its ORM calls run in threads that close their own), so an ask costs one thread hand-off fewer."""
    import channels.consumer

    hops: list[int] = []

    async def counted() -> None:
        hops.append(1)

    monkeypatch.setattr(channels.consumer, "aclose_old_connections", counted)
    comm = await open_socket(alice)
    frames = await answer(comm, "How do I roll back a release?")
    assert frames[-1]["type"] == "done" and hops == []
    await comm.disconnect()


async def test_tokens_share_frames_but_the_first_goes_at_once(
    groq_engine: Engine, alice: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(consumer, "TOKEN_FRAME_SECONDS", 0.1)  # about 5 of the fake's 20 ms tokens
    comm = await open_socket(alice)
    frames = await answer(comm, "How do I roll back a release?")
    texts = [f["text"] for f in frames if f["type"] == "token"]
    stored = await sync_to_async(Message.objects.get)(pk=frames[-1]["message_id"])
    model_tokens = split_tokens(stored.text)
    assert texts[0] == model_tokens[0] == "According"  # not held back to wait for company
    assert "".join(texts) == stored.text
    assert 3 <= len(texts) <= len(model_tokens) / 2, "several frames, each with several tokens"
    await comm.disconnect()


async def test_a_follow_up_continues_the_same_conversation(engine: Engine, alice: bytes) -> None:
    comm = await open_socket(alice)
    first = await answer(comm, "How do I roll back a release?")
    conversation_id = first[0]["conversation_id"]
    second = await answer(comm, "and when do releases go out?", conversation_id=conversation_id)
    assert second[0]["conversation_id"] == conversation_id
    last = await sync_to_async(Message.objects.get)(pk=second[-1]["message_id"])
    assert last.retrieval_mode == "context"
    await comm.disconnect()


async def test_a_new_ask_without_a_conversation_id_starts_a_new_conversation(engine: Engine, alice: bytes) -> None:
    comm = await open_socket(alice)
    one = await answer(comm, "How do I roll back a release?")
    two = await answer(comm, "When do releases go out?")
    assert one[0]["conversation_id"] != two[0]["conversation_id"]
    await comm.send_json_to({"type": "conversations"})
    listing = await comm.receive_json_from(timeout=5)
    assert listing["type"] == "conversations"
    assert [c["id"] for c in listing["items"]] == [two[0]["conversation_id"], one[0]["conversation_id"]]
    await comm.disconnect()


# -- history and reconnects -----------------------------------------------------------------


async def test_a_reconnect_gets_the_conversation_back_as_it_was(engine: Engine, alice: bytes) -> None:
    comm = await open_socket(alice)
    frames = await answer(comm, "How do I roll back a release?")
    await comm.send_json_to({"type": "feedback", "message_id": frames[-1]["message_id"], "value": 1})
    assert (await comm.receive_json_from(timeout=5))["type"] == "feedback"
    await comm.disconnect()

    again = await open_socket(alice)
    await again.send_json_to({"type": "history", "conversation_id": frames[0]["conversation_id"]})
    history = await again.receive_json_from(timeout=5)
    assert history["type"] == "history" and history["conversation_id"] == frames[0]["conversation_id"]
    question, reply = history["messages"]
    assert question["role"] == "user" and question["text"] == "How do I roll back a release?"
    assert reply["role"] == "assistant" and reply["id"] == frames[-1]["message_id"]
    assert reply["text"] == "".join(f["text"] for f in frames if f["type"] == "token")
    assert reply["citations"] == frames[-2]["items"]
    assert reply["feedback"] == 1 and reply["pending"] is False and reply["extractive"] is True
    await again.disconnect()


async def test_an_answer_whose_socket_dropped_is_finished_and_shown_on_reconnect(
    groq_engine: Engine, alice: bytes
) -> None:
    comm = await open_socket(alice)
    await comm.send_json_to({"type": "ask", "text": "How do I roll back a release?"})
    start, first_token = await frames_until(comm, "token")
    await comm.disconnect()
    await consumer.wait_for_detached_answers()

    again = await open_socket(alice)
    await again.send_json_to({"type": "history", "conversation_id": start["conversation_id"]})
    reply = (await again.receive_json_from(timeout=5))["messages"][-1]
    assert reply["pending"] is False and reply["error"] == ""
    assert reply["text"].startswith("According to the documents") and reply["citations"]
    await again.disconnect()


async def test_another_users_conversation_is_refused(engine: Engine, alice: bytes, mallory: bytes) -> None:
    comm = await open_socket(alice)
    frames = await answer(comm, "How do I roll back a release?")
    await comm.disconnect()

    thief = await open_socket(mallory)
    conversation_id, message_id = frames[0]["conversation_id"], frames[-1]["message_id"]
    await thief.send_json_to({"type": "history", "conversation_id": conversation_id})
    assert await thief.receive_json_from(timeout=5) == {
        "type": "error", "code": "forbidden", "message": "That conversation is not yours."}
    refused = await ask(thief, "what else is in there?", conversation_id=conversation_id)
    assert [f["type"] for f in refused] == ["error"] and refused[0]["code"] == "forbidden"
    await thief.send_json_to({"type": "feedback", "message_id": message_id, "value": -1})
    assert (await thief.receive_json_from(timeout=5))["code"] == "forbidden"
    await thief.send_json_to({"type": "conversations"})
    assert (await thief.receive_json_from(timeout=5))["items"] == []
    assert await sync_to_async(Message.objects.filter(conversation_id=conversation_id).count)() == 2
    assert not await sync_to_async(Feedback.objects.exists)()
    await thief.disconnect()


async def test_an_unknown_conversation_is_not_found(engine: Engine, alice: bytes) -> None:
    comm = await open_socket(alice)
    await comm.send_json_to({"type": "history", "conversation_id": 999999})
    assert (await comm.receive_json_from(timeout=5))["code"] == "not_found"
    refused = await ask(comm, "hello?", conversation_id=999999)
    assert refused[0]["code"] == "not_found"
    await comm.disconnect()


# -- cancel, busy, feedback ----------------------------------------------------------------


async def test_cancel_stops_the_answer_and_keeps_what_was_said(groq_engine: Engine, alice: bytes) -> None:
    comm = await open_socket(alice)
    await comm.send_json_to({"type": "ask", "text": "How do I roll back a release?"})
    frames = await frames_until(comm, "token")
    await comm.send_json_to({"type": "cancel"})
    frames += await frames_until(comm, "cancelled")
    assert frames[-1] == {"type": "cancelled", "message_id": frames[0]["message_id"]}
    assert "done" not in [f["type"] for f in frames]
    stored = await sync_to_async(Message.objects.get)(pk=frames[0]["message_id"])
    assert stored.error == "cancelled"
    assert stored.text and stored.text == "".join(f["text"] for f in frames if f["type"] == "token")
    # The socket is still good for the next question.
    assert (await answer(comm, "When do releases go out?"))[-1]["type"] == "done"
    await comm.disconnect()


async def test_cancel_with_nothing_in_flight_is_harmless(engine: Engine, alice: bytes) -> None:
    comm = await open_socket(alice)
    await comm.send_json_to({"type": "cancel"})
    assert await comm.receive_json_from(timeout=5) == {"type": "cancelled", "message_id": None}
    await comm.disconnect()


async def test_a_second_ask_while_answering_is_refused_as_busy(groq_engine: Engine, alice: bytes) -> None:
    comm = await open_socket(alice)
    await comm.send_json_to({"type": "ask", "text": "How do I roll back a release?"})
    await comm.send_json_to({"type": "ask", "text": "When do releases go out?"})
    frames = await frames_until(comm, "done")
    busy = [f for f in frames if f["type"] == "error"]
    assert busy == [{"type": "error", "code": "busy",
                     "message": "Still answering the last question; wait or send cancel."}]
    assert await sync_to_async(Message.objects.filter(role="user").count)() == 1
    await comm.disconnect()


async def test_feedback_is_recorded_and_can_be_changed(engine: Engine, alice: bytes) -> None:
    comm = await open_socket(alice)
    message_id = (await answer(comm, "How do I roll back a release?"))[-1]["message_id"]
    for value in (1, -1):
        await comm.send_json_to({"type": "feedback", "message_id": message_id, "value": value})
        assert await comm.receive_json_from(timeout=5) == {"type": "feedback", "message_id": message_id, "value": value}
    feedback = await sync_to_async(Feedback.objects.get)()
    assert feedback.value == -1 and feedback.surface == "web" and feedback.message_id == message_id
    await comm.disconnect()


# -- faults --------------------------------------------------------------------------------


async def test_an_llm_failure_mid_stream_ends_in_an_error_then_the_extractive_answer(
    groq_engine: Engine, alice: bytes
) -> None:
    comm = await open_socket(alice)
    frames = await answer(comm, "How do I roll back a release? FAULT_BROKEN")
    types = [f["type"] for f in frames]
    error_at = types.index("error")
    assert 0 < error_at < len(types) - 2 and "token" in types[:error_at], "some tokens, then the error"
    assert frames[error_at]["fatal"] is False and frames[error_at]["code"].startswith("llm_")
    assert frames[-1]["extractive"] is True and frames[-2]["items"]
    # The socket stays usable.
    again = await answer(comm, "When do releases go out?")
    assert again[-1]["provider"] == "groq"
    await comm.disconnect()


@override_settings(CHAT_RATE_LIMIT_USER="2/60")
async def test_a_flood_of_asks_is_rate_limited(engine: Engine, alice: bytes) -> None:
    comm = await open_socket(alice)
    await answer(comm, "one?")
    await answer(comm, "two?")
    refused = await ask(comm, "three?")
    assert [f["type"] for f in refused] == ["error"] and refused[0]["code"] == "rate_limited"
    assert "Slow down" in refused[0]["message"]
    await comm.disconnect()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json at all", "bad_json"),
        ('["ask", "a list"]', "bad_request"),
        ('{"type": "shout", "text": "hi"}', "unknown_type"),
        ('{"text": "no type"}', "unknown_type"),
        ('{"type": "ask"}', "bad_request"),
        ('{"type": "ask", "text": 42}', "bad_request"),
        ('{"type": "ask", "text": "hi", "conversation_id": "12"}', "bad_request"),
        ('{"type": "ask", "text": "hi", "conversation_id": true}', "bad_request"),
        ('{"type": "ask", "text": "   "}', "empty_question"),
        ('{"type": "ask", "text": "' + "x" * 4001 + '"}', "too_long"),
        ('{"type": "ask", "text": "' + "x" * 30000 + '"}', "too_large"),
        ('{"type": "feedback", "value": 1}', "bad_request"),
        ('{"type": "feedback", "message_id": 1, "value": 5}', "bad_request"),
        ('{"type": "history"}', "bad_request"),
    ],
)
async def test_bad_frames_get_an_error_frame_and_the_socket_stays_open(
    engine: Engine, alice: bytes, frame: str, code: str
) -> None:
    comm = await open_socket(alice)
    await comm.send_to(text_data=frame)
    reply = await comm.receive_json_from(timeout=5)
    assert reply["type"] == "error" and reply["code"] == code and "Traceback" not in reply["message"]
    assert (await answer(comm, "How do I roll back a release?"))[-1]["type"] == "done"
    await comm.disconnect()


async def test_a_binary_frame_gets_an_error_frame(engine: Engine, alice: bytes) -> None:
    comm = await open_socket(alice)
    await comm.send_to(bytes_data=b"\x00\x01binary")
    assert (await comm.receive_json_from(timeout=5))["code"] == "binary_frame"
    await comm.send_json_to({"type": "conversations"})
    assert (await comm.receive_json_from(timeout=5))["type"] == "conversations"
    await comm.disconnect()


async def test_an_unexpected_failure_is_reported_without_a_traceback(
    engine: Engine, alice: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: object, **kwargs: object) -> list[Any]:
        raise RuntimeError("database on fire")

    monkeypatch.setattr(chat, "arecent_conversations", broken)
    comm = await open_socket(alice)
    await comm.send_json_to({"type": "conversations"})
    reply = await comm.receive_json_from(timeout=5)
    assert reply == {"type": "error", "code": "internal", "message": "Something went wrong on our side; try again."}
    await comm.disconnect()


# -- who may connect -------------------------------------------------------------------------


async def test_an_anonymous_socket_is_closed_with_4401(engine: Engine) -> None:
    comm = await open_socket(None)
    assert (await comm.receive_json_from(timeout=5))["code"] == "unauthenticated"
    assert await comm.receive_output(timeout=5) == {"type": "websocket.close", "code": 4401}
    await comm.disconnect()


@override_settings(CHAT_ALLOW_ANONYMOUS=True)
async def test_anonymous_chat_works_with_a_session_when_allowed(engine: Engine) -> None:
    def anonymous_session() -> bytes:
        session = SessionStore()
        session.create()
        return f"sessionid={session.session_key}".encode()

    comm = await open_socket(await sync_to_async(anonymous_session)())
    frames = await answer(comm, "How do I roll back a release?")
    conversation = await sync_to_async(Conversation.objects.get)(pk=frames[0]["conversation_id"])
    assert conversation.user_key.startswith("anon:") and conversation.user_id is None
    await comm.disconnect()


async def test_a_cross_origin_socket_is_rejected(engine: Engine, alice: bytes) -> None:
    comm = WebsocketCommunicator(application, "/ws/chat/", headers=[HOST, (b"origin", b"http://evil.example"), (b"cookie", alice)])
    connected, _ = await comm.connect(timeout=5)
    assert not connected
    await comm.disconnect()


async def test_connections_frames_and_errors_are_counted(engine: Engine, alice: bytes) -> None:
    from prometheus_client import REGISTRY

    def sample(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    before = (sample("rag_websocket_connections_total", outcome="accepted"),
              sample("rag_websocket_frames_total", direction="in"), sample("rag_websocket_errors_total", code="bad_json"),
              sample("rag_pipeline_errors_total", component="websocket"))
    comm = await open_socket(alice)
    await comm.send_to(text_data="{nope")
    await comm.receive_json_from(timeout=5)
    await comm.disconnect()
    await asyncio.sleep(0)
    after = (sample("rag_websocket_connections_total", outcome="accepted"),
             sample("rag_websocket_frames_total", direction="in"), sample("rag_websocket_errors_total", code="bad_json"),
             sample("rag_pipeline_errors_total", component="websocket"))
    assert [b - a for a, b in zip(before, after, strict=True)] == [1, 1, 1, 1]


# -- the page ----------------------------------------------------------------------------------


def test_the_page_sends_strangers_to_the_login_page(client: Any) -> None:
    response = client.get("/chat/")
    assert response.status_code == 302 and response["Location"] == "/accounts/login/?next=/chat/"


def test_the_page_renders_for_a_logged_in_user(client: Any) -> None:
    user, _ = _session_cookie("bob", staff=True)
    client.force_login(user)
    response = client.get("/chat/")
    body = response.content.decode()
    assert response.status_code == 200
    assert 'id="question"' in body and "chat/chat.js" in body and '"socket_path": "/ws/chat/"' in body

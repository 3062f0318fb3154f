"""The chat socket under attack: oversized, deeply nested and flooding frames; NUL and lone surrogates in questions."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from asgiref.sync import sync_to_async
from django.test import override_settings

from console.models import Message
from ragcore import Engine
from tests.console.test_ws_chat import alice, answer, ask, clean_up, engine, open_socket  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)


async def test_a_12000_deep_frame_gets_too_deep_and_the_socket_stays_open(engine: Engine, alice: bytes) -> None:
    """The attack closed the socket with 1011 (the parser's RecursionError escaped)."""
    comm = await open_socket(alice)
    await comm.send_to(text_data="[" * 12000 + "]" * 12000)
    reply = await comm.receive_json_from(timeout=5)
    assert reply["type"] == "error" and reply["code"] == "too_deep"
    await comm.send_to(text_data=json.dumps({"type": "ask", "text": "hi", "x": [[[[["deep"]]]]]}))
    assert (await comm.receive_json_from(timeout=5))["code"] == "too_deep"
    assert (await answer(comm, "How do I roll back a release?"))[-1]["type"] == "done"
    await comm.disconnect()


async def test_a_frame_over_the_size_limit_gets_too_large(engine: Engine, alice: bytes) -> None:
    comm = await open_socket(alice)
    await comm.send_to(text_data=json.dumps({"type": "history", "conversation_id": 1, "pad": "x" * 40000}))
    assert (await comm.receive_json_from(timeout=5))["code"] == "too_large"
    await comm.disconnect()


@override_settings(CHAT_FRAME_RATE="5/60")
async def test_a_flood_of_frames_is_dropped_unread_then_the_socket_is_closed_with_4429(
    engine: Engine, alice: bytes
) -> None:
    comm = await open_socket(alice)
    for _ in range(5):
        await comm.send_json_to({"type": "conversations"})
        assert (await comm.receive_json_from(timeout=5))["type"] == "conversations"
    await comm.send_json_to({"type": "conversations"})
    reply = await comm.receive_json_from(timeout=5)
    assert reply["code"] == "too_many_frames" and "5 frames per 60 s" in reply["message"]
    for _ in range(4):  # dropped without a word: nothing is parsed, nothing answered
        await comm.send_json_to({"type": "conversations"})
    assert await comm.receive_nothing(timeout=0.2)
    await comm.send_json_to({"type": "conversations"})
    assert await comm.receive_output(timeout=5) == {"type": "websocket.close", "code": 4429}
    await comm.disconnect()


@override_settings(CHAT_FRAME_RATE="5/1")
async def test_a_client_that_slows_down_is_served_again(engine: Engine, alice: bytes) -> None:
    comm = await open_socket(alice)
    for _ in range(6):
        await comm.send_json_to({"type": "conversations"})
    replies = [await comm.receive_json_from(timeout=5) for _ in range(6)]
    assert replies[-1]["code"] == "too_many_frames"
    deadline = time.monotonic() + 5
    while True:  # the budget refills at 5 frames a second
        await comm.send_json_to({"type": "conversations"})
        reply = await comm.receive_json_from(timeout=5) if not await comm.receive_nothing(timeout=0.25) else None
        if reply is not None and reply["type"] == "conversations":
            break
        assert time.monotonic() < deadline, "the socket never let a frame through again"
    await comm.disconnect()


@pytest.mark.parametrize(("question", "stored"), [
    pytest.param("How do I roll\x00 back a release?", "How do I roll back a release?", id="nul"),
    pytest.param("How do I roll back a release? \ud800", "How do I roll back a release? \ufffd", id="lone-surrogate"),
])
async def test_a_question_with_nul_or_a_lone_surrogate_is_cleaned_and_answered(
    engine: Engine, alice: bytes, question: str, stored: str
) -> None:
    """On PostgreSQL the NUL was a DataError and the surrogate an `internal` error."""
    comm = await open_socket(alice)
    # json.dumps writes both as \\u escapes, exactly as a browser or a script would send them.
    frames = await answer(comm, question)
    assert frames[-1]["type"] == "done" and frames[-2]["type"] == "citations" and frames[-2]["items"]
    message = await sync_to_async(Message.objects.get)(pk=frames[0]["question_id"])
    assert message.text == stored
    await comm.send_json_to({"type": "history", "conversation_id": frames[0]["conversation_id"]})
    history = await comm.receive_json_from(timeout=5)
    assert history["messages"][0]["text"] == stored and history["title"] == stored
    await comm.disconnect()


async def test_a_question_of_nothing_but_nul_is_empty(engine: Engine, alice: bytes) -> None:
    comm = await open_socket(alice)
    refused = await ask(comm, "\x00\x00 \x00")
    assert refused[0]["code"] == "empty_question"
    await comm.disconnect()
    await asyncio.sleep(0)

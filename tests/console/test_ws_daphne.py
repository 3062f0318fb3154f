"""End to end: real daphne processes, a real `websockets` client, the fake Groq over HTTP.

The two-daphne test shares one SQLite file and the Redis channel layer between two processes and
needs REDIS_URL (CI sets it); without it, it is skipped.
"""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.daphne_server import Daphne, Site, make_site, start_daphne
from tests.fakes.groq import FakeGroqServer

pytestmark = pytest.mark.slow

REDIS_URL = os.getenv("REDIS_URL", "")


@pytest.fixture(scope="module")
def fake_groq() -> Iterator[FakeGroqServer]:
    with FakeGroqServer(token_delay=0.005) as fake:
        yield fake


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, fake_groq: FakeGroqServer) -> Site:
    return make_site(
        tmp_path_factory.mktemp("e2e") / "data", users=("ann", "bea"),
        GROQ_API_KEY="gsk-test", GROQ_BASE_URL=fake_groq.base_url, GROQ_MAX_RETRIES="0",
    )


@pytest.fixture(scope="module")
def server(site: Site) -> Iterator[Daphne]:
    daphne = start_daphne(site)
    yield daphne
    daphne.stop()


async def open_socket(server: Daphne, cookie: str | None, origin: str | None = None) -> ClientConnection:
    headers = {"Cookie": cookie} if cookie else {}
    return await connect(server.ws_url, origin=origin or server.http_url, additional_headers=headers,  # type: ignore[arg-type]
                         open_timeout=10)


async def answer(ws: ClientConnection, text: str, **extra: object) -> list[dict[str, Any]]:
    await ws.send(json.dumps({"type": "ask", "text": text, **extra}))
    frames = []
    while True:
        frame = json.loads(await ws.recv())
        frames.append(frame)
        if frame["type"] in ("done", "cancelled") or (frame["type"] == "error" and frame.get("fatal", True)):
            return frames


async def request(ws: ClientConnection, frame: dict[str, Any]) -> dict[str, Any]:
    await ws.send(json.dumps(frame))
    return json.loads(await ws.recv())


async def test_a_real_client_gets_a_streamed_answer_from_daphne(server: Daphne, site: Site) -> None:
    async with await open_socket(server, site.cookie("ann")) as ws:
        frames = await answer(ws, "How do I roll back a release?")
        types = [f["type"] for f in frames]
        assert types[0] == "start" and types[-2:] == ["citations", "done"] and types.count("token") > 3
        assert frames[-1]["provider"] == "groq"
        text = "".join(f["text"] for f in frames if f["type"] == "token")
        assert text.startswith("According to the documents")
        titles = {c["title"] for c in frames[-2]["items"]}
        assert "Deployment" in titles
        feedback = await request(ws, {"type": "feedback", "message_id": frames[-1]["message_id"], "value": 1})
        assert feedback["type"] == "feedback"
        # Bad input over the real wire: an error frame, and the socket carries on.
        assert (await request(ws, {"type": "nonsense"}))["code"] == "unknown_type"
        await ws.send(b"\x00binary")
        assert json.loads(await ws.recv())["code"] == "binary_frame"

    async with await open_socket(server, site.cookie("ann")) as ws:
        history = await request(ws, {"type": "history", "conversation_id": frames[0]["conversation_id"]})
        assert [m["role"] for m in history["messages"]] == ["user", "assistant"]
        assert history["messages"][1]["text"] == text and history["messages"][1]["feedback"] == 1


async def test_another_user_cannot_read_the_conversation_over_daphne(server: Daphne, site: Site) -> None:
    async with await open_socket(server, site.cookie("ann")) as ws:
        frames = await answer(ws, "When do releases go out?")
    async with await open_socket(server, site.cookie("bea")) as ws:
        refused = await request(ws, {"type": "history", "conversation_id": frames[0]["conversation_id"]})
        assert refused["type"] == "error" and refused["code"] == "forbidden"


async def test_a_socket_without_a_session_is_closed_with_4401(server: Daphne) -> None:
    async with await open_socket(server, None) as ws:
        assert json.loads(await ws.recv())["code"] == "unauthenticated"
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


async def test_frames_over_the_limits_get_their_documented_codes_from_daphne(server: Daphne, site: Site) -> None:
    """Up to daphne's 1 MiB a frame gets `too_large`; past it daphne drops the connection (the client sees 1006)."""
    async with await open_socket(server, site.cookie("ann")) as ws:
        assert (await request(ws, {"type": "ask", "text": "x" * 500_000}))["code"] == "too_large"
        assert (await request(ws, {"type": "history", "nested": [[[[[1]]]]]}))["code"] == "too_deep"
        # daphne may drop the connection while the frame is still being sent: the send or the next receive fails.
        with pytest.raises(ConnectionClosed) as closed:
            await ws.send(json.dumps({"type": "ask", "text": "x" * (1024 * 1024 + 1)}))
            await ws.recv()
    assert closed.value.rcvd is None, "daphne (autobahn) drops the TCP connection without a close frame"
    async with await open_socket(server, site.cookie("ann")) as ws:  # and goes on serving everyone else
        assert (await request(ws, {"type": "conversations"}))["type"] == "conversations"


async def test_a_cross_origin_socket_is_refused_at_the_handshake(server: Daphne, site: Site) -> None:
    with pytest.raises(InvalidStatus) as refused:
        await open_socket(server, site.cookie("ann"), origin="http://evil.example")
    assert refused.value.response.status_code == 403


def test_daphne_serves_the_chat_assets(server: Daphne) -> None:
    for asset in ("chat/chat.js", "chat/markdown.js", "chat/chat.css"):
        with urllib.request.urlopen(f"{server.http_url}/static/{asset}", timeout=5) as response:
            assert response.status == 200


@pytest.mark.skipif(not REDIS_URL, reason="REDIS_URL is not set: the two-daphne scale-out test needs Redis (CI sets it)")
async def test_two_daphne_processes_serve_the_same_conversation(tmp_path: Path, fake_groq: FakeGroqServer) -> None:
    site = make_site(tmp_path / "data", REDIS_URL=REDIS_URL, GROQ_API_KEY="gsk-test",
                     GROQ_BASE_URL=fake_groq.base_url, GROQ_MAX_RETRIES="0")
    first, second = start_daphne(site, name="first"), start_daphne(site, name="second")
    try:
        async with await open_socket(first, site.cookie("ann")) as ws:
            asked = await answer(ws, "How do I roll back a release?")
        conversation_id = asked[0]["conversation_id"]
        async with await open_socket(second, site.cookie("ann")) as ws:
            listing = await request(ws, {"type": "conversations"})
            assert [c["id"] for c in listing["items"]] == [conversation_id]
            history = await request(ws, {"type": "history", "conversation_id": conversation_id})
            assert history["messages"][1]["id"] == asked[-1]["message_id"]
            assert history["messages"][1]["text"] == "".join(f["text"] for f in asked if f["type"] == "token")
            follow_up = await answer(ws, "and who is notified?", conversation_id=conversation_id)
            assert follow_up[0]["conversation_id"] == conversation_id and follow_up[-1]["type"] == "done"
        async with await open_socket(first, site.cookie("ann")) as ws:
            history = await request(ws, {"type": "history", "conversation_id": conversation_id})
            assert len(history["messages"]) == 4
    finally:
        first.stop()
        second.stop()
    log = (first.log.read_text() + second.log.read_text())
    assert "Traceback" not in log


def test_the_chat_page_is_mounted_for_logged_in_users(server: Daphne, site: Site) -> None:
    req = urllib.request.Request(f"{server.http_url}/chat/", headers={"Cookie": site.cookie("ann")})
    with urllib.request.urlopen(req, timeout=5) as response:  # a 404 raises: the test fails
        body = response.read().decode()
    assert 'id="question"' in body

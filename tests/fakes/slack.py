"""A fake Slack: the Web API methods Lorebot calls and a Socket Mode WebSocket, on 127.0.0.1.

An aiohttp server on its own event loop in a daemon thread. It records every call and keeps the
messages the bot posted, as a user would see them after every edit. The request decides what goes
wrong, as in bolt-python's fake Slack:

    channel "C_NOT_FOUND"    every method naming it answers channel_not_found
    channel "C_NOT_IN"       every method naming it answers not_in_channel
    channel "C_RATELIMITED"  the first call of each method naming it gets HTTP 429 `ratelimited`
                             with Retry-After (seconds, `retry_after`); the retry succeeds
    token "xoxb-invalid"     invalid_auth

Socket Mode: apps.connections.open (with an xapp- token) returns ws://127.0.0.1:PORT/link/?ticket=…,
where the fake says hello, then `send_envelope()` delivers an event and the client's ack is recorded.
`drop_sockets()` closes every socket without warning, as a restarting server or a proxy would.

    with FakeSlackServer() as fake:
        client = AsyncWebClient(token="xoxb-test", base_url=fake.api_url)
        ...
        calls = await fake.wait_for("chat.update", lambda c: c.args["ts"] == ts)
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import WSMsgType, web
from slack_sdk.signature import SignatureVerifier

from tests.fakes.aiohttp_server import ThreadedAiohttpServer

TEAM_ID = "T0LOREBOT"
BOT_USER_ID = "U0LOREBOT"
BOT_ID = "B0LOREBOT"
APP_ID = "A0LOREBOT"
INVALID_TOKEN = "xoxb-invalid"

AUTH_TEST: dict[str, Any] = {
    "ok": True, "url": "https://lorebot-test.slack.com/", "team": "Lorebot Test", "user": "lorebot",
    "team_id": TEAM_ID, "user_id": BOT_USER_ID, "bot_id": BOT_ID, "is_enterprise_install": False,
}
HELLO: dict[str, Any] = {
    "type": "hello", "num_connections": 1,
    "debug_info": {"host": "applink-fake", "build_number": 1, "approximate_connection_time": 18060},
    "connection_info": {"app_id": APP_ID},
}
CHANNEL_FAULTS = {"C_NOT_FOUND": "channel_not_found", "C_NOT_IN": "not_in_channel"}
RATELIMITED_CHANNEL = "C_RATELIMITED"


# -- requests into Lorebot, as Slack sends them ---------------------------------------------
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"  # Slack's documentation example secret
_ts = iter(range(1, 10**6))


def new_ts() -> str:
    """A message timestamp for an event; never one the fake hands out for the bot's own messages."""
    return f"{int(time.time()) - 10**6}.{next(_ts):06d}"


def sign(body: str, *, secret: str = SIGNING_SECRET, timestamp: int | None = None) -> dict[str, str]:
    """The headers Slack sends, the signature computed by slack_sdk's SignatureVerifier."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    return {"X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": SignatureVerifier(secret).generate_signature(timestamp=ts, body=body) or ""}


def event_body(event: dict[str, Any], *, event_id: str | None = None) -> dict[str, Any]:
    """An Events API envelope (event_callback) around `event`."""
    return {
        "token": "legacy-verification-token", "team_id": TEAM_ID, "api_app_id": APP_ID, "event": event,
        "type": "event_callback", "event_id": event_id or f"Ev{uuid.uuid4().hex[:10].upper()}",
        "event_time": int(time.time()), "event_context": "4-fake",
        "authorizations": [{"team_id": TEAM_ID, "user_id": BOT_USER_ID, "is_bot": True}],
    }


def mention(text: str, *, channel: str = "C0GENERAL", user: str = "U0ALICE",
            thread_ts: str | None = None, **extra: Any) -> dict[str, Any]:
    ts = new_ts()
    event = {"type": "app_mention", "user": user, "text": f"<@{BOT_USER_ID}> {text}", "ts": ts, "channel": channel,
             "event_ts": ts, "team": TEAM_ID, **extra}
    if thread_ts:
        event["thread_ts"] = thread_ts
    return event


def bot_profile(bot_id: str = "B0OTHER", app_id: str = "A0OTHER", name: str = "otherbot") -> dict[str, Any]:
    """What Slack puts in an event written by a bot (besides `bot_id`)."""
    return {"id": bot_id, "app_id": app_id, "name": name, "deleted": False, "team_id": TEAM_ID,
            "updated": 1700000000, "icons": {"image_36": "https://a.slack-edge.com/bot.png"}}


def message(text: str, *, channel: str = "C0GENERAL", user: str = "U0ALICE", thread_ts: str | None = None,
            channel_type: str = "channel", **extra: Any) -> dict[str, Any]:
    ts = new_ts()
    event = {"type": "message", "user": user, "text": text, "ts": ts, "channel": channel, "event_ts": ts,
             "channel_type": channel_type, "team": TEAM_ID, **extra}
    if thread_ts:
        event["thread_ts"] = thread_ts
    return event


@dataclass(frozen=True)
class SlackCall:
    """One Web API call (or response_url post): its arguments, token and arrival time (perf_counter)."""

    method: str
    args: dict[str, Any]
    token: str
    at: float
    status: int = 200
    error: str = ""


@dataclass
class PostedMessage:
    """A message the bot posted, as it looks now."""

    channel: str
    ts: str
    thread_ts: str | None
    text: str
    blocks: list[dict[str, Any]]
    edits: int = 0

    @property
    def block_text(self) -> str:
        """Every piece of text in the blocks, joined: what the reader sees."""
        return "\n".join(_texts(self.blocks))


def _texts(blocks: list[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    for block in blocks:
        if isinstance(block.get("text"), dict):
            out.append(block["text"]["text"])
        for element in block.get("elements", []):
            if isinstance(element.get("text"), dict):
                out.append(element["text"]["text"])
            elif isinstance(element.get("text"), str):
                out.append(element["text"])
    return out


@dataclass
class _Socket:
    ws: web.WebSocketResponse
    opened: float = field(default_factory=time.perf_counter)


class FakeSlackServer(ThreadedAiohttpServer):
    """A fake Slack on 127.0.0.1 (port 0); `api_url` is what SLACK_API_URL points at.

    :param retry_after: the Retry-After (whole seconds, as Slack sends) of a `ratelimited` answer.
    :param latency: seconds every Web API call takes.
    """

    thread_name = "fake-slack"

    def __init__(self, *, retry_after: int = 1, latency: float = 0.0) -> None:
        super().__init__()
        self.retry_after = retry_after
        self.latency = latency
        self._lock = threading.Lock()
        self._calls: list[SlackCall] = []
        self._messages: dict[tuple[str, str], PostedMessage] = {}
        self._limited: set[tuple[str, str]] = set()
        self._ts = itertools.count(1)
        self._acks: dict[str, dict[str, Any]] = {}
        self._sockets: list[_Socket] = []
        self.socket_connections = 0  # how many Socket Mode connections were ever opened

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def api_url(self) -> str:
        """What SLACK_API_URL points at."""
        return f"{self.base_url}/api/"

    def response_url(self, name: str = "") -> str:
        """A response_url for a slash command or a button payload; posts to it are recorded."""
        return f"{self.base_url}/response/{name or uuid.uuid4().hex}"

    def reset(self) -> None:
        """Forget calls, messages, acks and spent rate limits."""
        with self._lock:
            self._calls.clear()
            self._messages.clear()
            self._limited.clear()
            self._acks.clear()

    # -- what happened -----------------------------------------------------------------------
    def calls(self, method: str | None = None) -> list[SlackCall]:
        with self._lock:
            return [c for c in self._calls if method is None or c.method == method]

    def message(self, channel: str, ts: str) -> PostedMessage:
        with self._lock:
            return self._messages[(channel, ts)]

    def thread(self, channel: str, thread_ts: str | None) -> list[PostedMessage]:
        """The bot's messages in a thread (None: those outside any thread), oldest first."""
        with self._lock:
            return [m for m in self._messages.values() if m.channel == channel and m.thread_ts == thread_ts]

    async def wait_for(self, method: str, where: Callable[[SlackCall], bool] = lambda c: True, *,
                       count: int = 1, timeout: float = 15.0) -> list[SlackCall]:
        """Polls (without blocking the caller's event loop) until `count` matching calls were made."""
        deadline = time.monotonic() + timeout
        while True:
            found = [c for c in self.calls(method) if where(c)]
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                seen = [(c.method, c.args.get("channel"), c.error) for c in self.calls()]
                raise AssertionError(f"{count} × {method} not seen within {timeout} s; calls: {seen}")
            await asyncio.sleep(0.02)

    def ack(self, envelope_id: str) -> dict[str, Any] | None:
        with self._lock:
            return self._acks.get(envelope_id)

    async def wait_for_ack(self, envelope_id: str, timeout: float = 15.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while (ack := self.ack(envelope_id)) is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"envelope {envelope_id} was not acknowledged within {timeout} s")
            await asyncio.sleep(0.02)
        return ack

    # -- Socket Mode -------------------------------------------------------------------------
    def open_sockets(self) -> int:
        return sum(not s.ws.closed for s in self._sockets)

    def send_envelope(self, kind: str, payload: dict[str, Any], *, retry_attempt: int = 0) -> str:
        """Sends one envelope (events_api, slash_commands, interactive) on the newest open socket."""
        envelope_id = str(uuid.uuid4())
        envelope = {"envelope_id": envelope_id, "type": kind, "payload": payload,
                    "accepts_response_payload": kind != "events_api", "retry_attempt": retry_attempt,
                    "retry_reason": "timeout" if retry_attempt else ""}
        self._run(self._send(envelope))
        return envelope_id

    def drop_sockets(self) -> None:
        """Closes every Socket Mode connection without warning, as a restarting server or a proxy would."""
        self._run(self._drop())

    # -- the server --------------------------------------------------------------------------
    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/api/{method}", self._api)
        app.router.add_post("/response/{name}", self._response_url)
        app.router.add_get("/link/", self._link)
        return app

    async def close_connections(self) -> None:
        for sock in list(self._sockets):
            await sock.ws.close()

    async def _args(self, request: web.Request) -> dict[str, Any]:
        args: dict[str, Any] = dict(request.query)
        raw = await request.read()
        if request.content_type == "application/json" and raw:
            body = json.loads(raw)
            args.update(body if isinstance(body, dict) else {})
        elif raw:
            args.update(parse_qsl(raw.decode(), keep_blank_values=True))
        for name in ("blocks", "attachments"):  # form-encoded calls send these as JSON strings
            if isinstance(args.get(name), str):
                args[name] = json.loads(args[name])
        return args

    def _record(self, call: SlackCall) -> None:
        with self._lock:
            self._calls.append(call)

    async def _api(self, request: web.Request) -> web.Response:
        at = time.perf_counter()
        method = request.match_info["method"]
        args = await self._args(request)
        token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip() or str(args.get("token", ""))
        if self.latency:
            await asyncio.sleep(self.latency)
        status, payload = self._answer(method, args, token)
        self._record(SlackCall(method, args, token, at, status, "" if payload.get("ok") else payload.get("error", "")))
        headers = {"Retry-After": str(self.retry_after)} if status == 429 else {}
        return web.json_response(payload, status=status, headers=headers)

    def _answer(self, method: str, args: dict[str, Any], token: str) -> tuple[int, dict[str, Any]]:
        if method == "apps.connections.open":
            if not token.startswith("xapp-"):
                return 200, {"ok": False, "error": "not_allowed_token_type"}
            return 200, {"ok": True, "url": f"ws://127.0.0.1:{self._port}/link/?ticket={uuid.uuid4()}"}
        if not token or token == INVALID_TOKEN:
            return 200, {"ok": False, "error": "invalid_auth"}
        channel = str(args.get("channel", ""))
        if channel in CHANNEL_FAULTS:
            return 200, {"ok": False, "error": CHANNEL_FAULTS[channel]}
        if channel == RATELIMITED_CHANNEL:
            with self._lock:
                first = (method, channel) not in self._limited
                self._limited.add((method, channel))
            if first:
                return 429, {"ok": False, "error": "ratelimited"}
        handler = {
            "auth.test": lambda: dict(AUTH_TEST),
            "chat.postMessage": lambda: self._post_message(args),
            "chat.update": lambda: self._update(args),
            "chat.postEphemeral": lambda: {"ok": True, "message_ts": self._next_ts()},
            "reactions.add": lambda: {"ok": True},
        }.get(method)
        if handler is None:
            return 200, {"ok": False, "error": "unknown_method"}
        return 200, handler()

    def _next_ts(self) -> str:
        return f"{int(time.time())}.{next(self._ts):06d}"

    def _post_message(self, args: dict[str, Any]) -> dict[str, Any]:
        ts = self._next_ts()
        message = PostedMessage(str(args["channel"]), ts, args.get("thread_ts") or None, str(args.get("text", "")),
                                list(args.get("blocks") or []))
        with self._lock:
            self._messages[(message.channel, ts)] = message
        return {"ok": True, "channel": message.channel, "ts": ts,
                "message": {"type": "message", "text": message.text, "user": BOT_USER_ID, "bot_id": BOT_ID, "ts": ts}}

    def _update(self, args: dict[str, Any]) -> dict[str, Any]:
        key = (str(args.get("channel")), str(args.get("ts")))
        with self._lock:
            message = self._messages.get(key)
            if message is None:
                return {"ok": False, "error": "message_not_found"}
            message.text = str(args.get("text", ""))
            message.blocks = list(args.get("blocks") or [])
            message.edits += 1
        return {"ok": True, "channel": key[0], "ts": key[1], "text": message.text}

    async def _response_url(self, request: web.Request) -> web.Response:
        at = time.perf_counter()
        args = await self._args(request)
        args["name"] = request.match_info["name"]
        self._record(SlackCall("response_url", args, "", at))
        return web.Response(text="ok")

    async def _link(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._sockets.append(_Socket(ws))
        self.socket_connections += 1
        await ws.send_json(HELLO)
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                data = json.loads(message.data)
                if isinstance(data, dict) and data.get("envelope_id"):
                    with self._lock:
                        self._acks[data["envelope_id"]] = data
        return ws

    async def _send(self, envelope: dict[str, Any]) -> None:
        deadline = time.monotonic() + 15
        while True:
            open_sockets = [s for s in self._sockets if not s.ws.closed]
            if open_sockets:
                await open_sockets[-1].ws.send_json(envelope)
                return
            if time.monotonic() > deadline:
                raise AssertionError("no Socket Mode connection to send the envelope on")
            await asyncio.sleep(0.02)

    async def _drop(self) -> None:
        for sock in [s for s in self._sockets if not s.ws.closed]:
            await sock.ws.close(code=1011, message=b"fake Slack dropped the connection")

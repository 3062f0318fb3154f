"""A fake Discord: the gateway WebSocket and the REST API on 127.0.0.1, for the real discord.py client.

One aiohttp app in a daemon thread serves both: REST under `/api/v10` and the gateway at `/gateway`.
The gateway speaks just enough of Discord's protocol for discord.py 2.x: HELLO, heartbeat ACKs,
IDENTIFY → READY + GUILD_CREATE, RESUME → the missed dispatches + RESUMED. Tests make things happen
with `send_message`, `slash_command` and `press_button` (MESSAGE_CREATE / INTERACTION_CREATE
dispatches), and read what a Discord user would see from `messages` and the recorded `calls`.

Faults are arranged from the test: `rate_limit(...)` makes the next matching REST call(s) answer 429
with `retry_after`, and `drop_gateway()` cuts the gateway connection (the client resumes).

    fake = FakeDiscord()
    fake.start()
    # DISCORD_API_URL=fake.api_url, DISCORD_GATEWAY_URL=fake.gateway_url, then a client with BOT_TOKEN
    ...
    message = fake.send_message("<@BOT> how do I roll back?")
    await fake.until(lambda: fake.replies_to(message["id"]))
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from aiohttp import WSMsgType, web

from tests.fakes.aiohttp_server import ThreadedAiohttpServer

API_PREFIX = "/api/v10"
BOT_TOKEN = "fake-bot-token"
BOT_ID = 900000000000000001
APPLICATION_ID = 900000000000000002
GUILD_ID = 910000000000000000
USER_ID = 920000000000000001
DM_CHANNEL_ID = 930000000000000001
FIRST_CHANNEL_ID = 940000000000000001
DISCORD_EPOCH_MS = 1420070400000

BOT_USER: dict[str, Any] = {
    "id": str(BOT_ID), "username": "Lorebot", "discriminator": "0", "global_name": "Lorebot", "avatar": None,
    "bot": True, "flags": 0, "verified": True, "mfa_enabled": False,
}
UNAUTHORIZED = {"message": "401: Unauthorized", "code": 0}
NOT_FOUND = {"message": "404: Not Found", "code": 0}
ERRORS = {403: "Missing Permissions", 500: "Internal Server Error"}

# Gateway opcodes (https://discord.com/developers/docs/topics/opcodes-and-status-codes).
DISPATCH, HEARTBEAT, IDENTIFY, RESUME, INVALID_SESSION, HELLO, HEARTBEAT_ACK = 0, 1, 2, 6, 9, 10, 11


def user_payload(user_id: int = USER_ID, name: str = "alice", *, bot: bool = False) -> dict[str, Any]:
    return {"id": str(user_id), "username": name, "discriminator": "0", "global_name": name.title(),
            "avatar": None, "bot": bot, "flags": 0}


def _member(user: dict[str, Any]) -> dict[str, Any]:
    return {"user": user, "roles": [], "joined_at": "2024-01-01T00:00:00+00:00", "deaf": False, "mute": False,
            "flags": 0, "nick": None, "permissions": "2248473465835073"}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


@dataclass(frozen=True)
class RestCall:
    """One REST request: the path without the /api/v10 prefix, the parsed JSON body, the status sent."""

    method: str
    path: str
    query: dict[str, str]
    body: Any
    status: int
    at: float  # time.monotonic() when it arrived


@dataclass
class _Fault:
    method: str
    pattern: re.Pattern[str]
    status: int
    retry_after: float
    times: int
    via: bool = True


@dataclass
class _Session:
    id: str
    seq: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)  # every dispatch, for RESUME replays
    ws: web.WebSocketResponse | None = None


class FakeDiscord(ThreadedAiohttpServer):
    """A fake Discord gateway + REST API on 127.0.0.1 (port 0), in a daemon thread.

    :param channels: how many text channels the guild has (ids FIRST_CHANNEL_ID, +1, ...).
    """

    thread_name = "fake-discord"

    def __init__(self, *, channels: int = 3) -> None:
        super().__init__()
        self.channel_ids = [FIRST_CHANNEL_ID + i for i in range(channels)]
        self.calls: list[RestCall] = []
        self.messages: dict[int, dict[str, Any]] = {}  # every message the bot posted, as last edited
        self.gateway_ops: list[tuple[int, Any]] = []  # what the client sent: (op, d)
        self.threads: dict[int, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._faults: list[_Fault] = []
        self._session: _Session | None = None

    # -- lifecycle ---------------------------------------------------------------------
    @property
    def api_url(self) -> str:
        return self.base_url + API_PREFIX

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self._port}/gateway"

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/gateway", self._gateway)
        app.router.add_route("*", API_PREFIX + "/{tail:.*}", self._rest)
        return app

    async def close_connections(self) -> None:
        session = self._session
        if session is not None and session.ws is not None:
            await session.ws.close()

    # -- what tests do -----------------------------------------------------------------
    def new_id(self) -> int:
        """A snowflake whose timestamp is now, as Discord's are."""
        return ((int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22) + next(self._ids)

    def send_message(
        self, content: str, *, channel_id: int | None = None, author: dict[str, Any] | None = None,
        mention_bot: bool = True, reply_to: int | None = None, dm: bool = False, webhook_id: int | None = None,
    ) -> dict[str, Any]:
        """A user posts a message: dispatches MESSAGE_CREATE and returns its payload.

        `mention_bot` puts the bot in `mentions` (add "<@BOT_ID>" to the content yourself, as a client
        would); `reply_to` makes it a reply, with the referenced message resolved as Discord does;
        `webhook_id` makes it a webhook's message.
        """
        author = author or user_payload()
        channel_id = channel_id or (DM_CHANNEL_ID if dm else self.channel_ids[0])
        message = self._message(channel_id, content, author=author, guild=not dm)
        if webhook_id is not None:  # a webhook's message: its author is the webhook, with no member
            message["webhook_id"] = str(webhook_id)
            message.pop("member", None)
        if mention_bot:
            message["mentions"] = [{**BOT_USER, "member": _member(BOT_USER)} if not dm else BOT_USER]
        if reply_to is not None:
            message["type"] = 19
            message["message_reference"] = {"message_id": str(reply_to), "channel_id": str(channel_id),
                                             **({} if dm else {"guild_id": str(GUILD_ID)})}
            with self._lock:
                message["referenced_message"] = self.messages.get(reply_to)
        self.dispatch("MESSAGE_CREATE", message)
        return message

    def slash_command(self, name: str, options: dict[str, Any], *, channel_id: int | None = None,
                      user: dict[str, Any] | None = None, malformed: bool = False,
                      subcommand: str | None = None) -> dict[str, Any]:
        """A user runs an application command: dispatches INTERACTION_CREATE (type 2).

        `subcommand` names a subcommand of a command group (`/lorebot link`), whose options `options`
        are then. `malformed` leaves out the member's `user`, which the docs require: discord.py 2.7.1
        raises a KeyError while parsing it, inside its gateway loop.
        """
        types = {str: 3, bool: 5, int: 4}
        given = [{"name": k, "type": types[type(v)], "value": v} for k, v in options.items()]
        data = {"id": str(self.new_id()), "name": name, "type": 1,
                "options": given if subcommand is None else [{"name": subcommand, "type": 1, "options": given}]}
        return self._interaction(2, data, channel_id=channel_id or self.channel_ids[0], user=user,
                                 malformed=malformed)

    def send_raw(self, frame: str | bytes) -> None:
        """Sends `frame` on the gateway as it is (text, or binary for bytes): garbage a proxy might inject."""
        self._run(self._send_raw(frame))

    def press_button(self, message_id: int, custom_id: str, *, user: dict[str, Any] | None = None) -> dict[str, Any]:
        """A user clicks a button on a message the bot posted: INTERACTION_CREATE (type 3)."""
        with self._lock:
            message = self.messages[message_id]
        data = {"custom_id": custom_id, "component_type": 2}
        return self._interaction(3, data, channel_id=int(message["channel_id"]), user=user, message=message)

    def rate_limit(self, method: str, path_pattern: str, *, retry_after: float = 0.5, times: int = 1,
                   via: bool = True) -> None:
        """The next `times` calls of `method` to a path matching `path_pattern` get a 429 with `retry_after`.

        Every 429 carries the headers Discord documents (Retry-After, X-RateLimit-*); `via=False` leaves
        out the `Via` header, which the docs do not promise and without which discord.py does not retry.
        """
        self.fail(method, path_pattern, status=429, retry_after=retry_after, times=times, via=via)

    def fail(self, method: str, path_pattern: str, *, status: int = 403, retry_after: float = 0.0,
             times: int = 1, via: bool = True) -> None:
        """The next `times` calls of `method` to a path matching `path_pattern` get `status`."""
        with self._lock:
            self._faults.append(_Fault(method, re.compile(path_pattern), status, retry_after, times, via))

    def drop_gateway(self) -> None:
        """Cuts the gateway connection without a close frame, like a network failure."""
        self._run(self._drop())

    def dispatch(self, event: str, data: dict[str, Any]) -> None:
        """Sends a dispatch now, or keeps it for the RESUME when the client is disconnected."""
        self._run(self._dispatch(event, data))

    # -- what tests read ---------------------------------------------------------------
    def calls_to(self, method: str, pattern: str) -> list[RestCall]:
        with self._lock:
            return [c for c in self.calls if c.method == method and re.fullmatch(pattern, c.path)]

    def replies_to(self, message_id: int) -> list[dict[str, Any]]:
        """Bot messages that reply to `message_id`, oldest first."""
        with self._lock:
            return [m for m in self.messages.values()
                    if (m.get("message_reference") or {}).get("message_id") == str(message_id)]

    def bot_messages(self, channel_id: int) -> list[dict[str, Any]]:
        with self._lock:
            return [m for m in self.messages.values() if m["channel_id"] == str(channel_id)]

    def message(self, message_id: int | str) -> dict[str, Any]:
        """A message the bot posted, as it looks now (with `edits`: how many edits landed)."""
        with self._lock:
            return dict(self.messages[int(message_id)])

    @property
    def identifies(self) -> int:
        return sum(op == IDENTIFY for op, _ in self.gateway_ops)

    @property
    def resumes(self) -> list[dict[str, Any]]:
        return [d for op, d in self.gateway_ops if op == RESUME]

    async def until(self, predicate: Callable[[], Any], timeout: float = 15.0) -> Any:
        """Polls `predicate` from a test's event loop until it returns (or awaits to) something truthy."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if inspect.isawaitable(value):
                value = await value
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {predicate}")
            await asyncio.sleep(0.02)

    # -- payloads ----------------------------------------------------------------------
    def _message(self, channel_id: int, content: str, *, author: dict[str, Any], guild: bool) -> dict[str, Any]:
        message: dict[str, Any] = {
            "id": str(self.new_id()), "channel_id": str(channel_id), "author": author, "content": content,
            "timestamp": _now(), "edited_timestamp": None, "tts": False, "mention_everyone": False,
            "mentions": [], "mention_roles": [], "attachments": [], "embeds": [], "components": [],
            "pinned": False, "type": 0, "flags": 0,
        }
        if guild:
            message["guild_id"] = str(GUILD_ID)
            message["member"] = {k: v for k, v in _member(author).items() if k != "user"}
        return message

    def _interaction(self, kind: int, data: dict[str, Any], *, channel_id: int, user: dict[str, Any] | None,
                     message: dict[str, Any] | None = None, malformed: bool = False) -> dict[str, Any]:
        user = user or user_payload()
        dm = channel_id == DM_CHANNEL_ID
        payload: dict[str, Any] = {
            "id": str(self.new_id()), "application_id": str(APPLICATION_ID), "type": kind, "data": data,
            "channel_id": str(channel_id), "token": f"itoken-{self.new_id()}", "version": 1, "locale": "en-US",
            "app_permissions": "2248473465835073", "entitlements": [], "authorizing_integration_owners": {},
            "attachment_size_limit": 10 * 2**20,
            "context": 1 if dm else 0,
            "channel": {"id": str(channel_id), "type": 1 if dm else 0,
                        **({} if dm else {"guild_id": str(GUILD_ID), "name": "general"})},
        }
        if dm:
            payload["user"] = user
        else:
            payload |= {"guild_id": str(GUILD_ID), "guild_locale": "en-US", "member": _member(user)}
            if malformed:
                del payload["member"]["user"]
        if message is not None:
            payload["message"] = message
        self.dispatch("INTERACTION_CREATE", payload)
        return payload

    def _guild(self) -> dict[str, Any]:
        channels: list[dict[str, Any]] = [{"id": str(cid), "type": 0, "name": f"channel-{i}", "position": i, "guild_id": str(GUILD_ID),
                     "permission_overwrites": [], "nsfw": False, "parent_id": None, "topic": None,
                     "rate_limit_per_user": 0, "last_message_id": None, "flags": 0}
                    for i, cid in enumerate(self.channel_ids)]
        everyone = {"id": str(GUILD_ID), "name": "@everyone", "permissions": "2248473465835073", "position": 0,
                    "color": 0, "hoist": False, "managed": False, "mentionable": False, "flags": 0}
        with self._lock:
            threads = list(self.threads.values())
        return {
            "id": str(GUILD_ID), "name": "Test guild", "icon": None, "owner_id": str(USER_ID), "afk_timeout": 300,
            "verification_level": 0, "default_message_notifications": 0, "explicit_content_filter": 0,
            "roles": [everyone], "emojis": [], "stickers": [], "features": [], "mfa_level": 0,
            "system_channel_flags": 0, "premium_tier": 0, "preferred_locale": "en-US", "nsfw_level": 0,
            "member_count": 2, "large": False, "unavailable": False, "joined_at": "2024-01-01T00:00:00+00:00",
            "channels": channels, "threads": threads, "members": [_member(BOT_USER)], "voice_states": [],
            "presences": [], "stage_instances": [], "guild_scheduled_events": [], "soundboard_sounds": [],
        }

    # -- the gateway -------------------------------------------------------------------
    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True, max_msg_size=0)
        await ws.prepare(request)
        await ws.send_json({"op": HELLO, "d": {"heartbeat_interval": 41250}, "s": None, "t": None})
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            payload = json.loads(msg.data)
            op, data = payload.get("op"), payload.get("d")
            with self._lock:
                self.gateway_ops.append((op, data))
            if op == HEARTBEAT:
                await ws.send_json({"op": HEARTBEAT_ACK, "d": None, "s": None, "t": None})
            elif op == IDENTIFY:
                await self._identify(ws, data)
            elif op == RESUME:
                await self._resume(ws, data)
        return ws

    async def _identify(self, ws: web.WebSocketResponse, data: dict[str, Any]) -> None:
        if data.get("token") != BOT_TOKEN:
            await ws.close(code=4004, message=b"Authentication failed.")
            return
        session = self._session = _Session(id=f"session-{self.new_id()}", ws=ws)
        await self._dispatch("READY", {
            "v": 10, "user": BOT_USER, "guilds": [{"id": str(GUILD_ID), "unavailable": True}],
            "session_id": session.id, "resume_gateway_url": self.gateway_url, "shard": [0, 1],
            "application": {"id": str(APPLICATION_ID), "flags": 0}, "private_channels": [], "relationships": [],
        })
        await self._dispatch("GUILD_CREATE", self._guild())

    async def _resume(self, ws: web.WebSocketResponse, data: dict[str, Any]) -> None:
        session = self._session
        if session is None or data.get("session_id") != session.id or data.get("token") != BOT_TOKEN:
            await ws.send_json({"op": INVALID_SESSION, "d": False, "s": None, "t": None})
            return
        session.ws = ws
        for event in session.events:  # what the client missed while it was away
            if event["s"] > (data.get("seq") or 0):
                await ws.send_json(event)
        await self._dispatch("RESUMED", {})

    async def _dispatch(self, event: str, data: dict[str, Any]) -> None:
        session = self._session
        if session is None:
            raise RuntimeError("no gateway session: the client has not identified yet")
        session.seq += 1
        frame = {"op": DISPATCH, "t": event, "s": session.seq, "d": data}
        session.events.append(frame)
        if session.ws is not None and not session.ws.closed:
            try:
                await session.ws.send_json(frame)
            except ConnectionError:  # dropped meanwhile: the frame is replayed on RESUME
                pass

    async def _send_raw(self, frame: str | bytes) -> None:
        session = self._session
        if session is None or session.ws is None:
            raise RuntimeError("no gateway connection to send the frame on")
        if isinstance(frame, bytes):
            await session.ws.send_bytes(frame)
        else:
            await session.ws.send_str(frame)

    async def _drop(self) -> None:
        session = self._session
        if session is not None and session.ws is not None:
            ws, session.ws = session.ws, None
            transport = ws._req.transport if ws._req is not None else None
            if transport is not None:
                transport.abort()

    # -- REST --------------------------------------------------------------------------
    async def _rest(self, request: web.Request) -> web.Response:
        path = "/" + request.match_info["tail"]
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        status, payload = self._answer(request, path, body)
        with self._lock:
            self.calls.append(RestCall(request.method, path, dict(request.query), body, status, time.monotonic()))
        headers = {"Content-Type": "application/json"}  # exactly: discord.py compares the header verbatim
        if status == 429:
            # The headers https://discord.com/developers/docs/topics/rate-limits documents for a 429.
            retry_after = payload["retry_after"]
            headers |= {"Retry-After": str(retry_after), "X-RateLimit-Limit": "5", "X-RateLimit-Remaining": "0",
                        "X-RateLimit-Reset": f"{time.time() + retry_after:.3f}",
                        "X-RateLimit-Reset-After": f"{retry_after:.3f}", "X-RateLimit-Bucket": "fakebucket",
                        "X-RateLimit-Scope": "user"}
            if payload.pop("_via"):  # discord.py takes a 429 without Via for a Cloudflare ban and gives up
                headers["Via"] = "1.1 google"
        if status == 204:
            return web.Response(status=204)
        return web.Response(status=status, body=json.dumps(payload).encode(), headers=headers)

    def _answer(self, request: web.Request, path: str, body: Any) -> tuple[int, Any]:
        # Interaction callbacks and followups are authorized by the interaction's token in the path.
        by_token = path.startswith(("/interactions/", "/webhooks/"))
        if not by_token and request.headers.get("Authorization") != f"Bot {BOT_TOKEN}":
            return 401, UNAUTHORIZED
        method = request.method
        with self._lock:
            for fault in self._faults:
                if fault.method == method and fault.pattern.fullmatch(path) and fault.times > 0:
                    fault.times -= 1
                    if fault.status == 429:
                        return 429, {"message": "You are being rate limited.", "retry_after": fault.retry_after,
                                     "global": False, "_via": fault.via}
                    return fault.status, {"message": ERRORS.get(fault.status, "Error"), "code": 50013}
        for route_method, pattern, handler in self._routes:
            match = re.fullmatch(pattern, path)
            if match and route_method == method:
                return handler(self, body or {}, *match.groups())
        return 404, NOT_FOUND

    def _me(self, body: Any) -> tuple[int, Any]:
        return 200, BOT_USER

    def _application(self, body: Any) -> tuple[int, Any]:
        return 200, {"id": str(APPLICATION_ID), "name": "Lorebot", "icon": None, "description": "",
                     "bot_public": True, "bot_require_code_grant": False, "owner": user_payload(), "summary": "",
                     "verify_key": "0" * 64, "flags": 0, "team": None, "rpc_origins": [],
                     "interactions_endpoint_url": None}

    def _gateway_bot(self, body: Any) -> tuple[int, Any]:
        return 200, {"url": self.gateway_url, "shards": 1, "session_start_limit": {
            "total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1}}

    def _sync_commands(self, body: Any, application_id: str) -> tuple[int, Any]:
        return 200, [{**command, "id": str(self.new_id()), "application_id": application_id, "version": "1",
                      "default_member_permissions": None, "type": command.get("type", 1)} for command in body]

    def _typing(self, body: Any, channel_id: str) -> tuple[int, Any]:
        return 204, None

    def _post_message(self, body: dict[str, Any], channel_id: str) -> tuple[int, Any]:
        message = self._bot_message(channel_id, body)
        reference = body.get("message_reference")
        if reference:
            message["message_reference"] = {k: str(v) for k, v in reference.items() if k.endswith("_id")}
            message["type"] = 19
        return 200, message

    def _bot_message(self, channel_id: str, body: dict[str, Any], message_id: int | None = None,
                     **extra: Any) -> dict[str, Any]:
        guild = int(channel_id) != DM_CHANNEL_ID
        message = self._message(int(channel_id), body.get("content") or "", author=BOT_USER, guild=guild)
        if message_id is not None:
            message["id"] = str(message_id)
        message |= {"components": body.get("components") or [], "flags": body.get("flags") or 0,
                    "allowed_mentions": body.get("allowed_mentions"), "edits": 0, **extra}
        message.pop("member", None)
        with self._lock:
            self.messages[int(message["id"])] = message
        return message

    def _edit_message(self, body: dict[str, Any], channel_id: str, message_id: str) -> tuple[int, Any]:
        with self._lock:
            message = self.messages.get(int(message_id))
            if message is None:
                return 404, {"message": "Unknown Message", "code": 10008}
            for key in ("content", "components", "flags", "allowed_mentions"):
                if key in body:
                    message[key] = body[key]
            message["edited_timestamp"] = _now()
            message["edits"] += 1
            return 200, dict(message)

    def _create_thread(self, body: dict[str, Any], channel_id: str, message_id: str) -> tuple[int, Any]:
        thread = {
            "id": message_id, "guild_id": str(GUILD_ID), "parent_id": channel_id, "owner_id": str(BOT_ID),
            "name": body.get("name", "thread"), "type": 11, "message_count": 0, "member_count": 1,
            "rate_limit_per_user": 0, "last_message_id": None, "flags": 0,
            "thread_metadata": {"archived": False, "auto_archive_duration": body.get("auto_archive_duration", 1440),
                                "archive_timestamp": _now(), "locked": False},
        }
        with self._lock:
            self.threads[int(message_id)] = thread
        # Discord announces the new thread on the gateway too; that is how the client caches it.
        asyncio.get_running_loop().create_task(self._dispatch("THREAD_CREATE", {**thread, "newly_created": True}))
        return 201, thread

    def _interaction_callback(self, body: dict[str, Any], interaction_id: str, token: str) -> tuple[int, Any]:
        kind = body.get("type")
        data = body.get("data") or {}
        ephemeral = bool((data.get("flags") or 0) & 64)
        response: dict[str, Any] = {"interaction": {
            "id": interaction_id, "type": 2, "response_message_loading": kind == 5,
            "response_message_ephemeral": ephemeral}}
        if kind in (4, 5):  # a message (or "thinking…"): it becomes the interaction's @original
            channel_id = self._interaction_channel(interaction_id)
            message = self._bot_message(channel_id, {**data, "content": data.get("content", "")},
                                        interaction_token=token)
            response["interaction"]["response_message_id"] = message["id"]
            response["resource"] = {"type": kind, "message": message}
        return 200, response

    def _interaction_channel(self, interaction_id: str) -> str:
        session = self._session
        for event in reversed(session.events if session else []):
            if event["t"] == "INTERACTION_CREATE" and event["d"]["id"] == interaction_id:
                return str(event["d"]["channel_id"])
        return str(self.channel_ids[0])

    def _original(self, token: str) -> dict[str, Any] | None:
        with self._lock:
            for message in self.messages.values():
                if message.get("interaction_token") == token and not message.get("followup"):
                    return message
        return None

    def _edit_original(self, body: dict[str, Any], application_id: str, token: str) -> tuple[int, Any]:
        original = self._original(token)
        if original is None:
            return 404, {"message": "Unknown Message", "code": 10008}
        return self._edit_message(body, original["channel_id"], original["id"])

    def _followup(self, body: dict[str, Any], application_id: str, token: str) -> tuple[int, Any]:
        original = self._original(token)
        if original is None:
            return 404, {"message": "Unknown Webhook", "code": 10015}
        return 200, self._bot_message(original["channel_id"], body, interaction_token=token, followup=True)

    _routes: list[tuple[str, str, Callable[..., tuple[int, Any]]]] = [
        ("GET", r"/users/@me", _me),
        ("GET", r"/oauth2/applications/@me", _application),
        ("GET", r"/gateway/bot", _gateway_bot),
        ("PUT", r"/applications/(\d+)/commands", _sync_commands),
        ("POST", r"/channels/(\d+)/typing", _typing),
        ("POST", r"/channels/(\d+)/messages", _post_message),
        ("PATCH", r"/channels/(\d+)/messages/(\d+)", _edit_message),
        ("POST", r"/channels/(\d+)/messages/(\d+)/threads", _create_thread),
        ("POST", r"/interactions/(\d+)/([^/]+)/callback", _interaction_callback),
        ("PATCH", r"/webhooks/(\d+)/([^/]+)/messages/@original", _edit_original),
        ("POST", r"/webhooks/(\d+)/([^/]+)", _followup),
    ]

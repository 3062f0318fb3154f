"""`/ws/chat/`: the web chat's socket. It speaks the JSON protocol in the README ("Web chat: the /ws/chat/ WebSocket protocol") and
delegates every question to the chat service (console.chat); it holds no retrieval logic, and it is the one
place where the chat's typed events become JSON frames.

Each answer runs as its own asyncio task, so `receive_json` stays free for `cancel` and `feedback`
while tokens stream. Conversation state lives in the database only, so any daphne process can serve
any reconnect.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from typing import Any

import structlog
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from console import chat
from console.chat.metrics import WEBSOCKET_CONNECTIONS, WEBSOCKET_FRAMES, WEBSOCKET_OPEN, count_error

log = structlog.get_logger(__name__, component="websocket")

SURFACE = "web"
CLOSE_UNAUTHENTICATED = 4401  # documented: the socket needs a logged-in session
CLOSE_TOO_MANY_FRAMES = 4429  # documented: a socket that keeps flooding after `too_many_frames`
# Protocol frames are flat objects; citations and history only ever go the other way. Deeper
# nesting is refused before the frame is looked at (a 12,000-deep one overflowed the parser).
MAX_FRAME_DEPTH = 4
SIDEBAR_LIMIT = 50
# After a token frame, the next one waits this long, gathering the tokens that arrive meanwhile.
# The first token of an answer always goes at once. A frame costs daphne and the browser about as
# much as a token's whole trip through the server, so under load (or with a fast model) this halves
# the work or better; nobody sees 30 ms.
TOKEN_FRAME_SECONDS = 0.03

# Answers whose socket went away keep running to the end, so a reload shows them whole; they are
# held here so the event loop does not drop them (and so tests can wait for them).
_detached: set[asyncio.Task[None]] = set()


class ChatConsumer(AsyncJsonWebsocketConsumer):
    """One browser tab's chat: ask, cancel, feedback, history, conversations."""

    user_key: str = ""
    answering: asyncio.Task[None] | None = None
    answering_message_id: int | None = None
    budget: FrameBudget | None = None

    async def connect(self) -> None:
        """Accepts, then refuses with close code 4401 when nobody is logged in (anonymous chat is off)."""
        self.user_key = _user_key(self.scope)
        self.answering = None
        self.budget = _budget_for(self.scope, settings.CHAT_FRAME_RATE)
        await self.accept()
        WEBSOCKET_OPEN.inc()
        if not self.user_key:
            WEBSOCKET_CONNECTIONS.labels("refused").inc()
            await self._error("unauthenticated", "Log in to chat.")
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        WEBSOCKET_CONNECTIONS.labels("accepted").inc()

    async def disconnect(self, code: int) -> None:
        """Leaves an answer in flight running: the service stores it, and a reconnect shows it."""
        WEBSOCKET_OPEN.dec()
        if self.answering is not None and not self.answering.done():
            _detached.add(self.answering)
            self.answering.add_done_callback(_detached.discard)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any) -> None:
        """Decodes one frame; anything that is not a JSON object gets an error frame, never a traceback."""
        WEBSOCKET_FRAMES.labels("in").inc()
        if not self.user_key:
            return
        if self.budget is not None and not self.budget.take():
            # Dropped before it is even parsed: a flood costs this process next to nothing.
            if self.budget.overflow == 1:
                await self._error("too_many_frames", f"More than {self.budget.describe()} from this session; "
                                                     "frames are dropped until it slows down.")
            elif self.budget.overflow > self.budget.capacity:
                count_error("too_many_frames")
                await self.close(code=CLOSE_TOO_MANY_FRAMES)
            return
        if text_data is None:
            await self._error("binary_frame", "Send JSON text frames, not binary ones.")
            return
        if len(text_data) > _max_frame_chars():
            await self._error("too_large", f"A frame may hold at most {_max_frame_chars()} characters.")
            return
        try:
            content = json.loads(text_data)
        except ValueError:
            await self._error("bad_json", "That frame is not JSON.")
            return
        except RecursionError:  # nested deeper than the parser can follow
            content = None
        if content is None or _depth(content) > MAX_FRAME_DEPTH:
            await self._error("too_deep", f"A frame may nest objects and arrays at most {MAX_FRAME_DEPTH} deep.")
            return
        if not isinstance(content, dict):
            await self._error("bad_request", 'Send a JSON object such as {"type": "ask", "text": "…"}.')
            return
        await self.receive_json(content)

    async def receive_json(self, content: dict[str, Any], **kwargs: Any) -> None:
        """Called with one decoded JSON object."""
        handler = {
            "ask": self._ask,
            "cancel": self._cancel,
            "feedback": self._feedback,
            "history": self._history,
            "conversations": self._conversations,
            "link_code": self._link_code,
        }.get(str(content.get("type")))
        if handler is None:
            await self._error("unknown_type", f"Unknown type {str(content.get('type'))[:40]!r}.")
            return
        try:
            await handler(content)
        except _BadRequest as exc:
            await self._error("bad_request", str(exc))
        except Exception:
            log.exception("websocket.failed", user_key=self.user_key, frame_type=content.get("type"))
            await self._error("internal", "Something went wrong on our side; try again.")

    async def send_json(self, content: dict[str, Any], close: bool = False) -> None:
        WEBSOCKET_FRAMES.labels("out").inc()
        await super().send_json(content, close=close)

    # -- the protocol ----------------------------------------------------------------------

    async def _ask(self, content: dict[str, Any]) -> None:
        text = _field(content, "text", str)
        conversation_id = _field(content, "conversation_id", int, required=False)
        if self.answering is not None and not self.answering.done():
            await self._error("busy", "Still answering the last question; wait or send cancel.")
            return
        self.answering_message_id = None
        self.answering = asyncio.create_task(self._answer(text, conversation_id))

    async def _answer(self, text: str, conversation_id: int | None) -> None:
        """Streams one answer from the chat service as frames; a cancel lands here as CancelledError."""
        stream = chat.areply(
            surface=SURFACE, conversation_key=f"{self.user_key}:{uuid.uuid4().hex}", user_key=self.user_key,
            text=text, user=_user(self.scope), conversation_id=conversation_id,
        )
        tokens = _TokenFrames(self.send_json)
        try:
            # aclosing: the service's own `finally` (which stores the answer) runs now, not at GC time.
            async with aclosing(stream):
                async for event in stream:
                    if isinstance(event, chat.AnswerToken):
                        await tokens.add(event.text)
                        continue
                    await tokens.flush()  # every token before whatever comes next
                    if isinstance(event, chat.AnswerStarted):
                        self.answering_message_id = event.message_id
                    elif isinstance(event, chat.AnswerError):
                        count_error(event.code)
                    await self.send_json(frame(event))
        except asyncio.CancelledError:
            await tokens.flush()  # the reader sees every token the stored partial answer holds
            await self.send_json({"type": "cancelled", "message_id": self.answering_message_id})
        except Exception:
            log.exception("websocket.answer_failed", user_key=self.user_key, message_id=self.answering_message_id)
            await tokens.flush()
            await self._error("internal", "Something went wrong on our side; try again.")
        finally:
            tokens.close()

    async def _cancel(self, content: dict[str, Any]) -> None:
        task = self.answering
        if task is None or task.done():
            await self.send_json({"type": "cancelled", "message_id": None})
            return
        task.cancel()
        # The task sends `cancelled` once the service has stored the partial answer.
        await asyncio.wait([task])

    async def _feedback(self, content: dict[str, Any]) -> None:
        message_id = _field(content, "message_id", int)
        value = _field(content, "value", int)
        if value not in (1, -1):
            raise _BadRequest("value must be 1 (👍) or -1 (👎).")
        if not await chat.aowns_answer(message_id=message_id, surface=SURFACE, user_key=self.user_key):
            await self._error("forbidden", "That answer is not in one of your conversations.")
            return
        try:
            await chat.arecord_feedback(message_id=message_id, value=value, surface=SURFACE, user_key=self.user_key)
        except chat.ChatError as exc:
            await self._error(exc.code, exc.message)
            return
        await self.send_json({"type": "feedback", "message_id": message_id, "value": value})

    async def _history(self, content: dict[str, Any]) -> None:
        conversation_id = _field(content, "conversation_id", int)
        try:
            found = await chat.aconversation_history(conversation_id=conversation_id, surface=SURFACE,
                                                     user_key=self.user_key, user=_user(self.scope))
        except chat.ChatError as exc:
            await self._error(exc.code, exc.message)
            return
        await self.send_json({"type": "history", "conversation_id": found.id, "title": found.title,
                              "messages": [_message_frame(m) for m in found.messages]})

    async def _conversations(self, content: dict[str, Any]) -> None:
        found = await chat.arecent_conversations(surface=SURFACE, user_key=self.user_key, limit=SIDEBAR_LIMIT)
        items = [{"id": c.id, "title": c.title, "updated_at": c.updated_at.isoformat()} for c in found]
        await self.send_json({"type": "conversations", "items": items})

    async def _link_code(self, content: dict[str, Any]) -> None:
        """A one-time code to send to the Slack or Discord bot, linking that account to this user (console.chat.links)."""
        user = _user(self.scope)
        try:
            issued = await chat.aissue_code(user)
        except chat.ChatError as exc:
            await self._error(exc.code, exc.message)
            return
        await self.send_json({"type": "link_code", "code": issued.code, "expires_at": issued.expires_at.isoformat(),
                              "minutes": issued.minutes, "linked": await chat.alinked_platforms(user)})

    async def _error(self, code: str, message: str) -> None:
        count_error(code)
        await self.send_json({"type": "error", "code": code, "message": message})


class _TokenFrames:
    """Token frames of one answer: the first at once, then at most one every TOKEN_FRAME_SECONDS.

    Tokens arriving within that time share the next frame (its `text` holds them all). A timer sends
    what is gathered, so a pause in the model never holds back a token for longer.
    """

    def __init__(self, send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        self._send = send
        self._parts: list[str] = []
        self._sent_at = -TOKEN_FRAME_SECONDS  # loop time of the last frame
        self._timer: asyncio.TimerHandle | None = None
        self._flushing: asyncio.Task[None] | None = None

    async def add(self, text: str) -> None:
        self._parts.append(text)
        loop = asyncio.get_running_loop()
        due = self._sent_at + TOKEN_FRAME_SECONDS
        if loop.time() >= due:
            await self.flush()
        elif self._timer is None:
            self._timer = loop.call_at(due, self._on_timer)

    async def flush(self) -> None:
        """Sends what is gathered now (before any other frame of the answer)."""
        self.close()
        if not self._parts:
            return
        text, self._parts = "".join(self._parts), []
        self._sent_at = asyncio.get_running_loop().time()
        await self._send({"type": "token", "text": text})

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timer(self) -> None:
        self._timer = None
        # Held so the task is not collected mid-send; a newer flush (say, for `done`) finds nothing left.
        self._flushing = asyncio.ensure_future(self.flush())


class FrameBudget:
    """A token bucket: `capacity` frames at once, refilled at capacity/seconds per second."""

    def __init__(self, capacity: int, seconds: float) -> None:
        self.capacity = capacity
        self.seconds = seconds
        self._tokens = float(capacity)
        self._at = time.monotonic()
        self.overflow = 0  # frames dropped since the last one let through

    @classmethod
    def from_rate(cls, rate: str) -> FrameBudget | None:
        """From "COUNT/SECONDS" (checked by the settings); None for "0", no limit."""
        count, _, seconds = rate.partition("/")
        return cls(int(count), float(seconds)) if int(count) else None

    def take(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.capacity / self.seconds)
        self._at = now
        if self._tokens >= 1:
            self._tokens -= 1
            self.overflow = 0
            return True
        self.overflow += 1
        return False

    def describe(self) -> str:
        return f"{self.capacity} frames per {self.seconds:g} s"


# One budget per login session (and rate), not per socket object: a client closed with 4429 that
# reconnects with the same cookie finds its budget as it left it. Bounded: the oldest is forgotten.
_budgets: OrderedDict[tuple[str, str], FrameBudget] = OrderedDict()
_MAX_BUDGETS = 10_000


def _budget_for(scope: dict[str, Any], rate: str) -> FrameBudget | None:
    session = scope.get("session")
    session_key = getattr(session, "session_key", None) if session is not None else None
    if not session_key:
        return FrameBudget.from_rate(rate)
    key = (session_key, rate)
    budget = _budgets.get(key)
    if budget is None:
        budget = FrameBudget.from_rate(rate)
        if budget is None:
            return None
        _budgets[key] = budget
        if len(_budgets) > _MAX_BUDGETS:
            _budgets.popitem(last=False)
    _budgets.move_to_end(key)
    return budget


def _depth(value: Any) -> int:
    """How deep objects and arrays nest in a decoded frame (a scalar is 0)."""
    depth, level = 0, [(value, 1)]
    while level:
        item, d = level.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        depth = max(depth, d)
        if d <= MAX_FRAME_DEPTH:  # no need to walk further than the limit
            level.extend((child, d + 1) for child in children)
    return depth


class _BadRequest(Exception):
    """A frame with a missing or mistyped field."""


def _field(content: dict[str, Any], name: str, kind: type, *, required: bool = True) -> Any:
    value = content.get(name)
    if value is None:
        if required:
            raise _BadRequest(f"{name} is missing.")
        return None
    # bool is an int in Python, and JSON true is not a message id.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _BadRequest(f"{name} must be {'a string' if kind is str else 'a whole number'}.")
    return value


def _max_frame_chars() -> int:
    # Room for a question at the limit even when every character arrives as a \uXXXX escape.
    return settings.CHAT_MAX_QUESTION_CHARS * 6 + 1024


def _user_key(scope: dict[str, Any]) -> str:
    """Who is asking: the logged-in user, or (when allowed) the anonymous session; "" means nobody."""
    user = scope.get("user")
    if user is not None and user.is_authenticated:
        return f"user:{user.pk}"
    if getattr(settings, "CHAT_ALLOW_ANONYMOUS", False):
        session = scope.get("session")
        session_key = getattr(session, "session_key", None) if session is not None else None
        if session_key:
            return f"anon:{session_key}"
    return ""


def _user(scope: dict[str, Any]) -> Any:
    user = scope.get("user")
    return user if user is not None and user.is_authenticated else None


def frame(event: chat.ChatEvent) -> dict[str, Any]:
    """The JSON frame of one chat event (token frames are gathered by _TokenFrames)."""
    if isinstance(event, chat.AnswerStarted):
        return {"type": "start", "conversation_id": event.conversation_id, "message_id": event.message_id,
                "question_id": event.question_id}
    if isinstance(event, chat.AnswerToken):
        return {"type": "token", "text": event.text}
    if isinstance(event, chat.AnswerCitations):
        return {"type": "citations", "items": [citation_frame(c) for c in event.items]}
    if isinstance(event, chat.AnswerDone):
        return {"type": "done", "message_id": event.message_id, "usage": event.usage.to_dict(),
                "latency_ms": event.latency_ms, "retrieval_ms": event.retrieval_ms,
                "generation_ms": event.generation_ms, "mode": event.mode, "provider": event.provider,
                "model": event.model, "extractive": event.extractive, "fallback_reason": event.fallback_reason,
                "not_covered": event.not_covered}
    return {"type": "error", "code": event.code, "message": event.message, "fatal": event.fatal}


def citation_frame(citation: chat.Citation) -> dict[str, Any]:
    """A citation as the page shows it: its fields, and `url`, where it opens (the source viewer), or ""."""
    return {**citation.to_dict(), "url": chat.source_url(citation), "synced": chat.synced_text(citation)}


def _message_frame(message: chat.StoredMessage) -> dict[str, Any]:
    return {
        "id": message.id,
        "role": message.role,
        "text": message.text,
        "citations": [citation_frame(c) for c in message.citations],
        "error": message.error,
        "pending": message.pending,
        "extractive": message.extractive,
        "not_covered": message.not_covered,
        "feedback": message.feedback,
        "created_at": message.created_at.isoformat(),
    }


async def wait_for_detached_answers(timeout: float = 30.0) -> None:
    """Waits for answers whose socket closed (tests, and a graceful shutdown)."""
    if _detached:
        await asyncio.wait(list(_detached), timeout=timeout)

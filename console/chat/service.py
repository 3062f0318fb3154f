"""The chat service: the one entry point every surface (web, Slack, Discord, CLI) calls.

Given a surface, a conversation key, a user and a question, it loads the conversation's
recent history, asks the engine (mode "context" for follow-ups), yields events as they
come and stores the exchange: the question at once, the answer when it is done, or what
there was of it when the client went away.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import structlog
from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, close_old_connections, transaction

from console.engine import await_warmup, get_engine, wait_for_warmup
from console.ops.metrics import CHAT_ANSWER_SECONDS, CHAT_QUESTIONS, FEEDBACK
from console.models import Conversation, Feedback, Message
from ragcore.metrics import PIPELINE_ERRORS
from ragcore.types import Answer, CitationsEvent, DoneEvent, ErrorEvent, Event, TokenEvent, Turn

log = structlog.get_logger(__name__, component="chat")


def _db(fn: Any) -> Any:
    """Runs a short ORM call in the thread pool rather than on the one shared DB thread.

    sync_to_async is thread-sensitive by default, so every chat in the process would queue
    behind every other's writes; these calls touch no thread-bound state.
    """
    def run(*args: Any, **kwargs: Any) -> Any:
        # As channels' database_sync_to_async does: drop broken or expired connections
        # (CONN_MAX_AGE) of this pool thread before and after the call.
        close_old_connections()
        try:
            return fn(*args, **kwargs)
        finally:
            close_old_connections()

    return sync_to_async(run, thread_sensitive=False)


@dataclass(frozen=True)
class ChatEvent:
    """One event of an answer, ready for a WebSocket frame or a bot message edit."""

    type: str  # start, token, citations, done, error
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, **self.data}


class ChatError(Exception):
    """A question refused before any work: empty, too long, or over the rate limit."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(message)


@dataclass
class _Exchange:
    """What one question has produced so far, so it can be stored whatever happens."""

    conversation: Conversation
    question: Message
    answer: Message
    history: list[Turn]
    started: float
    parts: list[str] = field(default_factory=list)
    result: Answer | None = None
    error: str = ""


def _parse_rate(value: str) -> tuple[int, int]:
    count, _, seconds = value.partition("/")
    return int(count), int(seconds or 60)


def _check_rate(scope: str, key: str, rate: str) -> None:
    """A fixed-window counter in the cache (per process, or shared when the cache is Redis)."""
    limit, window = _parse_rate(rate)
    if limit <= 0:
        return
    bucket = int(time.time() // window)
    cache_key = f"chat-rate:{scope}:{key}:{bucket}"
    try:
        cache.add(cache_key, 0, timeout=window + 1)
        try:
            count = cache.incr(cache_key)
        except ValueError:  # expired between add and incr
            cache.set(cache_key, 1, timeout=window + 1)
            count = 1
    except Exception as exc:  # a shared cache (CACHE_URL) that is down: answer rather than refuse everyone
        PIPELINE_ERRORS.labels("cache").inc()
        log.warning("chat.rate_limit_unavailable", error=f"{type(exc).__name__}: {exc}")
        return
    if count > limit:
        wait = window - int(time.time()) % window
        raise ChatError("rate_limited", f"Slow down: at most {limit} questions per {window} s. Try again in {wait} s.")


def _validate(text: str) -> str:
    text = (text or "").strip()
    if not text:
        raise ChatError("empty_question", "The question is empty.")
    limit = settings.CHAT_MAX_QUESTION_CHARS
    if len(text) > limit:
        raise ChatError("too_long", f"The question is {len(text)} characters; the limit is {limit}.")
    return text


def _begin(surface: str, conversation_key: str, user_key: str, text: str, user: Any, conversation_id: int | None,
           rate_limit: str | None = None) -> _Exchange:
    """Validates, rate-limits, finds the conversation and stores the question."""
    text = _validate(text)
    _check_rate("user", f"{surface}:{user_key}", rate_limit or settings.CHAT_RATE_LIMIT_USER)
    with transaction.atomic():
        if conversation_id is not None:
            conversation = Conversation.objects.select_for_update().get(pk=conversation_id, surface=surface)
            if conversation.user_key != user_key:
                raise ChatError("forbidden", "That conversation belongs to someone else.")
        else:
            conversation, _ = Conversation.objects.get_or_create(
                surface=surface, external_key=conversation_key,
                defaults={"user_key": user_key, "user": user if getattr(user, "pk", None) else None, "title": text[:200]},
            )
        _check_rate("conversation", str(conversation.pk), settings.CHAT_RATE_LIMIT_CONVERSATION)
        turns = settings.RAG_HISTORY_TURNS
        earlier = list(conversation.messages.exclude(text="").order_by("-created_at", "-pk")[:turns])[::-1]
        question = Message.objects.create(conversation=conversation, role=Message.Role.USER, text=text)
        answer = Message.objects.create(conversation=conversation, role=Message.Role.ASSISTANT, error="in_progress")
        conversation.save(update_fields=["updated_at"])
    history = [Turn(m.role, m.text) for m in earlier]
    return _Exchange(conversation, question, answer, history, time.perf_counter())


def _open(surface: str, conversation_key: str, user_key: str, text: str, user: Any, conversation_id: int | None,
          rate_limit: str | None) -> _Exchange | ChatEvent:
    """`_begin`, or the fatal error event that refuses the question."""
    try:
        return _begin(surface, conversation_key, user_key, text, user, conversation_id, rate_limit)
    except ChatError as exc:
        CHAT_QUESTIONS.labels(surface, "refused").inc()
        return ChatEvent("error", {"code": exc.code, "message": exc.message, "fatal": True})
    except Conversation.DoesNotExist:
        CHAT_QUESTIONS.labels(surface, "refused").inc()
        return ChatEvent("error", {"code": "not_found", "message": "No such conversation.", "fatal": True})


def _still_warming(surface: str) -> ChatEvent:
    """The server started moments ago and its model is not loaded after WARMUP_WAIT_SECONDS."""
    CHAT_QUESTIONS.labels(surface, "refused").inc()
    return ChatEvent("error", {"code": "warming_up", "fatal": True,
                               "message": "Lorebot is still starting up (loading its model and indexes); ask again in a minute."})


def _start_event(ex: _Exchange) -> ChatEvent:
    return ChatEvent("start", {"conversation_id": ex.conversation.pk, "message_id": ex.answer.pk,
                               "question_id": ex.question.pk})


def _translate(ex: _Exchange, event: Event) -> ChatEvent:
    if isinstance(event, TokenEvent):
        ex.parts.append(event.text)
        return ChatEvent("token", {"text": event.text})
    if isinstance(event, CitationsEvent):
        return ChatEvent("citations", {"items": [c.to_dict() for c in event.citations]})
    if isinstance(event, ErrorEvent):
        if event.fatal:
            ex.error = event.code
        return ChatEvent("error", {"code": event.code, "message": event.message, "fatal": event.fatal})
    assert isinstance(event, DoneEvent)
    ex.result = event.answer
    return ChatEvent("done", {
        "message_id": ex.answer.pk,
        "usage": event.answer.usage.to_dict(),
        "latency_ms": round((time.perf_counter() - ex.started) * 1000, 1),
        "retrieval_ms": round(event.answer.retrieval_ms, 1),
        "generation_ms": round(event.answer.generation_ms, 1),
        "mode": event.answer.mode,
        "provider": event.answer.provider,
        "model": event.answer.model,
        "extractive": event.answer.extractive,
        "fallback_reason": event.answer.fallback_reason,
    })


def _ends_answer(event: ChatEvent) -> bool:
    return event.type == "done" or (event.type == "error" and event.data["fatal"])


def _finish(ex: _Exchange, interrupted: str = "") -> None:
    """Stores the answer: the finished one, or the part the user saw before leaving."""
    message = ex.answer
    result = ex.result
    message.latency_ms = round((time.perf_counter() - ex.started) * 1000, 1)
    if result is not None:
        message.text = result.text
        message.citations = [c.to_dict() for c in result.citations]
        message.retrieval_mode = result.mode
        message.provider = result.provider
        message.model = result.model
        message.prompt_tokens = result.usage.prompt_tokens
        message.completion_tokens = result.usage.completion_tokens
        message.error = result.fallback_reason
    else:
        message.text = "".join(ex.parts)
        message.error = interrupted or ex.error or "no_answer"
    message.save()
    surface = ex.conversation.surface
    outcome = "cancelled" if interrupted else "failed" if result is None else "extractive" if result.extractive else "answered"
    CHAT_QUESTIONS.labels(surface, outcome).inc()
    CHAT_ANSWER_SECONDS.labels(surface).observe(message.latency_ms / 1000)
    # `question` is replaced by its length in the logs unless LOG_CONTENT is on (console.ops.logs).
    log.info("chat.answered", conversation_id=ex.conversation.pk, message_id=message.pk,
             surface=surface, latency_ms=message.latency_ms, provider=message.provider,
             error=message.error, outcome=outcome, question=ex.question.text)


def reply(
    *, surface: str, conversation_key: str, user_key: str, text: str, user: Any = None,
    conversation_id: int | None = None, mode: str | None = None, rate_limit: str | None = None,
) -> Iterator[ChatEvent]:
    """Answers one question, yielding start, tokens, citations, done (or error) events.

    `mode` forces a retrieval mode; by default a first question is "hybrid" and a follow-up
    "context". `rate_limit` ("N/seconds") replaces CHAT_RATE_LIMIT_USER for surfaces that
    have their own (the bots).
    """
    if not wait_for_warmup(settings.WARMUP_WAIT_SECONDS):
        yield _still_warming(surface)
        return
    ex = _open(surface, conversation_key, user_key, text, user, conversation_id, rate_limit)
    if isinstance(ex, ChatEvent):
        yield ex
        return
    stored = False
    try:
        yield _start_event(ex)
        mode = mode or ("context" if ex.history else "hybrid")
        for event in get_engine().stream(ex.question.text, history=ex.history, mode=mode):
            chat_event = _translate(ex, event)
            if _ends_answer(chat_event):
                _finish(ex)  # stored before the client hears "done": it may act on it at once
                stored = True
            yield chat_event
    finally:
        if not stored:
            _finish(ex, "client_disconnected")


async def areply(
    *, surface: str, conversation_key: str, user_key: str, text: str, user: Any = None,
    conversation_id: int | None = None, mode: str | None = None, rate_limit: str | None = None,
) -> AsyncIterator[ChatEvent]:
    """The async twin of `reply` for the WebSocket consumer and the bots."""
    if not await await_warmup(settings.WARMUP_WAIT_SECONDS):
        yield _still_warming(surface)
        return
    ex = await _db(_open)(surface, conversation_key, user_key, text, user, conversation_id, rate_limit)
    if isinstance(ex, ChatEvent):
        yield ex
        return
    stored = False
    try:
        yield _start_event(ex)
        mode = mode or ("context" if ex.history else "hybrid")
        async for event in get_engine().astream(ex.question.text, history=ex.history, mode=mode):
            chat_event = _translate(ex, event)
            if _ends_answer(chat_event):
                await _db(_finish)(ex)
                stored = True
            yield chat_event
    finally:
        if not stored:
            await _db(_finish)(ex, "cancelled")


def record_feedback(*, message_id: int, value: int, surface: str, user_key: str, comment: str = "") -> tuple[Feedback, bool]:
    """Stores 👍/👎 on an assistant message; a user's second vote replaces the first.

    Returns the feedback and whether it was new.
    """
    if value not in (1, -1):
        raise ChatError("bad_value", "Feedback must be 1 (👍) or -1 (👎).")
    try:
        message = Message.objects.select_related("conversation").get(pk=message_id, role=Message.Role.ASSISTANT)
    except Message.DoesNotExist:
        raise ChatError("not_found", "No such answer.") from None
    try:
        with transaction.atomic():
            feedback, created = Feedback.objects.update_or_create(
                message=message, user_key=user_key,
                defaults={"value": value, "surface": surface, "comment": comment},
            )
    except IntegrityError:  # two clicks racing: the other one won, keep it
        feedback, created = Feedback.objects.get(message=message, user_key=user_key), False
    FEEDBACK.labels("up" if value == 1 else "down", surface).inc()
    log.info("chat.feedback", message_id=message.pk, value=value, surface=surface, new=created)
    return feedback, created


arecord_feedback = _db(record_feedback)


def has_conversation(*, surface: str, conversation_key: str) -> bool:
    """Whether `conversation_key` already names a conversation, e.g. a Slack thread the bot answered in."""
    return Conversation.objects.filter(surface=surface, external_key=conversation_key).exists()


ahas_conversation = _db(has_conversation)


@dataclass(frozen=True)
class StoredAnswer:
    """A finished answer as stored, for a surface that shows it again (Slack's "Share in channel")."""

    message_id: int
    question: str
    text: str
    citations: list[dict[str, Any]]
    user_key: str  # who asked
    provider: str
    error: str  # the fallback reason of an extractive answer, or why it did not finish


def stored_answer(*, message_id: int, surface: str) -> StoredAnswer | None:
    """The assistant message `message_id` of a `surface` conversation with its question, or None."""
    message = (Message.objects.select_related("conversation")
               .filter(pk=message_id, role=Message.Role.ASSISTANT, conversation__surface=surface).first())
    if message is None:
        return None
    question = (message.conversation.messages.filter(role=Message.Role.USER, pk__lt=message.pk)
                .order_by("-pk").values_list("text", flat=True).first())
    return StoredAnswer(message.pk, question or "", message.text, list(message.citations),
                        message.conversation.user_key, message.provider, message.error)


astored_answer = _db(stored_answer)

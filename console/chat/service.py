"""The chat service: the one entry point every surface (web, Slack, Discord, CLI) calls.

Given a surface, a conversation key, a user and a question, it loads the conversation's
recent history, asks the engine, yields typed events (console.chat.events) as they come and
stores the exchange: the question at once, the answer when it is done, or what there was of
it when the client went away. There is one path, async; `manage.py ask` runs it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import structlog
from django.conf import settings
from django.db import IntegrityError, transaction

from console.access.visibility import all_keys
from console.chat.access import Asker, scope_for, stored_scope
from console.chat.access import searchable as searchable_keys
from console.chat.events import (
    AnswerCitations,
    AnswerDone,
    AnswerError,
    AnswerStarted,
    AnswerToken,
    ChatError,
    ChatEvent,
)
from console.chat.history import recent_turns
from console.chat.metrics import CHAT_ANSWER_SECONDS, CHAT_QUESTIONS, FEEDBACK
from console.chat.orm import in_thread_pool, in_writer, writer
from console.chat.ratelimit import check_rate
from console.engine import get_engine
from console.models import Conversation, Feedback, Message
from console.ops import orphans
from console.ops.text_input import clean_text, text_problem
from console.ops.warmup import await_warmup
from console.syncing.origins import with_origins
from ragcore.types import Answer, Citation, CitationsEvent, DoneEvent, ErrorEvent, Event, TokenEvent, Turn

log = structlog.get_logger(__name__, component="chat")


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
    citations: tuple[Citation, ...] | None = None  # the answer's, with their origins (looked up once)


def _validate(text: str) -> str:
    # The one place every surface's question enters: no NUL or unpaired surrogate gets past it.
    text = clean_text(text or "").strip()
    if not text:
        raise ChatError("empty_question", "The question is empty.")
    limit = settings.CHAT_MAX_QUESTION_CHARS
    if len(text) > limit:
        raise ChatError("too_long", f"The question is {len(text)} characters; the limit is {limit}.")
    return text


Searchable = tuple[str, list[Turn], frozenset[str] | None]  # the question, its history, the collections it searches


def _begin(surface: str, conversation_key: str, user_key: str, text: str, user: Any, conversation_id: int | None,
           rate_limit: str | None, history_turns: int, searchable: Future[Searchable], asker: Asker) -> _Exchange:
    """Validates, rate-limits, finds the conversation and stores the question (in the writer's transaction).

    `searchable` gets the question, its history and the collections it may search as soon as they
    are known, before the rows are written and committed: the search needs nothing else, so it starts at once.
    """
    text = _validate(text)
    for name, key in (("conversation key", conversation_key), ("user key", user_key)):
        problem = text_problem(key)
        if problem:  # a cleaned key would name another conversation or user
            raise ChatError("bad_text", f"The {name} {problem}.")
    check_rate("user", f"{surface}:{user_key}", rate_limit or settings.CHAT_RATE_LIMIT_USER)
    created = False
    now = scope_for(asker)  # what this asker may search here and now (console.chat.access)
    if conversation_id is not None:
        conversation = Conversation.objects.select_for_update().get(pk=conversation_id, surface=surface)
        if conversation.user_key != user_key:
            raise ChatError("forbidden", "That conversation belongs to someone else.")
    else:
        conversation, created = Conversation.find_or_start(
            surface, conversation_key, likely_new=surface == Conversation.Surface.WEB,
            defaults={"user_key": user_key, "user": user if getattr(user, "pk", None) else None, "title": text[:200],
                      "scope": stored_scope(now)},  # kept for the conversation's life
        )
    check_rate("conversation", str(conversation.pk), settings.CHAT_RATE_LIMIT_CONVERSATION)
    # A conversation created just now has no history and a fresh updated_at: two queries fewer (every
    # web question opens one).
    history = [] if created else recent_turns(conversation, history_turns)
    keys = searchable_keys(conversation, now)
    searchable.set_result((text, history, keys))
    question, answer = Message.open_exchange(conversation, text, owner=orphans.process_token(),
                                             collections=sorted(all_keys() if keys is None else keys))
    if not created:
        conversation.save(update_fields=["updated_at"])
    return _Exchange(conversation, question, answer, history, time.perf_counter())


def _open(surface: str, conversation_key: str, user_key: str, text: str, user: Any, conversation_id: int | None,
          rate_limit: str | None, history_turns: int, searchable: Future[Searchable],
          asker: Asker) -> _Exchange | AnswerError:
    """`_begin`, or the fatal error event that refuses the question."""
    try:
        return _begin(surface, conversation_key, user_key, text, user, conversation_id, rate_limit, history_turns,
                      searchable, asker)
    except ChatError as exc:
        CHAT_QUESTIONS.labels(surface, "refused").inc()
        return AnswerError(exc.code, exc.message)
    except Conversation.DoesNotExist:
        CHAT_QUESTIONS.labels(surface, "refused").inc()
        return AnswerError("not_found", "No such conversation.")


def _still_warming(surface: str) -> AnswerError:
    """The server started moments ago and its model is not loaded after WARMUP_WAIT_SECONDS."""
    CHAT_QUESTIONS.labels(surface, "refused").inc()
    return AnswerError("warming_up", "Lorebot is still starting up (loading its model and indexes); ask again in a minute.")


def _translate(ex: _Exchange, event: Event) -> ChatEvent:
    if isinstance(event, TokenEvent):
        ex.parts.append(event.text)
        return AnswerToken(event.text)
    if isinstance(event, CitationsEvent):
        return AnswerCitations(event.citations)
    if isinstance(event, ErrorEvent):
        if event.fatal:
            ex.error = event.code
        return AnswerError(event.code, event.message, event.fatal)
    assert isinstance(event, DoneEvent)
    answer = ex.result = event.answer
    return AnswerDone(
        message_id=ex.answer.pk, usage=answer.usage, latency_ms=round((time.perf_counter() - ex.started) * 1000, 1),
        retrieval_ms=round(answer.retrieval_ms, 1), generation_ms=round(answer.generation_ms, 1), mode=answer.mode,
        provider=answer.provider, model=answer.model, extractive=answer.extractive,
        fallback_reason=answer.fallback_reason, fallback_detail=answer.fallback_detail, not_covered=answer.not_covered,
    )


def _ends_answer(event: ChatEvent) -> bool:
    return isinstance(event, AnswerDone) or (isinstance(event, AnswerError) and event.fatal)


def _finish(ex: _Exchange, interrupted: str = "") -> None:
    """Stores the answer: the finished one, or the part the user saw before leaving."""
    message = ex.answer
    latency_ms = round((time.perf_counter() - ex.started) * 1000, 1)
    result = ex.result
    if result is not None:
        citations = ex.citations if ex.citations is not None else with_origins(result.citations)
        message.store_answer(replace(result, citations=citations), latency_ms=latency_ms)
    else:
        message.store_partial("".join(ex.parts), error=interrupted or ex.error or "no_answer", latency_ms=latency_ms)
    surface = ex.conversation.surface
    outcome = "cancelled" if interrupted else "failed" if result is None else "extractive" if result.extractive else "answered"
    CHAT_QUESTIONS.labels(surface, outcome).inc()
    CHAT_ANSWER_SECONDS.labels(surface).observe(latency_ms / 1000)
    # `question` is replaced by its length in the logs unless LOG_CONTENT is on (console.ops.logs).
    log.info("chat.answered", conversation_id=ex.conversation.pk, message_id=message.pk,
             surface=surface, latency_ms=latency_ms, provider=message.provider,
             error=message.error, outcome=outcome, question=ex.question.text)


async def areply(
    *, surface: str, conversation_key: str, user_key: str, text: str, user: Any = None,
    conversation_id: int | None = None, mode: str | None = None, rate_limit: str | None = None,
    asker: Asker | None = None,
) -> AsyncGenerator[ChatEvent, None]:
    """Answers one question, yielding AnswerStarted, AnswerTokens, AnswerCitations, AnswerDone (or AnswerError).

    `asker`: who asks from where (platform ids; console.chat.access decides what that may search).
    Without it the question searches what `user` may see (no user: only collections open to everyone).

    `mode` forces a retrieval mode (the engine picks one otherwise). `rate_limit` ("N/seconds")
    replaces CHAT_RATE_LIMIT_USER for surfaces that have their own (the bots). Close the stream
    (`aclosing`) when stopping early: what the user saw is stored then, not whenever it is collected.
    """
    if not await await_warmup(settings.WARMUP_WAIT_SECONDS):
        yield _still_warming(surface)
        return
    engine = get_engine()
    searchable: Future[Searchable] = Future()
    opening = asyncio.ensure_future(in_writer(_open)(surface, conversation_key, user_key, text, user, conversation_id,
                                                     rate_limit, engine.settings.history_turns, searchable,
                                                     asker or Asker(user=user)))
    first: asyncio.Future[Event] | None = None
    events: AsyncIterator[Event] | None = None
    try:
        # The search starts once the question and its history are known, while the rows are committed.
        known: asyncio.Future[Any] = asyncio.wrap_future(searchable)
        await asyncio.wait([opening, known], return_when=asyncio.FIRST_COMPLETED)
        if searchable.done():
            question, history, keys = searchable.result()
            events = engine.astream(question, history=history, mode=mode, collections=keys)
            first = asyncio.ensure_future(anext(events))
        ex = await opening
    except BaseException:  # the client left before the question was stored: store it as cancelled once it is
        opening.add_done_callback(_cancel_when_opened)
        await _abandon(first, events)
        raise
    if isinstance(ex, AnswerError):
        await _abandon(first, events)
        yield ex
        return
    assert first is not None and events is not None  # a stored question had its history read first
    stored = False
    # This process's sweeper beats for the answer and finishes answers orphaned by dead processes.
    keep_text = orphans.start_sweeper() or orphans.sweeper.running
    kept_at = time.monotonic()
    try:
        yield AnswerStarted(ex.conversation.pk, ex.answer.pk, ex.question.pk)
        event: Event | None = await first
        while event is not None:
            if isinstance(event, CitationsEvent) and event.citations:  # synced documents say where and when
                event = replace(event, citations=await in_thread_pool(with_origins)(event.citations))
                ex.citations = event.citations  # the answer stores these: one lookup per answer, not two
            chat_event = _translate(ex, event)
            if _ends_answer(chat_event):
                await in_writer(_finish)(ex)  # stored before the client hears "done": it may act on it at once
                stored = True
            elif keep_text and ex.parts and time.monotonic() - kept_at >= orphans.heartbeat_seconds():
                # What a process killed now leaves behind: the partial answer, finished by the sweep.
                kept_at = time.monotonic()
                await in_thread_pool(ex.answer.beat)("".join(ex.parts))
            yield chat_event
            event = await anext(events, None)
    finally:
        await _abandon(first, events)
        if not stored:
            await in_writer(_finish)(ex, "cancelled")


def _cancel_when_opened(opening: asyncio.Future[_Exchange | AnswerError]) -> None:
    ex = None if opening.cancelled() or opening.exception() is not None else opening.result()
    if isinstance(ex, _Exchange):
        writer().submit(partial(_finish, ex, "cancelled"))


async def _abandon(first: asyncio.Future[Event] | None, events: AsyncIterator[Event] | None) -> None:
    """Stops an answer's engine stream (a refused question's search, or a client that left)."""
    if first is not None and not first.done():
        first.cancel()
        with contextlib.suppress(BaseException):
            await first
    close = getattr(events, "aclose", None)  # the engine's stream is an async generator
    if close is not None:
        await close()


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


arecord_feedback = in_thread_pool(record_feedback)


def warm_up() -> None:
    """Loads the model and opens the indexes before the first question (the bots and the CLI call it at start)."""
    get_engine().warmup()


async def aclose() -> None:
    """Closes this event loop's connections to the LLM: a command or bot calls it before `asyncio.run` ends its loop
    (an open aiohttp session is logged as an error when it is collected)."""
    generator = get_engine().generator
    if generator is not None:
        await generator.aclose()

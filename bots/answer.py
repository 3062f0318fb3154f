"""Follows one answer of the chat service and hands the platform throttled snapshots of it.

Slack and Discord show a streamed answer by editing one message, and both limit how often
a message may be edited; `follow` turns the token stream into at most one update per
interval, then one final update. It also owns closing the stream, for every surface.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass

from bots.pacing import ChannelBudget
from bots.text import streamable
from console import chat


@dataclass
class AnswerSnapshot:
    """What one answer has produced so far."""

    message_id: int | None = None  # the stored assistant message, for feedback buttons
    conversation_id: int | None = None
    text: str = ""
    citations: tuple[chat.Citation, ...] = ()
    error_code: str = ""  # a fatal error: the question was refused or could not be answered
    error_message: str = ""
    extractive: bool = False
    fallback_reason: str = ""  # why the answer is extractive although an LLM is configured
    not_covered: bool = False  # the documents do not answer the question
    finished: bool = False
    updates: int = 0  # how many times `update` was called

    @property
    def failed(self) -> bool:
        return bool(self.error_code)

    @property
    def progress_text(self) -> str:
        """What a progress edit shows: the text so far up to a word and markup boundary (see `streamable`)."""
        return streamable(self.text)


Update = Callable[[AnswerSnapshot], Awaitable[None]]


async def follow(
    events: AsyncGenerator[chat.ChatEvent, None], update: Update, *, interval: float,
    budget: ChannelBudget | None = None,
    clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> AnswerSnapshot:
    """Consumes an answer's events, calling `update` with the text so far as soon as the first
    words can be shown (`progress_text`: whole words, no half-open markup), then at most once per
    `interval` seconds, and once more at the end with
    `finished` set (also after a fatal error, whose code and message the snapshot then carries).
    The final update keeps the interval too, so a message is never edited faster than that.
    With a `budget` (the channel's, shared with the other answers there) a progress update is made
    only when the budget has a slot free, and the final one waits for its slot.

    The stream is closed on the way out, however that happens (an update that raises, a cancelled
    answer), so the chat service stores what was said at once rather than whenever it is collected.
    """
    snap = AnswerSnapshot()
    last = float("-inf")  # the first words are shown at once: the time to the first answer text matters most
    shown = ""
    async with aclosing(events):
        async for event in events:
            if isinstance(event, chat.AnswerStarted):
                snap.message_id, snap.conversation_id = event.message_id, event.conversation_id
            elif isinstance(event, chat.AnswerToken):
                snap.text += event.text
                visible = snap.progress_text
                if (clock() - last >= interval and visible and visible != shown
                        and (budget is None or budget.try_take(id(snap)))):
                    await _call(update, snap)
                    shown, last = visible, clock()
            elif isinstance(event, chat.AnswerCitations):
                snap.citations = event.items
            elif isinstance(event, chat.AnswerError) and event.fatal:
                snap.error_code, snap.error_message = event.code, event.message
            elif isinstance(event, chat.AnswerDone):
                snap.extractive = event.extractive
                snap.fallback_reason = event.fallback_reason
                snap.not_covered = event.not_covered
    snap.finished = True
    if interval != float("inf"):
        await sleep(max(0.0, interval - (clock() - last)))
    if budget is not None:
        budget.leave(id(snap))
        await budget.take()
    await _call(update, snap)
    return snap


async def _call(update: Update, snap: AnswerSnapshot) -> None:
    snap.updates += 1
    await update(snap)

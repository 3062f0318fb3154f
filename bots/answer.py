"""Follows one answer of the chat service and hands the platform throttled snapshots of it.

Slack and Discord show a streamed answer by editing one message, and both limit how often
a message may be edited; `follow` turns the token stream into at most one update per
interval, then one final update.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from console.chat.service import ChatEvent


@dataclass
class AnswerSnapshot:
    """What one answer has produced so far."""

    message_id: int | None = None  # the stored assistant message, for feedback buttons
    conversation_id: int | None = None
    text: str = ""
    citations: list[dict[str, Any]] = field(default_factory=list)
    error_code: str = ""  # a fatal error: the question was refused or could not be answered
    error_message: str = ""
    extractive: bool = False
    fallback_reason: str = ""  # why the answer is extractive although an LLM is configured
    finished: bool = False
    updates: int = 0  # how many times `update` was called

    @property
    def failed(self) -> bool:
        return bool(self.error_code)


Update = Callable[[AnswerSnapshot], Awaitable[None]]


async def follow(
    events: AsyncIterator[ChatEvent], update: Update, *, interval: float,
    clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> AnswerSnapshot:
    """Consumes an answer's events, calling `update` with the text so far as soon as the first
    words arrive, then at most once per `interval` seconds, and once more at the end with
    `finished` set (also after a fatal error, whose code and message the snapshot then carries).
    The final update keeps the interval too, so a message is never edited faster than that.
    """
    snap = AnswerSnapshot()
    last = float("-inf")  # the first words are shown at once: the time to the first answer text matters most
    shown = ""
    async for event in events:
        data = event.data
        if event.type == "start":
            snap.message_id, snap.conversation_id = data["message_id"], data["conversation_id"]
        elif event.type == "token":
            snap.text += data["text"]
            if clock() - last >= interval and snap.text.strip() and snap.text != shown:
                await _call(update, snap)
                shown, last = snap.text, clock()
        elif event.type == "citations":
            snap.citations = list(data["items"])
        elif event.type == "error" and data.get("fatal", True):
            snap.error_code, snap.error_message = data["code"], data["message"]
        elif event.type == "done":
            snap.extractive = bool(data.get("extractive"))
            snap.fallback_reason = data.get("fallback_reason", "")
    snap.finished = True
    if interval != float("inf"):
        await sleep(max(0.0, interval - (clock() - last)))
    await _call(update, snap)
    return snap


async def _call(update: Update, snap: AnswerSnapshot) -> None:
    snap.updates += 1
    await update(snap)

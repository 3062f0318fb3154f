"""One answer, from the chat service's event stream to Discord messages."""

from __future__ import annotations

import asyncio
import time

import discord
import structlog
from django.conf import settings

from bots.answer import AnswerSnapshot, follow
from bots.discord import render
from bots.discord.conversations import remember
from bots.discord.feedback import feedback_view
from bots.discord.outlets import Outlet
from bots.metrics import BOT_FIRST_REPLY_SECONDS, BOT_MESSAGE_EDITS
from console import chat
from console.ops.metrics import PIPELINE_ERRORS

log = structlog.get_logger(__name__, component="discord")

REFUSALS = {"rate_limited": "rate_limited", "empty_question": "refused", "too_long": "refused"}


async def deliver(outlet: Outlet, *, question: str, conversation_key: str, user_id: int, received: float) -> str:
    """Shows the answer to `question` in `outlet`, streamed; returns the outcome for BOT_EVENTS.

    Never raises for a failed answer: the user gets an apology in place of it and the bot goes on.
    A cancelled answer (the bot is shutting down) is closed with an apology too.
    """
    bound = log.bind(conversation_key=conversation_key, user_id=user_id)
    try:
        placeholder = await outlet.open(render.PLACEHOLDER)
        BOT_FIRST_REPLY_SECONDS.labels("discord").observe(time.monotonic() - received)
        if placeholder is not None and outlet.remembered:
            await remember([placeholder], conversation_key)  # a reply to it mid-answer continues too
        events = chat.areply(surface="discord", conversation_key=conversation_key, user_key=str(user_id),
                             text=question, rate_limit=settings.DISCORD_RATE_LIMIT_USER)

        async def update(snap: AnswerSnapshot) -> None:
            if snap.finished:
                await _show_final(outlet, snap, conversation_key)
            else:
                await _show_progress(outlet, snap)

        snap = await follow(events, update, interval=settings.DISCORD_EDIT_INTERVAL)
    except asyncio.CancelledError:
        bound.warning("discord.answer_cancelled")
        await _apologize(outlet, render.SHUTDOWN_APOLOGY)
        raise
    except Exception:
        PIPELINE_ERRORS.labels("discord").inc()
        bound.exception("discord.answer_failed")
        await _apologize(outlet, render.APOLOGY)
        return "failed"
    BOT_MESSAGE_EDITS.labels("discord").observe(snap.updates)
    bound.info("discord.answered", message_id=snap.message_id, edits=snap.updates, error=snap.error_code)
    if snap.failed:
        return REFUSALS.get(snap.error_code, "failed")
    return "answered"


async def _show_progress(outlet: Outlet, snap: AnswerSnapshot) -> None:
    try:
        await outlet.edit(render.progress(snap.progress_text))
    except discord.HTTPException as exc:  # a lost intermediate edit is harmless: the final one follows
        log.warning("discord.edit_failed", status=exc.status, code=exc.code)


async def _show_final(outlet: Outlet, snap: AnswerSnapshot, conversation_key: str) -> None:
    """The whole answer in as many messages as it needs; sources and 👍/👎 on the last."""
    pieces = render.final_pieces(snap)
    view = feedback_view(snap.message_id) if snap.message_id and not snap.failed else None
    last = len(pieces) - 1
    posted = [await outlet.edit(pieces[0], view if last == 0 else None)]
    for i, piece in enumerate(pieces[1:], start=1):
        posted.append(await outlet.add(piece, view if i == last else None))
    if outlet.remembered:
        await remember([m for m in posted if m is not None], conversation_key)


async def _apologize(outlet: Outlet, text: str) -> None:
    try:
        await outlet.edit(text)
    except Exception as exc:  # nothing more to do for this answer; the bot itself carries on
        log.warning("discord.apology_failed", error=f"{type(exc).__name__}: {exc}")

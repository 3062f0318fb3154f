"""One answer, from the chat service's event stream to Discord messages."""

from __future__ import annotations

import asyncio
import functools
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
from bots.pacing import BUDGETS, ChannelBudget, write_finally
from console import chat
from console.ops.metrics import PIPELINE_ERRORS

log = structlog.get_logger(__name__, component="discord")

REFUSALS = {"rate_limited": "rate_limited", "empty_question": "refused", "too_long": "refused"}


async def deliver(outlet: Outlet, *, question: str, conversation_key: str, user_id: int, received: float,
                  asker: chat.Asker) -> str:
    """Shows the answer to `question` in `outlet`, streamed; returns the outcome for BOT_EVENTS.

    Never raises for a failed answer: the user gets an apology in place of it and the bot goes on.
    A cancelled answer (the bot is shutting down) is closed with an apology too. `asker` says where
    the question comes from (server, channel, user), which decides the collections it searches.
    """
    bound = log.bind(conversation_key=conversation_key, user_id=user_id)
    try:
        placeholder = await outlet.open(render.PLACEHOLDER)
        BOT_FIRST_REPLY_SECONDS.labels("discord").observe(time.monotonic() - received)
        if placeholder is not None and outlet.remembered:
            await remember([placeholder], conversation_key)  # a reply to it mid-answer continues too
        events = chat.areply(surface="discord", conversation_key=conversation_key, user_key=str(user_id),
                             text=question, rate_limit=settings.DISCORD_RATE_LIMIT_USER, asker=asker)

        budget = budget_for(outlet.channel_id)  # shared with every answer in the channel

        async def update(snap: AnswerSnapshot) -> None:
            if snap.finished:
                await _show_final(outlet, snap, conversation_key, budget)
            else:
                await _show_progress(outlet, snap, budget)

        snap = await follow(events, update, interval=settings.DISCORD_EDIT_INTERVAL, budget=budget)
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


def budget_for(channel_id: int) -> ChannelBudget:
    """The channel's shared budget, DISCORD_CHANNEL_EDITS_PER_MINUTE writes a minute."""
    return BUDGETS.get("discord", str(channel_id), settings.DISCORD_CHANNEL_EDITS_PER_MINUTE)


def retry_after(exc: Exception) -> float | None:
    """Seconds Discord asks to wait when `exc` is a 429 discord.py gave up on, else None.

    discord.py 2.7 retries a 429 itself only when the response has a `Via` header (it takes any
    other 429 for a Cloudflare ban, discord/http.py), which Discord's docs do not promise; so the
    documented headers are read here: Retry-After, else X-RateLimit-Reset-After (seconds).
    """
    if not isinstance(exc, discord.HTTPException) or exc.status != 429:
        return None
    headers = getattr(exc.response, "headers", None) or {}
    for name in ("Retry-After", "X-RateLimit-Reset-After"):
        try:
            return max(0.0, float(headers[name]))
        except (KeyError, TypeError, ValueError):
            continue
    return 1.0


async def _show_progress(outlet: Outlet, snap: AnswerSnapshot, budget: ChannelBudget) -> None:
    try:
        await outlet.edit(render.progress(snap.progress_text))
    except discord.HTTPException as exc:  # a lost intermediate edit is harmless: the final one follows
        wait = retry_after(exc)
        if wait is not None:
            budget.hold(wait)  # and no answer in the channel edits before Discord's bucket resets
        log.warning("discord.edit_failed", status=exc.status, code=exc.code, retry_after=wait)


async def _show_final(outlet: Outlet, snap: AnswerSnapshot, conversation_key: str, budget: ChannelBudget) -> None:
    """The whole answer in as many messages as it needs; sources and 👍/👎 on the last.

    Each write waits out a 429 (discord.py's own retry or not) and is tried again, so the final text
    is never lost to a rate limit."""
    pieces = render.final_pieces(snap)
    view = feedback_view(snap.message_id) if snap.message_id and not snap.failed else None
    last = len(pieces) - 1
    posted = [await write_finally(budget, lambda: outlet.edit(pieces[0], view if last == 0 else None), retry_after,
                                  what="edit")]
    for i, piece in enumerate(pieces[1:], start=1):
        await budget.take()
        posted.append(await write_finally(
            budget, functools.partial(outlet.add, piece, view if i == last else None), retry_after, what="post"))
    if outlet.remembered:
        await remember([m for m in posted if m is not None], conversation_key)


async def _apologize(outlet: Outlet, text: str) -> None:
    try:
        await outlet.edit(text)
    except Exception as exc:  # nothing more to do for this answer; the bot itself carries on
        log.warning("discord.apology_failed", error=f"{type(exc).__name__}: {exc}")

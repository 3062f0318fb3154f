"""What the bot does with a question: 👀, a placeholder in the thread, the answer streamed into it.

Each answer runs in its own task (`spawn`), after Slack has been acknowledged; whatever goes wrong
in one answer is logged, counted and apologised for there, and never reaches another.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import structlog
from django.conf import settings
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bots.answer import AnswerSnapshot, Update, follow
from bots.metrics import BOT_API_ERRORS, BOT_EVENTS, BOT_FIRST_REPLY_SECONDS, BOT_MESSAGE_EDITS
from bots.pacing import ChannelBudget, write_finally
from bots.slack import blocks, ratelimits
from bots.slack.blocks import SlackMessage
from console import chat
from console.ops.logs import bind_context
from console.ops.metrics import PIPELINE_ERRORS

log = structlog.get_logger(__name__, component="slack")

PLATFORM = "slack"
Respond = Callable[..., Awaitable[Any]]

_tasks: set[asyncio.Task[None]] = set()


def spawn(work: Coroutine[Any, Any, None], event_id: str = "") -> asyncio.Task[None]:
    """Runs one answer in the background, holding a reference so that it is not garbage-collected.

    The task's log events carry `event_id` (it gets a copy of the context, so the binding stays in it).
    """
    context = contextvars.copy_context()
    if event_id:
        context.run(bind_context, event_id=event_id)
    task = asyncio.get_running_loop().create_task(work, context=context)
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
    return task


async def drain(timeout: float) -> int:
    """Waits up to `timeout` seconds for the answers in flight (at shutdown); returns how many were left."""
    pending = [t for t in _tasks if not t.done()]
    if pending:
        await asyncio.wait(pending, timeout=timeout)
    return sum(not t.done() for t in pending)


@dataclass(frozen=True)
class Question:
    """One question asked in Slack, and where its answer goes."""

    team: str
    channel: str
    user: str
    text: str
    ts: str  # the message that asked
    thread_ts: str  # the thread the answer goes to: the question's own, or the one it was asked in
    received: float  # time.monotonic() when the event arrived
    event_id: str = ""  # Slack's event_id, or the slash command's trigger_id: in every log event of the answer

    @property
    def conversation_key(self) -> str:
        return f"{self.team}:{self.channel}:{self.thread_ts}"

    @property
    def asker(self) -> chat.Asker:
        """Who asks from where, for the chat service to decide what it may search (a "D…" channel is a DM)."""
        return chat.Asker(platform=PLATFORM, workspace=self.team, channel=self.channel, external_user=self.user,
                          direct=self.channel.startswith("D"))


def api_error(exc: SlackApiError, action: str, **where: Any) -> str:
    """Logs and counts an error of Slack's Web API; returns its code (e.g. "not_in_channel")."""
    code = str(exc.response.get("error") or exc.response.status_code)
    BOT_API_ERRORS.labels(PLATFORM, code).inc()
    reasons = {
        "channel_not_found": "the channel does not exist or the bot cannot see it",
        "not_in_channel": "the bot is not a member of the channel; invite it with /invite",
        "ratelimited": "Slack's rate limit, still exceeded after waiting as Slack asked",
        "invalid_auth": "SLACK_BOT_TOKEN is not valid",
        "missing_scope": f"the app lacks a scope ({exc.response.get('needed', '?')}); see bots/slack/manifest.yml",
    }
    log.warning("slack.api_failed", action=action, error=code, reason=reasons.get(code, "see Slack's error code"),
                **where)
    return code


async def answer_in_thread(client: AsyncWebClient, question: Question) -> None:
    """Reacts 👀, posts a placeholder in the thread, then edits it as the answer streams."""
    where = {"channel": question.channel, "thread_ts": question.thread_ts}
    try:
        _, placeholder = await asyncio.gather(
            _react(client, question),
            _post(client, question.channel, question.thread_ts, blocks.thinking_message()),
        )
    except SlackApiError as exc:
        api_error(exc, "post_placeholder", **where)
        BOT_EVENTS.labels(PLATFORM, "failed").inc()
        return
    BOT_FIRST_REPLY_SECONDS.labels(PLATFORM).observe(time.monotonic() - question.received)
    ts = str(placeholder.get("ts") or "")
    if not ts:  # never chat.update without a ts (it would edit "None"): the answer is posted instead
        log.warning("slack.placeholder_without_ts", **where)

    budget = ratelimits.budget_for(question.channel)  # shared with every answer in the channel

    async def update(snap: AnswerSnapshot) -> None:
        if not snap.finished:
            if ts:
                await _edit(client, question.channel, ts, blocks.progress_message(snap.progress_text), budget=budget)
            return
        messages = blocks.answer_messages(snap)
        if ts:
            await _edit(client, question.channel, ts, messages.pop(0), budget=budget, final=True)
        for i, message in enumerate(messages):  # an answer longer than one message continues in the thread
            if i or ts:  # the first write of the final answer already has its slot (follow took it)
                await budget.take()
            await _post_finally(client, question, message, budget)

    snap = await _follow(question, update, budget=budget)
    if snap is None:  # an unexpected fault: say so in the placeholder rather than leave it hanging
        if ts:
            await _edit(client, question.channel, ts, _sorry(), budget=budget, final=True)
        else:
            try:
                await _post(client, question.channel, question.thread_ts, _sorry())
            except SlackApiError as exc:
                api_error(exc, "post_apology", **where)
        return
    BOT_MESSAGE_EDITS.labels(PLATFORM).observe(snap.updates)
    log.info("slack.answered", message_id=snap.message_id, edits=snap.updates, error=snap.error_code, **where)


async def answer_privately(respond: Respond, question: Question) -> None:
    """/ask: the whole answer at once, visible only to the asker, with a "Share in channel" button.

    response_url may be used five times in 30 minutes, so a private answer is not streamed.
    """
    async def update(snap: AnswerSnapshot) -> None:
        if snap.finished:
            for i, message in enumerate(blocks.answer_messages(snap, shareable=True)):
                await respond(text=message.text, blocks=message.blocks, response_type="ephemeral",
                              replace_original=i == 0)

    if await _follow(question, update, interval=float("inf")) is None:
        sorry = _sorry()
        await respond(text=sorry.text, blocks=sorry.blocks, response_type="ephemeral", replace_original=True)


async def link_account(client: AsyncWebClient, question: Question, code: str) -> None:
    """`link CODE` in a DM: the chat service links this Slack user (or says why not); the reply goes in the DM.

    The code never reaches the chat service as a question, so it is never stored or logged as one.
    """
    result = await chat.aredeem_code(code, platform=PLATFORM, external_user=question.asker.link_key)
    BOT_EVENTS.labels(PLATFORM, "linked" if result.linked else "refused").inc()
    try:
        await _post(client, question.channel, None, SlackMessage(result.text, [blocks.section(blocks.escape(result.text))]))
    except SlackApiError as exc:
        api_error(exc, "link_reply", channel=question.channel)


async def refuse_exposed_code(client: AsyncWebClient, question: Question, code: str) -> None:
    """`@Lorebot link CODE` in a channel: everyone there could read the code, so it stops working."""
    result = await chat.acancel_code(code, platform=PLATFORM)
    BOT_EVENTS.labels(PLATFORM, "refused").inc()
    try:
        await client.chat_postEphemeral(channel=question.channel, user=question.user, text=result.text,
                                        thread_ts=question.thread_ts if question.thread_ts != question.ts else None)
    except SlackApiError as exc:
        api_error(exc, "link_warning", channel=question.channel)


async def share(client: AsyncWebClient, respond: Respond, *, channel: str, user: str, message_id: int) -> None:
    """Posts a private /ask answer in the channel for everyone, then removes the private copy."""
    stored = await chat.astored_answer(message_id=message_id, surface=PLATFORM)
    if stored is None or stored.user_key != user:
        await respond(text="That answer cannot be shared.", response_type="ephemeral", replace_original=False)
        return
    snap = AnswerSnapshot(message_id=stored.message_id, text=stored.text, citations=stored.citations,
                          extractive=stored.provider in ("extractive", "none"), fallback_reason=stored.error,
                          not_covered=stored.not_covered, finished=True)
    asked = blocks.context(f"{blocks.mention(user)} asked: {blocks.escape(stored.question)}")
    first, *more = blocks.answer_messages(snap)
    try:
        posted = await _post(client, channel, None, SlackMessage(first.text, [asked, *first.blocks]))
        for message in more:
            await _post(client, channel, str(posted["ts"]), message)
    except SlackApiError as exc:
        code = api_error(exc, "share", channel=channel)
        hint = " Invite me with `/invite @Lorebot` first." if code in ("not_in_channel", "channel_not_found") else ""
        await respond(text=f"I could not post in this channel ({code}).{hint}", response_type="ephemeral",
                      replace_original=False)
        return
    BOT_EVENTS.labels(PLATFORM, "shared").inc()
    await respond(delete_original=True)


async def record_feedback(client: AsyncWebClient, respond: Respond, *, user: str, message_id: int, value: int,
                          message: dict[str, Any] | None, channel: str) -> None:
    """Stores 👍/👎 and thanks the user once per message: in the message itself, or privately for /ask."""
    try:
        _, created = await chat.arecord_feedback(message_id=message_id, value=value, surface=PLATFORM, user_key=user)
    except chat.ChatError as exc:
        BOT_EVENTS.labels(PLATFORM, "refused").inc()
        await respond(text=blocks.escape(exc.message), response_type="ephemeral", replace_original=False)
        return
    BOT_EVENTS.labels(PLATFORM, "feedback").inc()
    if not created:  # a changed vote is stored, but thanked only once
        return
    if message is None or not message.get("ts"):  # /ask's private answer: Slack sends no copy of an ephemeral message
        await respond(text="Thanks for the feedback!", response_type="ephemeral", replace_original=False)
        return
    try:
        await client.chat_update(channel=channel, ts=message["ts"], text=message.get("text", ""),
                                 blocks=blocks.with_thanks(message.get("blocks", []), user))
    except SlackApiError as exc:
        api_error(exc, "thank", channel=channel)


async def _follow(question: Question, update: Update, *, interval: float | None = None,
                  budget: ChannelBudget | None = None) -> AnswerSnapshot | None:
    """Runs the chat service for `question`, counting the outcome; None after an unexpected fault."""
    try:
        snap = await follow(
            chat.areply(surface=PLATFORM, conversation_key=question.conversation_key, user_key=question.user,
                        text=question.text, rate_limit=settings.SLACK_RATE_LIMIT_USER, asker=question.asker),
            update, interval=settings.SLACK_UPDATE_INTERVAL if interval is None else interval, budget=budget,
        )
    except Exception:
        PIPELINE_ERRORS.labels(PLATFORM).inc()
        BOT_EVENTS.labels(PLATFORM, "failed").inc()
        log.exception("slack.answer_failed", channel=question.channel, thread_ts=question.thread_ts)
        return None
    outcome = "answered" if not snap.failed else "rate_limited" if snap.error_code == "rate_limited" else "failed"
    BOT_EVENTS.labels(PLATFORM, outcome).inc()
    return snap


async def _react(client: AsyncWebClient, question: Question) -> None:
    """👀 on the question; the answer goes on without it (e.g. when it was already there)."""
    try:
        await client.reactions_add(channel=question.channel, timestamp=question.ts, name="eyes")
    except SlackApiError as exc:
        api_error(exc, "react", channel=question.channel)


async def _post(client: AsyncWebClient, channel: str, thread_ts: str | None, message: SlackMessage) -> Any:
    return await client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=message.text,
                                         blocks=message.blocks, unfurl_links=False, unfurl_media=False)


async def _edit(client: AsyncWebClient, channel: str, ts: str, message: SlackMessage, *, budget: ChannelBudget,
                final: bool = False) -> None:
    """chat.update, paced by the channel's budget. A progress edit Slack refuses is skipped (the next one
    shows more; a `ratelimited` holds the whole channel for Retry-After); a final one is tried again
    after the hold, and logged if it still fails."""
    def write() -> Awaitable[Any]:
        return ratelimits.paced(client.chat_update(channel=channel, ts=ts, text=message.text, blocks=message.blocks))

    try:
        if final:
            await write_finally(budget, write, ratelimits.retry_after, what="chat.update")
        else:
            await write()
    except SlackApiError as exc:
        wait = ratelimits.retry_after(exc)
        if wait is not None:
            budget.hold(wait)
        api_error(exc, "final_edit" if final else "progress_edit", channel=channel, ts=ts)


async def _post_finally(client: AsyncWebClient, question: Question, message: SlackMessage,
                        budget: ChannelBudget) -> None:
    """Posts one more piece of a final answer in the thread, tried again after a `ratelimited`."""
    def write() -> Awaitable[Any]:
        return ratelimits.paced(_post(client, question.channel, question.thread_ts, message))

    await write_finally(budget, write, ratelimits.retry_after, what="chat.postMessage")


def _sorry() -> SlackMessage:
    return SlackMessage(blocks.SORRY, [blocks.context(f":warning: {blocks.SORRY}")])

"""The slack-bolt app: which Slack events Lorebot answers, and how each is acknowledged.

Why AsyncApp: the chat service is async (`chat.areply`), daphne runs Django's async views on its
asyncio loop, and Socket Mode has an asyncio handler; one AsyncApp serves both ways of connecting.
With `process_before_response=False` bolt acknowledges an event before its listener runs, and the
listeners only start an answer task (`answering.spawn`), so the HTTP response (or the Socket Mode
ack) goes back at once and the answer is never produced inside the request.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from functools import lru_cache
from typing import Any

import structlog
from django.conf import settings
from django.core.cache import cache
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.response import BoltResponse
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler, async_default_handlers
from slack_sdk.web.async_client import AsyncWebClient

from bots.metrics import BOT_EVENTS
from bots.slack import answering, authors, blocks
from bots.slack.answering import PLATFORM, Question
from console import chat
from console.ops.metrics import PIPELINE_ERRORS

log = structlog.get_logger(__name__, component="slack")

# Slack retries an event it thinks was not acknowledged 3 times within about 5 minutes
# (https://docs.slack.dev/apis/events-api/#retries); remembering ids for an hour covers them all.
EVENT_ID_TTL = 3600
# Message subtypes that are still someone asking something; the rest are edits, joins… ("bot_message"
# is a question only from a bot SLACK_ALLOWED_BOTS names; authors.ignored_author decides that first).
_QUESTION_SUBTYPES = (None, "file_share", "thread_broadcast", "bot_message")


def build_app() -> AsyncApp:
    """An AsyncApp wired to Lorebot's listeners, its Web API client pointed at SLACK_API_URL."""
    client = AsyncWebClient(
        token=settings.SLACK_BOT_TOKEN, base_url=settings.SLACK_API_URL, timeout=10,
        # ratelimited (429): wait as long as Retry-After says, then try again.
        retry_handlers=[*async_default_handlers(), AsyncRateLimitErrorRetryHandler(max_retry_count=3)],
    )
    app = AsyncApp(
        client=client,
        signing_secret=settings.SLACK_SIGNING_SECRET,  # passed explicitly: bolt would read the environment
        # views.events checks signatures before bolt sees the body (so that a forged request is counted
        # and malformed JSON is a 400), and Socket Mode needs none.
        request_verification_enabled=False,
        process_before_response=False,
        name="lorebot",
    )
    app.use(_once_per_event)
    app.event("app_mention")(_on_mention)
    app.event("message")(_on_message)
    app.command("/ask")(_on_ask)
    app.action(re.compile(f"^({blocks.FEEDBACK_UP}|{blocks.FEEDBACK_DOWN})$"))(_on_feedback)
    app.action(blocks.SHARE)(_on_share)
    app.event(re.compile(".*"))(_on_other_event)  # last: acknowledged and ignored, so Slack does not retry
    app.error(_on_error)
    return app


@lru_cache(maxsize=1)
def get_app() -> AsyncApp:
    """The process's app, built on first use (tests change settings and call get_app.cache_clear())."""
    return build_app()


def allowed(channel: str) -> bool:
    """SLACK_ALLOWED_CHANNELS, if set, names the channels the bot answers in; DMs are always answered."""
    return not settings.SLACK_ALLOWED_CHANNELS or channel in settings.SLACK_ALLOWED_CHANNELS or channel.startswith("D")


def question_text(text: str, bot_user_id: str | None) -> str:
    """The message without the bot's own mention."""
    if bot_user_id:
        text = text.replace(f"<@{bot_user_id}>", " ")
    return " ".join(text.split())


async def _once_per_event(body: dict[str, Any], context: AsyncBoltContext, req: Any,
                          next: Callable[[], Awaitable[None]]) -> BoltResponse | None:
    """Each event is answered once: a retry or duplicate delivery of an event_id seen before is only acked.

    The ids live in Django's cache, so processes sharing a cache (Redis) share them too.
    """
    context.setdefault("received_at", time.monotonic())
    event_id = body.get("event_id")
    context["event_id"] = event_id or body.get("trigger_id") or ""
    if body.get("type") == "event_callback" and event_id:
        if not await _first_delivery(event_id):
            retry = (req.headers.get("x-slack-retry-num") or [body.get("retry_attempt", "")])[0]
            BOT_EVENTS.labels(PLATFORM, "duplicate").inc()
            log.info("slack.event_duplicate", event_id=event_id, retry=retry)
            return BoltResponse(status=200, body="")
    await next()
    return None


async def _first_delivery(event_id: str) -> bool:
    """Records `event_id`; False if it was seen before. With the cache down, every event counts as new:
    a rare double answer is better than none."""
    try:
        return bool(await cache.aadd(f"slack-event:{event_id}", 1, timeout=EVENT_ID_TTL))
    except Exception as exc:
        PIPELINE_ERRORS.labels("cache").inc()
        log.warning("slack.dedupe_unavailable", event_id=event_id, error=f"{type(exc).__name__}: {exc}")
        return True


def _from_ignored_author(event: dict[str, Any], context: AsyncBoltContext) -> bool:
    """Lorebot itself, or a bot SLACK_ALLOWED_BOTS does not name: never answered (two bots would loop)."""
    reason = authors.ignored_author(event, bot_user_id=context.bot_user_id, bot_id=context.bot_id)
    if reason:
        BOT_EVENTS.labels(PLATFORM, "ignored").inc()
        log.info("slack.author_ignored", reason=reason, type=event.get("type"), channel=event.get("channel"),
                 bot=sorted(authors.bot_ids(event)))
    return bool(reason)


def _question(event: dict[str, Any], context: AsyncBoltContext, text: str) -> Question:
    user = event.get("user") or next(iter(sorted(authors.bot_ids(event))), "")
    return Question(
        team=str(context.team_id or event.get("team") or ""), channel=event["channel"], user=user,
        text=text, ts=event["ts"], thread_ts=event.get("thread_ts") or event["ts"],
        received=context.get("received_at") or time.monotonic(), event_id=str(context.get("event_id") or ""),
    )


async def _on_mention(event: dict[str, Any], context: AsyncBoltContext, client: AsyncWebClient) -> None:
    """@Lorebot in a channel: answer in the message's thread."""
    if _from_ignored_author(event, context):
        return
    if not allowed(event["channel"]):
        BOT_EVENTS.labels(PLATFORM, "refused").inc()
        log.info("slack.channel_not_allowed", channel=event["channel"])
        return
    question = _question(event, context, question_text(event.get("text", ""), context.bot_user_id))
    answering.spawn(answering.answer_in_thread(client, question), question.event_id)


async def _on_message(event: dict[str, Any], context: AsyncBoltContext, client: AsyncWebClient) -> None:
    """A DM, or a follow-up in a thread the bot has answered (no mention needed)."""
    if _from_ignored_author(event, context):
        return
    if event.get("subtype") not in _QUESTION_SUBTYPES or not (event.get("user") or authors.bot_ids(event)):
        BOT_EVENTS.labels(PLATFORM, "ignored").inc()  # edits, joins, deletions: nobody asked anything
        return
    text = event.get("text", "")
    mentioned = bool(context.bot_user_id) and f"<@{context.bot_user_id}>" in text
    question = _question(event, context, question_text(text, context.bot_user_id))
    if event.get("channel_type") == "im":
        answering.spawn(answering.answer_in_thread(client, question), question.event_id)
        return
    # A mention also arrives as app_mention, which answers it; a channel message outside a thread is chatter.
    if (not mentioned and event.get("thread_ts") and not settings.SLACK_MENTION_ONLY and allowed(question.channel)
            and await chat.ahas_conversation(surface=PLATFORM, conversation_key=question.conversation_key)):
        answering.spawn(answering.answer_in_thread(client, question), question.event_id)
        return
    BOT_EVENTS.labels(PLATFORM, "ignored").inc()


async def _on_ask(ack: Callable[..., Awaitable[None]], command: dict[str, Any], context: AsyncBoltContext,
                  respond: answering.Respond) -> None:
    """/ask question: a private answer, with a button to share it in the channel."""
    text = " ".join(str(command.get("text", "")).split())
    channel = str(command.get("channel_id", ""))
    if not text:
        await ack(text="Ask a question after the command, e.g. `/ask how do I roll back a release?`")
        BOT_EVENTS.labels(PLATFORM, "refused").inc()
        return
    if not allowed(channel):
        await ack(text="I do not answer in this channel.")
        BOT_EVENTS.labels(PLATFORM, "refused").inc()
        return
    await ack(text=blocks.THINKING, response_type="ephemeral")
    question = Question(
        team=str(command.get("team_id", "")), channel=channel, user=str(command.get("user_id", "")), text=text,
        ts="", thread_ts=f"ask-{command.get('trigger_id', '')}",  # each /ask is a conversation of its own
        received=context.get("received_at") or time.monotonic(), event_id=str(context.get("event_id") or ""),
    )
    answering.spawn(answering.answer_privately(respond, question), question.event_id)


def _message_id(action: dict[str, Any]) -> int | None:
    value = str(action.get("value", ""))
    return int(value) if value.isdigit() else None


async def _on_feedback(ack: Callable[..., Awaitable[None]], body: dict[str, Any], action: dict[str, Any],
                       client: AsyncWebClient, respond: answering.Respond) -> None:
    await ack()
    message_id = _message_id(action)
    if message_id is None:
        BOT_EVENTS.labels(PLATFORM, "bad_request").inc()
        log.warning("slack.bad_action", action_id=action.get("action_id"), value=str(action.get("value"))[:40])
        return
    answering.spawn(answering.record_feedback(
        client, respond, user=body["user"]["id"], message_id=message_id,
        value=1 if action["action_id"] == blocks.FEEDBACK_UP else -1,
        message=body.get("message"), channel=(body.get("channel") or {}).get("id", ""),
    ))


async def _on_share(ack: Callable[..., Awaitable[None]], body: dict[str, Any], action: dict[str, Any],
                    client: AsyncWebClient, respond: answering.Respond) -> None:
    await ack()
    message_id = _message_id(action)
    if message_id is None:
        BOT_EVENTS.labels(PLATFORM, "bad_request").inc()
        return
    answering.spawn(answering.share(client, respond, channel=(body.get("channel") or {}).get("id", ""),
                                    user=body["user"]["id"], message_id=message_id))


async def _on_other_event(body: dict[str, Any]) -> None:
    BOT_EVENTS.labels(PLATFORM, "ignored").inc()
    log.debug("slack.event_ignored", type=(body.get("event") or {}).get("type"))


async def _on_error(error: Exception, body: dict[str, Any]) -> None:
    """A listener raised: counted and logged with its traceback; Slack has already been answered."""
    PIPELINE_ERRORS.labels(PLATFORM).inc()
    BOT_EVENTS.labels(PLATFORM, "failed").inc()
    log.error("slack.listener_failed", error=repr(error), type=body.get("type"), exc_info=error)

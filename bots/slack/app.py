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
from slack_sdk.web.async_client import AsyncWebClient

from bots.metrics import BOT_EVENTS
from bots.slack import answering, authors, blocks, ratelimits
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
        # ratelimited (429): wait as long as Retry-After says, then try again; an answer's own writes are
        # paced and retried by the channel budget instead (ratelimits.py).
        retry_handlers=ratelimits.retry_handlers(),
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
    app.command("/lorebot")(_on_lorebot)
    app.command(re.compile(".*"))(_on_unknown_command)  # after /ask: bolt runs the first listener that matches
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
    """Each event and each slash command is answered once: a retry or a replay of an event_id (or of
    a command's trigger_id, unique to each use of a command) seen before is only acknowledged.

    The ids live in Django's cache, so processes sharing a cache (Redis) share them too.
    """
    context.setdefault("received_at", time.monotonic())
    event_id = body.get("event_id")
    context["event_id"] = event_id or body.get("trigger_id") or ""
    key = ""
    if body.get("type") == "event_callback" and event_id:
        key = f"slack-event:{event_id}"
    elif body.get("command") and body.get("trigger_id"):
        key = f"slack-command:{body['trigger_id']}"
    if key and not await _first_delivery(key):
        retry = (req.headers.get("x-slack-retry-num") or [body.get("retry_attempt", "")])[0]
        BOT_EVENTS.labels(PLATFORM, "duplicate").inc()
        log.info("slack.event_duplicate", event_id=context["event_id"], command=body.get("command"), retry=retry)
        return BoltResponse(status=200, body="")
    await next()
    return None


async def _first_delivery(key: str) -> bool:
    """Records `key`; False if it was seen before. With the cache down, every event counts as new:
    a rare double answer is better than none."""
    try:
        return bool(await cache.aadd(key, 1, timeout=EVENT_ID_TTL))
    except Exception as exc:
        PIPELINE_ERRORS.labels("cache").inc()
        log.warning("slack.dedupe_unavailable", key=key, error=f"{type(exc).__name__}: {exc}")
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
    code = chat.link_code_in(question.text)
    if code is not None and not question.asker.direct:
        answering.spawn(answering.refuse_exposed_code(client, question, code), question.event_id)
        return
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
        code = chat.link_code_in(question.text)
        if code is not None:  # "link CODE": links this Slack account; never a question
            answering.spawn(answering.link_account(client, question, code), question.event_id)
        else:
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


LOREBOT_USAGE = ("`/lorebot link CODE` links this Slack account to your Lorebot login: get the code in the web "
                 "chat (“Link Slack/Discord”). Ask questions with `/ask`, a mention, or a direct message.")


async def _on_lorebot(ack: Callable[..., Awaitable[None]], command: dict[str, Any]) -> None:
    """/lorebot link CODE: links the account (the answer is private, so the code shows to nobody else)."""
    text = " ".join(str(command.get("text", "")).split())
    code = chat.link_code_in(text)
    if code is None:
        BOT_EVENTS.labels(PLATFORM, "refused").inc()
        await ack(text=LOREBOT_USAGE, response_type="ephemeral")
        return
    asker = chat.Asker(platform=PLATFORM, workspace=str(command.get("team_id", "")),
                       external_user=str(command.get("user_id", "")))
    result = await chat.aredeem_code(code, platform=PLATFORM, external_user=asker.link_key)
    BOT_EVENTS.labels(PLATFORM, "linked" if result.linked else "refused").inc()
    await ack(text=blocks.escape(result.text), response_type="ephemeral")


async def _on_unknown_command(ack: Callable[..., Awaitable[None]], command: dict[str, Any]) -> None:
    """Any other slash command routed to this app: a polite private answer rather than Slack's
    "failed with the error dispatch_failed" (bolt answers an unmatched request 404, or not at all)."""
    name = blocks.escape(str(command.get("command", ""))[:40])
    BOT_EVENTS.labels(PLATFORM, "refused").inc()
    log.info("slack.command_unknown", command=name)
    await ack(text=blocks.unknown_command(name), response_type="ephemeral")


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


async def _on_error(error: Exception, body: dict[str, Any], context: AsyncBoltContext) -> None:
    """A listener raised: counted and logged with the event's type and its traceback (Slack has already
    been acknowledged), and the person who asked gets an apology where there is somewhere to put it."""
    PIPELINE_ERRORS.labels(PLATFORM).inc()
    BOT_EVENTS.labels(PLATFORM, "failed").inc()
    event: dict[str, Any] = body["event"] if isinstance(body.get("event"), dict) else {}
    kind = event.get("type") or body.get("command") or body.get("type") or "unknown"
    log.error("slack.listener_failed", error=repr(error)[:300], type=kind, exc_info=error)
    try:
        if body.get("command") and context.respond is not None:
            await context.respond(text=blocks.SORRY, response_type="ephemeral", replace_original=False)
        elif (kind == "app_mention" or event.get("channel_type") == "im") and context.client is not None \
                and event.get("channel") and event.get("ts") and event.get("user") and not authors.bot_ids(event):
            await context.client.chat_postMessage(channel=str(event["channel"]), thread_ts=str(event["ts"]),
                                                  text=blocks.SORRY)
    except Exception as exc:  # the apology is a courtesy; the bot goes on either way
        log.warning("slack.apology_failed", type=kind, error=f"{type(exc).__name__}: {exc}"[:300])

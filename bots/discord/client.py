"""The bot: a discord.py client that turns mentions, DMs, replies and /ask into chat-service answers."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import discord
import structlog
import yarl
from discord import app_commands
from django.conf import settings

from bots.discord import guard, render
from bots.discord.answering import budget_for, deliver
from bots.discord.conversations import asker_for, channel_key, conversation_of, dm_key, key_for, thread_key
from bots.discord.feedback import FeedbackButton
from bots.discord.outlets import NO_MENTIONS, InteractionOutlet, ReplyOutlet
from bots.metrics import BOT_API_ERRORS, BOT_EVENTS
from console import chat
from console.ops.logs import bind_context

log = structlog.get_logger(__name__, component="discord")

SHUTDOWN_GRACE_SECONDS = 10.0  # in-flight answers get this long to finish before they are closed
THREAD_NAME_CHARS = 90


def point_at(api_url: str, gateway_url: str) -> None:
    """Sends discord.py's REST calls to `api_url` and its gateway connection to `gateway_url`.

    discord.py has no per-client base URLs. Every REST route (interaction webhooks included) is built
    from the class attribute `Route.BASE`, and a `Client` (unlike `AutoShardedClient`, which asks
    GET /gateway/bot) opens its first gateway connection at `DiscordWebSocket.DEFAULT_GATEWAY`; later
    ones go to READY's `resume_gateway_url`. So these two attributes are the hooks, set once per process.
    """
    discord.http.Route.BASE = api_url.rstrip("/")
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)


def bot_intents(message_content: bool) -> discord.Intents:
    """Only what the bot uses. Mentions, DMs and slash commands carry their content without the
    privileged message-content intent; other messages (thread follow-ups without a mention,
    DISCORD_MENTION_ONLY=False) arrive with empty content unless it is on.
    """
    intents = discord.Intents.none()
    intents.guilds = True  # channels and threads, to route messages and know which threads are ours
    intents.guild_messages = True
    intents.dm_messages = True
    intents.message_content = message_content
    return intents


def _api_error_trace() -> aiohttp.TraceConfig:
    """Counts every error status Discord answers, including 429s discord.py waits out and retries."""
    trace = aiohttp.TraceConfig()

    async def on_request_end(session: Any, context: Any, params: aiohttp.TraceRequestEndParams) -> None:
        status = params.response.status
        _pace_channel(params.url.path, status, params.response.headers)
        if status >= 400:
            BOT_API_ERRORS.labels("discord", str(status)).inc()
            if status == 429:
                log.warning("discord.rate_limited", method=params.method, path=params.url.path,
                            retry_after=params.response.headers.get("Retry-After"))

    trace.on_request_end.append(on_request_end)
    return trace


_CHANNEL_PATH = re.compile(r"/channels/(\d+)/messages")


def _pace_channel(path: str, status: int, headers: Any) -> None:
    """Discord's answer to a write in a channel, fed to the channel's budget: a 429 (whether or not
    discord.py retries it) or a bucket with none left (X-RateLimit-Remaining 0) holds every answer in
    that channel until the bucket resets (Retry-After / X-RateLimit-Reset-After, in seconds)."""
    match = _CHANNEL_PATH.search(path)
    if match is None:
        return
    remaining = headers.get("X-RateLimit-Remaining")
    if status != 429 and remaining != "0":
        return
    wait = headers.get("Retry-After") if status == 429 else None
    try:
        seconds = float(wait or headers.get("X-RateLimit-Reset-After") or 1.0)
    except ValueError:
        seconds = 1.0
    budget_for(int(match[1])).hold(seconds)


@dataclass(frozen=True)
class Question:
    """A message the bot should answer: its text and conversation (None: a new one rooted at it)."""

    text: str
    conversation_key: str | None


class LorebotClient(discord.Client):
    """The Discord surface of the chat service; settings come from DISCORD_* (console/settings.py)."""

    def __init__(self, **options: Any) -> None:
        point_at(settings.DISCORD_API_URL, settings.DISCORD_GATEWAY_URL)
        super().__init__(intents=bot_intents(settings.DISCORD_MESSAGE_CONTENT), allowed_mentions=NO_MENTIONS,
                         http_trace=_api_error_trace(), **options)
        self.tree = app_commands.CommandTree(self)
        self.tree.add_command(ask)
        self.tree.add_command(lorebot)
        self.tree.error(self.on_command_error)
        self.answers: set[asyncio.Task[Any]] = set()
        self.reconnects = 0  # connections the supervisor replaced after an error discord.py let through
        guard.guard_parsers(self._connection)

    async def connect(self, *, reconnect: bool = True) -> None:
        """discord.py's connection loop, supervised: an error it does not handle itself (a frame that is
        not JSON, a READY it cannot parse) replaces the connection within seconds instead of ending the
        process. Errors that mean "stop" (a refused token or intent, `close()`) still end it."""
        delays = guard.reconnect_delays()
        while True:
            try:
                await super().connect(reconnect=reconnect)
                return
            except (discord.LoginFailure, discord.PrivilegedIntentsRequired):
                raise
            except Exception as exc:
                if self.is_closed() or not reconnect:
                    raise
                delay = next(delays)
                self.reconnects += 1
                guard.count_failure("gateway_error")
                log.error("discord.gateway_failed", error=f"{type(exc).__name__}: {exc}"[:300], reconnect_in=delay,
                          reconnects=self.reconnects, exc_info=exc)
                if self.ws is not None:
                    await self.ws.close(code=4000)  # 4000 keeps the session resumable on Discord's side
                await asyncio.sleep(delay)

    async def on_error(self, event_method: str, /, *args: Any, **kwargs: Any) -> None:
        """An event handler raised (discord.py runs each in its own task and calls this): logged with the
        event, counted; the bot goes on."""
        guard.count_failure("failed")
        log.exception("discord.handler_failed", type=event_method)

    async def on_command_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        """A slash command raised: logged, counted, and the user gets an apology if nothing answered yet."""
        guard.count_failure("failed")
        command = interaction.command.name if interaction.command else "?"
        log.error("discord.command_failed", type="INTERACTION_CREATE", command=command, error=repr(error),
                  exc_info=error)
        try:
            if not interaction.response.is_done():
                await interaction.response.send_message(render.APOLOGY, ephemeral=True)
        except discord.HTTPException as exc:
            log.warning("discord.apology_failed", status=exc.status, code=exc.code)

    async def setup_hook(self) -> None:
        # Buttons of answers posted before a restart are matched by their custom_id.
        self.add_dynamic_items(FeedbackButton)
        try:
            commands = await self.tree.sync()
        except discord.HTTPException as exc:  # the bot still answers mentions and DMs without /ask
            log.error("discord.commands_not_synced", status=exc.status, error=exc.text)
        else:
            log.info("discord.commands_synced", commands=[c.name for c in commands])

    async def on_ready(self) -> None:
        assert self.user is not None
        log.info("discord.ready", user=str(self.user), user_id=self.user.id, guilds=len(self.guilds))

    async def on_resumed(self) -> None:
        log.info("discord.resumed")

    async def close(self) -> None:
        """Lets in-flight answers finish (up to SHUTDOWN_GRACE_SECONDS), closes the rest with an
        apology, then disconnects."""
        pending = {task for task in self.answers if task is not asyncio.current_task()}
        if pending:
            log.info("discord.finishing_answers", count=len(pending))
            _, late = await asyncio.wait(pending, timeout=SHUTDOWN_GRACE_SECONDS)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        await super().close()

    # -- messages ------------------------------------------------------------------------
    async def on_message(self, message: discord.Message) -> None:
        received = time.monotonic()
        assert self.user is not None
        if message.author.id == self.user.id:
            return  # we do not answer ourselves, whatever DISCORD_ALLOWED_BOTS says
        if (message.author.bot or message.webhook_id is not None) and not self._allowed_bot(message):
            # Two bots that answer each other would loop; webhooks (integrations, bridges) are bots too.
            if self._mentioned(message):
                BOT_EVENTS.labels("discord", "ignored").inc()
                log.info("discord.author_ignored", author_id=message.author.id, webhook_id=message.webhook_id)
            return
        # discord.py runs each event in a task of its own, so this binding stays with this message.
        bind_context(event_id=f"discord-message-{message.id}")
        with self._in_flight():
            try:
                question = await self._question(message)
                code = None if question is None else chat.link_code_in(question.text)
                if code is not None:  # "link CODE": links this Discord account; never a question
                    BOT_EVENTS.labels("discord", await self._link_account(message, code)).inc()
                elif question is not None:
                    BOT_EVENTS.labels("discord", await self._answer_message(message, question, received)).inc()
            except Exception:  # one message going wrong must never stop the bot
                guard.count_failure("failed")
                log.exception("discord.message_failed", type="MESSAGE_CREATE", message_id=message.id,
                              channel_id=message.channel.id)
                if message.guild is None or self._mentioned(message):  # someone is waiting for an answer
                    await self._apologize(message)

    async def _apologize(self, message: discord.Message) -> None:
        try:
            await message.reply(render.APOLOGY, allowed_mentions=NO_MENTIONS, mention_author=False)
        except discord.HTTPException as exc:
            log.warning("discord.apology_failed", status=exc.status, code=exc.code)

    async def _question(self, message: discord.Message) -> Question | None:
        """Whether and in which conversation to answer `message`."""
        text = self._without_mention(message.content)
        channel = message.channel
        if message.guild is None:
            return Question(text, dm_key(channel.id))
        mentioned = self._mentioned(message)
        if not self.allowed(channel):
            if mentioned:
                BOT_EVENTS.labels("discord", "not_allowed").inc()
            return None
        if message.reference is not None and message.reference.message_id is not None:
            key = await conversation_of(message.reference.message_id)
            if key is not None:  # a reply to one of our answers
                return Question(text, key)
        if isinstance(channel, discord.Thread):
            # In our own threads every message is a follow-up; one we cannot read (no message-content
            # intent) is people talking among themselves, not a question to hint about.
            ours = channel.owner_id == self.user.id and bool(text)  # type: ignore[union-attr]
            if mentioned or ours or (text and not settings.DISCORD_MENTION_ONLY):
                return Question(text, thread_key(channel.guild.id, channel.id))
            return None
        if mentioned or (text and not settings.DISCORD_MENTION_ONLY):
            return Question(text, None)
        return None

    async def _answer_message(self, message: discord.Message, question: Question, received: float) -> str:
        if not question.text:
            # A mention without text, or (without the message-content intent) a message we cannot read.
            await message.reply(render.EMPTY_QUESTION, allowed_mentions=NO_MENTIONS, mention_author=False)
            return "empty"
        channel: Any = message.channel
        asker = asker_for(channel, channel_id=channel.id, guild_id=message.guild.id if message.guild else None,
                          user_id=message.author.id)
        reply_to: discord.Message | None = message
        key = question.conversation_key
        if key is None:
            if settings.DISCORD_THREAD_PER_QUESTION and isinstance(channel, discord.TextChannel):
                channel = await message.create_thread(name=question.text[:THREAD_NAME_CHARS], auto_archive_duration=1440)
                reply_to, key = None, thread_key(channel.guild.id, channel.id)
            else:
                key = key_for(channel, message.id)
        async with channel.typing():
            return await deliver(ReplyOutlet(channel, reply_to), question=question.text, conversation_key=key,
                                 user_id=message.author.id, received=received, asker=asker)

    async def _link_account(self, message: discord.Message, code: str) -> str:
        """`link CODE`: in a DM the chat service links this account (or says why not); in a server channel
        everyone could read the code, so it stops working and the sender is told to use a DM."""
        if message.guild is None:
            result = await chat.aredeem_code(code, platform="discord", external_user=str(message.author.id))
        else:
            result = await chat.acancel_code(code, platform="discord")
        await message.reply(result.text, allowed_mentions=NO_MENTIONS, mention_author=False)
        return "linked" if result.linked else "refused"

    # -- /ask ----------------------------------------------------------------------------
    async def answer_interaction(
        self, interaction: discord.Interaction, question: str, private: bool
    ) -> None:
        received = time.monotonic()
        bind_context(event_id=f"discord-interaction-{interaction.id}")
        channel: Any = interaction.channel
        if interaction.guild_id is not None and not self.allowed(channel):
            BOT_EVENTS.labels("discord", "not_allowed").inc()
            await interaction.response.send_message(render.NOT_HERE, ephemeral=True)
            return
        if channel is None:
            key = channel_key(interaction.guild_id or 0, interaction.channel_id or 0, f"ask-{interaction.id}")
        else:
            key = key_for(channel, f"ask-{interaction.id}")
        asker = asker_for(channel, channel_id=interaction.channel_id, guild_id=interaction.guild_id,
                          user_id=interaction.user.id)
        with self._in_flight():
            outcome = await deliver(InteractionOutlet(interaction, private=private), question=question,
                                    conversation_key=key, user_id=interaction.user.id, received=received, asker=asker)
        BOT_EVENTS.labels("discord", outcome).inc()

    async def link_interaction(self, interaction: discord.Interaction, text: str) -> None:
        """/lorebot link CODE: links this Discord account; the reply is private, so the code shows to nobody else."""
        bind_context(event_id=f"discord-interaction-{interaction.id}")
        code = chat.link_code_in(f"link {text}")
        if code is None:
            BOT_EVENTS.labels("discord", "refused").inc()
            await interaction.response.send_message(render.LINK_USAGE, ephemeral=True)
            return
        result = await chat.aredeem_code(code, platform="discord", external_user=str(interaction.user.id))
        BOT_EVENTS.labels("discord", "linked" if result.linked else "refused").inc()
        await interaction.response.send_message(result.text, ephemeral=True)

    # -- helpers -------------------------------------------------------------------------
    def allowed(self, channel: Any) -> bool:
        """DISCORD_ALLOWED_GUILDS / DISCORD_ALLOWED_CHANNELS (a thread counts as its parent channel)."""
        guild = getattr(channel, "guild", None)
        if settings.DISCORD_ALLOWED_GUILDS and (guild is None or str(guild.id) not in settings.DISCORD_ALLOWED_GUILDS):
            return False
        if settings.DISCORD_ALLOWED_CHANNELS:
            ids = {str(channel.id), str(getattr(channel, "parent_id", ""))}
            return not ids.isdisjoint(settings.DISCORD_ALLOWED_CHANNELS)
        return True

    def _allowed_bot(self, message: discord.Message) -> bool:
        """Whether DISCORD_ALLOWED_BOTS names this bot (its user id) or webhook (its id)."""
        ids = {str(message.author.id), str(message.webhook_id or "")}
        return not ids.isdisjoint(settings.DISCORD_ALLOWED_BOTS)

    def _mentioned(self, message: discord.Message) -> bool:
        # Not `user.mentioned_in`: that is also true for @everyone, which must not summon the bot.
        return any(user.id == self.user.id for user in message.mentions)  # type: ignore[union-attr]

    def _without_mention(self, content: str) -> str:
        return re.sub(rf"<@!?{self.user.id}>", " ", content).strip()  # type: ignore[union-attr]

    @contextlib.contextmanager
    def _in_flight(self) -> Iterator[None]:
        """Registers the running task as an answer in progress, so that `close` can wait for it."""
        task = asyncio.current_task()
        assert task is not None
        self.answers.add(task)
        try:
            yield
        finally:
            self.answers.discard(task)


@app_commands.command(name="ask", description="Ask Lorebot a question about your team's documents.")
@app_commands.describe(question="What you want to know", private="Only you see the answer (default: everyone here)")
async def ask(interaction: discord.Interaction, question: str, private: bool = False) -> None:
    client = interaction.client
    assert isinstance(client, LorebotClient)
    await client.answer_interaction(interaction, question, private)


lorebot = app_commands.Group(name="lorebot", description="Your Lorebot account.")


@lorebot.command(name="link", description="Link this Discord account to your Lorebot login (code from the web chat).")
@app_commands.describe(code="The one-time code the web chat showed you")
async def link(interaction: discord.Interaction, code: str) -> None:
    client = interaction.client
    assert isinstance(client, LorebotClient)
    await client.link_interaction(interaction, code)


async def run_bot(token: str) -> None:
    """Runs the bot until SIGTERM or SIGINT, then shuts it down cleanly."""
    client = LorebotClient()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, functools.partial(_stop, client, sig))
    try:
        async with client:
            await client.start(token)
    finally:
        await chat.aclose()
    log.info("discord.stopped")


def _stop(client: LorebotClient, sig: signal.Signals) -> None:
    log.info("discord.stopping", signal=sig.name)
    asyncio.get_running_loop().create_task(client.close())

"""Keeps the Discord bot serving whatever Discord (or anyone between) sends it.

discord.py parses each gateway dispatch inside its receive loop (`DiscordWebSocket.received_message`
calls `ConnectionState.parse_<event>` directly, not in a task), so one payload it cannot parse, such
as an interaction whose member lacks `user`, raises out of `Client.connect` and ends the process;
so does a frame that is not JSON at all. Two layers stop that:

- `guard_parsers` wraps every parser: a dispatch that fails to parse is logged with its event type,
  counted, answered with an apology when it is an interaction (someone is waiting for a reply), and
  dropped; the connection goes on.
- `reconnect_delays` paces the supervisor loop in `LorebotClient.connect`: anything else that escapes
  discord.py's own reconnect logic (a garbage frame) closes that connection and opens a new one within
  seconds, in the same process, while answers in progress go on over REST.

Handlers of our own (`on_message`, `/ask`, buttons) are covered by the client's `on_error` and the
command tree's error hook, which log, count and apologise in the same way.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import discord
import structlog

from bots.discord import render
from bots.metrics import BOT_EVENTS
from console.ops.metrics import PIPELINE_ERRORS

log = structlog.get_logger(__name__, component="discord")

# A connection that stayed up this long was healthy: the next failure waits the first delay again.
HEALTHY_SECONDS = 60.0
FIRST_DELAY, MAX_DELAY = 1.0, 30.0
# Parsing READY is what makes the connection usable; its failure is left to the supervisor (a new session).
_UNGUARDED = frozenset({"READY"})
_EPHEMERAL = 64  # message flag: only the person who used the command sees the reply


def count_failure(kind: str) -> None:
    """One fault the bot survived: rag_pipeline_errors_total{component="discord"} and the event's outcome."""
    PIPELINE_ERRORS.labels("discord").inc()
    BOT_EVENTS.labels("discord", kind).inc()


def guard_parsers(state: Any) -> None:
    """Wraps each of discord.py's dispatch parsers (`ConnectionState.parsers`, shared with the
    gateway by reference, so this holds for every later connection) so that a payload it cannot parse
    is dropped instead of ending the connection."""
    parsers: dict[str, Callable[[Any], Any]] = state.parsers
    for event, parse in list(parsers.items()):
        if event not in _UNGUARDED and not getattr(parse, "lorebot_guarded", False):
            parsers[event] = _guarded(event, parse)


def _guarded(event: str, parse: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def guarded(data: Any) -> Any:
        try:
            return parse(data)
        except Exception as exc:
            count_failure("malformed")
            log.error("discord.event_unparseable", type=event, error=f"{type(exc).__name__}: {exc}"[:300],
                      exc_info=exc)
            if event == "INTERACTION_CREATE" and isinstance(data, dict):
                asyncio.get_running_loop().create_task(apologize_to_interaction(data))
            return None

    guarded.lorebot_guarded = True  # type: ignore[attr-defined]
    return guarded


async def apologize_to_interaction(data: dict[str, Any]) -> None:
    """Answers an interaction discord.py could not parse with a private apology, through Discord's raw
    callback endpoint (POST /interactions/{id}/{token}/callback, authorised by the token in the path),
    so that the user does not see "The application did not respond"."""
    interaction_id, token = data.get("id"), data.get("token")
    if not (isinstance(interaction_id, (str, int)) and isinstance(token, str) and token.isprintable()):
        return
    url = f"{discord.http.Route.BASE}/interactions/{interaction_id}/{token}/callback"
    body = {"type": 4, "data": {"content": render.APOLOGY, "flags": _EPHEMERAL, "allowed_mentions": {"parse": []}}}
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            async with session.post(url, json=body) as response:
                if response.status >= 400:
                    log.warning("discord.apology_failed", status=response.status, type="INTERACTION_CREATE")
    except (TimeoutError, aiohttp.ClientError) as exc:
        log.warning("discord.apology_failed", error=f"{type(exc).__name__}: {exc}", type="INTERACTION_CREATE")


def reconnect_delays(clock: Callable[[], float] = time.monotonic) -> Iterator[float]:
    """Seconds to wait before each new connection: 1, 2, 4 … up to 30, back to 1 after a healthy spell.

    The generator is asked for the next delay when a connection has failed, and measures how long
    that connection lasted.
    """
    delay, started = FIRST_DELAY, clock()
    while True:
        if clock() - started >= HEALTHY_SECONDS:
            delay = FIRST_DELAY
        started = clock() + delay  # the next connection opens after this delay
        yield delay
        delay = min(delay * 2, MAX_DELAY)

"""How often the bots may write to one channel, shared by every answer streaming there.

Slack asks for about 50 `chat.update` calls a minute per channel (and holds posting to about one
message a second); Discord allows about 5 edits per 5 s per channel. One answer editing once per
`SLACK_UPDATE_INTERVAL` keeps to that, but five long answers at once in one channel would not. So each
channel has one `ChannelBudget`: at most `per_minute` writes a minute (plus a small burst), whichever
answer makes them. A progress edit that finds no slot free is skipped (the next one shows more); the final
edit waits for its slot, so it is never lost.

When the platform says to wait (HTTP 429 / `ratelimited` with Retry-After, or Discord's bucket headers
saying none are left), `hold` stops every write to that channel until then, whether or not the client
library retries the request itself; `write_finally` retries a final write that still failed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog

log = structlog.get_logger(__name__)

T = TypeVar("T")
FINAL_ATTEMPTS = 5  # a final write refused for rate limits this often in a row is given up (and logged)


class ChannelBudget:
    """Writes to one channel: a token bucket refilled at `per_minute` and holding `burst` tokens, so that
    any 60 s sees at most `per_minute + burst` writes, and none while the platform says to wait.

    `burst` is kept in reserve for final edits: progress edits only take a token from a full bucket, so
    they go at the refill rate, and the final edits of several answers that end together land at once
    instead of queueing behind each other. With `burst=1` writes are simply spaced `60 / per_minute` apart.
    """

    def __init__(self, per_minute: float, *, burst: int = 1, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        if per_minute <= 0 or burst < 1:
            raise ValueError("per_minute must be more than 0 and burst at least 1")
        self.spacing = 60.0 / per_minute  # seconds to earn one write
        self.burst = burst
        self._clock, self._sleep = clock, sleep
        self._tokens = float(burst)
        self._filled_at = clock()
        self.held_until = float("-inf")  # the platform asked to wait until then
        self._waiting: dict[object, tuple[float, float]] = {}  # answer -> (waiting since, last asked)
        self.writes = 0
        self.skipped = 0

    def _free_at(self, now: float, need: float = 1.0) -> float:
        """When the bucket holds `need` tokens and no hold is on: when the next write may be made."""
        self._tokens = min(float(self.burst), self._tokens + (now - self._filled_at) / self.spacing)
        self._filled_at = now
        earned = now if self._tokens >= need else now + (need - self._tokens) * self.spacing
        return max(earned, self.held_until)

    def try_take(self, who: object = None) -> bool:
        """Claims a slot if one is free now (a progress edit); False means skip this edit.

        With several answers asking (`who` names one), the slot goes to the one that has waited longest
        since its last progress edit, so that every answer in the channel moves, not only the first
        to ask. An answer that has not asked for a while (its stream paused) does not block the others.
        """
        now = self._clock()
        if who is not None:
            since, _ = self._waiting.get(who, (now, now))
            self._waiting[who] = (since, now)
        # A progress edit needs a full bucket: the burst stays in reserve for final edits, which then land at
        # once even when several answers end together, while progress edits go at the refill rate.
        if now < self._free_at(now, need=self.burst) or (who is not None and self._someone_waited_longer(who, now)):
            self.skipped += 1
            return False
        self._waiting.pop(who, None)
        self._claim(now)
        return True

    def leave(self, who: object) -> None:
        """`who` asks for no more progress edits (its answer is finished)."""
        self._waiting.pop(who, None)

    def _someone_waited_longer(self, who: object, now: float) -> bool:
        recent = now - max(2 * self.spacing, 0.5)
        mine = self._waiting[who][0]
        return any(since < mine and asked >= recent for other, (since, asked) in self._waiting.items() if other != who)

    async def take(self) -> None:
        """Waits for a free slot and claims it (a final edit, a continuation message)."""
        while (wait := self._free_at(now := self._clock()) - now) > 0:
            await self._sleep(wait)
        self._claim(self._clock())

    def hold(self, seconds: float) -> None:
        """The platform said to wait `seconds`: no write to this channel before then."""
        self.held_until = max(self.held_until, self._clock() + max(0.0, seconds))

    def _claim(self, now: float) -> None:
        self._free_at(now)  # brings the bucket up to `now`
        self._tokens -= 1
        self.writes += 1


class Budgets:
    """One ChannelBudget per (platform, channel), made on first use."""

    def __init__(self) -> None:
        self._budgets: dict[tuple[str, str], ChannelBudget] = {}

    def get(self, platform: str, channel: str, per_minute: float, burst: int = 1) -> ChannelBudget:
        key = (platform, channel)
        budget = self._budgets.get(key)
        if budget is None or (budget.spacing, budget.burst) != (60.0 / per_minute, burst):  # a changed setting
            budget = self._budgets[key] = ChannelBudget(per_minute, burst=burst)
        return budget

    def clear(self) -> None:
        self._budgets.clear()


BUDGETS = Budgets()


async def write_finally(budget: ChannelBudget, write: Callable[[], Awaitable[T]],
                        retry_after: Callable[[Exception], float | None], *, what: str) -> T:
    """Makes a write that must land (the final text): on a rate-limit refusal (`retry_after` returns
    the seconds to wait, None for any other error, which is raised) it holds the channel and tries again,
    up to FINAL_ATTEMPTS times."""
    for attempt in range(1, FINAL_ATTEMPTS + 1):
        try:
            return await write()
        except Exception as exc:
            wait = retry_after(exc)
            if wait is None or attempt == FINAL_ATTEMPTS:
                raise
            budget.hold(wait)
            log.warning("bot.final_write_rate_limited", what=what, attempt=attempt, retry_after=wait)
            await budget.take()
    raise AssertionError("unreachable")

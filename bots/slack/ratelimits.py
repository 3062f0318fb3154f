"""Slack's rate limits: what the bot's own pacing does with a `ratelimited` answer, and what slack_sdk does.

An answer's writes to its channel (progress edits, the final edit, continuation messages) go through
the channel's `ChannelBudget` (bots/pacing.py). slack_sdk's own retry of a 429 would sleep inside the
call and know nothing of the other answers in the channel, so for these writes it is switched off
(`paced`): the refusal comes back at once, the channel is held for Retry-After, a progress edit is
skipped and a final one tried again when the hold ends. Every other call (👀, the placeholder, /ask
responses) keeps slack_sdk's retry, after the Retry-After Slack sends.
"""

from __future__ import annotations

from collections.abc import Awaitable
from contextvars import ContextVar
from typing import Any, TypeVar

from django.conf import settings
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler, async_default_handlers
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

from bots.pacing import BUDGETS, ChannelBudget

T = TypeVar("T")
PLATFORM = "slack"
DEFAULT_RETRY_AFTER = 1.0  # Slack always sends Retry-After with a 429; this is for when it does not

_paced: ContextVar[bool] = ContextVar("slack_paced_write", default=False)


# Writes one channel may make at once: answers that finish together show their final text together,
# and any minute still sees at most SLACK_CHANNEL_EDITS_PER_MINUTE + 5 (45 + 5: Slack's "about 50").
BURST = 5


def budget_for(channel: str) -> ChannelBudget:
    """The channel's shared budget, SLACK_CHANNEL_EDITS_PER_MINUTE writes a minute."""
    return BUDGETS.get(PLATFORM, channel, settings.SLACK_CHANNEL_EDITS_PER_MINUTE, BURST)


async def paced(call: Awaitable[T]) -> T:
    """Awaits a Web API call that the channel budget paces: slack_sdk does not retry its 429 itself."""
    token = _paced.set(True)
    try:
        return await call
    finally:
        _paced.reset(token)


def retry_after(exc: Exception) -> float | None:
    """Seconds Slack asks to wait when `exc` is a rate-limit refusal (HTTP 429 / `ratelimited`), else None."""
    if not isinstance(exc, SlackApiError):
        return None
    response = exc.response
    if response.status_code != 429 and response.get("error") != "ratelimited":
        return None
    headers: Any = response.headers or {}
    value = next((v for k, v in dict(headers).items() if k.lower() == "retry-after"), None)
    if isinstance(value, list):
        value = value[0] if value else None
    try:
        return max(0.0, float(value)) if value is not None else DEFAULT_RETRY_AFTER
    except ValueError:
        return DEFAULT_RETRY_AFTER


class UnlessPaced(AsyncRateLimitErrorRetryHandler):
    """slack_sdk's retry of a 429 (after Retry-After), for every call but those made through `paced`."""

    async def _can_retry_async(self, *, state: RetryState, request: HttpRequest,
                               response: HttpResponse | None = None, error: Exception | None = None) -> bool:
        if _paced.get():
            return False
        return await super()._can_retry_async(state=state, request=request, response=response, error=error)


def retry_handlers(max_retry_count: int = 3) -> list[AsyncRetryHandler]:
    """The Web API client's retry handlers: slack_sdk's defaults (connection errors) and `UnlessPaced`."""
    return [*async_default_handlers(), UnlessPaced(max_retry_count=max_retry_count)]

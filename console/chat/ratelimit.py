"""Questions per user and per conversation: fixed-window counters in Django's cache."""

from __future__ import annotations

import time

import structlog
from django.core.cache import cache

from console.chat.events import ChatError
from ragcore.metrics import PIPELINE_ERRORS

log = structlog.get_logger(__name__, component="chat")


def parse_rate(value: str) -> tuple[int, int]:
    """"20/60" -> (20 questions, per 60 seconds); "0" turns the limit off."""
    count, _, seconds = value.partition("/")
    return int(count), int(seconds or 60)


def check_rate(scope: str, key: str, rate: str) -> None:
    """Counts one question; raises ChatError("rate_limited") over the limit.

    The counter is per process, or shared when the cache is Redis (CACHE_URL).
    """
    limit, window = parse_rate(rate)
    if limit <= 0:
        return
    bucket = int(time.time() // window)
    cache_key = f"chat-rate:{scope}:{key}:{bucket}"
    try:
        cache.add(cache_key, 0, timeout=window + 1)
        try:
            count = cache.incr(cache_key)
        except ValueError:  # expired between add and incr
            cache.set(cache_key, 1, timeout=window + 1)
            count = 1
    except Exception as exc:  # a shared cache (CACHE_URL) that is down: answer rather than refuse everyone
        PIPELINE_ERRORS.labels("cache").inc()
        log.warning("chat.rate_limit_unavailable", error=f"{type(exc).__name__}: {exc}")
        return
    if count > limit:
        wait = window - int(time.time()) % window
        raise ChatError("rate_limited", f"Slow down: at most {limit} questions per {window} s. Try again in {wait} s.")

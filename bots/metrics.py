"""Prometheus series every bot records, labelled by platform ("slack", "discord")."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from console.ops.metrics import LATENCY_BUCKETS

# outcome: answered, failed, ignored, duplicate, rate_limited, refused, forged, ...
BOT_EVENTS = Counter("rag_bot_events", "Bot events by platform and outcome.", ["platform", "outcome"])
# error: the platform's own error code ("ratelimited", "channel_not_found", "429", ...).
BOT_API_ERRORS = Counter("rag_bot_api_errors", "Errors returned by the platform's API.", ["platform", "error"])
BOT_FIRST_REPLY_SECONDS = Histogram(
    "rag_bot_first_reply_seconds", "From the platform event to the first visible reply.", ["platform"],
    buckets=LATENCY_BUCKETS,
)
BOT_MESSAGE_EDITS = Histogram(
    "rag_bot_message_edits", "Message edits used to stream one answer.", ["platform"],
    buckets=(1, 2, 3, 5, 8, 13, 21, 34, 55),
)

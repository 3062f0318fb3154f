"""Prometheus series of the chat: questions and votes on every surface, and the WebSocket's frames (the HTTP middleware never sees them)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from ragcore.metrics import LATENCY_BUCKETS, PIPELINE_ERRORS

# surface: web, slack, discord, cli. outcome: answered (by the LLM), extractive (no LLM, or its
# fallback), failed (no answer: search down, ...), cancelled (the client left), refused (empty,
# too long, rate limited, still warming up, ...).
CHAT_QUESTIONS = Counter("rag_chat_questions", "Questions by surface and outcome.", ["surface", "outcome"])
CHAT_ANSWER_SECONDS = Histogram(
    "rag_chat_answer_duration_seconds", "From a question to its stored answer, by surface.", ["surface"],
    buckets=LATENCY_BUCKETS,
)
# value: up, down.
FEEDBACK = Counter("rag_feedback", "Votes on answers by value and surface.", ["value", "surface"])

WEBSOCKET_CONNECTIONS = Counter(
    "rag_websocket_connections", "WebSocket connections by outcome (accepted, refused).", ["outcome"]
)
# livesum: with several processes (PROMETHEUS_MULTIPROC_DIR) the open sockets of the live ones add up.
WEBSOCKET_OPEN = Gauge(
    "rag_websocket_open_connections", "WebSocket connections open now.", multiprocess_mode="livesum"
)
WEBSOCKET_FRAMES = Counter("rag_websocket_frames", "WebSocket frames by direction (in, out).", ["direction"])
WEBSOCKET_ERRORS = Counter("rag_websocket_errors", "Error frames and refusals sent, by code.", ["code"])


def count_error(code: str) -> None:
    """One error the socket reported to its client; also counted as a pipeline error of the websocket."""
    WEBSOCKET_ERRORS.labels(code).inc()
    PIPELINE_ERRORS.labels("websocket").inc()

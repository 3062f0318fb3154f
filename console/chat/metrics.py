"""Prometheus series for the WebSocket chat: the HTTP middleware never sees these frames."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from ragcore.metrics import PIPELINE_ERRORS

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

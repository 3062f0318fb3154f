"""Socket Mode: Lorebot opens a WebSocket to Slack instead of receiving HTTP requests.

For teams without a public URL. slack_sdk's aiohttp client asks apps.connections.open (through the
app's Web API client, so SLACK_API_URL applies) for a wss:// address, connects, and reconnects on its
own: at once when the server closes the socket, and within `ping_interval` seconds when the socket
goes silent, retrying every `ping_interval` seconds while Slack cannot be reached.
"""

from __future__ import annotations

import asyncio
import logging

import structlog
from django.conf import settings
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler

from bots.metrics import BOT_EVENTS
from bots.slack import answering
from bots.slack.answering import PLATFORM
from bots.slack.app import get_app
from console.ops.metrics import PIPELINE_ERRORS

log = structlog.get_logger(__name__, component="slack")

# At shutdown, answers already being written get this long to finish.
DRAIN_SECONDS = 30.0


class CountErrors(logging.Filter):
    """Counts each error slack_sdk's Socket Mode client logs.

    The client survives a frame it cannot process (not JSON, an envelope a listener chokes on, a failed
    reconnect): it logs it at ERROR and reads the next. Logging is its only error hook, so this filter on
    its logger is what counts them, as rag_pipeline_errors_total{component="slack"}.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            PIPELINE_ERRORS.labels(PLATFORM).inc()
            BOT_EVENTS.labels(PLATFORM, "socket_error").inc()
        return True


socket_client_log = logging.getLogger("bots.slack.socket_client")
socket_client_log.addFilter(CountErrors())


async def serve(stop: asyncio.Event, *, ping_interval: float = 10.0) -> None:
    """Connects to Slack and answers until `stop` is set, then lets the answers in flight finish."""
    handler = AsyncSocketModeHandler(get_app(), settings.SLACK_APP_TOKEN, logger=socket_client_log,
                                     ping_interval=ping_interval)
    await handler.connect_async()
    log.info("slack.socket_connected", api_url=settings.SLACK_API_URL)
    try:
        await stop.wait()
    finally:
        await handler.close_async()
        left = await answering.drain(DRAIN_SECONDS)
        log.info("slack.socket_closed", unfinished_answers=left)

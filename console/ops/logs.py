"""structlog, configured once: JSON lines in production, readable lines in development.

Every event carries a `component` (set by the logger, or derived from its name), whatever
was bound to the context where the work started (`request_id`, `client_ip` by the request
middleware, `job_id` by the ingest worker, the platform event id by the bots: see
`bind_context`), and never the text of a question or a document unless LOG_CONTENT is on.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any, TextIO

import structlog

# Logger-name prefixes of code that does not set `component` itself (libraries, Django), longest first.
_COMPONENTS = (
    ("django.request", "http"),
    ("django.server", "http"),
    ("django.channels", "websocket"),
    ("django_tasks", "ingest_job"),
    ("daphne", "server"),
    ("twisted", "server"),
    ("chromadb", "vector_store"),
    ("sentence_transformers", "embedder"),
    ("transformers", "embedder"),
    ("groq", "llm"),
    ("httpx", "http_client"),
    ("bots.slack", "slack"),
    ("bots.discord", "discord"),
    ("discord", "discord"),
    ("slack_bolt", "slack"),
    ("slack_sdk", "slack"),
    ("ragcore.bm25", "bm25"),
    ("ragcore", "engine"),
    ("console", "console"),
    ("django", "django"),
)

# Event keys that may hold a user's question or a document's text: replaced by their length
# unless LOG_CONTENT is on, so a log line that names them by mistake still leaks nothing.
CONTENT_KEYS = frozenset({"question", "text", "query", "prompt", "answer", "content", "document_text", "messages"})

_log_content = False


def component_for(logger_name: str) -> str:
    for prefix, component in _COMPONENTS:
        if logger_name == prefix or logger_name.startswith(prefix + "."):
            return component
    return logger_name.split(".", 1)[0] or "app"


def add_component(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Fills `component` from the logger's name when the logger did not set one."""
    if not event_dict.get("component"):
        event_dict["component"] = component_for(str(event_dict.get("logger", "")))
    return event_dict


def redact_content(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Questions and document text stay out of the logs unless LOG_CONTENT is on."""
    if not _log_content:
        for key in CONTENT_KEYS.intersection(event_dict):
            value = event_dict[key]
            if isinstance(value, str):
                event_dict[key] = f"<{len(value)} characters; LOG_CONTENT=True to log them>"
    return event_dict


def bind_context(**values: Any) -> None:
    """Binds ids (request_id, job_id, platform event id, ...) to every later event of this task or thread.

    Bind where a piece of work starts; threads and asyncio tasks started from there inherit it.
    """
    structlog.contextvars.bind_contextvars(**values)


@contextmanager
def bound_context(**values: Any) -> Iterator[None]:
    """`bind_context` for the duration of a block; the earlier values come back after it."""
    tokens = structlog.contextvars.bind_contextvars(**values)
    try:
        yield
    finally:
        structlog.contextvars.reset_contextvars(**tokens)


def configure_logging(fmt: str, level: str, *, log_content: bool = False, stream: TextIO | None = None) -> None:
    """One handler on the root logger, for structlog and stdlib (Django, libraries) alike."""
    global _log_content
    _log_content = log_content
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        add_component,
        redact_content,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=(stream or sys.stderr).isatty())
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                # JSON: the traceback as one string field; the console renderer prints it itself.
                structlog.processors.format_exc_info if fmt == "json" else structlog.processors.StackInfoRenderer(),
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Libraries that are chatty at INFO about things an operator never needs.
    for noisy in ("httpx", "httpcore", "chromadb", "sentence_transformers", "transformers", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # django.request repeats every 4xx/5xx response the access log already has ("Not Found: /x",
    # outside the request's context, so without its request_id); keep only its events that carry
    # an exception: that one event is where an unhandled exception's traceback is logged.
    logging.getLogger("django.request").addFilter(_only_exceptions)


def _only_exceptions(record: logging.LogRecord) -> bool:
    return record.exc_info is not None

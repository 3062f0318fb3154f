"""structlog, configured once: JSON lines in production, readable lines in development.

Every event carries a `component` (set by the logger, or derived from its name), whatever
was bound to the context where the work started (`request_id`, `client_ip` by the request
middleware, `job_id` by the ingest worker, the platform event id by the bots: see
`bind_context`), and never the text of a question or a document unless LOG_CONTENT is on.
"""

from __future__ import annotations

import logging
import sys
import threading
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

# Libraries that log request and response bodies (questions, prompts, passages, chat messages) at
# DEBUG or INFO: the groq and openai SDKs log every request's JSON, slack_sdk/bolt and discord.py
# every payload, httpx/urllib3 every URL, Django's db.backends every query with its parameters.
# Unless LOG_CONTENT is on, only their warnings and errors reach the logs, whatever LOG_LEVEL says.
CAPPED_LIBRARIES = (
    "groq", "openai", "httpx", "httpcore", "urllib3", "requests", "slack_sdk", "slack_bolt", "discord",
    "websockets", "chromadb", "sentence_transformers", "transformers", "huggingface_hub", "onnxruntime",
    "django.db.backends", "asyncio", "daphne.ws_protocol", "daphne.http_protocol",
)


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
    if not log_content:
        # On the handler, so a library that sets its own logger's level (or handler) is held too.
        handler.addFilter(_library_cap)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for library in CAPPED_LIBRARIES:
        library_logger = logging.getLogger(library)
        # Not even formatted below the cap; with LOG_CONTENT they follow LOG_LEVEL.
        library_logger.setLevel(level if log_content else max(logging.WARNING, logging.getLevelName(level)))
        library_logger.handlers[:] = []  # their records reach the root's JSON handler only
        library_logger.propagate = True
    capture_stray_output()
    if fmt == "json":
        _daphne_access_log_as_events()
    # django.request repeats every 4xx/5xx response the access log already has ("Not Found: /x",
    # outside the request's context, so without its request_id); keep only its events that carry
    # an exception: that one event is where an unhandled exception's traceback is logged.
    logging.getLogger("django.request").addFilter(_only_exceptions)


def _only_exceptions(record: logging.LogRecord) -> bool:
    return record.exc_info is not None


def _library_cap(record: logging.LogRecord) -> bool:
    """Below WARNING, a capped library's record is dropped."""
    if record.levelno >= logging.WARNING:
        return True
    name = record.name
    return not any(name == lib or name.startswith(lib + ".") for lib in CAPPED_LIBRARIES)


_access = structlog.get_logger("daphne.access", component="server")


def _daphne_access_log_as_events() -> None:
    """daphne's access log (on unless `-v 0`) written as JSON events rather than NCSA text lines on stdout.

    daphne builds its AccessLogGenerator before it imports the application, so the class's one
    writer is replaced here; each entry becomes a `daphne.access` event.
    """
    try:
        from daphne.access import AccessLogGenerator  # type: ignore[import-untyped]
    except ImportError:  # not served by daphne
        return

    def write_entry(self: Any, host: str, date: Any, request: str, status: int | None = None,
                    length: int | None = None, ident: str | None = None, user: str | None = None) -> None:
        _access.info("daphne.access", client=host, request=request, status=status, bytes=length)

    AccessLogGenerator.write_entry = write_entry


_stray = structlog.get_logger("console.ops.logs", component="python")


def capture_stray_output() -> None:
    """What Python itself would print as plain text goes through the JSON handler instead.

    Warnings (`warnings.warn`), an exception that ends the program, one that ends a thread and one
    raised where nobody can catch it (a finalizer) are each logged as one event with its traceback.
    """
    logging.captureWarnings(True)  # the `py.warnings` logger

    def excepthook(kind: type[BaseException], exc: BaseException, tb: Any) -> None:
        if issubclass(kind, KeyboardInterrupt):
            return sys.__excepthook__(kind, exc, tb)
        _stray.critical("python.uncaught_exception", exc_info=(kind, exc, tb))

    def thread_excepthook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit or args.exc_value is None:
            return
        _stray.error("python.thread_died", thread=getattr(args.thread, "name", None),
                     exc_info=(args.exc_type, args.exc_value, args.exc_traceback))

    def unraisablehook(unraisable: Any) -> None:
        exc = unraisable.exc_value
        _stray.warning("python.unraisable_exception", detail=str(unraisable.err_msg or "")[:200],
                       exc_info=(type(exc), exc, unraisable.exc_traceback) if exc is not None else None)

    sys.excepthook = excepthook
    threading.excepthook = thread_excepthook
    sys.unraisablehook = unraisablehook

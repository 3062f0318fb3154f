"""Parsing an original in a child process, within limits, so one hostile file fails alone.

A .docx is a zip: 0.76 MB can inflate to 310 MB of XML and gigabytes of parser memory, and a
parser stuck on it would hold the only worker. So each file is parsed in a process of its own
(forked from a server that has the loaders imported already: milliseconds per file), with

- its inflated size checked before parsing (a zip's entries declare their sizes, and Python's
  zipfile never inflates an entry past what it declares),
- its extra memory capped (RLIMIT_AS above what the child holds at start),
- its wall time capped, and
- `should_stop()` asked twice a second: a cancelled job kills the child at once.

Nothing here touches Django: the child gets plain values and returns a ParsedDocument.
"""

from __future__ import annotations

import io
import multiprocessing
import resource
import signal
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

from ragcore import loaders
from ragcore.errors import LoaderError
from ragcore.settings import MB
from ragcore.types import ParsedDocument

POLL_SECONDS = 0.5
# The forkserver starts once per worker process with the loaders imported; each file's child is a
# fork of it, so a child starts in milliseconds and never inherits the worker's threads or sockets.
_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(["ragcore.loaders"])


class Stopped(BaseException):  # noqa: N818 - named for what happened, like asyncio.CancelledError
    """The job was cancelled while this file ran.

    A BaseException, like asyncio.CancelledError, so it passes through the engine's
    `except Exception` handlers (which turn a failure into a file's result) up to the worker.
    """


class ParseFailed(Exception):
    """The file could not be parsed: `error_type` and a `message` that names the file."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message


@dataclass(frozen=True)
class Limits:
    max_inflated_bytes: int
    max_memory_bytes: int
    timeout_seconds: float


def parse_original(path: Path, name: str, limits: Limits, *, should_stop: Callable[[], bool]) -> ParsedDocument:
    """The parsed document, or ParseFailed naming the file; Stopped when `should_stop()` says so first."""
    receive, send = _CONTEXT.Pipe(duplex=False)
    child = _CONTEXT.Process(target=_child, args=(send, str(path), name, limits), name=f"parse {name}", daemon=True)
    child.start()
    send.close()  # the child holds the other end: EOF here means the child is gone
    deadline = time.monotonic() + limits.timeout_seconds
    try:
        while not receive.poll(POLL_SECONDS):
            if should_stop():
                raise Stopped
            if not child.is_alive():
                break
            if time.monotonic() > deadline:
                raise ParseFailed("ParseTimeout", f"{name}: parsing took longer than {limits.timeout_seconds:g} s; "
                                                  "the file may be damaged or hostile (INGEST_PARSE_TIMEOUT_SECONDS)")
        try:
            outcome = receive.recv()
        except EOFError:
            child.join(timeout=5)
            raise ParseFailed("ParserDied", f"{name}: the parser process died ({_exit_reason(child.exitcode)})") from None
    finally:
        if child.is_alive():
            child.kill()
        child.join(timeout=5)
        receive.close()
    if isinstance(outcome, ParsedDocument):
        return outcome
    error_type, message = outcome
    raise ParseFailed(error_type, message)


def _child(send: Connection, path: str, name: str, limits: Limits) -> None:
    """Runs in the child: limits first, then the inflated-size check, then the loader."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the worker, which stops this child
    outcome: ParsedDocument | tuple[str, str]
    ceiling = 0
    try:
        ceiling = _limit_memory(limits.max_memory_bytes)
        data = Path(path).read_bytes()
        _check_inflated_size(data, name, limits.max_inflated_bytes)
        outcome = loaders.load_bytes(data, name)
    except (LoaderError, MemoryError) as exc:
        # The loaders wrap parser errors; libxml2 out of memory even says only "unknown error". So a failure
        # that came within 10% of the ceiling is the memory limit's.
        near_ceiling = ceiling and _vm_bytes("VmPeak") > ceiling - limits.max_memory_bytes // 10
        if isinstance(exc, MemoryError) or isinstance(exc.__cause__, MemoryError) or near_ceiling:
            outcome = ("ParseMemoryExceeded", f"{name}: parsing needed more than {limits.max_memory_bytes // MB} MB of "
                                              "memory; the file may be damaged or hostile (INGEST_PARSE_MAX_MEMORY_MB)")
        else:
            outcome = (type(exc).__name__, str(exc))
    except ParseFailed as exc:
        outcome = (exc.error_type, exc.message)
    except Exception as exc:  # a parser bug is this file's failure, reported to the worker
        outcome = (type(exc).__name__, f"{name}: {type(exc).__name__}: {exc}")
    try:
        send.send(outcome)
    except MemoryError:
        send.send(("ParseMemoryExceeded", f"{name}: the parsed text is too large to hand back"))
    send.close()


def _limit_memory(extra_bytes: int) -> int:
    """Caps the address space at what the child holds now (the imported loaders) plus `extra_bytes`; returns the cap."""
    limit = _vm_bytes("VmSize") + extra_bytes
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    return limit


def _vm_bytes(field: str) -> int:
    """This process's VmSize or VmPeak from /proc (0 where there is none)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _check_inflated_size(data: bytes, name: str, limit: int) -> None:
    """A zip (docx) that declares more inflated bytes than `limit` is refused before anything is inflated."""
    if not data.startswith(b"PK\x03\x04"):
        return
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            inflated = sum(info.file_size for info in archive.infolist())
    except zipfile.BadZipFile:
        return  # the loader names what is wrong with it
    if inflated > limit:
        raise ParseFailed("InflatedTooLarge", f"{name}: inflates to {inflated / MB:.0f} MB, over the {limit // MB} MB "
                                              "limit (a zip bomb?) (INGEST_PARSE_MAX_INFLATED_MB)")


def _exit_reason(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"

"""The chat's one sync/async seam: short ORM calls, awaited by the consumer, the bots and the chat service.

Reads run in the thread pool (`in_thread_pool`); the chat's writes go to one writer thread
(`in_writer`), which commits whatever queued meanwhile in one transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import fcntl
import os
import threading
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Future
from functools import partial
from typing import Any, ParamSpec, TypeVar

from django.db import close_old_connections, connection, transaction

IDLE_SECONDS = 2.0
P = ParamSpec("P")
T = TypeVar("T")


def in_thread_pool(fn: Callable[P, T]) -> Callable[P, Awaitable[T]]:
    """`fn` as a coroutine that runs in the event loop's thread pool rather than on the one shared DB thread.

    sync_to_async is thread-sensitive by default, so every chat in the process would queue
    behind every other's writes; these calls touch no thread-bound state. Handed to the pool as
    asyncio.to_thread does (the caller's context, so logs keep its bound ids), not through
    sync_to_async(thread_sensitive=False), whose bookkeeping cost more than a short query.
    """

    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        # As channels' database_sync_to_async does: drop broken or expired connections
        # (CONN_MAX_AGE) of this pool thread before and after the call.
        close_old_connections()
        try:
            return fn(*args, **kwargs)
        finally:
            close_old_connections()

    async def in_pool(*args: P.args, **kwargs: P.kwargs) -> T:
        context = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(None, partial(context.run, run, *args, **kwargs))

    return in_pool


def sqlite_turn_path() -> str | None:
    """The lock file that gives the chat writers of every process sharing this SQLite file their turn; None when
    the database is not a SQLite file (PostgreSQL has no one write lock, an in-memory database no other process)."""
    if connection.vendor != "sqlite":
        return None
    name = str(connection.settings_dict["NAME"])
    if not name or name == ":memory:" or "mode=memory" in name:
        return None
    return f"{name}-writer-lock"  # beside its -wal and -shm files


class WriteTurn:
    """Whose turn it is to write a SQLite file, among the processes that share it: an exclusive `flock`.

    Two daphne processes' writers otherwise meet on SQLite's own write lock, whose busy handler sleeps
    1, 2, 5 … 100 ms between tries: a writer that found the file locked slept on past the other's commit,
    and the other, its queue full again, often took the lock first (the two-process wave's questions
    waited 1.3 s at p95 to be stored, one process's 0.9 s). A process waiting on the flock is woken as
    soon as it is released. Held only around the writer's transaction; other writers (pages, the worker)
    still meet on SQLite's lock as before.
    """

    def __init__(self, path: Callable[[], str | None] = sqlite_turn_path) -> None:
        self._path = path
        self._fd = -1
        self._opened: tuple[str, int] | None = None  # (path, pid): a forked child opens its own (flock is per open file)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        path = self._path()
        if path is None:
            yield
            return
        if self._opened != (path, os.getpid()):
            if self._opened is not None and self._opened[1] == os.getpid():
                os.close(self._fd)  # another database (tests): this process's own descriptor of the old one
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._opened = (path, os.getpid())
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)


class Writer:
    """One thread that runs the chat's writes: whatever queued while it wrote goes in one transaction.

    Each chat storing its rows in its own transaction, from whichever pool thread, made 200 questions
    at once 200 commits queueing on SQLite's write lock (with sleep back-off) and 400 connections
    opened and closed (CONN_MAX_AGE is 0). Here a burst is a few commits on one connection. Each job
    runs in its own savepoint, so one that fails (a refused question) undoes only its own writes;
    results are handed back only once the transaction is committed.

    The thread keeps its connection while it has work, whatever CONN_MAX_AGE says (closing a SQLite
    connection checkpoints its write-ahead log: that was most of a question's cost), and closes it
    when it ends, IDLE_SECONDS after the last write.
    """

    def __init__(self, *, max_batch: int = 64, idle_seconds: float = IDLE_SECONDS, turn: WriteTurn | None = None) -> None:
        self._max_batch = max_batch
        self._turn = turn or WriteTurn()
        self._idle_seconds = idle_seconds  # the thread ends (closing its connection) after this long idle
        self._waiting: list[tuple[Callable[[], Any], Future[Any]]] = []
        self._ready = threading.Condition()
        self._thread: threading.Thread | None = None
        self.commits = 0  # transactions committed, for tests and the curious

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        future: Future[T] = Future()
        with self._ready:
            self._waiting.append((fn, future))
            if self._thread is None or not self._thread.is_alive():  # not alive: we are a forked child
                self._thread = threading.Thread(target=self._work, name="chat-writer", daemon=True)
                self._thread.start()
            self._ready.notify()
        return future

    def _work(self) -> None:
        try:
            while True:
                with self._ready:
                    while not self._waiting:
                        if not self._ready.wait(self._idle_seconds) and not self._waiting:
                            self._thread = None  # under the lock: the next submit starts a new one
                            return
                    batch, self._waiting = self._waiting[: self._max_batch], self._waiting[self._max_batch :]
                self._run(batch)
        finally:
            connection.close()  # this thread's own connection: nothing holds the database once idle

    def _run(self, batch: list[tuple[Callable[[], Any], Future[Any]]]) -> None:
        batch = [(fn, future) for fn, future in batch if future.set_running_or_notify_cancel()]
        if not batch:
            return
        outcomes: list[tuple[Future[Any], Any, BaseException | None]] = []
        try:
            with self._turn.held(), transaction.atomic():
                for fn, future in batch:
                    try:
                        with transaction.atomic():
                            outcomes.append((future, fn(), None))
                    except Exception as exc:
                        outcomes.append((future, None, exc))
            self.commits += 1
        except Exception as exc:  # the commit itself failed: nothing of the batch is stored
            connection.close()  # the next batch reconnects, in case the connection is what broke
            for _, future in batch:
                future.set_exception(exc)
            return
        for future, result, error in outcomes:
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)

    def close(self) -> None:
        """Ends the thread (and so its connection) once the queue is empty; the next submit starts it again."""
        with self._ready:
            thread, self._idle_seconds = self._thread, 0.0
            self._ready.notify()
        if thread is not None:
            thread.join()
        with self._ready:
            self._idle_seconds = IDLE_SECONDS


_writer = Writer()


def writer() -> Writer:
    """The process's chat writer."""
    return _writer


def in_writer(fn: Callable[P, T]) -> Callable[P, Awaitable[T]]:
    """`fn` as a coroutine that runs in the chat writer's transaction (see Writer)."""

    async def run(*args: P.args, **kwargs: P.kwargs) -> T:
        # In the caller's context, so what it logs carries the caller's bound request and event ids.
        context = contextvars.copy_context()
        return await asyncio.wrap_future(_writer.submit(partial(context.run, fn, *args, **kwargs)))

    return run

"""The chat's one sync/async seam: short ORM calls, awaited by the consumer, the bots and the chat service."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.db import close_old_connections

P = ParamSpec("P")
T = TypeVar("T")


def in_thread_pool(fn: Callable[P, T]) -> Callable[P, Awaitable[T]]:
    """`fn` as a coroutine that runs in the thread pool rather than on the one shared DB thread.

    sync_to_async is thread-sensitive by default, so every chat in the process would queue
    behind every other's writes; these calls touch no thread-bound state.
    """

    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        # As channels' database_sync_to_async does: drop broken or expired connections
        # (CONN_MAX_AGE) of this pool thread before and after the call.
        close_old_connections()
        try:
            return fn(*args, **kwargs)
        finally:
            close_old_connections()

    return sync_to_async(run, thread_sensitive=False)

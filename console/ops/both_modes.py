"""The one base for middleware that runs sync and async: under daphne it adds no thread hop to a request."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest


class BothModesMiddleware:
    """Sync and async capable; `is_async` says which chain Django built, so `__call__` can pick its path.

    Django calls the instance the way the next handler wants: a coroutine function in an async
    chain (daphne), a plain function in a sync one (the test client, WSGI).
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        """Handles one request; each subclass takes the sync or async path by `is_async`."""
        raise NotImplementedError

"""The request middleware: a request id, the client's address, one access log event and the HTTP metrics.

It binds `request_id` (the caller's X-Request-ID when it is a sane token, else a new one, and
returned in the response's X-Request-ID), `client_ip`, `method` and `path` to the logging
context, so every event logged while the request runs (Django's, the chat service's, the
engine's, in worker threads too) carries them; then it logs `http.request` with the status
and latency, and counts the request under its URL pattern.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import time
import uuid
from collections.abc import Awaitable
from typing import Any

import structlog
from django.conf import settings
from django.http import HttpRequest, HttpResponse

from console.ops.both_modes import BothModesMiddleware
from console.ops.metrics import HTTP_REQUESTS, HTTP_SECONDS

log = structlog.get_logger(__name__, component="http")

REQUEST_ID_HEADER = "X-Request-ID"
# What we accept from a caller: a UUID, a hex string, nginx's $request_id, a short opaque token.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "<unmatched>"
# nginx's code for a request whose client closed the connection before the response: not a server error.
CLIENT_DISCONNECTED = 499


def request_id_for(request: HttpRequest) -> str:
    incoming = request.headers.get(REQUEST_ID_HEADER, "")
    return incoming if _SANE_REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex


def _trusted(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in settings.TRUSTED_PROXIES)


def client_ip_for(request: HttpRequest) -> str:
    """The peer's address; behind trusted proxies, the last X-Forwarded-For hop they did not add.

    Walking from the right: each trusted proxy appended the address it received the request
    from, so the first untrusted one is the client (anything left of it is the client's say-so).
    """
    peer = request.META.get("REMOTE_ADDR", "")
    if not _trusted(peer):
        return peer
    hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not _trusted(hop):
            return hop
    return hops[0] if hops else peer


def route_of(request: HttpRequest) -> str:
    """The URL pattern that served the request ("/status/<int:job_id>"), never the raw path."""
    match = getattr(request, "resolver_match", None)
    if match is None or match.route is None:
        return UNMATCHED
    return "/" + match.route


class RequestContextMiddleware(BothModesMiddleware):
    """Request id, client address, access log and HTTP metrics for every request (sync and async)."""

    def __call__(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        if self.is_async:
            return self._acall(request)
        started, tokens = self._begin(request)
        response = None
        try:
            response = self.get_response(request)
            return response
        finally:
            self._end(request, response, started, tokens)

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        started, tokens = self._begin(request)
        response = None
        disconnected = False
        try:
            response = await self.get_response(request)
            return response
        except asyncio.CancelledError:
            # Django's ASGI handler cancels the view when the client hangs up (http.disconnect).
            disconnected = True
            raise
        finally:
            self._end(request, response, started, tokens, disconnected=disconnected)

    def _begin(self, request: HttpRequest) -> tuple[float, Any]:
        request_id, client_ip = request_id_for(request), client_ip_for(request)
        # Read back by the /metrics check (client_ip) and by _end (request_id).
        request.request_id = request_id  # type: ignore[attr-defined]
        request.client_ip = client_ip  # type: ignore[attr-defined]
        tokens = structlog.contextvars.bind_contextvars(
            request_id=request_id,
            client_ip=client_ip,
            method=request.method,
            path=request.path,
        )
        return time.perf_counter(), tokens

    def _end(self, request: HttpRequest, response: HttpResponse | None, started: float, tokens: Any, *,
             disconnected: bool = False) -> None:
        seconds = time.perf_counter() - started
        status = CLIENT_DISCONNECTED if disconnected else response.status_code if response is not None else 500
        method = request.method if request.method in _METHODS else "other"
        route = route_of(request)
        HTTP_REQUESTS.labels(method, route, str(status)).inc()
        HTTP_SECONDS.labels(method, route).observe(seconds)
        if response is not None:
            response[REQUEST_ID_HEADER] = request.request_id  # type: ignore[attr-defined]
        # A warning, not an error: an unhandled exception has its own error event, with the traceback.
        level = log.warning if 500 <= status < 600 else log.info
        extra = {"outcome": "client disconnected"} if disconnected else {}
        level("http.request", status=status, route=route, latency_ms=round(seconds * 1000, 1), **extra)
        structlog.contextvars.reset_contextvars(**tokens)

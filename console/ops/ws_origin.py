"""The chat socket's origin check: the page must come from this very origin, scheme, host and port.

Channels' AllowedHostsOriginValidator compares host names only, so a page served from another port
of the same host (which the browser sends the session cookie for: cookies ignore ports) could open
the socket and read a user's chats. A browser always sends `Origin` on a WebSocket handshake.
"""

from __future__ import annotations

from typing import Any

import structlog
from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host

from console.chat.metrics import WEBSOCKET_CONNECTIONS
from console.ops.origins import normalized_origin
from console.ops.security import is_trusted_proxy

log = structlog.get_logger(__name__, component="websocket")

Scope = dict[str, Any]


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key == name:
            return bytes(value).decode("latin-1")
    return ""


def _allowed_hosts() -> list[str]:
    # The same fallback as Django's HttpRequest.get_host(), so HTTP and WebSocket agree.
    if settings.DEBUG and not settings.ALLOWED_HOSTS:
        return [".localhost", "127.0.0.1", "[::1]"]
    return list(settings.ALLOWED_HOSTS)


def own_origin(scope: Scope) -> str | None:
    """The origin this handshake was addressed to: its scheme (or a trusted proxy's), Host and port."""
    host = _header(scope, b"host")
    domain, _ = split_domain_port(host)
    if not domain or not validate_host(domain, _allowed_hosts()):
        return None
    scheme = "https" if scope.get("scheme") == "wss" else "http"
    client = scope.get("client") or ("", 0)
    forwarded = _header(scope, b"x-forwarded-proto").split(",")[0].strip().lower()
    if forwarded in ("http", "https") and is_trusted_proxy(client[0]):
        scheme = forwarded  # nginx ended TLS and said so
    return normalized_origin(f"{scheme}://{host}")


def origin_allowed(scope: Scope) -> bool:
    """True when the page's Origin is this server's own origin, or LOREBOT_PUBLIC_URL's."""
    origin = normalized_origin(_header(scope, b"origin"))
    if origin is None:
        return False
    own = own_origin(scope)
    return own is not None and origin in (own, settings.LOREBOT_PUBLIC_ORIGIN)


class SameOriginValidator:
    """ASGI middleware: a WebSocket handshake from any other origin is refused with HTTP 403."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> Any:
        if scope["type"] == "websocket" and not origin_allowed(scope):
            WEBSOCKET_CONNECTIONS.labels("forbidden_origin").inc()
            log.warning("websocket.origin_refused", origin=_header(scope, b"origin")[:200],
                        host=_header(scope, b"host")[:200])
            return await WebsocketDenier()(scope, receive, send)
        return await self.application(scope, receive, send)

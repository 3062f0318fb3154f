"""Web origins (scheme, host and port) as browsers send them in `Origin`, for comparing exactly."""

from __future__ import annotations

from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443}
# A WebSocket handshake is an HTTP request: its origin is written with the page's scheme.
_PAGE_SCHEME = {"ws": "http", "wss": "https"}


def normalized_origin(url: str) -> str | None:
    """`scheme://host[:port]` of an http(s) URL, lower-cased, without a default port; None if it has none."""
    # Browsers write `Origin` this way (RFC 6454 §6.2), so two origins are the same exactly when
    # these strings are equal: scheme, host and port all count.
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:  # a port that is not a number, or an unbalanced IPv6 bracket
        return None
    scheme = _PAGE_SCHEME.get(parts.scheme.lower(), parts.scheme.lower())
    host = parts.hostname
    if scheme not in ("http", "https") or not host or parts.username is not None:
        return None
    if ":" in host:
        host = f"[{host}]"  # an IPv6 address keeps its brackets
    if port is None or port == DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"

"""The chat socket's origin check: scheme, host and port of the page must be the server's own."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from django.test import override_settings
from prometheus_client import REGISTRY

from console.asgi import application
from console.ops.origins import normalized_origin
from console.ops.ws_origin import origin_allowed

pytestmark = pytest.mark.django_db(transaction=True)

PROXY = [ipaddress.ip_network("127.0.0.1/32")]


def scope(origin: str | None, host: str = "127.0.0.1:8000", *, scheme: str = "ws", client: str = "203.0.113.5",
          forwarded_proto: str | None = None) -> dict[str, Any]:
    headers = [(b"host", host.encode())]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    if forwarded_proto is not None:
        headers.append((b"x-forwarded-proto", forwarded_proto.encode()))
    return {"type": "websocket", "scheme": scheme, "client": (client, 50000), "headers": headers}


@pytest.mark.parametrize(("url", "origin"), [
    ("https://Lorebot.Example.com", "https://lorebot.example.com"),
    ("https://lorebot.example.com:443/chat/", "https://lorebot.example.com"),
    ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
    ("wss://[::1]:8443/ws/chat/", "https://[::1]:8443"),
    ("ftp://example.com", None), ("https://user:pw@example.com", None), ("http://host:port", None), ("", None),
])
def test_origins_are_compared_in_the_form_browsers_send(url: str, origin: str | None) -> None:
    assert normalized_origin(url) == origin


def test_the_page_s_own_origin_is_allowed() -> None:
    assert origin_allowed(scope("http://127.0.0.1:8000"))
    assert origin_allowed(scope("http://localhost", host="localhost"))


@pytest.mark.parametrize("origin", [
    "http://127.0.0.1:9999",  # another port of the same host: the browser sends it the cookie all the same
    "http://127.0.0.1",  # port 80
    "https://127.0.0.1:8000",  # another scheme
    "http://localhost:8000",  # another host name, even one in ALLOWED_HOSTS
    "http://evil.example:8000",
    "null",  # sandboxed frames and file:// pages
])
def test_any_other_origin_is_refused(origin: str) -> None:
    assert not origin_allowed(scope(origin))


def test_a_handshake_without_origin_or_with_a_host_not_allowed_is_refused() -> None:
    assert not origin_allowed(scope(None))
    assert not origin_allowed(scope("http://evil.example", host="evil.example"))


@override_settings(TRUSTED_PROXIES=PROXY)
def test_behind_a_trusted_proxy_that_ended_tls_the_origin_is_https() -> None:
    behind = {"host": "lorebot.example.com", "client": "127.0.0.1", "forwarded_proto": "https"}
    with override_settings(ALLOWED_HOSTS=["lorebot.example.com"]):
        assert origin_allowed(scope("https://lorebot.example.com", **behind))
        assert not origin_allowed(scope("http://lorebot.example.com", **behind))
        # The same header from anyone else proves nothing: the socket is plain ws, so the origin is http.
        untrusted = {**behind, "client": "203.0.113.5"}
        assert not origin_allowed(scope("https://lorebot.example.com", **untrusted))
        assert origin_allowed(scope("https://lorebot.example.com", "lorebot.example.com", scheme="wss"))


@override_settings(LOREBOT_PUBLIC_ORIGIN="https://lorebot.example.com")
def test_lorebot_public_url_is_allowed_whatever_host_the_proxy_passed() -> None:
    assert origin_allowed(scope("https://lorebot.example.com", host="127.0.0.1:8001"))
    assert not origin_allowed(scope("https://lorebot.example.com:8443", host="127.0.0.1:8001"))


def _refused() -> float:
    return REGISTRY.get_sample_value("rag_websocket_connections_total", {"outcome": "forbidden_origin"}) or 0.0


async def test_through_the_asgi_application_a_cross_port_page_is_refused_and_counted() -> None:
    before = _refused()
    comm = WebsocketCommunicator(application, "/ws/chat/", headers=[(b"host", b"127.0.0.1:8000"),
                                                                   (b"origin", b"http://127.0.0.1:9999")])
    connected, _ = await comm.connect(timeout=5)
    assert not connected
    assert _refused() - before == 1
    await comm.disconnect()

    comm = WebsocketCommunicator(application, "/ws/chat/", headers=[(b"host", b"127.0.0.1:8000"),
                                                                   (b"origin", b"http://127.0.0.1:8000")])
    connected, _ = await comm.connect(timeout=5)
    assert connected, "the real origin gets through to the consumer (which then wants a login)"
    await comm.disconnect()

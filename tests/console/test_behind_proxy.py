"""Requests as nginx forwards them after ending TLS, and as a client talking to daphne directly sends them."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client, override_settings

pytestmark = pytest.mark.django_db

TEMPLATES = Path(__file__).resolve().parents[2] / "console" / "templates"
PROXY = "127.0.0.1"
BEHIND_TLS = {"HTTP_HOST": "lorebot.example.com", "HTTP_X_FORWARDED_PROTO": "https", "HTTP_X_FORWARDED_FOR": "198.51.100.20",
              "REMOTE_ADDR": PROXY}
proxied = override_settings(TRUSTED_PROXIES=[ipaddress.ip_network(PROXY)], ALLOWED_HOSTS=["lorebot.example.com"],
                            SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https"))


@pytest.fixture
def alice(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    get_user_model().objects.create_user("alice", password="right-pw", is_staff=True)


def log_in(client: Client, **meta: str) -> Any:
    page = client.get("/accounts/login/", **meta)  # type: ignore[arg-type]
    token = page.cookies["csrftoken"].value
    return client.post("/accounts/login/", {"username": "alice", "password": "right-pw", "csrfmiddlewaretoken": token},
                       HTTP_ORIGIN="https://lorebot.example.com", **meta)  # type: ignore[arg-type]


@proxied
def test_behind_a_tls_proxy_a_browser_can_log_in(alice: None) -> None:
    response = log_in(Client(enforce_csrf_checks=True), **BEHIND_TLS)
    assert response.status_code == 302 and response["Location"] == "/console/"
    assert response.cookies["sessionid"]["httponly"]
    assert response["Strict-Transport-Security"] == "max-age=31536000"


@override_settings(ALLOWED_HOSTS=["lorebot.example.com"], SECURE_PROXY_SSL_HEADER=None)
def test_without_the_proxy_header_setting_the_login_fails_the_origin_check(alice: None) -> None:
    """The finding this fixes: every POST behind TLS got 403 "Origin checking failed"."""
    response = log_in(Client(enforce_csrf_checks=True), **BEHIND_TLS)
    assert response.status_code == 403


@proxied
def test_a_client_that_is_not_a_trusted_proxy_cannot_claim_https() -> None:
    direct = Client().get("/health", HTTP_HOST="lorebot.example.com", HTTP_X_FORWARDED_PROTO="https", REMOTE_ADDR="203.0.113.5")
    assert "Strict-Transport-Security" not in direct, "the header was ignored: this request was plain http"
    forwarded = Client().get("/health", **BEHIND_TLS)  # type: ignore[arg-type]
    assert forwarded["Strict-Transport-Security"] == "max-age=31536000"


@pytest.mark.parametrize("path", ["/accounts/login/", "/chat/", "/", "/health"])
def test_every_page_carries_the_content_security_policy(path: str) -> None:
    policy = Client().get(path)["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"
    assert directives["object-src"] == "'none'" and directives["frame-ancestors"] == "'none'"
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy


def test_no_template_has_inline_script_style_or_event_handlers() -> None:
    inline = {
        "style attribute": re.compile(r"\sstyle\s*="),
        "<style> element": re.compile(r"<style[\s>]", re.IGNORECASE),
        "event handler attribute": re.compile(r"\son[a-z]+\s*=", re.IGNORECASE),
        "javascript: URL": re.compile(r"javascript:", re.IGNORECASE),
        "inline <script>": re.compile(r"<script(?![^>]*\ssrc=)[^>]*>", re.IGNORECASE),
    }
    found = [f"{path.relative_to(TEMPLATES)}: {what}"
             for path in sorted(TEMPLATES.rglob("*.html")) for what, pattern in inline.items()
             if pattern.search(path.read_text())]
    assert found == []

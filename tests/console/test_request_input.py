"""Request input refused before any handler: bodies that are not UTF-8, NUL in query-string and form fields."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import AsyncClient, Client, override_settings
from prometheus_client import REGISTRY
from slack_sdk.signature import SignatureVerifier

pytestmark = pytest.mark.django_db

SECRET = "attacker-does-not-know-this"
LATIN1 = "Frage: wie läuft das Deployment?".encode("latin-1")


def refused(reason: str) -> float:
    return REGISTRY.get_sample_value("rag_http_refused_total", {"reason": reason}) or 0.0


@pytest.fixture
def staff_client(settings: Any) -> Client:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    user = get_user_model().objects.create_user("staff", password="pw", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(user)
    return client


@override_settings(SLACK_BOT_TOKEN="xoxb-test", SLACK_SIGNING_SECRET=SECRET)
async def test_a_forged_slack_request_with_a_latin1_body_gets_400_not_a_traceback() -> None:
    """The attack: a made-up signature, a fresh timestamp and bytes that are not UTF-8 (no secret needed)."""
    before = refused("not_utf8")
    headers = {"X-Slack-Request-Timestamp": str(int(time.time())), "X-Slack-Signature": "v0=" + "0" * 64}
    response = await AsyncClient().post("/slack/events", data=LATIN1, content_type="application/json", headers=headers)
    assert response.status_code == 400
    assert b"not UTF-8" in response.content and b"0xe4 at position 12" in response.content
    assert refused("not_utf8") - before == 1


@override_settings(SLACK_BOT_TOKEN="xoxb-test", SLACK_SIGNING_SECRET=SECRET)
async def test_a_correctly_signed_utf8_slack_request_still_reaches_slack() -> None:
    body = '{"type": "url_verification", "challenge": "grüße", "token": "x"}'
    ts = str(int(time.time()))
    headers = {"X-Slack-Request-Timestamp": ts,
               "X-Slack-Signature": SignatureVerifier(SECRET).generate_signature(timestamp=ts, body=body) or ""}
    response = await AsyncClient().post("/slack/events", data=body.encode(), content_type="application/json",
                                        headers=headers)
    assert response.status_code == 200 and response.json()["challenge"] == "grüße"


def test_a_login_form_posted_in_latin1_is_refused_with_400() -> None:
    body = b"username=j%F6rg&password=x" + b"\xf6"
    response = Client().post("/accounts/login/", data=body, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400 and b"not UTF-8" in response.content


@pytest.mark.parametrize("url", [
    "/admin/console/message/?q=%00",
    "/admin/console/document/?q=abc%00def",
    "/console/documents/?status=%00",
    "/console/conversations/?q=%00",
])
def test_a_nul_in_a_console_or_admin_filter_is_refused_before_the_database(staff_client: Client, url: str) -> None:
    """On PostgreSQL such a filter was a DataError (500); SQLite accepted it."""
    before = refused("bad_text")
    response = staff_client.get(url)
    assert response.status_code == 400
    assert b"contains a NUL character" in response.content
    assert refused("bad_text") - before == 1


def test_a_nul_in_a_posted_form_field_is_refused_naming_the_field() -> None:
    response = Client().post("/accounts/login/", "username=alice%00admin&password=x",
                             content_type="application/x-www-form-urlencoded")  # as a browser sends it
    assert response.status_code == 400
    assert b"form field 'username' contains a NUL character" in response.content


def test_ordinary_requests_pass(staff_client: Client) -> None:
    assert staff_client.get("/console/documents/?q=d%C3%A9ploiement").status_code == 200
    assert staff_client.get("/admin/console/message/?q=caf%C3%A9").status_code == 200

"""One-time link codes: issued over the web chat socket, redeemed by a bot through console.chat, kept hashed."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.contrib.sessions.backends.db import SessionStore
from django.db import connection
from django.test import override_settings
from django.utils import timezone
from prometheus_client import REGISTRY

from console import chat
from console.models import AccountLink, LinkCode
from tests.console.test_ws_chat import _session_cookie, open_socket
from tests.support import captured_logs

pytestmark = pytest.mark.django_db(transaction=True)


def codes(platform: str, outcome: str) -> float:
    return REGISTRY.get_sample_value("rag_link_codes_total", {"platform": platform, "outcome": outcome}) or 0.0


def _user(name: str = "alice", **extra: Any) -> Any:
    return get_user_model().objects.create_user(name, password="pw", **extra)


async def test_the_web_chat_socket_hands_a_signed_in_user_a_code_that_a_dm_redeems_once() -> None:
    user, cookie = await sync_to_async(_session_cookie)("alice")
    issued = codes("web", "issued")
    comm = await open_socket(cookie)
    await comm.send_json_to({"type": "link_code"})
    frame = await comm.receive_json_from(timeout=5)
    await comm.disconnect()

    assert frame["type"] == "link_code" and frame["minutes"] == 10 and frame["linked"] == []
    code = frame["code"]
    assert len(code) == 8 and code.isalnum() and code.isupper()
    assert timezone.now() < datetime.fromisoformat(frame["expires_at"]) <= timezone.now() + timedelta(minutes=10)
    assert codes("web", "issued") == issued + 1

    # Typed lower case and with a dash, as people do; the second time it is spent.
    result = await chat.aredeem_code(f"{code[:4].lower()}-{code[4:]}", platform="slack", external_user="T1:U1")
    assert result.linked and "alice" in result.text
    link = await AccountLink.objects.select_related("user", "created_by").aget(platform="slack", external_user="T1:U1")
    assert link.user == user and link.created_by == user
    again = await chat.aredeem_code(code, platform="discord", external_user="42")
    assert again.outcome == "used" and "used already" in again.text
    assert not await AccountLink.objects.filter(platform="discord").aexists()

    comm = await open_socket(cookie)
    await comm.send_json_to({"type": "link_code"})
    assert (await comm.receive_json_from(timeout=5))["linked"] == ["slack"]
    await comm.disconnect()


@override_settings(CHAT_ALLOW_ANONYMOUS=True)
async def test_an_anonymous_chat_gets_no_code() -> None:
    def anonymous_session() -> bytes:
        session = SessionStore()
        session.create()
        return f"sessionid={session.session_key}".encode()

    comm = await open_socket(await sync_to_async(anonymous_session)())
    await comm.send_json_to({"type": "link_code"})
    frame = await comm.receive_json_from(timeout=5)
    await comm.disconnect()
    assert frame["type"] == "error" and frame["code"] == "login_required"
    assert not await LinkCode.objects.aexists()


def test_only_a_keyed_hash_of_a_code_is_stored_and_the_code_is_never_logged() -> None:
    user = _user()
    with captured_logs() as logs:
        issued = chat.links.issue_code(user)
        chat.links.redeem_code(issued.code, platform="slack", external_user="T1:U1")
    row = LinkCode.objects.get()
    assert row.digest == LinkCode.digest_of(issued.code) and len(row.digest) == 64
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM console_linkcode")
        assert issued.code not in str(cursor.fetchall())
    assert issued.code not in str(logs) and any(e["event"] == "account.linked" for e in logs)


def test_a_wrong_an_expired_and_a_replaced_code_are_refused_with_a_reason_and_counted() -> None:
    user = _user()
    refused = REGISTRY.get_sample_value("rag_access_refused_total", {"surface": "discord", "what": "link_code"}) or 0.0
    wrong = codes("discord", "wrong")

    result = chat.links.redeem_code("ZZZZ2222", platform="discord", external_user="7")
    assert result.outcome == "wrong" and "not valid" in result.text and "web chat" in result.text
    assert codes("discord", "wrong") == wrong + 1

    first = chat.links.issue_code(user)
    second = chat.links.issue_code(user)  # a new code replaces the one before
    assert chat.links.redeem_code(first.code, platform="discord", external_user="7").outcome == "used"

    LinkCode.objects.filter(digest=LinkCode.digest_of(second.code)).update(expires_at=timezone.now())
    expired = chat.links.redeem_code(second.code, platform="discord", external_user="7")
    assert expired.outcome == "expired" and "expired" in expired.text and "10 minutes" in expired.text

    assert not AccountLink.objects.exists()
    assert REGISTRY.get_sample_value("rag_access_refused_total",
                                     {"surface": "discord", "what": "link_code"}) == refused + 3


@override_settings(LINK_CODE_ATTEMPTS="3/600")
def test_guessing_codes_is_limited_per_platform_user() -> None:
    user = _user()
    for guess in ("AAAA2222", "BBBB2222", "CCCC2222"):
        assert chat.links.redeem_code(guess, platform="slack", external_user="T1:UGUESS").outcome == "wrong"
    issued = chat.links.issue_code(user)
    limited = chat.links.redeem_code(issued.code, platform="slack", external_user="T1:UGUESS")
    assert limited.outcome == "rate_limited" and "Too many" in limited.text
    assert not AccountLink.objects.exists()
    assert chat.links.redeem_code(issued.code, platform="slack", external_user="T1:UOTHER").linked


def test_a_code_of_a_deactivated_user_links_nothing() -> None:
    user = _user()
    issued = chat.links.issue_code(user)
    user.is_active = False
    user.save()
    assert chat.links.redeem_code(issued.code, platform="slack", external_user="T1:U1").outcome == "expired"


def test_a_code_posted_in_a_channel_stops_working() -> None:
    issued = chat.links.issue_code(_user())
    result = chat.links.cancel_code(issued.code, platform="slack")
    assert result.outcome == "cancelled" and "direct message" in result.text
    assert chat.links.redeem_code(issued.code, platform="slack", external_user="T1:U1").outcome == "used"


@pytest.mark.parametrize(("text", "code"), [
    ("link ABCD2345", "ABCD2345"), ("LINK abcd-2345", "ABCD2345"), ("`link ABCD2345`", "ABCD2345"),
    ("link: ABCD 2345", "ABCD2345"), ("  link  ABCD2345  ", "ABCD2345"),
    ("link to the deploy guide", None), ("what is the link ABCD2345", None), ("link ABC", None), ("link", None),
])
def test_a_link_message_is_recognised_only_when_it_is_one(text: str, code: str | None) -> None:
    assert chat.link_code_in(text) == code

"""Linking a Slack account with a one-time code: `link CODE` in a DM, `/lorebot link CODE`, and a code posted in a channel."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model

from bots.slack.app import LOREBOT_USAGE
from console import chat
from console.models import AccountLink, Conversation, Message
from tests.bots.slack.conftest import Slack, finished
from tests.fakes.slack import APP_ID, TEAM_ID, FakeSlackServer, mention, message

pytestmark = pytest.mark.django_db(transaction=True)


def _code_for(name: str) -> str:
    return chat.links.issue_code(get_user_model().objects.create_user(name, password="pw")).code


async def _reply_in(slack: Slack, channel: str, n: int = 1) -> str:
    calls = await slack.fake.wait_for("chat.postMessage", lambda c: c.args["channel"] == channel, count=n)
    return str(calls[n - 1].args["text"])


async def test_link_code_in_a_dm_links_the_account_and_is_never_a_question(slack: Slack) -> None:
    code = await sync_to_async(_code_for)("alice")
    await slack.send_event(message(f"link {code}", channel="D0ALICE", user="U0ALICE", channel_type="im"))
    assert "Linked" in await _reply_in(slack, "D0ALICE") and "alice" in await _reply_in(slack, "D0ALICE")
    link = await AccountLink.objects.select_related("user").aget(platform="slack")
    assert link.external_user == f"{TEAM_ID}:U0ALICE" and link.user.username == "alice"
    assert not await Conversation.objects.aexists() and not await Message.objects.filter(text__contains=code).aexists()
    assert not slack.fake.calls("reactions.add"), "no 👀: nothing is being looked up"

    # The same code again, from someone else: refused, with the reason.
    await slack.send_event(message(f"link {code}", channel="D0MALLORY", user="U0MALLORY", channel_type="im"))
    assert "used already" in await _reply_in(slack, "D0MALLORY")
    await slack.send_event(message("link ZZZZ9999", channel="D0MALLORY", user="U0MALLORY", channel_type="im"))
    assert "not valid" in await _reply_in(slack, "D0MALLORY", 2)
    assert await AccountLink.objects.acount() == 1


async def test_slash_lorebot_link_links_privately(slack: Slack) -> None:
    code = await sync_to_async(_code_for)("bob")
    response, _ = await slack.command(f"link {code}", name="/lorebot", user="U0BOB")
    body = json.loads(response.content)
    assert body["response_type"] == "ephemeral" and "Linked" in body["text"] and "bob" in body["text"]
    assert await AccountLink.objects.filter(platform="slack", external_user=f"{TEAM_ID}:U0BOB").aexists()
    assert not slack.fake.calls("chat.postMessage"), "nothing is posted where others could read it"

    response, _ = await slack.command("help", name="/lorebot", user="U0BOB")
    assert json.loads(response.content) == {"text": LOREBOT_USAGE, "response_type": "ephemeral"}


def _slash_lorebot(fake: FakeSlackServer, text: str, *, user: str, trigger_id: str) -> str:
    """`/lorebot text` as Slack delivers it over Socket Mode; returns the envelope id its ack answers."""
    return fake.send_envelope("slash_commands", {
        "team_id": TEAM_ID, "channel_id": "C0GENERAL", "channel_name": "general", "user_id": user,
        "command": "/lorebot", "text": text, "api_app_id": APP_ID, "response_url": fake.response_url(),
        "trigger_id": trigger_id})


async def test_slash_lorebot_link_over_socket_mode_links_privately_in_the_ack(socket_bot: FakeSlackServer) -> None:
    code = await sync_to_async(_code_for)("dave")
    ack = await socket_bot.wait_for_ack(_slash_lorebot(socket_bot, f"link {code}", user="U0DAVE", trigger_id="1.2.link"))
    assert ack["payload"]["response_type"] == "ephemeral"
    assert "Linked" in ack["payload"]["text"] and "dave" in ack["payload"]["text"]
    link = await AccountLink.objects.select_related("user").aget(platform="slack")
    assert link.external_user == f"{TEAM_ID}:U0DAVE" and link.user.username == "dave"
    assert not socket_bot.calls("chat.postMessage"), "nothing is posted where others could read it"

    # The same code from someone else, then no code at all: each told why, privately.
    ack = await socket_bot.wait_for_ack(_slash_lorebot(socket_bot, f"link {code}", user="U0MALLORY", trigger_id="1.2.again"))
    assert ack["payload"]["response_type"] == "ephemeral" and "used already" in ack["payload"]["text"]
    ack = await socket_bot.wait_for_ack(_slash_lorebot(socket_bot, "", user="U0MALLORY", trigger_id="1.2.empty"))
    assert ack["payload"] == {"text": LOREBOT_USAGE, "response_type": "ephemeral"}
    assert await AccountLink.objects.acount() == 1
    assert not socket_bot.calls("response_url") and not socket_bot.calls("chat.postMessage")


async def test_a_code_posted_in_a_channel_is_cancelled_and_its_sender_told_privately(slack: Slack) -> None:
    code = await sync_to_async(_code_for)("carol")
    await slack.send_event(mention(f"link {code}", channel="C0GENERAL", user="U0CAROL"))
    warning, = await slack.fake.wait_for("chat.postEphemeral")
    assert warning.args["user"] == "U0CAROL" and "direct message" in warning.args["text"]
    assert not slack.fake.calls("chat.postMessage")

    await slack.send_event(message(f"link {code}", channel="D0CAROL", user="U0CAROL", channel_type="im"))
    assert "used already" in await _reply_in(slack, "D0CAROL")
    assert not await AccountLink.objects.aexists()


async def test_a_code_sent_as_a_thread_follow_up_is_cancelled_too(slack: Slack) -> None:
    asked = mention("How do I roll back a release?", channel="C0GENERAL", user="U0DAN")
    await slack.send_event(asked)
    await finished(slack.fake, "C0GENERAL", asked["ts"])
    code = await sync_to_async(_code_for)("dan")
    await slack.send_event(message(f"link {code}", channel="C0GENERAL", user="U0DAN", thread_ts=asked["ts"]))
    warning, = await slack.fake.wait_for("chat.postEphemeral")
    assert warning.args["thread_ts"] == asked["ts"] and "no longer works" in warning.args["text"]
    assert not await Message.objects.filter(text__contains=code).aexists()

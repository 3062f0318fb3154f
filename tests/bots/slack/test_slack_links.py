"""Linking a Slack account with a one-time code: `link CODE` in a DM, `/lorebot link CODE`, and a code posted in a channel."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model

from bots.slack.app import LOREBOT_USAGE
from console import chat
from console.models import AccountLink, Conversation, Message
from tests.bots.slack.conftest import Slack
from tests.fakes.slack import TEAM_ID, mention, message

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


async def test_a_code_posted_in_a_channel_is_cancelled_and_its_sender_told_privately(slack: Slack) -> None:
    code = await sync_to_async(_code_for)("carol")
    await slack.send_event(mention(f"link {code}", channel="C0GENERAL", user="U0CAROL"))
    warning, = await slack.fake.wait_for("chat.postEphemeral")
    assert warning.args["user"] == "U0CAROL" and "direct message" in warning.args["text"]
    assert not slack.fake.calls("chat.postMessage")

    await slack.send_event(message(f"link {code}", channel="D0CAROL", user="U0CAROL", channel_type="im"))
    assert "used already" in await _reply_in(slack, "D0CAROL")
    assert not await AccountLink.objects.aexists()

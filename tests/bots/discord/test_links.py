"""Linking a Discord account with a one-time code: `link CODE` in a DM, `/lorebot link`, and a code posted in a server."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model

from bots.discord import render
from bots.discord.client import LorebotClient
from console import chat
from console.models import AccountLink, Conversation
from tests.bots.discord.conftest import mention
from tests.fakes.discord import DM_CHANNEL_ID, USER_ID, FakeDiscord, user_payload

pytestmark = pytest.mark.django_db(transaction=True)

EPHEMERAL = 64


def _code_for(name: str) -> str:
    return chat.links.issue_code(get_user_model().objects.create_user(name, password="pw")).code


async def _reply(fake: FakeDiscord, message: dict[str, Any]) -> str:
    replies = await fake.until(lambda: fake.replies_to(int(message["id"])))
    return str(replies[0]["content"])


async def _callback(fake: FakeDiscord, interaction: dict[str, Any]) -> dict[str, Any]:
    calls = await fake.until(lambda: fake.calls_to("POST", rf"/interactions/{interaction['id']}/[^/]+/callback"))
    return dict(calls[0].body)


async def test_link_code_in_a_dm_links_the_account_and_is_never_a_question(fake: FakeDiscord, bot: LorebotClient) -> None:
    code = await sync_to_async(_code_for)("alice")
    reply = await _reply(fake, fake.send_message(f"link {code}", dm=True, mention_bot=False))
    assert "Linked" in reply and "alice" in reply
    link = await AccountLink.objects.select_related("user").aget(platform="discord")
    assert link.external_user == str(USER_ID) and link.user.username == "alice"
    assert not await Conversation.objects.aexists()

    again = fake.send_message(f"link {code}", dm=True, mention_bot=False, author=user_payload(777, "mallory"))
    assert "used already" in await _reply(fake, again)
    wrong = fake.send_message("link ZZZZ9999", dm=True, mention_bot=False, author=user_payload(777, "mallory"))
    assert "not valid" in await _reply(fake, wrong)
    assert await AccountLink.objects.acount() == 1


async def test_slash_lorebot_link_answers_privately_in_a_server_and_in_a_dm(fake: FakeDiscord, bot: LorebotClient) -> None:
    code = await sync_to_async(_code_for)("bob")
    answered = await _callback(fake, fake.slash_command("lorebot", {"code": code}, subcommand="link"))
    assert answered["type"] == 4 and answered["data"]["flags"] == EPHEMERAL and "Linked" in answered["data"]["content"]
    assert await AccountLink.objects.filter(platform="discord", external_user=str(USER_ID)).aexists()

    usage = await _callback(fake, fake.slash_command("lorebot", {"code": "nope"}, subcommand="link",
                                                     channel_id=DM_CHANNEL_ID))
    assert usage["data"]["content"] == render.LINK_USAGE and usage["data"]["flags"] == EPHEMERAL


async def test_a_code_posted_in_a_server_channel_stops_working(fake: FakeDiscord, bot: LorebotClient) -> None:
    code = await sync_to_async(_code_for)("carol")
    reply = await _reply(fake, fake.send_message(mention(f"link {code}")))
    assert "direct message" in reply
    assert "used already" in await _reply(fake, fake.send_message(f"link {code}", dm=True, mention_bot=False))
    assert not await AccountLink.objects.aexists()

"""No bot loops: messages from bots and webhooks are not answered unless DISCORD_ALLOWED_BOTS names them."""

from __future__ import annotations

import pytest
from django.test import override_settings

from tests.bots.discord.conftest import answer_to, events, mention, start_bot, stop_bot
from tests.fakes.discord import BOT_ID, FakeDiscord, user_payload

pytestmark = pytest.mark.django_db(transaction=True)

OTHER_BOT, WEBHOOK = 555000000000000001, 556000000000000001


async def test_bots_and_webhooks_are_ignored_unless_allowed_and_its_own_messages_always(
    fake: FakeDiscord, docs: object, discord_settings: None
) -> None:
    ignored = events("ignored")
    with override_settings(DISCORD_ALLOWED_BOTS=[str(BOT_ID)]):  # naming itself changes nothing
        client, task = await start_bot(fake)
        try:
            fake.send_message(mention("How do I roll back?"), author=user_payload(BOT_ID, "Lorebot", bot=True))
            fake.send_message(mention("How do I roll back?"), author=user_payload(OTHER_BOT, "otherbot", bot=True))
            fake.send_message(mention("How do I roll back?"), author=user_payload(WEBHOOK, "deploy-hook"),
                              webhook_id=WEBHOOK)
            question = fake.send_message(mention("When do releases go out?"))
            await answer_to(fake, question)  # the person's question, sent last
            await fake.until(lambda: events("ignored") - ignored == 2)
        finally:
            await stop_bot(client, task)
    posts = fake.calls_to("POST", r"/channels/\d+/messages")
    assert [str(c.body["message_reference"]["message_id"]) for c in posts] == [question["id"]]
    assert not task.exception()


async def test_a_bot_named_in_discord_allowed_bots_is_answered(
    fake: FakeDiscord, docs: object, discord_settings: None
) -> None:
    with override_settings(DISCORD_ALLOWED_BOTS=[str(OTHER_BOT), str(WEBHOOK)]):
        client, task = await start_bot(fake)
        try:
            from_bot = fake.send_message(mention("How do I roll back a release?"),
                                         author=user_payload(OTHER_BOT, "otherbot", bot=True))
            assert "roll back" in (await answer_to(fake, from_bot))["content"]
            from_hook = fake.send_message(mention("When do releases go out?"),
                                          author=user_payload(WEBHOOK, "deploy-hook", bot=True), webhook_id=WEBHOOK)
            assert "Tuesday" in (await answer_to(fake, from_hook))["content"]
        finally:
            await stop_bot(client, task)

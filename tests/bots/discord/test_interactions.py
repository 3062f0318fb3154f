"""/ask and the 👍/👎 buttons, through real INTERACTION_CREATE dispatches and interaction callbacks."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async

from bots.discord.client import LorebotClient
from console.models import Conversation, Feedback, Message
from tests.bots.discord.conftest import answer_to, events, is_final, mention, start_bot, stop_bot
from tests.fakes.discord import APPLICATION_ID, GUILD_ID, USER_ID, FakeDiscord, user_payload

pytestmark = pytest.mark.django_db(transaction=True)

EPHEMERAL = 64


def _buttons(message: dict[str, Any]) -> list[str]:
    return [b["custom_id"] for row in message["components"] for b in row["components"]]


def _callbacks(fake: FakeDiscord, interaction: dict[str, Any]) -> list[dict[str, Any]]:
    return [c.body for c in fake.calls_to("POST", rf"/interactions/{interaction['id']}/[^/]+/callback")]


async def _original(fake: FakeDiscord, interaction: dict[str, Any]) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        for message in list(fake.messages.values()):
            if message.get("interaction_token") == interaction["token"] and not message.get("followup"):
                return message if is_final(message) and message["content"] else None
        return None
    return await fake.until(finished)


async def test_slash_ask_is_synced_on_start_and_answers_with_a_deferred_response(
    fake: FakeDiscord, docs: object, bot: LorebotClient
) -> None:
    synced = fake.calls_to("PUT", rf"/applications/{APPLICATION_ID}/commands")[0].body
    assert [(c["name"], [o["name"] for o in c["options"]]) for c in synced] == [("ask", ["question", "private"]),
                                                                               ("lorebot", ["link"])]

    interaction = fake.slash_command("ask", {"question": "When do releases go out?"})
    answer = await _original(fake, interaction)
    assert _callbacks(fake, interaction) == [{"type": 5}]  # deferred: "Lorebot is thinking…"
    assert "Tuesday" in answer["content"] and "**Sources**" in answer["content"]
    stored = await sync_to_async(lambda: Message.objects.get(role="assistant"))()
    assert _buttons(answer) == [f"lorebot:feedback:{stored.pk}:up", f"lorebot:feedback:{stored.pk}:down"]
    edits = fake.calls_to("PATCH", rf"/webhooks/{APPLICATION_ID}/[^/]+/messages/@original")
    assert edits and all(e.body["allowed_mentions"] == {"parse": []} for e in edits)
    conversation = await sync_to_async(lambda: Conversation.objects.get())()
    assert conversation.surface == "discord" and conversation.user_key == str(USER_ID)
    assert conversation.external_key == f"{GUILD_ID}:{interaction['channel_id']}:ask-{interaction['id']}"

    # A reply to the /ask answer continues its conversation.
    follow_up = fake.send_message(mention("and hotfixes?"), reply_to=int(answer["id"]))
    await answer_to(fake, follow_up)
    assert await sync_to_async(lambda: conversation.messages.count())() == 4


async def test_slash_ask_can_answer_privately(fake: FakeDiscord, docs: object, bot: LorebotClient) -> None:
    interaction = fake.slash_command("ask", {"question": "How do I roll back a release?", "private": True})
    answer = await _original(fake, interaction)
    assert _callbacks(fake, interaction) == [{"type": 5, "data": {"flags": EPHEMERAL}}]
    assert "roll back" in answer["content"] and _buttons(answer)


async def test_a_button_press_records_feedback_and_thanks_only_the_voter(
    fake: FakeDiscord, docs: object, bot: LorebotClient
) -> None:
    answer = await answer_to(fake, fake.send_message(mention("How do I roll back a release?")))
    up, down = _buttons(answer)
    fake.press_button(int(answer["id"]), up)
    await fake.until(sync_to_async(Feedback.objects.exists))
    fake.press_button(int(answer["id"]), down, user=user_payload(777, "bob"))
    feedback = await fake.until(sync_to_async(lambda: list(Feedback.objects.all()) if Feedback.objects.count() == 2
                                              else None))

    assert {(f.value, f.user_key, f.surface) for f in feedback} == {(1, str(USER_ID), "discord"), (-1, "777", "discord")}
    stored = await sync_to_async(lambda: Message.objects.get(role="assistant"))()
    assert {f.message_id for f in feedback} == {stored.pk}
    callbacks = r"/interactions/\d+/[^/]+/callback"
    replies = await fake.until(lambda: [c.body for c in fake.calls_to("POST", callbacks)]
                               if len(fake.calls_to("POST", callbacks)) == 2 else None)
    assert all(r["type"] == 4 and r["data"]["flags"] == EPHEMERAL for r in replies)
    assert {r["data"]["content"] for r in replies} == {"Thanks for the feedback: 👍", "Thanks for the feedback: 👎"}
    assert events("feedback") >= 2


async def test_buttons_and_replies_keep_working_after_the_bot_restarts(
    fake: FakeDiscord, docs: object, discord_settings: None
) -> None:
    client, task = await start_bot(fake)
    answer = await answer_to(fake, fake.send_message(mention("How do I roll back a release?")))
    await stop_bot(client, task)

    client, task = await start_bot(fake)  # a new process would know nothing but the database
    try:
        assert fake.identifies == 2
        fake.press_button(int(answer["id"]), _buttons(answer)[1])
        feedback = await fake.until(sync_to_async(Feedback.objects.first))
        follow_up = fake.send_message("and when do releases go out?", mention_bot=False, reply_to=int(answer["id"]))
        await answer_to(fake, follow_up)
    finally:
        await stop_bot(client, task)
    assert feedback.value == -1
    assert await sync_to_async(Conversation.objects.count)() == 1
    assert await sync_to_async(Message.objects.count)() == 4

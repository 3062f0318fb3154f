"""Mentions, replies, DMs and threads, as a Discord user sees them: the real discord.py client, the fake Discord."""

from __future__ import annotations

import asyncio
import re

import pytest
from asgiref.sync import sync_to_async
from django.test import override_settings

from bots.discord import render
from bots.discord.client import LorebotClient
from console.models import Conversation, Message
from tests.bots.discord.conftest import answer_to, events, is_final, mention, start_bot, stop_bot
from tests.fakes.discord import BOT_ID, DM_CHANNEL_ID, GUILD_ID, USER_ID, FakeDiscord, user_payload
from tests.fakes.groq import FakeGroqServer

pytestmark = pytest.mark.django_db(transaction=True)

MESSAGE_CALLS = r"/channels/\d+/messages(/\d+)?"


def _conversation(key: str) -> Conversation:
    return Conversation.objects.get(surface="discord", external_key=key)


def _messages(conversation: Conversation) -> list[Message]:
    return list(conversation.messages.order_by("pk"))


async def test_a_mention_gets_a_reply_that_streams_by_edits_and_ends_with_sources_and_buttons(
    fake: FakeDiscord, groq: FakeGroqServer, bot: LorebotClient
) -> None:
    answered = events("answered")
    question = fake.send_message(mention("How do I roll back a release?"))
    answer = await answer_to(fake, question)

    typing = fake.calls_to("POST", r"/channels/\d+/typing")
    posts = fake.calls_to("POST", r"/channels/\d+/messages")
    assert typing and typing[0].at <= posts[0].at  # typing shows first
    assert posts[0].body["content"] == render.PLACEHOLDER
    assert answer["message_reference"]["message_id"] == question["id"]  # a reply to the question
    edits = [c for c in fake.calls_to("PATCH", MESSAGE_CALLS) if c.path.endswith(answer["id"])]
    streaming = [e.body["content"] for e in edits if e.body["content"].endswith(render.STREAMING_MARK)]
    assert streaming, "the answer should be shown while it is written"
    assert all(len(a) <= len(b) for a, b in zip(streaming, streaming[1:]))  # it grows

    assert answer["content"].startswith("According to the documents, To roll back a release")
    assert "**Sources**\n**[1]** Deployment" in answer["content"]
    stored = await sync_to_async(lambda: Message.objects.filter(role="assistant").get())()
    buttons = [b["custom_id"] for row in answer["components"] for b in row["components"]]
    assert buttons == [f"lorebot:feedback:{stored.pk}:up", f"lorebot:feedback:{stored.pk}:down"]
    assert stored.text in answer["content"] and stored.provider == "groq"
    key = f"{GUILD_ID}:{question['channel_id']}:{question['id']}"
    conversation = await sync_to_async(_conversation)(key)
    assert conversation.user_key == str(USER_ID)
    # Counted once the bot's handler returns, which may be just after the fake saw the last edit.
    assert await fake.until(lambda: events("answered") == answered + 1)


async def test_a_reply_to_the_answer_continues_the_conversation_without_a_mention(
    fake: FakeDiscord, docs: object, bot: LorebotClient
) -> None:
    first = fake.send_message(mention("How do I roll back a release?"))
    answer = await answer_to(fake, first)
    follow_up = fake.send_message("and when do releases go out?", mention_bot=False, reply_to=int(answer["id"]))
    second = await answer_to(fake, follow_up)

    assert "Tuesday" in second["content"]
    conversation = await sync_to_async(_conversation)(f"{GUILD_ID}:{first['channel_id']}:{first['id']}")
    messages = await sync_to_async(_messages)(conversation)
    assert [m.role for m in messages] == ["user", "assistant", "user", "assistant"]
    assert messages[2].text == "and when do releases go out?"
    assert messages[3].retrieval_mode == "context"  # answered as a follow-up
    assert await sync_to_async(Conversation.objects.count)() == 1


async def test_a_direct_message_is_answered_without_a_mention(
    fake: FakeDiscord, docs: object, bot: LorebotClient
) -> None:
    question = fake.send_message("When do releases go out?", dm=True, mention_bot=False)
    answer = await answer_to(fake, question)
    assert answer["channel_id"] == str(DM_CHANNEL_ID)
    assert "Tuesday" in answer["content"] and answer["components"]
    conversation = await sync_to_async(_conversation)(f"dm:{DM_CHANNEL_ID}")
    assert len(await sync_to_async(_messages)(conversation)) == 2


async def test_it_ignores_itself_other_bots_unaddressed_messages_and_other_channels(
    fake: FakeDiscord, docs: object, discord_settings: None
) -> None:
    with override_settings(DISCORD_ALLOWED_CHANNELS=[str(fake.channel_ids[0])]):
        client, task = await start_bot(fake)
        try:
            fake.send_message(mention("How do I roll back?"), author=user_payload(BOT_ID, "Lorebot", bot=True))
            fake.send_message(mention("How do I roll back?"), author=user_payload(555, "otherbot", bot=True))
            fake.send_message("How do I roll back? @everyone", mention_bot=False)
            fake.send_message(mention("How do I roll back?"), channel_id=fake.channel_ids[1])
            question = fake.send_message(mention("When do releases go out?"))
            await answer_to(fake, question)  # the one it should answer, sent last
            await asyncio.sleep(0.2)
        finally:
            await stop_bot(client, task)
    assert len(fake.calls_to("POST", r"/channels/\d+/messages")) == 1
    assert await sync_to_async(Conversation.objects.count)() == 1


async def test_a_long_answer_is_split_at_2000_characters_with_sources_and_buttons_on_the_last(
    fake: FakeDiscord, groq: FakeGroqServer, bot: LorebotClient
) -> None:
    paragraph = "Rollbacks run the pipeline with the previous tag and notify the on-call channel [1]. " * 6
    groq.reply = "\n\n".join([paragraph.strip()] * 5)  # about 2,500 characters in five paragraphs
    groq.token_delay = 0.0
    question = fake.send_message(mention("How do I roll back a release?"))
    first = await answer_to(fake, question)
    second = (await fake.until(lambda: fake.replies_to(int(first["id"]))))[0]

    assert 2000 < len(groq.reply) and len(first["content"]) <= 2000 and len(second["content"]) <= 2000
    assert not first["components"] and second["components"]  # buttons once, on the last piece
    assert "**Sources**" in second["content"] and "**Sources**" not in first["content"]
    body = second["content"].split("\n\n**Sources**")[0]
    assert f"{first['content']}\n\n{body}" == groq.reply  # cut between paragraphs, nothing lost
    assert not re.search(r"\[\d*$", first["content"])  # never inside a citation marker


async def test_mentions_in_an_answer_never_ping(fake: FakeDiscord, groq: FakeGroqServer, bot: LorebotClient) -> None:
    groq.reply = "Tell @everyone and @here and <@&123> and <@920000000000000001> to roll back [1]."
    question = fake.send_message(mention("How do I roll back a release?"))
    answer = await answer_to(fake, question)
    assert "@everyone" in answer["content"]
    sent = fake.calls_to("POST", MESSAGE_CALLS) + fake.calls_to("PATCH", MESSAGE_CALLS)
    assert sent and all(call.body["allowed_mentions"]["parse"] == [] for call in sent)
    assert all(not call.body["allowed_mentions"].get("replied_user") for call in sent)


@override_settings(DISCORD_THREAD_PER_QUESTION=True)
async def test_with_a_thread_per_question_follow_ups_in_the_thread_need_no_mention(
    fake: FakeDiscord, docs: object, bot: LorebotClient
) -> None:
    question = fake.send_message(mention("How do I roll back a release?"))
    thread_id = int(question["id"])  # a thread started from a message takes the message's id
    first = await fake.until(lambda: [m for m in fake.bot_messages(thread_id) if is_final(m)])
    assert fake.calls_to("POST", rf"/channels/\d+/messages/{thread_id}/threads")
    assert "roll back" in first[0]["content"] and first[0]["components"]

    follow_up = fake.send_message("and when do releases go out?", channel_id=thread_id, mention_bot=False)
    second = await answer_to(fake, follow_up)
    assert "Tuesday" in second["content"]
    conversation = await sync_to_async(_conversation)(f"{GUILD_ID}:{thread_id}")
    assert len(await sync_to_async(_messages)(conversation)) == 4


@override_settings(DISCORD_RATE_LIMIT_USER="1/60")
async def test_a_user_over_the_rate_limit_is_told_to_slow_down(
    fake: FakeDiscord, docs: object, bot: LorebotClient
) -> None:
    limited = events("rate_limited")
    await answer_to(fake, fake.send_message(mention("How do I roll back a release?")))
    refused = await answer_to(fake, fake.send_message(mention("When do releases go out?")))
    assert refused["content"].startswith("⚠️ Slow down: at most 1 questions per 60 s")
    assert not refused["components"]
    assert await fake.until(lambda: events("rate_limited") == limited + 1)


async def test_a_bare_mention_gets_a_hint(fake: FakeDiscord, docs: object, bot: LorebotClient) -> None:
    question = fake.send_message(mention(""))
    hint = await answer_to(fake, question)
    assert hint["content"] == render.EMPTY_QUESTION
    assert await sync_to_async(Conversation.objects.count)() == 0


async def test_citations_are_numbered_from_one_in_the_order_the_answer_uses_them(
    fake: FakeDiscord, groq: FakeGroqServer, bot: LorebotClient
) -> None:
    groq.reply = "Releases go out on Tuesdays [2]. Roll back with the pipeline [2][1]."
    question = fake.send_message(mention("When do releases go out, and how do I roll one back?"))
    answer = await answer_to(fake, question)
    body, _, sources = answer["content"].partition("**Sources**")
    assert "Tuesdays [1]. Roll back with the pipeline [1][2]." in body  # the model's [2] is shown as [1]
    assert re.findall(r"\*\*\[(\d+)\]\*\*", sources) == ["1", "2"]
    # [1] is the passage the answer cited first: the prompt's source 2
    assert groq.chat_requests()[-1].source_location(2) in sources.split("\n")[1]


async def test_a_source_the_answer_does_not_cite_is_not_listed(
    fake: FakeDiscord, groq: FakeGroqServer, bot: LorebotClient
) -> None:
    groq.reply = "Releases go out on Tuesdays [2]."
    question = fake.send_message(mention("When do releases go out?"))
    answer = await answer_to(fake, question)
    assert "Tuesdays [1]." in answer["content"] and "[2]" not in answer["content"]
    assert re.findall(r"\*\*\[(\d+)\]\*\*", answer["content"]) == ["1"]


async def test_a_question_the_documents_do_not_cover_is_marked(
    fake: FakeDiscord, docs: object, bot: LorebotClient
) -> None:
    question = fake.send_message(mention("What is the price of an enterprise license?"))
    answer = await answer_to(fake, question)
    assert answer["content"].startswith("Your documents don't cover this.")
    assert render.NOT_COVERED_NOTE in answer["content"]

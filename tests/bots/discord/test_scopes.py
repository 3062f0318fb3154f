"""Which collections a Discord question searches: the bot passes server, channel (a thread: its parent) and user."""

from __future__ import annotations

from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from django.test import override_settings

from console.models import ChannelScope, Message
from tests.bots.discord.conftest import answer_to, is_final, mention, start_bot, stop_bot
from tests.console.test_access_leaks import SECRET, _plant
from tests.fakes.discord import GUILD_ID, FakeDiscord

pytestmark = pytest.mark.django_db(transaction=True)


@override_settings(DISCORD_THREAD_PER_QUESTION=True, CHAT_RATE_LIMIT_CONVERSATION="0", CHAT_ANSWER_STALE_SECONDS=0)
async def test_a_thread_answers_from_its_parent_channel_s_scope(
    tmp_path: Path, fake: FakeDiscord, discord_settings: None
) -> None:
    with override_settings(RAG_DATA_DIR=tmp_path / "data"):
        _, _, doc = await sync_to_async(_plant)(tmp_path)
        boardroom = fake.channel_ids[1]

        def scope_boardroom() -> None:  # the channel only: no server-wide row to fall back on
            ChannelScope.objects.create(platform="discord", workspace=str(GUILD_ID), channel=str(boardroom)
                                        ).collections.add(doc.collection)

        await sync_to_async(scope_boardroom)()
        client, task = await start_bot(fake)
        try:
            question = fake.send_message(mention("What is the acquisition codename?"), channel_id=boardroom)
            thread_id = int(question["id"])
            first = await fake.until(lambda: [m for m in fake.bot_messages(thread_id) if is_final(m)])
            assert SECRET in first[0]["content"]
            follow_up = fake.send_message("and the merger codename?", channel_id=thread_id, mention_bot=False)
            assert SECRET in (await answer_to(fake, follow_up))["content"]
            other = fake.send_message(mention("What is the acquisition codename?"), channel_id=fake.channel_ids[2])
            elsewhere = await fake.until(lambda: [m for m in fake.bot_messages(int(other["id"])) if is_final(m)])
            assert SECRET not in str(elsewhere)  # an unscoped channel: everyone's collections only
        finally:
            await stop_bot(client, task)
        searched = await sync_to_async(lambda: [m.collections for m in Message.objects.filter(role="assistant")
                                                .order_by("pk")])()
        assert searched == [[doc.collection.key], [doc.collection.key], ["default"]]

"""How an answer is laid out in Discord messages, and the client's fixed choices (pure, no Discord)."""

from __future__ import annotations

import discord
import pytest
from django.test import override_settings

from bots.answer import AnswerSnapshot
from bots.discord import render
from bots.discord.client import bot_intents, point_at
from tests.support import citation


def test_sources_are_numbered_with_links_in_angle_brackets_so_discord_shows_no_preview() -> None:
    citations = [
        citation(1, "Deploy *guide*", location="§ Rollback", source="https://wiki.example.com/deploy"),
        citation(2, "Notes [old]", source="notes.md", document_id="doc-9"),
    ]
    with override_settings(LOREBOT_PUBLIC_URL="https://lorebot.example.com"):
        block = render.sources_block(citations)
    assert block == (
        "**Sources**\n"
        "**[1]** [Deploy \\*guide\\*, § Rollback](<https://wiki.example.com/deploy>)\n"
        "**[2]** [Notes (old)](<https://lorebot.example.com/sources/9/>)"
    )


def test_a_streaming_answer_is_marked_unfinished_and_kept_to_one_message() -> None:
    assert render.progress("Roll back with ") == "Roll back with" + render.STREAMING_MARK
    long = render.progress("word " * 1000)
    assert len(long) <= render.MESSAGE_LIMIT and long.endswith(render.STREAMING_MARK)


def test_sources_that_do_not_fit_beside_the_last_piece_get_their_own_message() -> None:
    snap = AnswerSnapshot(text="x" * 1990, citations=(citation(1, "Deployment"),), finished=True)
    assert render.final_pieces(snap) == ["x" * 1990, "**Sources**\n**[1]** Deployment"]


def test_a_refused_question_shows_the_reason() -> None:
    snap = AnswerSnapshot(error_code="too_long", error_message="The question is 5000 characters; the limit is 4000.")
    assert render.final_pieces(snap) == ["⚠️ The question is 5000 characters; the limit is 4000."]


@pytest.mark.parametrize("message_content", [False, True])
def test_only_the_message_content_intent_is_privileged_and_it_is_opt_in(message_content: bool) -> None:
    intents = bot_intents(message_content)
    assert intents.guilds and intents.guild_messages and intents.dm_messages
    assert intents.message_content is message_content
    assert not intents.members and not intents.presences


def test_point_at_redirects_rest_and_gateway(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(discord.http.Route, "BASE", discord.http.Route.BASE)
    gateway = discord.gateway.DiscordWebSocket
    monkeypatch.setattr(gateway, "DEFAULT_GATEWAY", gateway.DEFAULT_GATEWAY)
    point_at("http://127.0.0.1:9/api/v10/", "ws://127.0.0.1:9/gateway")
    assert discord.http.Route("GET", "/users/@me").url == "http://127.0.0.1:9/api/v10/users/@me"
    assert str(discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY) == "ws://127.0.0.1:9/gateway"

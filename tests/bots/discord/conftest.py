"""The real discord.py client, run in the test's event loop against the fake Discord and a real engine."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import discord
import pytest
from django.core.cache import cache
from django.test import override_settings
from prometheus_client import REGISTRY

from bots.discord import render
from bots.discord.client import LorebotClient
from bots.pacing import BUDGETS
from console.engine import get_engine, set_engine
from tests.fakes.discord import BOT_ID, BOT_TOKEN, FakeDiscord
from tests.fakes.groq import FakeGroqServer
from tests.support import DEPLOY


@pytest.fixture
def fake() -> Iterator[FakeDiscord]:
    with FakeDiscord() as fake:
        yield fake


@pytest.fixture
def docs(data_dir: Path) -> Path:
    """The process-wide engine (real MiniLM, offline extractive answers) with the deployment guide."""
    doc = data_dir.parent / "deploy.md"
    doc.write_text(DEPLOY)
    get_engine().ingest_file(doc)
    return doc


@pytest.fixture(scope="module")
def fake_groq() -> Iterator[FakeGroqServer]:
    with FakeGroqServer() as server:
        yield server


@pytest.fixture
def groq(fake_groq: FakeGroqServer, docs: Path) -> Iterator[FakeGroqServer]:
    """Answers come from the fake Groq through the real groq SDK, one token every 10 ms."""
    fake_groq.reset()
    fake_groq.token_delay = 0.01
    with override_settings(GROQ_API_KEY="gsk-test", GROQ_BASE_URL=fake_groq.base_url, GROQ_MAX_RETRIES=0,
                           GROQ_TIMEOUT=5):
        set_engine(None)
        yield fake_groq
    set_engine(None)
    fake_groq.reset()


@pytest.fixture
def discord_settings(fake: FakeDiscord, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # point_at() changes discord.py's class attributes; put them back after the test.
    monkeypatch.setattr(discord.http.Route, "BASE", discord.http.Route.BASE)
    monkeypatch.setattr(discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY",
                        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)
    cache.clear()  # the chat service's rate-limit counters
    BUDGETS.clear()
    with override_settings(DISCORD_API_URL=fake.api_url, DISCORD_GATEWAY_URL=fake.gateway_url,
                           DISCORD_EDIT_INTERVAL=0.05, DISCORD_CHANNEL_EDITS_PER_MINUTE=6000):
        yield
    cache.clear()


async def start_bot(fake: FakeDiscord) -> tuple[LorebotClient, asyncio.Task[None]]:
    client = LorebotClient(guild_ready_timeout=0.05)  # READY waits this long for more GUILD_CREATEs
    task = asyncio.create_task(client.start(BOT_TOKEN))
    await fake.until(lambda: client.is_ready() or task.done())
    if task.done():
        await client.close()
        task.result()  # raise what stopped it
    return client, task


async def stop_bot(client: LorebotClient, task: asyncio.Task[None]) -> None:
    await client.close()
    await asyncio.wait_for(task, 10)


@pytest.fixture
async def bot(fake: FakeDiscord, discord_settings: None, docs: Path) -> AsyncIterator[LorebotClient]:
    client, task = await start_bot(fake)
    yield client
    await stop_bot(client, task)


def mention(text: str) -> str:
    return f"<@{BOT_ID}> {text}"


def is_final(message: dict[str, Any]) -> bool:
    """Whether a bot message shows a finished answer (not the placeholder, not a streaming text)."""
    content = message["content"]
    return content != render.PLACEHOLDER and not content.endswith(render.STREAMING_MARK)


async def answer_to(fake: FakeDiscord, question: dict[str, Any], timeout: float = 20.0) -> dict[str, Any]:
    """The bot's reply to `question`, once finished (the first piece, when it was split)."""
    def finished() -> dict[str, Any] | None:
        replies = fake.replies_to(int(question["id"]))
        return replies[0] if replies and is_final(replies[0]) else None
    return await fake.until(finished, timeout)


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def events(outcome: str) -> float:
    return metric("rag_bot_events_total", platform="discord", outcome=outcome)

"""What goes wrong: Discord's 429s, a dropped gateway, a failing LLM, a failing answer, shutting down."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from django.core.management import CommandError, call_command
from django.test import override_settings

from bots.discord import client as client_module
from bots.discord import render
from bots.discord.client import LorebotClient
from console.models import Message
from ragcore.extractive import NOTICE
from tests.bots.discord.conftest import answer_to, events, is_final, mention, metric, start_bot, stop_bot
from tests.fakes.discord import BOT_TOKEN, FakeDiscord
from tests.fakes.groq import FakeGroqServer

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[3]
EDITS = r"/channels/\d+/messages/\d+"


def _buttons(message: dict[str, object]) -> bool:
    return bool(message["components"])


async def test_a_429_is_waited_out_for_retry_after_and_the_edit_lands_afterwards(
    fake: FakeDiscord, docs: object, bot: LorebotClient
) -> None:
    limited = metric("rag_bot_api_errors_total", platform="discord", error="429")
    fake.rate_limit("PATCH", EDITS, retry_after=0.5)
    answer = await answer_to(fake, fake.send_message(mention("How do I roll back a release?")))

    calls = fake.calls_to("PATCH", EDITS)
    assert [c.status for c in calls].count(429) == 1
    at = next(i for i, c in enumerate(calls) if c.status == 429)
    refused, retried = calls[at], calls[at + 1]  # discord.py holds the route's bucket while it waits
    assert retried.status == 200 and refused.path == retried.path and refused.body == retried.body
    assert retried.at - refused.at >= 0.45  # retry_after honoured
    assert "roll back" in answer["content"] and _buttons(answer)
    assert metric("rag_bot_api_errors_total", platform="discord", error="429") == limited + 1


async def test_a_dropped_gateway_is_resumed_and_the_answer_in_flight_still_finishes(
    fake: FakeDiscord, groq: FakeGroqServer, bot: LorebotClient
) -> None:
    groq.token_delay = 0.05  # about a second and a half of streaming
    first = fake.send_message(mention("How do I roll back a release?"))
    streaming = await fake.until(lambda: [m for m in fake.replies_to(int(first["id"])) if m["edits"]])
    assert not is_final(streaming[0])

    fake.drop_gateway()
    second = fake.send_message(mention("When do releases go out?"))  # sent while the bot is away
    assert "roll back" in (await answer_to(fake, first))["content"]
    assert "Tuesday" in (await answer_to(fake, second))["content"]  # replayed on RESUME

    resume, = fake.resumes
    assert resume["token"] == BOT_TOKEN and resume["session_id"] == fake._session.id
    assert resume["seq"] >= 3  # READY, GUILD_CREATE, the first question
    assert fake.identifies == 1  # resumed, not a new session


async def test_when_the_llm_fails_mid_answer_the_extractive_answer_replaces_it(
    fake: FakeDiscord, groq: FakeGroqServer, bot: LorebotClient
) -> None:
    answer = await answer_to(fake, fake.send_message(mention("How do I roll back a release? FAULT_BROKEN")))
    head, _, tail = answer["content"].partition("\n\n---\n\n")
    assert head == "According to the"  # the three tokens that had streamed
    assert tail.startswith(NOTICE) and "**Sources**" in tail and _buttons(answer)
    stored = await sync_to_async(lambda: Message.objects.get(role="assistant"))()
    assert stored.provider == "extractive" and stored.error == "llm_interrupted"


async def test_one_answer_failing_does_not_stop_the_bot(fake: FakeDiscord, docs: object, bot: LorebotClient) -> None:
    failed, errors = events("failed"), metric("rag_pipeline_errors_total", component="discord")
    broken_channel, good_channel = fake.channel_ids[1], fake.channel_ids[0]
    fake.fail("PATCH", rf"/channels/{broken_channel}/messages/\d+", status=403, times=10)

    broken = fake.send_message(mention("How do I roll back a release?"), channel_id=broken_channel)
    await fake.until(lambda: events("failed") > failed)
    assert fake.replies_to(int(broken["id"]))[0]["content"] == render.PLACEHOLDER  # Discord refused every edit
    assert metric("rag_pipeline_errors_total", component="discord") == errors + 1

    answer = await answer_to(fake, fake.send_message(mention("When do releases go out?"), channel_id=good_channel))
    assert "Tuesday" in answer["content"] and _buttons(answer)


async def test_shutting_down_lets_an_answer_in_flight_finish(
    fake: FakeDiscord, groq: FakeGroqServer, discord_settings: None
) -> None:
    groq.token_delay = 0.03
    client, task = await start_bot(fake)
    question = fake.send_message(mention("How do I roll back a release?"))
    await fake.until(lambda: [m for m in fake.replies_to(int(question["id"])) if m["edits"]])
    await client.close()
    await task
    answer = fake.replies_to(int(question["id"]))[0]
    assert is_final(answer) and "roll back" in answer["content"] and _buttons(answer)


async def test_an_answer_still_running_at_the_end_of_the_grace_period_is_closed_with_an_apology(
    fake: FakeDiscord, groq: FakeGroqServer, discord_settings: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_module, "SHUTDOWN_GRACE_SECONDS", 0.2)
    groq.token_delay = 0.5
    client, task = await start_bot(fake)
    question = fake.send_message(mention("How do I roll back a release?"))
    await fake.until(lambda: fake.replies_to(int(question["id"])))
    await client.close()
    await task
    assert fake.replies_to(int(question["id"]))[0]["content"] == render.SHUTDOWN_APOLOGY
    stored = await fake.until(sync_to_async(lambda: Message.objects.filter(role="assistant").exclude(error="in_progress")
                                            .first()))
    assert stored.error == "cancelled"


def _wait(bot: subprocess.Popen[str], condition: Callable[[], object], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert bot.poll() is None, f"the bot exited while waiting for {what}: {bot.stdout.read() if bot.stdout else ''}"
        if time.monotonic() > deadline:
            bot.kill()
            raise AssertionError(f"timed out waiting for {what}: {bot.communicate()[0][-4000:]}")
        time.sleep(0.1)


@pytest.mark.slow
def test_the_command_survives_malformed_payloads_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    """The real process: a malformed interaction and a garbage frame, then a question is still answered."""
    with FakeDiscord() as fake:
        env = {**os.environ, "DISCORD_BOT_TOKEN": BOT_TOKEN, "DISCORD_API_URL": fake.api_url,
               "DISCORD_GATEWAY_URL": fake.gateway_url, "RAG_DATA_DIR": str(tmp_path / "data"),
               "HF_HUB_OFFLINE": "1", "LOG_FORMAT": "console"}
        subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)
        bot = subprocess.Popen([sys.executable, "manage.py", "rundiscordbot"], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            _wait(bot, lambda: fake.calls_to("PUT", r"/applications/\d+/commands") and fake.identifies, "a connection",
                  timeout=120)
            broken = fake.slash_command("ask", {"question": "How do I roll back?"}, malformed=True)
            _wait(bot, lambda: fake.calls_to("POST", rf"/interactions/{broken['id']}/[^/]+/callback"), "the apology")
            fake.send_raw("{not json")
            _wait(bot, lambda: fake.identifies == 2, "a new connection")
            question = fake.send_message(mention("How do I roll back a release?"))
            _wait(bot, lambda: [m for m in fake.replies_to(int(question["id"])) if is_final(m)], "the answer")
            bot.send_signal(signal.SIGTERM)
            output, _ = bot.communicate(timeout=30)
        finally:
            if bot.poll() is None:
                bot.kill()
    assert bot.returncode == 0, output  # the same process throughout: 0 restarts
    assert "discord bot stopped" in output
    assert "discord.event_unparseable" in output and "discord.gateway_failed" in output
    assert "discord.stopping" in output and "SIGTERM" in output


def test_the_command_explains_a_missing_or_refused_token(fake: FakeDiscord, data_dir: Path,
                                                        discord_settings: None) -> None:
    with pytest.raises(CommandError, match="DISCORD_BOT_TOKEN is not set"):
        call_command("rundiscordbot")
    with override_settings(DISCORD_BOT_TOKEN="not-the-token"), pytest.raises(
        CommandError, match="Discord refused DISCORD_BOT_TOKEN"
    ):
        call_command("rundiscordbot")
    assert not fake.identifies


async def test_a_malformed_interaction_gets_an_apology_and_the_bot_keeps_serving(
    fake: FakeDiscord, docs: object, discord_settings: None
) -> None:
    malformed, errors = events("malformed"), metric("rag_pipeline_errors_total", component="discord")
    client, task = await start_bot(fake)
    try:
        broken = fake.slash_command("ask", {"question": "How do I roll back a release?"}, malformed=True)
        apology = await fake.until(lambda: fake.calls_to("POST", rf"/interactions/{broken['id']}/[^/]+/callback"))
        assert apology[0].body["data"]["content"] == render.APOLOGY and apology[0].body["data"]["flags"] == 64
        assert events("malformed") == malformed + 1
        assert metric("rag_pipeline_errors_total", component="discord") == errors + 1

        answer = await answer_to(fake, fake.send_message(mention("When do releases go out?")))
        assert "Tuesday" in answer["content"]
        assert not task.done() and fake.identifies == 1 and client.reconnects == 0  # the same connection
    finally:
        await stop_bot(client, task)


# The binary frame ends as a zlib-stream frame does (00 00 ff ff), so discord.py tries to inflate it.
@pytest.mark.parametrize("frame", ["{not json", "[1, 2, 3]", b"not zlib\x00\x00\xff\xff"],
                         ids=["text", "array", "binary"])
async def test_a_garbage_gateway_frame_replaces_the_connection_and_the_bot_keeps_serving(
    fake: FakeDiscord, docs: object, discord_settings: None, frame: str | bytes
) -> None:
    errors = metric("rag_pipeline_errors_total", component="discord")
    client, task = await start_bot(fake)
    try:
        fake.send_raw(frame)
        started = time.monotonic()
        await fake.until(lambda: fake.identifies == 2 and client.is_ready())
        assert time.monotonic() - started < 5, "a new connection within seconds"
        answer = await answer_to(fake, fake.send_message(mention("When do releases go out?")))
        assert "Tuesday" in answer["content"]
        assert not task.done() and client.reconnects == 1
        assert metric("rag_pipeline_errors_total", component="discord") == errors + 1
    finally:
        await stop_bot(client, task)


async def test_a_429_with_only_the_documented_headers_is_waited_out_and_the_final_text_lands(
    fake: FakeDiscord, docs: object, bot: LorebotClient
) -> None:
    """discord.py 2.7.1 gives up on a 429 without `Via`; the bot waits it out itself and edits again."""
    fake.rate_limit("PATCH", EDITS, retry_after=0.3, times=3, via=False)
    answer = await answer_to(fake, fake.send_message(mention("How do I roll back a release?")))
    assert "roll back" in answer["content"] and _buttons(answer)  # the final text was not lost

    calls = fake.calls_to("PATCH", EDITS)
    assert [c.status for c in calls].count(429) == 3 and calls[-1].status == 200
    for refused, after in zip(calls, calls[1:]):
        if refused.status == 429:
            assert after.at - refused.at >= 0.28, "no edit of the channel before Retry-After"

"""Clean edges: no half-open markup in a streamed edit, never chat.update without a ts, unknown slash
commands answered politely (HTTP and Socket Mode), a replayed /ask answered once."""

from __future__ import annotations

import json
import re

import pytest
from prometheus_client import REGISTRY

from bots.slack import answering
from tests.bots.slack.conftest import Slack, finished
from tests.fakes.groq import FakeGroqServer
from tests.fakes.slack import APP_ID, NO_TS_CHANNEL, TEAM_ID, FakeSlackServer, mention

pytestmark = pytest.mark.django_db(transaction=True)

MARKUP_REPLY = ("**Extractive answers** are built from `the documents' own sentences`, see "
                "[the deployment guide](https://wiki.example.com/deploy) and _roll back_ with the pipeline [1]. "
                "Then **tell the on-call engineer** about it.")


def counted(outcome: str) -> float:
    return REGISTRY.get_sample_value("rag_bot_events_total", {"platform": "slack", "outcome": outcome}) or 0.0


def _half_open(text: str) -> list[str]:
    """Markup a reader would see half-open: an odd number of bold/code markers, a link without its end."""
    problems = [m for m in ("*", "`", "_") if text.count(m) % 2]
    if re.search(r"<https?://[^>|]*$|<https?://[^>]*\|[^>]*$|\[[^\]]*$", text):
        problems.append("link")
    return problems


async def test_no_progress_edit_shows_half_open_markup(slack: Slack, fake_groq: FakeGroqServer) -> None:
    fake_groq.reply = MARKUP_REPLY
    event = mention("How do I roll back a release?")
    await slack.send_event(event)
    reply = await finished(slack.fake, "C0GENERAL", event["ts"])
    progress = [c.args["blocks"][0]["text"]["text"] for c in slack.fake.calls("chat.update")
                if c.args["blocks"][-1]["elements"][0]["text"] == "_Writing…_"]
    assert len(progress) >= 3, "the answer should stream in several edits"
    assert [p for p in progress if _half_open(p)] == []
    assert "*Extractive answers* are built" in reply.block_text  # and the whole answer at the end


async def test_without_a_ts_from_slack_the_answer_is_posted_instead_of_edited(slack: Slack) -> None:
    event = mention("How do I roll back a release?", channel=NO_TS_CHANNEL)
    await slack.send_event(event)
    reply = await finished(slack.fake, NO_TS_CHANNEL, event["ts"])
    assert await answering.drain(20) == 0
    assert "roll back" in reply.block_text and "*Sources*" in reply.block_text
    assert not slack.fake.calls("chat.update"), "chat.update needs a ts; there was none"
    assert len(slack.fake.calls("chat.postMessage")) == 2  # the placeholder, then the answer


async def test_an_unknown_slash_command_gets_a_polite_private_answer_over_http(slack: Slack) -> None:
    response, _ = await slack.command("what now?", name="/lorebot-admin")
    assert response.status_code == 200
    answer = json.loads(response.content)
    assert answer["response_type"] == "ephemeral"
    assert "do not know the command `/lorebot-admin`" in answer["text"] and "/ask" in answer["text"]


async def test_a_replayed_ask_is_answered_once(slack: Slack) -> None:
    duplicates = counted("duplicate")
    body, _ = slack.command_form("When do releases go out?", trigger_id="1.2.replayed")
    first = await slack.post(body, "application/x-www-form-urlencoded")
    replay = await slack.post(body, "application/x-www-form-urlencoded")  # signed afresh, same command
    assert first.status_code == replay.status_code == 200
    assert "Looking that up" in first.content.decode() and replay.content == b""
    assert await answering.drain(20) == 0
    assert len(slack.fake.calls("response_url")) == 1
    assert counted("duplicate") - duplicates == 1


async def test_an_unknown_slash_command_gets_a_polite_private_answer_over_socket_mode(
        socket_bot: FakeSlackServer) -> None:
    envelope = socket_bot.send_envelope("slash_commands", {
        "team_id": TEAM_ID, "channel_id": "C0GENERAL", "user_id": "U0ALICE", "command": "/weather", "text": "",
        "api_app_id": APP_ID, "response_url": socket_bot.response_url(), "trigger_id": "1.2.weather"})
    ack = await socket_bot.wait_for_ack(envelope)
    assert ack["payload"]["response_type"] == "ephemeral"
    assert "do not know the command `/weather`" in ack["payload"]["text"]

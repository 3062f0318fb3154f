"""The two real entry points as separate processes: `manage.py runslackbot` (Socket Mode) and daphne
serving /slack/events, each against the fake Slack, on a site with two ingested documents.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bots.slack import ratelimits
from tests.bots.slack.conftest import finished
from tests.daphne_server import PYTHON, ROOT, Site, make_site, start_daphne
from tests.fakes.groq import FakeGroqServer
from tests.fakes.slack import (
    APP_ID,
    SIGNING_SECRET,
    TEAM_ID,
    FakeSlackServer,
    event_body,
    mention,
    sign,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    return make_site(tmp_path_factory.mktemp("slack-site") / "data", users=())


@pytest.fixture
def fake(fake_slack: FakeSlackServer) -> FakeSlackServer:
    fake_slack.reset()
    return fake_slack


def _slack_env(fake: FakeSlackServer) -> dict[str, str]:
    return {"SLACK_BOT_TOKEN": "xoxb-test", "SLACK_APP_TOKEN": "xapp-1-test", "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": fake.api_url, "SLACK_UPDATE_INTERVAL": "0.2", "LOG_LEVEL": "INFO"}


# A separate process (with the real model) takes longer to answer than the in-process bot.
ANSWER_TIMEOUT = 30.0


def _slack_conversations(site: Site) -> list[str]:
    with sqlite3.connect(site.data_dir / "lorebot.sqlite3") as db:
        return [key for (key,) in db.execute(
            "SELECT external_key FROM console_conversation WHERE surface = 'slack' ORDER BY id")]


@pytest.fixture
def socket_bot(site: Site, fake: FakeSlackServer) -> Iterator[subprocess.Popen[bytes]]:
    log = site.data_dir / "runslackbot.log"
    process = subprocess.Popen(
        [PYTHON, str(ROOT / "manage.py"), "runslackbot", "--ping-interval", "1"],
        env={**site.env, **_slack_env(fake)}, cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 90
        while fake.open_sockets() == 0:
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"runslackbot did not connect:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


async def test_socket_mode_answers_reconnects_after_a_drop_and_stops_cleanly(
        socket_bot: subprocess.Popen[bytes], fake: FakeSlackServer, site: Site) -> None:
    opened, = fake.calls("apps.connections.open")
    assert opened.token == "xapp-1-test", "the WebSocket address came from SLACK_API_URL with the app token"

    first = mention("How do I roll back a release?")
    envelope = fake.send_envelope("events_api", event_body(first))
    await fake.wait_for_ack(envelope)
    reply = await finished(fake, "C0GENERAL", first["ts"], timeout=ANSWER_TIMEOUT)
    assert "rollback pipeline" in reply.block_text and "*Sources*" in reply.block_text

    response_url = fake.response_url()
    command = fake.send_envelope("slash_commands", {
        "team_id": TEAM_ID, "channel_id": "C0GENERAL", "user_id": "U0ALICE", "command": "/ask",
        "text": "When do releases go out?", "api_app_id": APP_ID, "response_url": response_url,
        "trigger_id": "1.2.socket"})
    ack = await fake.wait_for_ack(command)
    assert ack["payload"] == {"text": "Looking that up…", "response_type": "ephemeral"}
    private, = await fake.wait_for("response_url", timeout=30)
    assert "Tuesday" in json.dumps(private.args["blocks"]) and private.args["response_type"] == "ephemeral"

    fake.drop_sockets()
    deadline = time.monotonic() + 30
    while fake.socket_connections < 2 or fake.open_sockets() == 0:
        assert time.monotonic() < deadline, "the bot did not reconnect after the connection dropped"
        await asyncio.sleep(0.05)
    assert len(fake.calls("apps.connections.open")) == 2
    after = mention("Who is notified on a rollback?")
    await fake.wait_for_ack(fake.send_envelope("events_api", event_body(after)))
    assert "on-call" in (await finished(fake, "C0GENERAL", after["ts"], timeout=ANSWER_TIMEOUT)).block_text

    socket_bot.send_signal(signal.SIGTERM)
    assert socket_bot.wait(timeout=30) == 0
    assert _slack_conversations(site)[-3:] == [f"{TEAM_ID}:C0GENERAL:{first['ts']}",
                                               f"{TEAM_ID}:C0GENERAL:ask-1.2.socket",
                                               f"{TEAM_ID}:C0GENERAL:{after['ts']}"]


async def test_daphne_acknowledges_at_once_and_answers_in_the_background(site: Site, fake: FakeSlackServer) -> None:
    server = start_daphne(Site(site.data_dir, {**site.env, **_slack_env(fake)}, site.sessions), name="slack-daphne")
    try:
        async with httpx.AsyncClient(base_url=server.http_url) as http:
            event = mention("When do releases go out?")
            body = json.dumps(event_body(event))
            started = time.perf_counter()
            response = await http.post("/slack/events", content=body,
                                       headers={**sign(body), "Content-Type": "application/json"})
            acked = time.perf_counter() - started
            # Slack retries an event it has not seen acknowledged within 3 s: that is the bound a user notices.
            assert response.status_code == 200 and acked < 3.0, f"ack took {acked:.3f} s, past Slack's 3 s deadline"
            reply = await finished(fake, "C0GENERAL", event["ts"], timeout=ANSWER_TIMEOUT)
            assert "Tuesday" in reply.block_text

            forged = await http.post("/slack/events", content=body,
                                     headers={**sign(body, secret="wrong"), "Content-Type": "application/json"})
            assert forged.status_code == 401
    finally:
        server.stop()
    assert f"{TEAM_ID}:C0GENERAL:{event['ts']}" in _slack_conversations(site)


async def test_five_long_answers_at_once_in_one_channel_keep_to_its_budget_and_none_is_lost(
        site: Site, fake: FakeSlackServer, fake_groq: FakeGroqServer) -> None:
    """The real daphne process: five streamed answers in one channel share its chat.update budget."""
    fake_groq.reset()
    fake_groq.token_delay = 0.1  # a few seconds of streaming each
    per_minute = 120  # one write per 0.5 s (plus the burst): the test's scale of Slack's 45 a minute
    server = start_daphne(
        Site(site.data_dir, {**site.env, **_slack_env(fake)}, site.sessions), name="slack-paced",
        SLACK_CHANNEL_EDITS_PER_MINUTE=str(per_minute), SLACK_UPDATE_INTERVAL="0.1", SLACK_RATE_LIMIT_USER="0",
        GROQ_API_KEY="gsk-test", GROQ_BASE_URL=fake_groq.base_url, GROQ_MAX_RETRIES="0", GROQ_TIMEOUT="30")
    try:
        async with httpx.AsyncClient(base_url=server.http_url) as http:
            events = [mention(f"{q} ({i})", user=f"U0USER{i}") for i, q in enumerate(
                ["How do I roll back a release?", "When do releases go out?", "Who is notified on a rollback?"] * 2)][:5]
            for event in events:
                body = json.dumps(event_body(event))
                response = await http.post("/slack/events", content=body,
                                           headers={**sign(body), "Content-Type": "application/json"})
                assert response.status_code == 200
            replies = [await finished(fake, "C0GENERAL", e["ts"], timeout=90) for e in events]
        assert server.process.poll() is None  # the same process throughout: 0 restarts
    finally:
        server.stop()
        fake_groq.reset()
    assert all("*Sources*" in r.block_text for r in replies)  # 0 answers lost, each with its final text
    updates = sorted(c.at for c in fake.calls("chat.update"))
    for start in updates:  # in any 10 s, at most what the rate earns plus the burst
        assert sum(1 for t in updates if start <= t < start + 10) <= 10 * per_minute / 60 + ratelimits.BURST
    streamed = {c.args["ts"] for c in fake.calls("chat.update") if "_Writing…_" in json.dumps(c.args["blocks"], ensure_ascii=False)}
    assert len(streamed) >= 3, "the answers streamed side by side, not one after another"


def test_runslackbot_without_tokens_says_what_is_missing(site: Site) -> None:
    result = subprocess.run([PYTHON, str(ROOT / "manage.py"), "runslackbot"], env=site.env, cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "SLACK_APP_TOKEN and SLACK_BOT_TOKEN must be set" in result.stderr


def test_the_manifest_asks_for_what_the_bot_uses() -> None:
    import yaml

    manifest = yaml.safe_load((ROOT / "bots" / "slack" / "manifest.yml").read_text())
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    assert {"app_mentions:read", "chat:write", "reactions:write", "commands", "im:history",
            "channels:history"} <= scopes
    events = set(manifest["settings"]["event_subscriptions"]["bot_events"])
    assert {"app_mention", "message.im", "message.channels"} <= events
    assert manifest["features"]["slash_commands"][0]["command"] == "/ask"
    assert manifest["settings"]["interactivity"]["is_enabled"] is True
    assert Path(manifest["settings"]["event_subscriptions"]["request_url"]).name == "events"

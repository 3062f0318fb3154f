"""The Slack bot's test rig: the fake Slack, signed requests, a small indexed document."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from django.core.cache import cache
from django.test import AsyncClient, override_settings

from bots.pacing import BUDGETS
from bots.slack import answering
from bots.slack.app import get_app
from bots.slack.socket_mode import serve
from console.engine import get_engine, set_engine
from tests.fakes.groq import FakeGroqServer
from tests.fakes.slack import APP_ID, SIGNING_SECRET, TEAM_ID, FakeSlackServer, PostedMessage, event_body, sign
from tests.support import DEPLOY

BOT_TOKEN = "xoxb-test"
WIKI_URL = "https://wiki.example.com/deploy"


@dataclass
class Slack:
    """Posts signed requests into /slack/events through Django's ASGI handler, as Slack would."""

    client: AsyncClient
    fake: FakeSlackServer

    async def post(self, body: str, content_type: str, headers: dict[str, str] | None = None) -> Any:
        headers = sign(body) if headers is None else headers
        return await self.client.post("/slack/events", data=body, content_type=content_type, headers=headers)

    async def send_event(self, event: dict[str, Any], *, event_id: str | None = None,
                         headers: dict[str, str] | None = None) -> Any:
        body = json.dumps(event_body(event, event_id=event_id))
        return await self.post(body, "application/json", {**sign(body), **(headers or {})})

    async def command(self, text: str, *, channel: str = "C0GENERAL", user: str = "U0ALICE",
                      name: str = "/ask") -> tuple[Any, str]:
        """`name text` (/ask by default); returns the HTTP response and the command's response_url."""
        response_url = self.fake.response_url()
        form = {"token": "legacy", "team_id": TEAM_ID, "team_domain": "lorebot-test", "channel_id": channel,
                "channel_name": "general", "user_id": user, "user_name": "alice", "command": name, "text": text,
                "api_app_id": APP_ID, "response_url": response_url, "trigger_id": f"{time.time()}.{uuid.uuid4().hex}"}
        return await self.post(urlencode(form), "application/x-www-form-urlencoded"), response_url

    def command_form(self, text: str, *, trigger_id: str) -> tuple[str, str]:
        """An /ask request body with a given trigger_id, and its response_url."""
        response_url = self.fake.response_url()
        form = {"token": "legacy", "team_id": TEAM_ID, "channel_id": "C0GENERAL", "user_id": "U0ALICE",
                "command": "/ask", "text": text, "api_app_id": APP_ID, "response_url": response_url,
                "trigger_id": trigger_id}
        return urlencode(form), response_url

    async def click(self, action_id: str, value: str, *, user: str = "U0ALICE", channel: str = "C0GENERAL",
                    message: dict[str, Any] | None = None) -> tuple[Any, str]:
        """A button press (block_actions); `message` is the bot's message, None for an ephemeral one."""
        response_url = self.fake.response_url()
        payload: dict[str, Any] = {
            "type": "block_actions", "user": {"id": user, "username": "alice", "team_id": TEAM_ID},
            "api_app_id": APP_ID, "token": "legacy", "trigger_id": uuid.uuid4().hex, "team": {"id": TEAM_ID},
            "channel": {"id": channel, "name": "general"}, "response_url": response_url,
            "container": {"type": "message", "channel_id": channel, "is_ephemeral": message is None,
                          **({"message_ts": message["ts"]} if message else {})},
            "actions": [{"action_id": action_id, "block_id": "lorebot_actions", "value": value, "type": "button",
                         "action_ts": str(time.time())}],
        }
        if message is not None:
            payload["message"] = message
        body = urlencode({"payload": json.dumps(payload)})
        return await self.post(body, "application/x-www-form-urlencoded"), response_url


@pytest.fixture(scope="session")
def fake_slack() -> Iterator[FakeSlackServer]:
    with FakeSlackServer() as fake:
        yield fake


@pytest.fixture(scope="session")
def fake_groq() -> Iterator[FakeGroqServer]:
    with FakeGroqServer() as fake:
        yield fake


def _ingest(data_dir: Path) -> None:
    doc = data_dir.parent / "deploy.md"
    doc.write_text(DEPLOY + "\nNever @channel anyone: <!channel> pings are for outages only.\n")
    get_engine().ingest_file(doc, document_id="web-deploy", title="Deployment", source=WIKI_URL)


@pytest.fixture
async def slack(data_dir: Path, fake_slack: FakeSlackServer, fake_groq: FakeGroqServer) -> AsyncIterator[Slack]:
    """The bot configured against the fake Slack; answers from the fake Groq, streaming 20 ms a token."""
    fake_slack.reset()
    fake_groq.reset()
    fake_groq.token_delay = 0.02
    with override_settings(SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_SIGNING_SECRET=SIGNING_SECRET,
                           SLACK_API_URL=fake_slack.api_url, SLACK_UPDATE_INTERVAL=0.1,
                           SLACK_CHANNEL_EDITS_PER_MINUTE=6000,  # the pacing tests set their own
                           GROQ_API_KEY="gsk-test", GROQ_BASE_URL=fake_groq.base_url, GROQ_MAX_RETRIES=0,
                           GROQ_TIMEOUT=5.0):
        set_engine(None)
        get_app.cache_clear()
        cache.clear()
        BUDGETS.clear()
        _ingest(data_dir)
        yield Slack(AsyncClient(), fake_slack)
        assert await answering.drain(30) == 0, "an answer was still running at the end of the test"
    get_app.cache_clear()
    set_engine(None)
    cache.clear()


async def finished(fake: FakeSlackServer, channel: str, thread_ts: str, timeout: float = 20.0) -> PostedMessage:
    """The bot's finished answer (the one with the 👍/👎 buttons) in a thread."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for reply in fake.thread(channel, thread_ts):
            if any(b["type"] == "actions" for b in reply.blocks):
                return reply
        await asyncio.sleep(0.02)
    raise AssertionError(f"no finished answer in {channel}/{thread_ts}: {fake.thread(channel, thread_ts)}")


@pytest.fixture
async def socket_bot(slack: Slack) -> AsyncIterator[FakeSlackServer]:
    """serve() (what runslackbot runs) in the test's loop, connected to the fake Slack over Socket Mode."""
    stop = asyncio.Event()
    with override_settings(SLACK_APP_TOKEN="xapp-1-test"):
        task = asyncio.create_task(serve(stop, ping_interval=1))
        for _ in range(500):
            if slack.fake.open_sockets():
                break
            await asyncio.sleep(0.02)
        yield slack.fake
        stop.set()
        await asyncio.wait_for(task, 30)

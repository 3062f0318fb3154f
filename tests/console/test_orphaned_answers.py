"""Answers whose process died mid-answer: finished as `interrupted`, partial text kept, never pending for good."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.test import override_settings
from django.utils import timezone
from websockets.asyncio.client import connect

from console.chat.history import conversation_history
from console.models import Conversation, Message
from console.ops import orphans
from tests.daphne_server import Site, make_site, start_daphne
from tests.fakes.groq import FakeGroqServer


def _dead_process_token() -> str:
    """The token of a process on this host that ran and has exited."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        return f"{orphans._host()}:{child.pid}:{orphans._start_ticks(child.pid)}"
    finally:
        child.kill()
        child.wait()


def _answer_in_progress(owner: str, *, text: str = "", beat_seconds_ago: float = 0.0) -> Message:
    user = get_user_model().objects.create_user(f"u{Message.objects.count()}")
    conversation = Conversation.objects.create(surface="web", external_key=f"k{time.monotonic_ns()}",
                                               user_key=f"user:{user.pk}", user=user, title="rollback?")
    Message.objects.create(conversation=conversation, role=Message.Role.USER, text="How do I roll back?")
    return Message.objects.create(conversation=conversation, role=Message.Role.ASSISTANT, error=Message.IN_PROGRESS,
                                  text=text, owner=owner,
                                  heartbeat_at=timezone.now() - timedelta(seconds=beat_seconds_ago))


@pytest.mark.django_db
@override_settings(CHAT_ANSWER_STALE_SECONDS=30)
def test_an_answer_of_a_dead_process_on_this_host_is_finished_at_once_with_its_text() -> None:
    orphan = _answer_in_progress(_dead_process_token(), text="To roll back, run", beat_seconds_ago=1)
    assert orphans.sweep() == 1
    orphan.refresh_from_db()
    assert orphan.error == "interrupted" and orphan.text == "To roll back, run"
    history = conversation_history(conversation_id=orphan.conversation_id, surface="web",
                                   user_key=orphan.conversation.user_key)
    answer = history.messages[-1]
    assert not answer.pending and answer.error == "interrupted" and answer.text == "To roll back, run"


@pytest.mark.django_db
@override_settings(CHAT_ANSWER_STALE_SECONDS=30)
def test_another_hosts_answer_is_finished_once_its_heartbeat_is_stale() -> None:
    fresh = _answer_in_progress("web-2.internal:4242:99", beat_seconds_ago=5)
    stale = _answer_in_progress("web-2.internal:4243:99", text="partial", beat_seconds_ago=31)
    assert orphans.sweep() == 1
    fresh.refresh_from_db()
    stale.refresh_from_db()
    assert fresh.error == Message.IN_PROGRESS
    assert stale.error == "interrupted" and stale.text == "partial"


@pytest.mark.django_db
@override_settings(CHAT_ANSWER_STALE_SECONDS=30)
def test_the_answers_of_live_processes_are_left_alone_and_beaten_for() -> None:
    mine = _answer_in_progress(orphans.process_token(), beat_seconds_ago=29)
    # The parent process (pytest's runner or a shell) is alive: its answers are not orphans.
    import os
    parent = f"{orphans._host()}:{os.getppid()}:{orphans._start_ticks(os.getppid())}"
    neighbour = _answer_in_progress(parent, beat_seconds_ago=1)
    assert orphans.beat() == 1
    assert orphans.sweep() == 0
    mine.refresh_from_db()
    neighbour.refresh_from_db()
    assert mine.error == neighbour.error == Message.IN_PROGRESS
    assert mine.heartbeat_at is not None and timezone.now() - mine.heartbeat_at < timedelta(seconds=5)


@pytest.mark.django_db
@override_settings(CHAT_ANSWER_STALE_SECONDS=30)
def test_an_answer_that_finished_meanwhile_is_not_overwritten() -> None:
    orphan = _answer_in_progress(_dead_process_token(), beat_seconds_ago=1)
    Message.objects.filter(pk=orphan.pk).update(error="", text="The whole answer.")
    assert not orphan.mark_orphaned()
    orphan.refresh_from_db()
    assert orphan.error == "" and orphan.text == "The whole answer."


# -- end to end: daphne killed mid-answer, then started again ---------------------------------


@pytest.fixture(scope="module")
def slow_groq() -> Iterator[FakeGroqServer]:
    with FakeGroqServer(token_delay=0.25, reply="To roll back a release run deploy rollback with the previous tag "
                        "and watch the dashboards " * 6) as fake:
        yield fake


@pytest.mark.slow
async def test_an_answer_in_flight_when_daphne_is_killed_is_finished_by_the_next_daphne(
    tmp_path: Path, slow_groq: FakeGroqServer
) -> None:
    """The attack: SIGKILL daphne mid-answer; 35 s after the restart the history still said pending, with no text."""
    site: Site = make_site(tmp_path / "data", GROQ_API_KEY="gsk-test", GROQ_BASE_URL=slow_groq.base_url,
                           GROQ_MAX_RETRIES="0", CHAT_ANSWER_STALE_SECONDS="6")
    first = start_daphne(site, name="first")
    headers = {"Cookie": site.cookie("ann")}
    async with connect(first.ws_url, origin=first.http_url, additional_headers=headers,  # type: ignore[arg-type]
                       open_timeout=10) as ws:
        await ws.send(json.dumps({"type": "ask", "text": "How do I roll back a release?"}))
        start = json.loads(await ws.recv())
        assert start["type"] == "start"
        db = sqlite3.connect(site.data_dir / "lorebot.sqlite3")
        deadline = time.monotonic() + 30
        while not db.execute("SELECT text FROM console_message WHERE id = ?", (start["message_id"],)).fetchone()[0]:
            assert time.monotonic() < deadline, "the partial answer was never stored while streaming"
            await asyncio.sleep(0.2)
        first.process.send_signal(signal.SIGKILL)
        first.process.wait()
    stored = db.execute("SELECT error, text FROM console_message WHERE id = ?", (start["message_id"],)).fetchone()
    assert stored[0] == "in_progress" and stored[1]
    second = start_daphne(site, name="second")
    try:
        async with connect(second.ws_url, origin=second.http_url, additional_headers=headers,  # type: ignore[arg-type]
                           open_timeout=10) as ws:
            deadline = time.monotonic() + 10  # the start-up sweep notices the dead pid at once
            while True:
                await ws.send(json.dumps({"type": "history", "conversation_id": start["conversation_id"]}))
                answer = json.loads(await ws.recv())["messages"][-1]
                if not answer["pending"]:
                    break
                assert time.monotonic() < deadline, "the orphaned answer is still pending"
                await asyncio.sleep(0.2)
        assert answer["error"] == "interrupted" and answer["text"].startswith(stored[1][:20])
    finally:
        second.stop()
        db.close()


@override_settings(CHAT_ANSWER_STALE_SECONDS=3)
def test_the_sweeper_outlives_a_database_that_is_down(monkeypatch: pytest.MonkeyPatch) -> None:
    """A failing sweep, and a failing close of the broken connection after it, are logged; the thread goes on."""
    rounds: list[int] = []

    def down() -> int:
        rounds.append(1)
        raise ConnectionError("the database is down")

    def close_fails() -> None:
        raise ConnectionError("closing a dead connection")

    monkeypatch.setattr(orphans, "beat", down)
    monkeypatch.setattr(orphans, "close_old_connections", close_fails)
    assert orphans.start_sweeper()
    deadline = time.monotonic() + 10
    while len(rounds) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert orphans.sweeper.running and len(rounds) >= 3
    orphans.sweeper.stop()
    assert not orphans.sweeper.running

"""Citations numbered 1..n in the order the answer uses them, on the web chat, `manage.py ask`, the
stored messages and the console; and the "not covered" mark on each."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client

from console.models import Message
from ragcore import Engine
from tests.console.test_ws_chat import _session_cookie, ask, open_socket
from tests.fakes.groq import FakeGroqServer
from tests.support import ask_chat, serving_deploy

pytestmark = pytest.mark.django_db(transaction=True)

# The model cites the prompt's source 2 first and source 1 after it.
REPLY = "Releases go out on Tuesdays [2]. Roll back with the pipeline [2][1]."
SHOWN = "Releases go out on Tuesdays [1]. Roll back with the pipeline [1][2]."
QUESTION = "When do releases go out, and how do I roll one back?"


@pytest.fixture(scope="module")
def fake_groq() -> Iterator[FakeGroqServer]:
    with FakeGroqServer(reply=REPLY) as fake:
        yield fake


@pytest.fixture
def engine(tmp_path: Path, fake_groq: FakeGroqServer) -> Iterator[Engine]:
    with serving_deploy(tmp_path, groq_api_key="gsk-test", groq_base_url=fake_groq.base_url,
                        groq_max_retries=0) as engine:
        yield engine


def _second_source(fake: FakeGroqServer) -> str:
    return fake.chat_requests()[-1].source_location(2)


def _assert_numbered(text: str, citations: list[dict[str, object]], fake: FakeGroqServer) -> None:
    assert text == SHOWN
    assert [c["n"] for c in citations] == [1, 2]
    assert citations[0]["location"] == _second_source(fake)  # [1] is what the answer cited first


async def test_the_web_chat_gets_gap_free_numbers_and_the_stored_message_keeps_them(
        engine: Engine, fake_groq: FakeGroqServer) -> None:
    _, cookie = await sync_to_async(_session_cookie)("ann")
    comm = await open_socket(cookie)
    frames = await ask(comm, QUESTION)
    text = "".join(f["text"] for f in frames if f["type"] == "token")
    citations = next(f for f in frames if f["type"] == "citations")["items"]
    _assert_numbered(text, citations, fake_groq)
    assert frames[-1]["type"] == "done" and frames[-1]["not_covered"] is False
    stored = await Message.objects.aget(pk=frames[-1]["message_id"])
    assert stored.text == SHOWN and [c["n"] for c in stored.citations] == [1, 2]
    await comm.disconnect()


def test_manage_py_ask_prints_gap_free_numbers(engine: Engine, fake_groq: FakeGroqServer) -> None:
    out = io.StringIO()
    call_command("ask", QUESTION, "--json", stdout=out, stderr=io.StringIO())
    answer = json.loads(out.getvalue())
    _assert_numbered(answer["answer"], answer["citations"], fake_groq)
    assert answer["not_covered"] is False

    out = io.StringIO()
    call_command("ask", QUESTION, stdout=out, stderr=io.StringIO())
    assert re.findall(r"^  \[(\d+)\]", out.getvalue(), re.M) == ["1", "2"]


def test_the_console_shows_the_stored_numbers_and_the_not_covered_mark(engine: Engine, fake_groq: FakeGroqServer) -> None:
    ask_chat(surface="web", conversation_key="k1", user_key="ann", text=QUESTION)
    ask_chat(surface="web", conversation_key="k2", user_key="ann", text="What is the price of an enterprise license?")
    answered, declined = Message.objects.filter(role="assistant").order_by("pk")
    assert answered.text == SHOWN and not answered.not_covered
    assert declined.not_covered and declined.text.startswith("Your documents don't cover this.")
    staff = get_user_model().objects.create_user("boss", password="pw", is_staff=True)
    client = Client()
    client.force_login(staff)
    page = client.get(f"/console/conversations/{answered.conversation_id}/").content.decode()
    # The answer is rendered as Markdown with each [n] a link to its source; as text it reads as stored.
    assert "Tuesdays [1]. Roll back with the pipeline [1][2]." in re.sub(r"<[^>]+>", "", page)
    assert 'class="cite" href="#cite-' in page and "not covered</span>" not in page
    page = client.get(f"/console/conversations/{declined.conversation_id}/").content.decode()
    assert page.count("not covered</span>") == 1


async def test_a_declined_question_is_marked_in_the_web_chat_and_its_history(engine: Engine) -> None:
    _, cookie = await sync_to_async(_session_cookie)("bea")
    comm = await open_socket(cookie)
    frames = await ask(comm, "What is the price of an enterprise license?")
    done = frames[-1]
    assert done["type"] == "done" and done["not_covered"] is True
    await comm.send_json_to({"type": "history", "conversation_id": frames[0]["conversation_id"]})
    history = await comm.receive_json_from(timeout=10)
    assert [m["not_covered"] for m in history["messages"] if m["role"] == "assistant"] == [True]
    await comm.disconnect()

"""The leak test: a secret planted in a restricted collection never reaches an outsider, on any surface tested here.

Surfaces probed: the web chat (WebsocketCommunicator), `manage.py ask --as USER`, the source viewer,
the download URL, and the history frame of another's conversation. The same questions asked by a
member of the granted group get the secret with its citation.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.test import Client, override_settings

from console.ingest import storage
from console.models import Collection, Document
from tests.console.test_ws_chat import _engine, _session_cookie, frames_until, open_socket

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "zebrafalcon-7731"
VAULT = (f"# Merger plans\n\nThe acquisition codename is {SECRET}. The merger closes in March; "
         f"the codename {SECRET} must never be shared outside the board.\n")
SUBJECTS = ["the acquisition codename", "the merger codename", "the merger plans", "when the merger closes",
            "the board's secret codename", "the acquisition", "codename zebrafalcon", "merger March"]
FORMS = ["What is {}?", "Tell me about {}.", "{}", "Explain {} please", "Where can I read about {}?",
         "Who knows {}?", "Summarize {}", "Is there anything on {}?", "quote {}", "{} details",
         "I need {} now", "what does the document say about {}", "search {}", "{}?", "find {}",
         "give me {}", "any notes on {}", "remind me of {}", "what was {} again", "list {}"]
QUESTIONS = [form.format(subject) for subject in SUBJECTS for form in FORMS]  # 160


def _plant(tmp_path: Path) -> tuple[Any, Any, Document]:
    engine = _engine(tmp_path)
    vault = Collection.create("Board vault", visibility=Collection.Visibility.GROUPS)
    board = Group.objects.create(name="Board")
    vault.groups.add(board)
    checksum = hashlib.sha256(VAULT.encode()).hexdigest()
    kept = tmp_path / "kept.md"
    kept.write_text(VAULT)
    storage.raw_dir().mkdir(parents=True, exist_ok=True)
    storage.keep_original(kept, checksum)
    doc = Document.objects.create(checksum=checksum, original_filename="merger.md", kind="markdown",
                                  status=Document.Status.INDEXED, collection=vault, chunk_count=1)
    path = tmp_path / "merger.md"
    path.write_text(VAULT)
    engine.ingest_file(path, document_id=doc.engine_id, title="Merger plans", collection=vault.key)
    insider, insider_cookie = _session_cookie("insider")
    insider.groups.add(board)
    outsider, outsider_cookie = _session_cookie("outsider")
    return (insider, insider_cookie), (outsider, outsider_cookie), doc


async def ask(comm: Any, text: str) -> list[dict[str, Any]]:
    await comm.send_json_to({"type": "ask", "text": text})
    frames = await frames_until(comm, "done", "error", "cancelled", timeout=60)
    assert frames[-1]["type"] == "done", frames[-1]  # a real answer (or decline), not a refusal
    return frames


def _leaks(frames: list[dict[str, Any]]) -> bool:
    return SECRET in str(frames)


@override_settings(CHAT_RATE_LIMIT_USER="0", CHAT_RATE_LIMIT_CONVERSATION="0", CHAT_FRAME_RATE="0")
async def test_a_restricted_secret_reaches_no_outsider_and_every_insider(tmp_path: Path) -> None:
    with override_settings(RAG_DATA_DIR=tmp_path / "data"):
        await _probe_every_surface(tmp_path)


async def _probe_every_surface(tmp_path: Path) -> None:
    (insider, insider_cookie), (outsider, outsider_cookie), doc = await sync_to_async(_plant)(tmp_path)
    probes = leaks = 0

    # The web chat: each question a new conversation, asked by an outsider.
    thief = await open_socket(outsider_cookie)
    for question in QUESTIONS:
        frames = await ask(thief, question)
        probes, leaks = probes + 1, leaks + _leaks(frames)
    await thief.disconnect()

    # The insider asks the same questions: the secret comes back, cited.
    member = await open_socket(insider_cookie)
    found = 0
    conversation_id = None
    for question in QUESTIONS[:20]:
        frames = await ask(member, question)
        cited = [c for f in frames if f["type"] == "citations" for c in f["items"]]
        if SECRET in str(frames) and any(c["document_id"] == doc.engine_id for c in cited):
            found += 1
            conversation_id = frames[0]["conversation_id"]
    await member.disconnect()
    assert found >= 15, found

    # The history frame of the insider's conversation, asked for by the outsider.
    thief = await open_socket(outsider_cookie)
    await thief.send_json_to({"type": "history", "conversation_id": conversation_id})
    frame = await thief.receive_json_from(timeout=5)
    probes, leaks = probes + 1, leaks + _leaks([frame])
    await thief.disconnect()

    # The source viewer and the download: the same answer as for a document that does not exist.
    def viewer_probes() -> tuple[int, int]:
        client = Client()
        client.force_login(outsider)
        n = bad = 0
        missing = client.get("/sources/999999/")
        for url in (f"/sources/{doc.pk}/", f"/sources/{doc.pk}/?passage=0", f"/sources/{doc.pk}/original"):
            response = client.get(url)
            n += 1
            bad += SECRET in response.content.decode(errors="replace") or response.status_code != missing.status_code
        client.force_login(insider)
        assert SECRET in client.get(f"/sources/{doc.pk}/").content.decode()
        assert client.get(f"/sources/{doc.pk}/original").content == VAULT.encode()
        return n, bad

    n, bad = await sync_to_async(viewer_probes)()
    probes, leaks = probes + n, leaks + bad

    # manage.py ask --as USER.
    def cli_probes() -> tuple[int, int]:
        n = bad = 0
        for question in QUESTIONS[:40]:
            out = io.StringIO()
            call_command("ask", question, "--json", "--as", "outsider", stdout=out)
            n, bad = n + 1, bad + (SECRET in out.getvalue())
        out = io.StringIO()
        call_command("ask", QUESTIONS[0], "--json", "--as", "insider", stdout=out)
        assert SECRET in out.getvalue() and doc.engine_id in out.getvalue()
        return n, bad

    n, bad = await sync_to_async(cli_probes)()
    probes, leaks = probes + n, leaks + bad

    print(f"access leak test: {probes} probes, {leaks} leaks")
    assert probes >= 200
    assert leaks == 0


def test_a_slack_channel_and_dm_search_what_their_scope_and_link_allow(tmp_path: Path) -> None:
    from console import chat
    from console.models import AccountLink, ChannelScope
    from tests.support import ask_chat

    with override_settings(RAG_DATA_DIR=tmp_path / "data", CHAT_RATE_LIMIT_USER="0", CHAT_RATE_LIMIT_CONVERSATION="0"):
        (insider, _), _, doc = _plant(tmp_path)
        scope = ChannelScope.objects.create(platform="slack", workspace="T1", channel="CBOARD")
        scope.collections.add(doc.collection)
        AccountLink.link(platform="slack", external_user="T1:UIN", user=insider, by=None)

        def asked(channel: str, user: str, n: int) -> str:
            asker = chat.Asker(platform="slack", workspace="T1", channel=channel, external_user=user,
                               direct=channel.startswith("D"))
            return str(ask_chat(surface="slack", conversation_key=f"T1:{channel}:{n}", user_key=user,
                                text=QUESTIONS[0], asker=asker))

        assert SECRET in asked("CBOARD", "UOUT", 1)  # the board's channel is scoped to the vault
        assert SECRET not in asked("CGENERAL", "UIN", 2)  # an unscoped channel: everyone's collections only
        assert SECRET in asked("DIN", "UIN", 3)  # a DM of the linked insider
        assert SECRET not in asked("DOUT", "UOUT", 4)  # an unlinked DM

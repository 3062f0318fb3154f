"""Answers say where and when: a citation of a synced document links to its origin and says when it was last synced."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bots.text import citation_label, citation_link
from console import chat
from console.chat.consumer import citation_frame
from console.models import Document, Message, Source, SyncRun
from console.syncing import service
from console.syncing.runs import run_sync
from ragcore import connectors
from tests.support import ask_chat

pytestmark = pytest.mark.django_db(transaction=True)

WIKI = {"key-rotation": "# Key rotation\n\nRotate the production API key every ninety days from the vault.\n"}


@pytest.fixture
def wiki(engine: Any, monkeypatch: pytest.MonkeyPatch) -> Source:
    monkeypatch.setitem(connectors.KINDS, "pages", "tests.console.sync_kind:PagesConnector")
    source = service.save_source(Source(name="wiki", kind="pages",
                                        config={"base": "https://wiki.example/docs", "pages": WIKI}))
    run_sync(SyncRun.objects.create(source=source).pk)
    return source


def cited(events: list[Any]) -> list[chat.Citation]:
    return [c for e in events if isinstance(e, chat.AnswerCitations) for c in e.items]


def test_a_citation_of_a_synced_page_links_to_its_origin_and_says_when_it_was_synced(
    wiki: Source, settings: Any
) -> None:
    settings.LOREBOT_PUBLIC_URL = "https://lorebot.example"
    doc = Document.objects.get(source=wiki)
    assert doc.synced_at is not None
    events = ask_chat(surface="web", conversation_key="w1", user_key="u1",
                      text="How often is the production API key rotated?")
    citation = next(c for c in cited(events) if c.document_id == doc.engine_id)
    assert citation.origin_url == "https://wiki.example/docs/key-rotation"
    assert citation.synced_at == doc.synced_at.isoformat()
    # Each surface: the web chat's frame, Slack and Discord's link and label, the stored answer.
    frame = citation_frame(citation)
    assert frame["url"] == "https://wiki.example/docs/key-rotation"
    assert frame["synced"] == f"synced {doc.synced_at.day} {doc.synced_at:%b %Y, %H:%M} UTC"
    assert citation_link(citation) == "https://wiki.example/docs/key-rotation"
    assert citation_label(citation).endswith(f"({frame['synced']})")
    stored = Message.objects.filter(role=Message.Role.ASSISTANT).get().citations
    assert any(c["origin_url"] == "https://wiki.example/docs/key-rotation" and c["synced_at"] for c in stored)


def test_a_synced_folder_file_is_cited_through_the_source_viewer_with_its_synced_time(
    source: Source, folder: Path, settings: Any
) -> None:
    settings.LOREBOT_PUBLIC_URL = "https://lorebot.example"
    run_sync(SyncRun.objects.create(source=source).pk)
    doc = Document.objects.get(source=source, original_filename="ops/rotation.md")
    events = ask_chat(surface="slack", conversation_key="T:C:1", user_key="U1", text="How often is the API key rotated?")
    citation = next(c for c in cited(events) if c.document_id == doc.engine_id)
    assert citation.origin_url == "" and citation.synced_at
    assert citation_link(citation).startswith(f"https://lorebot.example/sources/{doc.pk}/")
    assert "synced" in citation_label(citation)


def test_an_uploaded_document_is_cited_as_before(chat_engine: Any) -> None:
    events = ask_chat(surface="web", conversation_key="w2", user_key="u1", text="How do I roll back a release?")
    citation = cited(events)[0]
    assert citation.origin_url == citation.synced_at == "" and "synced" not in citation_label(citation)


def test_an_answer_looks_its_origins_up_once_for_the_frame_and_the_stored_answer(
    wiki: Source, monkeypatch: pytest.MonkeyPatch
) -> None:
    from console.chat import service as chat_service

    calls: list[int] = []
    real = chat_service.with_origins

    def counting(citations: Any) -> Any:
        calls.append(len(citations))
        return real(citations)

    monkeypatch.setattr(chat_service, "with_origins", counting)
    events = ask_chat(surface="web", conversation_key="w3", user_key="u1",
                      text="How often is the production API key rotated?")
    assert any(c.origin_url for c in cited(events))
    assert len(calls) == 1
    stored = Message.objects.filter(role=Message.Role.ASSISTANT).get().citations
    assert any(c["origin_url"] == "https://wiki.example/docs/key-rotation" for c in stored)


def test_the_consoles_conversation_page_links_a_synced_citation_to_its_origin_with_its_synced_time(
    wiki: Source
) -> None:
    from django.contrib.auth.models import User
    from django.test import Client

    from console.models import Conversation

    doc = Document.objects.get(source=wiki)
    assert doc.synced_at is not None
    ask_chat(surface="web", conversation_key="w4", user_key="u1", text="How often is the production API key rotated?")
    staff = Client()
    staff.force_login(User.objects.create_user("ada", is_staff=True))
    page = staff.get(f"/console/conversations/{Conversation.objects.get().pk}/").content.decode()
    assert '<a href="https://wiki.example/docs/key-rotation">' in page
    assert f'<span class="muted small synced">synced {doc.synced_at.day} {doc.synced_at:%b %Y, %H:%M} UTC</span>' in page

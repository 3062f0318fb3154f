"""The source viewer: a citation opens its document, highlighted at the passage; originals download; gone ones say so."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client, override_settings

from console.chat import absolute_source_url, source_url
from console.engine import get_engine, set_engine
from console.ingest import uploads
from console.models import Document
from tests.support import make_engine

pytestmark = pytest.mark.django_db

GUIDE = b"""# Operations guide

## Install

Install the agent with the package manager, then start the service.

## Rollback

To roll back a release, run the rollback pipeline with the previous tag.
The pipeline restores the database snapshot taken before the release.

## Contacts

Ask the platform team in their channel. <script>alert('x')</script>
"""
IMMEDIATE = {"default": {"BACKEND": "django_tasks.backends.immediate.ImmediateBackend"}}


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Any]:
    """The hashing engine on a fresh data folder; ingest jobs run inside the upload (no worker process)."""
    with override_settings(RAG_DATA_DIR=tmp_path / "data", TASKS=IMMEDIATE):
        engine = make_engine(tmp_path / "data")
        set_engine(engine)
        yield engine
    set_engine(None)


@pytest.fixture
def member() -> Client:
    client = Client()
    client.force_login(User.objects.create_user("bob", password="pw"))
    return client


@pytest.fixture
def upload(engine: Any, django_capture_on_commit_callbacks: Any) -> Callable[[str, bytes], Document]:
    staff = User.objects.create_user("ada", password="pw", is_staff=True)

    def upload(name: str, data: bytes) -> Document:
        with django_capture_on_commit_callbacks(execute=True):
            result = uploads.submit_uploads([SimpleUploadedFile(name, data)], staff)
        document = result.files[0].document
        assert document is not None
        document.refresh_from_db()
        assert document.status == Document.Status.INDEXED, document.error
        return document
    return upload


def cited_block(body: str) -> str:
    match = re.search(r'<div class="source-block cited" id="passage">(.*?)</div>', body, re.S)
    assert match, body
    return match.group(1)


def test_a_member_opens_a_citation_at_its_highlighted_passage(upload: Callable[..., Document], member: Client) -> None:
    doc = upload("ops-guide.md", GUIDE)
    answer = get_engine().answer("How do I roll back a release with the rollback pipeline?")
    first = answer.citations[0]
    assert first.document_id == doc.engine_id
    url = source_url(first)
    assert url.startswith(f"/sources/{doc.pk}/?passage=") and url.endswith("#passage")
    response = member.get(url)
    assert response.status_code == 200
    body = response.content.decode()
    assert "run the rollback pipeline with the previous tag" in cited_block(body)
    assert body.count('class="source-block cited"') <= 3  # the passage, not the whole document
    assert "Install the agent" in body and "Install the agent" not in cited_block(body)
    assert "<script>" not in body  # the loader keeps no HTML of a Markdown file
    assert f'href="/sources/{doc.pk}/original"' in body


def test_nothing_in_a_document_becomes_markup_on_the_page(upload: Callable[..., Document], member: Client) -> None:
    doc = upload("notes.txt", b"Plain notes. <img src=x onerror=alert(1)> and [click](javascript:alert(2)) here.\n")
    body = member.get(f"/sources/{doc.pk}/").content.decode()
    assert "&lt;img src=x onerror=alert(1)&gt;" in body and "<img" not in body
    assert 'href="javascript' not in body


def test_the_original_downloads_as_an_attachment_never_rendered(upload: Callable[..., Document], member: Client) -> None:
    doc = upload("ops-guide.md", GUIDE)
    response = member.get(f"/sources/{doc.pk}/original")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/octet-stream"
    assert response["Content-Disposition"] == 'attachment; filename="ops-guide.md"'
    assert response.content == GUIDE


def test_an_older_version_says_it_was_replaced_and_links_the_current_one(upload: Callable[..., Document], member: Client) -> None:
    old = upload("ops-guide.md", GUIDE)
    new = upload("ops-guide.md", GUIDE.replace(b"previous tag", b"previous release tag"))
    old.refresh_from_db()
    assert old.status == Document.Status.SUPERSEDED
    body = member.get(f"/sources/{old.pk}/?passage=1").content.decode()
    assert "a newer upload replaced it" in body
    assert f'href="/sources/{new.pk}/"' in body


def test_a_deleted_document_says_so_instead_of_a_404(engine: Any, member: Client) -> None:
    for path in ("/sources/4242/?passage=0", "/sources/4242/original"):
        response = member.get(path)
        assert response.status_code == 410
        assert "This document was deleted" in response.content.decode()


def test_the_viewer_needs_a_login(upload: Callable[..., Document]) -> None:
    doc = upload("ops-guide.md", GUIDE)
    for path in (f"/sources/{doc.pk}/", f"/sources/{doc.pk}/original"):
        response = Client().get(path)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/?next=")


def test_bots_link_citations_to_the_viewer_under_the_public_url(upload: Callable[..., Document]) -> None:
    doc = upload("ops-guide.md", GUIDE)
    citation = get_engine().answer("How do I roll back a release?").citations[0]
    with override_settings(LOREBOT_PUBLIC_URL=""):
        assert absolute_source_url(citation) == ""
    with override_settings(LOREBOT_PUBLIC_URL="https://lorebot.example.com/"):
        assert absolute_source_url(citation).startswith(f"https://lorebot.example.com/sources/{doc.pk}/?passage=")

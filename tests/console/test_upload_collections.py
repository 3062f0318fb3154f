"""An upload, and `manage.py ingest --collection KEY`, put their documents in the chosen collection (default:
the default one); the worker indexes them there, and only those who may see it find them."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.urls import reverse

from console.ingest import worker
from console.models import Collection, Document, IngestJob
from console.tasks import enqueue_job
from ragcore import Engine
from tests.console.test_collections_console import csrf_client, post
from tests.console.test_document_moves import LEDGER, cited, engine, world  # noqa: F401 (fixtures)

pytestmark = pytest.mark.django_db(transaction=True)

QUESTION = "When does the quarterly ledger close with the walrus reconciliation?"


def chunk_collection(engine: Engine, doc: Document) -> str:
    return engine.store.get_chunks([f"{doc.engine_id}:0"])[f"{doc.engine_id}:0"].collection


def test_an_upload_goes_into_the_collection_chosen_on_the_form(engine: Engine, world: dict[str, Any]) -> None:
    client = csrf_client(world["staff"])
    page = client.get(reverse("console:documents")).content.decode()
    assert 'name="collection"' in page and "Finance" in page
    response = post(client, reverse("console:documents"),
                    {"files": [SimpleUploadedFile("ledger.md", LEDGER.encode())], "collection": world["finance"].pk})
    job = IngestJob.objects.get()
    assert response["Location"] == reverse("console:job", args=[job.pk])
    worker.process_job(job.pk, requeue=enqueue_job)
    doc = Document.objects.get(original_filename="ledger.md")
    assert (doc.status, doc.collection) == (Document.Status.INDEXED, world["finance"])
    assert chunk_collection(engine, doc) == "finance"
    assert doc.engine_id in cited(QUESTION, world["finance_member"])
    assert doc.engine_id not in cited(QUESTION, world["legal_member"])


def test_an_upload_without_a_choice_goes_to_the_default_and_a_bad_choice_is_refused(
        engine: Engine, world: dict[str, Any]) -> None:
    client = csrf_client(world["staff"])
    post(client, reverse("console:documents"), {"files": [SimpleUploadedFile("a.md", b"# A\n\nAlpha.\n")]})
    assert Document.objects.get(original_filename="a.md").collection == Collection.default()
    response = post(client, reverse("console:documents"),
                    {"files": [SimpleUploadedFile("b.md", b"# B\n\nBeta.\n")], "collection": 999999}, follow=True)
    assert not Document.objects.filter(original_filename="b.md").exists()
    assert any("Select a valid choice" in str(m) for m in response.context["messages"])


def ingest(*args: str) -> str:
    out = io.StringIO()
    call_command("ingest", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_ingest_collection_puts_files_there_and_moves_ones_already_ingested(
        engine: Engine, world: dict[str, Any], tmp_path: Path) -> None:
    books = tmp_path / "books"
    books.mkdir()
    (books / "ledger.md").write_text(LEDGER)
    out = ingest(str(books), "--collection", "finance")
    doc = Document.objects.get(original_filename="ledger.md")
    assert "indexed" in out and doc.collection == world["finance"]
    assert chunk_collection(engine, doc) == "finance"
    assert doc.engine_id in cited(QUESTION, world["finance_member"])

    # The same files asked for in another collection: moved there, not embedded again.
    out = ingest(str(books), "--collection", "legal")
    assert "moved      ledger.md: already indexed, now in the collection legal" in out
    assert out.strip().endswith("0 indexed, 1 moved, 0 unchanged, 0 skipped, 0 failed")
    doc.refresh_from_db()
    assert doc.collection == world["legal"] and chunk_collection(engine, doc) == "legal"
    assert doc.engine_id in cited(QUESTION, world["legal_member"])
    assert doc.engine_id not in cited(QUESTION, world["finance_member"])
    assert "unchanged  ledger.md: skipped, already indexed" in ingest(str(books), "--collection", "legal")


def test_ingest_refuses_an_unknown_collection_and_names_the_known_ones(engine: Engine, world: dict[str, Any],
                                                                        tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# A\n\nAlpha.\n")
    with pytest.raises(CommandError, match=r"no collection has the key 'hr' \(known: default, finance, legal\)"):
        ingest(str(tmp_path / "a.md"), "--collection", "hr")
    assert not Document.objects.exists()


def test_the_same_content_uploaded_for_another_collection_is_refused_naming_where_it_is(
        engine: Engine, world: dict[str, Any]) -> None:
    client = csrf_client(world["staff"])
    post(client, reverse("console:documents"),
         {"files": [SimpleUploadedFile("ledger.md", LEDGER.encode())], "collection": world["finance"].pk})
    response = post(client, reverse("console:documents"),
                    {"files": [SimpleUploadedFile("copy.md", LEDGER.encode())], "collection": world["legal"].pk},
                    follow=True)
    assert ("0 files accepted, 1 refused: copy.md (duplicate, already ingested as ledger.md in the collection Finance "
            "(move it there from its document page)).") in [str(m) for m in response.context["messages"]]
    assert Document.objects.get().collection == world["finance"]

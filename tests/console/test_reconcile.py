"""`manage.py reconcile` finds documents missing from an index; `manage.py reindex` rebuilds both."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.core.management.base import CommandError

from console.engine import get_engine
from console.ingest import storage, uploads
from console.models import Document, IngestJob
from tests.console.test_ingest_jobs import run_worker

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

FILES = {
    "handbook.md": b"# Handbook\n\nRotate the API key every ninety days from the settings page.\n",
    "deploy.md": b"# Deploy\n\nRollbacks use the rollback pipeline with the previous release tag.\n",
    "notes.txt": b"Meeting notes: the zebra migration finishes on Friday.\n",
}


def run(*args: str, capture: Any) -> tuple[str, str]:
    out = io.StringIO()
    with capture(execute=True):
        call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue(), out.getvalue().strip().splitlines()[-1]


@pytest.fixture
def indexed(data_dir: Path, django_capture_on_commit_callbacks: Any) -> dict[str, Document]:
    with django_capture_on_commit_callbacks(execute=True):
        uploads.submit_uploads([SimpleUploadedFile(n, d) for n, d in FILES.items()], None)
    run_worker()
    return {d.original_filename: d for d in Document.objects.all()}


def test_reconcile_finds_nothing_when_both_indexes_are_whole(indexed: dict[str, Document], django_capture_on_commit_callbacks: Callable[..., Any]) -> None:
    _, summary = run("reconcile", capture=django_capture_on_commit_callbacks)
    assert summary == "3 indexed documents checked, 0 broken"
    assert IngestJob.objects.count() == 1


def test_reconcile_requeues_documents_missing_from_either_index(
    indexed: dict[str, Document], django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    engine = get_engine()
    engine.bm25.delete_document(indexed["handbook.md"].engine_id)
    engine.store.delete_document(indexed["deploy.md"].engine_id)
    dry, summary = run("reconcile", "--dry-run", capture=django_capture_on_commit_callbacks)
    assert "handbook.md" in dry and "BM25 index: missing" in dry
    assert "deploy.md" in dry and "vector index: missing" in dry
    assert summary.endswith("2 broken; dry run, nothing queued") and IngestJob.objects.count() == 1

    out, summary = run("reconcile", capture=django_capture_on_commit_callbacks)
    job = IngestJob.objects.order_by("-pk").first()
    assert job is not None and f"job {job.pk} re-queues 2" in summary
    assert sorted(job.files.values_list("filename", flat=True)) == ["deploy.md", "handbook.md"]
    run_worker()
    job.refresh_from_db()
    assert job.state == IngestJob.State.SUCCEEDED
    for doc in indexed.values():
        status = engine.document_status(doc.engine_id)
        assert status.dense_chunks == status.sparse_chunks == doc.chunk_count > 0
    _, summary = run("reconcile", capture=django_capture_on_commit_callbacks)
    assert summary.endswith(", 0 broken")


def test_reconcile_reports_a_broken_document_whose_original_is_missing(
    indexed: dict[str, Document], django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    doc = indexed["notes.txt"]
    get_engine().delete_document(doc.engine_id)
    storage.remove_original(doc.checksum)
    out, summary = run("reconcile", capture=django_capture_on_commit_callbacks)
    assert "notes.txt" in out and "its original is not in the folder" in out and "cannot re-ingest" in out
    assert "1 with a missing original" in summary and IngestJob.objects.count() == 1


def test_reindex_drops_both_indexes_and_queues_every_document(
    indexed: dict[str, Document], django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    engine = get_engine()
    before = {name: doc.chunk_count for name, doc in indexed.items()}
    _, summary = run("reindex", capture=django_capture_on_commit_callbacks)
    assert "re-queues 3 documents" in summary
    assert engine.document_status(indexed["deploy.md"].engine_id).sparse_chunks == 0
    run_worker()
    assert IngestJob.objects.order_by("-pk")[0].state == IngestJob.State.SUCCEEDED
    for name, doc in indexed.items():
        assert engine.document_status(doc.engine_id).dense_chunks == before[name]


def test_reindex_refuses_to_drop_the_indexes_when_an_original_is_not_visible_here(
    indexed: dict[str, Document], django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    storage.remove_original(indexed["notes.txt"].checksum)
    with pytest.raises(CommandError) as refused:
        run("reindex", "--now", capture=django_capture_on_commit_callbacks)
    assert "refusing to drop the indexes" in str(refused.value) and "notes.txt" in str(refused.value)
    assert "--drop-missing" in str(refused.value)
    for doc in indexed.values():  # nothing was dropped
        assert get_engine().document_status(doc.engine_id).sparse_chunks == doc.chunk_count > 0
    assert Document.objects.get(original_filename="notes.txt").status == Document.Status.INDEXED


def test_reindex_refuses_when_the_indexes_hold_documents_without_an_original(
    indexed: dict[str, Document], django_capture_on_commit_callbacks: Callable[..., Any], tmp_path: Path
) -> None:
    loose = tmp_path / "loose.md"
    loose.write_text("# Loose\n\nA document ingested by hand, with no row and no original.\n")
    get_engine().ingest_file(loose)
    with pytest.raises(CommandError) as refused:
        run("reindex", capture=django_capture_on_commit_callbacks)
    assert "1 documents with no original in this database" in str(refused.value)
    assert len(get_engine().bm25.documents()) == len(indexed) + 1


def test_reindex_now_with_drop_missing_rebuilds_in_process_and_names_a_missing_original(
    indexed: dict[str, Document], django_capture_on_commit_callbacks: Callable[..., Any]
) -> None:
    storage.remove_original(indexed["notes.txt"].checksum)
    out, summary = run("reindex", "--now", "--drop-missing", capture=django_capture_on_commit_callbacks)
    assert "missing    notes.txt" in out
    assert "2 re-indexed, 0 failed, 1 originals missing" in summary
    assert Document.objects.get(original_filename="notes.txt").status == Document.Status.FAILED
    assert get_engine().document_status(indexed["handbook.md"].engine_id).sparse_chunks > 0

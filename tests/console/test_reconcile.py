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
    assert summary == "3 indexed documents checked, 0 broken, 0 stuck"
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
    assert summary.endswith("2 broken, 0 stuck; dry run, nothing queued") and IngestJob.objects.count() == 1

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
    assert summary.endswith(", 0 broken, 0 stuck")


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


# -- damaged indexes, stuck documents ---------------------------------------------------------------


def _forget_open_indexes() -> None:
    """What a freshly started process sees: nothing of the indexes cached in memory."""
    from chromadb.api.shared_system_client import SharedSystemClient

    from console.engine import set_engine

    SharedSystemClient._identifier_to_system.clear()
    SharedSystemClient._identifier_to_refcount.clear()
    set_engine(None)


def _garbage_manifest(data_dir: Path) -> None:
    (data_dir / "bm25_index" / "manifest.json").write_text("{ not a manifest")


def _missing_segment(data_dir: Path) -> None:
    import shutil

    shutil.rmtree(next(p for p in (data_dir / "bm25_index").iterdir() if p.name.startswith("seg-")))


def _garbage_chroma(data_dir: Path) -> None:
    (data_dir / "chroma_store" / "chroma.sqlite3").write_bytes(b"garbage" * 4096)


DAMAGE = [pytest.param(_garbage_manifest, "BM25 index", id="garbage-bm25-manifest"),
          pytest.param(_missing_segment, "BM25 index", id="missing-bm25-segment"),
          pytest.param(_garbage_chroma, "vector index", id="garbage-chroma-database")]


@pytest.mark.parametrize(("damage", "label"), DAMAGE)
def test_reconcile_rebuilds_an_index_that_cannot_be_opened_instead_of_crashing(
    indexed: dict[str, Document], data_dir: Path, django_capture_on_commit_callbacks: Callable[..., Any],
    damage: Callable[[Path], None], label: str,
) -> None:
    damage(data_dir)
    _forget_open_indexes()
    dry, summary = run("reconcile", "--dry-run", capture=django_capture_on_commit_callbacks)
    assert f"{label} cannot be opened" in dry and "dry run, nothing queued" in summary
    assert IngestJob.objects.count() == 1
    out, summary = run("reconcile", capture=django_capture_on_commit_callbacks)
    assert f"repaired   {label} could not be opened" in out and f"{label} rebuilt" in summary
    assert "re-queues 3" in summary
    assert list(data_dir.glob("*.corrupt-*")), "the damaged files are kept, set aside"
    run_worker()
    engine = get_engine()
    for doc in indexed.values():
        status = engine.document_status(doc.engine_id)
        assert status.dense_chunks == status.sparse_chunks == doc.chunk_count > 0
    _, summary = run("reconcile", capture=django_capture_on_commit_callbacks)
    assert summary == "3 indexed documents checked, 0 broken, 0 stuck"


@pytest.mark.parametrize(("damage", "label"), DAMAGE)
def test_reindex_now_rebuilds_both_even_when_one_cannot_be_opened(
    indexed: dict[str, Document], data_dir: Path, django_capture_on_commit_callbacks: Callable[..., Any],
    damage: Callable[[Path], None], label: str,
) -> None:
    """The finding: `reindex --now` failed on a damaged BM25 index after dropping every Chroma vector."""
    damage(data_dir)
    _forget_open_indexes()
    _, summary = run("reindex", "--now", capture=django_capture_on_commit_callbacks)
    assert "3 re-indexed, 0 failed" in summary
    engine = get_engine()
    for doc in indexed.values():
        status = engine.document_status(doc.engine_id)
        assert status.dense_chunks == status.sparse_chunks == doc.chunk_count > 0


def test_reindex_says_a_damaged_keyword_index_is_set_aside_and_what_it_cannot_check(
    indexed: dict[str, Document], data_dir: Path, django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    _garbage_manifest(data_dir)
    _forget_open_indexes()
    err = io.StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        summary = call_command("reindex", stdout=io.StringIO(), stderr=err)
    assert f"the BM25 index at {data_dir / 'bm25_index'} cannot be opened (JSONDecodeError" in err.getvalue()
    assert "set aside and rebuilt" in err.getvalue() and "re-queues 3 documents" in summary
    assert list(data_dir.glob("bm25_index.corrupt-*")), "the damaged files are kept, set aside"


def test_reindex_drops_nothing_when_the_vector_store_cannot_be_reached(
    indexed: dict[str, Document], settings: Any, django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    import socket

    from django.core.management.base import CommandError

    from console.engine import set_engine

    bm25_before = len(get_engine().bm25)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings.CHROMA_URL = f"http://127.0.0.1:{port}"  # a Chroma server that is down
    # The originals stay where they were uploaded (PostgreSQL plus a Chroma server would pick the database).
    settings.RAG_ORIGINALS_STORAGE = "folder"
    settings.RAG_KEYWORD_STORE = "folder"
    set_engine(None)
    with pytest.raises(CommandError, match="neither index was changed"):
        run("reindex", capture=django_capture_on_commit_callbacks)
    settings.CHROMA_URL = ""
    set_engine(None)
    assert len(get_engine().bm25) == bm25_before > 0
    assert Document.objects.filter(status=Document.Status.INDEXED).count() == 3


def test_reindex_drops_nothing_when_the_keyword_index_cannot_be_reached(
    indexed: dict[str, Document], django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    """The finding: with the PostgreSQL keyword index down, reindex went on and dropped every Chroma vector."""
    from console.engine import set_engine

    port = _keyword_index_down()
    with pytest.raises(CommandError) as refused:
        run("reindex", capture=django_capture_on_commit_callbacks)
    assert f"keyword index at postgres@127.0.0.1:{port}/x" in str(refused.value) and "unreachable" in str(refused.value)
    assert "nothing was dropped" in str(refused.value)
    set_engine(None)
    for doc in indexed.values():
        assert get_engine().document_status(doc.engine_id).dense_chunks == doc.chunk_count > 0
    assert IngestJob.objects.count() == 1 and Document.objects.filter(status=Document.Status.INDEXED).count() == 3


def _keyword_index_down() -> int:
    """The process's engine, on the same model and folder, with its keyword index in a PostgreSQL that is down."""
    import socket
    from dataclasses import replace

    from console.engine import rag_settings, set_engine
    from ragcore import Engine

    embedder = get_engine().embedder
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    down = replace(rag_settings(), keyword_store="postgresql", database_url=f"postgresql://postgres@127.0.0.1:{port}/x")
    set_engine(Engine(down, embedder=embedder))
    return port


def test_reconcile_changes_nothing_when_the_keyword_index_cannot_be_reached(
    indexed: dict[str, Document], data_dir: Path, django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    """The finding: an unreachable PostgreSQL keyword index was taken for a damaged one, to be set aside."""
    port = _keyword_index_down()
    dry, _ = run("reconcile", "--dry-run", capture=django_capture_on_commit_callbacks)
    assert f"BM25 index cannot be reached: keyword index at postgres@127.0.0.1:{port}/x" in dry
    with pytest.raises(CommandError, match="neither index was changed. Bring it back, then run reconcile again"):
        run("reconcile", capture=django_capture_on_commit_callbacks)
    assert not list(data_dir.glob("*.corrupt-*")) and IngestJob.objects.count() == 1


def test_reconcile_picks_up_documents_stuck_in_queued_or_indexing(
    data_dir: Path, django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    """The finding: a full disk mid-ingest left documents `queued`/`indexing`; reconcile checked 0 of them."""
    from datetime import timedelta

    from django.utils import timezone

    with django_capture_on_commit_callbacks(execute=False):  # queued, never run by a worker
        result = uploads.submit_uploads([SimpleUploadedFile(n, d) for n, d in FILES.items()], None)
    assert result.job is not None
    # The job's worker gave up (crashed, disk full) and the documents were left as they were.
    IngestJob.objects.filter(pk=result.job.pk).update(state=IngestJob.State.FAILED)
    Document.objects.filter(original_filename="deploy.md").update(status=Document.Status.INDEXING)
    _, summary = run("reconcile", "--dry-run", capture=django_capture_on_commit_callbacks)
    assert summary.endswith("0 stuck"), "within the stale window a document may still be on its way"
    old = timezone.now() - timedelta(hours=1)
    Document.objects.update(updated_at=old)
    out, summary = run("reconcile", capture=django_capture_on_commit_callbacks)
    assert "deploy.md" in out and "indexing since" in out and "with no live job" in out
    assert "3 stuck" in summary and "re-queues 3" in summary
    run_worker()
    assert set(Document.objects.values_list("status", flat=True)) == {Document.Status.INDEXED}


def test_a_document_waiting_in_a_live_queued_job_is_not_stuck(
    data_dir: Path, django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    with django_capture_on_commit_callbacks(execute=False):
        uploads.submit_uploads([SimpleUploadedFile("handbook.md", FILES["handbook.md"])], None)
    Document.objects.update(updated_at=timezone.now() - timedelta(hours=1))  # queued behind a long job
    _, summary = run("reconcile", "--dry-run", capture=django_capture_on_commit_callbacks)
    assert summary.endswith("0 broken, 0 stuck")


@pytest.mark.django_db(transaction=True)
def test_the_worker_starts_with_a_damaged_index_and_says_to_reconcile(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The finding: with a garbage BM25 manifest the worker exited at start-up."""
    get_engine().ingest_file(_write(data_dir.parent / "a.md", FILES["deploy.md"]))
    _garbage_manifest(data_dir)
    _forget_open_indexes()
    call_command("db_worker", "--batch", "--worker-id", "damaged", stdout=io.StringIO())
    assert "worker.warmup_failed" in caplog.text and "manage.py reconcile" in caplog.text


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path

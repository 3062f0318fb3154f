"""Originals kept in the database: a worker or a maintenance command on another host (another data
folder) reads every upload, and nothing is written under data/raw/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings

from console.engine import get_engine, set_engine
from console.ingest import storage, uploads
from console.models import Document, Original
from tests.console.test_ingest_jobs import run_worker
from tests.console.test_reconcile import FILES, run

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


@pytest.fixture
def in_database(data_dir: Path) -> Iterator[Path]:
    with override_settings(RAG_ORIGINALS_STORAGE="database"):
        yield data_dir


def test_uploads_are_kept_in_the_database_and_ingested_from_there(
    in_database: Path, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        uploads.submit_uploads([SimpleUploadedFile(n, d) for n, d in FILES.items()], None)
    run_worker()
    docs = list(Document.objects.all())
    assert {d.status for d in docs} == {Document.Status.INDEXED}
    assert sorted(Original.objects.values_list("checksum", flat=True)) == sorted(d.checksum for d in docs)
    assert not (in_database / "raw").exists() or not any((in_database / "raw").iterdir())
    assert storage.location() == "database table console_original"
    handbook = next(d for d in docs if d.original_filename == "handbook.md")
    assert storage.read_original(handbook.checksum) == FILES["handbook.md"]


def test_reindex_from_another_hosts_empty_data_folder_rebuilds_from_the_database(
    in_database: Path, tmp_path: Path, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        uploads.submit_uploads([SimpleUploadedFile(n, d) for n, d in FILES.items()], None)
    run_worker()
    elsewhere = tmp_path / "host-b"
    with override_settings(RAG_DATA_DIR=elsewhere):
        set_engine(None)
        try:
            _, summary = run("reindex", "--now", capture=django_capture_on_commit_callbacks)
            assert "3 re-indexed, 0 failed, 0 originals missing" in summary
            hits = get_engine().retrieve("zebra migration", mode="bm25").chunks
            assert hits and hits[0].chunk.title.startswith("notes")
        finally:
            set_engine(None)

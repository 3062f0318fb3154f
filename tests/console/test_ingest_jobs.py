"""Uploads become ingest jobs; the worker runs them with per-file results, retries and cancels."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client, override_settings
from django.utils import timezone
from django_tasks_db.management.commands.db_worker import Worker

from console.engine import get_engine
from console.ingest import jobs, recovery, storage, uploads, worker
from console.models import Document, IngestJob, IngestJobFile
from ragcore.errors import StoreUnavailable

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

HANDBOOK = b"# Handbook\n\nRotate the API key every ninety days from the settings page.\n"
DEPLOY = b"# Deploy\n\nRollbacks use the rollback pipeline with the previous release tag.\n"
NOTES = b"Meeting notes: the zebra migration finishes on Friday.\n"


def upload(name: str, data: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data)


def run_worker() -> None:
    """Runs every ready task in this process, the way `db_worker --batch` would (no signal handlers)."""
    # The worker closes connections that are not in autocommit, which the test transaction never is.
    with mock.patch("django_tasks_db.management.commands.db_worker.close_old_connections"):
            Worker(queue_names=["default"], interval=0, batch=True, backend_name="default", startup_delay=False,
               max_tasks=None, worker_id="test-worker", excluded_queue_names=[]).run()


@pytest.fixture
def staff() -> User:
    return User.objects.create_user("ada", password="pw", is_staff=True)


@pytest.fixture
def submit(data_dir: Path, staff: User, django_capture_on_commit_callbacks: Any) -> Callable[..., uploads.SubmitResult]:
    def submit(*files: SimpleUploadedFile) -> uploads.SubmitResult:
        with django_capture_on_commit_callbacks(execute=True):
            return uploads.submit_uploads(files, staff)
    return submit


@pytest.fixture(autouse=True)
def quick_retries() -> Iterator[None]:
    with override_settings(INGEST_RETRY_BACKOFF_SECONDS=0, INGEST_MAX_ATTEMPTS=3):
        yield


def test_it_indexes_every_uploaded_file_and_reports_each_one(submit: Callable[..., uploads.SubmitResult]) -> None:
    result = submit(upload("handbook.md", HANDBOOK), upload("deploy.md", DEPLOY))
    assert [f.outcome for f in result.files] == ["accepted", "accepted"]
    assert result.job is not None and result.job.task_id
    run_worker()
    job = IngestJob.objects.get(pk=result.job.pk)
    assert job.state == IngestJob.State.SUCCEEDED and job.stage == "done"
    assert (job.progress_done, job.progress_total, job.attempts) == (2, 2, 1)
    for f in job.files.select_related("document"):
        assert f.state == IngestJobFile.State.INDEXED and f.chunks > 0
        assert f.document.status == Document.Status.INDEXED and f.document.chunk_count == f.chunks
        assert storage.read_original(f.document.checksum) in (HANDBOOK, DEPLOY)
    hits = get_engine().retrieve("how often to rotate the API key", mode="hybrid").chunks
    assert hits[0].chunk.source == "handbook.md"


def test_one_corrupt_file_fails_alone_and_the_job_is_partially_failed(submit: Callable[..., uploads.SubmitResult]) -> None:
    result = submit(upload("handbook.md", HANDBOOK), upload("broken.pdf", b"%PDF-1.4 this is not really a pdf"))
    run_worker()
    job = IngestJob.objects.get(pk=result.job.pk)
    assert job.state == IngestJob.State.PARTIALLY_FAILED
    broken = job.files.get(filename="broken.pdf")
    assert broken.state == IngestJobFile.State.FAILED and broken.attempts == 1  # permanent: not retried
    assert "broken.pdf" in broken.error_message and broken.error_type
    assert broken.document.status == Document.Status.FAILED
    assert job.files.get(filename="handbook.md").state == IngestJobFile.State.INDEXED


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("empty.md", b"", "empty file"),
        ("setup.pdf", b"MZ\x90\x00\x03\x00\x00\x00" + bytes(200), "not a PDF"),
    ],
)
def test_bad_files_are_rejected_at_submit_with_a_reason_naming_them(
    submit: Callable[..., uploads.SubmitResult], name: str, data: bytes, reason: str
) -> None:
    result = submit(upload(name, data))
    assert result.job is not None and result.job.state == IngestJob.State.FAILED  # finished: nothing to run
    (outcome,) = result.files
    assert outcome.outcome == "refused" and name in outcome.reason and reason in outcome.reason
    assert result.job.files.get().state == IngestJobFile.State.REFUSED
    assert not Document.objects.exists()
    assert not list(storage.raw_dir().iterdir())  # no original and no temp file left behind


def test_an_oversized_file_is_refused_by_its_size_before_it_is_read(submit: Callable[..., uploads.SubmitResult]) -> None:
    class Huge(SimpleUploadedFile):
        def chunks(self, chunk_size: int | None = None) -> Iterator[bytes]:
            raise AssertionError("read although its size is over the limit")

    huge = Huge("big.txt", b"x")
    huge.size = 2 * 1024 * 1024
    liar = upload("liar.txt", b"y" * (1024 * 1024 + 10))
    liar.size = 10  # a client that lies about the size is stopped while streaming
    with override_settings(RAG_MAX_FILE_MB=1):
        result = submit(huge, liar)
    assert [f.outcome for f in result.files] == ["refused", "refused"]
    assert "big.txt" in result.files[0].reason and "1 MB limit" in result.files[0].reason
    assert "liar.txt" in result.files[1].reason and "limit" in result.files[1].reason


def test_file_names_are_sanitized_and_originals_are_stored_by_checksum(submit: Callable[..., uploads.SubmitResult]) -> None:
    result = submit(upload("../../etc/evil\x00\x1b.md", HANDBOOK))
    doc = result.files[0].document
    assert doc is not None and doc.original_filename == "evil.md"
    assert storage.list_originals() == [doc.checksum] and (storage.raw_dir() / doc.checksum).is_file()
    assert storage.sanitize_filename("C:\\Users\\me\\" + "a" * 300 + ".pdf").endswith(".pdf")
    assert len(storage.sanitize_filename("a" * 300 + ".pdf")) <= storage.MAX_NAME_CHARS
    assert storage.sanitize_filename("..") == "upload"


def test_the_same_content_again_is_already_ingested_with_no_second_copy(submit: Callable[..., uploads.SubmitResult]) -> None:
    first = submit(upload("handbook.md", HANDBOOK))
    run_worker()
    again = submit(upload("copy-of-handbook.md", HANDBOOK))
    (outcome,) = again.files
    assert outcome.outcome == "refused" and outcome.code == "duplicate"
    assert outcome.reason == "copy-of-handbook.md: duplicate, already ingested as handbook.md"
    assert outcome.document == first.files[0].document
    assert Document.objects.count() == 1 and len(list(storage.raw_dir().iterdir())) == 1


def test_a_new_version_supersedes_the_old_one_and_its_chunks_are_gone(submit: Callable[..., uploads.SubmitResult]) -> None:
    submit(upload("handbook.md", HANDBOOK))
    run_worker()
    old = Document.objects.get()
    submit(upload("handbook.md", b"# Handbook\n\nThe zebra key is rotated weekly by the platform team.\n"))
    run_worker()
    old.refresh_from_db()
    new = Document.objects.exclude(pk=old.pk).get()
    assert (new.version, new.previous, new.status) == (2, old, Document.Status.INDEXED)
    assert old.status == Document.Status.SUPERSEDED
    status = get_engine().document_status(old.engine_id)
    assert status.dense_chunks == 0 and status.sparse_chunks == 0
    sources = {hit.chunk.document_id for hit in get_engine().retrieve("zebra key rotated", mode="hybrid").chunks}
    assert sources == {new.engine_id}


def test_a_transient_error_is_retried_and_then_succeeds(
    submit: Callable[..., uploads.SubmitResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = get_engine()
    real = engine.ingest_parsed
    calls = []

    def flaky(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise StoreUnavailable("chroma is down")
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "ingest_parsed", flaky)
    result = submit(upload("handbook.md", HANDBOOK))
    run_worker()
    job = IngestJob.objects.get(pk=result.job.pk)
    assert job.state == IngestJob.State.SUCCEEDED and job.attempts == 2
    f = job.files.get()
    assert (f.state, f.attempts, len(calls)) == (IngestJobFile.State.INDEXED, 2, 2)
    assert any(e["event"] == "transient error; retrying" for e in job.history)


def test_transient_errors_stop_after_the_last_attempt(
    submit: Callable[..., uploads.SubmitResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    def down(*args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailable("chroma is down")

    monkeypatch.setattr(get_engine(), "ingest_parsed", down)
    result = submit(upload("handbook.md", HANDBOOK))
    run_worker()
    job = IngestJob.objects.get(pk=result.job.pk)
    f = job.files.get()
    assert job.state == IngestJob.State.FAILED and f.attempts == 3
    assert f.error_type == "StoreUnavailable" and "chroma is down" in f.error_message
    assert "Traceback" in f.traceback


def test_a_permanent_error_is_not_retried(submit: Callable[..., uploads.SubmitResult]) -> None:
    result = submit(upload("scan.pdf", b"%PDF-1.4\n%%EOF\n"))
    run_worker()
    job = IngestJob.objects.get(pk=result.job.pk)
    f = job.files.get()
    assert job.state == IngestJob.State.FAILED and f.attempts == 1 and job.attempts == 1
    assert f.state == IngestJobFile.State.FAILED and "scan.pdf" in f.error_message


def test_a_cancelled_job_stops_between_files_and_can_be_retried(
    submit: Callable[..., uploads.SubmitResult], monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    result = submit(upload("handbook.md", HANDBOOK), upload("deploy.md", DEPLOY), upload("notes.txt", NOTES))
    job = result.job
    assert job is not None
    real = worker._JobRun._indexed

    def cancel_after_first(self: Any, *args: Any, **kwargs: Any) -> None:
        real(self, *args, **kwargs)
        if not IngestJob.objects.get(pk=job.pk).is_finished:
            jobs.cancel_job(job)

    monkeypatch.setattr(worker._JobRun, "_indexed", cancel_after_first)
    run_worker()
    job.refresh_from_db()
    assert job.state == IngestJob.State.CANCELLED
    states = list(job.files.values_list("state", flat=True))
    assert states == ["indexed", "cancelled", "cancelled"]
    monkeypatch.setattr(worker._JobRun, "_indexed", real)
    with django_capture_on_commit_callbacks(execute=True):
        jobs.retry_job(job)
    run_worker()
    job.refresh_from_db()
    assert job.state == IngestJob.State.SUCCEEDED
    assert list(job.files.values_list("state", flat=True)) == ["indexed", "indexed", "indexed"]


def test_deleting_a_document_removes_its_chunks_in_the_worker(
    submit: Callable[..., uploads.SubmitResult], staff: User, django_capture_on_commit_callbacks: Any
) -> None:
    submit(upload("handbook.md", HANDBOOK))
    run_worker()
    doc = Document.objects.get()
    with django_capture_on_commit_callbacks(execute=True):
        job = jobs.delete_document(doc, staff)
    assert Document.objects.get().status == Document.Status.DELETING
    run_worker()
    job.refresh_from_db()
    assert job.state == IngestJob.State.SUCCEEDED and job.files.get().state == IngestJobFile.State.DELETED
    assert not Document.objects.exists() and not storage.has_original(doc.checksum)
    assert get_engine().document_status(doc.engine_id).sparse_chunks == 0


def test_reingesting_a_document_re_embeds_it(
    submit: Callable[..., uploads.SubmitResult], staff: User, django_capture_on_commit_callbacks: Any
) -> None:
    submit(upload("handbook.md", HANDBOOK))
    run_worker()
    doc = Document.objects.get()
    with django_capture_on_commit_callbacks(execute=True):
        job = jobs.reingest_document(doc, staff)
    run_worker()
    f = job.files.get()
    assert (f.state, f.chunks) == (IngestJobFile.State.INDEXED, doc.chunk_count)


def test_a_stale_running_job_is_queued_again_with_the_retry_in_its_history(
    submit: Callable[..., uploads.SubmitResult],
) -> None:
    result = submit(upload("handbook.md", HANDBOOK))
    job = result.job
    assert job is not None
    IngestJob.objects.filter(pk=job.pk).update(state=IngestJob.State.RUNNING, attempts=1,
                                               heartbeat_at="2000-01-01T00:00:00Z")
    assert recovery.recover_stale_jobs() == [job.pk]
    run_worker()
    job.refresh_from_db()
    assert job.state == IngestJob.State.SUCCEEDED and job.attempts == 2
    assert {"event": "worker died; retrying", "attempt": 2}.items() <= job.history[-3].items()


def test_the_status_json_is_for_staff_only(submit: Callable[..., uploads.SubmitResult], staff: User) -> None:
    result = submit(upload("handbook.md", HANDBOOK), upload("broken.pdf", b"%PDF-1.4 junk"))
    run_worker()
    url = f"/status/{result.job.pk}"
    client = Client()
    assert client.get(url).status_code == 401
    User.objects.create_user("bob", password="pw")
    client.login(username="bob", password="pw")
    assert client.get(url).status_code == 403
    client.login(username="ada", password="pw")
    body = json.loads(client.get(url).content)
    assert body["state"] == "partially_failed" and body["progress"] == {"done": 2, "total": 2}
    assert set(body) >= {"stage", "eta_seconds", "attempts", "started_at", "finished_at", "history", "files"}
    broken = next(f for f in body["files"] if f["filename"] == "broken.pdf")
    assert broken["state"] == "failed" and broken["error_type"] and "traceback" in broken
    missing = client.get("/status/999999")
    assert missing.status_code == 404 and "error" in json.loads(missing.content)


def test_a_job_whose_task_was_never_queued_is_queued_by_the_recovery_and_runs(staff: User) -> None:
    """The process that created it stopped between its commit and queueing its task (the on_commit hook)."""
    result = uploads.submit_uploads([upload("handbook.md", HANDBOOK)], staff)  # its on_commit hook never runs
    job = result.job
    assert job is not None and job.task_id == ""
    assert recovery.recover_stale_jobs() == []  # just created: its creator may be about to queue it
    IngestJob.objects.filter(pk=job.pk).update(created_at=timezone.now() - timedelta(minutes=5))
    assert recovery.recover_stale_jobs() == [job.pk]
    assert recovery.recover_stale_jobs() == []  # it has its task now
    run_worker()
    job.refresh_from_db()
    assert job.state == IngestJob.State.SUCCEEDED and job.task_id and job.attempts == 1

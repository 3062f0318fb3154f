"""Cancel ends every file of a job in its documented state, at each stage; Retry re-queues exactly the files not done.

The engine here has the hashing embedder, so a file's chunks are embedded in many small steps in
no time; a cancel "during" a stage is made by the embedder or the store calling the real
`cancel_job` at that moment, as a user's click would land there. Parsing runs in a real child
process; the cancel during it lands as the worker looks up from waiting for it.
"""

from __future__ import annotations

import io
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client, override_settings
from django.urls import reverse
from django_tasks_db.management.commands.db_worker import Worker

from console.engine import set_engine
from console.ingest import jobs, recovery, uploads, worker
from console.models import Document, IngestJob
from ragcore.engine import Engine
from ragcore.errors import StoreUnavailable
from tests.support import HashingEmbedder, make_engine

pytestmark = pytest.mark.django_db

WORDS = "The zebra key rotates every ninety days and the platform team keeps the spare in the vault."
LONG = ("# Handbook\n\n" + "\n\n".join(f"Paragraph {i}. {WORDS}" for i in range(12))).encode()
SHORT = b"# Deploy\n\nRollbacks use the rollback pipeline with the previous release tag.\n"
NOTES = b"Meeting notes: the zebra migration finishes on Friday.\n"


class SteppingEmbedder(HashingEmbedder):
    """The hashing embedder, calling `hook` as its `at`-th embed call starts (the model is busy then)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.at = 0
        self.hook: Callable[[], object] = lambda: None

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        if self.calls == self.at:
            self.hook()
        return super().embed(texts)


@pytest.fixture
def embedder() -> SteppingEmbedder:
    return SteppingEmbedder()


@pytest.fixture
def engine(tmp_path: Path, embedder: SteppingEmbedder) -> Iterator[Engine]:
    # Two chunks per model call and small chunks: a dozen embedding steps for LONG.
    engine = make_engine(tmp_path / "data", embedder=embedder, embedding_batch_size=1, chunk_tokens=40,
                         chunk_overlap_tokens=0)
    with override_settings(RAG_DATA_DIR=tmp_path / "data", INGEST_RETRY_BACKOFF_SECONDS=0):
        set_engine(engine)
        yield engine
    set_engine(None)


@pytest.fixture
def staff() -> User:
    return User.objects.create_user("ada", password="pw", is_staff=True)


@pytest.fixture
def submit(engine: Engine, staff: User, django_capture_on_commit_callbacks: Any) -> Callable[..., IngestJob]:
    def submit(*files: tuple[str, bytes]) -> IngestJob:
        with django_capture_on_commit_callbacks(execute=True):
            result = uploads.submit_uploads([SimpleUploadedFile(n, d) for n, d in files], staff)
        assert result.job is not None
        return result.job
    return submit


def run_worker() -> None:
    """Runs every ready task in this process, as `db_worker --batch` would."""
    with mock.patch("django_tasks_db.management.commands.db_worker.close_old_connections"):
        Worker(queue_names=["default"], interval=0, batch=True, backend_name="default", startup_delay=False,
               max_tasks=None, worker_id="test-worker", excluded_queue_names=[]).run()


def states(job: IngestJob) -> list[str]:
    return list(job.files.order_by("pk").values_list("state", flat=True))


def chunks_in_indexes(engine: Engine, doc: Document) -> tuple[int, int]:
    status = engine.document_status(doc.engine_id)
    return status.dense_chunks, status.sparse_chunks


def retry_and_run(job: IngestJob, django_capture_on_commit_callbacks: Any) -> IngestJob:
    with django_capture_on_commit_callbacks(execute=True):
        jobs.retry_job(job)
    run_worker()
    job.refresh_from_db()
    return job


def test_cancel_while_queued_ends_every_file_at_once(
    submit: Callable[..., IngestJob], engine: Engine, django_capture_on_commit_callbacks: Any
) -> None:
    job = submit(("handbook.md", LONG), ("deploy.md", SHORT))
    jobs.cancel_job(job)
    job.refresh_from_db()
    assert job.state == IngestJob.State.CANCELLED and job.is_finished
    assert states(job) == ["cancelled", "cancelled"]
    for doc in Document.objects.all():
        assert (doc.status, doc.error) == (Document.Status.FAILED, "ingest cancelled")
    run_worker()  # its task finds it finished and does nothing
    job.refresh_from_db()
    assert job.state == IngestJob.State.CANCELLED and states(job) == ["cancelled", "cancelled"]
    assert all(chunks_in_indexes(engine, d) == (0, 0) for d in Document.objects.all())
    job = retry_and_run(job, django_capture_on_commit_callbacks)
    assert job.state == IngestJob.State.SUCCEEDED and states(job) == ["indexed", "indexed"]


def test_cancel_while_embedding_stops_the_file_before_it_reaches_the_indexes(
    submit: Callable[..., IngestJob], engine: Engine, embedder: SteppingEmbedder,
    django_capture_on_commit_callbacks: Any,
) -> None:
    job = submit(("handbook.md", LONG), ("deploy.md", SHORT))
    embedder.at, embedder.hook = 3, lambda: jobs.cancel_job(job)  # mid-file: two steps done, more to come
    run_worker()
    job.refresh_from_db()
    assert job.state == IngestJob.State.CANCELLED
    handbook, deploy = job.files.order_by("pk")
    assert (handbook.state, deploy.state) == ("cancelled", "cancelled")
    assert "cancelled while embedding" in handbook.error_message
    assert 0 < handbook.chunks_embedded < handbook.chunks_total  # it was stopped part-way, and said how far it got
    doc = handbook.document
    assert doc is not None and (doc.status, doc.error) == (Document.Status.FAILED, "ingest cancelled")
    assert chunks_in_indexes(engine, doc) == (0, 0)
    embedder.at = 0
    job = retry_and_run(job, django_capture_on_commit_callbacks)
    assert job.state == IngestJob.State.SUCCEEDED and states(job) == ["indexed", "indexed"]
    doc.refresh_from_db()
    assert chunks_in_indexes(engine, doc) == (doc.chunk_count, doc.chunk_count) and doc.chunk_count > 6


def test_cancel_while_writing_lets_the_write_finish_and_cancels_the_rest(
    submit: Callable[..., IngestJob], engine: Engine, monkeypatch: pytest.MonkeyPatch,
) -> None:
    job = submit(("handbook.md", LONG), ("deploy.md", SHORT))
    store = engine.store
    real = store.write_documents

    def cancel_then_write(*args: Any, **kwargs: Any) -> Any:
        jobs.cancel_job(job)  # the write has begun: it cannot be taken back half-way
        return real(*args, **kwargs)

    monkeypatch.setattr(store, "write_documents", cancel_then_write)
    run_worker()
    job.refresh_from_db()
    assert job.state == IngestJob.State.CANCELLED
    assert states(job) == ["indexed", "cancelled"]
    handbook = Document.objects.get(original_filename="handbook.md")
    assert handbook.status == Document.Status.INDEXED
    assert chunks_in_indexes(engine, handbook) == (handbook.chunk_count, handbook.chunk_count)
    deploy = Document.objects.get(original_filename="deploy.md")
    assert deploy.status == Document.Status.FAILED and chunks_in_indexes(engine, deploy) == (0, 0)


def test_cancel_during_a_later_file_keeps_the_files_already_done(
    submit: Callable[..., IngestJob], engine: Engine, embedder: SteppingEmbedder,
) -> None:
    job = submit(("deploy.md", SHORT), ("notes.txt", NOTES), ("handbook.md", LONG))
    # deploy.md is one model call; the cancel lands as notes.txt's first one starts.
    embedder.at, embedder.hook = 2, lambda: jobs.cancel_job(job)
    run_worker()
    job.refresh_from_db()
    assert job.state == IngestJob.State.CANCELLED and states(job) == ["indexed", "cancelled", "cancelled"]
    assert Document.objects.get(original_filename="deploy.md").status == Document.Status.INDEXED


def docx_that_parses_slowly(paragraphs: int) -> bytes:
    """A small, valid .docx whose one document.xml holds many paragraphs: slow for the Word loader to read."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", (
            '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            '<Default Extension="xml" ContentType="application/xml"/><Override PartName="/word/document.xml" '
            'ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>'))
        archive.writestr("_rels/.rels", (
            '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" '
            'Target="word/document.xml"/></Relationships>'))
        body = "<w:p><w:r><w:t>The zebra key rotates.</w:t></w:r></w:p>" * paragraphs
        archive.writestr("word/document.xml", (
            '<?xml version="1.0" encoding="UTF-8"?><w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
            f"<w:body>{body}</w:body></w:document>"))
    return buf.getvalue()


BOMB = docx_that_parses_slowly(80_000)  # 13 KB that inflate to 4.4 MB of XML: over 10 s to parse


@pytest.mark.slow
def test_cancel_while_parsing_kills_the_parser_at_once(
    submit: Callable[..., IngestJob], engine: Engine, monkeypatch: pytest.MonkeyPatch,
) -> None:
    job = submit(("bomb.docx", BOMB), ("deploy.md", SHORT))
    real = worker._JobRun._should_stop
    cancelled_at: list[float] = []

    def cancel_on_the_first_look(self: Any) -> bool:
        # The worker asks while it waits for the parser (it has had no answer for half a second).
        if not cancelled_at:
            cancelled_at.append(time.monotonic())
            jobs.cancel_job(job)
        return bool(real(self))

    monkeypatch.setattr(worker._JobRun, "_should_stop", cancel_on_the_first_look)
    run_worker()
    after_cancel = time.monotonic() - cancelled_at[0]
    job.refresh_from_db()
    assert job.state == IngestJob.State.CANCELLED
    bomb, deploy = job.files.order_by("pk")
    assert (bomb.state, deploy.state) == ("cancelled", "cancelled")
    assert "cancelled while parsing" in bomb.error_message
    assert after_cancel < 5  # the parser was killed, not waited for (parsing BOMB takes over 10 s)
    assert Document.objects.get(original_filename="bomb.docx").status == Document.Status.FAILED


@pytest.mark.slow
@override_settings(INGEST_PARSE_MAX_INFLATED_MB=1)
def test_a_zip_bomb_fails_alone_with_a_clear_error(submit: Callable[..., IngestJob], engine: Engine) -> None:
    job = submit(("bomb.docx", BOMB), ("deploy.md", SHORT))
    run_worker()
    job.refresh_from_db()
    assert job.state == IngestJob.State.PARTIALLY_FAILED
    bomb, deploy = job.files.order_by("pk")
    assert bomb.state == "failed" and bomb.attempts == 1 and bomb.error_type == "InflatedTooLarge"
    assert bomb.error_message == "bomb.docx: inflates to 4 MB, over the 1 MB limit (a zip bomb?) (INGEST_PARSE_MAX_INFLATED_MB)"
    assert deploy.state == "indexed"


@pytest.mark.slow
@override_settings(INGEST_PARSE_TIMEOUT_SECONDS=1)
def test_a_file_that_parses_too_long_fails_alone_and_the_next_one_is_not_held_up(
    submit: Callable[..., IngestJob], engine: Engine,
) -> None:
    job = submit(("bomb.docx", BOMB), ("deploy.md", SHORT))
    run_worker()
    job.refresh_from_db()
    bomb, deploy = job.files.order_by("pk")
    assert bomb.error_type == "ParseTimeout" and "longer than 1 s" in bomb.error_message
    assert bomb.seconds < 30 and deploy.state == "indexed"  # not the minute its parse would take


def test_a_worker_that_died_while_cancelling_has_its_cancel_finished(submit: Callable[..., IngestJob]) -> None:
    job = submit(("handbook.md", LONG))
    f = job.files.get()
    f.start()
    IngestJob.objects.filter(pk=job.pk).update(state=IngestJob.State.CANCELLING, heartbeat_at="2000-01-01T00:00:00Z")
    assert recovery.recover_stale_jobs() == [job.pk]
    job.refresh_from_db()
    f.refresh_from_db()
    assert job.state == IngestJob.State.CANCELLED and f.state == "cancelled" and "worker had died" in f.error_message


def test_the_job_page_cancels_and_retry_shows_exactly_the_not_done_files_queued(
    submit: Callable[..., IngestJob], staff: User, embedder: SteppingEmbedder, django_capture_on_commit_callbacks: Any,
) -> None:
    client = Client()
    client.force_login(staff)
    job = submit(("deploy.md", SHORT), ("notes.txt", NOTES), ("broken.pdf", b"%PDF-1.4 junk"))
    embedder.at, embedder.hook = 2, lambda: client.post(reverse("console:job-cancel", args=[job.pk]))
    run_worker()
    job.refresh_from_db()
    assert job.state == IngestJob.State.CANCELLED and states(job) == ["indexed", "cancelled", "cancelled"]
    page = client.get(reverse("console:job", args=[job.pk])).content.decode()
    assert "Retry failed files" in page and "Cancelled" in page
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("console:job-retry", args=[job.pk]), follow=True)
    body = response.content.decode()
    assert "2 failed or cancelled files will be retried" in body
    assert states(job) == ["indexed", "queued", "queued"]
    assert body.count('data-file-field="state">Queued<') == 2 and body.count('data-file-field="state">Indexed<') == 1
    embedder.at = 0
    run_worker()
    job.refresh_from_db()
    assert job.state == IngestJob.State.PARTIALLY_FAILED and states(job) == ["indexed", "indexed", "failed"]


def test_the_running_file_shows_its_chunks_embedded_of_total_with_an_eta(
    submit: Callable[..., IngestJob], staff: User, embedder: SteppingEmbedder,
) -> None:
    client = Client()
    client.force_login(staff)
    job = submit(("handbook.md", LONG), ("deploy.md", SHORT))
    seen: dict[str, Any] = {}

    def look() -> None:  # as the third embedding step starts: the first one's count is written (the next is throttled)
        seen["status"] = client.get(f"/status/{job.pk}").json()
        seen["page"] = client.get(reverse("console:job", args=[job.pk])).content.decode()

    embedder.at, embedder.hook = 3, look
    run_worker()
    status = seen["status"]
    current = status["current"]
    assert current["filename"] == "handbook.md" and status["stage"] == "embedding"
    assert 0 < current["chunks_embedded"] < current["chunks_total"]
    assert current["eta_seconds"] is not None and status["eta_seconds"] >= current["eta_seconds"] >= 0
    running = next(f for f in status["files"] if f["filename"] == "handbook.md")
    assert (running["state"], running["chunks_total"]) == ("running", current["chunks_total"])
    assert f"handbook.md: {current['chunks_embedded']} of {current['chunks_total']} chunks embedded" in seen["page"]
    job.refresh_from_db()
    assert job.state == IngestJob.State.SUCCEEDED


def test_a_store_failing_on_a_full_disk_is_named_as_a_full_disk(
    submit: Callable[..., IngestJob], engine: Engine, monkeypatch: pytest.MonkeyPatch,
) -> None:
    job = submit(("deploy.md", SHORT))

    def store_on_full_disk(*args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailable("Failed to apply logs to the metadata segment")

    monkeypatch.setattr(engine, "ingest_parsed", store_on_full_disk)
    with override_settings(INGEST_MIN_FREE_MB=10**12, INGEST_MAX_ATTEMPTS=1):  # more than any disk has
        run_worker()
    f = job.files.get()
    assert f.state == "failed" and f.error_type == "DiskFull"
    assert "is full" in f.error_message and "Failed to apply logs to the metadata segment" in f.error_message


@override_settings(INGEST_PARSE_MAX_MEMORY_MB=4)
def test_a_file_whose_parser_needs_too_much_memory_fails_alone(submit: Callable[..., IngestJob], engine: Engine) -> None:
    job = submit(("big.docx", docx_that_parses_slowly(16_000)), ("deploy.md", SHORT))  # ~1 MB of XML: far over 4 MB to parse
    run_worker()
    big, deploy = job.files.order_by("pk")
    assert big.state == "failed" and big.error_type == "ParseMemoryExceeded" and big.attempts == 1
    assert big.error_message.startswith("big.docx: parsing needed more than 4 MB of memory")
    assert deploy.state == "indexed"

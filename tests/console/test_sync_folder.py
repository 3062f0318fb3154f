"""A folder source kept in sync: each edit at the origin (add, change, delete, rename) shows in the next sync's counts."""

from __future__ import annotations

import os
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from django_tasks_db.management.commands.db_worker import Worker

from console.ingest import storage, uploads
from console.models import Document, Source, SyncItem, SyncRun
from console.syncing import schedule, service
from console.syncing.runs import run_sync
from ragcore import Engine
from tests.console.conftest import CountingEmbedder, sync

pytestmark = pytest.mark.django_db


def run_worker() -> None:
    """Runs every ready task in this process, the way `db_worker --batch` would (no signal handlers)."""
    # The worker closes connections that are not in autocommit, which the test transaction never is.
    with mock.patch("django_tasks_db.management.commands.db_worker.close_old_connections"):
        Worker(queue_names=["default"], interval=0, batch=True, backend_name="default", startup_delay=False,
               max_tasks=None, worker_id="test-worker", excluded_queue_names=[]).run()


def counts(run: SyncRun) -> dict[str, int]:
    return run.counts()


def chunk_total(engine: Engine) -> tuple[int, int]:
    return engine.store.count(), len(engine.bm25)


def test_the_first_sync_adds_every_document_searchable_with_its_source(source: Source, engine: Engine) -> None:
    run = sync(source)
    assert run.state == SyncRun.State.SUCCEEDED
    assert counts(run) == {"added": 3, "changed": 0, "removed": 0, "unchanged": 0, "failed": 0}
    docs = Document.objects.filter(source=source)
    assert sorted(d.original_filename for d in docs) == ["deploy.md", "notes.txt", "ops/rotation.md"]
    assert all(d.status == Document.Status.INDEXED and d.synced_at and d.origin_url == "" for d in docs)
    hits = engine.retrieve("how often is the API key rotated", mode="bm25").chunks
    assert hits and hits[0].chunk.document_id == docs.get(original_filename="ops/rotation.md").engine_id
    source.refresh_from_db()
    assert source.last_run == run and source.last_synced_at == run.finished_at


def test_each_edit_at_the_origin_shows_in_the_next_syncs_counts(
    source: Source, folder: Path, engine: Engine, embedder: CountingEmbedder
) -> None:
    sync(source)
    before = chunk_total(engine)

    embedder.embedded = 0
    again = sync(source)
    assert counts(again) == {"added": 0, "changed": 0, "removed": 0, "unchanged": 3, "failed": 0}
    assert embedder.embedded == 0 and again.embedded_chunks == 0 and chunk_total(engine) == before

    (folder / "deploy.md").write_text("# Deploys\n\nDeploys go out on Thursdays after the change review.\n")
    (folder / "faq.md").write_text("# FAQ\n\nThe office opens at nine.\n")
    (folder / "notes.txt").unlink()
    (folder / "ops" / "rotation.md").rename(folder / "ops" / "keys.md")
    edited = sync(source)
    # A rename is the old path removed and the new one added.
    assert counts(edited) == {"added": 2, "changed": 1, "removed": 2, "unchanged": 0, "failed": 0}
    names = sorted(Document.objects.filter(source=source).values_list("original_filename", flat=True))
    assert names == ["deploy.md", "faq.md", "ops/keys.md"]
    assert not any("zebra" in c.chunk.text for c in engine.retrieve("zebra migration", mode="bm25").chunks)
    thursday = engine.retrieve("which day do deploys go out", mode="bm25").chunks[0].chunk
    assert "Thursdays" in thursday.text
    assert not any("Tuesdays" in c.chunk.text for c in engine.retrieve("Tuesdays deploys", mode="bm25").chunks)
    # Nothing left behind: one set of chunks per current document, in both indexes.
    ids = {d.engine_id for d in Document.objects.filter(source=source)}
    assert set(engine.bm25.documents()) == ids
    assert engine.store.count() == len(engine.bm25)


def test_a_touch_without_a_change_is_unchanged(source: Source, folder: Path, embedder: CountingEmbedder) -> None:
    sync(source)
    path = folder / "deploy.md"
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10_000_000_000))
    embedder.embedded = 0
    assert counts(sync(source))["unchanged"] == 3 and embedder.embedded == 0


def test_a_bad_file_fails_alone_named_with_its_error_and_the_others_sync(source: Source, folder: Path) -> None:
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4 not really a pdf")
    (folder / "empty.md").write_bytes(b"")
    run = sync(source)
    assert run.state == SyncRun.State.PARTIALLY_FAILED
    assert counts(run) == {"added": 3, "changed": 0, "removed": 0, "unchanged": 0, "failed": 2}
    failures = {f.key: f for f in run.failures.all()}
    assert set(failures) == {"broken.pdf", "empty.md"}
    assert failures["broken.pdf"].message.startswith("broken.pdf") and failures["empty.md"].message == "empty.md: empty file"
    source.refresh_from_db()
    assert source.last_failed
    # Still broken next time: tried again and reported again, never counted as unchanged.
    assert counts(sync(source))["failed"] == 2


def test_a_missing_folder_fails_the_sync_and_removes_nothing(source: Source, folder: Path, engine: Engine) -> None:
    sync(source)
    before = chunk_total(engine)
    folder.rename(folder.with_name("moved"))
    run = sync(source)
    assert run.state == SyncRun.State.FAILED and "is not a folder on this server" in run.error
    assert Document.objects.filter(source=source).count() == 3 and chunk_total(engine) == before


def test_the_same_content_as_an_upload_is_a_document_of_the_source_and_the_upload_stays(
    source: Source, folder: Path, engine: Engine, django_capture_on_commit_callbacks: Any
) -> None:
    # An upload of the same bytes as a synced file: content is uploaded once, but a synced document
    # follows its origin (changes, removal, its link), so the sync neither crashes nor takes the upload over.
    user = User.objects.create_user("ada", is_staff=True)
    data = (folder / "deploy.md").read_bytes()
    result = uploads.submit_uploads([SimpleUploadedFile("deploy.md", data)], user, enqueue=False)
    upload = result.accepted[0].document
    assert upload is not None
    run = sync(source)
    assert counts(run)["added"] == 3 and run.state == SyncRun.State.SUCCEEDED
    synced = Document.objects.get(source=source, original_filename="deploy.md")
    assert synced.pk != upload.pk and synced.checksum == upload.checksum
    (folder / "deploy.md").unlink()
    assert counts(sync(source))["removed"] == 1
    upload.refresh_from_db()  # the upload, and its original, are untouched
    assert upload.source is None and storage.has_original(upload.checksum)


def test_two_syncs_of_one_source_never_run_at_once(source: Source) -> None:
    first = service.request_sync(source, enqueue=False)
    with pytest.raises(service.SyncError, match="already syncing"):
        service.request_sync(source, enqueue=False)
    run_sync(first.pk)
    assert sync(source).state == SyncRun.State.SUCCEEDED  # once it finished, the next one may run
    # A stale task of a run another worker took over does nothing.
    run = service.request_sync(source, enqueue=False)
    SyncRun.objects.filter(pk=run.pk).update(task_id="new-owner")
    assert run_sync(run.pk, task_id="old-task")["state"] == "skipped"


def test_deleting_a_source_takes_its_documents(source: Source, engine: Engine,
                                               django_capture_on_commit_callbacks: Any) -> None:
    sync(source)
    user = User.objects.create_user("ada", is_staff=True)
    with django_capture_on_commit_callbacks(execute=True):
        service.delete_source(source, user)
    assert not Source.objects.exists() and not SyncItem.objects.exists()
    assert set(Document.objects.values_list("status", flat=True)) == {Document.Status.DELETING}
    run_worker()
    assert not Document.objects.exists()
    assert chunk_total(engine) == (0, 0)


def test_a_scheduled_source_is_due_and_its_next_sync_follows_the_interval(source: Source) -> None:
    source.every_minutes = 30
    service.save_source(source)
    source.refresh_from_db()
    assert source.next_sync_at is not None
    queued = schedule.enqueue_due_sources(now=source.next_sync_at)
    assert len(queued) == 1 and schedule.enqueue_due_sources(now=source.next_sync_at) == []  # one at a time
    run_sync(queued[0])
    source.refresh_from_db()
    run = SyncRun.objects.get(pk=queued[0])
    assert run.trigger == SyncRun.Trigger.SCHEDULE and run.state == SyncRun.State.SUCCEEDED
    assert source.next_sync_at is not None and run.finished_at is not None
    assert (source.next_sync_at - run.finished_at).total_seconds() == 30 * 60
    source.pause()
    assert source.next_sync_at is None and schedule.due_sources(now=run.finished_at + timedelta(days=1)) == []
    source.resume()
    assert source.next_sync_at is not None and (source.next_sync_at - run.finished_at).total_seconds() == 30 * 60


def test_a_source_whose_sync_finished_since_the_scheduler_looked_is_not_synced_twice(source: Source) -> None:
    source.every_minutes = 30
    service.save_source(source)
    now = Source.objects.get(pk=source.pk).next_sync_at
    seen_due = schedule.due_sources(now)  # the scheduler reads the source as due...
    assert seen_due == [source]
    finished = sync(source)  # ...and a run finishes (rescheduling it) before the scheduler takes the row's lock
    with mock.patch.object(schedule, "due_sources", return_value=seen_due):
        assert schedule.enqueue_due_sources(now=now) == []
    assert list(SyncRun.objects.all()) == [finished]
    later = Source.objects.get(pk=source.pk).next_sync_at
    assert now is not None and later is not None and later > now
    assert schedule.enqueue_due_sources(now=later) != []  # due again on its interval


def test_a_sync_whose_worker_died_is_queued_again_and_resumed_without_doubling(
    source: Source, folder: Path, engine: Engine
) -> None:
    sync(source)
    (folder / "faq.md").write_text("# FAQ\n\nThe office opens at nine.\n")
    (folder / "deploy.md").write_text("# Deploys\n\nOn Thursdays now.\n")
    run = service.request_sync(source, enqueue=False)
    # As a worker killed mid-item leaves it: running, one item begun (document row, pending), nothing counted.
    run.start(str(uuid.uuid4()))
    faq = Document.objects.create(checksum="0" * 64, original_filename="faq.md", status=Document.Status.INDEXING,
                                  source=source)
    SyncItem(source=source, key="faq.md").begin(run, "added", faq)
    SyncRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    assert schedule.recover_stale_runs(stale_seconds=60) == [run.pk]
    run.refresh_from_db()
    assert run.state == SyncRun.State.QUEUED
    run_sync(run.pk, task_id=run.task_id)
    run.refresh_from_db()
    assert run.state == SyncRun.State.SUCCEEDED and run.attempts == 2
    assert counts(run) == {"added": 1, "changed": 1, "removed": 0, "unchanged": 2, "failed": 0}
    assert Document.objects.filter(source=source, original_filename="faq.md").get().pk == faq.pk  # not a second one
    assert set(engine.bm25.documents()) == {d.engine_id for d in Document.objects.filter(source=source)}
    assert engine.store.count() == len(engine.bm25)


def test_a_git_repository_source_syncs_each_commit_incrementally(tmp_path: Path, engine: Engine) -> None:
    from tests.fakes.git_http import WorkRepo

    repo = WorkRepo(tmp_path / "work", tmp_path / "served" / "docs.git")
    repo.commit({"README.md": "# Docs\n\nThe team's docs.\n", "guide/install.md": "# Install\n\nRun make install.\n"},
                "first")
    source = service.save_source(Source(name="docs", kind="git", config={"url": f"file://{repo.served}"}))
    assert counts(sync(source)) == {"added": 2, "changed": 0, "removed": 0, "unchanged": 0, "failed": 0}
    repo.commit({"guide/install.md": "# Install\n\nRun make install, then make run.\n", "README.md": None,
                 "faq.md": "# FAQ\n\nAsk the bot.\n"}, "second")
    assert counts(sync(source)) == {"added": 1, "changed": 1, "removed": 1, "unchanged": 0, "failed": 0}
    assert counts(sync(source)) == {"added": 0, "changed": 0, "removed": 0, "unchanged": 2, "failed": 0}
    assert sorted(Document.objects.filter(source=source).values_list("original_filename", flat=True)) == [
        "faq.md", "guide/install.md"]


def test_the_database_itself_refuses_a_second_active_sync_of_a_source(source: Source) -> None:
    # What makes "never two at once" hold across processes and hosts: a unique constraint, not a check in Python.
    from django.db import IntegrityError, transaction

    SyncRun.objects.create(source=source, state=SyncRun.State.RUNNING)
    with pytest.raises(IntegrityError), transaction.atomic():
        SyncRun.objects.create(source=source, state=SyncRun.State.QUEUED)
    SyncRun.objects.create(source=source, state=SyncRun.State.SUCCEEDED)  # finished ones are history


def test_a_file_over_the_upload_size_limit_fails_alone_named_with_the_limit(
    source: Source, folder: Path, settings: Any
) -> None:
    settings.RAG_MAX_FILE_MB = 1
    (folder / "huge.txt").write_text("word " * 300_000)  # 1.5 MB
    run = sync(source)
    assert counts(run) == {"added": 3, "changed": 0, "removed": 0, "unchanged": 0, "failed": 1}
    assert run.failures.get().message == "huge.txt: 1.4 MB is over the 1 MB limit (RAG_MAX_FILE_MB)"


def test_a_run_whose_task_was_never_queued_is_queued_by_the_recovery_and_the_schedule_goes_on(
    source: Source, engine: Engine
) -> None:
    """The process that requested it stopped between its commit and queueing its task (the on_commit hook):
    the run would hold the source's one active slot forever, and no scheduled sync could follow."""
    run = service.request_sync(source, trigger=SyncRun.Trigger.SCHEDULE)  # its on_commit hook never runs
    assert run.task_id == ""
    assert schedule.recover_stale_runs(stale_seconds=60) == []  # just requested: it may be queued any moment
    SyncRun.objects.filter(pk=run.pk).update(created_at=timezone.now() - timedelta(minutes=5))
    assert schedule.recover_stale_runs(stale_seconds=60) == [run.pk]
    run.refresh_from_db()
    assert run.task_id and run.state == SyncRun.State.QUEUED and run.attempts == 0
    assert schedule.recover_stale_runs(stale_seconds=60) == []
    run_sync(run.pk, task_id=run.task_id)
    run.refresh_from_db()
    assert run.state == SyncRun.State.SUCCEEDED

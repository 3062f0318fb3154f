"""Runs one ingest job, file by file, for the task that `manage.py db_worker` picks up.

Durability rests on three things: every file's outcome is committed as soon as it is known, a
job's heartbeat says its worker is alive, and the engine's ingest is idempotent (chunk ids are
stable and a document's chunks are replaced, never appended). A job whose heartbeat went stale
is queued again (console.ingest.recovery) and simply carries on with the files that have no outcome yet.
"""

from __future__ import annotations

import threading
import time
import traceback as tb
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import structlog
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from console.engine import get_engine
from console.ingest import storage
from console.models import Document, IngestJob, IngestJobFile
from console.ops.logs import bound_context
from console.ops.metrics import INGEST_JOBS
from ragcore.errors import RagError
from ragcore.ingest import IngestRequest, IngestResult
from ragcore.metrics import PIPELINE_ERRORS

log = structlog.get_logger(__name__, component="ingest_job")

# Progress and heartbeat go to the database at most this often, so a fast job is not all writes.
PROGRESS_WRITE_SECONDS = 0.5
_Result = dict[str, Any]
# Queues the job's task again after `delay_seconds` (console.tasks.enqueue_job); passed in by the task,
# so the worker never imports the task that imports it.
Requeue = Callable[..., str]


def process_job(job_id: int, *, requeue: Requeue, task_id: str = "") -> _Result:
    """Processes every file of the job that has no outcome yet; returns a small summary."""
    # Bound to the context, so the engine's events during the job carry the job id too.
    with bound_context(job_id=job_id, task_id=task_id):
        try:
            return _JobRun(job_id, task_id, requeue, log).run()
        except Exception as exc:  # the job record, not the task queue, is where failures are reported
            log.exception("job.crashed", error=str(exc))
            PIPELINE_ERRORS.labels("ingest_job").inc()
            INGEST_JOBS.labels("crashed").inc()
            _finish_after_crash(job_id, exc)
            return {"job_id": job_id, "state": IngestJob.State.FAILED, "error": f"{type(exc).__name__}: {exc}"}


class _JobRun:
    def __init__(self, job_id: int, task_id: str, requeue: Requeue, bound: Any) -> None:
        self.job_id = job_id
        self.task_id = task_id
        self.requeue = requeue
        self.log = bound
        self.last_write = 0.0
        self.stage = ""

    def run(self) -> _Result:
        job = self._start()
        if job is None:
            return {"job_id": self.job_id, "state": "skipped"}
        retry_in: float | None = None
        with _heartbeat(self.job_id):
            for f in self._pending_files():
                if not self._still_ours():
                    self.log.info("job.stopped", reason="cancelled or taken over")
                    return {"job_id": self.job_id, "state": "stopped"}
                delay = self._process(f)
                if delay is not None:
                    retry_in = delay if retry_in is None else min(retry_in, delay)
        if retry_in is not None:
            return self._schedule_retry(retry_in)
        return self._finish()

    # -- start and finish ----------------------------------------------------------------------

    def _start(self) -> IngestJob | None:
        with transaction.atomic():
            job = IngestJob.objects.select_for_update().filter(pk=self.job_id).first()
            if job is None or job.is_finished:
                self.log.info("job.skipped", reason="missing" if job is None else job.state)
                return None
            if self.task_id and job.task_id and job.task_id != self.task_id:
                # A stale task (its job was re-queued after a crash): the newer task owns the job.
                self.log.info("job.skipped", reason="superseded task", owner=job.task_id)
                return None
            job.start()
        self.log.info("job.started", attempt=job.attempts, files=job.progress_total)
        return job

    def _pending_files(self) -> Iterator[IngestJobFile]:
        # A RUNNING file is one whose worker died mid-way: it runs again (the engine is idempotent).
        waiting = (IngestJobFile.State.QUEUED, IngestJobFile.State.RUNNING)
        ids = list(IngestJobFile.objects.filter(job_id=self.job_id, state__in=waiting).order_by("pk").values_list("pk", flat=True))
        for pk in ids:
            f = IngestJobFile.objects.select_related("document").filter(pk=pk, state__in=waiting).first()
            if f is not None:
                yield f

    def _still_ours(self) -> bool:
        job = IngestJob.objects.filter(pk=self.job_id).values("state", "task_id").first()
        if job is None or job["state"] != IngestJob.State.RUNNING:
            return False
        return not (self.task_id and job["task_id"] and job["task_id"] != self.task_id)

    def _schedule_retry(self, delay: float) -> _Result:
        with transaction.atomic():
            job = IngestJob.objects.select_for_update().get(pk=self.job_id)
            if job.state != IngestJob.State.RUNNING:
                return {"job_id": self.job_id, "state": job.state}
            job.wait_to_retry(delay)
            self.requeue(self.job_id, delay_seconds=delay)
        self.log.info("job.retry_scheduled", in_seconds=delay)
        return {"job_id": self.job_id, "state": "retrying"}

    def _finish(self) -> _Result:
        files = IngestJobFile.objects.filter(job_id=self.job_id)
        failed = files.filter(state=IngestJobFile.State.FAILED).count()
        refused = files.filter(state=IngestJobFile.State.REFUSED).count()
        total = files.count() - refused
        with transaction.atomic():
            job = IngestJob.objects.select_for_update().get(pk=self.job_id)
            if job.state != IngestJob.State.RUNNING:  # cancelled while the last file ran
                return {"job_id": self.job_id, "state": job.state}
            state = job.finish(files=total, failed=failed, refused=refused)
        INGEST_JOBS.labels(state).inc()
        self.log.info("job.finished", state=state, files=total, failed=failed)
        return {"job_id": self.job_id, "state": state, "files": total, "failed": failed}

    # -- one file ----------------------------------------------------------------------------------

    def _process(self, f: IngestJobFile) -> float | None:
        """Runs one file and commits its outcome; returns a backoff delay when it should be retried."""
        doc = f.document
        if doc is None:
            self._record(f, IngestJobFile.State.CANCELLED, error=("DocumentGone", "the document was deleted before it was indexed", ""))
            return None
        if f.state == IngestJobFile.State.RUNNING and f.attempts >= settings.INGEST_MAX_ATTEMPTS:
            # It was mid-way each time a worker died: stop feeding the poison pill to workers.
            message = f"{f.filename}: the worker died while processing this file {f.attempts} times"
            self._record(f, IngestJobFile.State.FAILED, error=("WorkerDied", message, ""))
            doc.mark_failed(message)
            return None
        if f.action != IngestJobFile.Action.DELETE and doc.status == Document.Status.SUPERSEDED:
            self._record(f, IngestJobFile.State.CANCELLED, error=("Superseded", f"{f.filename}: a newer version was indexed first", ""))
            return None
        f.start()
        started = time.perf_counter()
        if f.action == IngestJobFile.Action.DELETE:
            self._delete(f, doc, started)
            return None
        doc.mark_indexing()
        self._progress("parsing", force=True)
        try:
            result = self._ingest(f, doc)
        except Exception as exc:  # the engine reports bad files as results; this is anything else
            PIPELINE_ERRORS.labels("ingest_job").inc()
            transient = not isinstance(exc, RagError) or exc.transient
            return self._failed(f, doc, type(exc).__name__, f"{f.filename}: {exc}", tb.format_exc(), transient, started)
        if result.status == "failed":
            trace = f"{result.error_type}: {result.error}\n(reported by the engine, which caught the exception)"
            return self._failed(f, doc, result.error_type, result.error, trace, result.transient, started)
        self._indexed(f, doc, result, started)
        return None

    def _ingest(self, f: IngestJobFile, doc: Document) -> IngestResult:
        engine = get_engine()
        with storage.named_original(doc.checksum, doc.original_filename) as path:
            request = IngestRequest(path, document_id=doc.engine_id, title=doc.title, source=doc.original_filename)
            force = f.action == IngestJobFile.Action.REINDEX
            return engine.ingest_files([request], force=force, on_progress=self._on_progress)[0]

    def _on_progress(self, stage: str, done: int, total: int) -> None:
        if stage == "embedding":
            self._progress("embedding" if done < total else "writing")

    def _indexed(self, f: IngestJobFile, doc: Document, result: IngestResult, started: float) -> None:
        chunks = result.chunks
        if result.status == "unchanged":  # both indexes already hold it (e.g. written just before a crash)
            chunks = get_engine().document_status(doc.engine_id).sparse_chunks
        state = IngestJobFile.State.INDEXED if result.status == "indexed" else IngestJobFile.State.UNCHANGED
        self._supersede_older_versions(doc)
        doc.mark_indexed(chunks=chunks, title=result.title, kind=result.kind)
        self._record(f, state, chunks=chunks, seconds=time.perf_counter() - started)
        self.log.info("file.indexed", filename=f.filename, document_id=doc.pk, chunks=chunks, status=result.status)

    def _supersede_older_versions(self, doc: Document) -> None:
        """The new version is searchable: the older ones stop being (their rows stay, as history)."""
        older = (
            Document.objects.filter(original_filename=doc.original_filename, pk__lt=doc.pk)
            .exclude(status__in=(Document.Status.SUPERSEDED, Document.Status.DELETING))
        )
        for old in older:
            get_engine().delete_document(old.engine_id)
            old.mark_superseded()
            self.log.info("document.superseded", document_id=old.pk, by=doc.pk)

    def _failed(self, f: IngestJobFile, doc: Document, error_type: str, message: str, trace: str,
                transient: bool, started: float) -> float | None:
        retry = transient and f.attempts < settings.INGEST_MAX_ATTEMPTS
        state = IngestJobFile.State.QUEUED if retry else IngestJobFile.State.FAILED
        self._record(f, state, error=(error_type, message, trace), seconds=time.perf_counter() - started)
        if retry:
            doc.mark_queued(error=message)
        else:
            doc.mark_failed(message)
        self.log.warning("file.failed", filename=f.filename, error_type=error_type, error=message,
                         transient=transient, attempt=f.attempts, will_retry=retry)
        if not retry:
            return None
        return settings.INGEST_RETRY_BACKOFF_SECONDS * 2 ** (f.attempts - 1)

    def _delete(self, f: IngestJobFile, doc: Document, started: float) -> None:
        self._progress("deleting", force=True)
        removed = get_engine().delete_document(doc.engine_id)
        checksums = {doc.checksum}
        chain = [doc]
        while chain[-1].previous_id:  # older versions go with it; their chunks were removed when superseded
            older = Document.objects.filter(pk=chain[-1].previous_id).first()
            if older is None or older.status != Document.Status.SUPERSEDED:
                break
            get_engine().delete_document(older.engine_id)
            chain.append(older)
            checksums.add(older.checksum)
        f.document = None
        self._record(f, IngestJobFile.State.DELETED, chunks=removed, seconds=time.perf_counter() - started)
        with transaction.atomic():
            Document.objects.filter(pk__in=[d.pk for d in chain]).delete()
        for checksum in checksums:
            if not Document.objects.filter(checksum=checksum).exists():
                storage.remove_original(checksum)
        self.log.info("document.deleted", filename=f.filename, chunks=removed, versions=len(chain))

    # -- bookkeeping -----------------------------------------------------------------------------

    def _record(self, f: IngestJobFile, state: str, *, chunks: int = 0, seconds: float = 0.0,
                error: tuple[str, str, str] = ("", "", "")) -> None:
        f.finish(state, chunks=chunks, seconds=seconds, error=error)
        if state != IngestJobFile.State.QUEUED:
            done = IngestJobFile.objects.filter(job_id=self.job_id, state__in=IngestJobFile.OUTCOMES).count()
            IngestJob.objects.filter(pk=self.job_id).update(progress_done=done, heartbeat_at=timezone.now())

    def _progress(self, stage: str, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and stage == self.stage and now - self.last_write < PROGRESS_WRITE_SECONDS:
            return
        self.stage, self.last_write = stage, now
        IngestJob.objects.filter(pk=self.job_id, state=IngestJob.State.RUNNING).update(stage=stage, heartbeat_at=timezone.now())


def _finish_after_crash(job_id: int, exc: Exception) -> None:
    try:
        with transaction.atomic():
            job = IngestJob.objects.select_for_update().filter(pk=job_id).first()
            if job is None or job.is_finished:
                return
            job.crash(exc)
            for f in job.files.filter(state__in=(IngestJobFile.State.QUEUED, IngestJobFile.State.RUNNING)):
                f.crash(exc, "".join(tb.format_exception(exc)))
    except Exception:
        log.exception("job.record_failed", job_id=job_id)


# -- heartbeat -------------------------------------------------------------------------------------


@contextmanager
def _heartbeat(job_id: int) -> Iterator[None]:
    """Keeps the running job's heartbeat fresh from a thread of its own, even while one long file is parsed."""
    stop = threading.Event()
    interval = heartbeat_seconds()

    def beat() -> None:
        while not stop.wait(interval):
            try:
                IngestJob.objects.filter(pk=job_id, state=IngestJob.State.RUNNING).update(heartbeat_at=timezone.now())
            except Exception:
                log.warning("job.heartbeat_failed", job_id=job_id, exc_info=True)
        connection.close()  # this thread's own connection

    thread = threading.Thread(target=beat, name=f"heartbeat-{job_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def heartbeat_seconds() -> float:
    """A few beats fit in one stale period, so one slow write never makes a live job look dead."""
    return max(0.5, min(10.0, settings.INGEST_STALE_SECONDS / 4))

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
from contextlib import AbstractContextManager, contextmanager
from dataclasses import replace
from typing import Any

import structlog
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from console.engine import get_engine
from console.ingest import parsing, storage
from console.models import Document, IngestJob, IngestJobFile
from console.ops.logs import bound_context
from console.ops.metrics import INGEST_JOBS
from ragcore.errors import RagError
from ragcore.ingest import IngestResult, ParsedItem
from ragcore.metrics import PIPELINE_ERRORS
from ragcore.settings import MB

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
        self.last_embedded_write = 0.0
        self.stage = ""
        self.current: IngestJobFile | None = None  # the file the engine is embedding, for its progress

    def run(self) -> _Result:
        job = self._start()
        if job is None:
            return {"job_id": self.job_id, "state": "skipped"}
        retry_in: float | None = None
        with _heartbeat(self.job_id):
            for f in self._pending_files():
                if not self._still_ours():
                    return self._stop()
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
            if job.state == IngestJob.State.CANCELLING:  # its last worker died while stopping it
                job.cancel()
                self.log.info("job.skipped", reason="cancelled")
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

    def _stop(self) -> _Result:
        """The job is no longer this run's: cancelled (finish the cancel) or taken over by another task."""
        with transaction.atomic():
            job = IngestJob.objects.select_for_update().get(pk=self.job_id)
            if job.state == IngestJob.State.CANCELLING:
                job.cancel()
        INGEST_JOBS.labels(job.state).inc()
        self.log.info("job.stopped", state=job.state)
        return {"job_id": self.job_id, "state": job.state}

    def _schedule_retry(self, delay: float) -> _Result:
        with transaction.atomic():
            job = IngestJob.objects.select_for_update().get(pk=self.job_id)
            if job.state != IngestJob.State.RUNNING:
                return self._stop()
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
                return self._stop()
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
        except parsing.Stopped:
            self._stopped(f, doc, started)
            return None
        except parsing.ParseFailed as exc:  # corrupt, hostile or over a limit: never retried
            PIPELINE_ERRORS.labels("loader").inc()
            trace = f"{exc.error_type}: {exc.message}\n(reported by the parser process)"
            return self._failed(f, doc, exc.error_type, exc.message, trace, False, started)
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
        """Parses the original in a child process (console.ingest.parsing), then chunks, embeds and writes it."""
        with storage.named_original(doc.checksum, doc.original_filename) as path:  # a local file, whatever the storage
            parsed = parsing.parse_original(path, doc.original_filename, parse_limits(), should_stop=self._should_stop)
        if doc.title:
            parsed = replace(parsed, title=doc.title)
        self._check_stop()  # cancelled as the parser finished: nothing embedded yet
        self._progress("chunking", force=True)
        item = ParsedItem(doc.engine_id, parsed, doc.original_filename, doc.checksum, collection=doc.collection.key)
        force = f.action == IngestJobFile.Action.REINDEX
        self.current = f
        try:
            return get_engine().ingest_parsed([item], force=force, on_progress=self._on_progress)[0]
        finally:
            self.current = None

    def _on_progress(self, stage: str, done: int, total: int) -> None:
        """The engine's progress: chunks embedded of the file's total; a cancel stops it here, before the write."""
        if stage == "embedding":
            self._progress("embedding")
            self._report_embedded(done, total)
            self._check_stop()
        elif stage == "writing":
            self._progress("writing", force=True)
            self._check_stop()  # the last moment a cancel can keep the file out of the indexes

    def _report_embedded(self, done: int, total: int) -> None:
        now = time.monotonic()
        if self.current is None or (done < total and now - self.last_embedded_write < PROGRESS_WRITE_SECONDS):
            return
        self.last_embedded_write = now
        self.current.report_embedded(done, total)

    def _should_stop(self) -> bool:
        return not self._still_ours()

    def _check_stop(self) -> None:
        """One small read per embedding step (every few seconds): a cancel is seen within a step."""
        if self._should_stop():
            raise parsing.Stopped

    def _stopped(self, f: IngestJobFile, doc: Document, started: float) -> None:
        """The job was cancelled (or taken over) while this file ran: nothing of it reached the indexes."""
        state = IngestJob.objects.filter(pk=self.job_id).values_list("state", flat=True).first()
        if state not in (IngestJob.State.CANCELLING, IngestJob.State.CANCELLED):
            self.log.info("file.abandoned", filename=f.filename, reason="taken over")  # its new owner runs it again
            return
        reason = f"{f.filename}: cancelled while {self.stage}; nothing of it was indexed"
        with transaction.atomic():
            f.cancel(reason=reason)
            doc.restore_after_cancel(was_deleting=False)
        self.log.info("file.cancelled", filename=f.filename, stage=self.stage, seconds=round(time.perf_counter() - started, 3))

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
        """The new version is searchable: the older ones stop being (their rows stay, as history).

        Only uploads have versions: a synced document (re-ingested or reconciled) replaces its own chunks,
        and never an upload of the same name, nor is it replaced by one."""
        if doc.source_id is not None:
            return
        older = (
            Document.objects.filter(original_filename=doc.original_filename, pk__lt=doc.pk, source__isnull=True)
            .exclude(status__in=(Document.Status.SUPERSEDED, Document.Status.DELETING))
        )
        for old in older:
            get_engine().delete_document(old.engine_id)
            old.mark_superseded()
            self.log.info("document.superseded", document_id=old.pk, by=doc.pk)

    def _failed(self, f: IngestJobFile, doc: Document, error_type: str, message: str, trace: str,
                transient: bool, started: float) -> float | None:
        # A store failing on a full disk says "Failed to apply logs…": say what broke. (A corrupt file is not transient.)
        full = storage.disk_full_reason() if transient else ""
        if full or "No space left on device" in message:
            error_type, message = "DiskFull", f"{f.filename}: {full or 'the disk is full'} ({message})"
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


def parse_limits() -> parsing.Limits:
    return parsing.Limits(
        max_inflated_bytes=settings.INGEST_PARSE_MAX_INFLATED_MB * MB,
        max_memory_bytes=settings.INGEST_PARSE_MAX_MEMORY_MB * MB,
        timeout_seconds=settings.INGEST_PARSE_TIMEOUT_SECONDS,
    )


def _finish_after_crash(job_id: int, exc: Exception) -> None:
    try:
        with transaction.atomic():
            job = IngestJob.objects.select_for_update().filter(pk=job_id).first()
            if job is None or job.is_finished:
                return
            if job.state == IngestJob.State.CANCELLING:
                job.cancel()
                return
            job.crash(exc)
            for f in job.files.filter(state__in=(IngestJobFile.State.QUEUED, IngestJobFile.State.RUNNING)):
                f.crash(exc, "".join(tb.format_exception(exc)))
    except Exception:
        log.exception("job.record_failed", job_id=job_id)


# -- heartbeat -------------------------------------------------------------------------------------


@contextmanager
def beating(name: str, beat: Callable[[], object], *, failed_event: str, **context: object) -> Iterator[None]:
    """Calls `beat` every heartbeat interval from a thread of its own, even while one long file is parsed.

    The ingest jobs and the syncs both mark themselves alive this way, so a dead worker's work is noticed
    (console.ingest.recovery, console.syncing.schedule) and a living one's is not taken over.
    """
    stop = threading.Event()
    interval = heartbeat_seconds()

    def loop() -> None:
        while not stop.wait(interval):
            try:
                beat()
            except Exception:
                log.warning(failed_event, exc_info=True, **context)
        connection.close()  # this thread's own connection

    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def _heartbeat(job_id: int) -> AbstractContextManager[None]:
    # CANCELLING too: its worker is alive, stopping the file, and must not look dead.
    alive = IngestJob.objects.filter(pk=job_id, state__in=(IngestJob.State.RUNNING, IngestJob.State.CANCELLING))
    return beating(f"heartbeat-{job_id}", lambda: alive.update(heartbeat_at=timezone.now()),
                   failed_event="job.heartbeat_failed", job_id=job_id)


def heartbeat_seconds() -> float:
    """A few beats fit in one stale period, so one slow write never makes a live job look dead."""
    return max(0.5, min(10.0, settings.INGEST_STALE_SECONDS / 4))

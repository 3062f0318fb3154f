"""The ingest service the console calls: accept uploads, create jobs, retry, cancel, report status.

UI-free: every function takes models and plain values and returns a result; the worker side
(running a job) lives in console.tasks.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import structlog
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from console.engine import MB
from console.models import Document, IngestJob, IngestJobFile
from ragcore import loaders
from ragcore.errors import LoaderError

log = structlog.get_logger(__name__, component="ingest_service")

MAX_NAME_CHARS = 200
_UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f/\\:]")  # control characters and path separators
# Documents that are "current": every status but an old version or one on its way out.
_NOT_CURRENT = (Document.Status.SUPERSEDED, Document.Status.DELETING)
_RETRYABLE_FILES = (IngestJobFile.State.FAILED, IngestJobFile.State.CANCELLED)


class UploadedFileLike(Protocol):
    name: str
    size: int | None

    def chunks(self, chunk_size: int | None = None) -> Iterator[bytes]: ...


@dataclass(frozen=True)
class FileOutcome:
    """What happened to one uploaded file: "accepted", "rejected" (with a reason) or "duplicate"."""

    filename: str
    outcome: str
    reason: str = ""
    document: Document | None = None


@dataclass
class SubmitResult:
    job: IngestJob | None
    files: list[FileOutcome] = field(default_factory=list)

    @property
    def accepted(self) -> list[FileOutcome]:
        return [f for f in self.files if f.outcome == "accepted"]

    @property
    def rejected(self) -> list[FileOutcome]:
        return [f for f in self.files if f.outcome == "rejected"]

    @property
    def duplicates(self) -> list[FileOutcome]:
        return [f for f in self.files if f.outcome == "duplicate"]


class IngestError(Exception):
    """A request the service refuses (retrying a running job, re-ingesting a missing original…)."""


# -- uploads ------------------------------------------------------------------------------------


def sanitize_filename(name: str) -> str:
    """A display-safe base name: no directories, control characters or separators; capped in length."""
    name = unicodedata.normalize("NFC", str(name or ""))
    name = re.split(r"[/\\]", name)[-1]  # the browser may send a full Windows or POSIX path
    name = _UNSAFE_NAME.sub("", name).strip().lstrip(".").strip()
    if not name:
        return "upload"
    if len(name) > MAX_NAME_CHARS:
        stem, dot, ext = name.rpartition(".")
        ext = ext if dot and len(ext) <= 10 else ""
        name = (stem if ext else name)[: MAX_NAME_CHARS - len(ext) - 1].rstrip() + (f".{ext}" if ext else "")
    return name


def raw_dir() -> Path:
    return Path(settings.RAG_DATA_DIR) / "raw"


def submit_uploads(files: Iterable[UploadedFileLike], user: Any) -> SubmitResult:
    """Stores each acceptable file by checksum and queues one job for all of them."""
    result = SubmitResult(job=None)
    accepted: list[tuple[Document, str]] = []
    for upload in files:
        outcome, document = _accept(upload, user)
        result.files.append(outcome)
        if outcome.outcome == "accepted" and document is not None:
            accepted.append((document, outcome.filename))
    if accepted:
        result.job = _create_job([(doc, name, IngestJobFile.Action.INDEX) for doc, name in accepted], user, "uploaded")
    log.info("upload.submitted", accepted=len(accepted), rejected=len(result.rejected),
             duplicates=len(result.duplicates), job_id=result.job.pk if result.job else None)
    return result


def _accept(upload: UploadedFileLike, user: Any) -> tuple[FileOutcome, Document | None]:
    name = sanitize_filename(getattr(upload, "name", "") or "")
    limit = settings.RAG_MAX_FILE_MB * MB
    declared = getattr(upload, "size", None)
    if declared is not None and declared > limit:
        return _rejected(name, f"{_human(declared)} is over the {settings.RAG_MAX_FILE_MB} MB limit"), None
    try:
        temp, data, checksum = _store_temp(upload, limit)
    except _TooLarge:
        return _rejected(name, f"over the {settings.RAG_MAX_FILE_MB} MB limit"), None
    try:
        try:
            kind = loaders.detect_kind(data, name)
        except LoaderError as exc:
            return _rejected(name, exc.reason), None
        return _register(name, kind, len(data), checksum, temp, user)
    finally:
        temp.unlink(missing_ok=True)


class _TooLarge(Exception):
    pass


def _store_temp(upload: UploadedFileLike, limit: int) -> tuple[Path, bytes, str]:
    """Streams the upload into a temp file beside data/raw/, stopping as soon as it passes the limit."""
    folder = raw_dir()
    folder.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(dir=folder, prefix=".upload-")
    temp = Path(temp_name)
    digest = hashlib.sha256()
    buffer = bytearray()
    try:
        with os.fdopen(fd, "wb") as out:
            for piece in _pieces(upload):
                buffer += piece
                if len(buffer) > limit:  # the declared size may lie; never keep more than the limit
                    raise _TooLarge
                digest.update(piece)
                out.write(piece)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return temp, bytes(buffer), digest.hexdigest()


def _pieces(upload: UploadedFileLike) -> Iterator[bytes]:
    if hasattr(upload, "seek"):
        try:
            upload.seek(0)
        except (OSError, ValueError):
            pass
    if hasattr(upload, "chunks"):
        yield from upload.chunks()
    else:  # a plain file object
        while piece := upload.read(MB):  # type: ignore[attr-defined]
            yield piece


def _register(name: str, kind: str, size: int, checksum: str, temp: Path, user: Any) -> tuple[FileOutcome, Document | None]:
    existing = Document.objects.exclude(status=Document.Status.SUPERSEDED).filter(checksum=checksum).first()
    if existing is not None:
        return _existing_content(name, existing, temp)
    previous = _current_version(name)
    try:
        with transaction.atomic():
            document = Document.objects.create(
                checksum=checksum, title="", original_filename=name, kind=kind, size=size,
                status=Document.Status.QUEUED, uploaded_by=_user_or_none(user),
                version=previous.version + 1 if previous else 1, previous=previous,
            )
    except IntegrityError:  # the same content uploaded at the same moment by someone else
        existing = Document.objects.exclude(status=Document.Status.SUPERSEDED).filter(checksum=checksum).first()
        return FileOutcome(name, "duplicate", "already ingested", existing), None
    _keep_original(temp, checksum)
    return FileOutcome(name, "accepted", document=document), document


def _existing_content(name: str, existing: Document, temp: Path) -> tuple[FileOutcome, Document | None]:
    if existing.status == Document.Status.DELETING:
        return _rejected(name, f"the same content ({existing.original_filename}) is being deleted; upload it again shortly"), None
    if existing.status == Document.Status.FAILED:
        # The same bytes failed before; try them again instead of refusing them as a duplicate.
        _keep_original(temp, existing.checksum)
        existing.status = Document.Status.QUEUED
        existing.error = ""
        existing.save(update_fields=["status", "error", "updated_at"])
        return FileOutcome(name, "accepted", document=existing), existing
    return FileOutcome(name, "duplicate", "already ingested", existing), None


def _current_version(name: str) -> Document | None:
    """The latest current document with this file name: a new upload of it is its next version."""
    return (
        Document.objects.filter(original_filename=name).exclude(status__in=_NOT_CURRENT)
        .order_by("-version", "-pk").first()
    )


def _keep_original(temp: Path, checksum: str) -> None:
    target = raw_dir() / checksum
    if not target.exists():
        os.replace(temp, target)  # atomic: readers never see half a file


def _rejected(name: str, reason: str) -> FileOutcome:
    return FileOutcome(name, "rejected", f"{name}: {reason}")


def _user_or_none(user: Any) -> Any:
    return user if getattr(user, "is_authenticated", False) else None


def _human(size: int) -> str:
    return f"{size / MB:.1f} MB"


# -- jobs -----------------------------------------------------------------------------------------


def _create_job(items: list[tuple[Document, str, str]], user: Any, event: str, *, enqueue: bool = True) -> IngestJob:
    with transaction.atomic():
        job = IngestJob.objects.create(
            created_by=_user_or_none(user), progress_total=len(items),
            history=[_event(event, files=len(items))],
        )
        IngestJobFile.objects.bulk_create(
            IngestJobFile(job=job, document=doc, filename=name, action=action) for doc, name, action in items
        )
        if enqueue:
            transaction.on_commit(lambda: _enqueue_into(job))
    return job


def enqueue_job(job_id: int, *, delay_seconds: float = 0.0) -> str:
    """Queues the job's task and records its id in the same transaction, so a worker never sees one without the other."""
    from console.tasks import run_ingest_job

    task = run_ingest_job
    if delay_seconds > 0:
        task = task.using(run_after=timezone.now() + timezone.timedelta(seconds=delay_seconds))
    with transaction.atomic():
        result = task.enqueue(job_id)
        IngestJob.objects.filter(pk=job_id).update(task_id=str(result.id))
    return str(result.id)


def _enqueue_into(job: IngestJob) -> None:
    job.task_id = enqueue_job(job.pk)  # the caller's instance shows it too


def retry_job(job: IngestJob) -> IngestJob:
    """Queues a finished job again; only its failed or cancelled files run, with fresh attempts."""
    with transaction.atomic():
        job = IngestJob.objects.select_for_update().get(pk=job.pk)
        if not job.is_finished:
            raise IngestError(f"job {job.pk} is still {job.state}")
        files = list(job.files.select_related("document").filter(state__in=_RETRYABLE_FILES))
        files = [f for f in files if f.document is not None]
        if not files:
            raise IngestError(f"job {job.pk} has no failed or cancelled files to retry")
        for f in files:
            f.state, f.attempts, f.error_type, f.error_message, f.traceback = IngestJobFile.State.QUEUED, 0, "", "", ""
            f.save(update_fields=["state", "attempts", "error_type", "error_message", "traceback"])
            doc = f.document
            if f.action == IngestJobFile.Action.DELETE:
                doc.status = Document.Status.DELETING
            elif doc.status != Document.Status.SUPERSEDED:
                doc.status = Document.Status.QUEUED
            doc.save(update_fields=["status", "updated_at"])
        job.state, job.stage, job.finished_at = IngestJob.State.QUEUED, "queued", None
        job.progress_done = job.files.exclude(state__in=(IngestJobFile.State.QUEUED,)).count()
        job.history = [*job.history, _event("retry requested", files=len(files))]
        job.save(update_fields=["state", "stage", "finished_at", "progress_done", "history"])
        transaction.on_commit(lambda: _enqueue_into(job))
    return job


def cancel_job(job: IngestJob) -> IngestJob:
    """Stops a job between files: queued files are cancelled, the file being indexed finishes."""
    with transaction.atomic():
        job = IngestJob.objects.select_for_update().get(pk=job.pk)
        if job.is_finished:
            raise IngestError(f"job {job.pk} has already finished ({job.get_state_display()})")
        for f in job.files.select_related("document").filter(state=IngestJobFile.State.QUEUED):
            f.state = IngestJobFile.State.CANCELLED
            f.save(update_fields=["state"])
            _restore_after_cancel(f)
        job.state, job.stage, job.finished_at = IngestJob.State.CANCELLED, "cancelled", timezone.now()
        job.history = [*job.history, _event("cancelled")]
        job.save(update_fields=["state", "stage", "finished_at", "history"])
    log.info("job.cancelled", job_id=job.pk)
    return job


def _restore_after_cancel(f: IngestJobFile) -> None:
    doc = f.document
    if doc is None:
        return
    if f.action == IngestJobFile.Action.DELETE:
        doc.status = Document.Status.INDEXED if doc.chunk_count else Document.Status.FAILED
    elif doc.status in (Document.Status.QUEUED, Document.Status.INDEXING):
        doc.status = Document.Status.INDEXED if doc.indexed_at else Document.Status.FAILED
        doc.error = "" if doc.indexed_at else "ingest cancelled"
    doc.save(update_fields=["status", "error", "updated_at"])


def reingest_document(doc: Document, user: Any) -> IngestJob:
    """Re-embeds one document from its original in data/raw/ (a new job with one file)."""
    doc.refresh_from_db()
    if doc.status in _NOT_CURRENT:
        raise IngestError(f"{doc.original_filename} is {doc.get_status_display()}; only a current document can be re-ingested")
    if doc.status in (Document.Status.QUEUED, Document.Status.INDEXING):
        raise IngestError(f"{doc.original_filename} is already queued for indexing")
    if not doc.raw_path.exists():
        raise IngestError(f"the original of {doc.original_filename} is missing ({doc.raw_path})")
    doc.status = Document.Status.QUEUED
    doc.save(update_fields=["status", "updated_at"])
    return _create_job([(doc, doc.original_filename, IngestJobFile.Action.REINDEX)], user, "re-ingest requested")


def requeue_documents(docs: list[Document], user: Any, event: str, *, enqueue: bool = True) -> IngestJob:
    """One job that re-embeds these documents (reconcile and reindex use it)."""
    for doc in docs:
        doc.status = Document.Status.QUEUED
        doc.save(update_fields=["status", "updated_at"])
    items = [(doc, doc.original_filename, IngestJobFile.Action.REINDEX) for doc in docs]
    return _create_job(items, user, event, enqueue=enqueue)


def delete_document(doc: Document, user: Any) -> IngestJob:
    """Marks the document DELETING; the worker removes its chunks (one writer), then its row.

    The row and its superseded versions are deleted, not kept: the job's file keeps the name,
    and the original in data/raw/ goes too unless another row still uses it.
    """
    doc.refresh_from_db()
    if doc.status == Document.Status.DELETING:
        raise IngestError(f"{doc.original_filename} is already being deleted")
    doc.status = Document.Status.DELETING
    doc.save(update_fields=["status", "updated_at"])
    return _create_job([(doc, doc.original_filename, IngestJobFile.Action.DELETE)], user, "delete requested")


# -- status ---------------------------------------------------------------------------------------


def job_status(job: IngestJob, *, include_traceback: bool = False) -> dict[str, Any]:
    """The job as plain data for the JSON endpoint and the job page."""
    files = list(job.files.all().order_by("pk"))
    return {
        "id": job.pk,
        "state": job.state,
        "stage": job.stage,
        "progress": {"done": job.progress_done, "total": job.progress_total},
        "eta_seconds": eta_seconds(job),
        "attempts": job.attempts,
        "created_at": _iso(job.created_at),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
        "heartbeat_at": _iso(job.heartbeat_at),
        "history": job.history,
        "files": [_file_status(f, include_traceback) for f in files],
    }


def _file_status(f: IngestJobFile, include_traceback: bool) -> dict[str, Any]:
    row: dict[str, Any] = {
        "filename": f.filename,
        "document_id": f.document_id,
        "action": f.action,
        "state": f.state,
        "chunks": f.chunks,
        "attempts": f.attempts,
        "seconds": round(f.seconds, 3),
        "error_type": f.error_type,
        "error_message": f.error_message,
    }
    if include_traceback:
        row["traceback"] = f.traceback
    return row


def eta_seconds(job: IngestJob) -> float | None:
    """Remaining seconds at the average pace of the files done so far; None until one is done."""
    if job.state != IngestJob.State.RUNNING or not job.started_at or not job.progress_done:
        return None
    elapsed = (timezone.now() - job.started_at).total_seconds()
    remaining = max(job.progress_total - job.progress_done, 0)
    return round(elapsed / job.progress_done * remaining, 1)


def _iso(value: Any) -> str | None:
    return value.isoformat() if value else None


def _event(event: str, **extra: Any) -> dict[str, Any]:
    return {"at": timezone.now().isoformat(), "event": event, **extra}

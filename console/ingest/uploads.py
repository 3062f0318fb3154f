"""Uploads: each file is checked, stored by checksum and registered as a document; one job indexes them all.

UI-free: every function takes models and plain values and returns a result. The jobs are in
console.ingest.jobs, the worker that runs them in console.ingest.worker.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import structlog
from django.conf import settings
from django.db import IntegrityError, transaction

from console.ingest import storage
from console.ingest.jobs import create_job, user_or_none
from console.ingest.storage import sanitize_filename
from console.models import Document, IngestJob, IngestJobFile
from ragcore import loaders
from ragcore.errors import LoaderError
from ragcore.settings import MB

log = structlog.get_logger(__name__, component="ingest_service")



class UploadedFileLike(Protocol):
    """What an upload offers: Django's UploadedFile, or a test's SimpleUploadedFile."""

    @property
    def name(self) -> str | None: ...

    @property
    def size(self) -> int | None: ...

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
        result.job = create_job([(doc, name, IngestJobFile.Action.INDEX) for doc, name in accepted], user, "uploaded")
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
        temp, data, checksum = storage.store_temp(_pieces(upload), limit)
    except storage.TooLarge:
        return _rejected(name, f"over the {settings.RAG_MAX_FILE_MB} MB limit"), None
    try:
        try:
            kind = loaders.detect_kind(data, name)
        except LoaderError as exc:
            return _rejected(name, exc.reason), None
        return _register(name, kind, len(data), checksum, temp, user)
    finally:
        temp.unlink(missing_ok=True)


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
                checksum=checksum, title="", original_filename=name, kind=kind, size=size, uploaded_by=user_or_none(user),
                version=previous.version + 1 if previous else 1, previous=previous,
            )
    except IntegrityError:  # the same content uploaded at the same moment by someone else
        existing = Document.objects.exclude(status=Document.Status.SUPERSEDED).filter(checksum=checksum).first()
        return FileOutcome(name, "duplicate", "already ingested", existing), None
    storage.keep_original(temp, checksum)
    return FileOutcome(name, "accepted", document=document), document


def _existing_content(name: str, existing: Document, temp: Path) -> tuple[FileOutcome, Document | None]:
    if existing.status == Document.Status.DELETING:
        return _rejected(name, f"the same content ({existing.original_filename}) is being deleted; upload it again shortly"), None
    if existing.status == Document.Status.FAILED:
        # The same bytes failed before; try them again instead of refusing them as a duplicate.
        storage.keep_original(temp, existing.checksum)
        existing.mark_queued()
        return FileOutcome(name, "accepted", document=existing), existing
    return FileOutcome(name, "duplicate", "already ingested", existing), None


def _current_version(name: str) -> Document | None:
    """The latest current document with this file name: a new upload of it is its next version."""
    return (
        Document.objects.filter(original_filename=name).exclude(status__in=Document.NOT_CURRENT)
        .order_by("-version", "-pk").first()
    )


def _rejected(name: str, reason: str) -> FileOutcome:
    return FileOutcome(name, "rejected", f"{name}: {reason}")


def _human(size: int) -> str:
    return f"{size / MB:.1f} MB"

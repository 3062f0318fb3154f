"""Uploads: each file is checked, stored by checksum and registered as a document; one job indexes them all.

A bad file (empty, not a document type, too large, a duplicate, a name too long, one file too many,
a full disk) is refused on its own, named with its reason, and recorded on the job; the others go
through. Each file is known by its path within the upload ("team-a/README.md"), so files of the same
name in different folders are different documents, and a new upload of the same path is its next version.

UI-free: every function takes models and plain values and returns a result. The jobs are in
console.ingest.jobs, the worker that runs them in console.ingest.worker.
"""

from __future__ import annotations

import errno
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import structlog
from django.conf import settings
from django.db import IntegrityError, transaction

from console.ingest import storage
from console.ingest.jobs import create_job, user_or_none
from console.ingest.storage import sanitize_path
from console.models import Collection, Document, IngestJob, IngestJobFile
from ragcore import loaders
from ragcore.errors import LoaderError
from ragcore.metrics import PIPELINE_ERRORS
from ragcore.settings import MB

log = structlog.get_logger(__name__, component="ingest_service")

ACCEPTED = "accepted"
REFUSED = "refused"
SUMMARY_NAMES = 10  # refused files named in the summary message; the job lists them all


class UploadedFileLike(Protocol):
    """What an upload offers: Django's UploadedFile, or a test's SimpleUploadedFile."""

    @property
    def name(self) -> str | None: ...

    @property
    def size(self) -> int | None: ...

    def chunks(self, chunk_size: int | None = None) -> Iterator[bytes]: ...


@dataclass(frozen=True)
class FileOutcome:
    """What happened to one uploaded file: "accepted", or "refused" with a `code` and a `reason` naming it."""

    filename: str
    outcome: str
    reason: str = ""
    code: str = ""  # empty, type, too_large, duplicate, same_path, name_too_long, too_many, disk_full
    document: Document | None = None


@dataclass
class SubmitResult:
    job: IngestJob | None
    files: list[FileOutcome] = field(default_factory=list)

    @property
    def accepted(self) -> list[FileOutcome]:
        return [f for f in self.files if f.outcome == ACCEPTED]

    @property
    def refused(self) -> list[FileOutcome]:
        return [f for f in self.files if f.outcome == REFUSED]

    def summary(self) -> str:
        """One line for the whole upload: "23 files accepted, 2 refused: a.md (empty file); b.exe (…)"."""
        accepted, refused = len(self.accepted), self.refused
        text = f"{_count(accepted, 'file')} accepted"
        if accepted:
            text += ", indexing in the background"
        if not refused:
            return text + "."
        named = "; ".join(f"{f.filename} ({f.reason.removeprefix(f'{f.filename}: ')})" for f in refused[:SUMMARY_NAMES])
        more = f"; and {len(refused) - SUMMARY_NAMES} more (listed on the job)" if len(refused) > SUMMARY_NAMES else ""
        return f"{text}, {len(refused)} refused: {named}{more}."


def parse_paths(raw: str | None, count: int) -> list[str] | None:
    """The browser's list of paths within the upload (one per file, in order), or None if it sent none or a bad one."""
    if not raw:
        return None
    try:
        paths = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(paths, list) or len(paths) != count or not all(isinstance(p, str) for p in paths):
        return None
    return paths


def submit_uploads(files: Iterable[UploadedFileLike], user: Any, *, paths: Sequence[str] | None = None,
                   enqueue: bool = True, event: str = "uploaded", collection: Collection | None = None) -> SubmitResult:
    """Stores each acceptable file by checksum and queues one job for all of them; the refused are recorded on it.

    `paths`: each file's path within the upload (a folder upload's relative paths), in the same order.
    `collection`: where the new documents go (None: the default collection); a new version of a file goes
    there too, whichever collection held its earlier version.
    `enqueue` False: the caller runs the job itself (`manage.py ingest` without --queue).
    """
    result = SubmitResult(job=None)
    target = collection or Collection.default()
    accepted: list[tuple[Document, str]] = []
    seen_paths: dict[str, str] = {}  # path → the first file that had it, in this upload
    seen_content: dict[str, str] = {}  # checksum → the file that had it, in this upload
    disk_full = storage.disk_full_reason()
    if disk_full:
        log.error("upload.disk_full", reason=disk_full)
        disk_full = f"{disk_full}; nothing was stored (free some space and upload again)"
    for position, upload in enumerate(files):
        name = _path_of(upload, paths[position] if paths and position < len(paths) else None)
        if disk_full:  # no later file can be stored either; each is named, none is half-written
            outcome, document = _refused(name, "disk_full", disk_full), None
        elif position >= settings.UPLOAD_MAX_FILES:
            outcome, document = _refused(
                name, "too_many", f"over the limit of {settings.UPLOAD_MAX_FILES} files per upload (UPLOAD_MAX_FILES)"), None
        else:
            outcome, document = _accept(upload, name, user, seen_paths, seen_content, target)
            if outcome.code == "disk_full":
                disk_full = outcome.reason.removeprefix(f"{name}: ")
        result.files.append(outcome)
        if outcome.outcome == ACCEPTED and document is not None:
            accepted.append((document, outcome.filename))
    refused = [(f.filename, f.code, f.reason) for f in result.refused]
    if accepted or refused:
        items = [(doc, name, IngestJobFile.Action.INDEX) for doc, name in accepted]
        result.job = create_job(items, user, event, refused=refused, enqueue=enqueue)
    for f in result.refused:
        PIPELINE_ERRORS.labels("upload").inc()
        log.info("upload.refused", filename=f.filename, code=f.code, reason=f.reason)
    log.info("upload.submitted", accepted=len(accepted), refused=len(refused), job_id=result.job.pk if result.job else None)
    return result


def _path_of(upload: UploadedFileLike, path: str | None) -> str:
    """The file's path within the upload: the browser's, when it ends in the file's own name; else the name."""
    name = sanitize_path(getattr(upload, "name", "") or "")
    if path:
        path = sanitize_path(path)
        if _as_django_keeps_it(path.rsplit("/", 1)[-1]) == name:
            return path
    return name


def _as_django_keeps_it(name: str) -> str:
    """A file name as Django's UploadedFile keeps it: cut to 255 characters, extension kept
    (django.core.files.uploadedfile), so the browser's longer original can be matched to it."""
    if len(name) <= 255:
        return name
    stem, dot, ext = name.rpartition(".")
    ext = f".{ext}"[:255] if dot else ""
    stem = stem if dot else name
    return stem[: 255 - len(ext)] + ext


def _accept(upload: UploadedFileLike, name: str, user: Any, seen_paths: dict[str, str],
            seen_content: dict[str, str], collection: Collection) -> tuple[FileOutcome, Document | None]:
    if len(name) > settings.UPLOAD_MAX_NAME_CHARS:
        reason = f"the name is {len(name)} characters, over the {settings.UPLOAD_MAX_NAME_CHARS}-character limit"
        return _refused(_shortened(name), "name_too_long", reason), None
    if name in seen_paths:
        return _refused(name, "same_path", "another file in this upload has the same path"), None
    seen_paths[name] = name
    limit = settings.RAG_MAX_FILE_MB * MB
    declared = getattr(upload, "size", None)
    if declared is not None and declared > limit:
        return _refused(name, "too_large", f"{_human(declared)} is over the {settings.RAG_MAX_FILE_MB} MB limit"), None
    try:
        temp, data, checksum = storage.store_temp(_pieces(upload), limit)
    except storage.TooLarge:
        return _refused(name, "too_large", f"over the {settings.RAG_MAX_FILE_MB} MB limit"), None
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        log.error("upload.disk_full", filename=name, folder=str(storage.raw_dir()))
        return _refused(name, "disk_full", "the server's disk is full; nothing was stored (free some space and upload again)"), None
    try:
        if not data:
            return _refused(name, "empty", "empty file"), None
        try:
            kind = loaders.detect_kind(data, name)
        except LoaderError as exc:
            return _refused(name, "type", exc.reason), None
        if checksum in seen_content:
            return _refused(name, "duplicate", f"the same content as {seen_content[checksum]} in this upload"), None
        seen_content[checksum] = name
        return _register(name, kind, len(data), checksum, temp, user, collection)
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


def _register(name: str, kind: str, size: int, checksum: str, temp: Path, user: Any,
              collection: Collection) -> tuple[FileOutcome, Document | None]:
    # Among uploads: a synced document with the same bytes follows its source, not this upload.
    existing = Document.objects.exclude(status=Document.Status.SUPERSEDED).filter(checksum=checksum, source__isnull=True).first()
    if existing is not None:
        return _existing_content(name, existing, temp, collection)
    previous = _current_version(name)
    try:
        storage.keep_original(temp, checksum)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        return _refused(name, "disk_full", "the server's disk is full; nothing was stored (free some space and upload again)"), None
    try:
        with transaction.atomic():
            document = Document.objects.create(
                checksum=checksum, title="", original_filename=name, kind=kind, size=size, uploaded_by=user_or_none(user),
                version=previous.version + 1 if previous else 1, previous=previous, collection=collection,
            )
    except IntegrityError:  # the same content uploaded at the same moment by someone else
        existing = Document.objects.exclude(status=Document.Status.SUPERSEDED).filter(checksum=checksum, source__isnull=True).first()
        return _duplicate(name, existing), None
    return FileOutcome(name, ACCEPTED, document=document), document


def _existing_content(name: str, existing: Document, temp: Path,
                      collection: Collection) -> tuple[FileOutcome, Document | None]:
    if existing.status == Document.Status.DELETING:
        return _refused(name, "duplicate", f"the same content ({existing.original_filename}) is being deleted; upload it again shortly"), None
    if existing.status == Document.Status.FAILED:
        # The same bytes failed before; try them again instead of refusing them as a duplicate.
        storage.keep_original(temp, existing.checksum)
        if existing.collection_id != collection.pk:  # no chunks to re-label: it never indexed
            existing.move_to(collection)
        existing.mark_queued()
        return FileOutcome(name, ACCEPTED, document=existing), existing
    return _duplicate(name, existing, collection), None


def _duplicate(name: str, existing: Document | None, collection: Collection | None = None) -> FileOutcome:
    where = f" as {existing.original_filename}" if existing is not None else ""
    if existing is not None and collection is not None and existing.collection_id != collection.pk:
        where += f" in the collection {existing.collection.name} (move it there from its document page)"
    return FileOutcome(name, REFUSED, f"{name}: duplicate, already ingested{where}", "duplicate", existing)


def _current_version(name: str) -> Document | None:
    """The latest current upload with this path: a new upload of it is its next version (a synced document
    of the same name is its source's, and never an upload's earlier version)."""
    return (
        Document.objects.filter(original_filename=name, source__isnull=True).exclude(status__in=Document.NOT_CURRENT)
        .order_by("-version", "-pk").first()
    )


def _refused(name: str, code: str, reason: str) -> FileOutcome:
    return FileOutcome(name, REFUSED, f"{name}: {reason}", code)


def _shortened(name: str) -> str:
    """A name too long to store or show whole: its start and its end, so the user can still tell which file."""
    return f"{name[:60]}…{name[-30:]}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _human(size: int) -> str:
    return f"{size / MB:.1f} MB"

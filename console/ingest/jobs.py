"""Ingest jobs: create one for a batch of documents, retry, cancel, re-ingest, re-queue, delete.

A job is queued as the task console.tasks.run_ingest_job, which console.ingest.worker runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import structlog
from django.db import transaction

from console.ingest import storage
from console.models import Document, IngestJob, IngestJobFile
from console.tasks import enqueue_job

log = structlog.get_logger(__name__, component="ingest_service")


class IngestError(Exception):
    """A request the service refuses (retrying a running job, re-ingesting a missing original…)."""


def user_or_none(user: Any) -> Any:
    return user if getattr(user, "is_authenticated", False) else None


def create_job(items: Sequence[tuple[Document, str, str]], user: Any, event: str, *, enqueue: bool = True,
               refused: Sequence[tuple[str, str, str]] = ()) -> IngestJob:
    """One job for these (document, file name, action) items; `refused` (file name, code, reason) are recorded on it.

    A job whose every file was refused is finished at once: there is nothing for a worker to do.
    """
    with transaction.atomic():
        job = IngestJob(created_by=user_or_none(user), progress_total=len(items))
        job.add_event(event, files=len(items), **({"refused": len(refused)} if refused else {}))
        job.save()
        IngestJobFile.objects.bulk_create(
            [IngestJobFile(job=job, document=doc, filename=name, action=action) for doc, name, action in items]
            + [IngestJobFile.refused(job, name, code, reason) for name, code, reason in refused]
        )
        if not items:
            job.finish(files=0, failed=0, refused=len(refused))
        elif enqueue:
            transaction.on_commit(lambda: _enqueue_into(job))
    return job


def _enqueue_into(job: IngestJob) -> None:
    job.task_id = enqueue_job(job.pk)  # the caller's instance shows it too


def retry_job(job: IngestJob) -> IngestJob:
    """Queues a finished job again; only its failed or cancelled files run, with fresh attempts."""
    with transaction.atomic():
        job = IngestJob.objects.select_for_update().get(pk=job.pk)
        if not job.is_finished:
            raise IngestError(f"job {job.pk} is still {job.state}")
        files = list(job.files.select_related("document").filter(state__in=IngestJobFile.RETRYABLE))
        files = [f for f in files if f.document is not None]
        if not files:
            raise IngestError(f"job {job.pk} has no failed or cancelled files to retry")
        for f in files:
            f.requeue()
            doc = f.document
            assert doc is not None  # files without one were left out above
            if f.action == IngestJobFile.Action.DELETE:
                doc.mark_deleting()
            elif doc.status != Document.Status.SUPERSEDED:
                doc.mark_queued()
        job.retry(files=len(files), done=job.files.filter(state__in=IngestJobFile.OUTCOMES).count())
        transaction.on_commit(lambda: _enqueue_into(job))
    return job


def cancel_job(job: IngestJob) -> IngestJob:
    """Cancels a job; every file ends in a documented state (README, "Cancelling a job").

    Queued files are cancelled at once. A job a worker is running becomes CANCELLING: the worker
    stops its file at the next step (killing the parser, between embedding batches, or before the
    write; a write already under way completes) and then finishes the cancel (`IngestJob.cancel`).
    """
    with transaction.atomic():
        job = IngestJob.objects.select_for_update().get(pk=job.pk)
        if job.is_finished:
            raise IngestError(f"job {job.pk} has already finished ({job.get_state_display()})")
        if job.state == IngestJob.State.CANCELLING:
            raise IngestError(f"job {job.pk} is already being cancelled")
        if job.state == IngestJob.State.RUNNING:
            job.request_cancel()
        else:  # queued or waiting to retry: no worker holds it
            job.cancel()
    log.info("job.cancelled", job_id=job.pk, state=job.state)
    return job


def reingest_document(doc: Document, user: Any) -> IngestJob:
    """Re-embeds one document from its original in data/raw/ (a new job with one file)."""
    doc.refresh_from_db()
    if doc.status in Document.NOT_CURRENT:
        raise IngestError(f"{doc.original_filename} is {doc.get_status_display()}; only a current document can be re-ingested")
    if doc.status in (Document.Status.QUEUED, Document.Status.INDEXING):
        raise IngestError(f"{doc.original_filename} is already queued for indexing")
    if not doc.has_original():
        raise IngestError(f"the original of {doc.original_filename} is missing from the {storage.location()}")
    doc.mark_queued()
    return create_job([(doc, doc.original_filename, IngestJobFile.Action.REINDEX)], user, "re-ingest requested")


def requeue_documents(docs: list[Document], user: Any, event: str, *, enqueue: bool = True) -> IngestJob:
    """One job that re-embeds these documents (reconcile and reindex use it)."""
    for doc in docs:
        doc.mark_queued()
    items = [(doc, doc.original_filename, IngestJobFile.Action.REINDEX) for doc in docs]
    return create_job(items, user, event, enqueue=enqueue)


def delete_document(doc: Document, user: Any) -> IngestJob:
    """Marks the document DELETING; the worker removes its chunks (one writer), then its row.

    The row and its superseded versions are deleted, not kept: the job's file keeps the name,
    and the original in data/raw/ goes too unless another row still uses it.
    """
    doc.refresh_from_db()
    if doc.status == Document.Status.DELETING:
        raise IngestError(f"{doc.original_filename} is already being deleted")
    doc.mark_deleting()
    return create_job([(doc, doc.original_filename, IngestJobFile.Action.DELETE)], user, "delete requested")


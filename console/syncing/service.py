"""What the console and `manage.py sync` ask of sources: validate and save one, sync it now, delete it.

UI-free: every function takes models and plain values and returns models, or raises SyncError with a
message for the user (ConnectorConfigError, naming the setting, for bad settings).
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import structlog
from django.db import IntegrityError, transaction
from django.utils import timezone

from console.ingest.jobs import create_job, user_or_none
from console.models import Document, IngestJob, IngestJobFile, Source, SyncRun
from console.syncing.connectors import build_connector, work_dir
from console.tasks import enqueue_sync

log = structlog.get_logger(__name__, component="sync")


class SyncError(Exception):
    """A request refused: a second sync of a source that is syncing, deleting a source mid-sync."""


def validate_settings(kind: str, config: Mapping[str, Any], *, source_id: int | None = None) -> str:
    """The connector's description for these settings; ConnectorConfigError names the wrong one."""
    return build_connector(kind, config, source_id=source_id).describe()


def save_source(source: Source) -> Source:
    """Stores a new or edited source: a new scheduled one is due at once; an edited one on its new interval."""
    new = source.pk is None
    source.save()
    last = source.last_run.finished_at if source.last_run and source.last_run.finished_at else None
    if new and source.every_minutes and not source.paused:
        source.next_sync_at = timezone.now()
        source.save(update_fields=["next_sync_at"])
    else:
        source.reschedule(after=last)
    log.info("source.saved", source_id=source.pk, source=source.name, kind=source.kind, new=new)
    return source


def active_run(source: Source) -> SyncRun | None:
    return SyncRun.objects.filter(source=source, state__in=SyncRun.ACTIVE).first()


def request_sync(source: Source, *, trigger: str = SyncRun.Trigger.MANUAL, user: Any = None,
                 enqueue: bool = True, due_by: datetime | None = None) -> SyncRun:
    """A new run of the source, queued for the worker (or, `enqueue` False, for the caller to run).

    `due_by` (the scheduler's): only if the source is still due then. The scheduler read it as due before
    taking the lock; a run finishing meanwhile reschedules it, and must not be followed by a second run.
    """
    try:
        with transaction.atomic():
            locked = Source.objects.select_for_update().get(pk=source.pk)
            running = active_run(locked)
            if running is not None:
                raise SyncError(f"{locked.name} is already syncing (run {running.pk}, {running.get_state_display()})")
            if due_by is not None and not locked.is_due(due_by):
                raise SyncError(f"{locked.name} is no longer due (next sync {locked.next_sync_at})")
            run = SyncRun.objects.create(source=locked, trigger=trigger, created_by=user_or_none(user))
            if enqueue:
                transaction.on_commit(lambda: _enqueue_into(run))
    except IntegrityError:  # another process queued one between our check and insert
        raise SyncError(f"{source.name} is already syncing") from None
    log.info("sync.requested", source_id=source.pk, run_id=run.pk, trigger=trigger)
    return run


def _enqueue_into(run: SyncRun) -> None:
    run.task_id = enqueue_sync(run.pk)


def delete_source(source: Source, user: Any) -> IngestJob | None:
    """Deletes the source; its documents go too, their chunks removed by the worker (one delete job).

    Refused while a sync runs (its items would land after the delete); a queued sync is dropped with it.
    """
    with transaction.atomic():
        locked = Source.objects.select_for_update().get(pk=source.pk)
        if SyncRun.objects.filter(source=locked, state=SyncRun.State.RUNNING).exists():
            raise SyncError(f"{locked.name} is syncing now; delete it once the sync has finished")
        docs = list(Document.objects.filter(source=locked).exclude(status=Document.Status.DELETING))
        for doc in docs:
            doc.mark_deleting()
        job = None
        if docs:
            items = [(doc, doc.original_filename, IngestJobFile.Action.DELETE) for doc in docs]
            job = create_job(items, user, "source deleted", enqueue=True)
        pk, name = locked.pk, locked.name
        locked.delete()
        transaction.on_commit(lambda: shutil.rmtree(work_dir(pk), ignore_errors=True))
    log.info("source.deleted", source_id=pk, source=name, documents=len(docs), job_id=job.pk if job else None)
    return job

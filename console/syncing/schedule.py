"""How the worker keeps sources in sync without a scheduler process: due-time rows and stale heartbeats.

`manage.py db_worker` calls `check()` at start and every SYNC_CHECK_SECONDS: each source whose
`next_sync_at` has come gets a queued run (at most one per source: a unique constraint), and each
run whose worker stopped beating (SIGKILL, OOM, power loss) is queued again, to be resumed.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import structlog
from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from console.ingest.recovery import fail_dead_task
from console.models import Source, SyncRun
from console.syncing.service import SyncError, request_sync
from console.tasks import enqueue_sync

log = structlog.get_logger(__name__, component="sync")


def due_sources(now: datetime | None = None) -> list[Source]:
    """Sources whose next sync is due (not paused): Source.is_due, asked of the database."""
    return list(Source.objects.filter(paused=False, next_sync_at__lte=now or timezone.now()).order_by("next_sync_at"))


def enqueue_due_sources(now: datetime | None = None) -> list[int]:
    """Queues a run of every due source that has none queued or running; returns the runs' ids."""
    queued = []
    now = now or timezone.now()
    for source in due_sources(now):
        try:
            run = request_sync(source, trigger=SyncRun.Trigger.SCHEDULE, due_by=now)
        except SyncError:
            continue  # it is syncing (its finish sets the next due time), or a run that just finished set it
        queued.append(run.pk)
    if queued:
        log.info("sync.scheduled", runs=queued)
    return queued


def recover_stale_runs(*, stale_seconds: float | None = None) -> list[int]:
    """Queues again every running sync whose worker stopped beating; returns their ids."""
    stale = settings.INGEST_STALE_SECONDS if stale_seconds is None else stale_seconds
    cutoff = timezone.now() - timedelta(seconds=stale)
    running = SyncRun.objects.filter(state=SyncRun.State.RUNNING, heartbeat_at__lt=cutoff).values_list("pk", flat=True)
    # Claimed by a worker that died before it could mark the run running.
    claimed = [str(i) for i in DBTaskResult.objects.filter(status="RUNNING", started_at__lt=cutoff).values_list("id", flat=True)]
    orphans = SyncRun.objects.filter(state=SyncRun.State.QUEUED, task_id__in=claimed).values_list("pk", flat=True)
    # Requested by a process that stopped between its commit and queueing the task (request_sync queues it
    # once the run is committed): no worker would ever run it, and the source's schedule would wait on it.
    untasked = SyncRun.objects.filter(state=SyncRun.State.QUEUED, task_id="", created_at__lt=cutoff).values_list(
        "pk", flat=True)
    return sorted(pk for pk in {*running, *orphans, *untasked} if _requeue_dead(pk, cutoff))


def _requeue_dead(run_id: int, cutoff: datetime) -> bool:
    with transaction.atomic():
        run = SyncRun.objects.select_for_update().filter(pk=run_id).first()
        if run is None or run.is_finished:
            return False
        if run.state == SyncRun.State.RUNNING and run.heartbeat_at and run.heartbeat_at >= cutoff:
            return False  # it beat again while we looked
        if run.state == SyncRun.State.QUEUED and not run.task_id:  # never started: nothing to fail or count
            enqueue_sync(run_id)
            log.warning("sync.task_queued_late", run_id=run_id)
            return True
        fail_dead_task(run.task_id, "sync")
        run.requeue_after_worker_died()
        enqueue_sync(run_id)
    log.warning("sync.recovered", run_id=run_id, attempt=run.attempts + 1)
    return True


def check() -> None:
    """One pass: resume syncs whose worker died, then queue the due sources."""
    recover_stale_runs()
    enqueue_due_sources()


def check_seconds() -> float:
    return max(0.5, float(settings.SYNC_CHECK_SECONDS))


def schedule_loop(stop: threading.Event) -> None:
    """Runs in the worker: `check()` every SYNC_CHECK_SECONDS until stopped."""
    while not stop.wait(check_seconds()):
        try:
            close_old_connections()
            check()
        except Exception:
            log.warning("sync.check_failed", exc_info=True)
    connection.close()

"""Recovery of jobs whose worker died (SIGKILL, OOM, power loss): their heartbeat goes stale, and they are queued again.

The worker that picks such a job up carries on with the files that have no outcome yet.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import structlog
from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from console.models import IngestJob
from console.tasks import enqueue_job

log = structlog.get_logger(__name__, component="ingest_job")


def recovery_interval_seconds() -> float:
    return max(1.0, min(30.0, settings.INGEST_STALE_SECONDS / 2))


def recover_stale_jobs(*, stale_seconds: float | None = None) -> list[int]:
    """Queues again every job whose worker stopped beating (SIGKILL, OOM, power loss); returns their ids."""
    stale = settings.INGEST_STALE_SECONDS if stale_seconds is None else stale_seconds
    cutoff = timezone.now() - timedelta(seconds=stale)
    running = IngestJob.objects.filter(state__in=(IngestJob.State.RUNNING, IngestJob.State.CANCELLING), heartbeat_at__lt=cutoff)
    # Claimed by a worker that died before it could mark the job running.
    claimed = list(
        DBTaskResult.objects.filter(status="RUNNING", started_at__lt=cutoff).values_list("id", flat=True)
    )
    orphans = IngestJob.objects.filter(state=IngestJob.State.QUEUED, task_id__in=[str(i) for i in claimed])
    # Created by a process that stopped between its commit and queueing the task (create_job queues it once
    # the job is committed): no worker would ever run it.
    untasked = IngestJob.objects.filter(state=IngestJob.State.QUEUED, task_id="", created_at__lt=cutoff)
    recovered = []
    for pk in {*running.values_list("pk", flat=True), *orphans.values_list("pk", flat=True),
               *untasked.values_list("pk", flat=True)}:
        if _requeue_dead(pk, cutoff):
            recovered.append(pk)
    return sorted(recovered)


def _requeue_dead(job_id: int, cutoff: datetime) -> bool:
    with transaction.atomic():
        job = IngestJob.objects.select_for_update().get(pk=job_id)
        alive = job.heartbeat_at and job.heartbeat_at >= cutoff
        if job.is_finished or (job.state in (IngestJob.State.RUNNING, IngestJob.State.CANCELLING) and alive):
            return False  # it finished or beat again while we looked
        if job.state == IngestJob.State.QUEUED and not job.task_id:  # never started: nothing to fail or count
            enqueue_job(job_id)
            log.warning("job.task_queued_late", job_id=job_id)
            return True
        if job.state == IngestJob.State.CANCELLING:  # its worker died while stopping it: finish the cancel
            job.cancel(reason="cancelled; its worker had died")
            log.warning("job.cancel_finished", job_id=job_id, reason="worker died")
            return True
        fail_dead_task(job.task_id, "job")
        job.requeue_after_worker_died()
        enqueue_job(job_id)
    log.warning("job.recovered", job_id=job_id, attempt=job.attempts + 1)
    return True


def fail_dead_task(task_id: str, what: str) -> None:
    """Marks a dead worker's task result failed, so django-tasks shows it as such and not as running forever."""
    if task_id:
        DBTaskResult.objects.filter(id=task_id, status="RUNNING").update(
            status="FAILED", finished_at=timezone.now(),
            exception_class_path="console.tasks.WorkerDied", traceback=f"worker died; the {what} was queued again",
        )


def recovery_loop(stop: threading.Event) -> None:
    """Runs in the worker: recovers stale jobs every `recovery_interval_seconds()` until stopped."""
    interval = recovery_interval_seconds()
    while not stop.wait(interval):
        try:
            close_old_connections()
            recover_stale_jobs()
        except Exception:
            log.warning("job.recovery_failed", exc_info=True)
    connection.close()

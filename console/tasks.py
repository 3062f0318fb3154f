"""The worker's tasks: an ingest job's and a source sync's entry points, and how each is queued.

The tasks' paths (`console.tasks.run_ingest_job`, `console.tasks.run_source_sync`) are stored with every
queued task, so they stay here.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone
from django_tasks import TaskContext, task

from console.ingest.worker import process_job
from console.models import IngestJob, SyncRun
from console.syncing.runs import run_sync


@task(takes_context=True)
def run_ingest_job(context: TaskContext, job_id: int) -> dict[str, Any]:
    """Runs one ingest job; never raises past the job record."""
    return process_job(job_id, task_id=str(context.task_result.id), requeue=enqueue_job)


def enqueue_job(job_id: int, *, delay_seconds: float = 0.0) -> str:
    """Queues the job's task and records its id in the same transaction, so a worker never sees one without the other."""
    queued = run_ingest_job
    if delay_seconds > 0:
        queued = queued.using(run_after=timezone.now() + timedelta(seconds=delay_seconds))
    with transaction.atomic():
        result = queued.enqueue(job_id)
        IngestJob.objects.filter(pk=job_id).update(task_id=str(result.id))
    return str(result.id)


@task(takes_context=True)
def run_source_sync(context: TaskContext, run_id: int) -> dict[str, Any]:
    """Runs (or resumes) one sync of a source; never raises past the run record."""
    return run_sync(run_id, task_id=str(context.task_result.id))


def enqueue_sync(run_id: int) -> str:
    """Queues the sync's task and records its id in the same transaction, as `enqueue_job` does for a job."""
    with transaction.atomic():
        result = run_source_sync.enqueue(run_id)
        SyncRun.objects.filter(pk=run_id).update(task_id=str(result.id))
    return str(result.id)

"""The ingest job's task: its entry point, and how a job is queued as it.

The task's path, `console.tasks.run_ingest_job`, is stored with every queued task, so it stays here.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone
from django_tasks import TaskContext, task

from console.ingest.worker import process_job
from console.models import IngestJob


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

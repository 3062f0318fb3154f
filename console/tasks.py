"""The ingest job's task entry point; its path, `console.tasks.run_ingest_job`, is stored with every queued task."""

from __future__ import annotations

from typing import Any

from django_tasks import TaskContext, task

from console.ingest.worker import process_job


@task(takes_context=True)
def run_ingest_job(context: TaskContext, job_id: int) -> dict[str, Any]:
    """Runs one ingest job; never raises past the job record."""
    return process_job(job_id, task_id=str(context.task_result.id))

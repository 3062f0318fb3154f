"""An ingest job's status as plain data, and `GET /status/<job_id>`: that data as JSON, for staff only."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.http import require_GET

from console.models import IngestJob, IngestJobFile


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


@require_GET
def job_status_view(request: HttpRequest, job_id: int) -> JsonResponse:
    """The job's state, stage, progress, ETA and per-file results; tracebacks included for staff."""
    # A JSON client wants a status code, not the login page a redirect would give it.
    if not request.user.is_authenticated:
        return JsonResponse({"error": "authentication required"}, status=401)
    if not request.user.is_staff:
        return JsonResponse({"error": "staff only"}, status=403)
    job = IngestJob.objects.filter(pk=job_id).first()
    if job is None:
        return JsonResponse({"error": f"no job {job_id}"}, status=404)
    return JsonResponse(job_status(job, include_traceback=True))

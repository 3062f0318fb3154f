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
    running = next((f for f in files if f.state == IngestJobFile.State.RUNNING), None)
    return {
        "id": job.pk,
        "state": job.state,
        "stage": job.stage,
        "progress": {"done": job.progress_done, "total": job.progress_total},
        "current": _current(running),
        "eta_seconds": eta_seconds(job, files),
        "refused": sum(1 for f in files if f.state == IngestJobFile.State.REFUSED),
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
        "chunks_embedded": f.chunks_embedded,
        "chunks_total": f.chunks_total,
        "error_type": f.error_type,
        "error_message": f.error_message,
    }
    if include_traceback:
        row["traceback"] = f.traceback
    return row


def _current(f: IngestJobFile | None) -> dict[str, Any] | None:
    """The file being worked on, with its chunks embedded of total (0 of 0 while it is parsed)."""
    if f is None:
        return None
    return {"filename": f.filename, "chunks_embedded": f.chunks_embedded, "chunks_total": f.chunks_total,
            "eta_seconds": _file_eta(f)}


def _file_eta(f: IngestJobFile) -> float | None:
    """What is left of a running file, at the pace of its chunks embedded so far; None until there is one."""
    if not f.started_at or not f.chunks_embedded or not f.chunks_total:
        return None
    elapsed = (timezone.now() - f.started_at).total_seconds()
    return max(elapsed / f.chunks_embedded * (f.chunks_total - f.chunks_embedded), 0.0)


def eta_seconds(job: IngestJob, files: list[IngestJobFile] | None = None) -> float | None:
    """Seconds left: the running file's rest at its own chunk pace, plus each queued file at the pace of the
    files done so far; None while nothing is known yet."""
    if job.state != IngestJob.State.RUNNING:
        return None
    files = list(job.files.all()) if files is None else files
    done = [f for f in files if f.state in (IngestJobFile.State.INDEXED, IngestJobFile.State.UNCHANGED)]
    queued = sum(1 for f in files if f.state == IngestJobFile.State.QUEUED)
    running = [f for f in files if f.state == IngestJobFile.State.RUNNING]
    per_file = sum(f.seconds for f in done) / len(done) if done else None
    current: float | None = 0.0
    if running:
        f = running[0]
        current = _file_eta(f)
        if per_file is None and current is not None and f.started_at:
            # Only the running file's pace is known: the queued ones are taken to be like it.
            per_file = (timezone.now() - f.started_at).total_seconds() + current
        elif current is None:
            current = per_file  # still parsing: a file like the others
    if current is None or (queued and per_file is None):
        return None
    return round(current + queued * (per_file or 0.0), 1)


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

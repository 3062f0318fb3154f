"""`GET /status/<job_id>`: an ingest job as JSON, for staff only."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from console.ingest.uploads import job_status
from console.models import IngestJob


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

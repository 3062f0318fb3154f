"""Removing Lorebot's guide from the console, in one action (console.ingest.guide does the work)."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from console.ingest import guide
from console.pages.views import staff_required


@require_POST
@staff_required
def guide_remove_view(request: HttpRequest) -> HttpResponse:
    job = guide.remove_guide(request.user)
    if job is None:
        messages.info(request, "Lorebot's guide is not loaded; it will stay out.")
        return redirect("console:documents")
    messages.success(request, f"Removing Lorebot's guide: {job.progress_total} documents are leaving both indexes. "
                              "make run will not bring them back.")
    return redirect("console:job", job_id=job.pk)

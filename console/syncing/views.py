"""The console's sources pages: list with freshness, add, edit, pause/resume, sync now, delete, and a source's runs."""

from __future__ import annotations

import structlog
from django.contrib import messages
from django.db.models import Prefetch
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from console.access import moves
from console.models import Document, Source, SyncFailure, SyncRun
from console.pages.views import staff_required
from console.syncing import service, status
from console.syncing.forms import SourceForm, masked_config
from ragcore.connectors import KINDS

log = structlog.get_logger(__name__, component="sync")

RUNS_SHOWN = 20
FAILURES_SHOWN = 100  # per run; the count says how many there were


@require_GET
@staff_required
def sources_view(request: HttpRequest) -> HttpResponse:
    return render(request, "syncing/sources.html", {"rows": status.freshness(), "nav": "sources"})


@require_http_methods(["GET", "POST"])
@staff_required
def source_add_view(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        form = SourceForm(request.POST)
        if form.is_valid():
            source = service.save_source(form.save(request.user))
            messages.success(request, f"Source {source.name} added. " + (
                "Its first sync is queued." if source.every_minutes else "Sync it now to index its documents."))
            return redirect("syncing:source", source.pk)
    else:
        kind = request.GET.get("kind", "")
        form = SourceForm(initial={"kind": kind if kind in KINDS else "folder",
                                   "schedule": "manual", "every": 1, "unit": "hours"})
    return render(request, "syncing/source_form.html", {"form": form, "source": None, "nav": "sources"})


@require_http_methods(["GET", "POST"])
@staff_required
def source_edit_view(request: HttpRequest, source_id: int) -> HttpResponse:
    source = get_object_or_404(Source.objects.select_related("last_run"), pk=source_id)
    if request.method == "POST":
        form = SourceForm(request.POST, instance=source)
        if form.is_valid():
            target = form.moved_to()
            service.save_source(form.save(request.user))
            text = f"Source {source.name} saved."
            if target is not None:
                try:
                    text += " " + moves.move_source(source, target, user=request.user).summary(target)
                except moves.MoveError as exc:
                    messages.error(request, f"{text} Its collection was not changed: {exc}.")
                    return redirect("syncing:source", source.pk)
                except Exception as exc:  # the indexes are down: nothing moved
                    log.warning("source.move_failed", source_id=source.pk, error=str(exc))
                    messages.error(request, f"{text} Its documents could not be moved: {exc}")
                    return redirect("syncing:source", source.pk)
            messages.success(request, text)
            return redirect("syncing:source", source.pk)
    else:
        form = SourceForm(instance=source)
    return render(request, "syncing/source_form.html", {"form": form, "source": source, "nav": "sources"})


@require_GET
@staff_required
def source_view(request: HttpRequest, source_id: int) -> HttpResponse:
    source = get_object_or_404(Source.objects.select_related("last_run", "collection"), pk=source_id)
    runs = list(SyncRun.objects.filter(source=source).select_related("created_by").prefetch_related(
        Prefetch("failures", queryset=SyncFailure.objects.order_by("pk")))[:RUNS_SHOWN])
    rows = []
    for run in runs:
        failures = list(run.failures.all())
        rows.append({"run": run, "failures": failures[:FAILURES_SHOWN], "more": max(0, len(failures) - FAILURES_SHOWN)})
    documents = Document.objects.filter(source=source).exclude(status=Document.Status.DELETING).count()
    return render(request, "syncing/source.html", {
        "source": source, "runs": rows, "documents": documents, "config": [(k, ", ".join(map(str, v)) if isinstance(v, list) else v) for k, v in masked_config(source).items()],
        "active": service.active_run(source), "nav": "sources",
    })


@require_POST
@staff_required
def source_sync_view(request: HttpRequest, source_id: int) -> HttpResponse:
    source = get_object_or_404(Source, pk=source_id)
    try:
        run = service.request_sync(source, trigger=SyncRun.Trigger.MANUAL, user=request.user)
    except service.SyncError as exc:
        messages.warning(request, str(exc))
    else:
        messages.success(request, f"Sync of {source.name} queued (run {run.pk}).")
    return redirect("syncing:source", source.pk)


@require_POST
@staff_required
def source_pause_view(request: HttpRequest, source_id: int) -> HttpResponse:
    source = get_object_or_404(Source, pk=source_id)
    source.pause()
    log.info("source.paused", source_id=source.pk)
    messages.success(request, f"{source.name} is paused: no scheduled syncs until it is resumed.")
    return redirect("syncing:source", source.pk)


@require_POST
@staff_required
def source_resume_view(request: HttpRequest, source_id: int) -> HttpResponse:
    source = get_object_or_404(Source.objects.select_related("last_run"), pk=source_id)
    source.resume()
    log.info("source.resumed", source_id=source.pk)
    messages.success(request, f"{source.name} is resumed ({source.schedule_text()}).")
    return redirect("syncing:source", source.pk)


@require_http_methods(["GET", "POST"])
@staff_required
def source_delete_view(request: HttpRequest, source_id: int) -> HttpResponse:
    source = get_object_or_404(Source, pk=source_id)
    documents = Document.objects.filter(source=source).exclude(status=Document.Status.DELETING).count()
    if request.method == "POST":
        name = source.name
        try:
            service.delete_source(source, request.user)
        except service.SyncError as exc:
            messages.error(request, str(exc))
            return redirect("syncing:source", source.pk)
        messages.success(request, f"Source {name} deleted; its {documents} document{'s' if documents != 1 else ''} "
                                  "are being removed from both indexes.")
        return redirect("syncing:sources")
    return render(request, "syncing/source_delete.html", {"source": source, "documents": documents, "nav": "sources"})

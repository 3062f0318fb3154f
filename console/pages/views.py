"""The staff console under /console/ (dashboard, documents, jobs, conversations), and the home page."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from functools import wraps
from typing import Any

import structlog
from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.core.paginator import Page, Paginator
from django.db.models import Count, Exists, OuterRef, Prefetch, Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from console.access.moves import why_not_movable
from console.accounts.landing import home_url
from console.chat.history import citations_of
from console.engine import get_engine
from console.ingest import guide, jobs, uploads
from console.ingest.status import job_status
from console.markdown import render_answer
from console.models import Conversation, Document, Feedback, IngestJob, IngestJobFile, Message
from console.ops.counts import collect_counts
from console.pages import charts, stats
from console.pages.access_forms import MoveForm
from console.pages.forms import ConversationFilterForm, DocumentFilterForm, JobFilterForm, UploadForm
from console.pages.searched import name_searched_collections
from console.sources.links import source_url
from console.syncing.origins import synced_text
from console.syncing.status import freshness

log = structlog.get_logger(__name__)

PER_PAGE = 50
MESSAGES_PER_PAGE = 100
PREVIEW_CHUNKS = 10
VERSION_CHAIN_LIMIT = 20

View = Callable[..., HttpResponse]


def staff_required(view: View) -> View:
    """Anonymous users go to the login page; logged-in users who are not staff get 403."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not (request.user.is_active and request.user.is_staff):
            raise PermissionDenied("The console is for staff only.")
        return view(request, *args, **kwargs)

    return wrapper


def _paginate(request: HttpRequest, queryset: QuerySet[Any], per_page: int = PER_PAGE) -> Page:
    return Paginator(queryset, per_page).get_page(request.GET.get("page"))


# -- plain pages --------------------------------------------------------------------------------


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    """Logged-in users go straight to where they work (console or chat); visitors see what Lorebot is."""
    if request.user.is_authenticated:
        return redirect(home_url(request.user))
    return render(request, "console/home.html")


# -- dashboard ----------------------------------------------------------------------------------


@require_GET
@staff_required
def dashboard_view(request: HttpRequest) -> HttpResponse:
    figures = stats.collect_stats()
    return render(
        request,
        "console/dashboard.html",
        {
            "stats": figures,
            "counts": collect_counts(),  # the documents and chunks as the indexes hold them, as /health/ready shows
            "questions_chart": charts.bar_chart(figures.questions_per_day),
            "latency_chart": charts.line_chart(figures.latency_per_day),
            "sources": freshness(),  # each synced source's last sync, flagged when it failed
            "nav": "dashboard",
        },
    )


# -- documents ----------------------------------------------------------------------------------


def _document_kinds() -> list[str]:
    kinds = Document.objects.order_by("kind").values_list("kind", flat=True).distinct()
    return [k for k in kinds if k]


def _summary_message(request: HttpRequest, result: uploads.SubmitResult) -> None:
    """One flash message for the whole upload: how many were accepted, and each refused file with its reason."""
    text = result.summary()
    if not result.refused:
        messages.success(request, text)
    elif result.accepted:
        messages.warning(request, text)
    else:
        messages.error(request, text)


@require_http_methods(["GET", "POST"])
@staff_required
def documents_view(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        upload = UploadForm(request.POST, request.FILES)
        if upload.is_valid():
            files = upload.chosen()
            paths = uploads.parse_paths(upload.cleaned_data["paths"], len(files))
            result = uploads.submit_uploads(files, request.user, paths=paths,
                                            collection=upload.cleaned_data["collection"])
            _summary_message(request, result)
            if result.job is not None:
                return redirect("console:job", job_id=result.job.pk)
            return redirect("console:documents")
        for errors in upload.errors.values():
            for error in errors:
                messages.error(request, str(error))
        return redirect("console:documents")

    kinds = _document_kinds()
    filters = DocumentFilterForm(request.GET, kinds=kinds)
    documents = Document.objects.select_related("uploaded_by", "collection").order_by("-created_at", "-pk")
    if filters.is_valid():
        data = filters.cleaned_data
        if data["status"]:
            documents = documents.filter(status=data["status"])
        else:
            documents = documents.exclude(status=Document.Status.SUPERSEDED)
        if data["kind"]:
            documents = documents.filter(kind=data["kind"])
        if data["collection"]:
            documents = documents.filter(collection=data["collection"])
        if data["q"]:
            q = data["q"].strip()
            documents = documents.filter(Q(title__icontains=q) | Q(original_filename__icontains=q))
    return render(
        request,
        "console/documents.html",
        {"page": _paginate(request, documents), "filters": filters, "upload": UploadForm(), "nav": "documents",
         "guide_documents": guide.guide_documents().count(), "move": MoveForm()},
    )


def _version_chain(doc: Document) -> list[Document]:
    """Every version of this document, oldest first, walking `previous` back and `next_versions` on."""
    older: list[Document] = []
    cursor = doc
    while cursor.previous_id and len(older) < VERSION_CHAIN_LIMIT:
        cursor = Document.objects.only("pk", "title", "original_filename", "version", "status", "created_at", "previous_id").get(
            pk=cursor.previous_id
        )
        older.append(cursor)
    newer: list[Document] = []
    cursor = doc
    while len(newer) < VERSION_CHAIN_LIMIT:
        following = cursor.next_versions.order_by("-created_at").first()
        if following is None:
            break
        newer.append(following)
        cursor = following
    return [*reversed(older), doc, *newer]


def _chunk_preview(doc: Document) -> tuple[list[Any], str]:
    """The first chunks of this document as the vector store holds them, or why there are none."""
    if not doc.chunk_count:
        return [], ""
    ids = [f"{doc.engine_id}:{position}" for position in range(min(doc.chunk_count, PREVIEW_CHUNKS))]
    try:
        found = get_engine().store.get_chunks(ids)
    except Exception as exc:  # the page must render even when the index is unreachable
        log.warning("console.preview_failed", document_id=doc.pk, error=str(exc))
        return [], f"The chunk preview is unavailable: {exc}"
    return [found[cid] for cid in ids if cid in found], ""


@require_GET
@staff_required
def document_view(request: HttpRequest, doc_id: int) -> HttpResponse:
    doc = get_object_or_404(Document.objects.select_related("uploaded_by", "previous", "collection"), pk=doc_id)
    chunks, preview_error = _chunk_preview(doc)
    jobs = (
        IngestJobFile.objects.filter(document=doc).select_related("job").order_by("-job__created_at")[:10]
    )
    return render(
        request,
        "console/document.html",
        {
            "doc": doc,
            "versions": _version_chain(doc),
            "chunks": chunks,
            "preview_error": preview_error,
            "job_files": jobs,
            "move": MoveForm(initial={"collection": doc.collection_id}),
            "why_not_movable": why_not_movable(doc),
            "nav": "documents",
        },
    )


@require_http_methods(["GET", "POST"])
@staff_required
def document_delete_view(request: HttpRequest, doc_id: int) -> HttpResponse:
    doc = get_object_or_404(Document, pk=doc_id)
    if request.method == "GET":
        return render(request, "console/document_delete.html", {"doc": doc, "nav": "documents"})
    try:
        job = jobs.delete_document(doc, request.user)
    except jobs.IngestError as exc:
        messages.error(request, f"Could not delete {doc}: {exc}")
        return redirect("console:document", doc_id=doc.pk)
    messages.success(request, f"Deleting {doc}: its chunks are being removed from both indexes.")
    return redirect("console:job", job_id=job.pk)


@require_POST
@staff_required
def document_reingest_view(request: HttpRequest, doc_id: int) -> HttpResponse:
    doc = get_object_or_404(Document, pk=doc_id)
    try:
        job = jobs.reingest_document(doc, request.user)
    except jobs.IngestError as exc:
        messages.error(request, f"Could not re-ingest {doc}: {exc}")
        return redirect("console:document", doc_id=doc.pk)
    messages.success(request, f"Re-ingesting {doc}.")
    return redirect("console:job", job_id=job.pk)


# -- jobs ---------------------------------------------------------------------------------------


@require_GET
@staff_required
def jobs_view(request: HttpRequest) -> HttpResponse:
    filters = JobFilterForm(request.GET)
    jobs = IngestJob.objects.select_related("created_by").order_by("-created_at", "-pk")
    if filters.is_valid() and filters.cleaned_data["state"]:
        jobs = jobs.filter(state=filters.cleaned_data["state"])
    page = _paginate(request, jobs)
    # Per-file counts for this page only: one grouped query instead of a join over every job.
    ids = [job.pk for job in page.object_list]
    counts: dict[int, Any] = {
        row["job"]: row
        for row in IngestJobFile.objects.filter(job__in=ids)
        .values("job")
        .annotate(total=Count("id"), failed=Count("id", filter=Q(state=IngestJobFile.State.FAILED)),
                  n_refused=Count("id", filter=Q(state=IngestJobFile.State.REFUSED)))
        .order_by()
    }
    for job in page.object_list:
        row = counts.get(job.pk, {})
        job.files_total = row.get("total", 0)
        job.files_failed = row.get("failed", 0)
        job.files_refused = row.get("n_refused", 0)
    return render(request, "console/jobs.html", {"page": page, "filters": filters, "nav": "jobs"})


@require_GET
@staff_required
def job_view(request: HttpRequest, job_id: int) -> HttpResponse:
    job = get_object_or_404(IngestJob.objects.select_related("created_by"), pk=job_id)
    status = job_status(job)
    context = {
        "job": job,
        "files": job.files.order_by("pk"),
        "percent": int(100 * job.progress_done / job.progress_total) if job.progress_total else 0,
        "eta_seconds": status["eta_seconds"],
        "current": status["current"],
        "retryable": job.files.filter(state__in=IngestJobFile.RETRYABLE, document__isnull=False).exists(),
        "status_url": reverse("job-status", args=[job.pk]),
        "nav": "jobs",
    }
    return render(request, "console/job.html", context)


@require_POST
@staff_required
def job_retry_view(request: HttpRequest, job_id: int) -> HttpResponse:
    job = get_object_or_404(IngestJob, pk=job_id)
    try:
        jobs.retry_job(job)
    except jobs.IngestError as exc:
        messages.error(request, f"Could not retry job {job.pk}: {exc}")
    else:
        job.refresh_from_db()
        queued = job.files.filter(state=IngestJobFile.State.QUEUED).count()
        messages.success(request, f"Job {job.pk} queued again: {queued} failed or cancelled file{'s' if queued != 1 else ''} will be retried.")
    return redirect("console:job", job_id=job.pk)


@require_POST
@staff_required
def job_cancel_view(request: HttpRequest, job_id: int) -> HttpResponse:
    job = get_object_or_404(IngestJob, pk=job_id)
    try:
        jobs.cancel_job(job)
    except jobs.IngestError as exc:
        messages.error(request, f"Could not cancel job {job.pk}: {exc}")
    else:
        job.refresh_from_db()
        if job.state == IngestJob.State.CANCELLING:
            messages.success(request, f"Job {job.pk} is being cancelled: the file being indexed stops at its next step.")
        else:
            messages.success(request, f"Job {job.pk} cancelled.")
    return redirect("console:job", job_id=job.pk)


# -- conversations ------------------------------------------------------------------------------


def _midnight(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


def _has_vote(value: int) -> Exists:
    return Exists(Feedback.objects.filter(message__conversation=OuterRef("pk"), value=value))


@require_GET
@staff_required
def conversations_view(request: HttpRequest) -> HttpResponse:
    filters = ConversationFilterForm(request.GET)
    conversations = Conversation.objects.select_related("user").order_by("-updated_at", "-pk")
    if filters.is_valid():
        data = filters.cleaned_data
        if data["surface"]:
            conversations = conversations.filter(surface=data["surface"])
        # Local-midnight bounds rather than __date lookups, so the updated_at index serves the range.
        if data["since"]:
            conversations = conversations.filter(updated_at__gte=_midnight(data["since"]))
        if data["until"]:
            conversations = conversations.filter(updated_at__lt=_midnight(data["until"] + timedelta(days=1)))
        if data["feedback"] == "up":
            conversations = conversations.filter(_has_vote(1))
        elif data["feedback"] == "down":
            conversations = conversations.filter(_has_vote(-1))
        if data["q"]:
            q = data["q"].strip()
            conversations = conversations.filter(Q(title__icontains=q) | Q(user_key__icontains=q) | Q(external_key__icontains=q))
    page = _paginate(request, conversations)
    # Message and vote counts for the 50 rows on this page only (two grouped queries, no N+1).
    ids = [c.pk for c in page.object_list]
    counts = dict(
        Message.objects.filter(conversation__in=ids).values_list("conversation").annotate(n=Count("id")).order_by()
    )
    votes: dict[tuple[int, int], int] = {
        (row["message__conversation"], row["value"]): row["n"]
        for row in Feedback.objects.filter(message__conversation__in=ids)
        .values("message__conversation", "value")
        .annotate(n=Count("id"))
        .order_by()
    }
    for c in page.object_list:
        c.message_count = counts.get(c.pk, 0)
        c.thumbs_up = votes.get((c.pk, 1), 0)
        c.thumbs_down = votes.get((c.pk, -1), 0)
    return render(request, "console/conversations.html", {"page": page, "filters": filters, "nav": "conversations"})


@require_GET
@staff_required
def conversation_view(request: HttpRequest, conversation_id: int) -> HttpResponse:
    conversation = get_object_or_404(Conversation.objects.select_related("user"), pk=conversation_id)
    history = conversation.messages.order_by("created_at", "pk").prefetch_related(
        Prefetch("feedback", queryset=Feedback.objects.order_by("created_at"))
    )
    page = _paginate(request, history, MESSAGES_PER_PAGE)
    for message in page.object_list:
        # Every citation opens the source viewer, which says so when its document was deleted since.
        message.citation_rows = [{**c.to_dict(), "url": source_url(c), "synced": synced_text(c)}
                                 for c in citations_of(message)]
        if message.role == Message.Role.ASSISTANT:
            message.html = render_answer(message.text, f"cite-{message.pk}-")
    name_searched_collections(page.object_list)  # what each answer could find: the asker's scope then
    totals = conversation.messages.aggregate(
        n=Count("id"),
        up=Count("feedback", filter=Q(feedback__value=1)),
        down=Count("feedback", filter=Q(feedback__value=-1)),
    )
    return render(
        request,
        "console/conversation.html",
        {"conversation": conversation, "page": page, "totals": totals, "nav": "conversations"},
    )

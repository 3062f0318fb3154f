"""The console's collections pages: list, add, edit (name, description, who may see it), delete; and moves.

A collection is deleted only when empty: its documents are moved first (the document page, or the
documents list's bulk move), so nothing becomes visible to more people, or lost, by a delete.
"""

from __future__ import annotations

import structlog
from django.contrib import messages
from django.db import transaction
from django.db.models import Count, ProtectedError, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods, require_POST

from console.access import audit, moves
from console.models import Collection, Document
from console.pages.access_forms import BulkMoveForm, CollectionForm, MoveForm
from console.pages.views import staff_required

log = structlog.get_logger(__name__, component="access")


def _with_counts() -> list[Collection]:
    current = ~Q(documents__status__in=Document.NOT_CURRENT)
    return list(Collection.objects.annotate(document_count=Count("documents", filter=current, distinct=True),
                                            source_count=Count("sources", distinct=True))
                .prefetch_related("groups").order_by("name"))


def _grants(form: CollectionForm) -> list[str]:
    groups = form.cleaned_data["groups"] if form.cleaned_data["visibility"] == Collection.Visibility.GROUPS else []
    return [g.name for g in groups]


@require_http_methods(["GET", "POST"])
@staff_required
def collections_view(request: HttpRequest) -> HttpResponse:
    form = CollectionForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        collection = Collection.create(data["name"], description=data["description"], visibility=data["visibility"])
        collection.groups.set(data["groups"] if collection.is_restricted else [])
        audit.record(request.user, collection, audit.ADDED,
                     f"Added from the console; visible to {collection.describe_access()}.")
        log.info("collection.created", key=collection.key, by=request.user.pk, groups=_grants(form))
        messages.success(request, f"Collection {collection.name} added (key {collection.key}); "
                                  f"visible to {collection.describe_access()}.")
        return redirect("console:collections")
    return render(request, "console/collections.html",
                  {"collections": _with_counts(), "form": form, "nav": "access", "tab": "collections"})


@require_http_methods(["GET", "POST"])
@staff_required
def collection_view(request: HttpRequest, collection_id: int) -> HttpResponse:
    collection = get_object_or_404(Collection, pk=collection_id)
    form = CollectionForm(request.POST or None, instance=collection)
    if request.method == "POST" and form.is_valid():
        before = (collection.name, collection.describe_access())
        data = form.cleaned_data
        collection.edit(name=data["name"], description=data["description"], visibility=data["visibility"],
                        groups=data["groups"])
        after = (collection.name, collection.describe_access())
        changes = [f"renamed from {before[0]} to {after[0]}"] if before[0] != after[0] else []
        if before[1] != after[1]:
            changes.append(f"visible to {after[1]} (was {before[1]})")
        audit.record(request.user, collection, audit.CHANGED,
                     ("Changed from the console: " + "; ".join(changes) + ".") if changes else "Saved unchanged.")
        log.info("collection.changed", key=collection.key, by=request.user.pk, changes=changes)
        messages.success(request, f"Collection {collection.name} saved; visible to {collection.describe_access()}.")
        return redirect("console:collection", collection.pk)
    documents = collection.documents.exclude(status__in=Document.NOT_CURRENT)
    return render(request, "console/collection.html", {
        "collection": collection, "form": form, "document_count": documents.count(),
        "recent": documents.order_by("-created_at", "-pk")[:10], "sources": collection.sources.order_by("name"),
        "move": MoveForm(initial={"collection": Collection.default().pk}),
        "scopes": collection.channel_scopes.all(), "nav": "access", "tab": "collections",
    })


@require_http_methods(["GET", "POST"])
@staff_required
def collection_delete_view(request: HttpRequest, collection_id: int) -> HttpResponse:
    collection = get_object_or_404(Collection, pk=collection_id)
    if request.method == "POST":
        name, key = collection.name, collection.key
        try:
            with transaction.atomic():
                why = collection.why_not_deletable()
                if not why:
                    audit.record(request.user, collection, audit.DELETED, "Deleted from the console (it was empty).")
                    collection.delete()
        except ProtectedError:  # a document or source arrived between the check and the delete
            why = "documents or a source were added to it meanwhile; move them to another collection first"
        if why:
            messages.error(request, f"{name} was not deleted: {why}.")
            return redirect("console:collection", collection_id)
        log.info("collection.deleted", key=key, by=request.user.pk)
        messages.success(request, f"Collection {name} deleted.")
        return redirect("console:collections")
    return render(request, "console/collection_delete.html", {
        "collection": collection, "why": collection.why_not_deletable(), "scopes": collection.channel_scopes.all(),
        "nav": "access", "tab": "collections",
    })


# -- moves ---------------------------------------------------------------------------------------


def _flash(request: HttpRequest, result: moves.MoveResult, collection: Collection) -> None:
    text = result.summary(collection)
    if result.refused and not result.moved:
        messages.error(request, text)
    elif result.refused:
        messages.warning(request, text)
    else:
        messages.success(request, text)


@require_POST
@staff_required
def collection_move_all_view(request: HttpRequest, collection_id: int) -> HttpResponse:
    """Every upload in this collection goes to another (synced documents follow their sources)."""
    collection = get_object_or_404(Collection, pk=collection_id)
    form = MoveForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose the collection to move them to.")
        return redirect("console:collection", collection.pk)
    target = form.cleaned_data["collection"]
    current = collection.documents.exclude(status__in=Document.NOT_CURRENT)
    try:
        result = moves.move_documents(list(current.filter(source__isnull=True)), target, user=request.user)
    except Exception as exc:  # the indexes are down: nothing moved
        log.warning("documents.move_failed", collection=collection.key, error=str(exc))
        messages.error(request, f"Could not move the documents: {exc}")
        return redirect("console:collection", collection.pk)
    _flash(request, result, target)
    if synced := current.filter(source__isnull=False).count():
        messages.info(request, f"{synced} synced document{'s' if synced != 1 else ''} stay{'' if synced != 1 else 's'} "
                               "with their source; change the source's collection to move them.")
    return redirect("console:collection", collection.pk)


@require_POST
@staff_required
def document_move_view(request: HttpRequest, doc_id: int) -> HttpResponse:
    doc = get_object_or_404(Document, pk=doc_id)
    form = MoveForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose the collection to move it to.")
        return redirect("console:document", doc_id=doc.pk)
    target = form.cleaned_data["collection"]
    try:
        result = moves.move_documents([doc], target, user=request.user)
    except Exception as exc:  # the indexes are down: nothing moved (the rows rolled back); say why
        log.warning("document.move_failed", document_id=doc.pk, error=str(exc))
        messages.error(request, f"Could not move {doc}: {exc}")
    else:
        _flash(request, result, target)
    return redirect("console:document", doc_id=doc.pk)


@require_POST
@staff_required
def documents_move_view(request: HttpRequest) -> HttpResponse:
    form = BulkMoveForm(request.POST)
    back = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        back = ""
    if not form.is_valid():
        for errors in form.errors.values():
            for error in errors:
                messages.error(request, str(error))
        return redirect(back or "console:documents")
    target = form.cleaned_data["collection"]
    try:
        result = moves.move_documents(list(form.cleaned_data["documents"]), target, user=request.user)
    except Exception as exc:  # the indexes are down: nothing moved
        log.warning("documents.move_failed", error=str(exc))
        messages.error(request, f"Could not move the documents: {exc}")
    else:
        _flash(request, result, target)
    return redirect(back or "console:documents")



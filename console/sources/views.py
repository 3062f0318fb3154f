"""/sources/<id>/: a document as members read it, scrolled to the cited passage; and its original to download."""

from __future__ import annotations

from functools import lru_cache

import structlog
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_GET

from console.access.metrics import ACCESS_REFUSED
from console.access.visibility import can_see_document
from console.engine import get_engine
from console.ingest import storage
from console.models import Document
from console.sources.rendering import RenderedSection, render_document
from ragcore import loaders
from ragcore.errors import LoaderError
from ragcore.metrics import PIPELINE_ERRORS
from ragcore.types import Chunk, ParsedDocument

log = structlog.get_logger(__name__, component="sources")

# Parsed originals kept per process: a reader following several citations of one answer parses it once.
PARSED_CACHE_SIZE = 8


def _original_bytes(checksum: str, filename: str) -> bytes | None:
    """The original as uploaded, through the storage seam; None when it is gone."""
    try:
        with storage.named_original(checksum, filename) as path:
            return path.read_bytes()
    except OSError:
        return None


@lru_cache(maxsize=PARSED_CACHE_SIZE)
def _parsed(checksum: str, filename: str) -> ParsedDocument:
    """The original parsed as the worker parsed it; FileNotFoundError when it is gone (never cached), LoaderError
    when it cannot be read. Keyed by checksum: the same bytes always parse the same, so an entry never goes stale."""
    data = _original_bytes(checksum, filename)
    if data is None:
        raise FileNotFoundError(checksum)
    return loaders.load_bytes(data, filename)


def _cited_chunk(doc: Document, passage: str) -> Chunk | None:
    """The chunk the citation names (position `passage` of this document), as both indexes hold it."""
    if not passage.isdigit():
        return None
    chunk_id = f"{doc.engine_id}:{int(passage)}"
    try:
        return get_engine().store.get_chunks([chunk_id]).get(chunk_id)
    except Exception as exc:  # the document still shows, without the highlight, when the index is unreachable
        log.warning("source.passage_unavailable", document_id=doc.pk, error=str(exc))
        PIPELINE_ERRORS.labels("sources").inc()
        return None


def _newest_version(doc: Document) -> Document | None:
    """The version that replaced this superseded one (the end of its `next_versions` chain)."""
    cursor, seen = doc, {doc.pk}
    while (following := cursor.next_versions.order_by("-created_at").first()) is not None and following.pk not in seen:
        cursor = following
        seen.add(cursor.pk)
    return cursor if cursor.pk != doc.pk else None


def _visible(request: HttpRequest, doc_id: int, what: str) -> Document | None:
    """The document if the reader may see its collection. None when there is no such row, and also when
    the reader may not see it: the answer is then byte for byte the one for an id that never existed,
    so not even its existence leaks."""
    doc = Document.objects.filter(pk=doc_id).select_related("previous", "collection").first()
    if doc is not None and not can_see_document(request.user, doc):
        ACCESS_REFUSED.labels("web", what).inc()
        log.info("source.refused", document_id=doc.pk, what=what)
        return None
    return doc


def _newer_visible(request: HttpRequest, doc: Document) -> Document | None:
    """The version that replaced a superseded one, when the reader may see it too."""
    newer = _newest_version(doc) if doc.status == Document.Status.SUPERSEDED else None
    return newer if newer is not None and can_see_document(request.user, newer) else None


def _gone(request: HttpRequest, doc_id: int, doc: Document | None) -> HttpResponse:
    return render(request, "sources/gone.html", {"doc_id": doc_id, "doc": doc}, status=410)


@require_GET
@login_required
def document_view(request: HttpRequest, doc_id: int) -> HttpResponse:
    doc = _visible(request, doc_id, "document")
    if doc is None or doc.status == Document.Status.DELETING:
        return _gone(request, doc_id, doc)
    passage = request.GET.get("passage", "")
    chunk = _cited_chunk(doc, passage)
    sections: list[RenderedSection] = []
    found, error, missing = False, "", False
    try:
        parsed = _parsed(doc.checksum, doc.original_filename)
    except FileNotFoundError:
        missing, error = True, "The original of this document is no longer stored, so it cannot be shown."
    except LoaderError as exc:
        error = f"This document could not be read: {exc.reason}."
    else:
        sections, found = render_document(parsed, passage=chunk.text if chunk else "", location=chunk.location if chunk else "")
    log.info("source.viewed", document_id=doc.pk, passage=passage or None, found=found)
    return render(request, "sources/document.html", {
        "doc": doc,
        "sections": sections,
        "error": error,
        "passage_asked": bool(passage),
        "passage_found": found,
        "location": chunk.location if chunk else "",
        "newer": _newer_visible(request, doc),
        "has_original": not missing,
    })


@require_GET
@login_required
def original_view(request: HttpRequest, doc_id: int) -> HttpResponse:
    """The original file, always as a download: never rendered by the browser (an HTML original could run script)."""
    doc = _visible(request, doc_id, "original")
    if doc is None or doc.status == Document.Status.DELETING:
        return _gone(request, doc_id, doc)
    data = _original_bytes(doc.checksum, doc.original_filename)
    if data is None:
        return _gone(request, doc_id, doc)
    response = HttpResponse(data, content_type="application/octet-stream")
    response["Content-Disposition"] = content_disposition_header(True, storage.sanitize_filename(doc.original_filename))
    log.info("source.downloaded", document_id=doc.pk, size=len(data))
    return response

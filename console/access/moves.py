"""Moving documents between collections: the database and both indexes, without re-embedding.

The engine re-labels the chunks (`engine.move_documents`: the dense store, then the keyword index)
inside the transaction that moves the rows, so a move that fails in the engine leaves every row where
it was (and may be asked again: a move is idempotent). Documents a job is working on are refused:
their chunks are being written, or removed, under the collection the job read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from django.db import transaction

from console.access import audit
from console.engine import get_engine
from console.models import Collection, Document, Source, SyncRun

log = structlog.get_logger(__name__, component="access")

MOVABLE = (Document.Status.INDEXED, Document.Status.FAILED)  # not while a job holds it, nor an old version


@dataclass
class MoveResult:
    moved: list[Document] = field(default_factory=list)
    unchanged: list[Document] = field(default_factory=list)  # in that collection already
    refused: list[tuple[Document, str]] = field(default_factory=list)  # with why
    chunks: int = 0

    def summary(self, collection: Collection) -> str:
        """ "2 documents moved to HR (14 chunks); 1 refused: a.md (indexing; move it once its job is done)." """
        parts = []
        if self.moved or not (self.unchanged or self.refused):
            parts.append(f"{_count(len(self.moved), 'document')} moved to {collection.name} "
                         f"({_count(self.chunks, 'chunk')})")
        if self.unchanged:
            parts.append(f"{len(self.unchanged)} already in {collection.name}")
        if self.refused:
            named = "; ".join(f"{d} ({why})" for d, why in self.refused[:10])
            more = f"; and {len(self.refused) - 10} more" if len(self.refused) > 10 else ""
            parts.append((f"{len(self.refused)} refused: " if self.moved or self.unchanged else "not moved: ") + named + more)
        text = "; ".join(parts)
        return text[:1].upper() + text[1:] + "."


def why_not_movable(doc: Document, *, with_source: bool = False) -> str:
    """Why this document cannot be moved now ("" when it can).

    A synced document follows its source (`with_source`: the source itself is being moved).
    """
    if doc.source_id is not None and not with_source:
        return f"synced by the source {doc.source}; change the source's collection"
    if doc.status in MOVABLE:
        return ""
    if doc.status == Document.Status.SUPERSEDED:
        return "an older version; move the current one"
    if doc.status == Document.Status.DELETING:
        return "being deleted"
    return f"{doc.get_status_display().lower()}; move it once its job is done"


def move_documents(docs: Sequence[Document], collection: Collection, *, user: Any = None,
                   with_source: bool = False) -> MoveResult:
    """Puts `docs` in `collection`: their rows, their chunks in both indexes, and one audit entry each.

    `with_source`: synced documents too (their source is moving: `move_source`).
    """
    result = MoveResult()
    with transaction.atomic():
        locked = (Document.objects.select_for_update(of=("self",)).select_related("collection", "source")
                  .filter(pk__in=[d.pk for d in docs]))
        for doc in locked.order_by("pk"):
            if doc.collection_id == collection.pk:
                result.unchanged.append(doc)
            elif why := why_not_movable(doc, with_source=with_source):
                result.refused.append((doc, why))
            else:
                result.moved.append(doc)
        if not result.moved:
            return result
        origins = {doc.pk: doc.collection.name for doc in result.moved}
        for doc in result.moved:
            doc.move_to(collection)
            audit.record(user, doc, audit.CHANGED, f"Moved from collection {origins[doc.pk]} to {collection.name}.")
        # Last, so a failure here rolls the rows back; the engine's own steps are each idempotent.
        result.chunks = get_engine().move_documents([doc.engine_id for doc in result.moved], collection.key)
    log.info("documents.moved", documents=len(result.moved), refused=len(result.refused), collection=collection.key,
             chunks=result.chunks)
    return result


class MoveError(Exception):
    """A move refused as a whole, with the reason for the user."""


def move_source(source: Source, collection: Collection, *, user: Any = None) -> MoveResult:
    """The source's documents go to `collection`, and so will those of its next syncs.

    Refused while the source syncs (its run may be writing items under the old collection).
    """
    with transaction.atomic():
        locked = Source.objects.select_for_update().select_related("collection").get(pk=source.pk)
        if SyncRun.objects.filter(source=locked, state=SyncRun.State.RUNNING).exists():
            raise MoveError(f"{locked.name} is syncing now; change its collection once the sync has finished")
        before = locked.collection.name
        locked.move_to(collection)
        source.collection = collection  # the caller's copy too (it may be saved again)
        docs = list(Document.objects.filter(source=locked).exclude(collection=collection)
                    .exclude(status__in=Document.NOT_CURRENT))
        result = move_documents(docs, collection, user=user, with_source=True)
        audit.record(user, locked, audit.CHANGED, f"Collection changed from {before} to {collection.name}.")
    return result


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"

"""How many documents and chunks Lorebot holds, as the database and as each index counts them.

The dashboard and /health/ready show the same figures, so a mismatch (chunks no document accounts
for, or a document whose chunks are missing) is visible in both places: `manage.py reconcile`
re-indexes documents with missing chunks, `manage.py reindex --now` rebuilds both indexes from the
documents alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from django.db.models import Count, Sum

from console.engine import get_engine
from console.models import Document

log = structlog.get_logger(__name__, component="ops")


@dataclass(frozen=True)
class Counts:
    documents: int  # current documents (not old versions, not on their way out)
    chunks: int  # what those documents say they have in the indexes
    vector_store: int | None  # what the indexes hold (None: unreachable right now)
    bm25_index: int | None

    @property
    def orphans(self) -> bool:
        """An index holds chunks no document accounts for (written before every ingest was a document)."""
        return max(self.vector_store or 0, self.bm25_index or 0) > self.chunks

    @property
    def consistent(self) -> bool:
        return self.vector_store == self.bm25_index == self.chunks

    def to_dict(self) -> dict[str, object]:
        return {"documents": self.documents, "chunks": {
            "database": self.chunks, "vector_store": self.vector_store, "bm25_index": self.bm25_index,
        }, "consistent": self.consistent}


def _index_count(name: str) -> int | None:
    engine = get_engine()
    try:
        return engine.store.count() if name == "vector_store" else len(engine.bm25)
    except Exception as exc:  # the page and the probe must answer even when an index does not
        log.warning("counts.index_unavailable", index=name, error=str(exc))
        return None


def collect_counts() -> Counts:
    current = Document.objects.exclude(status__in=Document.NOT_CURRENT).aggregate(n=Count("id"), chunks=Sum("chunk_count"))
    return Counts(current["n"], current["chunks"] or 0, _index_count("vector_store"), _index_count("bm25_index"))

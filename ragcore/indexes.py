"""The two indexes of one data folder, the vector store (Chroma) and the BM25 index, opened on first use."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog

from ragcore import metrics
from ragcore.bm25 import DAMAGED_INDEX_ERRORS, Bm25Index, FolderStorage, Storage
from ragcore.embeddings import Embedder
from ragcore.errors import IndexMismatch, KeywordIndexUnavailable, RagError, StoreUnavailable
from ragcore.settings import RagSettings
from ragcore.vectorstore import VectorStore

log = structlog.get_logger(__name__, component="engine")

# What counting an open index can raise: the engine's own errors (a Chroma server down, another model)
# and those of a damaged keyword index.
_COUNT_ERRORS: tuple[type[Exception], ...] = (RagError, *DAMAGED_INDEX_ERRORS)


@dataclass(frozen=True)
class IndexedDocument:
    """What each index holds of one document: its checksum and chunk count (and the chunks Chroma expects)."""

    dense_checksum: str
    dense_chunks: int
    dense_expected: int
    sparse_checksum: str
    sparse_chunks: int


def keyword_storage(settings: RagSettings) -> Storage:
    """The keyword index's store the settings choose: the data folder, or PostgreSQL shared by every host."""
    if settings.keyword_store_kind == "postgresql":
        from ragcore.bm25.postgres import PostgresStorage  # psycopg is only needed when chosen

        # Named after the Chroma collection: the two halves of one index go together.
        return PostgresStorage(settings.database_url, settings.chroma_collection)
    return FolderStorage(settings.bm25_path)


@dataclass(frozen=True)
class IndexState:
    """Whether one index opens: kind "ok", "corrupt" (will not open: repairable), "unavailable" (a server
    that does not answer) or "mismatch" (built by another model: a reindex's job)."""

    name: str
    kind: str
    detail: str = ""


class IndexesUnavailable(StoreUnavailable):
    """An index cannot be reached, so neither was touched."""


def _short(detail: str) -> str:
    return detail if len(detail) <= 160 else detail[:157] + "..."


def _set_aside(path: Path) -> Path | None:
    """Moves a damaged index directory out of the way (kept, renamed); None when there is none."""
    if not path.exists():
        return None
    aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
    os.replace(path, aside)
    return aside


class Indexes:
    """The pair every ingest writes and every search reads; shared by the engine's parts."""

    def __init__(self, settings: RagSettings, embedder: Embedder) -> None:
        self.settings = settings
        self.embedder = embedder
        self._store: VectorStore | None = None
        self._bm25: Bm25Index | None = None
        self._lock = threading.Lock()

    @property
    def store(self) -> VectorStore:
        if self._store is None:
            with self._lock:
                if self._store is None:
                    self._store = VectorStore(
                        self.settings, model_name=self.embedder.name, dimension=self.embedder.dimension
                    )
        return self._store

    @property
    def bm25(self) -> Bm25Index:
        if self._bm25 is None:
            with self._lock:
                if self._bm25 is None:
                    self._bm25 = Bm25Index(
                        keyword_storage(self.settings), refresh_seconds=self.settings.index_refresh_seconds
                    )
        return self._bm25

    def delete_document(self, document_id: str) -> int:
        """Removes a document's chunks from both indexes; returns how many there were."""
        known = self.bm25.document_info(document_id)
        dense = self.store.delete_document(document_id, chunks=known[1] if known else 0)
        sparse = self.bm25.delete_document(document_id)
        log.info("document.deleted", document_id=document_id, chunks=max(dense, sparse))
        return max(dense, sparse)

    def move_document(self, document_id: str, collection: str) -> int:
        """Puts a document in another collection in both indexes, without re-embedding; returns its chunk count."""
        return self.move_documents([document_id], collection)

    def move_documents(self, document_ids: Sequence[str], collection: str) -> int:
        """Puts documents in another collection, one BM25 commit for all; returns their chunk count.

        Chroma first, then BM25: until both are done a search may still find a document under its old
        collection in the keyword index, but the retriever checks each chunk's (Chroma) collection again
        before using it, so nothing is shown to a reader who may not see the new one.
        """
        if not collection:
            raise ValueError("a collection needs a non-empty name")
        known = [(document_id, info[1] if (info := self.bm25.document_info(document_id)) else 0)
                 for document_id in document_ids]
        dense = self.store.move_documents(known, collection)
        sparse = self.bm25.move_documents(document_ids, collection)
        log.info("documents.moved", documents=len(document_ids), collection=collection, chunks=max(dense, sparse))
        return max(dense, sparse)

    def document_status(self, document_id: str) -> IndexedDocument:
        """What each index holds of a document, for reconciliation."""
        dense_checksum, present, expected = self.store.document_info(document_id)
        sparse_checksum, sparse_chunks = self.bm25.document_info(document_id) or ("", 0)
        return IndexedDocument(dense_checksum, present, expected, sparse_checksum, sparse_chunks)

    def open_counts(self) -> dict[str, int]:
        """Chunks in each index this process has already opened (never opens one: for /metrics)."""
        counts = {}
        for name, index in (("vector_store", self._store), ("bm25_index", self._bm25)):
            if index is not None:
                try:
                    counts[name] = index.count() if isinstance(index, VectorStore) else len(index)
                except _COUNT_ERRORS as exc:
                    # Down or damaged: this scrape leaves its series out, and says so (readiness says why too).
                    metrics.PIPELINE_ERRORS.labels("vector_store" if name == "vector_store" else "bm25").inc()
                    log.warning("index.count_failed", index=name, error=f"{type(exc).__name__}: {exc}"[:300])
        return counts

    # -- repair: reconcile and reindex never crash on an index they cannot open ---------------

    def states(self) -> dict[str, IndexState]:
        """Whether each index opens and reads ("vector_store", "bm25_index"); opens them if needed."""
        out = {}
        for name, probe in (("vector_store", lambda: self.store.count()), ("bm25_index", lambda: len(self.bm25))):
            try:
                probe()
                out[name] = IndexState(name, "ok")
            except IndexMismatch as exc:
                out[name] = IndexState(name, "mismatch", str(exc))
            except KeywordIndexUnavailable as exc:
                # PostgreSQL not answering: down, not damaged. Setting it "aside" would move a folder the
                # index does not use and let a reindex drop the vectors with the keyword index unreached.
                out[name] = IndexState(name, "unavailable", str(exc))
            except StoreUnavailable as exc:
                # A local directory that will not open is damaged; a server that does not answer is down.
                kind = "unavailable" if self.settings.chroma_url else "corrupt"
                out[name] = IndexState(name, kind, str(exc))
            except Exception as exc:  # a garbage manifest, a missing segment, an unreadable array
                out[name] = IndexState(name, "corrupt", f"{type(exc).__name__}: {exc}")
        return out

    def repair(self) -> list[str]:
        """Sets aside every index that cannot be opened and opens it again, empty; says what it did.

        Checks both first: when one cannot be reached (a Chroma server down) nothing is touched and
        IndexesUnavailable is raised. The damaged files are kept beside the new index, renamed.
        Documents then missing from the rebuilt index are for the caller to re-ingest.
        """
        done = self._set_aside_corrupt(self._reachable_states())
        # Both open again now (empty where rebuilt), or this raises for the caller to report.
        self.store.count()
        len(self.bm25)
        return done

    def reset(self) -> None:
        """Drops both indexes (for a reindex with another model); they reopen empty.

        A damaged index is set aside instead of dropped; when one cannot be reached, neither is dropped.
        """
        states = self._reachable_states()
        self._set_aside_corrupt(states)
        with self._lock:
            VectorStore.drop(self.settings)
            self._store = None
        if states["bm25_index"].kind != "corrupt":  # one set aside is already new and empty
            self.bm25.clear()

    def _reachable_states(self) -> dict[str, IndexState]:
        states = self.states()
        down = [s.detail for s in states.values() if s.kind == "unavailable"]
        if down:
            raise IndexesUnavailable("; ".join(down) + "; neither index was changed")
        return states

    def _set_aside_corrupt(self, states: dict[str, IndexState]) -> list[str]:
        done = []
        with self._lock:
            for name, label, set_aside in (
                ("vector_store", "vector index", lambda: VectorStore.set_aside(self.settings)),
                ("bm25_index", "BM25 index", lambda: _set_aside(self.settings.bm25_path)),
            ):
                if states[name].kind != "corrupt":
                    continue
                if name == "vector_store":
                    self._store = None
                else:
                    self._bm25 = None
                aside = set_aside()
                done.append(f"{label} could not be opened ({_short(states[name].detail)}); "
                            f"moved to {aside} and rebuilt empty")
        for line in done:
            log.warning("index.repaired", detail=line)
        return done


class UsesIndexes:
    """A part of the engine that reads or writes the shared pair, as `self.store` and `self.bm25`."""

    indexes: Indexes

    @property
    def store(self) -> VectorStore:
        return self.indexes.store

    @property
    def bm25(self) -> Bm25Index:
        return self.indexes.bm25

"""The two indexes of one data folder, the vector store (Chroma) and the BM25 index, opened on first use."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import structlog

from ragcore.bm25 import Bm25Index, FolderStorage, Storage
from ragcore.embeddings import Embedder
from ragcore.settings import RagSettings
from ragcore.vectorstore import VectorStore

log = structlog.get_logger(__name__, component="engine")


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

    def document_status(self, document_id: str) -> IndexedDocument:
        """What each index holds of a document, for reconciliation."""
        dense_checksum, present, expected = self.store.document_info(document_id)
        sparse_checksum, sparse_chunks = self.bm25.document_info(document_id) or ("", 0)
        return IndexedDocument(dense_checksum, present, expected, sparse_checksum, sparse_chunks)

    def reset(self) -> None:
        """Drops both indexes (for a reindex with another model); they reopen empty."""
        with self._lock:
            VectorStore.drop(self.settings)
            self._store = None
        self.bm25.clear()


class UsesIndexes:
    """A part of the engine that reads or writes the shared pair, as `self.store` and `self.bm25`."""

    indexes: Indexes

    @property
    def store(self) -> VectorStore:
        return self.indexes.store

    @property
    def bm25(self) -> Bm25Index:
        return self.indexes.bm25

"""The dense index: a chromadb collection that only ever receives precomputed embeddings."""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Collection, Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from ragcore import metrics
from ragcore.errors import IndexMismatch, StoreUnavailable
from ragcore.settings import RagSettings
from ragcore.types import DEFAULT_COLLECTION, Chunk, chunk_id_for

# HNSW settings, measured with benchmarks/dense_recall.py (real SciFact embeddings, recall@10 against
# exact search): chroma's default search ef (100) found 0.987 of the exact top-10 at 10k chunks; 200
# finds 0.999 for ~0.1 ms more. The build settings are chroma's defaults, named so a change is
# deliberate. Set at creation; the search ef is also applied to a collection built before it.
log = logging.getLogger("ragcore.vectorstore")

# A filtered search over-fetches top_k / share * margin results (benchmarks/filtered_retrieval.py): the
# margin absorbs an uneven spread of the allowed chunks among the nearest ones. Below the minimum share
# (or past the cap) over-fetching would cost more than Chroma's own filter.
OVERFETCH_MARGIN = 1.5
OVERFETCH_MIN_SHARE = 0.05
OVERFETCH_MAX = 2000
# A filter holding at most EXACT_MAX chunks and under EXACT_MAX_SHARE of the index is searched exactly,
# over its own vectors kept in memory as one float32 matrix per filter: at 100k chunks a 10 % filter
# over-fetched ~760 HNSW results and took 1.78x the unfiltered p95, where a matrix product over its 10k
# vectors takes ~1-2 ms and finds the exact top k (benchmarks/filtered_retrieval.py). Above the share,
# over-fetching asks HNSW for little more than k. A new index version fetches only the vectors of chunks
# in segments the kept matrix does not have. EXACT_MAX x 384 floats is 38 MB; a few filters at a time,
# within EXACT_CACHE_BYTES.
EXACT_MAX = 25_000
EXACT_MAX_SHARE = 0.5
EXACT_CACHED = 8
EXACT_CACHE_BYTES = 160 * 2**20

HNSW_SEARCH_EF = 200
HNSW_CONSTRUCTION_EF = 100
HNSW_MAX_NEIGHBORS = 16

# Set on a collection whose every chunk records its collection: one created by this code, or an older one
# once `_backfill_collections` has labelled its chunks. Chroma has no "field is missing" filter, so the
# marker is what spares every later open a full scan.
COLLECTIONS_MARKER = "lorebot_collections"

REINDEX_HINT = "run `python manage.py ingest --reindex PATH ...` to rebuild both indexes with the configured model"


def _client(settings: RagSettings):  # type: ignore[no-untyped-def]
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    # Telemetry would try to reach the internet on every start; it is never wanted here.
    chroma_settings = ChromaSettings(anonymized_telemetry=False)
    if settings.chroma_url:
        url = urlparse(settings.chroma_url)
        return chromadb.HttpClient(
            host=url.hostname or "127.0.0.1",
            port=url.port or (443 if url.scheme == "https" else 8000),
            ssl=url.scheme == "https",
            settings=chroma_settings,
        )
    settings.chroma_path.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(settings.chroma_path), settings=chroma_settings)


def _chunk_from(chunk_id: str, document: str, meta: dict) -> Chunk:
    return Chunk(
        chunk_id=chunk_id,
        document_id=str(meta.get("document_id", "")),
        position=int(meta.get("position", 0)),
        text=str(meta.get("text", document)),
        title=str(meta.get("title", "")),
        source=str(meta.get("source", "")),
        location=str(meta.get("location", "")),
        checksum=str(meta.get("checksum", "")),
        # A chunk stored before collections has no such field: it is in the default one.
        collection=str(meta.get("collection") or DEFAULT_COLLECTION),
    )


def _search_ef(collection) -> int | None:  # type: ignore[no-untyped-def]
    hnsw = (collection.configuration or {}).get("hnsw") or {}
    return hnsw.get("ef_search")


@dataclass
class _ExactSet:
    """A filter's vectors for exact search, as of one index version: row i is `ids[i]`, unit length."""

    version: int
    ids: list[str]
    rows: dict[str, int]
    stamps: list[str]
    matrix: np.ndarray


class VectorStore:
    """Adds, deletes and queries chunk vectors; refuses to mix vectors of two models.

    A local (persistent-directory) store keeps its HNSW index in memory and never notices
    writes made by another process (the ingest worker, say). So every write here also
    touches a marker file, and readers that see the marker change reopen the store,
    at most once every `index_refresh_seconds`. A Chroma server needs none of this.
    """

    def __init__(self, settings: RagSettings, *, model_name: str, dimension: int) -> None:
        self.model_name = model_name
        self.dimension = dimension
        self._settings = settings
        self._local = not settings.chroma_url
        self._marker = settings.chroma_path / "lorebot.changed"
        self._seen = self._marker_stamp()
        self._checked = time.monotonic()
        self._reopen_lock = threading.Lock()
        self._exact: dict[Hashable, _ExactSet] = {}  # see nearest_among
        self._exact_lock = threading.Lock()
        self._exact_build_lock = threading.Lock()
        try:
            self._client = _client(settings)
            self._batch = self._client.get_max_batch_size()
            self._collection = self._open_collection()
        except IndexMismatch:
            raise
        except Exception as exc:  # chromadb raises many unrelated types for "cannot reach"
            raise StoreUnavailable(f"vector store unavailable ({self.where}): {exc}") from exc

    @property
    def where(self) -> str:
        return self._settings.chroma_url or str(self._settings.chroma_path)

    def _open_collection(self):  # type: ignore[no-untyped-def]
        # embedding_function=None: chroma's default one downloads a model on first use.
        collection = self._client.get_or_create_collection(
            self._settings.chroma_collection,
            configuration={"hnsw": {"space": "cosine", "ef_search": HNSW_SEARCH_EF,
                                    "ef_construction": HNSW_CONSTRUCTION_EF, "max_neighbors": HNSW_MAX_NEIGHBORS}},
            metadata={"embedding_model": self.model_name, "embedding_dimension": self.dimension,
                      COLLECTIONS_MARKER: 1},
            embedding_function=None,
        )
        if _search_ef(collection) != HNSW_SEARCH_EF:
            # Built before the setting (chroma's default is 100). The HNSW index in memory keeps the
            # ef it was loaded with, so a local store is reopened to search with the new one.
            collection.modify(configuration={"hnsw": {"ef_search": HNSW_SEARCH_EF}})
            if self._local:
                self._forget_system()
                self._client = _client(self._settings)
            collection = self._client.get_collection(self._settings.chroma_collection, embedding_function=None)
        meta = collection.metadata or {}
        built_with = (meta.get("embedding_model"), meta.get("embedding_dimension"))
        if built_with != (self.model_name, self.dimension):
            raise IndexMismatch(
                f"the vector index at {self.where} was built with {built_with[0]} "
                f"({built_with[1]} dimensions), but the configured model is {self.model_name} "
                f"({self.dimension} dimensions); {REINDEX_HINT}"
            )
        if not meta.get(COLLECTIONS_MARKER):
            self._backfill_collections(collection)
        return collection

    def _backfill_collections(self, collection) -> None:  # type: ignore[no-untyped-def]
        """Labels the chunks of an index built before collections with DEFAULT_COLLECTION, once.

        A `where` filter never matches a chunk without the field, so without this an old index would look
        empty to every filtered search. Only chunks that lack the field are updated (Chroma merges an
        update's metadata), so a chunk written meanwhile by a newer process keeps its collection; the
        marker is set last, so an open interrupted halfway simply backfills again.
        """
        batch = max(1, min(self._batch, 5000))
        offset = labelled = 0
        while True:
            got = collection.get(limit=batch, offset=offset, include=["metadatas"])
            ids = got["ids"]
            if not ids:
                break
            missing = [cid for cid, meta in zip(ids, got["metadatas"] or []) if not (meta or {}).get("collection")]
            if missing:
                collection.update(ids=missing, metadatas=[{"collection": DEFAULT_COLLECTION}] * len(missing))
                labelled += len(missing)
            offset += len(ids)
        collection.modify(metadata={**(collection.metadata or {}), COLLECTIONS_MARKER: 1})
        if labelled:
            self._changed()
        log.info("vector_store.collections_backfilled chunks=%d where=%s", labelled, self.where)

    def _marker_stamp(self) -> int:
        try:
            return self._marker.stat().st_mtime_ns
        except FileNotFoundError:
            return 0

    def _changed(self) -> None:
        """Tells readers in other processes that the on-disk index moved on."""
        if self._local:
            tmp = self._marker.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(str(time.time_ns()))
            os.replace(tmp, self._marker)
            self._seen = self._marker_stamp()

    def _refresh(self, force: bool = False) -> None:
        if not self._local:
            return
        if not force and time.monotonic() - self._checked < self._settings.index_refresh_seconds:
            return
        self._checked = time.monotonic()
        stamp = self._marker_stamp()
        if stamp == self._seen and not force:
            return
        with self._reopen_lock:
            if stamp == self._seen and not force:
                return
            self._forget_system()
            self._client = _client(self._settings)
            self._collection = self._open_collection()
            self._seen = stamp

    def _forget_system(self) -> None:
        from chromadb.api.shared_system_client import SharedSystemClient

        # chroma caches one in-memory system per directory; dropping our entry makes
        # the next client load the index afresh from disk. Clients of other
        # directories in this process are untouched.
        path = str(self._settings.chroma_path)
        SharedSystemClient._identifier_to_system.pop(path, None)
        SharedSystemClient._identifier_to_refcount.pop(path, None)

    def _call(self, fn, *args, **kwargs):  # type: ignore[no-untyped-def]
        try:
            return fn(*args, **kwargs)
        except (ValueError, TypeError):
            raise
        except Exception as exc:
            raise StoreUnavailable(f"vector store unavailable ({self.where}): {exc}") from exc

    def _read(self, method: str, **kwargs):  # type: ignore[no-untyped-def]
        """A read; a local store whose in-memory segments went stale is reopened once."""
        self._refresh()
        try:
            return self._call(getattr(self._collection, method), **kwargs)
        except StoreUnavailable:
            if not self._local:
                raise
            # Another process wrote the first vectors after we opened the (then empty)
            # store: chroma can fail with "Nothing found on disk" until reopened.
            self._refresh(force=True)
            return self._call(getattr(self._collection, method), **kwargs)

    def count(self) -> int:
        return int(self._read("count"))

    def upsert(self, chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        """Writes chunks in batches no larger than the server accepts.

        The chunk text goes in a metadata field, not in chroma's `documents`: chroma indexes every
        document for full-text search (an FTS5 trigram table) that Lorebot never queries (BM25 is
        its keyword search), and a local store cannot turn that index off. On 3,000 chunks this
        wrote 40 % less to disk in 42 % less CPU (benchmarks/vector_writes.py has the full figures).
        """
        counts: dict[str, int] = {}
        for c in chunks:
            counts[c.document_id] = counts.get(c.document_id, 0) + 1
        for start in range(0, len(chunks), self._batch):
            part = chunks[start : start + self._batch]
            self._call(
                self._collection.upsert,
                ids=[c.chunk_id for c in part],
                embeddings=vectors[start : start + self._batch],
                metadatas=[
                    {
                        "document_id": c.document_id,
                        "position": c.position,
                        "text": c.text,
                        "title": c.title,
                        "source": c.source,
                        "location": c.location,
                        "checksum": c.checksum,
                        "collection": c.collection,
                        "chunk_count": counts[c.document_id],
                    }
                    for c in part
                ],
            )
        self._changed()

    def write_documents(self, chunks: Sequence[Chunk], vectors: np.ndarray, *,
                        replaced: Mapping[str, int] | None = None) -> None:
        """Writes whole documents: upserts first, then drops positions past each new end.

        `replaced` maps the documents that may hold chunks of an earlier version to how many it
        had (at most); the ones past the new end are deleted by id. Upserting before deleting
        means a reader never sees a document with no chunks.
        """
        self.upsert(chunks, vectors)
        new_counts: dict[str, int] = {}
        for c in chunks:
            new_counts[c.document_id] = new_counts.get(c.document_id, 0) + 1
        stale = [chunk_id_for(document_id, position) for document_id, earlier in (replaced or {}).items()
                 for position in range(new_counts.get(document_id, 0), earlier)]
        self.delete_chunks(stale)

    def delete_chunks(self, chunk_ids: Sequence[str]) -> None:
        """Deletes chunks by id, one call per batch (ids that are not there are ignored)."""
        for start in range(0, len(chunk_ids), self._batch):
            self._call(self._collection.delete, ids=list(chunk_ids[start : start + self._batch]))
        if chunk_ids:
            self._changed()

    def delete_document(self, document_id: str, *, chunks: int = 0) -> int:
        """Deletes a document's chunks; returns how many there were.

        `chunks` is how many the caller knows it has (the keyword index's count): those are deleted
        by id, after one lookup by id of the next position. Only when that one exists (a write that
        reached this index and not the other) or nothing is known are the chunks found by metadata,
        a `where` query that took ~150 ms at 100k chunks under load.
        """
        ids = [chunk_id_for(document_id, position) for position in range(chunks)]
        beyond = self._call(self._collection.get, ids=[chunk_id_for(document_id, chunks)], include=[])["ids"]
        if beyond or not chunks:
            ids = self._call(self._collection.get, where={"document_id": document_id}, include=[])["ids"]
            self.delete_chunks(ids)
            return len(ids)
        self.delete_chunks(ids)
        return chunks

    def move_document(self, document_id: str, collection: str, *, chunks: int = 0) -> int:
        """Puts a document's chunks in `collection` (their metadata only, vectors untouched); returns how many.

        `chunks` is how many the caller knows it has, updated by id; with none known (or more present)
        they are found by metadata, as in `delete_document`.
        """
        return self.move_documents([(document_id, chunks)], collection)

    def move_documents(self, documents: Sequence[tuple[str, int]], collection: str) -> int:
        """`move_document` for many (document id, known chunk count) pairs; returns how many chunks moved.

        The chunks of all of them are updated in batches: one Chroma update per document costs about
        50 ms whatever its size (500 documents of 4 chunks: 26 s one by one, 0.6 s in batches of 500).
        """
        ids: list[str] = []
        for document_id, chunks in documents:
            ids += self._present_ids(document_id, chunks)
        for start in range(0, len(ids), self._batch):
            part = ids[start : start + self._batch]
            # Chroma merges an update's metadata into the stored one: only this field changes.
            self._call(self._collection.update, ids=part, metadatas=[{"collection": collection}] * len(part))
        if ids:
            self._changed()
        return len(ids)

    def _present_ids(self, document_id: str, chunks: int) -> list[str]:
        """The ids of a document's chunks in the store (an update fails on a missing id)."""
        ids = [chunk_id_for(document_id, position) for position in range(chunks)]
        beyond = self._call(self._collection.get, ids=[chunk_id_for(document_id, chunks)], include=[])["ids"]
        if beyond or not chunks:
            return list(self._call(self._collection.get, where={"document_id": document_id}, include=[])["ids"])
        return list(self._call(self._collection.get, ids=ids, include=[])["ids"])

    def document_info(self, document_id: str) -> tuple[str, int, int]:
        """(checksum, chunks present, chunks expected) for one document; ("", 0, 0) if absent."""
        got = self._read("get", where={"document_id": document_id}, include=["metadatas"])
        metas = got["metadatas"] or []
        if not metas:
            return "", 0, 0
        checksums = {str(m.get("checksum", "")) for m in metas}
        checksum = checksums.pop() if len(checksums) == 1 else ""
        expected = max(int(m.get("chunk_count", 0)) for m in metas)
        return checksum, len(metas), expected

    def query(self, vector: np.ndarray, top_k: int, *, collections: Collection[str] | None = None,
              share: float | None = None, visible: Callable[[str], bool] | None = None) -> list[tuple[str, float]]:
        """(chunk_id, cosine similarity), best first; `collections` keeps only chunks of those (empty: none).

        A filtered search that knows the `share` of chunks its collections hold and which chunk ids are
        `visible` asks HNSW, unfiltered, for enough more results that `top_k` allowed ones are among
        them, and keeps those. Chroma's own `where` filter returns the same chunks but, measured here,
        took 150x to 1,000x the time of an unfiltered query (it resolves the filter in SQLite and hands
        HNSW the allowed ids); it stays the fallback for filters too selective to over-fetch, and for
        the rare query whose over-fetch came back short.
        """
        if top_k <= 0 or (collections is not None and not collections):
            return []
        if collections is None:
            return self._nearest(vector, top_k)
        if share is not None and visible is not None and share >= OVERFETCH_MIN_SHARE:
            wanted = min(OVERFETCH_MAX, math.ceil(top_k / share * OVERFETCH_MARGIN) + 10)
            found = self._nearest(vector, wanted)
            kept = [(cid, similarity) for cid, similarity in found if visible(cid)]
            if len(kept) >= top_k or len(found) < wanted:  # enough, or the whole index came back
                metrics.DENSE_FILTERED_SEARCHES.labels("overfetch").inc()
                return kept[:top_k]
        metrics.DENSE_FILTERED_SEARCHES.labels("where").inc()
        return self._nearest(vector, top_k, where={"collection": {"$in": sorted(collections)}})

    def nearest_among(self, vector: np.ndarray, top_k: int, chunk_ids: Sequence[str], *, key: Hashable,
                      version: int, stamps: Sequence[str]) -> list[tuple[str, float]]:
        """Exact search over `chunk_ids` (a filter's chunks): cosine similarity, best first.

        Their vectors are kept per `key` (the filter) as one matrix. At a new index `version` the matrix is
        rebuilt: a chunk whose stamp (`stamps[i]`, the keyword segment it is in) is unchanged keeps its row,
        the others' vectors are fetched, so a commit costs the fetch of what it wrote, not of the filter.
        """
        if top_k <= 0 or not chunk_ids:
            return []
        found = self._exact_set(key, version, chunk_ids, stamps)
        if not found.ids:
            return []
        query = np.asarray(vector, dtype=np.float32)
        # einsum, not `@`: the product goes to OpenBLAS, whose threads spin against the machine's other
        # work. Measured on this 2-core machine at load ~12, 10k x 384: `@` 22 ms p50, with one BLAS
        # thread 5.4 ms, einsum's own SIMD loop 0.9 ms.
        similarities = np.einsum("ij,j->i", found.matrix, query / (np.linalg.norm(query) or 1.0))
        if top_k < len(found.ids):  # partition first: sorting 25k similarities for 50 of them is waste
            best = np.argpartition(-similarities, top_k - 1)[:top_k]
            best = best[np.lexsort((best, -similarities[best]))]  # best first, ties in row order as argsort's
        else:
            best = np.argsort(-similarities, kind="stable")
        if key is not None:  # None: the whole index (ragcore.retrieval), not a filter
            metrics.DENSE_FILTERED_SEARCHES.labels("exact").inc()
        return [(found.ids[i], float(similarities[i])) for i in best.tolist()]

    def _exact_set(self, key: Hashable, version: int, chunk_ids: Sequence[str], stamps: Sequence[str]) -> _ExactSet:
        with self._exact_lock:
            found = self._exact.get(key)
            if found is not None and found.version == version:
                self._exact[key] = self._exact.pop(key)  # most recently used last: evicted last
                return found
        with self._exact_build_lock:  # one rebuild at a time; a search that waited may find it done
            with self._exact_lock:
                found = self._exact.get(key)
            if found is None or found.version != version:
                found = self._rebuild_exact(found, version, chunk_ids, stamps)
                with self._exact_lock:
                    self._exact.pop(key, None)
                    self._exact[key] = found
                    while len(self._exact) > 1 and (
                        len(self._exact) > EXACT_CACHED
                        or sum(e.matrix.nbytes for e in self._exact.values()) > EXACT_CACHE_BYTES
                    ):
                        self._exact.pop(next(iter(self._exact)))
        return found

    def _rebuild_exact(self, old: _ExactSet | None, version: int, chunk_ids: Sequence[str],
                       stamps: Sequence[str]) -> _ExactSet:
        reused: list[tuple[int, int]] = []  # (position in chunk_ids, row in the old matrix)
        missing: list[int] = []
        for position, (chunk_id, stamp) in enumerate(zip(chunk_ids, stamps)):
            row = old.rows.get(chunk_id) if old is not None else None
            if row is not None and old is not None and old.stamps[row] == stamp:
                reused.append((position, row))
            else:
                missing.append(position)
        fetched: dict[str, np.ndarray] = {}
        for start in range(0, len(missing), self._batch):
            got = self._read("get", ids=[chunk_ids[i] for i in missing[start : start + self._batch]],
                             include=["embeddings"])
            for chunk_id, embedding in zip(got["ids"], got["embeddings"] if len(got["ids"]) else []):
                fetched[chunk_id] = np.asarray(embedding, dtype=np.float32)
        # Rows in chunk_ids order; a chunk the vector store does not hold (yet) is left out.
        keep = np.zeros(len(chunk_ids), dtype=bool)
        matrix = np.zeros((len(chunk_ids), self.dimension), dtype=np.float32)
        if reused and old is not None:
            positions, rows = (np.asarray(x) for x in zip(*reused))
            matrix[positions] = old.matrix[rows]
            keep[positions] = True
        new_positions = [i for i in missing if chunk_ids[i] in fetched]
        if new_positions:
            vectors = np.vstack([fetched[chunk_ids[i]] for i in new_positions])
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            matrix[new_positions] = vectors / np.where(norms > 0, norms, 1.0)
            keep[new_positions] = True
        kept = np.flatnonzero(keep)
        ids = [chunk_ids[i] for i in kept.tolist()]
        log.debug("vector_store.exact_rebuilt chunks=%d fetched=%d reused=%d", len(ids), len(fetched), len(reused))
        return _ExactSet(version, ids, {c: r for r, c in enumerate(ids)}, [stamps[i] for i in kept.tolist()],
                         np.ascontiguousarray(matrix[kept]))

    def _nearest(self, vector: np.ndarray, top_k: int, where: dict | None = None) -> list[tuple[str, float]]:
        extra = {} if where is None else {"where": where}
        got = self._read(
            "query", query_embeddings=[np.asarray(vector, dtype=np.float32)], n_results=top_k, include=["distances"],
            **extra,
        )
        ids = got["ids"][0] if got["ids"] else []
        distances = got["distances"][0] if got["distances"] else []
        return [(cid, 1.0 - float(d)) for cid, d in zip(ids, distances)]

    def get_chunks(self, chunk_ids: Sequence[str]) -> dict[str, Chunk]:
        if not chunk_ids:
            return {}
        # "documents" too: a store written before the text moved into the metadata keeps it there.
        got = self._read("get", ids=list(chunk_ids), include=["documents", "metadatas"])
        return {
            cid: _chunk_from(cid, text or "", meta or {})
            for cid, text, meta in zip(got["ids"], got["documents"], got["metadatas"])
        }

    @classmethod
    def drop(cls, settings: RagSettings) -> None:
        """Deletes the collection whatever model built it (the first step of a reindex)."""
        client = _client(settings)
        if settings.chroma_collection in {getattr(c, "name", c) for c in client.list_collections()}:
            client.delete_collection(settings.chroma_collection)
        if not settings.chroma_url:
            marker = settings.chroma_path / "lorebot.changed"
            marker.write_text(str(time.time_ns()))

    @classmethod
    def set_aside(cls, settings: RagSettings) -> Path | None:
        """Moves a local store that cannot be opened out of the way (kept, renamed), so it reopens empty.

        Returns where it went; None for a Chroma server, whose files are not ours to move.
        """
        if settings.chroma_url or not settings.chroma_path.exists():
            return None
        from chromadb.api.shared_system_client import SharedSystemClient

        path = str(settings.chroma_path)
        SharedSystemClient._identifier_to_system.pop(path, None)  # chroma's in-process cache of that directory
        SharedSystemClient._identifier_to_refcount.pop(path, None)
        aside = settings.chroma_path.with_name(f"{settings.chroma_path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
        os.replace(settings.chroma_path, aside)
        return aside

    def ping(self) -> None:
        self._call(self._client.heartbeat)

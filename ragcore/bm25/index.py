"""The keyword index façade: searches over an in-memory snapshot, writes through a storage seam.

Writers take the store's exclusive lock, re-read the newest manifest, apply their change to that state,
commit, and keep the result as their snapshot. Readers take no lock: at most every `refresh_seconds`
they poll the store, and when a new version was committed they load only its new segments and deletion
masks. Searches read `self._snapshot` once and score without any lock.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ragcore import metrics
from ragcore.bm25.scoring import (
    Snapshot,
    allowed_chunk_ids,
    allowed_count,
    allowed_frequencies,
    allowed_rows,
    build_snapshot,
    empty_snapshot,
    score_rows,
)
from ragcore.bm25.segments import DocumentChunks, Edit, LiveSegment, segment_from_texts
from ragcore.bm25.storage import FolderStorage, Storage, StorageReader, empty_manifest, manifest_for
from ragcore.errors import KeywordIndexUnavailable
from ragcore.tokenize import tokenize
from ragcore.types import DEFAULT_COLLECTION, Chunk

log = logging.getLogger("ragcore.bm25")

T = TypeVar("T")


@dataclass(frozen=True)
class Freshness:
    """How this process's copy compares with the newest commit: what readiness reports."""

    kind: str  # "folder", "postgresql" or "memory"
    location: str
    version: int  # loaded here
    newest_version: int  # committed in the store
    behind_versions: int
    lag_seconds: float  # 0 when up to date; else how long since this process last knew it was
    last_refresh_seconds: float | None  # the last reload's commit-to-loaded delay


class Bm25Index:
    """BM25 keyword index over chunks, grouped by document, with rank_bm25 `BM25Okapi` scores.

    Usage example::

        index = Bm25Index(Path("data/bm25_index"))
        index.add("doc-1", "sha256:…", ["doc-1#0", "doc-1#1"], ["First chunk text", "Second chunk text"])
        index.search("chunk text", top_k=5)  # [("doc-1#0", 0.42), ...]

    :param where: a folder (shared by the processes of one host), a `Storage` such as
        `ragcore.bm25.postgres.PostgresStorage` (shared by every host), or None to keep the index in memory.
    :param refresh_seconds: how stale a reader may be: it polls the store at most this often.
    """

    def __init__(
        self,
        where: Path | str | Storage | None,
        *,
        k1: float = 1.5,
        b: float = 0.75,
        epsilon: float = 0.25,
        refresh_seconds: float = 1.0,
    ) -> None:
        if k1 < 0 or not 0 <= b <= 1 or epsilon < 0 or refresh_seconds < 0:
            raise ValueError("Bm25Index needs k1 >= 0, 0 <= b <= 1, epsilon >= 0, refresh_seconds >= 0")
        if where is None or isinstance(where, Storage):
            self.storage = where
        else:
            self.storage = FolderStorage(Path(where))
        self.k1 = k1
        self.b = b
        self.epsilon = epsilon
        self.refresh_seconds = refresh_seconds
        # Held by writers and by reloads; searches never wait on it (they use the current snapshot).
        self._lock = threading.Lock()
        self._snapshot = empty_snapshot()
        self._signature: object = None
        self._checked_at = -math.inf
        self._current_at = -math.inf  # when this process last knew it held the newest version
        self._last_lag: float | None = None
        self.reload_if_changed(force=True)

    @property
    def path(self) -> Path | None:
        """The folder, for a folder-backed index."""
        return self.storage.root if isinstance(self.storage, FolderStorage) else None

    @property
    def version(self) -> int:
        return self._snapshot.version

    # --- reading ---------------------------------------------------------------------------------------

    def __len__(self) -> int:
        self.reload_if_changed()
        return self._snapshot.n

    def search(self, query: str, top_k: int, *, collections: Collection[str] | None = None) -> list[tuple[str, float]]:
        """The `top_k` best (chunk_id, score) pairs for `query`, best first, only scores above zero.

        `collections` keeps only chunks of those collections (None: every chunk, empty: none). The top k
        are taken among the allowed chunks alone, so hidden ones never push a visible one out; scores
        keep the statistics (N, df, avgdl) of the whole index, so an allowed chunk scores the same
        with or without the filter.
        """
        if top_k < 1:
            raise ValueError(f"top_k must be > 0, got {top_k!r}")
        if collections is not None and not collections:
            return []
        self.reload_if_changed()
        snap = self._snapshot
        scores = score_rows(snap, tokenize(query), self.k1, self.epsilon)
        if scores is None:
            return []
        if collections is None:
            candidates = np.flatnonzero(scores > 0)
        else:
            candidates = np.flatnonzero((scores > 0) & allowed_rows(snap, collections))
        if candidates.size > top_k:
            candidates = candidates[np.argpartition(-scores[candidates], top_k - 1)[:top_k]]
        candidates = candidates[np.lexsort((candidates, -scores[candidates]))]  # ties: older chunk first
        parts = np.searchsorted(snap.offsets, candidates, side="right") - 1
        return [
            (snap.parts[p].segment.chunk_ids[row - snap.offsets[p]], float(scores[row]))
            for p, row in zip(parts.tolist(), candidates.tolist())
        ]

    def stored_chunks(self, chunk_ids: Iterable[str]) -> dict[str, Chunk]:
        """The live chunks of `chunk_ids` whose fields this index keeps, as of its current version.

        Ids are `chunk_id_for(document, position)`, so a chunk is found through its document's entry. A chunk
        of a segment without stored fields is left out: the caller reads it from the vector store.
        """
        snap = self._snapshot
        found: dict[str, Chunk] = {}
        for chunk_id in chunk_ids:
            document_id, _, position = chunk_id.rpartition(":")
            if not position.isdigit():
                continue
            for part in snap.parts:
                entry = part.segment.doc_index.get(document_id)
                if entry is None or not part.is_live(entry):
                    continue
                chunk = part.segment.stored_chunk(entry, int(position))
                if chunk is not None and chunk.chunk_id == chunk_id:
                    found[chunk_id] = chunk
                break  # a document has one live entry
        return found

    def document_frequencies(self, terms: Collection[str], *,
                             collections: Collection[str] | None = None) -> tuple[int, dict[str, int]]:
        """(live chunks, how many of them hold each term): how distinctive a question's words are.

        With `collections`, counted over the chunks of those collections only: what a reader who may
        see just those is told must not depend on the documents hidden from them.
        """
        self.reload_if_changed()
        snap = self._snapshot
        if collections is None:
            return snap.n, {term: snap.df.get(term, 0) for term in terms}
        return allowed_frequencies(snap, terms, collections)

    def share(self, collections: Collection[str] | None) -> float:
        """The fraction of live chunks that `collections` allows (1.0 for None, 0.0 for an empty index)."""
        self.reload_if_changed()
        snap = self._snapshot
        if collections is None:
            return 1.0
        if not snap.n or not collections:
            return 0.0
        return allowed_count(snap, collections) / snap.n

    def allowed_chunks(self, collections: Collection[str] | None) -> tuple[int, list[str], list[str]]:
        """(the version, the ids of the live chunks `collections` allows (None: all of them), the segment each
        is in), computed once per version; a chunk in the same segment at two versions is the same chunk."""
        self.reload_if_changed()
        snap = self._snapshot
        return snap.version, *allowed_chunk_ids(snap, collections)

    def scores_for_tokens(self, tokens: list[str], *, collections: Collection[str] | None = None) -> dict[str, float]:
        """The score of every live chunk (of `collections`, if given) for already tokenized query terms,
        zeros included."""
        self.reload_if_changed()
        snap = self._snapshot
        scores = score_rows(snap, tokens, self.k1, self.epsilon)
        if scores is None:
            scores = np.zeros(int(snap.offsets[-1]))
        allowed = None if collections is None else allowed_rows(snap, collections)
        out: dict[str, float] = {}
        for part, offset in zip(snap.parts, snap.offsets.tolist()):
            alive = [True] * part.segment.rows if part.alive_rows is None else part.alive_rows.tolist()
            for row, (chunk_id, live) in enumerate(zip(part.segment.chunk_ids, alive)):
                if live and (allowed is None or allowed[offset + row]):
                    out[chunk_id] = float(scores[offset + row])
        return out

    def documents(self) -> dict[str, tuple[str, int]]:
        """Every indexed document: document_id → (checksum, live chunk count)."""
        self.reload_if_changed()
        snap = self._snapshot
        cached = snap.cache.get("documents")
        if cached is None:
            cached = {}
            for part in snap.parts:
                seg = part.segment
                for e, (doc_id, checksum, count) in enumerate(zip(seg.doc_ids, seg.checksums, seg.doc_chunks.tolist())):
                    if part.is_live(e):
                        cached[doc_id] = (checksum, count)
            snap.cache["documents"] = cached
        return dict(cached)

    def document_info(self, document_id: str) -> tuple[str, int] | None:
        """(checksum, live chunk count) of one document, or None when it is not indexed."""
        self.reload_if_changed()
        for part in self._snapshot.parts:
            entry = part.segment.doc_index.get(document_id)
            if entry is not None and part.is_live(entry):
                return part.segment.checksums[entry], int(part.segment.doc_chunks[entry])
        return None

    def document_collections(self) -> dict[str, str]:
        """Every indexed document's collection (document_id → collection), computed once per version."""
        self.reload_if_changed()
        snap = self._snapshot
        cached: dict[str, str] | None = snap.cache.get("document_collections")
        if cached is None:
            cached = {}
            for part in snap.parts:
                seg = part.segment
                for e, (doc_id, collection) in enumerate(zip(seg.doc_ids, seg.doc_collections)):
                    if part.is_live(e):
                        cached[doc_id] = collection
            snap.cache["document_collections"] = cached
        return cached

    def document_collection(self, document_id: str) -> str | None:
        """The collection of one document, or None when it is not indexed."""
        self.reload_if_changed()
        for part in self._snapshot.parts:
            entry = part.segment.doc_index.get(document_id)
            if entry is not None and part.is_live(entry):
                return part.segment.doc_collections[entry]
        return None

    def freshness(self) -> Freshness:
        """Where the index lives and how far this process is behind its newest commit (asks the store now)."""
        if self.storage is None:
            v = self._snapshot.version
            return Freshness("memory", "this process", v, v, 0, 0.0, None)
        newest, _age = self.storage.newest()
        loaded = self._snapshot.version
        behind = max(0, newest - loaded)
        if not behind:
            self._current_at = time.monotonic()
        lag = 0.0 if not behind else max(0.0, time.monotonic() - self._current_at)
        metrics.INDEX_VERSIONS_BEHIND.labels("bm25").set(behind)
        return Freshness(self.storage.kind, self.storage.location, loaded, newest, behind, round(lag, 3),
                         self._last_lag)

    def reload_if_changed(self, force: bool = False) -> bool:
        """Load what other processes committed, checking at most every `refresh_seconds` unless forced.

        A store that cannot be reached (PostgreSQL restarting) leaves this process serving the snapshot it
        has, counted and logged, and is tried again at the next interval; only a forced reload raises.
        """
        if self.storage is None:
            return False
        if not force and time.monotonic() - self._checked_at < self.refresh_seconds:
            return False
        # A reader that finds another thread reloading or writing keeps serving the current snapshot.
        if not self._lock.acquire(blocking=force):
            return False
        try:
            return self._reload(force)
        except KeywordIndexUnavailable as exc:
            if force:
                raise
            metrics.PIPELINE_ERRORS.labels("bm25").inc()
            log.warning("bm25.refresh_failed error=%s", exc)
            return False
        finally:
            self._lock.release()

    def _reload(self, force: bool) -> bool:
        assert self.storage is not None
        self._checked_at = time.monotonic()
        signature = self.storage.poll()
        if signature == self._signature and not force:
            self._current_at = self._checked_at
            return False
        started = time.perf_counter()
        before = self._snapshot
        for attempt in range(2):
            try:
                with self.storage.reading() as reader:
                    manifest = reader.manifest()
                    self._snapshot = self._load(reader, manifest)
                break
            except FileNotFoundError:
                # A writer collected files of the manifest we read; the newer manifest no longer needs them.
                if attempt:
                    raise
        self._signature = signature
        self._current_at = self._checked_at
        if self._snapshot is not before:
            seconds = time.perf_counter() - started
            metrics.INDEX_REFRESH_SECONDS.labels("bm25").observe(seconds)
            if manifest.get("age_seconds") is not None:
                self._last_lag = round(float(manifest["age_seconds"]) + seconds, 3)
                metrics.INDEX_LAG_SECONDS.labels("bm25").set(self._last_lag)
            metrics.INDEX_VERSIONS_BEHIND.labels("bm25").set(0)
        return self._snapshot is not before

    def _load(self, reader: StorageReader, manifest: dict[str, Any]) -> Snapshot:
        """The snapshot for `manifest`, reusing the segments and masks already loaded."""
        current = self._snapshot
        if manifest["version"] == current.version:
            return current
        segments = {p.segment.name: p.segment for p in current.parts}
        loaded = {p.key: p for p in current.parts}
        parts = []
        for entry in manifest["segments"]:
            name, gen = entry["name"], entry["deletions"]
            part = loaded.get((name, gen))
            if part is None:
                segment = segments.get(name) or reader.segment(name)
                deleted = reader.deletions(name, gen) if gen else None
                part = LiveSegment.of(segment, gen, deleted)
            parts.append(part)
        return build_snapshot(manifest["version"], parts, current, self.k1, self.b)

    # --- writing ---------------------------------------------------------------------------------------

    def add(self, document_id: str, checksum: str, chunk_ids: Sequence[str], texts: Sequence[str], *,
            collection: str = DEFAULT_COLLECTION) -> None:
        """Index a document's chunks, replacing any chunks it had, in one atomic step."""
        self.add_many([(document_id, checksum, chunk_ids, texts)], collections={document_id: collection})

    def add_many(self, documents: Iterable[DocumentChunks], *, collections: Mapping[str, str] | None = None,
                 stored: Mapping[str, Sequence[Chunk]] | None = None) -> None:
        """Index (document_id, checksum, chunk_ids, texts) tuples as one segment; each replaces its old chunks.

        `collections` maps document ids to their collection; a document it leaves out is in DEFAULT_COLLECTION.
        `stored` maps every document to its chunks (in chunk id order) for `stored_chunks` to return, where the
        storage keeps stored fields.
        """
        batch: dict[str, DocumentChunks] = {}
        for document_id, checksum, chunk_ids, texts in documents:
            if len(chunk_ids) != len(texts):
                raise ValueError(f"{document_id}: {len(chunk_ids)} chunk ids for {len(texts)} texts")
            batch.pop(document_id, None)  # the last copy of a document wins, in its own position
            batch[document_id] = (document_id, checksum, list(chunk_ids), list(texts))
        if not batch:
            return
        # Tokenizing is the slow part, so it happens before taking the lock.
        keeps = self.storage is None or self.storage.keeps_stored_fields
        segment = segment_from_texts("pending", list(batch.values()), collections, stored if keeps else None)

        def change(edit: Edit) -> None:
            edit.delete(batch.keys())
            edit.append(replace(segment, name=edit.new_name()))

        self._write(change)

    def move_documents(self, document_ids: Collection[str], collection: str) -> int:
        """Put documents in `collection` in one commit, without tokenizing; returns their chunk count."""
        if not collection:
            raise ValueError("a collection needs a non-empty name")
        return self._write(lambda edit: edit.move(document_ids, collection))

    def delete_document(self, document_id: str) -> int:
        """Remove a document's chunks; returns how many were removed (0 when it was not indexed)."""
        return self._write(lambda edit: edit.delete([document_id]))

    def clear(self) -> None:
        """Remove every document."""
        self._write(lambda edit: edit.clear())

    def force_merge(self) -> None:
        """Merge every segment into one without deleted chunks, e.g. after a full reindex."""

        def change(edit: Edit) -> None:
            if len(edit.parts) > 1 or any(p.deleted is not None for p in edit.parts):
                edit.merge(range(len(edit.parts)))

        self._write(change)

    def replace_with(self, other: Bm25Index) -> None:
        """Make this index hold exactly what `other` holds (a restore), in one commit."""
        parts = other._snapshot.parts

        def change(edit: Edit) -> None:
            edit.parts = list(parts)
            edit.changed = True

        self._write(change)

    @contextmanager
    def writes_paused(self) -> Iterator[Bm25Index]:
        """No writer in any process commits meanwhile; yields this index loaded at the newest version."""
        if self.storage is None:
            with self._lock:
                yield self
            return
        with self.storage.writes_paused():
            self.reload_if_changed(force=True)
            yield self

    def copy_to(self, folder: Path) -> dict[str, int]:
        """Write the current snapshot as a folder index (a backup's copy); returns its counts."""
        target = Bm25Index(Path(folder), k1=self.k1, b=self.b, epsilon=self.epsilon, refresh_seconds=0)
        target.replace_with(self)
        documents = target.documents()
        return {"documents": len(documents), "chunks": sum(count for _, count in documents.values())}

    def _write(self, change: Callable[[Edit], T]) -> T:
        """Apply `change` to the newest committed state and commit it, excluding every other writer."""
        with self._lock:
            if self.storage is None:
                snap = self._snapshot
                edit = Edit(snap.parts, snap.version + 1)
                result = change(edit)
                if edit.changed:
                    edit.apply_merge_policy()
                    self._snapshot = build_snapshot(edit.version, edit.parts, snap, self.k1, self.b)
                return result
            with self.storage.writing() as writer:
                # Another process may have committed since this one last looked: start from its state.
                signature = self.storage.poll()
                manifest = writer.manifest()
                snap = self._snapshot = self._load(writer, manifest)
                self._signature = signature
                edit = Edit(snap.parts, max(snap.version, manifest["version"]) + 1)
                result = change(edit)
                if not edit.changed:
                    return result
                edit.apply_merge_policy()
                writer.commit(manifest or empty_manifest(), manifest_for(edit.version, edit.parts), edit.parts)
            self._snapshot = build_snapshot(edit.version, edit.parts, snap, self.k1, self.b)
            self._signature = self.storage.poll()
            self._checked_at = self._current_at = time.monotonic()
            return result

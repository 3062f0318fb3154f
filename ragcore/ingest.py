"""Ingest: files (or already parsed documents) -> chunks -> embeddings -> both indexes."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import structlog

from ragcore import loaders, metrics
from ragcore.chunking import split_document
from ragcore.embeddings import Embedder
from ragcore.errors import EmptyFile, LoaderError, RagError, StoreUnavailable
from ragcore.indexes import Indexes, UsesIndexes
from ragcore.settings import RagSettings
from ragcore.types import DEFAULT_COLLECTION, Chunk, ParsedDocument

log = structlog.get_logger(__name__, component="engine")

ProgressCallback = Callable[[str, int, int], None]

# Chunks gathered across files before one encode call: large enough for the model's
# length-sorted batching to pay off, small enough to report progress often.
_EMBED_WINDOW = 2048


@dataclass(frozen=True)
class IngestRequest:
    path: Path
    document_id: str = ""
    title: str = ""
    source: str = ""
    collection: str = DEFAULT_COLLECTION


@dataclass(frozen=True)
class IngestResult:
    source: str
    document_id: str
    status: str  # "indexed", "unchanged" or "failed"
    chunks: int = 0
    title: str = ""
    kind: str = ""
    checksum: str = ""
    error: str = ""
    error_type: str = ""
    transient: bool = False
    seconds: float = 0.0


@dataclass(frozen=True)
class ParsedItem:
    document_id: str
    parsed: ParsedDocument
    source: str
    checksum: str
    collection: str = DEFAULT_COLLECTION


@dataclass
class _Pending:
    item: ParsedItem
    kind: str
    chunks: list[Chunk]
    started: float
    earlier: int  # chunks an earlier version may have left in either index (0: none)


def document_id_for(path: Path) -> str:
    """A stable id for a file ingested by path: the same file always maps to the same id."""
    return "doc-" + hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]



class Ingestor(UsesIndexes):
    """Indexes files into both indexes, embedding the chunks of several files per model call."""

    def __init__(self, settings: RagSettings, embedder: Embedder, indexes: Indexes) -> None:
        self.settings = settings
        self.embedder = embedder
        self.indexes = indexes

    def ingest_file(self, path: str | Path, *, document_id: str = "", title: str = "", source: str = "",
                    force: bool = False, collection: str = DEFAULT_COLLECTION) -> IngestResult:
        """Indexes one file; returns its result (never raises for a bad file)."""
        request = IngestRequest(Path(path), document_id, title, source, collection)
        return self.ingest_files([request], force=force)[0]

    def ingest_files(
        self,
        requests: Iterable[IngestRequest | str | Path],
        *,
        force: bool = False,
        on_result: Callable[[IngestResult], None] | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> list[IngestResult]:
        """Indexes many files, embedding chunks of several files per model call for throughput."""
        todo = [r if isinstance(r, IngestRequest) else IngestRequest(Path(r)) for r in requests]
        prepared = (self._prepare_file(r, force) for r in todo)
        return self._run(prepared, len(todo), on_result, on_progress)

    def ingest_parsed(
        self,
        items: Sequence[ParsedItem],
        *,
        force: bool = False,
        on_result: Callable[[IngestResult], None] | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> list[IngestResult]:
        """Indexes documents that are already text (a BEIR corpus, a page fetched elsewhere)."""
        prepared = (self._prepare(item, force) for item in items)
        return self._run(prepared, len(items), on_result, on_progress)

    def _run(
        self,
        prepared: Iterable[IngestResult | _Pending],
        total: int,
        on_result: Callable[[IngestResult], None] | None,
        on_progress: ProgressCallback | None,
    ) -> list[IngestResult]:
        results: list[IngestResult] = []
        pending: list[_Pending] = []

        def report(batch: Iterable[IngestResult]) -> None:
            for result in batch:
                results.append(result)
                metrics.INGEST_DOCUMENTS.labels(result.status).inc()
                if on_result:
                    on_result(result)
                if on_progress:
                    on_progress("indexing", len(results), total)

        for item in prepared:
            if isinstance(item, IngestResult):
                report([item])
                continue
            pending.append(item)
            if sum(len(p.chunks) for p in pending) >= _EMBED_WINDOW:
                report(self._embed_and_write(pending, on_progress))
                pending = []
        report(self._embed_and_write(pending, on_progress))
        return results

    def _prepare_file(self, request: IngestRequest, force: bool) -> IngestResult | _Pending:
        started = time.perf_counter()
        source = request.source or str(request.path)
        document_id = request.document_id or document_id_for(request.path)
        try:
            data = loaders.read_file(request.path, max_bytes=self.settings.max_file_bytes)
            checksum = hashlib.sha256(data).hexdigest()
            # Checked before parsing: an unchanged file costs a read and two lookups, no more.
            unchanged, earlier = self._index_state(document_id, checksum, force)
            if unchanged:
                self._keep_in(document_id, request.collection)
                return IngestResult(source, document_id, "unchanged", checksum=checksum, seconds=time.perf_counter() - started)
            parsed = loaders.load_bytes(data, request.path.name)
            metrics.INGEST_STAGE_SECONDS.labels("parse").observe(time.perf_counter() - started)
        except Exception as exc:  # one bad file never stops the others
            return self._failed(source, document_id, exc, started)
        if request.title:
            parsed = replace(parsed, title=request.title)
        return self._chunk(ParsedItem(document_id, parsed, source, checksum, request.collection), earlier, started)

    def _prepare(self, item: ParsedItem, force: bool) -> IngestResult | _Pending:
        started = time.perf_counter()
        try:
            unchanged, earlier = self._index_state(item.document_id, item.checksum, force)
            if unchanged:
                self._keep_in(item.document_id, item.collection)
        except Exception as exc:
            return self._failed(item.source, item.document_id, exc, started)
        if unchanged:
            return IngestResult(item.source, item.document_id, "unchanged", checksum=item.checksum)
        return self._chunk(item, earlier, started)

    def _chunk(self, item: ParsedItem, earlier: int, started: float) -> IngestResult | _Pending:
        chunking = time.perf_counter()
        try:
            chunks = split_document(
                item.parsed,
                document_id=item.document_id,
                source=item.source,
                checksum=item.checksum,
                count_tokens=self.embedder.count_tokens,
                max_tokens=min(self.settings.chunk_tokens, self.embedder.max_tokens),
                overlap_tokens=self.settings.chunk_overlap_tokens,
                collection=item.collection,
            )
            if not chunks:
                raise EmptyFile(item.source, "no text to index")
        except Exception as exc:
            return self._failed(item.source, item.document_id, exc, started)
        metrics.INGEST_STAGE_SECONDS.labels("chunk").observe(time.perf_counter() - chunking)
        return _Pending(item, item.parsed.kind, chunks, started, earlier)

    def _embed_and_write(self, pending: list[_Pending], on_progress: ProgressCallback | None) -> list[IngestResult]:
        """Embeds a window of documents, then writes them with one call per index.

        Per-document writes cost ~20 ms each in Chroma and BM25 alike: as much as embedding
        a chunk. One batched write per window keeps ingest bound by the model alone. A
        crash between the two writes leaves documents incomplete in one index; the next
        ingest (or `reconcile`) sees that and processes them again.
        """
        if not pending:
            return []
        chunks = [c for p in pending for c in p.chunks]
        stage = time.perf_counter()
        try:
            vectors = self._embed(chunks, on_progress)
            metrics.INGEST_STAGE_SECONDS.labels("embed").observe(time.perf_counter() - stage)
        except Exception as exc:
            metrics.PIPELINE_ERRORS.labels("embedder").inc()
            return [self._failed(p.item.source, p.item.document_id, exc, p.started) for p in pending]
        if on_progress:
            on_progress("writing", 0, len(pending))
        stage = time.perf_counter()
        try:
            self.store.write_documents(
                chunks, vectors, replaced={p.item.document_id: p.earlier for p in pending if p.earlier}
            )
            self.bm25.add_many(
                ((p.item.document_id, p.item.checksum, [c.chunk_id for c in p.chunks], [c.index_text for c in p.chunks])
                 for p in pending),
                collections={p.item.document_id: p.item.collection for p in pending},
                stored={p.item.document_id: p.chunks for p in pending},
            )
            metrics.INGEST_STAGE_SECONDS.labels("write").observe(time.perf_counter() - stage)
        except Exception as exc:
            metrics.PIPELINE_ERRORS.labels("vector_store" if isinstance(exc, StoreUnavailable) else "bm25").inc()
            return [self._failed(p.item.source, p.item.document_id, exc, p.started) for p in pending]
        results = []
        for p in pending:
            metrics.INGEST_CHUNKS.inc(len(p.chunks))
            seconds = time.perf_counter() - p.started
            log.info("ingest.indexed", document_id=p.item.document_id, source=p.item.source,
                     chunks=len(p.chunks), seconds=round(seconds, 3))
            results.append(IngestResult(p.item.source, p.item.document_id, "indexed", len(p.chunks),
                                        p.chunks[0].title, p.kind, p.item.checksum, seconds=seconds))
        return results

    def _embed(self, chunks: Sequence[Chunk], on_progress: ProgressCallback | None) -> np.ndarray:
        """Vectors for the chunks, in order; encoded longest first, in progress-sized steps.

        Sorting the whole window by length first keeps every model batch free of padding,
        however the window is cut into steps for progress reports. A step is two model batches
        (64 chunks, about 3 s on a CPU): often enough for a live "chunks embedded" count with an ETA,
        and for a cancelled job to stop soon.
        """
        texts = [c.index_text for c in chunks]
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
        step = max(self.settings.embedding_batch_size * 2, 1)
        vectors = np.zeros((len(texts), self.embedder.dimension), dtype=np.float32)
        for start in range(0, len(order), step):
            part = order[start : start + step]
            vectors[part] = self.embedder.embed([texts[i] for i in part])
            if on_progress:
                on_progress("embedding", min(start + step, len(texts)), len(texts))
        return vectors

    def _failed(self, source: str, document_id: str, exc: Exception, started: float) -> IngestResult:
        component = "loader" if isinstance(exc, LoaderError) else "ingest"
        metrics.PIPELINE_ERRORS.labels(component).inc()
        message = str(exc) if isinstance(exc, LoaderError) else f"{source}: {type(exc).__name__}: {exc}"
        log.warning("ingest.failed", document_id=document_id, source=source, error=message, error_type=type(exc).__name__)
        transient = bool(getattr(exc, "transient", False)) or not isinstance(exc, RagError)
        return IngestResult(source, document_id, "failed", error=message, error_type=type(exc).__name__,
                            transient=transient and not isinstance(exc, LoaderError), seconds=time.perf_counter() - started)

    def _keep_in(self, document_id: str, collection: str) -> None:
        """An unchanged document asked for in another collection is moved there (no re-embedding)."""
        if self.bm25.document_collection(document_id) != collection:
            self.indexes.move_document(document_id, collection)

    def _index_state(self, document_id: str, checksum: str, force: bool = False) -> tuple[bool, int]:
        """(unchanged, earlier): whether both indexes hold every chunk of exactly this version
        (never, when forced), and how many chunks either holds of the document (its known ids)."""
        sparse = self.bm25.document_info(document_id)
        dense_checksum, present, expected = self.store.document_info(document_id)
        complete = (
            not force and sparse is not None
            and sparse[0] == checksum == dense_checksum and present == expected == sparse[1] > 0
        )
        return complete, max(present, expected, sparse[1] if sparse else 0)

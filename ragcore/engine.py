"""The engine façade: the only entry point the console, the bots and notebooks use."""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import structlog

from ragcore import abstention, extractive, loaders, metrics
from ragcore.bm25 import Bm25Index
from ragcore.chunking import split_document
from ragcore.citations import CitationFilter, build_citations
from ragcore.embeddings import Embedder, QueryBatcher, embedder_for
from ragcore.errors import EmptyFile, GenerationError, LoaderError, RagError, StoreUnavailable
from ragcore.fusion import fuse_convex, fuse_rrf
from ragcore.generation import ChatGenerator, build_messages, make_generator
from ragcore.settings import RagSettings
from ragcore.tokenize import tokenize
from ragcore.types import (
    Answer,
    Chunk,
    CitationsEvent,
    DoneEvent,
    ErrorEvent,
    Event,
    ParsedDocument,
    ScoredChunk,
    TokenEvent,
    Turn,
    Usage,
)
from ragcore.vectorstore import VectorStore

log = structlog.get_logger(__name__, component="engine")

MODES = ("hybrid", "context", "bm25", "dense")
ProgressCallback = Callable[[str, int, int], None]

# Chunks gathered across files before one encode call: large enough for the model's
# length-sorted batching to pay off, small enough to report progress often.
_EMBED_WINDOW = 2048
# Threads for the searches of async answers, one pool per process. Not the event loop's default
# pool: on a small machine that has 6 threads, and every chat's database writes queue there too; a
# search (~2 ms) must not wait behind them.
_SEARCH_THREADS = 4
_search_pool: ThreadPoolExecutor | None = None
_search_pool_lock = threading.Lock()


def _searches() -> ThreadPoolExecutor:
    global _search_pool
    with _search_pool_lock:
        if _search_pool is None:
            _search_pool = ThreadPoolExecutor(_SEARCH_THREADS, thread_name_prefix="search")
        return _search_pool


@dataclass(frozen=True)
class IngestRequest:
    path: Path
    document_id: str = ""
    title: str = ""
    source: str = ""


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
class Retrieval:
    chunks: tuple[ScoredChunk, ...]
    mode: str
    ms: float
    relevant: bool  # the documents cover the question (see ragcore.abstention)
    verdict: abstention.Verdict | None = None


@dataclass(frozen=True)
class ParsedItem:
    document_id: str
    parsed: ParsedDocument
    source: str
    checksum: str


@dataclass
class _Pending:
    item: ParsedItem
    kind: str
    chunks: list[Chunk]
    started: float
    existed: bool  # an earlier version may have chunks to remove


def document_id_for(path: Path) -> str:
    """A stable id for a file ingested by path: the same file always maps to the same id."""
    return "doc-" + hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]


def _words(text: str) -> Iterator[str]:
    """Splits text into word-sized tokens, spaces kept, so a fixed answer streams like an LLM's."""
    yield from re.findall(r"\S+\s*|\s+", text)


class Engine:
    """Ingest, retrieve and answer over one pair of indexes (Chroma + BM25).

    Usage example::

        from ragcore import Engine, RagSettings
        engine = Engine(RagSettings(data_dir="data"))
        engine.ingest_file("docs/handbook.pdf")
        print(engine.answer("How do I rotate the API key?").text)
    """

    def __init__(
        self,
        settings: RagSettings,
        *,
        embedder: Embedder | None = None,
        generator: ChatGenerator | None = None,
    ) -> None:
        self.settings = settings
        self.embedder: Embedder = embedder or embedder_for(settings)
        self.queries = QueryBatcher(self.embedder)  # concurrent questions share one model call
        self.sentences = extractive.SentenceEncoder(self.queries)  # scores the extractive answer's sentences
        self._generator = generator
        self._store: VectorStore | None = None
        self._bm25: Bm25Index | None = None
        self._lock = threading.Lock()

    # -- components, opened on first use -------------------------------------------------

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
                        self.settings.bm25_path, refresh_seconds=self.settings.index_refresh_seconds
                    )
        return self._bm25

    @property
    def generator(self) -> ChatGenerator | None:
        if self._generator is None and self.settings.llm_enabled:
            with self._lock:
                if self._generator is None:
                    self._generator = make_generator(self.settings)
        return self._generator

    # -- ingest ----------------------------------------------------------------------------

    def ingest_file(self, path: str | Path, *, document_id: str = "", title: str = "", source: str = "", force: bool = False) -> IngestResult:
        """Indexes one file; returns its result (never raises for a bad file)."""
        request = IngestRequest(Path(path), document_id, title, source)
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
            unchanged, existed = self._index_state(document_id, checksum, force)
            if unchanged:
                return IngestResult(source, document_id, "unchanged", checksum=checksum, seconds=time.perf_counter() - started)
            parsed = loaders.load_bytes(data, request.path.name)
            metrics.INGEST_STAGE_SECONDS.labels("parse").observe(time.perf_counter() - started)
        except Exception as exc:  # one bad file never stops the others
            return self._failed(source, document_id, exc, started)
        if request.title:
            parsed = replace(parsed, title=request.title)
        return self._chunk(ParsedItem(document_id, parsed, source, checksum), existed, started)

    def _prepare(self, item: ParsedItem, force: bool) -> IngestResult | _Pending:
        started = time.perf_counter()
        try:
            unchanged, existed = self._index_state(item.document_id, item.checksum, force)
        except Exception as exc:
            return self._failed(item.source, item.document_id, exc, started)
        if unchanged:
            return IngestResult(item.source, item.document_id, "unchanged", checksum=item.checksum)
        return self._chunk(item, existed, started)

    def _chunk(self, item: ParsedItem, existed: bool, started: float) -> IngestResult | _Pending:
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
            )
            if not chunks:
                raise EmptyFile(item.source, "no text to index")
        except Exception as exc:
            return self._failed(item.source, item.document_id, exc, started)
        metrics.INGEST_STAGE_SECONDS.labels("chunk").observe(time.perf_counter() - chunking)
        return _Pending(item, item.parsed.kind, chunks, started, existed)

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
                chunks, vectors, replaced=[p.item.document_id for p in pending if p.existed]
            )
            self.bm25.add_many(
                (p.item.document_id, p.item.checksum, [c.chunk_id for c in p.chunks], [c.index_text for c in p.chunks])
                for p in pending
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

    def _embed(self, chunks: Sequence[Chunk], on_progress: ProgressCallback | None):  # type: ignore[no-untyped-def]
        """Vectors for the chunks, in order; encoded longest first, in progress-sized steps.

        Sorting the whole window by length first keeps every model batch free of padding,
        however the window is cut into steps for progress reports.
        """
        texts = [c.index_text for c in chunks]
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
        step = max(self.settings.embedding_batch_size * 32, 1024)
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

    def _index_state(self, document_id: str, checksum: str, force: bool = False) -> tuple[bool, bool]:
        """(unchanged, exists): whether both indexes hold every chunk of exactly this version
        (never, when forced), and whether either holds anything of the document at all."""
        if force:
            return False, True
        sparse = self.bm25.document_info(document_id)
        dense_checksum, present, expected = self.store.document_info(document_id)
        complete = (
            sparse is not None and sparse[0] == checksum == dense_checksum and present == expected == sparse[1] > 0
        )
        return complete, sparse is not None or present > 0

    def delete_document(self, document_id: str) -> int:
        """Removes a document's chunks from both indexes; returns how many there were."""
        dense = self.store.delete_document(document_id)
        sparse = self.bm25.delete_document(document_id)
        log.info("document.deleted", document_id=document_id, chunks=max(dense, sparse))
        return max(dense, sparse)

    def document_status(self, document_id: str) -> dict[str, object]:
        """What each index holds of a document, for reconciliation."""
        dense_checksum, present, expected = self.store.document_info(document_id)
        sparse = self.bm25.document_info(document_id) or ("", 0)
        return {"dense_checksum": dense_checksum, "dense_chunks": present, "dense_expected": expected,
                "sparse_checksum": sparse[0], "sparse_chunks": sparse[1]}

    def reset_indexes(self) -> None:
        """Drops both indexes (for a reindex with another model); they reopen empty."""
        with self._lock:
            VectorStore.drop(self.settings)
            self._store = None
        self.bm25.clear()

    # -- retrieval -------------------------------------------------------------------------

    def search(self, query: str, *, mode: str = "hybrid", candidates: int | None = None,
               vector: np.ndarray | None = None) -> tuple[list[tuple[str, float]], float | None]:
        """Fused (chunk_id, score) ranking, and the best dense similarity (None in bm25 mode).

        `vector` is the query's embedding when the caller already has it (see `astream`).
        """
        if mode not in MODES:
            raise ValueError(f"unknown retrieval mode {mode!r}; use one of {', '.join(MODES)}")
        k = candidates or self.settings.candidates
        sparse = self.bm25.search(query, k) if mode != "dense" else []
        if mode != "bm25" and vector is None:
            vector = self.queries.embed_query(query)
        dense = self.store.query(vector, k) if mode != "bm25" else []
        best_dense = dense[0][1] if dense else (None if mode == "bm25" else 0.0)
        if mode == "bm25":
            return list(sparse), best_dense
        if mode == "dense":
            return list(dense), best_dense
        alpha = self.settings.hybrid_alpha
        if self.settings.fusion == "rrf":
            return fuse_rrf([sparse, dense], k=self.settings.rrf_k, weights=[1 - alpha, alpha]), best_dense
        return fuse_convex([sparse, dense], [1 - alpha, alpha]), best_dense

    def retrieve(self, query: str, *, mode: str = "hybrid", top_k: int | None = None, history: Sequence[Turn] = (),
                 vector: np.ndarray | None = None) -> Retrieval:
        """The top chunks for a query, near-duplicates removed, with a relevance verdict.

        `vector`: the embedding of `search_text(query, mode, history)`, if the caller has it.
        """
        started = time.perf_counter()
        top_k = top_k or self.settings.top_k
        text = self.search_text(query, mode, history)
        try:
            ranking, best_dense = self.search(text, mode=mode, vector=vector)
        except RagError:
            metrics.PIPELINE_ERRORS.labels("vector_store").inc()
            raise
        chosen: list[ScoredChunk] = []
        if ranking:
            head = ranking[: top_k * 3]
            found = self.store.get_chunks([cid for cid, _ in head])
            seen: list[set[str]] = []
            for cid, score in head:
                chunk = found.get(cid)
                if chunk is None:
                    continue  # deleted between the ranking and the fetch
                words = set(tokenize(chunk.text))
                if any(len(words ^ other) <= 0.1 * max(len(words), len(other), 1) for other in seen):
                    continue  # a near-copy of a better chunk (same text in two documents)
                seen.append(words)
                chosen.append(ScoredChunk(chunk, score))
                if len(chosen) == top_k:
                    break
        verdict = abstention.assess(query, text, chosen, best_dense=best_dense,
                                    frequencies=self.bm25.document_frequencies,
                                    threshold=self.settings.abstain_threshold)
        seconds = time.perf_counter() - started
        metrics.RETRIEVAL_SECONDS.labels(mode).observe(seconds)
        return Retrieval(tuple(chosen), mode, seconds * 1000, verdict.covered, verdict)

    def search_text(self, query: str, mode: str, history: Sequence[Turn] = ()) -> str:
        """What is searched for: in context mode the last questions are folded in, so that "and the
        second one?" finds its topic."""
        if mode != "context":
            return query
        earlier = [t.text for t in history if t.role == "user"][-2:]
        return " ".join([*earlier, query])

    # -- answering -------------------------------------------------------------------------

    def stream(self, question: str, *, history: Sequence[Turn] = (), mode: str | None = None) -> Iterator[Event]:
        """Events of one answer: tokens, then citations, then done (or one fatal error)."""
        run = _AnswerRun(self, question, history, mode)
        failure = run.start()
        if failure:
            yield failure
            return
        generator = self.generator if run.retrieval.relevant else None
        if generator is not None:
            try:
                for delta in generator.stream(run.messages()):
                    yield from run.on_delta(delta)
                run.finish_llm(generator)
            except GenerationError as exc:
                yield from run.fall_back(exc)
        else:
            yield from run.extractive()
        yield from run.finish()

    async def astream(self, question: str, *, history: Sequence[Turn] = (), mode: str | None = None) -> AsyncIterator[Event]:
        """The same events as `stream`, for async callers; retrieval runs in a worker thread."""
        run = _AnswerRun(self, question, history, mode)
        # The embedding is awaited here rather than in the worker thread, so a burst of questions
        # waits in the batcher (one model call for all) without holding the loop's few threads.
        vector = None
        if run.search_mode != "bm25":
            vector = await self.queries.aembed_query(self.search_text(question, run.search_mode, history))
        search = contextvars.copy_context().run  # as asyncio.to_thread does: the log context follows
        failure = await asyncio.get_running_loop().run_in_executor(_searches(), search, run.start, vector)
        if failure:
            yield failure
            return
        generator = self.generator if run.retrieval.relevant else None
        if generator is not None:
            try:
                async for delta in generator.astream(run.messages()):
                    for event in run.on_delta(delta):
                        yield event
                run.finish_llm(generator)
            except GenerationError as exc:
                await asyncio.get_running_loop().run_in_executor(_searches(), search, run.extractive_text)
                for event in run.fall_back(exc):
                    yield event
        else:
            # Sentence scoring calls the model: in a worker thread, never on the event loop.
            await asyncio.get_running_loop().run_in_executor(_searches(), search, run.extractive_text)
            for event in run.extractive():
                yield event
        for event in run.finish():
            yield event

    def answer(self, question: str, *, history: Sequence[Turn] = (), mode: str | None = None) -> Answer:
        """The whole answer at once (consumes `stream`)."""
        for event in self.stream(question, history=history, mode=mode):
            if isinstance(event, DoneEvent):
                return event.answer
            if isinstance(event, ErrorEvent) and event.fatal:
                raise RagError(event.message)
        raise RagError("the answer stream ended without a result")

    # -- operations ------------------------------------------------------------------------

    def warmup(self) -> None:
        """Loads the model and opens both indexes so the first question is fast."""
        self.embedder.embed_query("warm up")
        self.store.count()
        len(self.bm25)

    def health(self) -> dict[str, dict[str, object]]:
        """Each dependency's status and latency; never raises."""
        checks: dict[str, dict[str, object]] = {}

        def check(name: str, fn: Callable[[], object]) -> None:
            started = time.perf_counter()
            try:
                detail = fn()
                checks[name] = {"status": "ok", "detail": detail}
            except Exception as exc:
                checks[name] = {"status": "error", "detail": f"{type(exc).__name__}: {exc}"}
            checks[name]["ms"] = round((time.perf_counter() - started) * 1000, 1)

        check("embedding_model", lambda: {"name": self.embedder.name, "dimension": self.embedder.dimension})
        check("vector_store", lambda: {"chunks": self.store.count()})
        check("bm25_index", lambda: {"chunks": len(self.bm25)})
        if self.generator is None:
            checks["llm"] = {"status": "degraded", "detail": "no LLM configured: extractive answers", "ms": 0.0}
        else:
            check("llm", self.generator.check)
            if checks["llm"]["status"] == "error":
                checks["llm"]["status"] = "degraded"
                checks["llm"]["detail"] = f"degraded: extractive fallback ({checks['llm']['detail']})"
        return checks


@dataclass
class _AnswerRun:
    """The state of one answer while it streams; shared by the sync and async paths."""

    engine: Engine
    question: str
    history: Sequence[Turn]
    mode: str | None
    retrieval: Retrieval = field(init=False)
    parts: list[str] = field(default_factory=list)
    provider: str = "extractive"
    model: str = "extractive"
    usage: Usage = field(default_factory=Usage)
    fallback_reason: str = ""
    started: float = 0.0
    generation_started: float = 0.0
    _filter: CitationFilter | None = None
    _extractive: str | None = None

    @property
    def search_mode(self) -> str:
        return self.mode or ("context" if self.history else "hybrid")

    def start(self, vector: np.ndarray | None = None) -> ErrorEvent | None:
        self.started = time.perf_counter()
        try:
            self.retrieval = self.engine.retrieve(self.question, mode=self.search_mode, history=self.history,
                                                  vector=vector)
        except RagError as exc:
            log.error("answer.retrieval_failed", error=str(exc))
            return ErrorEvent("retrieval_unavailable", f"Search is unavailable right now: {exc}")
        self._filter = CitationFilter(len(self.retrieval.chunks))
        self.generation_started = time.perf_counter()
        return None

    def messages(self) -> list[dict[str, str]]:
        generator = self.engine.generator
        assert generator is not None
        self.provider, self.model = generator.provider, generator.model
        return build_messages(self.question, self.retrieval.chunks, self.history[-self.engine.settings.history_turns :])

    def on_delta(self, delta: str) -> Iterator[Event]:
        assert self._filter is not None
        text = self._filter.feed(delta)
        if text:
            self.parts.append(text)
            yield TokenEvent(text)

    def finish_llm(self, generator: ChatGenerator) -> None:
        assert self._filter is not None
        tail = self._filter.flush()
        if tail:
            self.parts.append(tail)
        self.usage = generator.last_usage

    def fall_back(self, exc: GenerationError) -> Iterator[Event]:
        metrics.PIPELINE_ERRORS.labels("llm").inc()
        log.warning("answer.llm_failed", code=exc.code, error=str(exc), tokens_sent=len(self.parts))
        self.fallback_reason = exc.code
        assert self._filter is not None
        tail = self._filter.flush()  # what the model said before it stopped, a held-back "[" included
        if tail:
            self.parts.append(tail)
            yield TokenEvent(tail)
        if self.parts:
            # The reader has seen part of an answer: say plainly that what follows replaces it.
            yield ErrorEvent(exc.code, "The language model stopped mid-answer; an extractive answer follows.", fatal=False)
            separator = "\n\n---\n\n"
            self.parts.append(separator)
            yield TokenEvent(separator)
        yield from self.extractive()

    def extractive_text(self) -> str:
        """The extractive answer, or the decline when the documents do not cover the question; once."""
        if self._extractive is None:
            chunks = self.retrieval.chunks
            if self.retrieval.relevant:
                self._extractive = extractive.compose(self.question, chunks, self.engine.sentences)
            else:
                verdict = self.retrieval.verdict or abstention.Verdict(False, "no_results")
                closest = extractive.first_sentence(chunks[0].chunk.text) if chunks else ""
                cited = extractive.where(chunks[0], 1) if chunks else ""
                self._extractive = abstention.decline_text(verdict, closest, cited)
        return self._extractive

    def extractive(self) -> Iterator[Event]:
        self.provider, self.model = "extractive", "extractive"
        if not self.retrieval.relevant:
            self.provider, self.model = "none", ""
        text = self.extractive_text()
        for word in _words(text):
            yield from self.on_delta(word)  # numbered like an LLM's answer, by the same filter
        assert self._filter is not None
        tail = self._filter.flush()
        if tail:
            self.parts.append(tail)
            yield TokenEvent(tail)

    def finish(self) -> Iterator[Event]:
        text = "".join(self.parts)
        assert self._filter is not None
        citations = build_citations(self._filter.sources, self.retrieval.chunks)
        generation_seconds = time.perf_counter() - self.generation_started
        metrics.GENERATION_SECONDS.labels(self.provider, self.model).observe(generation_seconds)
        metrics.GENERATION_TOKENS.labels(self.provider, self.model, "prompt").inc(self.usage.prompt_tokens)
        metrics.GENERATION_TOKENS.labels(self.provider, self.model, "completion").inc(self.usage.completion_tokens)
        yield CitationsEvent(citations)
        yield DoneEvent(
            Answer(
                text=text,
                citations=citations,
                provider=self.provider,
                model=self.model,
                mode=self.retrieval.mode,
                retrieval_ms=self.retrieval.ms,
                generation_ms=generation_seconds * 1000,
                usage=self.usage,
                extractive=self.provider in ("extractive", "none"),
                fallback_reason=self.fallback_reason,
                not_covered=not self.retrieval.relevant or abstention.is_decline(text),
            )
        )

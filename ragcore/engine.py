"""The engine façade: the only entry point the console, the bots and notebooks use.

It builds the parts once and hands each call to the one that does it: ragcore.ingest (files ->
both indexes), ragcore.retrieval (search), ragcore.answering (the answer driver) and
ragcore.health (the dependency checks).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from ragcore.answering import Answerer
from ragcore.embeddings import Embedder, QueryBatcher, embedder_for
from ragcore.errors import RagError
from ragcore.generation import ChatGenerator
from ragcore.health import Check, LlmProbe, run_checks
from ragcore.indexes import IndexedDocument, Indexes, IndexState, UsesIndexes
from ragcore.ingest import Ingestor, IngestRequest, IngestResult, ParsedItem, ProgressCallback, document_id_for
from ragcore.retrieval import MODES, Retrieval, Retriever
from ragcore.settings import RagSettings
from ragcore.types import DEFAULT_COLLECTION, Answer, DoneEvent, ErrorEvent, Event, Turn

__all__ = ["DEFAULT_COLLECTION", "MODES", "Engine", "IngestRequest", "IngestResult", "ParsedItem", "Retrieval", "document_id_for"]


class Engine(UsesIndexes):
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
        self.indexes = Indexes(settings, self.embedder)
        self.ingestor = Ingestor(settings, self.embedder, self.indexes)
        self.retriever = Retriever(settings, self.indexes, self.queries)
        self.answerer = Answerer(settings, self.retriever, self.queries, generator)
        self._llm_probe = LlmProbe()

    # -- components, opened on first use (`store` and `bm25` too) -------------------------

    @property
    def generator(self) -> ChatGenerator | None:
        return self.answerer.generator

    # -- ingest ----------------------------------------------------------------------------

    def ingest_file(self, path: str | Path, *, document_id: str = "", title: str = "", source: str = "",
                    force: bool = False, collection: str = DEFAULT_COLLECTION) -> IngestResult:
        """Indexes one file into `collection`; returns its result (never raises for a bad file).

        An unchanged file asked for in another collection is moved there without re-embedding.
        """
        return self.ingestor.ingest_file(path, document_id=document_id, title=title, source=source, force=force,
                                         collection=collection)

    def ingest_files(self, requests: Iterable[IngestRequest | str | Path], *, force: bool = False,
                     on_result: Callable[[IngestResult], None] | None = None,
                     on_progress: ProgressCallback | None = None) -> list[IngestResult]:
        """Indexes many files, embedding chunks of several files per model call for throughput."""
        return self.ingestor.ingest_files(requests, force=force, on_result=on_result, on_progress=on_progress)

    def ingest_parsed(self, items: Sequence[ParsedItem], *, force: bool = False,
                      on_result: Callable[[IngestResult], None] | None = None,
                      on_progress: ProgressCallback | None = None) -> list[IngestResult]:
        """Indexes documents that are already text (a BEIR corpus, a page fetched elsewhere)."""
        return self.ingestor.ingest_parsed(items, force=force, on_result=on_result, on_progress=on_progress)

    def delete_document(self, document_id: str) -> int:
        """Removes a document's chunks from both indexes; returns how many there were."""
        return self.indexes.delete_document(document_id)

    def move_document(self, document_id: str, collection: str) -> int:
        """Puts a document in another collection in both indexes, without re-embedding; returns its chunk count."""
        return self.indexes.move_document(document_id, collection)

    def move_documents(self, document_ids: Sequence[str], collection: str) -> int:
        """`move_document` for many documents (a whole source), with one keyword-index commit for all."""
        return self.indexes.move_documents(document_ids, collection)

    def document_status(self, document_id: str) -> IndexedDocument:
        """What each index holds of a document, for reconciliation."""
        return self.indexes.document_status(document_id)

    def reset_indexes(self) -> None:
        """Drops both indexes (for a reindex with another model); they reopen empty. Never drops one
        when the other cannot be reached (IndexesUnavailable); a damaged one is set aside instead."""
        self.indexes.reset()

    def index_states(self) -> dict[str, IndexState]:
        """Whether each index opens: "ok", "corrupt", "unavailable" or "mismatch" (another model)."""
        return self.indexes.states()

    def repair_indexes(self) -> list[str]:
        """Sets aside and rebuilds empty each index that cannot be opened; what was done (IndexesUnavailable: nothing)."""
        return self.indexes.repair()

    # -- retrieval -------------------------------------------------------------------------

    # Every entry point takes `collections`: None searches every chunk, a set only the chunks of those
    # collections (filtered inside both indexes, before ranking), an empty set nothing at all.

    def search(self, query: str, *, mode: str = "hybrid", candidates: int | None = None,
               vector: np.ndarray | None = None,
               collections: Collection[str] | None = None) -> tuple[list[tuple[str, float]], float | None]:
        """Fused (chunk_id, score) ranking, and the best dense similarity (None in bm25 mode)."""
        return self.retriever.search(query, mode=mode, candidates=candidates, vector=vector, collections=collections)

    def retrieve(self, query: str, *, mode: str = "hybrid", top_k: int | None = None, history: Sequence[Turn] = (),
                 vector: np.ndarray | None = None, collections: Collection[str] | None = None) -> Retrieval:
        """The top chunks for a query, near-duplicates removed, with a relevance verdict."""
        return self.retriever.retrieve(query, mode=mode, top_k=top_k, history=history, vector=vector,
                                       collections=collections)

    async def aretrieve(self, query: str, *, mode: str = "hybrid", history: Sequence[Turn] = (),
                        collections: Collection[str] | None = None) -> Retrieval:
        """`retrieve` for the event loop (the embedding is batched, the search runs in a thread)."""
        return await self.retriever.aretrieve(query, mode=mode, history=history, collections=collections)

    # -- answering -------------------------------------------------------------------------

    def astream(self, question: str, *, history: Sequence[Turn] = (), mode: str | None = None,
                collections: Collection[str] | None = None) -> AsyncIterator[Event]:
        """Events of one answer: tokens, then citations, then done (or one fatal error).

        `mode` forces a retrieval mode; by default a first question is "hybrid" and a follow-up "context".
        With an empty `collections` nothing is searched and the answer declines as not covered.
        """
        return self.answerer.astream(question, history=history, mode=mode, collections=collections)

    def stream(self, question: str, *, history: Sequence[Turn] = (), mode: str | None = None,
               collections: Collection[str] | None = None) -> Iterator[Event]:
        """The same events as `astream`, for synchronous callers."""
        return self.answerer.stream(question, history=history, mode=mode, collections=collections)

    def answer(self, question: str, *, history: Sequence[Turn] = (), mode: str | None = None,
               collections: Collection[str] | None = None) -> Answer:
        """The whole answer at once (consumes `stream`)."""
        for event in self.stream(question, history=history, mode=mode, collections=collections):
            if isinstance(event, DoneEvent):
                return event.answer
            if isinstance(event, ErrorEvent) and event.fatal:
                raise RagError(event.message)
        raise RagError("the answer stream ended without a result")

    # -- operations ------------------------------------------------------------------------

    def check_health(self, *, warm: bool = False, fresh: bool = False) -> dict[str, Check]:
        """Each dependency's status and latency; never raises.

        :param warm: load the model and open both indexes (the warm-up) rather than only look.
        :param fresh: ask the LLM now instead of reusing a check from the last 30 s.
        """
        def llm() -> Check:
            return self._llm_probe.check(self.generator, self.settings.provider, fresh=fresh)

        return run_checks(self.embedder, self.indexes, llm, warm=warm)

    def warmup(self) -> None:
        """Loads the model and opens both indexes so the first question is fast; raises if one is down."""
        failed = {name: c.detail for name, c in run_checks(self.embedder, self.indexes, None, warm=True).items()
                  if not c.ok}
        if failed:
            raise RagError("; ".join(f"{name}: {detail}" for name, detail in failed.items()))

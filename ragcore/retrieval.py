"""Retrieval: what is searched for, in which mode, fused how, de-duplicated, and whether it is relevant.

Each of these decisions is made here, once, for every caller (the answer driver, eval, notebooks).
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

import numpy as np

from ragcore import abstention, metrics
from ragcore.embeddings import QueryBatcher
from ragcore.errors import RagError
from ragcore.fusion import fuse_convex, fuse_rrf
from ragcore.indexes import Indexes, UsesIndexes
from ragcore.settings import RagSettings
from ragcore.tokenize import term_set
from ragcore.types import Chunk, ScoredChunk, Turn
from ragcore.vectorstore import EXACT_MAX, EXACT_MAX_SHARE

T = TypeVar("T")

MODES = ("hybrid", "context", "bm25", "dense")
CHUNKS_CACHED = 4096  # chunks kept by Retriever.chunks: a few MB of text

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


async def in_search_thread(fn: Callable[[], T]) -> T:
    """Runs `fn` in the search threads (it calls the model or the indexes); as asyncio.to_thread does, the
    log context follows."""
    return await asyncio.get_running_loop().run_in_executor(_searches(), contextvars.copy_context().run, fn)


async def _unless_failed(search: asyncio.Future[list[tuple[str, float]]]) -> list[tuple[str, float]] | None:
    """The keyword ranking searched beside the embedding, or None when that search failed: it is searched
    again with the rest, where its error is counted and raised as every search error is."""
    try:
        return await search
    except Exception:
        return None


@dataclass(frozen=True)
class Retrieval:
    """The chunks found for one question, best first, and whether they are relevant enough to answer from."""

    chunks: tuple[ScoredChunk, ...]
    mode: str
    ms: float
    relevant: bool  # the documents cover the question (see ragcore.abstention)
    verdict: abstention.Verdict | None = None


def choose_mode(mode: str | None, history: Sequence[Turn]) -> str:
    """The mode asked for, else "context" for a follow-up (there is history) and "hybrid" for a first question."""
    return mode or ("context" if history else "hybrid")


def search_text(query: str, mode: str, history: Sequence[Turn] = ()) -> str:
    """What is searched for: in context mode the last questions are folded in, so that "and the
    second one?" finds its topic."""
    if mode != "context":
        return query
    earlier = [t.text for t in history if t.role == "user"][-2:]
    return " ".join([*earlier, query])


class Retriever(UsesIndexes):
    """Searches both indexes and fuses them; `aretrieve` is the path of answers, `retrieve` of sync callers."""

    def __init__(self, settings: RagSettings, indexes: Indexes, queries: QueryBatcher) -> None:
        self.settings = settings
        self.indexes = indexes
        self.queries = queries  # concurrent questions share one model call
        self._chunks: dict[str, Chunk] = {}  # see `chunks`
        self._chunks_version: int | None = None
        self._chunks_lock = threading.Lock()

    def chunks(self, chunk_ids: Sequence[str]) -> dict[str, Chunk]:
        """The chunks of `chunk_ids`: those fetched before at this keyword index version from memory, then those
        whose stored fields the keyword index keeps (a folder index), then the rest from the vector store.

        The same chunks come back question after question, and a Chroma `get` costs ~1 ms of CPU however few
        it fetches (~3 ms for 18 at 100k chunks, against microseconds from the keyword index's mapped file).
        Every write, delete and move changes Chroma first and then commits the keyword index (ragcore.indexes,
        ragcore.ingest), so what was fetched at one version is what Chroma held once that version was
        committed, or newer: a new version starts afresh.
        """
        version = self.bm25.version
        with self._chunks_lock:
            if version != self._chunks_version:
                self._chunks, self._chunks_version = {}, version
            found = {cid: chunk for cid in chunk_ids if (chunk := self._chunks.get(cid)) is not None}
        missing = [cid for cid in chunk_ids if cid not in found]
        if missing:
            fetched = self.bm25.stored_chunks(missing)
            if len(fetched) < len(missing):
                fetched.update(self.store.get_chunks([cid for cid in missing if cid not in fetched]))
            found.update(fetched)
            with self._chunks_lock:
                if version == self._chunks_version:
                    if len(self._chunks) + len(fetched) > CHUNKS_CACHED:
                        self._chunks = {}
                    self._chunks.update(fetched)
        return found

    def search(self, query: str, *, mode: str = "hybrid", candidates: int | None = None,
               vector: np.ndarray | None = None, collections: Collection[str] | None = None,
               sparse: list[tuple[str, float]] | None = None) -> tuple[list[tuple[str, float]], float | None]:
        """Fused (chunk_id, score) ranking, and the best dense similarity (None in bm25 mode).

        `vector` is the query's embedding and `sparse` its keyword ranking (of `candidates`) when the caller
        already has them (see `aretrieve`). `collections` limits both searches to chunks of those
        collections, before ranking (None: all; empty: nothing).
        """
        if mode not in MODES:
            raise ValueError(f"unknown retrieval mode {mode!r}; use one of {', '.join(MODES)}")
        k = candidates or self.settings.candidates
        if sparse is None:
            sparse = self.bm25.search(query, k, collections=collections) if mode != "dense" else []
        dense: list[tuple[str, float]] = []
        if mode != "bm25" and (collections is None or collections):
            if vector is None:
                vector = self.queries.embed_query(query)
            dense = self._dense(vector, k, collections)
        best_dense = dense[0][1] if dense else (None if mode == "bm25" else 0.0)
        if mode == "bm25":
            return list(sparse), best_dense
        if mode == "dense":
            return list(dense), best_dense
        alpha = self.settings.hybrid_alpha
        if self.settings.fusion == "rrf":
            return fuse_rrf([sparse, dense], k=self.settings.rrf_k, weights=[1 - alpha, alpha]), best_dense
        return fuse_convex([sparse, dense], [1 - alpha, alpha]), best_dense

    def _dense(self, vector: np.ndarray, k: int, collections: Collection[str] | None) -> list[tuple[str, float]]:
        """The dense ranking, filtered by what the keyword index knows of each chunk's collection.

        An index of at most EXACT_MAX chunks is searched exactly, as a small filter is: a matrix product over
        its vectors kept in memory costs a tenth of a Chroma query's CPU at 2k chunks and half at 20k
        (Chroma's fixed cost per query is ~1.1 ms: its SQLite reads and runtime), and finds the true top k.
        """
        allowed = None if collections is None else frozenset(collections)
        share = self.bm25.share(allowed)  # 1.0 for the whole index
        if (allowed is None or share < EXACT_MAX_SHARE) and share * len(self.bm25) <= EXACT_MAX:
            version, ids, segments = self.bm25.allowed_chunks(allowed)  # exact search over those chunks
            return self.store.nearest_among(vector, k, ids, key=allowed, version=version, stamps=segments)
        if allowed is None:
            return self.store.query(vector, k)
        labels = self.bm25.document_collections()

        def visible(chunk_id: str) -> bool:
            return labels.get(chunk_id.rpartition(":")[0]) in allowed  # ids are chunk_id_for(document, position)

        return self.store.query(vector, k, collections=allowed, share=share, visible=visible)

    def retrieve(self, query: str, *, mode: str = "hybrid", top_k: int | None = None, history: Sequence[Turn] = (),
                 vector: np.ndarray | None = None, collections: Collection[str] | None = None) -> Retrieval:
        """The top chunks for a query, near-duplicates removed, with a relevance verdict.

        `vector`: the embedding of `search_text(query, mode, history)`, if the caller has it.
        `collections`: only chunks of these may be found (None: every chunk; empty: none).
        """
        return self._retrieve(query, search_text(query, mode, history), mode=mode, top_k=top_k, vector=vector,
                              collections=collections)

    async def aretrieve(self, query: str, *, mode: str, history: Sequence[Turn] = (),
                        collections: Collection[str] | None = None) -> Retrieval:
        """`retrieve` for the event loop: the embedding is awaited in the batcher, the search runs in a thread."""
        text = search_text(query, mode, history)
        allowed = None if collections is None else frozenset(collections)
        vector = sparse = None
        if mode != "bm25" and (allowed is None or allowed):
            # The embedding is awaited here rather than in a search thread, so a burst of questions
            # waits in the batcher (one model call for all) without holding the loop's few threads.
            embedding = self.queries.submit(text)
            keyword = None
            if not embedding.done() and mode != "dense":
                # A query not embedded before: its keyword search needs no vector, so it runs meanwhile (the
                # model runs outside the GIL): the question waits for the longer of the two, not for both.
                keyword = asyncio.ensure_future(in_search_thread(
                    partial(self.bm25.search, text, self.settings.candidates, collections=allowed)))
            try:
                vector = await asyncio.wrap_future(embedding)
            finally:
                if keyword is not None:
                    sparse = await _unless_failed(keyword)
        return await in_search_thread(partial(self._retrieve, query, text, mode=mode, vector=vector, sparse=sparse,
                                              collections=allowed))

    def _retrieve(self, query: str, text: str, *, mode: str, top_k: int | None = None, vector: np.ndarray | None = None,
                  sparse: list[tuple[str, float]] | None = None, collections: Collection[str] | None = None) -> Retrieval:
        started = time.perf_counter()
        top_k = top_k or self.settings.top_k
        allowed = None if collections is None else frozenset(collections)
        try:
            ranking, best_dense = self.search(text, mode=mode, vector=vector, collections=allowed, sparse=sparse)
        except RagError:
            metrics.PIPELINE_ERRORS.labels("vector_store").inc()
            raise
        chosen: list[ScoredChunk] = []
        if ranking:
            head = ranking[: top_k * 3]
            found = self.chunks([cid for cid, _ in head])
            seen: list[frozenset[str]] = []
            for cid, score in head:
                chunk = found.get(cid)
                if chunk is None:
                    continue  # deleted between the ranking and the fetch
                if allowed is not None and chunk.collection not in allowed:
                    continue  # moved out of the allowed collections between the ranking and the fetch
                words = term_set(chunk.text)
                if any(len(words ^ other) <= 0.1 * max(len(words), len(other), 1) for other in seen):
                    continue  # a near-copy of a better chunk (same text in two documents)
                seen.append(words)
                chosen.append(ScoredChunk(chunk, score))
                if len(chosen) == top_k:
                    break
        verdict = abstention.assess(query, text, chosen, best_dense=best_dense,
                                    frequencies=partial(self.bm25.document_frequencies, collections=allowed),
                                    threshold=self.settings.abstain_threshold)
        seconds = time.perf_counter() - started
        metrics.RETRIEVAL_SECONDS.labels(mode).observe(seconds)
        return Retrieval(tuple(chosen), mode, seconds * 1000, verdict.covered, verdict)

"""Answering: the one async answer driver (retrieve, prompt, stream the LLM, filter citations, fall back).

`Answerer.astream` is the whole choreography of an answer; `Answerer.stream` runs that same driver
for synchronous callers, on a private event loop.
"""

from __future__ import annotations

import asyncio
import queue
import re
import threading
import time
from collections.abc import AsyncIterator, Collection, Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import partial

import structlog

from ragcore import abstention, extractive, metrics
from ragcore.citations import CitationFilter, build_citations
from ragcore.embeddings import QueryBatcher
from ragcore.errors import GenerationError, RagError
from ragcore.generation import ChatGenerator, build_messages, make_generator
from ragcore.retrieval import Retrieval, Retriever, choose_mode, in_search_thread
from ragcore.settings import RagSettings
from ragcore.types import (
    Answer,
    Chunk,
    CitationsEvent,
    DoneEvent,
    ErrorEvent,
    Event,
    TokenEvent,
    Turn,
    Usage,
    chunk_id_for,
)

log = structlog.get_logger(__name__, component="engine")


def _words(text: str) -> Iterator[str]:
    """Splits text into word-sized tokens, spaces kept, so a fixed answer streams like an LLM's."""
    yield from re.findall(r"\S+\s*|\s+", text)


def recent_turns(history: Sequence[Turn], turns: int) -> tuple[Turn, ...]:
    """The last `turns` messages of a conversation: all the history an answer sees (search and prompt alike)."""
    return tuple(history[-turns:]) if turns > 0 else ()


class Answerer:
    """Answers questions: one driver for every caller, async first."""

    def __init__(self, settings: RagSettings, retriever: Retriever, queries: QueryBatcher,
                 generator: ChatGenerator | None = None) -> None:
        self.settings = settings
        self.retriever = retriever
        self.sentences = extractive.SentenceEncoder(queries)  # scores the extractive answer's sentences
        self._generator = generator
        self._lock = threading.Lock()

    @property
    def generator(self) -> ChatGenerator | None:
        """The LLM client, built on first use; None without a key (answers are extractive)."""
        if self._generator is None and self.settings.llm_enabled:
            with self._lock:
                if self._generator is None:
                    self._generator = make_generator(self.settings)
        return self._generator

    async def astream(self, question: str, *, history: Sequence[Turn] = (), mode: str | None = None,
                      collections: Collection[str] | None = None) -> AsyncIterator[Event]:
        """Events of one answer: tokens, then citations, then done (or one fatal error).

        `collections`: the only collections searched (None: all; empty: none, so the answer declines).
        """
        # Each of these is decided here, once: how much history, which mode (and so what is searched for).
        history = recent_turns(history, self.settings.history_turns)
        mode = choose_mode(mode, history)
        try:
            retrieval = await self.retriever.aretrieve(question, mode=mode, history=history, collections=collections)
        except RagError as exc:
            log.error("answer.retrieval_failed", error=str(exc))
            yield ErrorEvent("retrieval_unavailable", f"Search is unavailable right now: {exc}")
            return
        verdict = retrieval.verdict
        if verdict is not None and verdict.needs_sentence(self.settings.abstain_threshold):
            # Sentence scoring calls the model: in a worker thread, never on the event loop.
            retrieval = await in_search_thread(partial(self._second_look, question, retrieval, verdict))
        run = _AnswerRun(question, history, retrieval, self.sentences, self._next_chunk)
        run.start()
        generator = self.generator if retrieval.relevant else None
        if generator is not None:
            try:
                async for delta in generator.astream(run.messages(generator)):
                    for event in run.on_delta(delta):
                        yield event
                run.finish_llm(generator)
            except GenerationError as exc:
                await in_search_thread(run.extractive_text)
                for event in run.fall_back(exc):
                    yield event
        else:
            # Sentence scoring calls the model: in a worker thread, never on the event loop.
            await in_search_thread(run.extractive_text)
            for event in run.extractive():
                yield event
        for event in run.finish():
            yield event

    def _next_chunk(self, chunk: Chunk) -> Chunk | None:
        """The chunk after `chunk` in its document, as the index holds it (None after the last): the same
        document, so the same collection, as the retrieved chunk."""
        following = chunk_id_for(chunk.document_id, chunk.position + 1)
        try:
            return self.retriever.chunks([following]).get(following)
        except RagError as exc:
            log.warning("answer.next_chunk_unavailable", error=str(exc))
            return None

    def _second_look(self, question: str, retrieval: Retrieval, verdict: abstention.Verdict) -> Retrieval:
        """The retrieval with its verdict decided again on the closest sentence of its chunks."""
        best = extractive.best_sentence_similarity(question, retrieval.chunks, self.sentences)
        second = abstention.reconsider(verdict, best, threshold=self.settings.abstain_threshold)
        if second.covered != verdict.covered:
            log.info("answer.decided_by_a_sentence", covered=second.covered, chunk_score=round(verdict.score, 3),
                     score=round(second.score, 3))
        return replace(retrieval, relevant=second.covered, verdict=second)

    def stream(self, question: str, *, history: Sequence[Turn] = (), mode: str | None = None,
               collections: Collection[str] | None = None) -> Iterator[Event]:
        """`astream` for synchronous callers (notebooks, scripts): the same driver, run on a private loop."""
        return _in_private_loop(self.astream(question, history=history, mode=mode, collections=collections))


# -- the sync wrapper -------------------------------------------------------------------------------
# A thread of its own runs the loop, so `stream` also works where the calling thread already runs one.

_loop: asyncio.AbstractEventLoop | None = None
_loop_thread: threading.Thread | None = None
_loop_lock = threading.Lock()


def _private_loop() -> asyncio.AbstractEventLoop:
    global _loop, _loop_thread
    with _loop_lock:
        if _loop is None or _loop_thread is None or not _loop_thread.is_alive():  # not alive: a forked child
            _loop = asyncio.new_event_loop()
            _loop_thread = threading.Thread(target=_loop.run_forever, name="answers", daemon=True)
            _loop_thread.start()
        return _loop


def _in_private_loop(events: AsyncIterator[Event]) -> Iterator[Event]:
    """Iterates `events` on the private loop; one task runs the whole answer, as in an async caller."""
    out: queue.SimpleQueue[Event | BaseException | None] = queue.SimpleQueue()  # None: the end

    async def pump() -> None:
        try:
            async for event in events:
                out.put(event)
        except BaseException as exc:  # handed to the caller's thread, raised there
            out.put(exc)
        finally:
            out.put(None)

    running = asyncio.run_coroutine_threadsafe(pump(), _private_loop())  # the caller's log context goes along
    try:
        while (item := out.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        running.cancel()  # a caller that stops early ends the answer (and its LLM request) too


@dataclass
class _AnswerRun:
    """The state of one answer while it streams."""

    question: str
    history: Sequence[Turn]
    retrieval: Retrieval
    sentences: extractive.SentenceEncoder
    next_chunk: extractive.NextChunk | None = None
    parts: list[str] = field(default_factory=list)
    provider: str = "extractive"
    model: str = "extractive"
    usage: Usage = field(default_factory=Usage)
    fallback_reason: str = ""
    fallback_detail: str = ""
    generation_started: float = 0.0
    _filter: CitationFilter | None = None
    _extractive: str | None = None

    def start(self) -> None:
        self._filter = CitationFilter(len(self.retrieval.chunks))
        self.generation_started = time.perf_counter()

    def messages(self, generator: ChatGenerator) -> list[dict[str, str]]:
        self.provider, self.model = generator.provider, generator.model
        return build_messages(self.question, self.retrieval.chunks, self.history)

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
        self.fallback_reason, self.fallback_detail = exc.code, str(exc)
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
                self._extractive = extractive.compose(self.question, chunks, self.sentences, self.next_chunk)
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
        for word in _words(self.extractive_text()):
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
                fallback_detail=self.fallback_detail,
                not_covered=not self.retrieval.relevant or abstention.is_decline(text),
            )
        )

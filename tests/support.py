"""Helpers shared by the tests: a fast deterministic embedder, engine builders, the chat service from sync code."""

from __future__ import annotations

import asyncio
import hashlib
import re
import sys
from collections.abc import Iterator, MutableMapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import structlog
from structlog.testing import capture_logs

from ragcore import Engine, RagSettings
from ragcore.embeddings import Embedder
from ragcore.types import Chunk, Citation, ScoredChunk

# A small document most engine-level tests index: two sections, each answering one question.
DEPLOY = """# Deployment

## Rollback

To roll back a release, run the rollback pipeline with the previous tag. It notifies the on-call channel.

## Releases

Releases go out every Tuesday after the change review. Hotfixes can go out any day.
"""


# Two retrieved chunks for prompt and generator tests, and the fake LLM's default reply to them.
PROMPT_CHUNKS = [
    ScoredChunk(Chunk("d1:0", "d1", 0, "Alpha is first. It has more.", "Alpha guide", "alpha.md", "§ Intro"), 0.9),
    ScoredChunk(Chunk("d2:0", "d2", 0, "Beta is second! Really.", "Beta notes", "beta.pdf", "page 2"), 0.7),
]
PROMPT_REPLY = "According to the documents, Alpha is first [1]. Beta is second [2]."


class HashingEmbedder:
    """Bag-of-words hashed into 64 dimensions: deterministic, instant, enough for unit tests."""

    def __init__(self, name: str = "hashing-test", dimension: int = 64) -> None:
        self.name = name
        self._dimension = dimension

    @property
    def dimension(self) -> int:
        return self._dimension

    @property
    def max_tokens(self) -> int:
        return 254

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(re.findall(r"\w+|[^\w\s]", t)) for t in texts]

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self._dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                bucket = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=4).digest(), "little")
                out[row, bucket % self._dimension] += 1.0
            norm = np.linalg.norm(out[row])
            if norm:
                out[row] /= norm
        return out

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed([text])[0]


def make_engine(data_dir: Path, *, embedder: Embedder | None = None, **changes: Any) -> Engine:
    # The abstention threshold is calibrated for MiniLM's similarities; the hashing embedder's run lower.
    if embedder is None:
        changes.setdefault("abstain_threshold", 0.25)
    settings = RagSettings(data_dir=data_dir, index_refresh_seconds=0.0, **changes)
    return Engine(settings, embedder=embedder or HashingEmbedder())


@contextmanager
def process_engine(data_dir: Path, *, embedder: Embedder | None = None) -> Iterator[Engine]:
    """An engine on `data_dir` as the process's engine, with RAG_DATA_DIR pointing there, for the block."""
    from django.test import override_settings

    from console.engine import set_engine

    try:
        with override_settings(RAG_DATA_DIR=data_dir):
            engine = make_engine(data_dir, embedder=embedder)
            set_engine(engine)
            yield engine
    finally:
        set_engine(None)


@contextmanager
def serving_deploy(folder: Path, *, embedder: Embedder | None = None, **changes: Any) -> Iterator[Engine]:
    """An engine (in `folder`/data) holding the DEPLOY document, as the process's engine for the block,
    with Django's cache cleared on both sides (rate-limit counters of other tests)."""
    from django.core.cache import cache

    from console.engine import set_engine

    engine = make_engine(folder / "data", embedder=embedder, **changes)
    doc = folder / "deploy.md"
    doc.write_text(DEPLOY)
    engine.ingest_file(doc)
    set_engine(engine)
    cache.clear()
    try:
        yield engine
    finally:
        cache.clear()
        set_engine(None)


def ask_chat(**kwargs: Any) -> list[Any]:
    """Every event of one answer from the chat service's one async path (`areply`), for synchronous tests.

    Its ORM calls run in the thread pool, on their own connections: such tests need
    `django_db(transaction=True)`, so those connections see what the test wrote.
    """
    from console.chat import areply

    async def collect() -> list[Any]:
        return [event async for event in areply(**kwargs)]

    return asyncio.run(collect())


def answer_text(events: Sequence[Any]) -> str:
    """The text of an answer's token events."""
    from console.chat import AnswerToken

    return "".join(e.text for e in events if isinstance(e, AnswerToken))


def citation(n: int, title: str = "", *, source: str = "", location: str = "", document_id: str = "") -> Citation:
    """A numbered source as the chat service hands it to a surface."""
    return Citation(n=n, document_id=document_id, title=title, source=source, location=location, snippet="")


@contextmanager
def captured_logs() -> Iterator[list[MutableMapping[str, Any]]]:
    """structlog's `capture_logs` for Lorebot's own module loggers, even those already used.

    The app configures structlog with `cache_logger_on_first_use`, so a module logger that logged
    before (an earlier test) keeps its own processors and `capture_logs` alone would miss it: each
    module's `log` is swapped for a fresh one for the duration.
    """
    swapped = []
    for name, module in list(sys.modules.items()):
        proxy = getattr(module, "log", None) if name.split(".")[0] in ("ragcore", "console", "bots") else None
        if isinstance(proxy, structlog._config.BoundLoggerLazyProxy):
            fresh = structlog.get_logger(*proxy._logger_factory_args, **(proxy._initial_values or {}))
            swapped.append((module, proxy))
            module.log = fresh  # type: ignore[attr-defined]
    try:
        with capture_logs() as logs:
            yield logs
    finally:
        for module, proxy in swapped:
            module.log = proxy  # type: ignore[attr-defined]

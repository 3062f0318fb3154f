"""The engine's dependency checks: one list, used by the warm-up (which loads) and by readiness (which only looks)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from ragcore.embeddings import Embedder
from ragcore.generation import ChatGenerator
from ragcore.indexes import Indexes

DEGRADED = "degraded: extractive fallback"
# The dependencies without which no question can be answered; an LLM that is down only degrades answers.
REQUIRED = ("vector_store", "bm25_index", "embedding_model")
CHECKS = (*REQUIRED, "llm")
# A readiness probe every few seconds must not become a Groq request every few seconds.
LLM_CHECK_TTL_SECONDS = 30.0


@dataclass(frozen=True)
class Check:
    """One dependency's status ("ok", "error", DEGRADED, or "warming"), what it said, and how long it took."""

    status: str
    detail: object = None
    ms: float | None = None
    info: Mapping[str, object] = field(default_factory=dict)  # more keys for the JSON (the LLM's provider and model)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"status": self.status, **self.info}
        if self.detail is not None:
            out["detail"] = self.detail
        if self.ms is not None:
            out["ms"] = self.ms
        return out


def timed(probe: Callable[[], object]) -> Check:
    """Runs one probe: "ok" with what it returned, or "error" with the exception; never raises."""
    started = time.perf_counter()
    try:
        status, detail = "ok", probe()
    except Exception as exc:
        status, detail = "error", f"{type(exc).__name__}: {exc}"
    return Check(status, detail, round((time.perf_counter() - started) * 1000, 1))


class LlmProbe:
    """Whether the LLM answers with our key and model (Groq's model list), remembered for a while."""

    def __init__(self, ttl_seconds: float = LLM_CHECK_TTL_SECONDS) -> None:
        self.ttl_seconds = ttl_seconds
        self._last: tuple[float, Check] | None = None
        self._lock = threading.Lock()

    def check(self, generator: ChatGenerator | None, provider: str, *, fresh: bool = False) -> Check:
        """The LLM's check, naming its `provider` ("groq", "openai", or "extractive" when none is configured)."""
        with self._lock:
            last = self._last
        if last and not fresh and time.monotonic() - last[0] < self.ttl_seconds:
            return last[1]
        if generator is None:
            check = Check(DEGRADED, "no LLM configured (GROQ_API_KEY or LLM_PROVIDER): offline extractive answers", 0.0)
        else:
            check = timed(generator.check)
            if not check.ok:
                check = Check(DEGRADED, check.detail, check.ms)
        check = replace(check, info={"provider": provider, "model": generator.model if generator is not None else ""})
        with self._lock:
            self._last = (time.monotonic(), check)
        return check


def keyword_index(indexes: Indexes) -> dict[str, object]:
    """The keyword index's size, where it lives, and how far this process is behind its newest commit."""
    index = indexes.bm25
    fresh = index.freshness()
    return {"chunks": len(index), "store": fresh.kind, "location": fresh.location, "version": fresh.version,
            "behind_versions": fresh.behind_versions, "lag_seconds": fresh.lag_seconds,
            "last_refresh_lag_seconds": fresh.last_refresh_seconds}


def run_checks(embedder: Embedder, indexes: Indexes, llm: Callable[[], Check] | None, *, warm: bool) -> dict[str, Check]:
    """Every check, in CHECKS order. `warm` loads the model and opens the indexes; otherwise a probe
    must answer in milliseconds, so a model not loaded yet is reported, never loaded. `llm` None: not checked."""

    def embedding_model() -> object:
        if warm:
            embedder.embed_query("warm up")
        elif not getattr(embedder, "loaded", True):
            raise RuntimeError("not loaded yet")
        return {"name": embedder.name, "dimension": embedder.dimension}

    checks = {
        "vector_store": timed(lambda: {"chunks": indexes.store.count()}),
        "bm25_index": timed(lambda: keyword_index(indexes)),
        "embedding_model": timed(embedding_model),
    }
    if llm is not None:
        checks["llm"] = llm()
    return checks

"""Readiness: can this process answer questions now? (Liveness, /health, needs none of this.)

Each check reports its status and latency. The process is ready when the warm-up is done and
the database, the vector store, the BM25 index and the embedding model are all "ok"; an LLM
that cannot be reached leaves it ready but "degraded: extractive fallback".
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from console import engine as process_engine
from ragcore import Engine

DEGRADED = "degraded: extractive fallback"
# A readiness probe every few seconds must not become a Groq request every few seconds.
LLM_CHECK_TTL_SECONDS = 30.0
REQUIRED = ("database", "vector_store", "bm25_index", "embedding_model")

Check = dict[str, Any]

_llm_cache: weakref.WeakKeyDictionary[Engine, tuple[float, Check]] = weakref.WeakKeyDictionary()
_llm_lock = threading.Lock()


def _timed(fn: Callable[[], object]) -> Check:
    started = time.perf_counter()
    try:
        check: Check = {"status": "ok", "detail": fn()}
    except Exception as exc:
        check = {"status": "error", "detail": f"{type(exc).__name__}: {exc}"}
    check["ms"] = round((time.perf_counter() - started) * 1000, 1)
    return check


def _database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return connection.vendor


def _embedding_model(engine: Engine) -> object:
    # Never load the model here: a probe must answer in milliseconds, and the warm-up loads it.
    if not getattr(engine.embedder, "loaded", True):
        failed = process_engine.warmup.errors.get("embedding_model")
        raise RuntimeError(f"not loaded ({failed})" if failed else "not loaded yet")
    return {"name": engine.embedder.name, "dimension": engine.embedder.dimension}


def check_llm(engine: Engine, *, fresh: bool = False) -> Check:
    """Groq reachable with our key and model ("ok"), or the extractive fallback; cached for a while."""
    with _llm_lock:
        cached = _llm_cache.get(engine)
    if cached and not fresh and time.monotonic() - cached[0] < LLM_CHECK_TTL_SECONDS:
        return cached[1]
    generator = engine.generator
    if generator is None:
        check: Check = {"status": DEGRADED, "detail": "no GROQ_API_KEY: offline extractive answers", "ms": 0.0}
    else:
        check = _timed(generator.check)
        if check["status"] != "ok":
            check["status"] = DEGRADED
    with _llm_lock:
        _llm_cache[engine] = (time.monotonic(), check)
    return check


def readiness() -> tuple[bool, dict[str, Any]]:
    """(ready, the JSON body of /health/ready)."""
    warmup = process_engine.warmup
    warmup.start()  # a process whose server did not start it (WARMUP_ON_START=False) warms on the first probe
    checks: dict[str, Check] = {"database": _timed(_database)}
    if warmup.state == "warming":
        for name in ("vector_store", "bm25_index", "embedding_model", "llm"):
            checks[name] = {"status": "warming"}
        status = "warming"
    else:
        engine = process_engine.get_engine()
        checks["vector_store"] = _timed(lambda: {"chunks": engine.store.count()})
        checks["bm25_index"] = _timed(lambda: {"chunks": len(engine.bm25)})
        checks["embedding_model"] = _timed(lambda: _embedding_model(engine))
        checks["llm"] = check_llm(engine)
        status = "ready" if all(checks[name]["status"] == "ok" for name in REQUIRED) else "not_ready"
    body = {
        "status": status,
        "checks": checks,
        "warmup": {"state": warmup.state, "seconds": round(warmup.seconds, 2) if warmup.seconds is not None else None},
    }
    return status == "ready", body


@require_GET
def health(request: HttpRequest) -> JsonResponse:
    """Liveness: answers at once and touches no dependency."""
    return JsonResponse({"status": "ok"})


@require_GET
def health_ready(request: HttpRequest) -> JsonResponse:
    """Readiness: each dependency's status and latency; 503 until this process can answer questions."""
    ready, body = readiness()
    return JsonResponse(body, status=200 if ready else 503)

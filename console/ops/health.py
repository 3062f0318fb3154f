"""Liveness (/health) and readiness (/health/ready): can this process answer questions now?

Readiness is the database plus the engine's own dependency checks (ragcore.health), each with its
status and latency. The process is ready when the warm-up is done and the database, the vector
store, the BM25 index and the embedding model are all "ok"; an LLM that cannot be reached leaves
it ready but "degraded: extractive fallback"; a data disk under INGEST_MIN_FREE_MB free makes the
whole status "degraded" (still 200: questions are answered, uploads are refused).
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from console.engine import get_engine
from console.ingest import storage
from console.ops import warmup
from ragcore.health import CHECKS, REQUIRED, Check, timed


def _database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return connection.vendor


def readiness() -> tuple[bool, dict[str, Any]]:
    """(ready, the JSON body of /health/ready)."""
    warming = warmup.current()
    warming.start()  # a process whose server did not start it (WARMUP_ON_START=False) warms on the first probe
    checks: dict[str, Check] = {"database": timed(_database)}
    if warming.state == "warming":
        checks.update({name: Check("warming") for name in CHECKS})
        status = "warming"
    else:
        checks.update(get_engine().check_health())
        model = checks["embedding_model"]
        failed = warming.errors.get("embedding_model")
        if not model.ok and failed:  # the warm-up tried and failed: say why it is not loaded
            checks["embedding_model"] = replace(model, detail=f"{model.detail} ({failed})")
        checks["disk"] = _disk()
        required = ("database", *REQUIRED)
        status = "ready" if all(checks[name].ok for name in required) else "not_ready"
        if status == "ready" and not checks["disk"].ok:
            status = "degraded"  # questions are answered; uploads are refused until there is space
    body = {
        "status": status,
        "checks": {name: check.to_dict() for name, check in checks.items()},
        "warmup": {"state": warming.state,
                   "seconds": round(warming.seconds, 2) if warming.seconds is not None else None},
    }
    return status in ("ready", "degraded"), body


def _disk() -> Check:
    """The data folder's disk: "degraded: disk full" under INGEST_MIN_FREE_MB free."""
    started = time.perf_counter()
    try:
        full = storage.disk_full_reason()
        free_mb = storage.free_bytes() // (1024 * 1024)
    except OSError as exc:
        return Check("error", f"cannot read the free space: {exc}")
    ms = round((time.perf_counter() - started) * 1000, 2)
    if full:
        return Check("degraded: disk full", full, ms, info={"free_mb": free_mb})
    return Check("ok", ms=ms, info={"free_mb": free_mb})


@require_GET
def health(request: HttpRequest) -> JsonResponse:
    """Liveness: answers at once and touches no dependency."""
    return JsonResponse({"status": "ok"})


@require_GET
def health_ready(request: HttpRequest) -> JsonResponse:
    """Readiness: each dependency's status and latency; 503 until this process can answer questions."""
    ready, body = readiness()
    return JsonResponse(body, status=200 if ready else 503)

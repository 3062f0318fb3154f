"""Liveness (/health) and readiness (/health/ready): can this process answer questions now?

Readiness is the database, the originals' storage, and the engine's own dependency checks
(ragcore.health), each with its status and latency; the keyword index and the originals name where
they live, and the keyword index how far this process is behind its newest commit. The process is
ready when the warm-up is done and the database, the originals, the vector store, the BM25 index and
the embedding model are all "ok"; an LLM that cannot be reached leaves it ready but "degraded:
extractive fallback".
"""

from __future__ import annotations

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


def _originals() -> dict[str, object]:
    """Where uploaded originals live; listing nothing proves the storage answers."""
    storage.has_original("0" * 64)
    return {"storage": storage.originals_kind(), "location": storage.location()}


def readiness() -> tuple[bool, dict[str, Any]]:
    """(ready, the JSON body of /health/ready)."""
    warming = warmup.current()
    warming.start()  # a process whose server did not start it (WARMUP_ON_START=False) warms on the first probe
    checks: dict[str, Check] = {"database": timed(_database), "originals": timed(_originals)}
    if warming.state == "warming":
        checks.update({name: Check("warming") for name in CHECKS})
        status = "warming"
    else:
        checks.update(get_engine().check_health())
        model = checks["embedding_model"]
        failed = warming.errors.get("embedding_model")
        if not model.ok and failed:  # the warm-up tried and failed: say why it is not loaded
            checks["embedding_model"] = replace(model, detail=f"{model.detail} ({failed})")
        required = ("database", "originals", *REQUIRED)
        status = "ready" if all(checks[name].ok for name in required) else "not_ready"
    body = {
        "status": status,
        "checks": {name: check.to_dict() for name, check in checks.items()},
        "warmup": {"state": warming.state,
                   "seconds": round(warming.seconds, 2) if warming.seconds is not None else None},
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

"""Liveness (/health) and readiness (/health/ready): can this process answer questions now?

Readiness is the database plus the engine's own dependency checks (ragcore.health), each with its
status and latency. The process is ready when the warm-up is done and the database, the vector
store, the BM25 index and the embedding model are all "ok"; an LLM that cannot be reached leaves
it ready but "degraded: extractive fallback".
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from console.engine import get_engine
from console.ops import warmup
from console.ops.counts import collect_counts
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
        required = ("database", *REQUIRED)
        status = "ready" if all(checks[name].ok for name in required) else "not_ready"
    body = {
        "status": status,
        "checks": {name: check.to_dict() for name, check in checks.items()},
        # What the database says Lorebot holds beside what each index holds (the dashboard shows the same).
        "counts": collect_counts().to_dict() if status != "warming" and checks["database"].ok else None,
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

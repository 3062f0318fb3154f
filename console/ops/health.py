"""Liveness (/health) and readiness (/health/ready): can this process answer questions now?

Readiness is the database, the originals' storage, and the engine's own dependency checks
(ragcore.health), each with its status and latency; the keyword index and the originals name where
they live, and the keyword index how far this process is behind its newest commit. The process is
ready when the warm-up is done and the database, the originals, the vector store, the BM25 index and
the embedding model are all "ok"; an LLM that cannot be reached leaves it ready but "degraded:
extractive fallback". An index holding fewer chunks than the database says
are indexed makes it "degraded" (still 200: answers come from what is there), with the numbers; so
does a data disk under INGEST_MIN_FREE_MB free (questions are answered, uploads are refused).
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from django.db import connection
from django.db.models import Sum
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from console.engine import get_engine
from console.ingest import storage
from console.models import Document
from console.ops import warmup
from console.ops.counts import collect_counts
from console.syncing.status import failed_sources
from ragcore.health import CHECKS, REQUIRED, Check, timed


def _database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return connection.vendor


# What an index reports when it holds fewer chunks than the database says are indexed.
BEHIND = "degraded: fewer chunks than the database says"
RECONCILE_HINT = "run `python manage.py reconcile` to re-queue what is missing"


def _indexed_in_database() -> int:
    """Chunks the database says are searchable: those of every document marked indexed."""
    return int(Document.objects.filter(status=Document.Status.INDEXED).aggregate(n=Sum("chunk_count"))["n"] or 0)


def missing_chunks(held: dict[str, int]) -> dict[str, int]:
    """For each index in `held` (its chunk count), how many chunks the database lists that it lacks."""
    expected = _indexed_in_database()
    return {name: max(0, expected - count) for name, count in held.items()}


def _compare_with_database(checks: dict[str, Check]) -> None:
    """An index that opens but holds fewer chunks than the database lists (deleted, emptied, a write
    that never landed) is degraded, with both numbers and the reconcile hint. More is fine:
    `manage.py ingest` writes to the indexes without database rows."""
    expected = _indexed_in_database()
    for name in ("vector_store", "bm25_index"):
        check = checks[name]
        held = check.detail.get("chunks") if check.ok and isinstance(check.detail, dict) else None
        if isinstance(held, int) and held < expected:
            checks[name] = replace(check, status=BEHIND, detail={
                "chunks": held, "database_chunks": expected, "missing": expected - held, "hint": RECONCILE_HINT})


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
        if checks["database"].ok:
            _compare_with_database(checks)
        checks["disk"] = _disk()
        if checks["database"].ok:
            checks["sources"] = _sources()
        required = ("database", "originals", *REQUIRED)
        if all(checks[name].ok for name in required):
            status = "ready"
        elif all(checks[name].ok or checks[name].status == BEHIND for name in required):
            status = "degraded"  # answers still come, from what the indexes hold; reconcile heals it
        else:
            status = "not_ready"
        if status == "ready" and not checks["disk"].ok:
            status = "degraded"  # questions are answered; uploads are refused until there is space
    body = {
        "status": status,
        "checks": {name: check.to_dict() for name, check in checks.items()},
        # What the database says Lorebot holds beside what each index holds (the dashboard shows the same).
        "counts": collect_counts().to_dict() if status != "warming" and checks["database"].ok else None,
        "warmup": {"state": warming.state,
                   "seconds": round(warming.seconds, 2) if warming.seconds is not None else None},
    }
    return status in ("ready", "degraded"), body


def _sources() -> Check:
    """Synced sources whose last sync failed, named with why: a stale source is worth knowing, but questions
    are still answered from what was synced, so it never makes the process unready (nor degraded)."""
    started = time.perf_counter()
    failed = failed_sources()
    ms = round((time.perf_counter() - started) * 1000, 2)
    if failed:
        return Check("failed syncs", {"failed": failed}, ms)
    return Check("ok", ms=ms)


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

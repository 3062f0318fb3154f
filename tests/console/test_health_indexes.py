"""/health/ready compares what the database says is indexed with what each index holds."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from console.models import Document
from console.ops.warmup import Warmup
from ragcore import Engine
from tests.console.test_health import engine, no_engine_left, release, warmup  # noqa: F401

pytestmark = pytest.mark.django_db


def _rows_for(engine: Engine) -> int:
    """Document rows for what the engine holds, as uploads leave them: indexed, with their chunk counts."""
    held = engine.bm25.documents()
    for n, (document_id, (checksum, chunks)) in enumerate(held.items()):
        Document.objects.create(checksum=checksum or f"c{n}", original_filename=f"{document_id}.md",
                                status=Document.Status.INDEXED, chunk_count=chunks)
    return sum(chunks for _, chunks in held.values())


def ready() -> tuple[int, dict[str, Any]]:
    response = Client().get("/health/ready")
    return response.status_code, response.json()


def test_indexes_holding_what_the_database_says_are_ready(warmup: Warmup, engine: Engine) -> None:
    _rows_for(engine)
    release(engine)
    warmup.start()
    assert warmup.done.wait(10)
    status, body = ready()
    assert status == 200 and body["status"] == "ready", body


def test_an_emptied_vector_index_is_degraded_with_the_numbers_and_the_reconcile_hint(
        warmup: Warmup, engine: Engine) -> None:
    """The finding: with the Chroma folder deleted, readiness said "ready" with 0 vector chunks."""
    total = _rows_for(engine)
    release(engine)
    warmup.start()
    assert warmup.done.wait(10)
    for document_id in engine.bm25.documents():
        engine.store.delete_document(document_id)
    status, body = ready()
    assert status == 200 and body["status"] == "degraded"
    vector = body["checks"]["vector_store"]
    assert vector["status"] == "degraded: fewer chunks than the database says"
    assert vector["detail"]["chunks"] == 0 and vector["detail"]["database_chunks"] == total == vector["detail"]["missing"]
    assert "manage.py reconcile" in vector["detail"]["hint"]
    assert body["checks"]["bm25_index"]["status"] == "ok"


def test_a_deleted_bm25_index_is_degraded_too(warmup: Warmup, engine: Engine, tmp_path: Path) -> None:
    total = _rows_for(engine)
    release(engine)
    warmup.start()
    assert warmup.done.wait(10)
    shutil.rmtree(engine.settings.bm25_path)  # the manifest gone: the index reads as empty
    engine.bm25.reload_if_changed(force=True)
    status, body = ready()
    assert status == 200 and body["status"] == "degraded"
    assert body["checks"]["bm25_index"]["detail"] == {
        "chunks": 0, "database_chunks": total, "missing": total,
        "hint": "run `python manage.py reconcile` to re-queue what is missing"}


def test_documents_ingested_from_the_command_line_only_do_not_count_as_a_mismatch(
        warmup: Warmup, engine: Engine) -> None:
    """`manage.py ingest` writes to the indexes with no database rows: more chunks than the database is fine."""
    release(engine)
    warmup.start()
    assert warmup.done.wait(10)
    assert ready()[1]["status"] == "ready"


def test_metrics_show_the_chunks_each_index_lacks(warmup: Warmup, engine: Engine) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    def missing() -> dict[str, float]:
        text = Client(REMOTE_ADDR="127.0.0.1").get("/metrics").content.decode()
        family = next(f for f in text_string_to_metric_families(text) if f.name == "rag_index_missing_chunks")
        return {s.labels["index"]: s.value for s in family.samples}

    total = _rows_for(engine)
    release(engine)
    warmup.start()
    assert warmup.done.wait(10)
    assert missing() == {"vector_store": 0, "bm25_index": 0}
    for document_id in engine.bm25.documents():
        engine.store.delete_document(document_id)
    assert missing() == {"vector_store": total, "bm25_index": 0}

"""Moving many documents updates the dense store in batches, not one Chroma update per document."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ragcore.types import DEFAULT_COLLECTION
from tests.ragcore.test_collections import item
from tests.support import make_engine


def test_many_documents_move_in_one_update_and_every_chunk_follows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = make_engine(tmp_path / "data")
    texts = [f"Note {i}. The heron count rose.\n\nNote {i}, again: the heron count fell." for i in range(40)]
    engine.ingest_parsed([item(f"doc-{i}", text) for i, text in enumerate(texts)])
    store = engine.store
    updates: list[int] = []
    real = store._collection.update

    def counted(**kwargs: Any) -> Any:
        updates.append(len(kwargs["ids"]))
        return real(**kwargs)

    monkeypatch.setattr(store._collection, "update", counted)
    ids = [f"doc-{i}" for i in range(40)]
    chunks = sum(engine.document_status(d).sparse_chunks for d in ids)
    assert engine.move_documents(ids, "birds") == chunks
    assert updates == [chunks]  # one batch (Chroma's limit is far above 40 documents' chunks)
    found = engine.retrieve("heron count", mode="dense", collections={"birds"}, top_k=50)
    assert {s.chunk.document_id for s in found.chunks} == set(ids)
    assert not engine.retrieve("heron count", mode="dense", collections={DEFAULT_COLLECTION}).chunks

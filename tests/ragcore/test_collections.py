"""Collections inside the engine: a search sees only the collections it is given, in both indexes."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import chromadb
import numpy as np
import pytest
from chromadb.config import Settings as ChromaSettings

from ragcore import Engine
from ragcore.abstention import NOT_COVERED
from ragcore.embeddings import Embedder
from ragcore.ingest import ParsedItem
from ragcore.metrics import DENSE_FILTERED_SEARCHES
from ragcore.types import DEFAULT_COLLECTION, ParsedDocument, Section
from ragcore.vectorstore import COLLECTIONS_MARKER, HNSW_SEARCH_EF
from tests.support import make_engine

SECRET = "The zanzibar merger closes on the ninth of March at a price of forty dollars per share."


def item(document_id: str, text: str, collection: str = DEFAULT_COLLECTION) -> ParsedItem:
    parsed = ParsedDocument(document_id, "text", (Section(text),))
    return ParsedItem(document_id, parsed, f"{document_id}.txt", f"sum-{document_id}-{collection}", collection)


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    engine = make_engine(tmp_path / "data", top_k=3, candidates=3)
    items = [item("secret", SECRET, "finance")]
    # Visible documents that share words with the question, each less well than the secret one.
    items += [item(f"public-{i}", f"The zanzibar office note {i}: merger rumours are not news.") for i in range(6)]
    results = engine.ingest_parsed(items)
    assert {r.status for r in results} == {"indexed"}
    return engine


QUESTION = "When does the zanzibar merger close and at what price per share?"


@pytest.mark.parametrize("mode", ["hybrid", "bm25", "dense"])
def test_a_hidden_document_that_would_rank_first_is_never_found(engine: Engine, mode: str) -> None:
    unfiltered = engine.retrieve(QUESTION, mode=mode)
    assert unfiltered.chunks[0].chunk.document_id == "secret"

    filtered = engine.retrieve(QUESTION, mode=mode, collections={DEFAULT_COLLECTION})
    found = [s.chunk.document_id for s in filtered.chunks]
    assert "secret" not in found
    assert len(found) == 3  # the hidden one did not take a place in the top k


def test_an_allowed_collection_is_searched(engine: Engine) -> None:
    got = engine.retrieve(QUESTION, collections={"finance", DEFAULT_COLLECTION})
    assert got.chunks[0].chunk.document_id == "secret"
    assert got.chunks[0].chunk.collection == "finance"


def test_an_empty_set_of_collections_declines_without_a_passage(engine: Engine) -> None:
    answer = engine.answer(QUESTION, collections=set())
    assert answer.not_covered
    assert answer.text.startswith(NOT_COVERED)
    assert "zanzibar" not in answer.text.lower()
    assert answer.citations == ()


def test_a_decline_never_quotes_a_hidden_passage(engine: Engine) -> None:
    answer = engine.answer("What price per share does the merger close at on the ninth of March?",
                           collections={"nobody-here"})
    assert answer.not_covered
    assert "forty" not in answer.text
    assert answer.citations == ()


def test_move_document_changes_who_finds_it_without_reembedding(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_embedding(texts: object) -> None:
        raise AssertionError("a move must not embed anything")

    monkeypatch.setattr(engine.embedder, "embed", no_embedding)
    assert engine.move_document("secret", DEFAULT_COLLECTION) == 1
    monkeypatch.undo()  # questions are embedded again
    got = engine.retrieve(QUESTION, collections={DEFAULT_COLLECTION})
    assert got.chunks[0].chunk.document_id == "secret"
    assert engine.retrieve(QUESTION, collections={"finance"}).chunks == ()


def test_an_unchanged_document_ingested_into_another_collection_is_moved(engine: Engine) -> None:
    again = engine.ingest_parsed([item("public-0", "The zanzibar office note 0: merger rumours are not news.")])
    assert again[0].status == "unchanged"
    moved = replace(item("public-0", "The zanzibar office note 0: merger rumours are not news."), collection="finance")
    assert engine.ingest_parsed([moved])[0].status == "unchanged"
    assert engine.bm25.document_collection("public-0") == "finance"
    assert engine.store.get_chunks(["public-0:0"])["public-0:0"].collection == "finance"


def test_filtered_dense_search_finds_what_chromas_own_filter_finds(tmp_path: Path) -> None:
    engine = make_engine(tmp_path / "data")
    words = "glacier meadow canyon river forest desert island valley summit harbor".split()
    items = [item(f"doc-{i}", f"{words[i % 10]} {words[(i * 3) % 10]} {words[(i * 7) % 10]} note {i}",
                  "hr" if i % 4 == 0 else DEFAULT_COLLECTION) for i in range(120)]
    engine.ingest_parsed(items)
    before = {path: DENSE_FILTERED_SEARCHES.labels(path)._value.get() for path in ("overfetch", "exact")}
    for query in ("glacier river", "summit harbor note", "desert", "island valley canyon"):
        vector = engine.embedder.embed_query(query)
        for allowed in ({"hr"}, {DEFAULT_COLLECTION}):
            exact = engine.store.query(vector, 5, collections=allowed)  # Chroma's where filter
            fast = engine.retriever._dense(vector, 5, allowed)
            assert [cid for cid, _ in fast] == [cid for cid, _ in exact] or np.allclose(
                [s for _, s in fast], [s for _, s in exact], atol=1e-6)  # ties may pick either chunk
            assert all(engine.store.get_chunks([cid])[cid].collection in allowed for cid, _ in fast)
    # Exact search answered the 25 % filter; over-fetching the 75 % one (a rare query whose over-fetch came
    # back short falls back to Chroma's filter).
    assert DENSE_FILTERED_SEARCHES.labels("exact")._value.get() == before["exact"] + 4
    assert DENSE_FILTERED_SEARCHES.labels("overfetch")._value.get() >= before["overfetch"] + 3


def test_an_index_built_before_collections_reads_as_the_default_collection(tmp_path: Path) -> None:
    engine = make_engine(tmp_path / "data")
    settings = engine.settings
    # What the code before collections wrote: no marker on the collection, no field on the chunks.
    client = chromadb.PersistentClient(path=str(settings.chroma_path), settings=ChromaSettings(anonymized_telemetry=False))
    old = client.get_or_create_collection(
        settings.chroma_collection, configuration={"hnsw": {"space": "cosine", "ef_search": HNSW_SEARCH_EF}},
        metadata={"embedding_model": engine.embedder.name, "embedding_dimension": engine.embedder.dimension},
        embedding_function=None)
    texts = ["glacier pathway survey", "meadow flowers in spring", "canyon river rafting"]
    old.add(ids=[f"old-{i}:0" for i in range(3)], embeddings=engine.embedder.embed(texts),
            metadatas=[{"document_id": f"old-{i}", "position": 0, "text": t, "checksum": "v", "chunk_count": 1}
                       for i, t in enumerate(texts)])
    for i, t in enumerate(texts):
        engine.bm25.add(f"old-{i}", "v", [f"old-{i}:0"], [t])

    reopened = make_engine(tmp_path / "data")
    vector = reopened.embedder.embed_query("glacier pathway")
    assert reopened.store.query(vector, 3, collections={DEFAULT_COLLECTION})[0][0] == "old-0:0"  # Chroma's filter
    assert reopened.store.query(vector, 3, collections={"hr"}) == []
    got = reopened.retrieve("glacier pathway", collections={DEFAULT_COLLECTION})
    assert got.chunks[0].chunk.document_id == "old-0"
    labelled = old.get(ids=["old-1:0"], include=["metadatas"])["metadatas"] or []
    assert labelled[0]["collection"] == DEFAULT_COLLECTION
    assert client.get_collection(settings.chroma_collection).metadata[COLLECTIONS_MARKER] == 1


def test_with_the_real_model_an_outsider_never_gets_the_secret_and_an_insider_does(tmp_path: Path,
                                                                                   real_embedder: Embedder) -> None:
    engine = make_engine(tmp_path / "data", embedder=real_embedder)
    engine.ingest_parsed([
        item("secret", SECRET, "finance"),
        item("office", "The Zanzibar office opens at nine and closes at five on weekdays."),
        item("parking", "Parking permits for the office garage are requested from facilities."),
    ])
    question = "At what price per share does the Zanzibar merger close?"
    outsider = engine.answer(question, collections={DEFAULT_COLLECTION})
    assert "forty" not in outsider.text and "merger" not in outsider.text.lower()
    assert all(c.document_id != "secret" for c in outsider.citations)
    insider = engine.answer(question, collections={DEFAULT_COLLECTION, "finance"})
    assert not insider.not_covered
    assert "forty dollars" in insider.text
    assert insider.citations[0].document_id == "secret"


def test_move_documents_moves_many_at_once(engine: Engine) -> None:
    assert engine.move_documents([f"public-{i}" for i in range(3)], "finance") == 3
    got = engine.retrieve("zanzibar office note merger", mode="bm25", collections={"finance"})
    found = {s.chunk.document_id for s in got.chunks}
    assert len(found) == 3 and found <= {"secret", "public-0", "public-1", "public-2"}  # top_k is 3
    assert all(s.chunk.collection == "finance" for s in got.chunks)
    assert engine.move_documents(["nowhere"], "finance") == 0


def test_a_small_collection_is_searched_exactly_and_sees_a_document_moved_in(tmp_path: Path) -> None:
    engine = make_engine(tmp_path / "data")
    words = "glacier meadow canyon river forest desert island valley summit harbor".split()
    items = [item(f"doc-{i}", f"{words[i % 10]} {words[(i * 3) % 10]} {words[(i * 7) % 10]} note {i}",
                  "tiny" if i in (5, 50) else DEFAULT_COLLECTION) for i in range(120)]
    engine.ingest_parsed(items)
    vector = engine.embedder.embed_query("forest island")
    before = DENSE_FILTERED_SEARCHES.labels("exact")._value.get()
    fast = engine.retriever._dense(vector, 5, {"tiny"})
    assert [cid for cid, _ in fast] == [cid for cid, _ in engine.store.query(vector, 5, collections={"tiny"})]
    assert {cid for cid, _ in fast} == {"doc-5:0", "doc-50:0"}
    engine.move_document("doc-7", "tiny")
    assert {cid for cid, _ in engine.retriever._dense(vector, 5, {"tiny"})} == {"doc-5:0", "doc-50:0", "doc-7:0"}
    assert DENSE_FILTERED_SEARCHES.labels("exact")._value.get() == before + 2

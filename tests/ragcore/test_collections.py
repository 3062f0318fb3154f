"""Collections inside the engine: a search sees only the collections it is given, in both indexes."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragcore import Engine
from ragcore.abstention import NOT_COVERED
from ragcore.ingest import ParsedItem
from ragcore.types import DEFAULT_COLLECTION, ParsedDocument, Section
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

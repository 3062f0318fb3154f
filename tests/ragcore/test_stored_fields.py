"""A folder keyword index keeps each chunk's stored fields, so the answer path reads retrieved chunks from it
rather than from Chroma; an index without them (older, or a database store) falls back to Chroma."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ragcore import Engine
from ragcore.bm25 import Bm25Index
from ragcore.ingest import ParsedItem
from ragcore.types import DEFAULT_COLLECTION, Chunk, ParsedDocument, Section, chunk_id_for
from tests.support import make_engine


def item(n: int, collection: str = DEFAULT_COLLECTION) -> ParsedItem:
    sections = (Section(f"harbor lantern note {n} about copper kettles", "page 1"),
                Section(f"second part of document {n} on willow orchards", "page 2"))
    return ParsedItem(f"doc-{n}", ParsedDocument(f"Handbook {n}", "text", sections), f"docs/doc-{n}.txt",
                      f"sum-{n}", collection)


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    engine = make_engine(tmp_path / "data")
    assert {r.status for r in engine.ingest_parsed([item(n, "team" if n % 2 else DEFAULT_COLLECTION)
                                                    for n in range(6)])} == {"indexed"}
    return engine


@pytest.fixture
def chunk_reads(engine: Engine) -> Iterator[list[list[str]]]:
    """What each Chroma `get` asked to include, as the test goes (the exact search's vector fetch asks for
    embeddings; a chunk read asks for metadatas)."""
    includes: list[list[str]] = []
    real = engine.store._read

    def spy(method: str, **kwargs: Any) -> Any:
        if method == "get":
            includes.append(list(kwargs.get("include") or []))
        return real(method, **kwargs)

    engine.store._read = spy  # type: ignore[method-assign]
    yield includes


def test_retrieved_chunks_come_from_the_keyword_index_with_every_field(engine: Engine,
                                                                        chunk_reads: list[list[str]]) -> None:
    found = engine.retrieve("copper kettles note 3", mode="hybrid").chunks
    assert found and found[0].chunk.document_id == "doc-3"
    assert not [inc for inc in chunk_reads if "metadatas" in inc]  # no chunk was read from Chroma
    ids = [c.chunk.chunk_id for c in found]
    assert {c.chunk.chunk_id: c.chunk for c in found} == engine.store.get_chunks(ids)  # the same chunks
    first = found[0].chunk
    assert (first.title, first.source, first.location, first.collection) == (
        "Handbook 3", "docs/doc-3.txt", "page 1", "team")


def test_an_index_without_stored_fields_reads_its_chunks_from_chroma(engine: Engine,
                                                                      chunk_reads: list[list[str]]) -> None:
    chunks = engine.store.get_chunks([chunk_id_for("doc-3", i) for i in range(2)])
    ordered = [chunks[chunk_id_for("doc-3", i)] for i in range(len(chunks))]
    # As an index written before stored fields holds it: the same postings, no stored fields.
    engine.bm25.add("doc-3", "sum-3", [c.chunk_id for c in ordered], [c.index_text for c in ordered], collection="team")
    assert engine.bm25.stored_chunks([c.chunk_id for c in ordered]) == {}
    found = {c.chunk.chunk_id: c.chunk for c in engine.retrieve("copper kettles note 3", mode="hybrid").chunks}
    assert found[ordered[0].chunk_id] == ordered[0]
    assert [inc for inc in chunk_reads if "metadatas" in inc]  # read from Chroma


def chunks_of(n: int, parts: int = 3) -> list[Chunk]:
    doc = f"doc-{n}"
    return [Chunk(chunk_id_for(doc, i), doc, i, f"text {i} of {doc} with «unicode» and \"quotes\"",
                  title=f"Title {n}", source=f"{doc}.md", location=f"§ {i}", checksum=f"c{n}") for i in range(parts)]


def add(index: Bm25Index, numbers: range, collection: str = DEFAULT_COLLECTION) -> dict[str, list[Chunk]]:
    docs = {f"doc-{n}": chunks_of(n) for n in numbers}
    for doc, chunks in docs.items():  # one segment per document, so the merge policy merges them
        index.add_many([(doc, f"c{doc}", [c.chunk_id for c in chunks], [c.text for c in chunks])],
                       collections={doc: collection}, stored={doc: chunks})
    return docs


def test_stored_fields_survive_merges_deletes_moves_and_a_reopen(tmp_path: Path) -> None:
    index = Bm25Index(tmp_path / "bm25", refresh_seconds=0)
    docs = add(index, range(25))  # 25 one-document segments: the merge policy merges them in tens
    index.delete_document("doc-4")
    index.move_documents(["doc-7"], "team")
    index.force_merge()
    wanted = [c.chunk_id for chunks in docs.values() for c in chunks] + ["doc-1:9", "nobody:0", "no-position"]
    expected = {c.chunk_id: c for doc, chunks in docs.items() if doc != "doc-4" for c in chunks}
    for c in docs["doc-7"]:
        expected[c.chunk_id] = Chunk(c.chunk_id, c.document_id, c.position, c.text, title=c.title, source=c.source,
                                     location=c.location, checksum=c.checksum, collection="team")
    assert index.stored_chunks(wanted) == expected
    assert Bm25Index(tmp_path / "bm25").stored_chunks(wanted) == expected  # read back from the files


def test_a_segment_mixing_stored_and_bare_documents_keeps_none(tmp_path: Path) -> None:
    index = Bm25Index(tmp_path / "bm25", refresh_seconds=0)
    add(index, range(2))
    index.add("bare", "x", ["bare:0"], ["bare text"])
    index.force_merge()  # one segment of both kinds: it cannot hold the bare one's fields
    assert index.stored_chunks(["doc-0:0", "bare:0"]) == {}
    assert [cid for cid, _ in index.search("bare", 10)] == ["bare:0"]  # and it still searches


def test_stored_chunks_must_match_the_chunk_ids(tmp_path: Path) -> None:
    index = Bm25Index(tmp_path / "bm25")
    chunks = chunks_of(1)
    with pytest.raises(ValueError, match="stored chunks do not match"):
        index.add_many([("doc-1", "c", [c.chunk_id for c in chunks], [c.text for c in chunks])],
                       stored={"doc-1": chunks[::-1]})

"""Dense search under a mid-size collection filter: exact search over the filter's own vectors, kept in memory
and brought up to date at each index version by fetching only what changed."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ragcore import Engine
from ragcore.ingest import ParsedItem
from ragcore.metrics import DENSE_FILTERED_SEARCHES
from ragcore.types import DEFAULT_COLLECTION, ParsedDocument, Section
from ragcore.vectorstore import EXACT_CACHE_BYTES, EXACT_CACHED, EXACT_MAX_SHARE
from tests.support import make_engine

WORDS = ("glacier meadow canyon river forest desert island valley summit harbor lantern copper velvet orchard "
         "pebble thunder marble willow saffron tundra").split()


def item(n: int, collection: str, text: str = "") -> ParsedItem:
    text = text or " ".join(WORDS[(n * k) % len(WORDS)] for k in (1, 3, 7, 11)) + f" note {n}"
    return ParsedItem(f"doc-{n}", ParsedDocument(f"doc-{n}", "text", (Section(text),)), f"doc-{n}.txt",
                      f"sum-{n}-{collection}-{len(text)}", collection)


def collection_of(n: int) -> str:
    return "ten" if n % 10 == 0 else DEFAULT_COLLECTION


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    engine = make_engine(tmp_path / "data")
    results = engine.ingest_parsed([item(n, collection_of(n)) for n in range(300)])
    assert {r.status for r in results} == {"indexed"}
    return engine


def assert_exact(found: list[tuple[str, float]], engine: Engine, vector: np.ndarray, k: int, collection: str) -> None:
    """`found` is a true top k by cosine similarity over every vector of the collection in the store (the
    hashing embedder gives many chunks the same vector, so ties may come in any order)."""
    got = engine.store._collection.get(where={"collection": collection}, include=["embeddings"])
    matrix = np.asarray(got["embeddings"], dtype=np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    truth = dict(zip(got["ids"], (matrix @ (vector / np.linalg.norm(vector))).tolist()))
    best = sorted(truth.values(), reverse=True)[:k]
    assert [s for _, s in found] == pytest.approx(best, abs=1e-5)
    assert all(truth[cid] == pytest.approx(s, abs=1e-5) for cid, s in found)


@pytest.fixture
def fetched(engine: Engine) -> Iterator[list[str]]:
    """The ids whose vectors the store fetched for exact search, as the test goes."""
    ids: list[str] = []
    real = engine.store._read

    def spy(method: str, **kwargs: Any) -> Any:
        if method == "get" and "embeddings" in kwargs.get("include", ()):
            ids.extend(kwargs.get("ids") or ())
        return real(method, **kwargs)

    engine.store._read = spy  # type: ignore[method-assign]
    yield ids


def exact_searches() -> float:
    return float(DENSE_FILTERED_SEARCHES.labels("exact")._value.get())


def test_a_ten_percent_filter_is_searched_exactly_and_finds_the_true_top_k(engine: Engine) -> None:
    assert engine.bm25.share({"ten"}) == pytest.approx(0.1) and EXACT_MAX_SHARE > 0.1
    before = exact_searches()
    for query in ("forest island", "copper lantern thunder", "willow note 40"):
        vector = engine.embedder.embed_query(query)
        found = engine.retriever._dense(vector, 10, {"ten"})
        assert_exact(found, engine, vector, 10, "ten")
    assert exact_searches() == before + 3


def test_more_than_the_filter_holds_returns_all_of_it_best_first(engine: Engine) -> None:
    vector = engine.embedder.embed_query("forest island")
    found = engine.retriever._dense(vector, 100, {"ten"})
    assert_exact(found, engine, vector, 100, "ten")
    assert len(found) == 30


def test_a_broad_filter_over_fetches_from_hnsw_instead(engine: Engine) -> None:
    before = (exact_searches(), DENSE_FILTERED_SEARCHES.labels("overfetch")._value.get())
    vector = engine.embedder.embed_query("forest island")
    found = engine.retriever._dense(vector, 10, {DEFAULT_COLLECTION})  # 90 %
    assert len(found) == 10 and not any(cid.rpartition(":")[0] in {"doc-0", "doc-10"} for cid, _ in found)
    assert (exact_searches(), DENSE_FILTERED_SEARCHES.labels("overfetch")._value.get()) == (before[0], before[1] + 1)


def test_the_vectors_are_fetched_once_and_a_commit_fetches_only_what_it_wrote(
    engine: Engine, fetched: list[str]
) -> None:
    vector = engine.embedder.embed_query("forest island")
    engine.retriever._dense(vector, 10, {"ten"})
    assert sorted(fetched) == sorted(f"doc-{n}:0" for n in range(0, 300, 10))
    fetched.clear()
    engine.retriever._dense(engine.embedder.embed_query("copper lantern"), 10, {"ten"})
    assert fetched == []  # same version: the kept matrix answers

    # A new document in the collection, another outside it, one rewritten and one deleted.
    engine.ingest_parsed([item(300, "ten", "forest island forest island harbor"), item(301, DEFAULT_COLLECTION),
                          item(20, "ten", "saffron tundra pebble")])
    engine.delete_document("doc-40")
    found = engine.retriever._dense(vector, 10, {"ten"})
    assert sorted(fetched) == ["doc-20:0", "doc-300:0"]
    assert_exact(found, engine, vector, 10, "ten")
    assert found[0][0] == "doc-300:0" and "doc-40:0" not in {cid for cid, _ in found}
    # The rewritten document scores with its new vector, not the one kept from before.
    saffron = engine.embedder.embed_query("saffron tundra pebble")
    rewritten = engine.retriever._dense(saffron, 40, {"ten"})
    assert_exact(rewritten, engine, saffron, 40, "ten")  # every kept row against the store's vectors
    assert rewritten[0][0] == "doc-20:0"


def test_a_document_moved_into_the_filter_is_found_and_one_moved_out_is_not(engine: Engine) -> None:
    vector = engine.embedder.embed_query(" ".join(WORDS[(7 * k) % len(WORDS)] for k in (1, 3, 7, 11)) + " note 7")
    assert "doc-7:0" not in dict(engine.retriever._dense(vector, 40, {"ten"}))
    engine.move_document("doc-7", "ten")
    engine.move_document("doc-10", DEFAULT_COLLECTION)
    found = dict(engine.retriever._dense(vector, 40, {"ten"}))
    assert next(iter(found)) == "doc-7:0" and "doc-10:0" not in found and len(found) == 30


def test_the_kept_filters_are_bounded_and_an_evicted_one_is_fetched_again(tmp_path: Path) -> None:
    engine = make_engine(tmp_path / "data")
    engine.ingest_parsed([item(n, f"c{n % 12}") for n in range(240)])  # twelve filters of 1/12 each
    vector = engine.embedder.embed_query("forest island")
    for c in range(12):
        assert_exact(engine.retriever._dense(vector, 5, {f"c{c}"}), engine, vector, 5, f"c{c}")
    kept = engine.store._exact
    assert len(kept) == EXACT_CACHED and set(kept) == {frozenset({f"c{c}"}) for c in range(12 - EXACT_CACHED, 12)}
    assert sum(e.matrix.nbytes for e in kept.values()) <= EXACT_CACHE_BYTES
    assert_exact(engine.retriever._dense(vector, 5, {"c0"}), engine, vector, 5, "c0")  # fetched again
    assert frozenset({"c0"}) in kept and frozenset({f"c{12 - EXACT_CACHED}"}) not in kept


def test_searches_arriving_together_fetch_the_filter_once(engine: Engine, fetched: list[str]) -> None:
    vector = engine.embedder.embed_query("forest island")
    start = threading.Barrier(4)

    def search() -> list[tuple[str, float]]:
        start.wait()
        return engine.retriever._dense(vector, 10, {"ten"})

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: search(), range(4)))
    assert sorted(fetched) == sorted(f"doc-{n}:0" for n in range(0, 300, 10))  # one rebuild, not four
    assert all(r == results[0] for r in results)


def test_the_filter_evicted_is_the_one_used_longest_ago(tmp_path: Path) -> None:
    engine = make_engine(tmp_path / "data")
    engine.ingest_parsed([item(n, f"c{n % 12}") for n in range(240)])
    vector = engine.embedder.embed_query("forest island")
    for c in range(EXACT_CACHED):
        engine.retriever._dense(vector, 5, {f"c{c}"})
    engine.retriever._dense(vector, 5, {"c0"})  # used again: now the newest
    engine.retriever._dense(vector, 5, {f"c{EXACT_CACHED}"})
    assert frozenset({"c0"}) in engine.store._exact and frozenset({"c1"}) not in engine.store._exact


# --- the whole index, when small: searched exactly too, and its chunks read from Chroma once per version -----


@pytest.fixture
def reads(engine: Engine) -> Iterator[list[str]]:
    """Every read the vector store makes of Chroma, by method ("query", "get"), as the test goes."""
    methods: list[str] = []
    real = engine.store._read

    def spy(method: str, **kwargs: Any) -> Any:
        methods.append(method)
        return real(method, **kwargs)

    engine.store._read = spy  # type: ignore[method-assign]
    yield methods


def test_a_small_index_is_searched_exactly_without_a_chroma_query(engine: Engine, reads: list[str]) -> None:
    for query in ("forest island", "copper lantern thunder"):
        vector = engine.embedder.embed_query(query)
        found = engine.retriever._dense(vector, 10, None)
        got = engine.store._collection.get(include=["embeddings"])
        matrix = np.asarray(got["embeddings"], dtype=np.float32)
        truth = sorted((matrix @ vector / (np.linalg.norm(matrix, axis=1) * np.linalg.norm(vector))).tolist(),
                       reverse=True)[:10]
        assert [s for _, s in found] == pytest.approx(truth, abs=1e-5)
    assert "query" not in reads and reads.count("get") == 1  # the vectors, fetched once for both questions


def test_a_large_index_is_searched_by_hnsw(engine: Engine, reads: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ragcore.retrieval.EXACT_MAX", 299)  # the index holds 300
    found = engine.retriever._dense(engine.embedder.embed_query("forest island"), 10, None)
    assert len(found) == 10 and reads == ["query"]


def test_the_same_question_again_reads_no_chunk_from_chroma(engine: Engine, reads: list[str]) -> None:
    first = engine.retrieve("willow note 40", mode="hybrid")
    reads.clear()
    again = engine.retrieve("willow note 40", mode="hybrid")
    assert reads == [] and [c.chunk for c in again.chunks] == [c.chunk for c in first.chunks]


def test_a_rewritten_moved_or_deleted_chunk_is_never_served_from_memory(engine: Engine) -> None:
    """Every change commits a new keyword index version after Chroma's write, and a version starts afresh."""
    def found(query: str) -> dict[str, Any]:
        return {c.chunk.document_id: c.chunk for c in engine.retrieve(query, mode="hybrid").chunks}

    assert "note 40" in found("willow note 40")["doc-40"].text
    engine.ingest_parsed([item(40, DEFAULT_COLLECTION, "willow harbor rewritten note forty")])
    assert found("willow note 40")["doc-40"].text == "willow harbor rewritten note forty"
    engine.move_document("doc-40", "ten")
    assert found("willow harbor rewritten")["doc-40"].collection == "ten"
    engine.delete_document("doc-40")
    assert "doc-40" not in found("willow harbor rewritten")

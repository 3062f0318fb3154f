"""The keyword index under a collection filter: the same BM25Okapi scores, only allowed chunks, in both stores."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import psycopg
import pytest
from rank_bm25 import BM25Okapi

from ragcore.bm25 import Bm25Index, FolderStorage
from ragcore.tokenize import tokenize
from ragcore.types import DEFAULT_COLLECTION
from tests.ragcore.test_bm25 import QUERIES, chunk_ids, make_corpus

DATABASE_URL = os.getenv("DATABASE_URL", "")
ON_POSTGRES = DATABASE_URL.startswith(("postgres://", "postgresql://"))

Opener = Callable[[], Bm25Index]


def collection_of(document_id: str) -> str:
    """Every third document is in "hr", the rest in the default collection."""
    return "hr" if int(document_id.split("-")[1]) % 3 == 0 else DEFAULT_COLLECTION


@pytest.fixture(params=["folder", "postgresql"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens the same index again, as another process would: from a folder, or from PostgreSQL."""
    if request.param == "folder":
        yield lambda: Bm25Index(FolderStorage(tmp_path / "bm25"), refresh_seconds=0)
        return
    if not ON_POSTGRES:
        pytest.skip("the PostgreSQL keyword store needs DATABASE_URL (PostgreSQL); CI's PostgreSQL pass sets it")
    from ragcore.bm25.postgres import TABLES, PostgresStorage

    name = f"test-{uuid.uuid4().hex[:10]}"
    yield lambda: Bm25Index(PostgresStorage(DATABASE_URL, name), refresh_seconds=0)
    with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
        for table in TABLES:
            conn.execute(f"DELETE FROM {table} WHERE index_name = %s", (name,))


def filled(opener: Opener, corpus: dict[str, list[str]]) -> Bm25Index:
    index = opener()
    items = list(corpus.items())
    for start in range(0, len(items), 7):  # several segments
        part = items[start : start + 7]
        index.add_many(((d, f"sum-{d}", chunk_ids(d, texts), texts) for d, texts in part),
                       collections={d: collection_of(d) for d, _ in part})
    return index


def test_filtered_scores_equal_the_unfiltered_scores_of_the_allowed_chunks(opener: Opener) -> None:
    corpus = make_corpus(n_docs=40)
    index = filled(opener, corpus)
    ids = [c for d, texts in corpus.items() for c in chunk_ids(d, texts)]
    reference = BM25Okapi([tokenize(t) for texts in corpus.values() for t in texts])
    allowed = {c for d, texts in corpus.items() for c in chunk_ids(d, texts) if collection_of(d) == "hr"}
    for reader in (index, opener()):
        for query in QUERIES:
            tokens = tokenize(query)
            expected = dict(zip(ids, reference.get_scores(tokens)))
            got = reader.scores_for_tokens(tokens, collections={"hr"})
            assert set(got) == allowed
            assert np.allclose([got[c] for c in sorted(allowed)], [expected[c] for c in sorted(allowed)],
                               rtol=1e-9, atol=1e-12), query
            # search: the best allowed chunks, scored as without the filter, never a hidden one.
            best = sorted((expected[c] for c in allowed if expected[c] > 0), reverse=True)[:5]
            found = reader.search(query, top_k=5, collections={"hr"})
            assert {c for c, _ in found} <= allowed
            assert np.allclose([score for _, score in found], best), query  # ties may pick either chunk
            assert all(np.isclose(score, expected[c]) for c, score in found)


def test_hidden_chunks_that_score_highest_do_not_take_places_in_the_top_k(opener: Opener) -> None:
    index = opener()
    index.add_many([(f"secret-{i}", "s", [f"secret-{i}#0"], ["glacier glacier glacier payroll"]) for i in range(5)],
                   collections={f"secret-{i}": "hr" for i in range(5)})
    index.add_many([(f"open-{i}", "o", [f"open-{i}#0"], [f"glacier note {i} and many other words here"])
                    for i in range(5)])
    assert {c for c, _ in index.search("glacier payroll", top_k=5)} == {f"secret-{i}#0" for i in range(5)}
    visible = index.search("glacier payroll", top_k=5, collections={DEFAULT_COLLECTION})
    assert {c for c, _ in visible} == {f"open-{i}#0" for i in range(5)}
    assert index.search("glacier", top_k=5, collections=set()) == []
    assert index.search("glacier", top_k=5, collections={"nobody"}) == []


def test_document_frequencies_under_a_filter_count_only_allowed_chunks(opener: Opener) -> None:
    index = opener()
    index.add("secret", "s", ["secret#0"], ["glacier payroll"], collection="hr")
    index.add("open", "o", ["open#0", "open#1"], ["glacier", "meadow"])
    payroll, glacier = tokenize("payroll glacier")
    assert index.document_frequencies({payroll, glacier}) == (3, {payroll: 1, glacier: 2})
    assert index.document_frequencies({payroll, glacier}, collections={DEFAULT_COLLECTION}) == (
        2, {payroll: 0, glacier: 1})
    assert index.share({DEFAULT_COLLECTION}) == pytest.approx(2 / 3)


def test_move_documents_relabels_them_for_every_reader_and_keeps_their_scores(opener: Opener) -> None:
    corpus = make_corpus(n_docs=20)
    index = filled(opener, corpus)
    before = index.scores_for_tokens(tokenize("kinase pathway"))
    moved_chunks = len(corpus["doc-1"]) + len(corpus["doc-2"])
    assert index.move_documents(["doc-1", "doc-2"], "hr") == moved_chunks
    assert index.move_documents(["doc-1"], "hr") == len(corpus["doc-1"])  # already there: nothing to commit
    reader = opener()
    assert reader.document_collection("doc-1") == reader.document_collection("doc-2") == "hr"
    assert reader.document_info("doc-1") == ("sum-doc-1", len(corpus["doc-1"]))
    assert reader.scores_for_tokens(tokenize("kinase pathway")) == pytest.approx(before)
    hr = set(reader.scores_for_tokens(tokenize("kinase"), collections={"hr"}))
    assert set(chunk_ids("doc-1", corpus["doc-1"])) <= hr
    assert not set(chunk_ids("doc-4", corpus["doc-4"])) & hr
    index.force_merge()  # labels survive merging
    assert opener().document_collection("doc-2") == "hr"
    assert opener().document_collection("doc-4") == DEFAULT_COLLECTION


def test_a_segment_written_before_collections_reads_as_the_default_collection(tmp_path: Path) -> None:
    index = Bm25Index(FolderStorage(tmp_path / "bm25"), refresh_seconds=0)
    index.add_many([("old", "v", ["old#0"], ["glacier pathway"]), ("other", "v", ["other#0"], ["meadow"]),
                    ("third", "v", ["third#0"], ["canyon"])], collections={"old": "hr", "other": "hr", "third": "hr"})
    segment = next((tmp_path / "bm25").glob("seg-*"))
    meta = json.loads((segment / "meta.json").read_text())
    meta["documents"] = [d[:3] for d in meta["documents"]]  # the old format: [id, checksum, chunks]
    (segment / "meta.json").write_text(json.dumps(meta))
    old = Bm25Index(FolderStorage(tmp_path / "bm25"), refresh_seconds=0)
    assert old.document_collection("old") == DEFAULT_COLLECTION
    assert [c for c, _ in old.search("glacier", top_k=3, collections={DEFAULT_COLLECTION})] == ["old#0"]
    old.add("new", "v", ["new#0"], ["glacier"], collection="hr")  # new and old segments side by side
    old.force_merge()
    merged = Bm25Index(FolderStorage(tmp_path / "bm25"), refresh_seconds=0)
    assert (merged.document_collection("old"), merged.document_collection("new")) == (DEFAULT_COLLECTION, "hr")

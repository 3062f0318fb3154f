"""The BM25 index scores like rank_bm25's BM25Okapi and stays consistent across adds, deletes and processes."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rank_bm25 import BM25Okapi

import ragcore.bm25.storage as bm25_storage
from ragcore.bm25 import Bm25Index
from ragcore.bm25.segments import Segment
from ragcore.tokenize import tokenize

REPO = Path(__file__).resolve().parents[2]

_WORDS = (
    "protein cell gene expression tumor mouse receptor insulin kinase pathway neuron membrane "
    "signal binding mutation therapy virus antibody enzyme cholesterol"
).split()

# Every query runs against every state: a term in most chunks (its idf is negative, so the epsilon
# rule applies), a repeated term, a term no chunk has, and rarer terms.
QUERIES = [
    "study of the protein",
    "cell cell tumor",
    "zebra unicorn",
    "kinase pathway in the neuron, zebra",
    "Studies studied studying",
    "insulin receptor binding insulin mutation",
]


def make_corpus(n_docs: int = 30, seed: int = 7) -> dict[str, list[str]]:
    """document_id → chunk texts; "study" is in about 80% of the chunks."""
    rng = random.Random(seed)
    corpus = {}
    for d in range(n_docs):
        chunks = []
        for _ in range(rng.randint(1, 3)):
            words = rng.choices(_WORDS, k=rng.randint(4, 18))
            if rng.random() < 0.8:
                words.insert(rng.randrange(len(words) + 1), "study")
            chunks.append("The " + " and ".join(words) + ".")
        corpus[f"doc-{d}"] = chunks
    return corpus


def chunk_ids(document_id: str, texts: list[str]) -> list[str]:
    return [f"{document_id}#{i}" for i in range(len(texts))]


def add_all(index: Bm25Index, corpus: dict[str, list[str]]) -> None:
    for document_id, texts in corpus.items():
        index.add(document_id, f"sum-{document_id}", chunk_ids(document_id, texts), texts)


def assert_agrees(index: Bm25Index, corpus: dict[str, list[str]]) -> None:
    """Every query scores every live chunk as BM25Okapi over the same chunks does."""
    ids = [c for d, texts in corpus.items() for c in chunk_ids(d, texts)]
    reference = BM25Okapi([tokenize(t) for texts in corpus.values() for t in texts])
    assert len(index) == len(ids)
    for query in QUERIES:
        tokens = tokenize(query)
        got = index.scores_for_tokens(tokens)
        assert set(got) == set(ids)
        assert np.allclose([got[c] for c in ids], reference.get_scores(tokens), rtol=1e-9, atol=1e-12), query


def add_background(index: Bm25Index) -> None:
    """Thirty unrelated documents: with only a few chunks, every term is in half of them and scores <= 0."""
    index.add_many((d, f"sum-{d}", chunk_ids(d, texts), texts) for d, texts in make_corpus().items())


def manifest(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((path / "manifest.json").read_text())
    return loaded


def wait_for(condition: Callable[[], bool], seconds: float = 2.0) -> float:
    """Poll `condition` until it holds; returns the seconds it took, failing after `seconds`."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < seconds, "not visible in time"
        time.sleep(0.02)
    return time.monotonic() - started


def test_tokenize_lowercases_drops_stopwords_and_short_words_and_stems() -> None:
    words = tokenize("The Cells were STUDIED in 3 mice_models, a x-ray über-test")
    assert words == ["cell", "studi", "3", "mice", "model", "ray", "über", "test"]


def test_the_corpus_has_a_term_with_negative_idf() -> None:
    corpus = make_corpus()
    chunks = [tokenize(t) for texts in corpus.values() for t in texts]
    assert sum("studi" in c for c in chunks) > len(chunks) / 2


def test_it_agrees_with_rank_bm25_when_built_in_one_add(tmp_path: Path) -> None:
    corpus = make_corpus()
    index = Bm25Index(tmp_path / "bm25")
    index.add_many((d, f"sum-{d}", chunk_ids(d, texts), texts) for d, texts in corpus.items())
    assert len(manifest(tmp_path / "bm25")["segments"]) == 1
    assert_agrees(index, corpus)


def test_it_agrees_with_rank_bm25_when_one_document_holds_every_chunk() -> None:
    texts = [t for chunks in make_corpus().values() for t in chunks]
    index = Bm25Index(None)
    index.add("all", "sum", chunk_ids("all", texts), texts)
    assert_agrees(index, {"all": texts})


def test_it_agrees_with_rank_bm25_when_built_over_several_adds(tmp_path: Path) -> None:
    corpus = make_corpus(n_docs=8)
    index = Bm25Index(tmp_path / "bm25")
    add_all(index, corpus)
    assert len(manifest(tmp_path / "bm25")["segments"]) == 8
    assert_agrees(index, corpus)


def test_it_agrees_with_rank_bm25_after_deletes(tmp_path: Path) -> None:
    corpus = make_corpus()
    index = Bm25Index(tmp_path / "bm25")
    add_all(index, corpus)
    for document_id in ("doc-0", "doc-13", "doc-29"):
        index.delete_document(document_id)
        del corpus[document_id]
    assert_agrees(index, corpus)


def test_it_agrees_with_rank_bm25_after_a_merge(tmp_path: Path) -> None:
    corpus = make_corpus()
    index = Bm25Index(tmp_path / "bm25")
    add_all(index, corpus)
    # 30 one-document segments share the lowest level, so ten at a time were merged.
    assert len(manifest(tmp_path / "bm25")["segments"]) < 10
    index.delete_document("doc-3")
    del corpus["doc-3"]
    assert_agrees(index, corpus)

    index.force_merge()
    segments = manifest(tmp_path / "bm25")["segments"]
    assert [(s["deletions"], s["live_chunks"] == s["chunks"]) for s in segments] == [(0, True)]
    assert_agrees(index, corpus)


def test_it_agrees_with_rank_bm25_after_reopening_from_disk(tmp_path: Path) -> None:
    corpus = make_corpus()
    index = Bm25Index(tmp_path / "bm25")
    add_all(index, corpus)
    index.delete_document("doc-5")
    del corpus["doc-5"]
    assert_agrees(Bm25Index(tmp_path / "bm25"), corpus)


def test_it_agrees_with_rank_bm25_in_memory() -> None:
    corpus = make_corpus()
    index = Bm25Index(None)
    add_all(index, corpus)
    index.delete_document("doc-8")
    del corpus["doc-8"]
    assert_agrees(index, corpus)


def test_search_returns_the_best_chunks_first_with_positive_scores_only() -> None:
    corpus = make_corpus()
    index = Bm25Index(None)
    add_all(index, corpus)
    ids = [c for d, texts in corpus.items() for c in chunk_ids(d, texts)]
    tokens = tokenize("kinase pathway kinase")
    expected = BM25Okapi([tokenize(t) for texts in corpus.values() for t in texts]).get_scores(tokens)
    best = sorted((s, c) for c, s in zip(ids, expected) if s > 0)[::-1][:5]

    results = index.search("kinase pathway kinase", top_k=5)

    assert np.allclose([s for _, s in results], [s for s, _ in best])
    by_id = dict(zip(ids, expected))
    assert np.allclose([s for _, s in results], [by_id[c] for c, _ in results])
    assert index.search("zebra", top_k=5) == []
    assert all(s > 0 for _, s in index.search("study", top_k=100))
    with pytest.raises(ValueError):
        index.search("kinase", top_k=0)


def test_replacing_a_document_leaves_no_duplicates_or_orphans(tmp_path: Path) -> None:
    index = Bm25Index(tmp_path / "bm25")
    add_background(index)
    index.add("a", "v1", ["a#0", "a#1", "a#2"], ["old glacier text", "old volcano text", "old meadow text"])
    index.add("b", "v1", ["b#0"], ["unrelated glacier text"])

    index.add("a", "v2", ["a#0", "a#1"], ["new glacier words", "new canyon words"])

    assert len(index) == sum(map(len, make_corpus().values())) + 3
    assert index.document_info("a") == ("v2", 2)
    hits = [c for c, _ in index.search("glacier volcano meadow canyon", top_k=10)]
    assert sorted(hits) == ["a#0", "a#1", "b#0"]
    assert index.search("old", top_k=10) == []
    corpus = make_corpus() | {"b": ["unrelated glacier text"], "a": ["new glacier words", "new canyon words"]}
    assert_agrees(Bm25Index(tmp_path / "bm25"), corpus)


def test_delete_returns_the_number_of_chunks_removed() -> None:
    index = Bm25Index(None)
    index.add("a", "v1", ["a#0", "a#1"], ["kinase", "insulin"])
    assert index.delete_document("a") == 2
    assert index.delete_document("a") == 0
    assert index.delete_document("never") == 0
    assert len(index) == 0
    assert index.search("kinase", top_k=3) == []


def test_documents_reports_each_checksum_and_live_chunk_count(tmp_path: Path) -> None:
    index = Bm25Index(tmp_path / "bm25")
    index.add("a", "sum-a", ["a#0", "a#1"], ["kinase", "insulin"])
    index.add("b", "sum-b", ["b#0"], ["tumor"])
    index.add("empty", "sum-e", [], [])
    index.delete_document("b")

    assert index.documents() == {"a": ("sum-a", 2), "empty": ("sum-e", 0)}
    assert index.document_info("b") is None
    assert Bm25Index(tmp_path / "bm25").documents() == {"a": ("sum-a", 2), "empty": ("sum-e", 0)}


def test_a_document_without_text_terms_counts_in_the_average_length() -> None:
    index = Bm25Index(None)
    index.add("a", "v", ["a#0", "a#1", "a#2"], ["kinase insulin kinase", "of the and", "tumor"])
    assert_agrees(index, {"a": ["kinase insulin kinase", "of the and", "tumor"]})


def test_clear_removes_every_document(tmp_path: Path) -> None:
    index = Bm25Index(tmp_path / "bm25")
    add_all(index, make_corpus(n_docs=5))
    index.clear()
    assert len(index) == 0
    assert index.documents() == {}
    assert len(Bm25Index(tmp_path / "bm25")) == 0
    add_background(index)
    index.add("a", "v", ["a#0"], ["glacier"])
    assert [c for c, _ in index.search("glacier", top_k=1)] == ["a#0"]


def test_a_heavily_deleted_segment_is_rewritten_without_its_deleted_chunks(tmp_path: Path) -> None:
    corpus = make_corpus(n_docs=10)
    index = Bm25Index(tmp_path / "bm25")
    index.add_many((d, f"sum-{d}", chunk_ids(d, texts), texts) for d, texts in corpus.items())
    for document_id in ("doc-1", "doc-2", "doc-3", "doc-4"):
        index.delete_document(document_id)
        del corpus[document_id]
    [segment] = manifest(tmp_path / "bm25")["segments"]
    assert segment["deletions"] == 0 and segment["documents"] == 6
    assert_agrees(index, corpus)


def test_a_second_instance_sees_an_add_and_a_delete_within_two_seconds(tmp_path: Path) -> None:
    writer = Bm25Index(tmp_path / "bm25")
    add_background(writer)
    reader = Bm25Index(tmp_path / "bm25")
    assert reader.search("glacier", top_k=3) == []

    writer.add("a", "v1", ["a#0"], ["glacier pathway"])
    wait_for(lambda: [c for c, _ in reader.search("glacier", top_k=3)] == ["a#0"])
    assert reader.document_info("a") == ("v1", 1)

    writer.delete_document("a")
    wait_for(lambda: reader.document_info("a") is None)
    assert reader.search("glacier", top_k=3) == []


@pytest.mark.slow  # a subprocess
def test_a_second_process_adding_concurrently_loses_no_updates(tmp_path: Path) -> None:
    path = tmp_path / "bm25"
    script = (
        "import sys; from pathlib import Path; from ragcore.bm25 import Bm25Index\n"
        "index = Bm25Index(Path(sys.argv[1]))\n"
        "for i in range(25):\n"
        "    index.add(f'child-{i}', 'c', [f'child-{i}#0', f'child-{i}#1'], ['kinase child', 'insulin child'])\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, "-c", script, str(path)], cwd=REPO, env=env)
    index = Bm25Index(path)
    for i in range(25):
        index.add(f"parent-{i}", "p", [f"parent-{i}#0"], ["kinase parent"])
    assert child.wait(timeout=60) == 0

    fresh = Bm25Index(path)
    expected = {f"child-{i}": ("c", 2) for i in range(25)} | {f"parent-{i}": ("p", 1) for i in range(25)}
    assert fresh.documents() == expected
    assert len(fresh) == 75
    wait_for(lambda: len(index) == 75)


def test_threads_can_search_while_another_thread_writes(tmp_path: Path) -> None:
    index = Bm25Index(tmp_path / "bm25", refresh_seconds=0)
    add_all(index, make_corpus(n_docs=10))
    errors: list[Exception] = []
    stop = threading.Event()

    def search_until_stopped() -> None:
        try:
            while not stop.is_set():
                assert len(index.search("kinase study", top_k=5)) <= 5
        except Exception as error:  # surfaced by the assertion below
            errors.append(error)

    readers = [threading.Thread(target=search_until_stopped) for _ in range(3)]
    for t in readers:
        t.start()
    for i in range(20):
        index.add(f"extra-{i % 4}", "v", [f"extra-{i % 4}#0"], ["kinase study extra"])
    stop.set()
    for t in readers:
        t.join()
    assert errors == []
    assert len(index.documents()) == 14


def test_leftover_temp_files_and_unreferenced_segments_do_not_break_loading(tmp_path: Path) -> None:
    path = tmp_path / "bm25"
    corpus = make_corpus(n_docs=5)
    add_all(Bm25Index(path), corpus)
    # What a writer that crashed mid-commit leaves behind.
    (path / "manifest.json.tmp-dead").write_text('{"version": 99, "segme')
    (path / "seg-99999999-dead").mkdir()
    (path / "seg-99999999-dead" / "meta.json").write_text("{broken")
    (path / "seg-99999999-dead.tmp-0000").mkdir()
    live = manifest(path)["segments"][0]["name"]
    (path / live / "del-12345.npy").write_bytes(b"junk")
    (path / "notes.txt").write_text("not the index's")

    index = Bm25Index(path)
    assert_agrees(index, corpus)

    hour_ago = time.time() - 3600
    old = ("manifest.json.tmp-dead", "seg-99999999-dead", "seg-99999999-dead.tmp-0000", f"{live}/del-12345.npy")
    for name in (*old, "notes.txt"):
        os.utime(path / name, (hour_ago, hour_ago))
    index.add("new", "v", ["new#0"], ["kinase"])
    left = set(os.listdir(path))
    assert not left & {"manifest.json.tmp-dead", "seg-99999999-dead", "seg-99999999-dead.tmp-0000"}
    assert not (path / live / "del-12345.npy").exists()
    assert "notes.txt" in left


def test_replaced_files_are_deleted_only_after_the_grace_period(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "bm25"
    index = Bm25Index(path)
    index.add("a", "v1", ["a#0"], ["kinase"])
    first = manifest(path)["segments"][0]["name"]
    index.add("a", "v2", ["a#0"], ["insulin"])  # drops the only document of the first segment
    assert (path / first).exists()
    assert [g["path"] for g in manifest(path)["garbage"]] == [first]

    monkeypatch.setattr(bm25_storage, "GRACE_SECONDS", 0.0)
    index.add("b", "v1", ["b#0"], ["tumor"])
    assert not (path / first).exists()
    referenced = {s["name"] for s in manifest(path)["segments"]}
    assert {p for p in os.listdir(path) if p.startswith("seg-")} == referenced


def test_a_reader_retries_once_when_a_segment_vanishes_mid_reload(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "bm25"
    reader = Bm25Index(path, refresh_seconds=0)
    add_background(Bm25Index(path))
    Bm25Index(path).add("a", "v1", ["a#0"], ["glacier"])
    real_read = bm25_storage.read_segment
    calls: list[str] = []

    def vanishing_once(root: Path, name: str) -> Segment:
        calls.append(name)
        if len(calls) == 1:
            raise FileNotFoundError(name)
        return real_read(root, name)

    monkeypatch.setattr(bm25_storage, "read_segment", vanishing_once)
    assert [c for c, _ in reader.search("glacier", top_k=1)] == ["a#0"]
    assert calls[0] == calls[1]

"""The engine end to end with a fast hashing embedder: ingest, re-ingest, retrieve, answer."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ragcore import Engine
from ragcore.abstention import NOT_COVERED
from ragcore.errors import IndexMismatch
from ragcore.extractive import NOTICE
from ragcore.metrics import PIPELINE_ERRORS
from ragcore.types import CitationsEvent, DoneEvent, ErrorEvent, TokenEvent, Turn
from tests.support import HashingEmbedder, make_engine

HANDBOOK = """# Team handbook

## API keys

Rotate the API key every ninety days from the settings page. The old key keeps working
for one hour after rotation so that deployments can pick up the new one.

## Holidays

Book holidays in the calendar at least two weeks ahead. Your manager approves them.
"""

DEPLOY = """# Deployment

## Rollback

To roll back a release, run the rollback pipeline with the previous tag. It takes about
five minutes and notifies the on-call channel.
"""


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "handbook.md").write_text(HANDBOOK)
    (folder / "deploy.md").write_text(DEPLOY)
    return folder


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    return make_engine(tmp_path / "data")


def test_it_indexes_files_into_both_indexes(engine: Engine, docs: Path) -> None:
    results = engine.ingest_files(sorted(docs.iterdir()))
    assert [r.status for r in results] == ["indexed", "indexed"]
    total = sum(r.chunks for r in results)
    assert engine.store.count() == total == len(engine.bm25)
    assert results[1].title == "Team handbook"


def test_it_skips_an_unchanged_file_and_writes_nothing(engine: Engine, docs: Path) -> None:
    engine.ingest_file(docs / "handbook.md")
    again = engine.ingest_file(docs / "handbook.md")
    assert again.status == "unchanged"
    assert again.chunks == 0


def test_it_replaces_the_chunks_of_a_changed_file(engine: Engine, docs: Path) -> None:
    first = engine.ingest_file(docs / "handbook.md")
    (docs / "handbook.md").write_text("# Team handbook\n\nOnly one short paragraph now about parking.\n")
    second = engine.ingest_file(docs / "handbook.md")
    assert second.status == "indexed" and second.chunks < first.chunks
    assert engine.store.count() == second.chunks == len(engine.bm25)
    assert all("parking" in c.chunk.text for c in engine.retrieve("parking", mode="bm25").chunks)


@pytest.mark.parametrize("lose_from", ["bm25", "vectors"])
def test_it_reprocesses_a_file_whose_chunks_are_missing_from_an_index(engine: Engine, docs: Path, lose_from: str) -> None:
    result = engine.ingest_file(docs / "handbook.md")
    if lose_from == "bm25":
        engine.bm25.delete_document(result.document_id)
    else:
        engine.store._collection.delete(ids=[f"{result.document_id}:0"])
    again = engine.ingest_file(docs / "handbook.md")
    assert again.status == "indexed"
    assert engine.store.count() == result.chunks == len(engine.bm25)


def test_a_bad_file_fails_alone_with_a_reason_naming_it(engine: Engine, docs: Path) -> None:
    (docs / "empty.txt").write_bytes(b"")
    (docs / "junk.txt").write_bytes(bytes(range(256)) * 4)
    before = PIPELINE_ERRORS.labels("loader")._value.get()
    results = {Path(r.source).name: r for r in engine.ingest_files(sorted(docs.iterdir()) + [docs / "missing.md"])}
    assert results["handbook.md"].status == results["deploy.md"].status == "indexed"
    for name in ("empty.txt", "junk.txt", "missing.md"):
        assert results[name].status == "failed"
        assert name in results[name].error
        assert not results[name].transient
    assert "empty" in results["empty.txt"].error
    assert PIPELINE_ERRORS.labels("loader")._value.get() == before + 3


def test_a_file_over_the_limit_is_refused(tmp_path: Path, docs: Path) -> None:
    engine = make_engine(tmp_path / "data", max_file_bytes=100)
    result = engine.ingest_file(docs / "handbook.md")
    assert result.status == "failed" and "limit" in result.error


def test_opening_the_indexes_with_another_model_says_to_reindex(tmp_path: Path, docs: Path) -> None:
    make_engine(tmp_path / "data").ingest_file(docs / "handbook.md")
    other = make_engine(tmp_path / "data", embedder=HashingEmbedder(name="another-model", dimension=32))
    with pytest.raises(IndexMismatch, match="reindex"):
        other.store.count()
    result = other.ingest_file(docs / "deploy.md")
    assert result.status == "failed" and "reindex" in result.error


def test_an_unreachable_keyword_index_is_down_not_damaged_and_nothing_is_dropped(tmp_path: Path, docs: Path) -> None:
    import socket

    from ragcore.indexes import IndexesUnavailable

    engine = make_engine(tmp_path / "data")
    engine.ingest_files(sorted(docs.iterdir()))
    chunks = engine.store.count()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    down = make_engine(tmp_path / "data", embedder=engine.embedder, keyword_store="postgresql",
                       database_url=f"postgresql://127.0.0.1:{port}/x")
    state = down.index_states()["bm25_index"]
    assert state.kind == "unavailable" and f"127.0.0.1:{port}/x" in state.detail
    with pytest.raises(IndexesUnavailable, match="neither index was changed"):
        down.reset_indexes()
    assert make_engine(tmp_path / "data", embedder=engine.embedder).store.count() == chunks > 0


def test_an_index_that_cannot_be_counted_for_metrics_is_logged_and_counted(engine: Engine, docs: Path) -> None:
    from tests.support import captured_logs

    engine.ingest_files(sorted(docs.iterdir()))
    assert set(engine.indexes.open_counts()) == {"vector_store", "bm25_index"}
    (engine.settings.bm25_path / "manifest.json").write_text("{ not a manifest")
    before = PIPELINE_ERRORS.labels("bm25")._value.get()
    with captured_logs() as logs:
        counts = engine.indexes.open_counts()
    assert set(counts) == {"vector_store"}
    failed, = [e for e in logs if e["event"] == "index.count_failed"]
    assert failed["index"] == "bm25_index" and "JSONDecodeError" in failed["error"]
    assert PIPELINE_ERRORS.labels("bm25")._value.get() - before == 1


def test_deleting_a_document_removes_it_from_both_indexes(engine: Engine, docs: Path) -> None:
    result = engine.ingest_file(docs / "handbook.md")
    assert engine.delete_document(result.document_id) == result.chunks
    assert engine.store.count() == 0 and len(engine.bm25) == 0


@pytest.mark.parametrize("mode", ["bm25", "dense", "hybrid"])
def test_each_mode_finds_the_passage_about_the_question(engine: Engine, docs: Path, mode: str) -> None:
    engine.ingest_files(sorted(docs.iterdir()))
    retrieval = engine.retrieve("how do I roll back a release", mode=mode)
    assert retrieval.relevant
    assert retrieval.chunks[0].chunk.title == "Deployment"


def test_context_mode_folds_in_the_earlier_question(engine: Engine, docs: Path) -> None:
    engine.ingest_files(sorted(docs.iterdir()))
    history = [Turn("user", "How do I rotate the API key?"), Turn("assistant", "Every ninety days [1].")]
    retrieval = engine.retrieve("and how long does the old one keep working?", mode="context", history=history)
    assert "API keys" in retrieval.chunks[0].chunk.location


def test_near_identical_chunks_of_two_documents_are_shown_once(engine: Engine, docs: Path) -> None:
    (docs / "copy.md").write_text(DEPLOY)
    engine.ingest_files(sorted(docs.iterdir()))
    chunks = engine.retrieve("roll back a release", mode="hybrid").chunks
    texts = [c.chunk.text for c in chunks]
    assert len(texts) == len(set(texts))


def test_it_answers_extractively_without_an_llm_key(engine: Engine, docs: Path) -> None:
    engine.ingest_files(sorted(docs.iterdir()))
    events = list(engine.stream("How do I roll back a release?"))
    assert isinstance(events[-1], DoneEvent) and isinstance(events[-2], CitationsEvent)
    answer = events[-1].answer
    assert "".join(e.text for e in events if isinstance(e, TokenEvent)) == answer.text
    assert answer.text.startswith(NOTICE)
    assert answer.provider == "extractive" and answer.extractive
    assert "rollback pipeline" in answer.text
    assert answer.citations and answer.citations[0].title == "Deployment"
    assert all(f"[{c.n}]" in answer.text for c in answer.citations)


def test_it_says_so_when_the_documents_do_not_answer_and_names_the_closest_passage(engine: Engine, docs: Path) -> None:
    engine.ingest_files(sorted(docs.iterdir()))
    answer = engine.answer("zebra quantum saxophone")
    assert answer.not_covered and answer.provider == "none"
    assert answer.text.startswith(NOT_COVERED + " The closest passage is in ")
    assert answer.text.endswith("”") and "[1]" in answer.text
    assert [c.n for c in answer.citations] == [1]


def test_a_question_with_nothing_to_search_for_is_declined(engine: Engine, docs: Path) -> None:
    engine.ingest_files(sorted(docs.iterdir()))
    answer = engine.answer("q1")
    assert answer.not_covered and answer.citations == ()
    assert "nothing in it to search for" in answer.text


def test_a_covered_question_is_not_marked(engine: Engine, docs: Path) -> None:
    engine.ingest_files(sorted(docs.iterdir()))
    assert not engine.answer("How do I roll back a release?").not_covered


@pytest.mark.slow  # a subprocess
def test_another_process_sees_a_new_document_within_two_seconds(engine: Engine, docs: Path, tmp_path: Path) -> None:
    engine.ingest_file(docs / "handbook.md")
    assert not engine.retrieve("rollback pipeline", mode="bm25").chunks or \
        engine.retrieve("rollback pipeline", mode="bm25").chunks[0].chunk.title != "Deployment"
    script = textwrap.dedent(f"""
        from pathlib import Path
        from tests.support import make_engine
        make_engine(Path({str(tmp_path / 'data')!r})).ingest_file(Path({str(docs / 'deploy.md')!r}))
    """)
    subprocess.run([sys.executable, "-c", script], check=True, cwd=Path(__file__).parents[2], timeout=120)
    deadline = time.monotonic() + 2.0
    while True:
        chunks = engine.retrieve("rollback pipeline", mode="hybrid").chunks
        if chunks and chunks[0].chunk.title == "Deployment":
            break
        assert time.monotonic() < deadline, "the new document was not visible within 2 s"
        time.sleep(0.1)


@pytest.mark.slow  # a subprocess
def test_ragcore_never_imports_django() -> None:
    code = (
        "import sys, ragcore, ragcore.engine, ragcore.eval, ragcore.loaders, ragcore.generation;"
        "bad = sorted(m for m in sys.modules if m == 'django' or m.startswith('django.'));"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


async def test_async_answers_embed_through_the_batcher_and_match_the_sync_ones(engine: Engine, docs: Path) -> None:
    engine.ingest_files(sorted(docs.iterdir()))
    questions = ["How do I roll back a release?", "How often is the API key rotated?", "How do I book holidays?"]

    async def answer(question: str) -> str:
        return "".join([e.text async for e in engine.astream(question) if isinstance(e, TokenEvent)])

    calls = engine.queries.calls
    texts = await asyncio.gather(*(answer(q) for q in questions))
    assert texts == [engine.answer(q).text for q in questions]
    assert engine.queries.calls > calls  # the query vectors came from the batcher, not the loop


class WaitingEmbedder(HashingEmbedder):
    """Its query embedding waits (up to 10 s) for the keyword search to start, and records whether it did."""

    def __init__(self) -> None:
        super().__init__()
        self.searching = threading.Event()
        self.overlapped: list[bool] = []

    def embed_query(self, text: str) -> np.ndarray:
        self.overlapped.append(self.searching.wait(10))
        return super().embed_query(text)


async def test_a_new_question_is_searched_by_keyword_while_its_query_is_embedded(tmp_path: Path, docs: Path,
                                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    embedder = WaitingEmbedder()
    engine = make_engine(tmp_path / "data", embedder=embedder)
    engine.ingest_files(sorted(docs.iterdir()))
    search = engine.bm25.search

    def keyword_search(*args: Any, **kwargs: Any) -> Any:
        embedder.searching.set()
        return search(*args, **kwargs)

    monkeypatch.setattr(engine.bm25, "search", keyword_search)
    found = await engine.aretrieve("How do I roll back a release?", mode="hybrid")

    assert embedder.overlapped == [True]  # the hybrid question did not wait for its vector to search by keyword
    assert found.chunks[0].chunk.text == engine.retrieve("How do I roll back a release?", mode="hybrid").chunks[0].chunk.text
    embedder.searching.clear()
    again = await engine.aretrieve("How do I roll back a release?", mode="dense")
    assert embedder.overlapped == [True] and again.chunks  # embedded before: no model call, nothing to overlap


def test_a_fatal_error_ends_the_stream_when_search_is_unavailable(engine: Engine, docs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ragcore.errors import StoreUnavailable

    engine.ingest_file(docs / "deploy.md")

    def down(*args: object, **kwargs: object) -> None:
        raise StoreUnavailable("vector store unavailable (http://127.0.0.1:9): connection refused")

    monkeypatch.setattr(engine.store, "_read", down)  # every read of the store: a query, a get, an exact set's vectors
    events = list(engine.stream("roll back"))
    assert len(events) == 1 and isinstance(events[0], ErrorEvent) and events[0].fatal
    assert "unavailable" in events[0].message


def test_a_reindex_after_a_model_change_rebuilds_both_indexes(tmp_path: Path, docs: Path) -> None:
    make_engine(tmp_path / "data").ingest_files(sorted(docs.iterdir()))
    other = make_engine(tmp_path / "data", embedder=HashingEmbedder(name="another-model", dimension=32))
    other.reset_indexes()
    results = other.ingest_files(sorted(docs.iterdir()), force=True)
    assert all(r.status == "indexed" for r in results)
    assert other.store.count() == sum(r.chunks for r in results) == len(other.bm25)


SECRETS = """# Sessions

Sessions keep a user's data between requests. They are signed with the secret key, so a user can read
their session but not change it. The key must stay out of version control and out of logs.

A secret key should be as random as possible: use the following command to generate a good secret key:

```sh
python -c 'import secrets; print(secrets.token_hex())'
```
"""


def test_a_command_in_the_chunk_after_the_one_found_follows_the_sentence_that_introduces_it(tmp_path: Path) -> None:
    # The chunk that ends "… use the following command to generate a good secret key:" is found; the command is
    # the first thing of the next chunk, which retrieval did not rank: the answer still quotes it, under [1].
    engine = make_engine(tmp_path / "data", chunk_tokens=80, chunk_overlap_tokens=0, top_k=1)
    (tmp_path / "sessions.md").write_text(SECRETS)
    engine.ingest_file(tmp_path / "sessions.md")
    chunks = engine.store.get_chunks([f"{c}:{n}" for c in [engine.retrieve("secret key").chunks[0].chunk.document_id]
                                      for n in (0, 1)])
    assert [c.text.endswith("generate a good secret key:") for c in chunks.values()] == [True, False]
    answer = engine.answer("How do I generate a good secret key?")
    assert "generate a good secret key [1]:\n\n```sh\npython -c 'import secrets; print(secrets.token_hex())'\n```" in answer.text
    assert [c.n for c in answer.citations] == [1]

"""The keyword index in PostgreSQL: the same scores, shared by processes that share only the database.

Each `Bm25Index` opens its own connection, as a process on another host would. Needs DATABASE_URL
(PostgreSQL; CI's PostgreSQL pass sets it); every test uses an index name of its own.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from ragcore.bm25 import Bm25Index
from ragcore.bm25.postgres import TABLES, PostgresStorage
from ragcore.bm25.segments import Segment
from ragcore.errors import KeywordIndexUnavailable
from tests.ragcore.test_bm25 import add_all, add_background, assert_agrees, chunk_ids, make_corpus, wait_for
from tests.ragcore.test_stored_fields import chunks_of

DATABASE_URL = os.getenv("DATABASE_URL", "")
REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    not DATABASE_URL.startswith(("postgres://", "postgresql://")),
    reason="the PostgreSQL keyword store needs DATABASE_URL (PostgreSQL); CI's PostgreSQL pass sets it",
)


@pytest.fixture
def name() -> Iterator[str]:
    """An index name of this test's own; its rows are removed afterwards."""
    index_name = f"test-{uuid.uuid4().hex[:10]}"
    yield index_name
    with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
        for table in TABLES:
            if conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0]:  # type: ignore[index]
                conn.execute(f"DELETE FROM {table} WHERE index_name = %s", (index_name,))


def open_index(name: str, refresh_seconds: float = 1.0) -> Bm25Index:
    return Bm25Index(PostgresStorage(DATABASE_URL, name), refresh_seconds=refresh_seconds)


def rows(name: str, table: str) -> int:
    with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
        found = conn.execute(f"SELECT count(*) FROM {table} WHERE index_name = %s", (name,)).fetchone()
    assert found is not None
    return int(found[0])


def test_it_agrees_with_rank_bm25_after_adds_deletes_and_merges_and_reopening(name: str) -> None:
    index = open_index(name)
    corpus = make_corpus(n_docs=40)
    add_all(index, corpus)  # forty commits: merges run along the way
    for gone in ("doc-3", "doc-17", "doc-30"):
        index.delete_document(gone)
        del corpus[gone]
    assert_agrees(index, corpus)
    assert_agrees(open_index(name), corpus)  # what another host loads from the database
    index.force_merge()
    assert_agrees(open_index(name), corpus)
    assert rows(name, "rag_bm25_segment") == 1 and rows(name, "rag_bm25_deletions") == 0  # nothing left over


def test_it_keeps_no_stored_fields_so_chunks_are_read_from_the_vector_store(name: str) -> None:
    """Stored fields would load every chunk's text into each process from the database: it keeps none."""
    chunks = chunks_of(1)
    index = open_index(name)
    index.add_many([("doc-1", "c", [c.chunk_id for c in chunks], [c.text for c in chunks])], stored={"doc-1": chunks})
    assert [cid for cid, _ in index.search("2", 5)] == ["doc-1:2"]  # indexed
    assert index.stored_chunks([c.chunk_id for c in chunks]) == {}
    assert open_index(name).stored_chunks([c.chunk_id for c in chunks]) == {}


def test_another_host_sees_an_add_and_a_delete_within_the_refresh_interval(name: str) -> None:
    writer = open_index(name)
    add_background(writer)
    reader = open_index(name)
    assert reader.search("glacier", top_k=3) == []

    writer.add("a", "v1", ["a#0"], ["glacier pathway"])
    seen = wait_for(lambda: [c for c, _ in reader.search("glacier", top_k=3)] == ["a#0"], 3.0)
    assert seen <= 2.0 and reader.document_info("a") == ("v1", 1)
    fresh = reader.freshness()
    assert (fresh.kind, fresh.behind_versions, fresh.lag_seconds) == ("postgresql", 0, 0.0)
    assert fresh.version == writer.version and "test-" in fresh.location and "password" not in fresh.location

    writer.delete_document("a")
    wait_for(lambda: reader.document_info("a") is None, 3.0)
    assert reader.search("glacier", top_k=3) == []


def test_a_reader_many_commits_behind_catches_up_loading_only_what_changed(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = open_index(name)
    corpus = make_corpus(n_docs=20)
    add_all(writer, corpus)
    reader = open_index(name, refresh_seconds=3600)  # it will not look on its own
    loaded_before = {p.segment.name for p in reader._snapshot.parts}

    more = make_corpus(n_docs=60, seed=11)
    more = {f"late-{d}": texts for d, texts in more.items()}
    add_all(writer, more)  # sixty commits, with merges, while the reader sleeps
    writer.delete_document("doc-1")
    del corpus["doc-1"]
    assert reader.freshness().behind_versions == 61
    assert reader.freshness().lag_seconds > 0

    from ragcore.bm25 import postgres

    fetched: list[str] = []
    real = postgres._PgReader.segment

    def counted(self: postgres._PgReader, segment: str) -> Segment:
        fetched.append(segment)
        return real(self, segment)

    monkeypatch.setattr(postgres._PgReader, "segment", counted)
    assert reader.reload_if_changed(force=True)
    assert_agrees(reader, corpus | more)
    assert not set(fetched) & loaded_before  # segments it held were not fetched again
    assert reader.freshness().behind_versions == 0


@pytest.mark.slow  # two subprocesses
def test_two_writers_on_different_hosts_at_once_lose_no_updates(name: str) -> None:
    script = (
        "import sys; from ragcore.bm25 import Bm25Index; from ragcore.bm25.postgres import PostgresStorage\n"
        "index = Bm25Index(PostgresStorage(sys.argv[1], sys.argv[2]))\n"
        "who = sys.argv[3]\n"
        "for i in range(20):\n"
        "    index.add(f'{who}-{i}', who, [f'{who}-{i}#0', f'{who}-{i}#1'], ['kinase ' + who, 'insulin ' + who])\n"
        "    if i % 7 == 3: index.delete_document(f'{who}-{i - 1}')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    children = [subprocess.Popen([sys.executable, "-c", script, DATABASE_URL, name, who], cwd=REPO, env=env)
                for who in ("host-a", "host-b")]
    assert [c.wait(timeout=120) for c in children] == [0, 0]

    deleted = {i - 1 for i in range(20) if i % 7 == 3}
    expected = {f"{who}-{i}": (who, 2) for who in ("host-a", "host-b") for i in range(20) if i not in deleted}
    fresh = open_index(name)
    assert fresh.documents() == expected and len(fresh) == 2 * len(expected)
    assert fresh.version == 2 * (20 + len(deleted))  # every commit got a version of its own


@pytest.mark.slow  # a subprocess
def test_a_writer_killed_mid_commit_leaves_the_previous_version_readable(name: str) -> None:
    index = open_index(name, refresh_seconds=0)
    corpus = make_corpus(n_docs=8)
    add_all(index, corpus)
    before = index.version
    segments_before = rows(name, "rag_bm25_segment")
    # The child has written its segment rows inside the commit's transaction when it says so, and
    # hangs there, holding the writer lock, until it is killed.
    script = (
        "import sys, time; from ragcore.bm25 import Bm25Index, postgres\n"
        "real = postgres._PgReader.commit\n"
        "def commit_then_hang(self, *args):\n"
        "    real(self, *args); print('inside', flush=True); time.sleep(600)\n"
        "postgres._PgReader.commit = commit_then_hang\n"
        "index = Bm25Index(postgres.PostgresStorage(sys.argv[1], sys.argv[2]))\n"
        "index.add('torn', 't', ['torn#0'], ['glacier torn write'])\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, "-c", script, DATABASE_URL, name], cwd=REPO, env=env,
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline().strip() == "inside"
    child.send_signal(signal.SIGKILL)
    child.wait(10)

    reader = open_index(name)
    assert reader.version == before and reader.document_info("torn") is None
    assert_agrees(reader, corpus)
    # The server rolls the transaction back and frees the lock when it notices the dead client.
    wait_for(lambda: rows(name, "rag_bm25_segment") == segments_before, 10.0)
    index.add("after", "v", ["after#0"], ["glacier after"])
    assert [c for c, _ in open_index(name).search("glacier", top_k=3)] == ["after#0"]


def test_a_database_restart_keeps_readers_serving_and_fails_writes_transiently_until_it_is_back(name: str) -> None:
    writer = open_index(name)
    corpus = make_corpus(n_docs=6)
    add_all(writer, corpus)
    reader = open_index(name, refresh_seconds=0)
    assert_agrees(reader, corpus)

    # What a restart looks like to the clients: every connection of the index is cut.
    with psycopg.connect(DATABASE_URL, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE application_name = 'lorebot-bm25' AND pid <> pg_backend_pid() "
                      "AND datname = current_database()")
    assert reader.search("kinase", top_k=3)  # the snapshot it holds, while it reconnects
    with pytest.raises(KeywordIndexUnavailable) as failed:
        writer.add("during", "v", ["during#0"], ["glacier"])
    assert failed.value.transient and "unreachable" in str(failed.value)
    # The next attempt reconnects: nothing lost, nothing doubled.
    writer.add("during", "v", ["during#0"], ["glacier"])
    wait_for(lambda: reader.document_info("during") == ("v", 1), 3.0)
    assert_agrees(open_index(name), corpus | {"during": ["glacier"]})
    assert chunk_ids("during", ["glacier"]) == ["during#0"]


def test_segments_are_stored_with_fast_compression_so_ingest_keeps_pace_with_the_folder(name: str) -> None:
    # pglz, the server's default, cost more than the rest of a commit (benchmarks/keyword_stores.py).
    open_index(name).add("a", "v1", ["a#0"], ["glacier pathway"])
    with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
        found = conn.execute(
            "SELECT attrelid::regclass::text, attname, attcompression, attstorage FROM pg_attribute "
            "WHERE attrelid IN ('rag_bm25_segment'::regclass, 'rag_bm25_deletions'::regclass) "
            "AND atttypid = 'bytea'::regtype").fetchall()
    assert len(found) == 6
    assert all(compression == "l" or storage == "e" for _t, _c, compression, storage in found), found

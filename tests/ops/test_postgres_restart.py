"""PostgreSQL "restarted" under a real `manage.py db_worker` mid-job: the job resumes, nothing lost or doubled.

The worker reaches the database (the job queue, the console's rows and the keyword index, which lives in
PostgreSQL here as on several hosts) through a TCP relay of this test's own, so cutting the relay is a
server restart that only this worker sees: every connection it holds is reset, and new ones are refused
until the relay is restored. The machine's PostgreSQL itself is shared with other work and never touched.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from ragcore.bm25 import Bm25Index
from ragcore.bm25.postgres import PostgresStorage
from tests.console.test_worker_crash import Site, wait_for, write_docs
from tests.fakes.tcp_relay import TcpRelay
from tests.slow_ingest import slow_ingest_env
from tests.support import make_engine

REPO = Path(__file__).resolve().parents[2]
DATABASE_URL = os.getenv("DATABASE_URL", "")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not DATABASE_URL.startswith(("postgres://", "postgresql://")),
                       reason="a PostgreSQL restart needs DATABASE_URL (PostgreSQL); CI's PostgreSQL pass sets it"),
]


def via(url: str, port: int) -> str:
    """`url` with its host and port replaced by the relay's."""
    parts = urlsplit(url)
    user = f"{parts.username}@" if parts.username else ""
    if parts.password:
        user = f"{parts.username}:{parts.password}@"
    return urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{port}"))


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Site, TcpRelay]]:
    """A database of its own (dropped afterwards), and a relay to the server it lives on."""
    import psycopg

    server = DATABASE_URL.rsplit("/", 1)[0] + "/postgres"
    dbname = f"lorebot_pgrestart_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{dbname}"')
    db_url = DATABASE_URL.rsplit("/", 1)[0] + "/" + dbname
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GROQ_", "SLACK_", "DISCORD_", "DJANGO_"))}
    env.update(RAG_DATA_DIR=str(tmp_path / "data"), LOG_LEVEL="WARNING", INGEST_STALE_SECONDS="3",
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               DATABASE_URL=db_url, RAG_KEYWORD_STORE="postgresql", RAG_ORIGINALS_STORAGE="database")
    env.update(slow_ingest_env(0.5))  # half a second a file: time to cut the database mid-job
    upstream = urlsplit(db_url)
    relay = TcpRelay((upstream.hostname or "127.0.0.1", upstream.port or 5432))
    try:
        yield Site(tmp_path / "data", env, db_url), relay
    finally:
        relay.close()
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


def test_an_ingest_job_resumes_after_a_database_restart_with_every_document_indexed_once(
    site: tuple[Site, TcpRelay], tmp_path: Path, real_embedder: Any
) -> None:
    direct, relay = site
    docs = write_docs(tmp_path / "docs")
    job_id = direct.submit_folder(docs[0].parent, timeout=300)
    # The worker knows the database only through the relay.
    worker_site = Site(direct.data, {**direct.env, "DATABASE_URL": via(direct.db_url, relay.port)}, direct.db_url)
    log = tmp_path / "worker.log"
    workers = [worker_site.worker(log)]
    try:
        wait_for(lambda: direct.job(job_id)["done"] >= 2, 300, "the worker to index two files")
        relay.cut()
        # Down until the worker has come back for the database and been refused a few times.
        wait_for(lambda: relay.refused >= 3 or workers[0].poll() is not None, 120, "the worker to try to reconnect")
        assert workers[0].poll() is None, "the worker exited when the database went away"
        during = direct.job(job_id)
        assert during["state"] == "running" and during["done"] < len(docs)
        relay.restore()
        # The same worker process carries on: nobody restarts it.
        wait_for(lambda: direct.job(job_id)["state"] not in ("queued", "running", "retrying"), 300,
                 "the job to finish after the database came back")
        assert workers[0].poll() is None, "the worker exited"
    finally:
        for w in workers:
            if w.poll() is None:
                w.terminate()
                try:
                    w.wait(20)
                except subprocess.TimeoutExpired:
                    w.kill()

    job = direct.job(job_id)
    assert job["state"] == "succeeded", (job, log.read_text()[-4000:])
    assert relay.cuts == 1 and relay.refused >= 3
    assert "worker.database_back" in log.read_text()

    # Exactly once: the same chunks as a clean run of the same files, in both indexes, nothing else.
    clean = make_engine(tmp_path / "clean", embedder=real_embedder)
    expected = {p.name: clean.ingest_file(p, document_id=f"clean-{p.name}", source=p.name).chunks for p in docs}
    rows = direct.query("SELECT id, original_filename, chunk_count, status FROM console_document")
    assert {name: count for _, name, count, _ in rows} == expected
    assert {status for *_, status in rows} == {"indexed"}
    files = direct.query("SELECT state FROM console_ingestjobfile WHERE job_id = %s", job_id)
    assert {state for (state,) in files} == {"indexed"}

    keyword = Bm25Index(PostgresStorage(direct.db_url, "lorebot"), refresh_seconds=0)
    assert keyword.documents() == {f"doc-{pk}": (keyword.documents()[f"doc-{pk}"][0], expected[name])
                                   for pk, name, *_ in rows}  # no orphans, no doubled chunks
    assert len(keyword) == sum(expected.values())
    dense = make_engine(direct.data, embedder=real_embedder, database_url=direct.db_url, keyword_store="postgresql")
    assert dense.store.count() == sum(expected.values())
    for pk, name, *_ in rows:
        status = dense.document_status(f"doc-{pk}")
        assert status.dense_chunks == status.sparse_chunks == expected[name], (name, status)

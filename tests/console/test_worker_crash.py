"""A real `manage.py db_worker` killed with SIGKILL mid-job: the next worker finishes the job exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.slow_ingest import slow_ingest_env
from tests.support import make_engine

REPO = Path(__file__).resolve().parents[2]
TOPICS = ["rotating API keys", "rolling back a release", "the on-call rota", "backing up the database",
          "onboarding a new engineer"]

pytestmark = pytest.mark.slow


@dataclass
class Site:
    """A throwaway Lorebot installation: its own data folder and its own database."""

    data: Path
    env: dict[str, str]
    db_url: str  # "" for the SQLite file in data/

    def manage(self, *args: str, timeout: float = 60) -> str:
        done = subprocess.run([sys.executable, "manage.py", *args], cwd=REPO, env=self.env,
                              capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    def submit_folder(self, folder: Path, *, timeout: float = 60) -> int:
        """Migrates, then submits every file of `folder` as one upload; returns the job's id. One process
        does both, so Django starts once."""
        code = (
            "from pathlib import Path\n"
            "from django.core.management import call_command\n"
            "call_command('migrate', '--noinput', verbosity=0)\n"
            "from django.core.files.uploadedfile import SimpleUploadedFile\n"
            "from console.ingest import uploads\n"
            f"files = [SimpleUploadedFile(p.name, p.read_bytes()) for p in sorted(Path({str(folder)!r}).iterdir())]\n"
            "print('JOB', uploads.submit_uploads(files, None).job.pk)\n"
        )
        return int(self.manage("shell", "-c", code, timeout=timeout).split("JOB", 1)[1].split()[0])

    def worker(self, log: Path) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            return subprocess.Popen([sys.executable, "manage.py", "db_worker", "--no-startup-delay", "--interval", "0.2"],
                                    cwd=REPO, env=self.env, stdout=out, stderr=subprocess.STDOUT)

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        if self.db_url:
            import psycopg

            with psycopg.connect(self.db_url, autocommit=True) as conn:
                cursor = conn.execute(sql.replace("?", "%s"), params)
                return list(cursor.fetchall()) if cursor.description else []  # an UPDATE returns no rows
        import sqlite3

        lite = sqlite3.connect(self.data / "lorebot.sqlite3", timeout=20)
        try:
            rows = list(lite.execute(sql, params).fetchall())
            lite.commit()  # an UPDATE is kept, as on PostgreSQL's autocommit connection
            return rows
        finally:
            lite.close()

    def job(self, job_id: int) -> dict[str, Any]:
        state, done, attempts, history = self.query(
            "SELECT state, progress_done, attempts, history FROM console_ingestjob WHERE id = ?", job_id)[0]
        return {"state": state, "done": done, "attempts": attempts,
                "history": json.loads(history) if isinstance(history, str) else history}


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GROQ_", "SLACK_", "DISCORD_", "DJANGO_"))}
    data = tmp_path / "data"
    env.update(RAG_DATA_DIR=str(data), LOG_LEVEL="WARNING", INGEST_STALE_SECONDS="3", HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env.update(slow_ingest_env(0.5))  # each file takes half a second: time to kill a worker mid-job
    server = os.environ.get("DATABASE_URL", "")
    if server:  # CREATE/DROP DATABASE from the maintenance database, which always exists
        server = server.rsplit("/", 1)[0] + "/postgres"
    db_url, dbname = "", ""
    if server:  # the same test on PostgreSQL: a database of its own, dropped afterwards
        import psycopg

        dbname = f"lorebot_crash_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{dbname}"')
        db_url = server.rsplit("/", 1)[0] + "/" + dbname
        env["DATABASE_URL"] = db_url
    else:
        env.pop("DATABASE_URL", None)
    yield Site(data, env, db_url)
    if dbname:
        import psycopg

        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


def write_docs(folder: Path) -> list[Path]:
    folder.mkdir()
    paths = []
    for i, topic in enumerate(TOPICS):
        path = folder / f"guide-{i}.md"
        body = "\n\n".join(f"Step {n} of {topic}: do the {n}th thing carefully and write it down." for n in range(1, 25))
        path.write_text(f"# Guide to {topic}\n\n{body}\n")
        paths.append(path)
    return paths


def wait_for(predicate: Any, timeout: float, what: str, *, explain: Any = None) -> None:
    """Polls `predicate`; on a timeout the error carries what `explain()` says (the rows, the worker's log)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}" + (f"\n{explain()}" if explain else ""))


def test_a_killed_worker_is_replaced_and_every_document_is_indexed_exactly_once(
    site: Site, tmp_path: Path, real_embedder: Any
) -> None:
    docs = write_docs(tmp_path / "docs")
    job_id = site.submit_folder(docs[0].parent)
    log = tmp_path / "worker.log"

    first = site.worker(log)
    try:
        # Two files done, the third one in the worker's hands: kill it without a chance to clean up.
        wait_for(lambda: site.job(job_id)["done"] >= 2, 60, "the first worker to index two files")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        first.kill()
    killed = site.job(job_id)
    assert killed["state"] == "running" and killed["done"] < len(docs)

    second = site.worker(log)
    try:
        wait_for(lambda: site.job(job_id)["state"] not in ("queued", "running"), 60, "the second worker to finish the job")
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(20)

    job = site.job(job_id)
    assert job["state"] == "succeeded", log.read_text()[-3000:]
    assert job["attempts"] == 2
    assert {"event": "worker died; retrying", "attempt": 2}.items() <= next(
        e for e in job["history"] if e["event"] == "worker died; retrying").items()

    # Exactly once: the same chunks as a clean run of the same files, in both indexes, nothing else.
    clean = make_engine(tmp_path / "clean", embedder=real_embedder)
    expected = {p.name: clean.ingest_file(p, document_id=f"clean-{p.name}", source=p.name).chunks for p in docs}
    rows = site.query("SELECT id, original_filename, chunk_count, status FROM console_document")
    assert {name: count for _, name, count, _ in rows} == expected
    assert {status for *_, status in rows} == {"indexed"}
    crashed = make_engine(site.data, embedder=real_embedder)
    for pk, name, _, _ in rows:
        status = crashed.document_status(f"doc-{pk}")
        assert status.dense_chunks == status.sparse_chunks == expected[name], (name, status)
    assert set(crashed.bm25.documents()) == {f"doc-{pk}" for pk, *_ in rows}  # no orphans
    assert crashed.store.count() == len(crashed.bm25) == sum(expected.values())  # no duplicates
    files = site.query("SELECT state, attempts FROM console_ingestjobfile WHERE job_id = ?", job_id)
    assert {state for state, _ in files} == {"indexed"}
    assert max(attempts for _, attempts in files) <= 2  # only the file in hand when it died ran twice


def sync_run(site: Site, run_id: int) -> dict[str, Any]:
    state, added, attempts = site.query("SELECT state, added, attempts FROM console_syncrun WHERE id = ?", run_id)[0]
    return {"state": state, "added": added, "attempts": attempts}


def test_a_sync_whose_worker_is_killed_is_resumed_by_the_next_and_nothing_is_lost_or_doubled(
    site: Site, tmp_path: Path, real_embedder: Any
) -> None:
    docs = write_docs(tmp_path / "docs")
    site.env.update(SYNC_CHECK_SECONDS="1", LOG_LEVEL="INFO")  # INFO: a failure shows each step the worker took
    code = (
        "from django.core.management import call_command\n"
        "call_command('migrate', '--noinput', verbosity=0)\n"
        "from console.models import Source\n"
        "from console.syncing import service\n"
        f"source = service.save_source(Source(name='guides', kind='folder', config={{'path': {str(docs[0].parent)!r}}}))\n"
        "print('RUN', service.request_sync(source, enqueue=False).pk)\n"
    )
    run_id = int(site.manage("shell", "-c", code).split("RUN", 1)[1].split()[0])
    site.manage("shell", "-c", f"from console.tasks import enqueue_sync; enqueue_sync({run_id})")
    log = tmp_path / "worker.log"

    first = site.worker(log)
    try:
        # Items are prepared one by one (pending, their document rows made), then embedded as a batch:
        # kill the worker with two items in its hands and none of the batch indexed yet.
        def pending() -> int:
            return len(site.query("SELECT key FROM console_syncitem WHERE pending != ''"))

        wait_for(lambda: pending() >= 2, 90, "the first worker to take two files in hand")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        first.kill()
    killed = sync_run(site, run_id)
    assert killed["state"] == "running" and killed["added"] < len(docs)

    second = site.worker(log)
    try:
        wait_for(lambda: sync_run(site, run_id)["state"] not in ("queued", "running"), 90,
                 "the second worker to finish the sync")
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(20)

    run = sync_run(site, run_id)
    assert run == {"state": "succeeded", "added": len(docs), "attempts": 2}, log.read_text()[-3000:]
    clean = make_engine(tmp_path / "clean", embedder=real_embedder)
    expected = {p.name: clean.ingest_file(p, document_id=f"clean-{p.name}", source=p.name).chunks for p in docs}
    rows = site.query("SELECT id, original_filename, chunk_count, status FROM console_document")
    assert {name: count for _, name, count, _ in rows} == expected  # one document per file, none twice
    assert {status for *_, status in rows} == {"indexed"}
    synced = make_engine(site.data, embedder=real_embedder)
    for pk, name, _, _ in rows:
        status = synced.document_status(f"doc-{pk}")
        assert status.dense_chunks == status.sparse_chunks == expected[name], (name, status)
    assert set(synced.bm25.documents()) == {f"doc-{pk}" for pk, *_ in rows}  # no orphans
    assert synced.store.count() == len(synced.bm25) == sum(expected.values())  # no duplicates
    items = site.query("SELECT key, pending, document_id FROM console_syncitem")
    assert sorted(k for k, _, _ in items) == sorted(p.name for p in docs) and {p for _, p, _ in items} == {""}


def test_a_scheduled_source_is_synced_by_the_worker_across_restarts_with_no_scheduler_process(
    site: Site, tmp_path: Path
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "rota.md").write_text("# Rota\n\nThe on-call rota changes every Monday.\n")
    (docs / "keys.md").write_text("# Keys\n\nRotate the API key every ninety days.\n")
    site.env["SYNC_CHECK_SECONDS"] = "1"
    code = (  # written before any worker runs: the due time is a row, not a timer in some process
        "from django.core.management import call_command\n"
        "call_command('migrate', '--noinput', verbosity=0)\n"
        "from console.models import Source\n"
        "from console.syncing import service\n"
        f"service.save_source(Source(name='rota', kind='folder', every_minutes=60, config={{'path': {str(docs)!r}}}))\n"
    )
    site.manage("shell", "-c", code)

    def runs() -> list[tuple[str, str, int, int]]:
        return site.query("SELECT trigger, state, added, unchanged FROM console_syncrun ORDER BY id")

    def come_due() -> None:  # an hour passes
        site.query("UPDATE console_source SET next_sync_at = ? WHERE name = 'rota'", "2000-01-01 00:00:00")

    log = tmp_path / "worker.log"

    def explain() -> str:
        return f"runs: {site.query('SELECT id, trigger, state, stage, attempts, error FROM console_syncrun')}\n" \
               f"worker log:\n{log.read_text()[-4000:] if log.exists() else ''}"

    for started, expected in ((0, 1), (1, 2)):
        worker = site.worker(log)
        try:
            # At start: the sync that came due while no worker ran (first: never synced; then: due while stopped).
            wait_for(lambda n=expected: len(runs()) == n and runs()[-1][1] == "succeeded", 90,
                     f"the worker to run scheduled sync {expected}", explain=explain)
            if started:  # and while it runs: every SYNC_CHECK_SECONDS it looks for due sources
                come_due()
                wait_for(lambda: len(runs()) == 3 and runs()[-1][1] == "succeeded", 60, "the worker's next check",
                         explain=explain)
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(20)
        if not started:
            come_due()  # while no worker runs
    assert runs() == [("schedule", "succeeded", 2, 0), ("schedule", "succeeded", 0, 2),
                      ("schedule", "succeeded", 0, 2)], log.read_text()[-3000:]
    next_due = site.query("SELECT next_sync_at FROM console_source")[0][0]
    assert str(next_due) > "2026"  # rescheduled an hour after its last run, not left in the past

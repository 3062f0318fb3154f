"""The scale-out configuration on one machine: PostgreSQL, Redis, a `chroma run` server, two daphne
processes and two ingest workers sharing one environment, with one worker SIGKILLed mid-job.

Needs DATABASE_URL and REDIS_URL (CI sets both); it creates and drops a database of its own and
starts its own Chroma server on a free port.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ragcore.bm25 import Bm25Index
from tests.console.test_worker_crash import TOPICS, wait_for
from tests.daphne_server import ROOT, Daphne, Site, base_env, start_daphne
from tests.ops.test_faults import ask_over
from tests.ragcore.test_chroma_server import chroma_url  # noqa: F401  (a fixture: `chroma run` on a free port)
from tests.slow_ingest import slow_ingest_env

DATABASE_URL = os.getenv("DATABASE_URL", "")
REDIS_URL = os.getenv("REDIS_URL", "")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (DATABASE_URL and REDIS_URL),
                       reason="the scale-out test needs DATABASE_URL (PostgreSQL) and REDIS_URL (Redis); CI sets both"),
]

FIRST_BATCH = 3  # the job a worker dies in: long enough to be caught between two files
PASSWORD = "scale-out-pw"


def guide(i: int) -> tuple[str, bytes]:
    topic = TOPICS[i]
    body = "\n\n".join(f"Step {n} of {topic}: do the {n}th thing carefully and write it down." for n in range(1, 25))
    return f"guide-{i}.md", f"# Guide to {topic}\n\n{body}\n".encode()


class Cluster:
    """One environment shared by every process, and a way to look into its database."""

    def __init__(self, site: Site, db_url: str) -> None:
        self.site = site
        self.db_url = db_url
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self.daphnes: list[Daphne] = []

    def manage(self, *args: str) -> str:
        done = subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], cwd=ROOT, env=self.site.env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    def start_worker(self, worker_id: str) -> None:
        log = (self.site.data_dir / f"{worker_id}.log").open("ab")
        self.workers[worker_id] = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "db_worker", "--no-startup-delay", "--interval", "0.2",
             "--worker-id", worker_id], cwd=ROOT, env=self.site.env, stdout=log, stderr=subprocess.STDOUT)

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self.db_url, autocommit=True) as conn:
            return list(conn.execute(sql, params).fetchall())

    def job(self, job_id: int) -> dict[str, Any]:
        state, done, attempts, history, task_id = self.query(
            "SELECT state, progress_done, attempts, history, task_id FROM console_ingestjob WHERE id = %s", job_id)[0]
        return {"state": state, "done": done, "attempts": attempts, "history": history, "task_id": task_id}

    def worker_of(self, job_id: int) -> str | None:
        """The worker running the job's current task (django-tasks-db records who claimed it)."""
        task_id = self.job(job_id)["task_id"]
        rows = self.query("SELECT worker_ids FROM django_tasks_database_dbtaskresult WHERE id::text = %s", task_id)
        return rows[0][0][-1] if rows and rows[0][0] else None

    def stop(self) -> None:
        for proc in self.workers.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.workers.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        for daphne in self.daphnes:
            daphne.stop()

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-2000:] for p in self.site.data_dir.glob("*.log"))


@pytest.fixture
def cluster(tmp_path: Path, chroma_url: str) -> Iterator[Cluster]:  # noqa: F811
    import psycopg

    server = DATABASE_URL.rsplit("/", 1)[0] + "/postgres"
    name = f"lorebot_scale_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    db_url = server.rsplit("/", 1)[0] + "/" + name
    data = tmp_path / "data"
    data.mkdir()
    env = base_env(data, DATABASE_URL=db_url, REDIS_URL=REDIS_URL, CHROMA_URL=chroma_url,
                   CHROMA_COLLECTION=f"scale-{uuid.uuid4().hex[:8]}", INGEST_STALE_SECONDS="3",
                   INGEST_RETRY_BACKOFF_SECONDS="0.2", **slow_ingest_env(1.0))
    cluster = Cluster(Site(data, env), db_url)
    try:
        yield cluster
    finally:
        cluster.stop()
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def login(base_url: str) -> httpx.Client:
    """A real login through the form, CSRF token and all."""
    client = httpx.Client(base_url=base_url, timeout=30, follow_redirects=True)
    page = client.get("/accounts/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert token, page.text[:500]
    done = client.post("/accounts/login/", data={"username": "ops", "password": PASSWORD,
                                                 "csrfmiddlewaretoken": token.group(1)})
    assert done.status_code == 200 and "sessionid" in client.cookies, done.text[:500]
    return client


def upload(client: httpx.Client, files: list[tuple[str, bytes]]) -> None:
    page = client.get("/console/documents/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert token
    done = client.post("/console/documents/", data={"csrfmiddlewaretoken": token.group(1)},
                       files=[("files", (name, data, "text/markdown")) for name, data in files])
    assert done.status_code == 200, done.text[:500]


def test_two_web_processes_and_two_workers_lose_and_duplicate_nothing_when_a_worker_is_killed(
    cluster: Cluster, chroma_url: str  # noqa: F811
) -> None:
    cluster.manage("migrate", "--noinput", "-v", "0")
    cluster.manage("shell", "-c", "from django.contrib.auth.models import User; "
                   f"User.objects.create_user('ops', password={PASSWORD!r}, is_staff=True)")
    cluster.daphnes = [start_daphne(cluster.site, name="web-a"), start_daphne(cluster.site, name="web-b")]
    cluster.start_worker("worker-a")
    cluster.start_worker("worker-b")
    web_a, web_b = cluster.daphnes

    client = login(web_a.http_url)
    upload(client, [guide(i) for i in range(FIRST_BATCH)])
    first = cluster.query("SELECT max(id) FROM console_ingestjob")[0][0]
    wait_for(lambda: cluster.job(first)["state"] == "running" and cluster.worker_of(first) is not None, 90,
             "a worker to take the first job")
    upload(client, [guide(i) for i in range(FIRST_BATCH, len(TOPICS))])
    second = cluster.query("SELECT max(id) FROM console_ingestjob")[0][0]
    assert second != first

    # A backup while both workers write (it runs beside the kill below and holds BM25 writers off meanwhile).
    during = cluster.site.data_dir.parent / "during.tar.gz"
    backup = subprocess.Popen([sys.executable, str(ROOT / "manage.py"), "backup", str(during)], cwd=ROOT,
                              env=cluster.site.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    # Kill whichever worker holds the first job, between two of its files.
    wait_for(lambda: cluster.job(first)["done"] >= 1, 60, "the first file of the first job")
    victim = cluster.worker_of(first)
    assert victim in cluster.workers
    cluster.workers[victim].send_signal(signal.SIGKILL)
    cluster.workers[victim].wait(10)
    assert cluster.job(first)["state"] == "running" and cluster.job(first)["done"] < FIRST_BATCH
    out, _ = backup.communicate(timeout=120)
    assert backup.returncode == 0 and "backup written" in out, out[-3000:]

    # The survivor finishes its own job and, once the heartbeat is stale, the dead worker's.
    wait_for(lambda: all(cluster.job(j)["state"] not in ("queued", "running") for j in (first, second)), 90,
             "both jobs to finish")
    jobs = {j: cluster.job(j) for j in (first, second)}
    assert {j["state"] for j in jobs.values()} == {"succeeded"}, cluster.logs()
    assert jobs[first]["attempts"] == 2
    assert any(e["event"] == "worker died; retrying" for e in jobs[first]["history"])

    # Exactly once, in every store: database rows, the Chroma server, the shared BM25 folder.
    rows = cluster.query("SELECT id, original_filename, chunk_count, checksum, status FROM console_document")
    assert sorted(name for _, name, *_ in rows) == [guide(i)[0] for i in range(len(TOPICS))]
    assert {status for *_, status in rows} == {"indexed"} and all(count > 0 for _, _, count, *_ in rows)
    expected = {f"doc-{pk}": (checksum, count) for pk, _, count, checksum, _ in rows}
    files = cluster.query("SELECT f.state, f.attempts FROM console_ingestjobfile f")
    assert {state for state, _ in files} == {"indexed"} and len(files) == len(TOPICS)

    import chromadb
    from chromadb.config import Settings as ChromaSettings

    host, port = chroma_url.rsplit(":", 1)
    collection = chromadb.HttpClient(host=host.split("//")[1], port=int(port),
                                     settings=ChromaSettings(anonymized_telemetry=False)
                                     ).get_collection(cluster.site.env["CHROMA_COLLECTION"])
    stored = collection.get(include=["metadatas"])
    dense = Counter(m["document_id"] for m in stored["metadatas"])
    assert len(stored["ids"]) == len(set(stored["ids"])) == sum(c for _, c in expected.values())
    assert dense == {doc: count for doc, (_, count) in expected.items()}
    sparse = Bm25Index(cluster.site.data_dir / "bm25_index").documents()
    assert sparse == expected

    # Answers through both web processes cite the documents; the second worker's too.
    cookie = f"sessionid={client.cookies['sessionid']}"

    async def ask_both() -> list[tuple[list[dict[str, Any]], int | None]]:
        return [await ask_over(web_a, cookie, "What is the on-call rota step 3?"),
                await ask_over(web_b, cookie, "How do I onboard a new engineer, step 5?")]

    for (frames, closed), title in zip(asyncio.run(ask_both()), ["Guide to the on-call rota",
                                                                  "Guide to onboarding a new engineer"]):
        assert closed is None and frames[-1]["type"] == "done", frames[-3:]
        cited = frames[-2]["items"]
        assert cited[0]["title"] == title and cited[0]["document_id"] in expected
    log = cluster.logs()
    assert "Traceback" not in "\n".join(d.log.read_text() for d in cluster.daphnes), log

    # Backed up from the Chroma server and restored into a new database, collection and data folder.
    archive = cluster.site.data_dir.parent / "after.tar.gz"
    cluster.manage("backup", str(archive))
    with tarfile.open(during) as tar:
        assert json.load(tar.extractfile("manifest.json"))["vectors"]["source"] == "server"  # type: ignore[arg-type]
    restored = restore_elsewhere(cluster, archive)
    assert f"{len(TOPICS)} indexed documents checked, 0 broken" in restored


def restore_elsewhere(cluster: Cluster, archive: Path) -> str:
    import psycopg

    server, _ = cluster.db_url.rsplit("/", 1)
    name = f"lorebot_restore_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server + "/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    data = cluster.site.data_dir.parent / "restored"
    env = {**cluster.site.env, "DATABASE_URL": f"{server}/{name}", "RAG_DATA_DIR": str(data),
           "CHROMA_COLLECTION": f"restored-{uuid.uuid4().hex[:8]}"}
    try:
        done = subprocess.run([sys.executable, str(ROOT / "manage.py"), "restore", str(archive)], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout
    finally:
        with psycopg.connect(server + "/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

"""The scale-out configuration as if on several hosts: PostgreSQL, Redis and a `chroma run` server shared,
and nothing else. Each process has its own, empty `RAG_DATA_DIR` (host A: a web process; host B: a worker
and maintenance commands; host C: a web process, a worker and the backup), so the keyword index and the
uploaded originals can only reach another process through the database.

Upload on web A, ingest on worker B (SIGKILLed mid-job once, worker C finishes), ask on web C (keyword,
dense and hybrid, with the right citations), delete on A and see it gone on C, reindex on B, back up on C
and restore into a fresh database, Chroma collection and data folder with the same answers.

Here the processes share the loopback interface; separate data folders are what makes a host a host.
tests/ops/test_scale_out_netns.py runs the same scenario (`run_scenario`) with web A, worker B, worker C
and web C each in a network namespace of its own, so that only the network joins them.

Needs DATABASE_URL and REDIS_URL (CI sets both); it creates and drops databases of its own and
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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from ragcore.bm25 import Bm25Index
from ragcore.bm25.postgres import PostgresStorage
from tests.console.test_worker_crash import TOPICS, wait_for
from tests.daphne_server import ROOT, Daphne, Site, base_env, start_daphne
from tests.ops.test_faults import ask_over
from tests.ragcore.test_chroma_server import chroma_url  # noqa: F401  (a fixture: `chroma run` on a free port)
from tests.slow_ingest import slow_ingest_env

DATABASE_URL = os.getenv("DATABASE_URL", "")
REDIS_URL = os.getenv("REDIS_URL", "")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(1200),  # three hosts' processes each load Django and the model: 4-7 min at load 8-12
    pytest.mark.skipif(not (DATABASE_URL and REDIS_URL),
                       reason="the scale-out test needs DATABASE_URL (PostgreSQL) and REDIS_URL (Redis); CI sets both"),
]

FIRST_BATCH = 3  # the job a worker dies in: long enough to be caught between two files
PASSWORD = "scale-out-pw"
HOSTS = ("a", "b", "c")


def guide(i: int) -> tuple[str, bytes]:
    topic = TOPICS[i]
    body = "\n\n".join(f"Step {n} of {topic}: do the {n}th thing carefully and write it down." for n in range(1, 25))
    return f"guide-{i}.md", f"# Guide to {topic}\n\n{body}\n".encode()


@dataclass
class Host:
    """Where a process runs: its data folder and environment, how its commands are wrapped (a network
    namespace, or as they are), and the address its web process listens on."""

    site: Site
    wrap: Callable[[list[str]], list[str]] = list
    address: str = "127.0.0.1"


# The processes of the scenario; the same host may play several roles.
ROLES = ("web-a", "worker-b", "worker-c", "web-c")


class Cluster:
    """Hosts (a data folder each) over one database, Redis and Chroma server, by role."""

    def __init__(self, root: Path, db_url: str, hosts: dict[str, Host], restore: Host) -> None:
        self.root = root
        self.db_url = db_url  # the shared database as this test process reaches it
        self.hosts = hosts  # role -> host
        self.restore = restore  # where the backup is restored: a fresh database, vector collection and folder
        for host in [*hosts.values(), restore]:
            host.site.data_dir.mkdir(exist_ok=True)
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self.daphnes: dict[str, Daphne] = {}

    def manage(self, role: str, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        host = self.restore if role == "restore" else self.hosts[role]
        done = subprocess.run(host.wrap([sys.executable, str(ROOT / "manage.py"), *args]), cwd=ROOT,
                              env=host.site.env, capture_output=True, text=True, timeout=300)
        if ok:
            assert done.returncode == 0, done.stderr[-3000:]
        return done

    def ask(self, role: str, question: str, mode: str) -> dict[str, Any]:
        answer: dict[str, Any] = json.loads(self.manage(role, "ask", question, "--mode", mode, "--json").stdout)
        return answer

    def start_worker(self, role: str) -> None:
        host = self.hosts[role]
        log = (host.site.data_dir / f"{role}.log").open("ab")
        self.workers[role] = subprocess.Popen(
            host.wrap([sys.executable, str(ROOT / "manage.py"), "db_worker", "--no-startup-delay", "--interval", "0.2",
                       "--worker-id", role]), cwd=ROOT, env=host.site.env, stdout=log, stderr=subprocess.STDOUT)

    def start_web(self, role: str) -> Daphne:
        host = self.hosts[role]
        self.daphnes[role] = start_daphne(host.site, name=role, host=host.address, wrap=host.wrap, timeout=120)
        return self.daphnes[role]

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self.db_url, autocommit=True) as conn:
            return list(conn.execute(sql, params).fetchall())

    def job(self, job_id: int) -> dict[str, Any]:
        state, done, attempts, history, task_id = self.query(
            "SELECT state, progress_done, attempts, history, task_id FROM console_ingestjob WHERE id = %s", job_id)[0]
        return {"state": state, "done": done, "attempts": attempts, "history": history, "task_id": task_id}

    def last_job(self) -> int:
        return int(self.query("SELECT max(id) FROM console_ingestjob")[0][0])

    def worker_of(self, job_id: int) -> str | None:
        """The worker running the job's current task (django-tasks-db records who claimed it)."""
        task_id = self.job(job_id)["task_id"]
        rows = self.query("SELECT worker_ids FROM django_tasks_database_dbtaskresult WHERE id::text = %s", task_id)
        return rows[0][0][-1] if rows and rows[0][0] else None

    def finished(self, job_id: int) -> bool:
        return self.job(job_id)["state"] not in ("queued", "running")

    def stop(self) -> None:
        for proc in self.workers.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.workers.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        for daphne in self.daphnes.values():
            daphne.stop()

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-2000:] for p in self.root.glob("*/*.log"))


@contextmanager
def new_database(prefix: str) -> Iterator[str]:
    """A database of its own on the DATABASE_URL server, dropped afterwards; yields its URL."""
    import psycopg

    server = DATABASE_URL.rsplit("/", 1)[0]
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{server}/{name}"
    finally:
        with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def cluster_env(data_dir: Path, **servers: str) -> dict[str, str]:
    """The environment every process of the cluster shares, but for where it finds the servers."""
    return base_env(data_dir, INGEST_STALE_SECONDS="3", INGEST_RETRY_BACKOFF_SECONDS="0.2", **slow_ingest_env(1.0),
                    **servers)


@pytest.fixture
def cluster(tmp_path: Path, chroma_url: str) -> Iterator[Cluster]:  # noqa: F811
    with new_database("lorebot_scale") as db_url, new_database("lorebot_restore") as restore_url:
        servers = {"DATABASE_URL": db_url, "REDIS_URL": REDIS_URL, "CHROMA_URL": chroma_url,
                   "CHROMA_COLLECTION": f"scale-{uuid.uuid4().hex[:8]}"}
        sites = {h: Site(tmp_path / f"host-{h}", cluster_env(tmp_path / f"host-{h}", **servers)) for h in "abc"}
        hosts = {h: Host(site) for h, site in sites.items()}
        restore = Host(Site(tmp_path / "restored", cluster_env(
            tmp_path / "restored", **{**servers, "DATABASE_URL": restore_url,
                                      "CHROMA_COLLECTION": f"restored-{uuid.uuid4().hex[:8]}"})))
        cluster = Cluster(tmp_path, db_url, {"web-a": hosts["a"], "worker-b": hosts["b"], "worker-c": hosts["c"],
                                             "web-c": hosts["c"]}, restore)
        try:
            yield cluster
        finally:
            cluster.stop()


def csrf(client: httpx.Client, path: str) -> str:
    page = client.get(path)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert token, page.text[:500]
    return token.group(1)


def login(base_url: str) -> httpx.Client:
    """A real login through the form, CSRF token and all."""
    client = httpx.Client(base_url=base_url, timeout=30, follow_redirects=True)
    done = client.post("/accounts/login/", data={"username": "ops", "password": PASSWORD,
                                                 "csrfmiddlewaretoken": csrf(client, "/accounts/login/")})
    assert done.status_code == 200 and "sessionid" in client.cookies, done.text[:500]
    return client


def upload(client: httpx.Client, files: list[tuple[str, bytes]]) -> None:
    done = client.post("/console/documents/", data={"csrfmiddlewaretoken": csrf(client, "/console/documents/")},
                       files=[("files", (name, data, "text/markdown")) for name, data in files])
    assert done.status_code == 200, done.text[:500]


def delete(client: httpx.Client, doc_id: int) -> None:
    path = f"/console/documents/{doc_id}/delete"
    done = client.post(path, data={"csrfmiddlewaretoken": csrf(client, path)})
    assert done.status_code == 200, done.text[:500]


def cited_titles(answer: dict[str, Any]) -> list[str]:
    return [c["title"] for c in answer["citations"]]


def test_hosts_that_share_only_the_servers_upload_ingest_answer_delete_reindex_and_restore(
    cluster: Cluster, chroma_url: str  # noqa: F811
) -> None:
    run_scenario(cluster, chroma_url)


def run_scenario(cluster: Cluster, chroma_url: str) -> None:
    """Upload on web A, ingest on worker B (killed) and C, answer on web C, delete, reindex, back up, restore.

    `chroma_url` is the shared Chroma server as this test process reaches it.
    """
    cluster.manage("web-a", "migrate", "--noinput", "-v", "0")
    cluster.manage("web-a", "shell", "-c", "from django.contrib.auth.models import User; "
                   f"User.objects.create_user('ops', password={PASSWORD!r}, is_staff=True)")
    web_a, web_c = cluster.start_web("web-a"), cluster.start_web("web-c")
    cluster.start_worker("worker-b")

    # Upload on A; only worker B runs, so B takes the job.
    client = login(web_a.http_url)
    upload(client, [guide(i) for i in range(FIRST_BATCH)])
    first = cluster.last_job()
    wait_for(lambda: cluster.job(first)["state"] == "running" and cluster.worker_of(first) == "worker-b", 90,
             "worker B to take the first job")
    wait_for(lambda: cluster.job(first)["done"] >= 1, 60, "the first file of the first job")
    cluster.workers["worker-b"].send_signal(signal.SIGKILL)
    cluster.workers["worker-b"].wait(10)
    assert cluster.job(first)["state"] == "running" and cluster.job(first)["done"] < FIRST_BATCH

    # Worker C, on a host that never saw the upload, finishes B's job once its heartbeat is stale, and the next.
    cluster.start_worker("worker-c")
    upload(client, [guide(i) for i in range(FIRST_BATCH, len(TOPICS))])
    second = cluster.last_job()
    wait_for(lambda: cluster.finished(first) and cluster.finished(second), 180, "both jobs to finish")
    jobs = {j: cluster.job(j) for j in (first, second)}
    assert {j["state"] for j in jobs.values()} == {"succeeded"}, cluster.logs()
    assert jobs[first]["attempts"] == 2
    assert any(e["event"] == "worker died; retrying" for e in jobs[first]["history"])
    assert cluster.worker_of(first) == cluster.worker_of(second) == "worker-c"

    # Exactly once, in every shared store: database rows, the Chroma server, the keyword index in PostgreSQL.
    rows = cluster.query("SELECT id, original_filename, chunk_count, checksum, status FROM console_document")
    assert sorted(name for _, name, *_ in rows) == [guide(i)[0] for i in range(len(TOPICS))]
    assert {status for *_, status in rows} == {"indexed"} and all(count > 0 for _, _, count, *_ in rows)
    expected = {f"doc-{pk}": (checksum, count) for pk, _, count, checksum, _ in rows}
    assert {c for (c,) in cluster.query("SELECT checksum FROM console_original")} == {c for c, _ in expected.values()}

    import chromadb
    from chromadb.config import Settings as ChromaSettings

    host, port = chroma_url.rsplit(":", 1)
    collection_name = cluster.hosts["web-a"].site.env["CHROMA_COLLECTION"]
    collection = chromadb.HttpClient(host=host.split("//")[1], port=int(port),
                                     settings=ChromaSettings(anonymized_telemetry=False)
                                     ).get_collection(collection_name)
    stored = collection.get(include=["metadatas"])
    dense = Counter(m["document_id"] for m in stored["metadatas"])
    assert len(stored["ids"]) == len(set(stored["ids"])) == sum(c for _, c in expected.values())
    assert dense == {doc: count for doc, (_, count) in expected.items()}
    assert Bm25Index(PostgresStorage(cluster.db_url, collection_name)).documents() == expected

    # Nothing of the index or the originals on any host's disk.
    for h in cluster.hosts.values():
        assert not (h.site.data_dir / "bm25_index").exists() and not (h.site.data_dir / "raw").exists(), h.site.data_dir

    # Web C answers from documents it never saw uploaded or ingested: keyword, dense and hybrid.
    question = "What is step 3 of the on-call rota?"
    for mode in ("bm25", "dense"):
        assert cited_titles(cluster.ask("web-c", question, mode))[:1] == ["Guide to the on-call rota"], mode
    cookie = f"sessionid={client.cookies['sessionid']}"
    frames, closed = asyncio.run(ask_over(web_c, cookie, question))
    assert closed is None and frames[-1]["type"] == "done", frames[-3:]
    cited = frames[-2]["items"]
    assert cited[0]["title"] == "Guide to the on-call rota" and cited[0]["document_id"] in expected
    ready = httpx.get(f"{web_c.http_url}/health/ready", timeout=30).json()
    keyword = ready["checks"]["bm25_index"]["detail"]
    assert keyword["store"] == "postgresql" and collection_name in keyword["location"]
    assert keyword["behind_versions"] == 0
    assert ready["checks"]["originals"]["detail"]["location"] == "database table console_original"

    # Deleted on A, gone on C (through web C's own keyword index, which follows the database).
    rota_file = guide(TOPICS.index("the on-call rota"))[0]
    rota = next(pk for pk, name, *_ in rows if name == rota_file)
    delete(client, rota)
    deleting = cluster.last_job()
    wait_for(lambda: cluster.finished(deleting), 60, "the delete job")
    assert cluster.job(deleting)["state"] == "succeeded", cluster.logs()

    def rota_cited_on_c() -> bool:
        frames, _ = asyncio.run(ask_over(web_c, cookie, question))
        return any(c["document_id"] == f"doc-{rota}" for c in frames[-2]["items"] if frames[-2]["type"] == "citations")

    wait_for(lambda: not rota_cited_on_c(), 10, "web C to stop citing the deleted guide")
    assert "Guide to the on-call rota" not in cited_titles(cluster.ask("web-c", question, "bm25"))

    # Reindex on B, whose folder holds nothing: it rebuilds the shared indexes from the shared originals.
    reindexed = cluster.manage("worker-b", "reindex", "--now")
    assert f"{len(TOPICS) - 1} re-indexed, 0 failed, 0 originals missing" in reindexed.stdout
    onboarding = "How do I onboard a new engineer, step 5?"
    before = {mode: cited_titles(cluster.ask("web-c", onboarding, mode)) for mode in ("bm25", "dense")}
    assert before["bm25"][:1] == before["dense"][:1] == ["Guide to onboarding a new engineer"]

    # Backed up on C, restored into a new database, vector collection and data folder: the same answers.
    archive = cluster.hosts["web-c"].site.data_dir / "backup.tar.gz"
    cluster.manage("web-c", "backup", str(archive))
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert manifest["vectors"]["source"] == "server" and manifest["bm25"]["store"] == "postgresql"
    assert manifest["raw"] == {"files": len(TOPICS) - 1, "storage": "database"}
    restored = cluster.manage("restore", "restore", str(archive))
    assert f"{len(TOPICS) - 1} indexed documents checked, 0 broken" in restored.stdout
    for mode in ("bm25", "dense"):
        assert cited_titles(cluster.ask("restore", onboarding, mode)) == before[mode], mode
    assert "Traceback" not in "\n".join(d.log.read_text() for d in cluster.daphnes.values()), cluster.logs()

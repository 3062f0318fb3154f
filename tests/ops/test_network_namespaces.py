"""Two "hosts" in network namespaces of their own share the keyword index through PostgreSQL only.

Each namespace has one veth pair to the root namespace and addresses of this test's own; the machine's
PostgreSQL listens on 127.0.0.1 only, so a relay in the root namespace, bound to each veth's root-side
address, is the one way through. A writer in namespace A commits; a reader in namespace B, which cannot
reach 127.0.0.1:5432 at all, sees the commit within the refresh interval.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from ragcore.bm25.postgres import TABLES
from tests.netns import netns_unavailable, network_hosts

REPO = Path(__file__).resolve().parents[2]
DATABASE_URL = os.getenv("DATABASE_URL", "")

pytestmark = [pytest.mark.slow]


@pytest.fixture
def hosts() -> Iterator[dict[str, tuple[str, str]]]:
    """{"a": (namespace, DSN through its relay), "b": ...}; everything is removed afterwards."""
    if not DATABASE_URL.startswith(("postgres://", "postgresql://")):
        pytest.skip("needs DATABASE_URL (PostgreSQL); CI's PostgreSQL pass sets it")
    why = netns_unavailable()
    if why:
        pytest.skip(why)
    upstream = urlsplit(DATABASE_URL)
    pg = {"pg": (upstream.hostname or "127.0.0.1", upstream.port or 5432)}
    with network_hosts({"a": pg, "b": pg}) as made:
        yield {name: (host.ns, host.url("pg", "postgresql", upstream.path, upstream.username or ""))
               for name, host in made.items()}


def run_in(ns: str, code: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", code, *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_hosts_joined_only_by_the_network_share_one_keyword_index(hosts: dict[str, tuple[str, str]]) -> None:
    name = f"netns-{uuid.uuid4().hex[:8]}"
    (ns_a, dsn_a), (ns_b, dsn_b) = hosts["a"], hosts["b"]
    try:
        # Namespace B has a loopback of its own: the server on the machine's 127.0.0.1 is not there.
        isolated = run_in(ns_b, "import psycopg, sys; psycopg.connect(sys.argv[1], connect_timeout=3)",
                          DATABASE_URL)
        assert isolated.returncode != 0 and "refused" in isolated.stderr.lower(), isolated.stderr[-500:]

        reader = subprocess.Popen(
            ["ip", "netns", "exec", ns_b, sys.executable, "-c",
             "import sys, time\n"
             "from ragcore.bm25 import Bm25Index\nfrom ragcore.bm25.postgres import PostgresStorage\n"
             "index = Bm25Index(PostgresStorage(sys.argv[1], sys.argv[2]), refresh_seconds=1.0)\n"
             "print('open', len(index), flush=True)\n"
             "started = time.monotonic()\n"
             "while not index.search('fjordwatch', top_k=1):\n"
             "    if time.monotonic() - started > 300: sys.exit('never saw it')\n"
             "    time.sleep(0.01)\n"
             "print('seen', index.search('fjordwatch', top_k=1)[0][0], index.freshness().kind, flush=True)\n",
             dsn_b, name],
            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)
        assert reader.stdout is not None
        assert reader.stdout.readline().split() == ["open", "0"]
        wrote = run_in(ns_a,
                       "import sys\nfrom ragcore.bm25 import Bm25Index\nfrom ragcore.bm25.postgres import PostgresStorage\n"
                       "index = Bm25Index(PostgresStorage(sys.argv[1], sys.argv[2]))\n"
                       # BM25 scores a term found in every chunk at zero or below: others first.
                       "index.add_many([(f'bg-{i}', 'v1', [f'bg-{i}#0'], [f'kinase insulin note {i}']) for i in range(5)])\n"
                       "index.add('doc-1', 'v1', ['doc-1#0'], ['the fjordwatch station log'])\n", dsn_a, name)
        assert wrote.returncode == 0, wrote.stderr[-2000:]
        out, err = reader.communicate(timeout=330)
        assert reader.returncode == 0, err[-2000:]
        assert out.split() == ["seen", "doc-1#0", "postgresql"]
    finally:
        with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
            for table in TABLES:
                if conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0]:  # type: ignore[index]
                    conn.execute(f"DELETE FROM {table} WHERE index_name = %s", (name,))

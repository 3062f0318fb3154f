"""Two "hosts" in network namespaces of their own share the keyword index through PostgreSQL only.

Each namespace has one veth pair to the root namespace and addresses of this test's own; the machine's
PostgreSQL listens on 127.0.0.1 only, so a relay in the root namespace, bound to each veth's root-side
address, is the one way through. A writer in namespace A commits; a reader in namespace B, which cannot
reach 127.0.0.1:5432 at all, sees the commit within the refresh interval.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from ragcore.bm25.postgres import TABLES
from tests.fakes.tcp_relay import TcpRelay

REPO = Path(__file__).resolve().parents[2]
DATABASE_URL = os.getenv("DATABASE_URL", "")


def _netns_permitted() -> str:
    """Why network namespaces cannot be used here, or "" when they can."""
    if not DATABASE_URL.startswith(("postgres://", "postgresql://")):
        return "needs DATABASE_URL (PostgreSQL); CI's PostgreSQL pass sets it"
    probe = f"lbprobe{uuid.uuid4().hex[:6]}"
    try:
        added = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`ip netns` is not available: {exc}"
    if added.returncode:
        return f"`ip netns add` is not permitted here: {added.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=10)
    return ""


pytestmark = [pytest.mark.slow]


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture
def hosts() -> Iterator[dict[str, tuple[str, str]]]:
    """{"a": (namespace, DSN through its relay), "b": ...}; everything is removed afterwards."""
    why = _netns_permitted()
    if why:
        pytest.skip(why)
    tag = uuid.uuid4().hex[:5]
    subnet = random.randrange(16, 250)
    upstream = urlsplit(DATABASE_URL)
    made: list[tuple[str, str]] = []
    relays: list[TcpRelay] = []
    out: dict[str, tuple[str, str]] = {}
    try:
        for i, host in enumerate(("a", "b")):
            ns, outer, inner = f"lb{tag}{host}", f"lb{tag}{host}0", f"lb{tag}{host}1"
            root_ip, ns_ip = f"10.213.{subnet}.{4 * i + 1}", f"10.213.{subnet}.{4 * i + 2}"
            _ip("netns", "add", ns)
            made.append((ns, outer))
            _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
            _ip("link", "set", inner, "netns", ns)
            _ip("addr", "add", f"{root_ip}/30", "dev", outer)
            _ip("link", "set", outer, "up")
            _ip("netns", "exec", ns, "ip", "addr", "add", f"{ns_ip}/30", "dev", inner)
            _ip("netns", "exec", ns, "ip", "link", "set", inner, "up")
            _ip("netns", "exec", ns, "ip", "link", "set", "lo", "up")
            relay = TcpRelay((upstream.hostname or "127.0.0.1", upstream.port or 5432), host=root_ip)
            relays.append(relay)
            user = f"{upstream.username}@" if upstream.username else ""
            out[host] = (ns, f"postgresql://{user}{root_ip}:{relay.port}{upstream.path}")
        yield out
    finally:
        for relay in relays:
            relay.close()
        for ns, outer in made:
            subprocess.run(["ip", "link", "del", outer], capture_output=True, timeout=10)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


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

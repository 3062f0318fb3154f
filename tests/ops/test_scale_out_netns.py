"""The scale-out scenario with every process on a host of its own, joined to the others only by the network.

Web A, worker B, worker C and web C each run in a network namespace of their own (tests/netns.py: one veth
pair each, addresses of this test's own) with their own empty `RAG_DATA_DIR`. The machine's PostgreSQL and
Redis, and the `chroma run` server this test starts, listen on 127.0.0.1, which no namespace can reach; each
namespace reaches each of the three through a relay bound to its veth's root-side address, and nothing else.
The backup taken on web C is restored on a fifth host into a fresh database and a fresh Chroma server
(reachable only from that host), which must give the same answers.

The scenario is tests/ops/test_scale_out.py's `run_scenario`: upload on web A, ingest on worker B (SIGKILLed
mid-job once, worker C finishes), ask on web C (keyword, dense and over the WebSocket, with citations), delete
on A and see it gone on C, reindex on B, back up on C, restore elsewhere. Needs root with `ip netns`, and
DATABASE_URL (PostgreSQL) and REDIS_URL; CI's PostgreSQL pass has all three.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.daphne_server import ROOT, Site
from tests.netns import NetHost, netns_unavailable, network_hosts
from tests.ops.test_scale_out import ROLES, Cluster, Host, cluster_env, new_database, run_scenario
from tests.ragcore.test_chroma_server import chroma_server

DATABASE_URL = os.getenv("DATABASE_URL", "")
REDIS_URL = os.getenv("REDIS_URL", "")

pytestmark = [
    pytest.mark.slow,
    # Five hosts' processes each load Django and the model; on a loaded 2-core machine that took over 10 min.
    pytest.mark.timeout(1800),
    pytest.mark.skipif(not (DATABASE_URL.startswith(("postgres://", "postgresql://")) and REDIS_URL),
                       reason="needs DATABASE_URL (PostgreSQL) and REDIS_URL (Redis); CI's PostgreSQL pass sets both"),
]


def _address(url: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or default_port


def _env(host: NetHost, data_dir: Path, db_url: str, collection: str) -> dict[str, str]:
    """A host's environment: every server by way of its own relays, its own address allowed."""
    db, redis = urlsplit(db_url), urlsplit(REDIS_URL)
    servers = {"DATABASE_URL": host.url("pg", "postgresql", db.path, db.username or ""),
               "CHROMA_URL": host.url("chroma", "http"), "CHROMA_COLLECTION": collection,
               "DJANGO_ALLOWED_HOSTS": f"127.0.0.1,localhost,{host.address}"}
    if "redis" in host.services:
        servers["REDIS_URL"] = host.url("redis", "redis", redis.path, f":{redis.password}" if redis.password else "")
    return cluster_env(data_dir, **servers)


@pytest.fixture
def hosts_cluster(tmp_path: Path) -> Iterator[tuple[Cluster, str, dict[str, NetHost]]]:
    """The cluster in namespaces, the shared Chroma server's URL (as this process reaches it), the hosts."""
    why = netns_unavailable()
    if why:
        pytest.skip(why)
    with new_database("lorebot_netns") as db_url, new_database("lorebot_netns_restore") as restore_url, \
            chroma_server(tmp_path / "chroma-shared") as chroma_url, \
            chroma_server(tmp_path / "chroma-fresh") as fresh_chroma_url:
        shared = {"pg": _address(db_url, 5432), "redis": _address(REDIS_URL, 6379),
                  "chroma": _address(chroma_url, 8000)}
        fresh = {"pg": _address(restore_url, 5432), "chroma": _address(fresh_chroma_url, 8000)}
        with network_hosts({**dict.fromkeys(ROLES, shared), "restore": fresh}) as net:
            collection = f"scale-{uuid.uuid4().hex[:8]}"
            hosts = {role: Host(Site(tmp_path / role, _env(net[role], tmp_path / role, db_url, collection)),
                                net[role].command, net[role].address) for role in ROLES}
            restore = Host(Site(tmp_path / "restore", _env(net["restore"], tmp_path / "restore", restore_url,
                                                           collection)), net["restore"].command)
            cluster = Cluster(tmp_path, db_url, hosts, restore)
            try:
                yield cluster, chroma_url, net
            finally:
                cluster.stop()


def test_hosts_in_network_namespaces_upload_ingest_answer_delete_reindex_and_restore(
    hosts_cluster: tuple[Cluster, str, dict[str, NetHost]],
) -> None:
    cluster, chroma_url, net = hosts_cluster
    # A namespace's 127.0.0.1 is its own: the machine's servers there are out of reach, the relays are not.
    probe = ("import socket, sys\n"
             "for host, port in zip(sys.argv[1::2], sys.argv[2::2]):\n"
             "    try:\n"
             "        socket.create_connection((host, int(port)), timeout=3).close(); print('open')\n"
             "    except OSError: print('refused')\n")
    loopback = [part for url, port in ((DATABASE_URL, 5432), (REDIS_URL, 6379), (chroma_url, 8000))
                for part in map(str, _address(url, port))]
    relayed = [part for address in net["worker-b"].services.values() for part in map(str, address)]
    seen = subprocess.run(net["worker-b"].command([sys.executable, "-c", probe, *loopback, *relayed]), cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert seen.stdout.split() == ["refused"] * 3 + ["open"] * 3, seen.stderr[-2000:]
    # The restore host reaches the fresh servers only: not the shared Chroma server nor Redis.
    assert set(net["restore"].services) == {"pg", "chroma"}

    run_scenario(cluster, chroma_url)

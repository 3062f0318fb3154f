"""Hosts of a test's own: network namespaces joined to the root namespace by one veth pair each.

Each namespace gets a /30 of its own (the root side `.1`, the namespace side `.2`) and nothing else: its
loopback is its own, so the machine's PostgreSQL, Redis and Chroma on 127.0.0.1 are out of its reach. A
service is offered to a namespace through a relay in this process bound to that namespace's root-side
address, which is the one way through. Needs root and `ip netns`; `netns_unavailable()` says why not.
"""

from __future__ import annotations

import random
import re
import subprocess
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from tests.fakes.tcp_relay import TcpRelay

# Namespace-side addresses of the hosts the running test made. They are on this machine, so the
# tests' network guard (tests/conftest.py) admits them beside loopback.
OWN_ADDRESSES: set[str] = set()


def netns_unavailable() -> str:
    """Why network namespaces cannot be made here, or "" when they can."""
    probe = f"lbprobe{uuid.uuid4().hex[:6]}"
    try:
        added = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`ip netns` is not available: {exc}"
    if added.returncode:
        return f"`ip netns add` is not permitted here: {added.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=10)
    return ""


def _free_subnet() -> int:
    """A third octet of 10.213.x.0/24 no interface of the machine uses (another test run's, say)."""
    shown = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True, timeout=10).stdout
    used = {int(octet) for octet in re.findall(r"inet 10\.213\.(\d+)\.", shown)}
    free = [n for n in range(16, 250) if n not in used]
    if not free:
        raise RuntimeError("every 10.213.x.0/24 subnet is in use")
    return random.choice(free)


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    if done.returncode:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


@dataclass
class NetHost:
    """One namespace: its name, its own address, and where each shared service is reached from it."""

    name: str
    ns: str
    address: str  # the namespace side of the veth pair
    services: dict[str, tuple[str, int]] = field(default_factory=dict)  # service -> (relay address, port)

    def command(self, argv: Sequence[str]) -> list[str]:
        """`argv` run inside this namespace (`ip netns exec` execs it: the pid is the command's own)."""
        return ["ip", "netns", "exec", self.ns, *argv]

    def url(self, service: str, scheme: str, rest: str = "", user: str = "") -> str:
        host, port = self.services[service]
        return f"{scheme}://{user + '@' if user else ''}{host}:{port}{rest}"


@contextmanager
def network_hosts(wanted: Mapping[str, Mapping[str, tuple[str, int]]]) -> Iterator[dict[str, NetHost]]:
    """A namespace per host of `wanted` ({host: {service: (address, port)}}), reaching each of its services
    through a relay of its own and nothing else; everything is removed afterwards."""
    tag = uuid.uuid4().hex[:5]
    subnet = _free_subnet()
    made: list[tuple[str, str]] = []
    relays: list[TcpRelay] = []
    hosts: dict[str, NetHost] = {}
    try:
        for i, (name, services) in enumerate(wanted.items()):
            ns, outer, inner = f"lb{tag}-{name}", f"lb{tag}{i}o", f"lb{tag}{i}i"
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
            host = NetHost(name, ns, ns_ip)
            for service, upstream in services.items():
                relay = TcpRelay(upstream, host=root_ip)
                relays.append(relay)
                host.services[service] = (root_ip, relay.port)
            hosts[name] = host
            OWN_ADDRESSES.add(ns_ip)
        yield hosts
    finally:
        for relay in relays:
            relay.close()
        for host in hosts.values():
            OWN_ADDRESSES.discard(host.address)
        for ns, outer in made:
            subprocess.run(["ip", "link", "del", outer], capture_output=True, timeout=10)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)

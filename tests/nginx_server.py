"""The shipped nginx config run by the real nginx (Debian's package) in front of daphne, for tests.

nginx runs unprivileged (as `nobody` when the tests run as root, as CI does) with a prefix of its
own: config, pid, logs, temp folders and a self-signed certificate made here with `cryptography`.
The shipped deploy/nginx/lorebot.conf is used as it is, except for what a test must change: ports,
the upstream, certificate, log and static paths. Each of those edits must match, so a change to the
shipped file that the test no longer covers fails loudly instead of testing something else.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.daphne_server import stop_process

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "deploy" / "nginx" / "lorebot.conf"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else "")
MIME_TYPES = Path("/etc/nginx/mime.types")  # Debian's nginx.conf includes it the same way


@dataclass
class Nginx:
    process: subprocess.Popen[bytes]
    prefix: Path
    https_port: int

    @property
    def url(self) -> str:
        return f"https://localhost:{self.https_port}"

    @property
    def error_log(self) -> str:
        path = self.prefix / "error.log"
        return path.read_text() if path.exists() else ""

    def stop(self) -> None:
        stop_process(self.process)


def _unprivileged() -> dict[str, Any]:
    """Popen arguments that drop root to `nobody`; nothing when we are not root already."""
    if os.geteuid() != 0:
        return {}
    nobody = pwd.getpwnam("nobody")
    return {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}


@contextmanager
def nginx_prefix() -> Iterator[Path]:
    """A folder of nginx's own, outside pytest's root-only tmp folders so `nobody` can reach it."""
    prefix = Path(tempfile.mkdtemp(prefix="lorebot-nginx-"))
    try:
        yield prefix
    finally:
        shutil.rmtree(prefix, ignore_errors=True)


def _hand_over(prefix: Path) -> None:
    """Lets the unprivileged nginx read and write everything in its prefix."""
    options = _unprivileged()
    if not options:
        return
    for path in [prefix, *prefix.rglob("*")]:
        os.chown(path, options["user"], options["group"], follow_symlinks=False)


def make_certificate(folder: Path, host: str = "localhost") -> tuple[Path, Path]:
    """A self-signed certificate for `host` and 127.0.0.1, valid for a day: (certificate, key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName(host), x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        ]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption(),
    ))
    return cert_path, key_path


def _replace(text: str, old: str, new: str) -> str:
    if old not in text:
        raise AssertionError(f"deploy/nginx/lorebot.conf no longer contains {old!r}: update tests/nginx_server.py")
    return text.replace(old, new)


def _ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def render_site(prefix: Path, *, cert: Path, key: Path, https_port: int, http_port: int, upstream_port: int | None = None,
                static_dir: Path | None = None, loopback: bool = True, upstream_ports: Sequence[int] = ()) -> str:
    """The shipped server config with this test's ports, paths and (to run it) upstream: `upstream_port`, or
    every one of `upstream_ports` (several daphne processes, as lorebot-web@PORT runs them)."""
    # nginx binds its listeners even for `nginx -t`, so the ports always change. `loopback` listens on
    # 127.0.0.1 only; otherwise on every address like the shipped file, IPv6 too where the machine has it.
    text = SHIPPED.read_text()
    text = _replace(text, "/etc/letsencrypt/live/lorebot.example.com/fullchain.pem", str(cert))
    text = _replace(text, "/etc/letsencrypt/live/lorebot.example.com/privkey.pem", str(key))
    text = _replace(text, "/var/log/nginx/lorebot.access.log", str(prefix / "access.log"))
    ipv6 = not loopback and _ipv6()
    v4 = "127.0.0.1:" if loopback else ""
    text = _replace(text, "    listen 443 ssl http2;\n", f"    listen {v4}{https_port} ssl http2;\n")
    text = _replace(text, "    listen [::]:443 ssl http2;\n", f"    listen [::]:{https_port} ssl http2;\n" if ipv6 else "")
    text = _replace(text, "    listen 80;\n", f"    listen {v4}{http_port};\n")
    text = _replace(text, "    listen [::]:80;\n", f"    listen [::]:{http_port};\n" if ipv6 else "")
    if static_dir is not None:
        text = _replace(text, "alias /srv/lorebot/data/static/;", f"alias {static_dir}/;")
    ports = [upstream_port] if upstream_port is not None else list(upstream_ports)
    if ports:
        servers = "".join(f"    server 127.0.0.1:{port} max_fails=3 fail_timeout=10s;\n" for port in ports)
        text = _replace(text, "    server 127.0.0.1:8001 max_fails=3 fail_timeout=10s;\n"
                              "    server 127.0.0.1:8002 max_fails=3 fail_timeout=10s;\n", servers)
    return text


def write_config(prefix: Path, site: str, *, worker_connections: int = 256) -> Path:
    """nginx.conf for the prefix: what Debian's main config gives the site (mime types, temp paths), then the site.

    `worker_connections` counts both sides of a proxied socket (Debian's default is 768).
    """
    (prefix / "lorebot.conf").write_text(site)
    temp = "\n".join(f"    {kind}_temp_path {prefix / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    conf = prefix / "nginx.conf"
    conf.write_text(f"""worker_processes 1;
pid {prefix / "nginx.pid"};
error_log {prefix / "error.log"} info;
events {{ worker_connections {worker_connections}; }}
http {{
    include {MIME_TYPES};
    default_type application/octet-stream;
    access_log {prefix / "access.log"};
{temp}
    include {prefix / "lorebot.conf"};
}}
""")
    _hand_over(prefix)
    return conf


def _argv(prefix: Path, conf: Path, *args: str) -> list[str]:
    """nginx on this prefix and config (`-e`: its start-up errors go there too, not to /var/log)."""
    return [NGINX, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log"), *args]


def check_config(prefix: Path, conf: Path) -> subprocess.CompletedProcess[str]:
    """`nginx -t` on the config: parses every directive, loads the certificates, tries the listeners."""
    return subprocess.run(_argv(prefix, conf, "-t"), cwd=prefix, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=30, check=False, **_unprivileged())


def start_nginx(prefix: Path, conf: Path, https_port: int, timeout: float = 15.0) -> Nginx:
    """nginx in the foreground (`daemon off`), once its https port accepts connections."""
    log = (prefix / "stdout.log").open("wb")
    process = subprocess.Popen(_argv(prefix, conf, "-g", "daemon off;"), cwd=prefix, stdout=log, stderr=subprocess.STDOUT,
                               **_unprivileged())
    server = Nginx(process, prefix, https_port)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"nginx exited with {server.process.returncode}:\n{server.error_log[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", https_port), timeout=1):
                return server
        except OSError:
            time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"nginx did not listen on {https_port} within {timeout} s:\n{server.error_log[-3000:]}")

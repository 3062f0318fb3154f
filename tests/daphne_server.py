"""Real daphne processes for end-to-end tests and the WebSocket benchmark.

A site is a data folder with a migrated SQLite file, a few ingested documents and a staff user with a
session; any number of daphne processes can serve it. Environment is passed explicitly: the test
guards strip GROQ_* from this process, and a subprocess must never see a developer's real key.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
DAPHNE = str(Path(sys.executable).with_name("daphne"))
# daphne's flags as deploy/systemd/lorebot-web@.service runs it (tests/ops/test_deploy_files.py keeps them
# equal). twisted listens with a backlog of 50, so a burst of more new sockets than that (a wave of
# reconnects after a restart) lost its SYNs and retried them a second later; and daphne drops a WebSocket
# whose handshake (the session and user lookups included) takes over 5 s, which 200 sockets opening at
# once on a busy machine did: each was reset (behind nginx, a 502, and the upstream marked failed).
BACKLOG = 1024
HANDSHAKE_FLAGS = ("--websocket_connect_timeout", "30")

DEPLOY = """# Deployment

## Rollback

To roll back a release, run the rollback pipeline with the previous tag. It notifies the on-call channel.

## Releases

Releases go out every Tuesday after the change review. Hotfixes can go out any day.
"""

RELEASES = """# Release calendar

Release trains leave every Tuesday at noon. A missed train waits for the next Tuesday.
"""

# Runs inside `manage.py shell`: two documents (one console document "doc-1", one web page), a staff
# user and a logged-in session whose key is printed.
_SETUP = """
from pathlib import Path
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.sessions.backends.db import SessionStore
from console.engine import get_engine
data = Path({data!r})
engine = get_engine()
engine.ingest_file(data / "deploy.md", document_id="doc-1", title="Deployment", source="deploy.md")
engine.ingest_file(data / "releases.md", document_id="web-releases", title="Release calendar",
                   source="https://wiki.example.com/releases")
for name in {users!r}:
    user = get_user_model().objects.create_user(name, password="pw", is_staff=True)
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    print("SESSION", name, session.session_key)
"""


@dataclass
class Site:
    """A data folder and database that daphne processes share."""

    data_dir: Path
    env: dict[str, str]
    sessions: dict[str, str] = field(default_factory=dict)  # username → session key

    def cookie(self, username: str) -> str:
        return f"sessionid={self.sessions[username]}"


@dataclass
class Daphne:
    process: subprocess.Popen[bytes]
    port: int
    log: Path
    host: str = "127.0.0.1"

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/ws/chat/"

    def stop(self) -> None:
        stop_process(self.process)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, and SIGKILL if the process has not exited 10 s later."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def base_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """A clean environment: no vendor keys and no DATABASE_URL from outside, only what we pass."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update({
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "console.settings",
        "RAG_DATA_DIR": str(data_dir),
        "DJANGO_SECRET_KEY": "e2e-" + "x" * 50,
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "LOG_LEVEL": "WARNING",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    })
    env.update(extra)
    return env


def make_site(data_dir: Path, *, users: tuple[str, ...] = ("ann",), **env_extra: str) -> Site:
    """Migrates a fresh SQLite file, ingests two documents, creates staff users with sessions."""
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "deploy.md").write_text(DEPLOY)
    (data_dir / "releases.md").write_text(RELEASES)
    env = base_env(data_dir, **env_extra)
    manage = [PYTHON, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "--noinput", "-v", "0"], env=env, cwd=ROOT, check=True)
    out = subprocess.run(
        [*manage, "shell", "-c", _SETUP.format(data=str(data_dir), users=users)],
        env=env, cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout
    sessions = {parts[1]: parts[2] for parts in (line.split() for line in out.splitlines()) if parts[:1] == ["SESSION"]}
    return Site(data_dir, env, sessions)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_daphne(site: Site, *, name: str = "daphne", port: int = 0, timeout: float = 60.0,
                 app: str = "console.asgi:application", host: str = "127.0.0.1",
                 wrap: Callable[[list[str]], list[str]] | None = None, **env_extra: str) -> Daphne:
    """Starts `daphne console.asgi:application` (on a free port by default) and waits until /health answers.

    :param host: the address to listen on; :param wrap: turns the command into the one to run (e.g. in a
    network namespace: `NetHost.command`).
    """
    port = port or free_port()
    log = site.data_dir / f"{name}-{port}.log"
    argv = [DAPHNE, "-e", f"tcp:port={port}:interface={host}:backlog={BACKLOG}", *HANDSHAKE_FLAGS, app]
    process = subprocess.Popen(
        wrap(argv) if wrap else argv,
        env={**site.env, **env_extra}, cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )
    server = Daphne(process, port, log, host)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"daphne exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            # A probe that reached the server waits for its answer, however busy the machine: one that
            # gave up would leave a request the server still counts (and tests count exactly).
            with urllib.request.urlopen(f"{server.http_url}/health", timeout=max(deadline - time.monotonic(), 1)) as response:
                if response.status == 200:
                    return server
        except OSError:
            time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"daphne did not answer within {timeout} s:\n{log.read_text()[-3000:]}")


def peak_rss_kb(pid: int) -> int:
    """VmHWM: the process's peak resident memory, in kB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0

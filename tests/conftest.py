"""Guards every test runs under: no network but loopback (and a test's own namespaces), no real credentials, offline model."""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import netns

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
# Importing console.asgi (the WebSocket tests do) must not start a background warm-up that builds
# the process-wide engine behind the data_dir fixture's back; real daphne subprocesses still warm up.
os.environ["WARMUP_ON_START"] = "False"
# Nor an orphan sweeper thread that would read the test database between tests (a test turns it on).
os.environ.setdefault("CHAT_ANSWER_STALE_SECONDS", "0")


def pytest_configure(config: pytest.Config) -> None:
    """Connections close after each request or pool-thread call, as CONN_MAX_AGE=0 says.

    The chat service runs its ORM calls on pool threads (console.chat.orm); with DATABASE_URL's
    CONN_MAX_AGE=60 those threads would keep their connections to the end, and the test database
    on the server could not be dropped.
    """
    from django.conf import settings

    default = settings.DATABASES["default"]
    default["CONN_MAX_AGE"] = 0
    if default["ENGINE"] == "django.db.backends.sqlite3":
        # A file, as in production, not Django's shared-cache in-memory default: in shared-cache mode a
        # read that meets another thread's write fails at once with "database table is locked" instead of
        # waiting out the busy timeout, so a test polling the database beside a bot thread that writes
        # to it failed at random.
        config._lorebot_test_db_dir = tempfile.mkdtemp(prefix="lorebot-testdb-")  # type: ignore[attr-defined]
        default.setdefault("TEST", {})["NAME"] = str(Path(config._lorebot_test_db_dir) / "test.sqlite3")  # type: ignore[attr-defined]
    # pytest-django reads the settings (its pytest_load_initial_conftests runs first) before the
    # environment lines at the top of this module, so they are applied to the settings here too:
    # otherwise importing console.asgi starts a warm-up and an orphan sweeper in the test process,
    # which read and write the test database between and under the tests.
    settings.WARMUP_ON_START = os.environ["WARMUP_ON_START"] == "True"
    settings.CHAT_ANSWER_STALE_SECONDS = float(os.environ["CHAT_ANSWER_STALE_SECONDS"])


def pytest_unconfigure(config: pytest.Config) -> None:
    """Django removes the test database file; its WAL and shared-memory files, and the folder, go here."""
    folder = getattr(config, "_lorebot_test_db_dir", None)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)


_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _check_loopback(address: object) -> None:
    if isinstance(address, tuple) and address:
        host = str(address[0])
        try:
            allowed = ipaddress.ip_address(host).is_loopback or host in netns.OWN_ADDRESSES
        except ValueError:
            allowed = host == "localhost"
        if not allowed:
            raise ConnectionRefusedError(f"tests may not reach the network ({host}); use a fake server")


def _guarded_connect(self: socket.socket, address: Any) -> None:
    _check_loopback(address)
    return _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> int:
    _check_loopback(address)
    return _real_connect_ex(self, address)


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Zulip's rule: a test that talks to the internet fails, loudly."""
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", _guarded_connect_ex)


@pytest.fixture(autouse=True)
def no_vendor_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """No SDK may pick up a real key or URL from the developer's environment."""
    for name in list(os.environ):
        if name.startswith(("GROQ_", "SLACK_", "DISCORD_", "OPENAI_", "LLM_")):
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def chat_writer_closed() -> Iterator[None]:
    """The chat writer's thread keeps its connection for a moment after its last write; each test ends
    it, so no connection outlives the test that opened it (a PostgreSQL test database could not be
    dropped, and the next test's database setup would race it)."""
    yield
    from console.chat.orm import writer

    writer().close()


@pytest.fixture(autouse=True)
def orphan_sweeper_stopped() -> Iterator[None]:
    """A test that turns the sweeper on (CHAT_ANSWER_STALE_SECONDS > 0) starts its thread in this process;
    it ends with the test, so it never reads a later test's database (or one no longer allowed)."""
    yield
    from console.ops.orphans import sweeper

    sweeper.stop()


@pytest.fixture(scope="session")
def real_embedder() -> Iterator[object]:
    """The packaged all-MiniLM-L6-v2 on the default backend (ONNX int8), loaded once for the whole session."""
    from ragcore.embeddings import shared_embedder

    embedder = shared_embedder()
    embedder.embed_query("load")
    yield embedder


@pytest.fixture
def data_dir(tmp_path: Path, real_embedder: object) -> Iterator[Path]:
    """A temporary data folder for the process-wide engine (real offline MiniLM)."""
    from django.test import override_settings

    from console.engine import set_engine

    data = tmp_path / "data"
    with override_settings(RAG_DATA_DIR=data):
        set_engine(None)  # the next get_engine() builds one on this folder
        yield data
    set_engine(None)


@pytest.fixture
def chat_engine(tmp_path: Path) -> Iterator[object]:
    """A small engine (hashing embedder) holding the DEPLOY document, answering for the chat service."""
    from tests.support import serving_deploy

    with serving_deploy(tmp_path) as engine:
        yield engine


@pytest.fixture(scope="session")
def torch_embedder() -> Iterator[object]:
    """The same model on the torch backend (sentence-transformers), loaded once for the whole session."""
    from ragcore.embeddings import shared_torch_embedder

    embedder = shared_torch_embedder()
    embedder.embed_query("load")
    yield embedder


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that loads the real embedding model (through `data_dir` or `real_embedder`) is slow, wherever it is.

    `pytest -m "not slow"` is then the quick inner loop: the hashing embedder, in-process fakes, no subprocesses.
    """
    for item in items:
        if {"data_dir", "real_embedder", "torch_embedder"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)

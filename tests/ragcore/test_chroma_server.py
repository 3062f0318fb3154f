"""The vector store against a real `chroma run` server (CHROMA_URL), started by the test."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ragcore.errors import StoreUnavailable
from tests.support import make_engine

CHROMA = Path(sys.executable).with_name("chroma")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def chroma_server(path: Path) -> Iterator[str]:
    """A `chroma run` server on a free port of 127.0.0.1 storing under `path`; yields its URL."""
    # chromadb (a dependency) installs the command: without it the installation is broken, not the machine.
    assert CHROMA.exists() or shutil.which("chroma"), "the chroma command is missing; run make install"
    port = _free_port()
    proc = subprocess.Popen(
        [str(CHROMA if CHROMA.exists() else "chroma"), "run", "--path", str(path), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={"ANONYMIZED_TELEMETRY": "False", "PATH": "/usr/bin:/bin"},
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert proc.poll() is None, "chroma run exited early"
                assert time.monotonic() < deadline, "chroma run did not start in 60 s"
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def chroma_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with chroma_server(tmp_path_factory.mktemp("chroma-server")) as url:
        yield url


@pytest.mark.slow  # a `chroma run` server
def test_it_indexes_and_retrieves_through_a_chroma_server(tmp_path: Path, chroma_url: str) -> None:
    engine = make_engine(tmp_path / "data", chroma_url=chroma_url, chroma_collection="server-test")
    doc = tmp_path / "deploy.md"
    doc.write_text("# Deployment\n\n## Rollback\n\nRun the rollback pipeline with the previous tag.\n")
    result = engine.ingest_file(doc)
    assert result.status == "indexed"
    assert engine.store.count() == result.chunks
    assert not (tmp_path / "data" / "chroma_store").exists(), "a server URL must not create a local store"
    retrieval = engine.retrieve("rollback pipeline", mode="dense")
    assert retrieval.chunks[0].chunk.title == "Deployment"
    assert engine.ingest_file(doc).status == "unchanged"


def test_an_unreachable_server_is_a_clear_error(tmp_path: Path) -> None:
    engine = make_engine(tmp_path / "data", chroma_url=f"http://127.0.0.1:{_free_port()}")
    with pytest.raises(StoreUnavailable, match="vector store unavailable"):
        engine.store.count()

"""Fixtures of the synced-sources tests: an engine whose embedder counts what it embeds, and a folder to sync."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from django.test import override_settings

from console.engine import set_engine
from console.models import Source, SyncRun
from console.syncing import service
from console.syncing.runs import run_sync
from ragcore import Engine
from tests.support import HashingEmbedder, make_engine


def sync(source: Source) -> SyncRun:
    """One sync of `source`, run here as the worker would run it, and its finished run."""
    run = service.request_sync(source, enqueue=False)
    run_sync(run.pk)
    run.refresh_from_db()
    return run


class CountingEmbedder(HashingEmbedder):
    """The hashing embedder, counting the texts it embeds: a sync with nothing changed embeds none."""

    def __init__(self) -> None:
        super().__init__()
        self.embedded = 0

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.embedded += len(texts)
        return super().embed(texts)


@pytest.fixture
def embedder() -> CountingEmbedder:
    return CountingEmbedder()


@pytest.fixture
def engine(tmp_path: Path, embedder: CountingEmbedder) -> Iterator[Engine]:
    data = tmp_path / "data"
    with override_settings(RAG_DATA_DIR=data):
        built = make_engine(data, embedder=embedder)
        set_engine(built)
        yield built
    set_engine(None)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "handbook"
    (root / "ops").mkdir(parents=True)
    (root / "ops" / "rotation.md").write_text("# Key rotation\n\nRotate the API key every ninety days.\n")
    (root / "deploy.md").write_text("# Deploys\n\nDeploys go out on Tuesdays after review.\n")
    (root / "notes.txt").write_text("The zebra migration finishes on Friday.\n")
    return root


@pytest.fixture
def source(folder: Path, engine: Engine) -> Source:
    return service.save_source(Source(name="handbook", kind="folder", config={"path": str(folder)}))

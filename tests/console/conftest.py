"""Console tests run the real engine (real offline MiniLM) on a temporary data folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from django.test import override_settings

from console.engine import get_engine


@pytest.fixture
def data_dir(tmp_path: Path, real_embedder: object) -> Iterator[Path]:
    data = tmp_path / "data"
    with override_settings(RAG_DATA_DIR=data):
        get_engine.cache_clear()
        yield data
    get_engine.cache_clear()

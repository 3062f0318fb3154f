"""Lorebot's retrieval and answering engine: plain Python, configured by one RagSettings."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ragcore.engine import Engine
    from ragcore.ingest import IngestRequest, IngestResult
    from ragcore.retrieval import Retrieval
    from ragcore.settings import RagSettings

__all__ = ["Engine", "IngestRequest", "IngestResult", "RagSettings", "Retrieval"]

# Imported on first use (PEP 562), so `import ragcore.loaders` costs the loaders alone: the ingest
# worker's parser processes (console/ingest/parsing.py) need no engine, model or LLM client.
_HOMES = {"Engine": "ragcore.engine", "IngestRequest": "ragcore.ingest", "IngestResult": "ragcore.ingest",
          "Retrieval": "ragcore.retrieval", "RagSettings": "ragcore.settings"}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'ragcore' has no attribute {name!r}")

"""Lorebot's retrieval and answering engine: plain Python, configured by one RagSettings."""

from __future__ import annotations

from ragcore.engine import Engine, IngestRequest, IngestResult, Retrieval
from ragcore.settings import RagSettings

__all__ = ["Engine", "IngestRequest", "IngestResult", "RagSettings", "Retrieval"]

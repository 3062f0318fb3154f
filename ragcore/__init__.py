"""Lorebot's retrieval and answering engine: plain Python, configured by one RagSettings."""

from __future__ import annotations

from ragcore.engine import Engine
from ragcore.ingest import IngestRequest, IngestResult
from ragcore.retrieval import Retrieval
from ragcore.settings import RagSettings

__all__ = ["Engine", "IngestRequest", "IngestResult", "RagSettings", "Retrieval"]

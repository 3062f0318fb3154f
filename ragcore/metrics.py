"""Prometheus series the engine records; the web process exposes them at /metrics."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

PIPELINE_ERRORS = Counter(
    "rag_pipeline_errors", "Errors by pipeline component.", ["component"]
)
RETRIEVAL_SECONDS = Histogram(
    "rag_retrieval_duration_seconds", "Retrieval latency by mode.", ["mode"], buckets=LATENCY_BUCKETS
)
GENERATION_SECONDS = Histogram(
    "rag_generation_duration_seconds", "Answer generation latency.", ["provider", "model"], buckets=LATENCY_BUCKETS
)
GENERATION_TOKENS = Counter(
    "rag_generation_tokens", "LLM tokens used.", ["provider", "model", "kind"]
)
INGEST_DOCUMENTS = Counter(
    "rag_ingest_documents", "Ingested documents by outcome.", ["outcome"]
)
INGEST_CHUNKS = Counter("rag_ingest_chunks", "Chunks written to the indexes.")

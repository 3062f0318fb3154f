"""Prometheus series the engine records; the web process exposes them at /metrics.

With PROMETHEUS_MULTIPROC_DIR set, prometheus_client writes every value to files in that
folder, so /metrics in any web process sums what every process (web, workers, bots) recorded.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

# component: loader, chunker, embedder, vector_store, bm25, llm, ingest, ingest_job, websocket,
# slack, discord, ... (one label per part that can fail, never a free-form string).
PIPELINE_ERRORS = Counter(
    "rag_pipeline_errors", "Errors by pipeline component.", ["component"]
)
# mode: hybrid, context, bm25, dense.
RETRIEVAL_SECONDS = Histogram(
    "rag_retrieval_duration_seconds", "Retrieval latency by mode.", ["mode"], buckets=LATENCY_BUCKETS
)
GENERATION_SECONDS = Histogram(
    "rag_generation_duration_seconds", "Answer generation latency.", ["provider", "model"], buckets=LATENCY_BUCKETS
)
# kind: prompt, completion.
GENERATION_TOKENS = Counter(
    "rag_generation_tokens", "LLM tokens used.", ["provider", "model", "kind"]
)
# outcome: indexed, unchanged, failed.
INGEST_DOCUMENTS = Counter(
    "rag_ingest_documents", "Ingested documents by outcome.", ["outcome"]
)
INGEST_CHUNKS = Counter("rag_ingest_chunks", "Chunks written to the indexes.")
# stage: parse (read and load a file), chunk, embed (one window of chunks), write (both indexes).
INGEST_STAGE_SECONDS = Histogram(
    "rag_ingest_stage_duration_seconds", "Time spent in each ingest stage.", ["stage"], buckets=LATENCY_BUCKETS
)

# path: overfetch (an unfiltered HNSW query, larger, filtered here), exact (a small filter's vectors, searched
# exhaustively), where (Chroma's own metadata filter, the fallback: correct but slow, see ragcore.vectorstore).
DENSE_FILTERED_SEARCHES = Counter(
    "rag_dense_filtered_searches", "Dense searches under a collection filter, by how they were answered.", ["path"]
)

# The keyword index as each process sees it. index: bm25.
INDEX_REFRESH_SECONDS = Histogram(
    "rag_index_refresh_duration_seconds", "Time to load a newer committed version of an index.", ["index"],
    buckets=LATENCY_BUCKETS,
)
# max: with several processes, the one furthest behind is what a user may meet.
INDEX_LAG_SECONDS = Gauge(
    "rag_index_lag_seconds", "Seconds from an index commit until this process had loaded it (last refresh).",
    ["index"], multiprocess_mode="livemax",
)
INDEX_VERSIONS_BEHIND = Gauge(
    "rag_index_versions_behind", "Committed index versions this process has not loaded yet (last check).",
    ["index"], multiprocess_mode="livemax",
)

"""Retrieval latency at 100k chunks: p50/p95 for bm25, dense and hybrid, query embedding included.

    .venv/bin/python benchmarks/retrieval_latency.py [--n 100000] [--queries 200] [--keep DIR]
                                                     [--backends onnx-int8,torch]

Text: ~120-word runs of SciFact sentences (real vocabulary and term statistics).
Vectors: embedding 100k chunks takes over an hour here (~22 chunks/s), so the script embeds
a real sample (--real, default 2,000 chunks) and makes the rest as noisy mixtures of two
real vectors, normalized: the same dimension and a similar neighbourhood structure for the
HNSW graph. Each query goes through the answers' own path (`Engine.aretrieve` on an event loop: the
query embedded for real in a QueryBatcher, without its cache of recent questions, which would turn
repeats into lookups, while the keyword index is searched), once per encoder backend, the backends
taking turns query by query. The index is built with the first
backend's vectors; the others' query vectors are close enough (cosine ≥ 0.99) for timing.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from common import dir_size_mb, load_queries, make_chunks, peak_rss_mb, percentile

from ragcore import Engine, RagSettings
from ragcore.embeddings import BACKENDS, QueryBatcher, shared_embedder
from ragcore.types import Chunk

DOC_CHUNKS = 100  # chunks per synthetic document


def build(engine: Engine, n: int, real: int) -> dict[str, float]:
    texts = list(make_chunks(n, 120, seed=7))
    started = time.perf_counter()
    sample = engine.embedder.embed(texts[:real])
    embed_seconds = time.perf_counter() - started
    rng = np.random.default_rng(7)
    a, b = rng.integers(0, real, size=(2, n - real))
    weights = rng.uniform(0.5, 0.9, size=(n - real, 1)).astype(np.float32)
    synthetic = weights * sample[a] + (1 - weights) * sample[b] + rng.normal(0, 0.02, (n - real, sample.shape[1])).astype(np.float32)
    vectors = np.vstack([sample, synthetic / np.linalg.norm(synthetic, axis=1, keepdims=True)]).astype(np.float32)

    dense_seconds = sparse_seconds = 0.0
    for start in range(0, n, DOC_CHUNKS):
        doc = f"bench-{start // DOC_CHUNKS}"
        chunks = [Chunk(f"{doc}:{i}", doc, i, t, title=doc, checksum="x") for i, t in enumerate(texts[start : start + DOC_CHUNKS])]
        t0 = time.perf_counter()
        engine.store.upsert(chunks, vectors[start : start + DOC_CHUNKS])
        t1 = time.perf_counter()
        # As ingest writes it: with the chunks' stored fields, which the answers read back from this index.
        engine.bm25.add_many([(doc, "x", [c.chunk_id for c in chunks], [c.index_text for c in chunks])],
                             stored={doc: chunks})
        t2 = time.perf_counter()
        dense_seconds += t1 - t0
        sparse_seconds += t2 - t1
    return {"embed_sample_s": embed_seconds, "dense_build_s": dense_seconds, "bm25_build_s": sparse_seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--real", type=int, default=2_000, help="chunks embedded for real")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--keep", type=Path, help="build (or reuse) the indexes in this folder")
    parser.add_argument("--backends", default="onnx-int8,torch",
                        help=f"comma-separated encoder backends for the queries ({', '.join(BACKENDS)}); the first builds")
    args = parser.parse_args()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]

    folder = args.keep or Path(tempfile.mkdtemp(prefix="lorebot-bench-"))
    engine = Engine(RagSettings(data_dir=folder, chroma_collection="bench", embedding_backend=backends[0]))
    engine.warmup()
    batchers = {}
    for backend in backends:
        embedder = shared_embedder(backend=backend)
        embedder.embed_query("warm up")
        if embedder.backend != backend:
            raise SystemExit(f"{backend} is unavailable: {embedder.fallback_reason}")
        batchers[backend] = QueryBatcher(embedder, cache_size=0)
    rss_before = peak_rss_mb()
    if engine.store.count() >= args.n:
        print(f"reusing the {engine.store.count()} chunks in {folder}")
        build_info: dict[str, float] = {}
    else:
        print(f"building {args.n} chunks in {folder} …")
        build_info = build(engine, args.n, min(args.real, args.n))
    queries = load_queries(args.queries)
    loop = asyncio.new_event_loop()

    def answers_path(q: str, mode: str, backend: str) -> None:
        """What an answer waits for: `Engine.aretrieve`, its query embedded by `backend`'s batcher."""
        engine.retriever.queries = batchers[backend]
        loop.run_until_complete(engine.aretrieve(q, mode=mode))

    for q in queries[:10]:  # warm caches as a running server would have them
        for backend in backends:
            answers_path(q, "hybrid", backend)
    print(f"\n{args.n} chunks, {len(queries)} queries (query embedding included in dense and hybrid)")
    print(f"{'mode':<8} {'encoder':<10} {'p50 ms':>8} {'p95 ms':>8} {'mean ms':>8}")
    for mode in ("bm25", "dense", "hybrid"):
        encoders = ["-"] if mode == "bm25" else backends
        times: dict[str, list[float]] = {b: [] for b in encoders}
        for q in queries:
            for backend in encoders:  # turn by turn, so a slow minute of this VM hits every backend alike
                started = time.perf_counter()
                answers_path(q, mode, backends[0] if backend == "-" else backend)
                times[backend].append((time.perf_counter() - started) * 1000)
        for backend, t in times.items():
            print(f"{mode:<8} {backend:<10} {percentile(t, 50):>8.1f} {percentile(t, 95):>8.1f} {statistics.mean(t):>8.1f}")
    for name, value in build_info.items():
        print(f"{name}: {value:.1f}")
    print(f"index size on disk: chroma {dir_size_mb(engine.settings.chroma_path):.0f} MB, bm25 {dir_size_mb(engine.settings.bm25_path):.0f} MB")
    print(f"peak RSS: {peak_rss_mb():.0f} MB (model and runtime before building: {rss_before:.0f} MB)")
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()

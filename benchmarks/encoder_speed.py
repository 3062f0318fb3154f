"""The encoder alone, per backend: texts/s on chunk-sized texts, single-query latency, agreement with torch.

    .venv/bin/python benchmarks/encoder_speed.py [--texts 256] [--queries 100] [--rounds 3]

Texts are ~120-word runs of SciFact sentences (the size of a 200-token chunk); queries are SciFact
queries, each embedded alone through a `QueryBatcher` without its cache, as a question is in a
web process. Backends take turns in every round (this VM's speed drifts from minute to minute);
the figures are medians over rounds. Cosines are between each ONNX backend's vectors and torch's.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from common import load_queries, make_chunks, percentile

from ragcore.embeddings import BACKENDS, QueryBatcher, shared_embedder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--texts", type=int, default=256)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    texts = list(make_chunks(args.texts, 120, seed=11))
    queries = load_queries(args.queries)
    embedders = {b: shared_embedder(backend=b) for b in BACKENDS}
    for backend, embedder in embedders.items():
        embedder.embed(texts[:4])
        assert embedder.backend == backend, f"{backend} fell back to torch: {embedder.fallback_reason}"
    batchers = {b: QueryBatcher(e, cache_size=0) for b, e in embedders.items()}

    rates: dict[str, list[float]] = {b: [] for b in BACKENDS}
    latencies: dict[str, list[float]] = {b: [] for b in BACKENDS}
    vectors: dict[str, np.ndarray] = {}
    for _ in range(args.rounds):
        for backend, embedder in embedders.items():
            started = time.perf_counter()
            vectors[backend] = embedder.embed(texts)
            rates[backend].append(len(texts) / (time.perf_counter() - started))
        for query in queries:
            for backend, batcher in batchers.items():
                started = time.perf_counter()
                batcher.embed_query(query)
                latencies[backend].append((time.perf_counter() - started) * 1000)
    query_vectors = {b: np.stack([e.embed_query(q) for q in queries]) for b, e in embedders.items()}

    torch_rate = statistics.median(rates["torch"])
    print(f"{len(texts)} chunk-sized texts, {len(queries)} queries, {args.rounds} interleaved rounds\n")
    print(f"{'backend':<10} {'texts/s':>8} {'× torch':>8} {'query p50':>10} {'query p95':>10} "
          f"{'cos texts':>10} {'cos queries':>12}")
    for backend in BACKENDS:
        rate = statistics.median(rates[backend])
        cos_texts = float(np.mean(np.sum(vectors[backend] * vectors["torch"], axis=1)))
        cos_queries = float(np.mean(np.sum(query_vectors[backend] * query_vectors["torch"], axis=1)))
        print(f"{backend:<10} {rate:>8.1f} {rate / torch_rate:>8.2f} {percentile(latencies[backend], 50):>8.1f}ms "
              f"{percentile(latencies[backend], 95):>8.1f}ms {cos_texts:>10.4f} {cos_queries:>12.4f}")
    print("\nper round texts/s: " + "; ".join(f"{b} " + ", ".join(f"{r:.1f}" for r in rates[b]) for b in BACKENDS))


if __name__ == "__main__":
    main()

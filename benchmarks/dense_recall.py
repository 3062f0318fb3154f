"""Recall of the dense index: how much of the exact top-10 Chroma's HNSW search returns, on real embeddings.

    .venv/bin/python benchmarks/dense_recall.py                       # 10k and 100k, the store as configured
    .venv/bin/python benchmarks/dense_recall.py --sizes 10000 --ef 10,50,100,200 --builds 100:16,200:32

Texts: real SciFact text, every distinct title, sentence, and run of two or three consecutive
sentences of the 5,183 abstracts (~135k texts of ~20-60 words), shuffled. Each is embedded for real with the configured
encoder (onnx-int8 by default), once: the vectors are cached in --cache (default
/tmp/lorebot-dense-recall/) and later runs reuse them (embedding 100k texts takes ~10-20 min here).
Queries: SciFact's own queries, embedded for real.

For each size, a Chroma collection is built with the vectors only (`VectorStore`'s HNSW settings, or
each `--builds construction_ef:max_neighbors`), and for each search ef the query's top-k (k = 10, and
k = the serving candidates, 50) is compared with the exact top-10 by cosine (a float32 matrix product
over the same vectors): recall@10 = |HNSW top-10 ∩ exact top-10| / 10, averaged over queries. Also
reported: the HNSW query time and the exact search's, CPU time of this process per query
(process_time, less noisy than wall time on a shared machine).
"""

from __future__ import annotations

import argparse
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import SCIFACT, load_corpus, percentile

from ragcore.embeddings import shared_embedder
from ragcore.vectorstore import HNSW_CONSTRUCTION_EF, HNSW_MAX_NEIGHBORS, HNSW_SEARCH_EF

_SENTENCE = re.compile(r"(?<=[.!?])\s+")
EMBED_STEP = 2_000  # texts embedded between two saves of the cache, so an interrupted run resumes


def real_texts() -> list[str]:
    """Distinct SciFact titles, sentences and consecutive sentence pairs, in a fixed shuffled order."""
    texts: dict[str, None] = {}
    for doc in load_corpus():
        sentences = [s for s in _SENTENCE.split(doc["text"]) if s.strip()]
        texts[doc["title"]] = None
        texts.update(dict.fromkeys(sentences))
        texts.update(dict.fromkeys(f"{a} {b}" for a, b in zip(sentences, sentences[1:])))
        texts.update(dict.fromkeys(f"{a} {b} {c}" for a, b, c in zip(sentences, sentences[1:], sentences[2:])))
    ordered = sorted(texts)
    random.Random(16).shuffle(ordered)
    return ordered


def cached_vectors(texts: list[str], n: int, backend: str, cache: Path) -> np.ndarray:
    """The embeddings of texts[:n], from the cache where they are there, embedding (and saving) the rest."""
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"scifact-texts-{backend}.npy"
    have = np.load(path) if path.exists() else np.zeros((0, 384), dtype=np.float32)
    if len(have) >= n:
        return have[:n]
    embedder = shared_embedder(backend=backend)
    started, done = time.perf_counter(), len(have)
    first = done
    print(f"embedding texts {done}..{n} with {backend} (cached in {path}) …", flush=True)
    parts = [have]
    while done < n:
        step = texts[done : min(n, done + EMBED_STEP)]
        parts.append(embedder.embed(step).astype(np.float32))
        done += len(step)
        have = np.vstack(parts)
        parts = [have]
        np.save(path.with_suffix(".tmp.npy"), have)
        path.with_suffix(".tmp.npy").replace(path)
        rate = (done - first) / max(time.perf_counter() - started, 1e-9)
        print(f"  {done}/{n} texts, {rate:.0f}/s", flush=True)
    return have[:n]


def query_vectors(backend: str, cache: Path, limit: int) -> np.ndarray:
    import json

    path = cache / f"scifact-queries-{backend}-{limit}.npy"
    if path.exists():
        return np.load(path)
    with open(SCIFACT / "queries.jsonl", encoding="utf-8") as f:
        queries = [json.loads(line)["text"] for line in f][:limit]
    vectors = shared_embedder(backend=backend).embed(queries).astype(np.float32)
    np.save(path, vectors)
    return vectors


def exact_top(vectors: np.ndarray, queries: np.ndarray, k: int) -> tuple[list[set[int]], list[float]]:
    """The exact top-k rows by cosine (the vectors are normalized) and the CPU ms of each search."""
    tops, cpu_ms = [], []
    for q in queries:
        t0 = time.process_time()
        scores = vectors @ q
        top = np.argpartition(-scores, k)[:k]
        cpu_ms.append((time.process_time() - t0) * 1000)
        tops.append({int(i) for i in top})
    return tops, cpu_ms


def build(folder: Path, vectors: np.ndarray, construction_ef: int, max_neighbors: int, search_ef: int):  # type: ignore[no-untyped-def]
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    client = chromadb.PersistentClient(path=str(folder), settings=ChromaSettings(anonymized_telemetry=False))
    collection = client.create_collection(
        "recall", embedding_function=None,
        configuration={"hnsw": {"space": "cosine", "ef_construction": construction_ef,
                                "max_neighbors": max_neighbors, "ef_search": search_ef}},
    )
    batch = client.get_max_batch_size()
    for start in range(0, len(vectors), batch):
        part = vectors[start : start + batch]
        collection.add(ids=[str(i) for i in range(start, start + len(part))], embeddings=part)
    return client, collection


def reopen(folder: Path):  # type: ignore[no-untyped-def]
    """A fresh client of the folder: an open HNSW index keeps the search ef it was loaded with."""
    import chromadb
    from chromadb.api.shared_system_client import SharedSystemClient
    from chromadb.config import Settings as ChromaSettings

    SharedSystemClient.clear_system_cache()
    client = chromadb.PersistentClient(path=str(folder), settings=ChromaSettings(anonymized_telemetry=False))
    return client, client.get_collection("recall", embedding_function=None)


def measure(collection, queries: np.ndarray, exact: list[set[int]], k: int) -> tuple[float, list[float], list[float]]:  # type: ignore[no-untyped-def]
    recalls, wall_ms, cpu_ms = [], [], []
    for q, truth in zip(queries, exact):
        w0, c0 = time.perf_counter(), time.process_time()
        got = collection.query(query_embeddings=[q], n_results=k, include=[])
        cpu_ms.append((time.process_time() - c0) * 1000)
        wall_ms.append((time.perf_counter() - w0) * 1000)
        top10 = {int(i) for i in got["ids"][0][:10]}
        recalls.append(len(top10 & truth) / 10)
    return statistics.mean(recalls), wall_ms, cpu_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--ef", default="", help=f"comma-separated search ef values (default: 100 and ours, {HNSW_SEARCH_EF})")
    parser.add_argument("--builds", default="",
                        help="comma-separated construction_ef:max_neighbors pairs "
                             f"(default: chroma's 100:16 and ours, {HNSW_CONSTRUCTION_EF}:{HNSW_MAX_NEIGHBORS})")
    parser.add_argument("--backend", default="onnx-int8")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "lorebot-dense-recall")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    efs = [int(e) for e in args.ef.split(",")] if args.ef else sorted({100, HNSW_SEARCH_EF})
    builds = ([tuple(int(x) for x in b.split(":")) for b in args.builds.split(",")] if args.builds
              else sorted({(100, 16), (HNSW_CONSTRUCTION_EF, HNSW_MAX_NEIGHBORS)}))

    texts = real_texts()
    if max(sizes) > len(texts):
        sys.exit(f"only {len(texts)} real texts; ask for at most that many")
    all_vectors = cached_vectors(texts, max(sizes), args.backend, args.cache)
    queries = query_vectors(args.backend, args.cache, args.queries)
    print(f"{len(texts)} real texts available; {len(queries)} SciFact queries; encoder {args.backend}")
    print(f"{'chunks':>7} {'constr_ef':>9} {'M':>3} {'build s':>8} {'ef':>4} {'k':>3} {'recall@10':>9} "
          f"{'p50 ms':>7} {'p95 ms':>7} {'cpu ms':>7}")
    for n in sizes:
        vectors = all_vectors[:n]
        exact, exact_cpu = exact_top(vectors, queries, 10)
        for construction_ef, max_neighbors in builds:
            folder = Path(tempfile.mkdtemp(prefix="lorebot-recall-"))
            try:
                t0 = time.perf_counter()
                client, collection = build(folder, vectors, construction_ef, max_neighbors, efs[0])
                build_s = time.perf_counter() - t0
                for ef in efs:
                    collection.modify(configuration={"hnsw": {"ef_search": ef}})
                    client, collection = reopen(folder)
                    for k in (10, 50):
                        measure(collection, queries[:10], exact[:10], k)  # warm
                        recall, wall_ms, cpu_ms = measure(collection, queries, exact, k)
                        print(f"{n:>7} {construction_ef:>9} {max_neighbors:>3} {build_s:>8.1f} {ef:>4} {k:>3} "
                              f"{recall:>9.3f} {percentile(wall_ms, 50):>7.2f} {percentile(wall_ms, 95):>7.2f} "
                              f"{statistics.mean(cpu_ms):>7.2f}", flush=True)
            finally:
                del collection, client
                shutil.rmtree(folder, ignore_errors=True)
        print(f"{n:>7} exact float32 top-10: cpu p50 {percentile(exact_cpu, 50):.2f} ms, "
              f"p95 {percentile(exact_cpu, 95):.2f} ms", flush=True)


if __name__ == "__main__":
    main()

"""Hybrid retrieval under a collection filter at 100k chunks: p50/p95 with no filter, one keeping 90 % and one
keeping 10 % of the chunks, in the same run, query by query in turn (target: filtered p95 <= 1.2x unfiltered).

    nice .venv/bin/python benchmarks/filtered_retrieval.py [--n 100000] [--queries 200] [--keep DIR]

Text and vectors as in benchmarks/retrieval_latency.py: ~120-word runs of SciFact sentences; a real
embedded sample (--real) and the rest noisy mixtures of two real vectors. Documents of 100 chunks are
dealt to collections "ten" (10 %), "eighty" (80 %) and "rest" (10 %); the 90 % filter is {ten, eighty}.
Two figures per filter from the same loop: with the query embedding in the timed path (through a
QueryBatcher without its cache, as benchmarks/retrieval_latency.py times hybrid retrieval), and retrieval
alone (both searches, the filter, fusion, the chunk fetch, de-duplication and the abstention statistics),
which is all a filter can slow down. The filters take turns query by query, the order rotating. The 10 %
filter is searched exactly over its own vectors (kept in memory); the 90 % one over-fetches from HNSW.
On a fresh build each filter's dense results are checked against exact search over the allowed vectors
(recall@k), and Chroma's own `where` filter is timed on a few queries for comparison.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from common import load_queries, make_chunks, percentile

from ragcore import Engine, RagSettings
from ragcore.embeddings import QueryBatcher
from ragcore.metrics import DENSE_FILTERED_SEARCHES
from ragcore.types import Chunk

DOC_CHUNKS = 100  # chunks per synthetic document
WRITE_DOCS = 10  # documents per write: 1,000 chunks per Chroma upsert and per BM25 segment
FILTERS: dict[str, frozenset[str] | None] = {
    "none": None,
    "90%": frozenset({"ten", "eighty"}),
    "10%": frozenset({"ten"}),
}


def collection_of(doc: int) -> str:
    return "ten" if doc % 10 == 0 else "rest" if doc % 10 == 1 else "eighty"


def build(engine: Engine, n: int, real: int) -> tuple[np.ndarray, list[str]]:
    texts = list(make_chunks(n, 120, seed=7))
    sample = engine.embedder.embed(texts[:real])
    rng = np.random.default_rng(7)
    a, b = rng.integers(0, real, size=(2, n - real))
    weights = rng.uniform(0.5, 0.9, size=(n - real, 1)).astype(np.float32)
    noise = rng.normal(0, 0.02, (n - real, sample.shape[1])).astype(np.float32)
    synthetic = weights * sample[a] + (1 - weights) * sample[b] + noise
    vectors = np.vstack([sample, synthetic / np.linalg.norm(synthetic, axis=1, keepdims=True)]).astype(np.float32)
    labels: list[str] = []
    step = DOC_CHUNKS * WRITE_DOCS
    for start in range(0, n, step):
        chunks = []
        for doc_start in range(start, min(n, start + step), DOC_CHUNKS):
            d = doc_start // DOC_CHUNKS
            doc = f"bench-{d}"
            chunks += [Chunk(f"{doc}:{i}", doc, i, t, title=doc, checksum="x", collection=collection_of(d))
                       for i, t in enumerate(texts[doc_start : doc_start + DOC_CHUNKS])]
        engine.store.upsert(chunks, vectors[start : start + len(chunks)])
        by_doc: dict[str, list[Chunk]] = {}
        for c in chunks:
            by_doc.setdefault(c.document_id, []).append(c)
        engine.bm25.add_many(((d, "x", [c.chunk_id for c in cs], [c.index_text for c in cs]) for d, cs in by_doc.items()),
                             collections={d: cs[0].collection for d, cs in by_doc.items()})
        labels += [c.collection for c in chunks]
        print(f"  {start + len(chunks)} chunks written", flush=True)
    return vectors, labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--real", type=int, default=1_000, help="chunks embedded for real")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--keep", type=Path, help="build (or reuse) the indexes in this folder")
    args = parser.parse_args()

    folder = args.keep or Path(tempfile.mkdtemp(prefix="lorebot-bench-"))
    engine = Engine(RagSettings(data_dir=folder, chroma_collection="bench-filtered"))
    engine.warmup()
    vectors: np.ndarray | None = None
    labels: list[str] = []
    if engine.store.count() >= args.n:
        print(f"reusing the {engine.store.count()} chunks in {folder} (no recall check: vectors not in memory)")
    else:
        print(f"building {args.n} chunks in {folder} …", flush=True)
        vectors, labels = build(engine, args.n, min(args.real, args.n))
    for name, allowed in FILTERS.items():
        print(f"filter {name}: {engine.bm25.share(allowed):.1%} of {len(engine.bm25)} chunks")

    queries = load_queries(args.queries)
    query_vectors = engine.embedder.embed(queries)
    batcher = QueryBatcher(engine.embedder, cache_size=0)
    for q, v in zip(queries[:10], query_vectors[:10]):  # warm caches as a running server would have them
        for allowed in FILTERS.values():
            engine.retrieve(q, mode="hybrid", vector=v, collections=allowed)

    paths = {p: DENSE_FILTERED_SEARCHES.labels(p)._value.get() for p in ("overfetch", "exact", "where")}
    times: dict[str, list[float]] = {name: [] for name in FILTERS}
    alone: dict[str, list[float]] = {name: [] for name in FILTERS}
    names = list(FILTERS)
    for i, q in enumerate(queries):
        # In turn, so a slow minute of this shared VM hits each alike; the order rotates query by query,
        # since the first search of a query warms the caches for the others (its terms' postings).
        for name in names[i % len(names):] + names[:i % len(names)]:
            allowed = FILTERS[name]
            started = time.perf_counter()
            v = batcher.embed_query(q)
            embedded = time.perf_counter()
            engine.retrieve(q, mode="hybrid", vector=v, collections=allowed)
            done = time.perf_counter()
            times[name].append((done - started) * 1000)
            alone[name].append((done - embedded) * 1000)
    used = {p: DENSE_FILTERED_SEARCHES.labels(p)._value.get() - before for p, before in paths.items()}

    print(f"\nhybrid retrieval, {len(engine.bm25)} chunks, {len(queries)} queries")
    for title, table in (("query embedding included", times), ("retrieval alone", alone)):
        print(f"\n{title}\n{'filter':<8} {'p50 ms':>8} {'p95 ms':>8} {'mean ms':>8} {'p95 / none':>11}")
        base = percentile(table["none"], 95)
        for name, t in table.items():
            p95 = percentile(t, 95)
            print(f"{name:<8} {percentile(t, 50):>8.1f} {p95:>8.1f} {statistics.mean(t):>8.1f} {p95 / base:>10.2f}x")
    print(f"filtered dense searches: {used['exact']:.0f} exact, {used['overfetch']:.0f} by over-fetch, "
          f"{used['where']:.0f} by Chroma's where filter")

    k = engine.settings.candidates
    if vectors is not None:
        chunk_ids = np.asarray([f"bench-{i // DOC_CHUNKS}:{i % DOC_CHUNKS}" for i in range(len(labels))])
        label_array = np.asarray(labels)
        for name, allowed in FILTERS.items():  # "none": HNSW's own recall on these vectors, for reference
            mask = np.ones(len(labels), dtype=bool) if allowed is None else np.isin(label_array, sorted(allowed))
            recalls = []
            for v in query_vectors[:50]:
                sims = vectors[mask] @ v
                exact = set(chunk_ids[mask][np.argsort(-sims)[:k]].tolist())
                got = {cid for cid, _ in engine.retriever._dense(v, k, allowed)}
                recalls.append(len(exact & got) / k)
            print(f"dense recall@{k} against exact search, filter {name}: {statistics.mean(recalls):.3f}")
    where_ms = []
    for v in query_vectors[:5]:
        started = time.perf_counter()
        engine.store.query(v, k, collections=FILTERS["10%"])  # no share given: Chroma's where filter
        where_ms.append((time.perf_counter() - started) * 1000)
    print(f"Chroma's own where filter (10%), dense search alone: median {statistics.median(where_ms):.0f} ms over 5 queries")
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()

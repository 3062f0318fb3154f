"""Build a BM25 index of N SciFact-like chunks and measure build time, size, memory and query latency.

    .venv/bin/python benchmarks/bm25_latency.py --n 100000 --compare

Chunks are ~120-word runs of SciFact sentences drawn at random, so the vocabulary and term
distribution are those of real abstracts. Queries are SciFact claims. Searching runs in a fresh
process, as a web worker would, so its memory figure is what serving costs.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from common import load_queries, make_chunks, peak_rss_mb, percentile  # noqa: E402  (also puts the repo on sys.path)

from ragcore.bm25 import Bm25Index  # noqa: E402
from ragcore.tokenize import tokenize  # noqa: E402


def rss_mb() -> float:
    """The resident set size of this process now."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def dir_size_mb(path: Path, names: set[str] | None = None) -> float:
    total = 0
    for entry in path.iterdir():
        if names is not None and entry.name not in names:
            continue
        files = entry.rglob("*") if entry.is_dir() else [entry]
        total += sum(p.stat().st_size for p in files if p.is_file())
    return total / 2**20


def serve(path: str, queries: list[str], top_k: int, out: multiprocessing.Queue[dict[str, Any]]) -> None:
    """Open the index in this fresh process and time every query."""
    started = time.perf_counter()
    index = Bm25Index(Path(path))
    open_s = time.perf_counter() - started
    cold = []
    for q in queries[:20]:
        t = time.perf_counter()
        index.search(q, top_k)
        cold.append((time.perf_counter() - t) * 1000)
    warm = []
    for q in queries:
        t = time.perf_counter()
        index.search(q, top_k)
        warm.append((time.perf_counter() - t) * 1000)
    out.put({"open_s": open_s, "cold_ms": cold, "warm_ms": warm, "rss_mb": rss_mb(), "peak_mb": peak_rss_mb()})


def compare(ids: list[str], chunks: list[str], index: Bm25Index, queries: list[str], top_k: int) -> dict[str, float]:
    """rank_bm25 over the same tokenized chunks: its build time, query latency, and agreement with the index."""
    import numpy as np
    from rank_bm25 import BM25Okapi

    t = time.perf_counter()
    reference = BM25Okapi([tokenize(c) for c in chunks])
    build_s = time.perf_counter() - t
    times, agree = [], 0
    for q in queries:
        tokens = tokenize(q)
        t = time.perf_counter()
        scores = reference.get_scores(tokens)
        np.argsort(scores)[::-1][:top_k]
        times.append((time.perf_counter() - t) * 1000)
        ours = index.scores_for_tokens(tokens)
        agree += bool(np.allclose([ours[c] for c in ids], scores, rtol=1e-9, atol=1e-12))
    return {"build_s": build_s, "p50_ms": percentile(times, 50), "p95_ms": percentile(times, 95), "agree": agree}


def build(path: Path, chunks: list[str], batch: int, per_doc: int) -> list[float]:
    """Index the chunks, `batch` chunks (of `per_doc`-chunk documents) per add_many; returns each call's seconds."""
    index = Bm25Index(path)
    seconds = []
    for start in range(0, len(chunks), batch):
        documents = []
        for d in range(start, min(start + batch, len(chunks)), per_doc):
            texts = chunks[d : d + per_doc]
            doc_id = f"doc-{d // per_doc}"
            documents.append((doc_id, f"sum-{doc_id}", [f"{doc_id}#{i}" for i in range(len(texts))], texts))
        t = time.perf_counter()
        index.add_many(documents)
        seconds.append(time.perf_counter() - t)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000, help="chunks to index")
    parser.add_argument("--words", type=int, default=120, help="minimum words per chunk")
    parser.add_argument("--batch", type=int, default=1_000, help="chunks per add_many call (one segment)")
    parser.add_argument("--per-doc", type=int, default=10, help="chunks per document")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--compare", action="store_true", help="also time rank_bm25 on 20 queries")
    parser.add_argument("--path", type=Path, help="index directory (default: a temporary one, removed after)")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bm25-bench-"))
    path = args.path or workdir / "bm25"
    if path.exists():
        shutil.rmtree(path)
    chunks = list(make_chunks(args.n, args.words, seed=1))
    queries = load_queries(args.queries)
    words = sum(len(c.split()) for c in chunks) / len(chunks)
    rss_before = rss_mb()

    started = time.perf_counter()
    add_seconds = build(path, chunks, args.batch, args.per_doc)
    build_s = time.perf_counter() - started
    build_peak = peak_rss_mb()

    index = Bm25Index(path)
    manifest = json.loads((path / "manifest.json").read_text())
    live = {s["name"] for s in manifest["segments"]} | {"manifest.json"}

    # Incremental updates on the full index: re-add ten documents unchanged, then delete ten.
    ids = [f"doc-{i // args.per_doc}#{i % args.per_doc}" for i in range(len(chunks))]
    replace_ms, delete_ms = [], []
    for d in range(10):
        part = range(d * args.per_doc, (d + 1) * args.per_doc)
        t = time.perf_counter()
        index.add(f"doc-{d}", "changed", [ids[i] for i in part], [chunks[i] for i in part])
        replace_ms.append((time.perf_counter() - t) * 1000)
    for d in range(10, 20):
        t = time.perf_counter()
        index.delete_document(f"doc-{d}")
        delete_ms.append((time.perf_counter() - t) * 1000)
    deleted = range(10 * args.per_doc, 20 * args.per_doc)
    ids_left = [c for i, c in enumerate(ids) if i not in deleted]
    chunks_left = [c for i, c in enumerate(chunks) if i not in deleted]

    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    worker = ctx.Process(target=serve, args=(str(path), queries, args.top_k, out))
    worker.start()
    served = out.get()
    worker.join()

    rows = [
        ("chunks", f"{len(index):,} (avg {words:.0f} words, {len(manifest['segments'])} segments)"),
        (
            "build",
            (
                f"{build_s:.1f} s ({args.n / build_s:,.0f} chunks/s; add_many of {args.batch}: "
                f"p50 {percentile(add_seconds, 50) * 1000:.0f} ms, max {max(add_seconds):.2f} s)"
            ),
        ),
        ("size on disk", f"{dir_size_mb(path, live):.1f} MB live ({dir_size_mb(path):.1f} MB with files in grace)"),
        ("builder RSS", f"peak {build_peak:.0f} MB ({rss_before:.0f} MB before building: imports and chunk texts)"),
        (f"replace {args.per_doc}-chunk doc", f"p50 {statistics.median(replace_ms):.1f} ms"),
        ("delete doc", f"p50 {statistics.median(delete_ms):.1f} ms"),
        ("open (fresh process)", f"{served['open_s'] * 1000:.0f} ms"),
        ("reader RSS", f"{served['rss_mb']:.0f} MB after the queries (fresh process)"),
        ("query, first 20", f"p50 {percentile(served['cold_ms'], 50):.2f} ms, max {max(served['cold_ms']):.2f} ms"),
        (
            f"query x{len(queries)}",
            (
                f"p50 {percentile(served['warm_ms'], 50):.2f} ms, p95 {percentile(served['warm_ms'], 95):.2f} ms, "
                f"max {max(served['warm_ms']):.2f} ms"
            ),
        ),
    ]
    if args.compare:
        ref = compare(ids_left, chunks_left, index, queries[:20], args.top_k)
        rows += [
            ("rank_bm25 build", f"{ref['build_s']:.1f} s"),
            ("rank_bm25 query x20", f"p50 {ref['p50_ms']:.1f} ms, p95 {ref['p95_ms']:.1f} ms"),
            ("scores agree", f"{ref['agree']}/20 queries (np.allclose over every chunk)"),
        ]
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

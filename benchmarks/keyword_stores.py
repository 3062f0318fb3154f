"""The keyword index in a local folder against the same index in PostgreSQL, in one run.

    .venv/bin/python benchmarks/keyword_stores.py --n 100000 --dsn postgres://postgres@127.0.0.1:5432/lorebot

For each store: write N SciFact-like chunks in ingest-sized batches (10 chunks a document, one
`add_many` per window of documents, as the ingest worker writes) and time it; open the index in a fresh
process, as a web process starting up does, and time that; time SciFact claims as keyword queries there
(p50/p95); then, with that process polling at the default 1 s refresh, commit a document from this
process and time until the other finds it (what another host waits). The PostgreSQL index gets a name
of its own and its rows are removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from common import load_queries, make_chunks, percentile  # noqa: E402  (also puts the repo on sys.path)

from ragcore.bm25 import Bm25Index, FolderStorage, Storage  # noqa: E402
from ragcore.bm25.postgres import TABLES, PostgresStorage  # noqa: E402

CHUNKS_PER_DOC = 10


def storage_for(kind: str, where: str) -> Storage:
    return FolderStorage(Path(where)) if kind == "folder" else PostgresStorage(where.split("#")[0], where.split("#")[1])


def write(index: Bm25Index, chunks: list[str], window: int) -> float:
    """Seconds to write every chunk, `window` chunks per commit."""
    started = time.perf_counter()
    batch = []
    for d in range(0, len(chunks), CHUNKS_PER_DOC):
        texts = chunks[d:d + CHUNKS_PER_DOC]
        doc = f"doc-{d // CHUNKS_PER_DOC}"
        batch.append((doc, f"sum-{doc}", [f"{doc}#{i}" for i in range(len(texts))], texts))
        if len(batch) * CHUNKS_PER_DOC >= window:
            index.add_many(batch)
            batch = []
    if batch:
        index.add_many(batch)
    return time.perf_counter() - started


def serve(kind: str, where: str, queries: list[str], top_k: int, commands: Any, results: Any) -> None:
    """A fresh process: open the index, time the queries, then report when each probe term shows up."""
    started = time.perf_counter()
    index = Bm25Index(storage_for(kind, where), refresh_seconds=1.0)
    open_s = time.perf_counter() - started
    for q in queries[:20]:  # warm the caches, as a warmed-up process would be
        index.search(q, top_k)
    times = []
    for q in queries:
        t = time.perf_counter()
        index.search(q, top_k)
        times.append((time.perf_counter() - t) * 1000)
    results.put({"open_s": open_s, "chunks": len(index), "query_ms": times})
    while True:
        term = commands.get()
        if term is None:
            return
        while not index.search(term, 1):
            time.sleep(0.005)  # a question every 5 ms: the reader notices at its next refresh
        results.put(time.time())


def measure(kind: str, where: str, chunks: list[str], queries: list[str], window: int, probes: int) -> dict[str, Any]:
    writer = Bm25Index(storage_for(kind, where), refresh_seconds=1.0)
    write_s = write(writer, chunks, window)
    ctx = multiprocessing.get_context("spawn")
    commands, results = ctx.Queue(), ctx.Queue()
    reader = ctx.Process(target=serve, args=(kind, where, queries, 10, commands, results))
    reader.start()
    served = results.get(timeout=1800)
    visible = []
    for p in range(probes):
        term = f"zqprobe{uuid.uuid4().hex[:8]}"
        time.sleep(0.3 + (p % 4) * 0.25)  # commits land at different points of the reader's refresh cycle
        commands.put(term)
        time.sleep(0.05)  # the reader is polling for it before the commit
        committed = time.time()
        writer.add(f"probe-{p}", "p", [f"probe-{p}#0"], [f"{term} probe document"])
        visible.append(results.get(timeout=60) - committed)
    commands.put(None)
    reader.join(60)
    q = served["query_ms"]
    return {
        "store": kind,
        "chunks": served["chunks"],
        "write_s": round(write_s, 2),
        "write_chunks_per_s": round(len(chunks) / write_s),
        "open_s": round(served["open_s"], 2),
        "query_p50_ms": round(percentile(q, 50), 3),
        "query_p95_ms": round(percentile(q, 95), 3),
        "visible_median_s": round(statistics.median(visible), 3),
        "visible_max_s": round(max(visible), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000, help="chunks")
    parser.add_argument("--dsn", required=True, help="a PostgreSQL database to write a temporary index into")
    parser.add_argument("--window", type=int, default=1000, help="chunks per commit (the ingest window)")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--probes", type=int, default=10, help="commits timed until another process sees them")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    chunks = list(make_chunks(args.n, 120, seed=1))
    queries = load_queries(args.queries)
    name = f"bench-{uuid.uuid4().hex[:8]}"
    rows = []
    try:
        with tempfile.TemporaryDirectory() as folder:
            rows.append(measure("folder", folder, chunks, queries, args.window, args.probes))
        rows.append(measure("postgresql", f"{args.dsn}#{name}", chunks, queries, args.window, args.probes))
    finally:
        import psycopg

        with psycopg.connect(args.dsn, autocommit=True) as conn:
            for table in TABLES:
                conn.execute(f"DELETE FROM {table} WHERE index_name = %s", (name,))
    folder_row, pg_row = rows
    ratios = {
        "write_throughput_pg_vs_folder": round(pg_row["write_chunks_per_s"] / folder_row["write_chunks_per_s"], 2),
        "query_p50_pg_vs_folder": round(pg_row["query_p50_ms"] / folder_row["query_p50_ms"], 2),
        "query_p95_pg_vs_folder": round(pg_row["query_p95_ms"] / folder_row["query_p95_ms"], 2),
    }
    if args.json:
        print(json.dumps({"n": args.n, "window": args.window, "stores": rows, **ratios}, indent=2))
        return
    print(f"{args.n} chunks, {args.window} per commit, {len(queries)} queries, {args.probes} visibility probes")
    print(f"{'store':<11} {'write s':>8} {'chunks/s':>9} {'open s':>7} {'p50 ms':>7} {'p95 ms':>7} "
          f"{'seen med s':>10} {'seen max s':>10}")
    for r in rows:
        print(f"{r['store']:<11} {r['write_s']:>8} {r['write_chunks_per_s']:>9} {r['open_s']:>7} "
              f"{r['query_p50_ms']:>7} {r['query_p95_ms']:>7} {r['visible_median_s']:>10} {r['visible_max_s']:>10}")
    print(", ".join(f"{k} {v}" for k, v in ratios.items()))


if __name__ == "__main__":
    main()

"""The keyword index in a local folder against the same index in PostgreSQL, in one run.

    .venv/bin/python benchmarks/keyword_stores.py --n 100000 --dsn postgres://postgres@127.0.0.1:5432/lorebot

The text is synthetic: each chunk is a random run of real SciFact sentences (about 120 words), ten
chunks a document; only the keyword index is built (nothing is embedded, no Chroma, no console rows).
The queries are real SciFact claims.

Writes: both stores are written from this process in ingest-sized batches (one `add_many` per window
of documents, as the ingest worker writes), batch by batch in alternation (the order flipping each
batch), so load from other work on the machine falls on both alike. Each `add_many` is timed whole, as
ingest pays it (tokenizing, merging and the store's commit), and its tokenizing separately, so the
store's own share shows too. Then a fresh process per store opens the index, as a web process starting
up does (timed), and the two time the same SciFact claims as keyword queries in alternating blocks
(p50/p95). Last, with both polling at the default 1 s refresh, documents are committed from this
process, alternately to each store, and timed until the other process finds them (what another host
waits). With --startup, a real web process (`daphne console.asgi:application`, an empty data folder
of its own, the --dsn database migrated, the keyword index in PostgreSQL named as its collection) is
started against the PostgreSQL index and timed to its first 200 from /health/ready, as benchmarks/
startup.py times it. The PostgreSQL index gets a name of its own and its rows are removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import load_queries, make_chunks, percentile  # noqa: E402  (also puts the repo on sys.path)

from ragcore.bm25 import Bm25Index, FolderStorage, Storage  # noqa: E402
from ragcore.bm25 import index as index_module  # noqa: E402
from ragcore.bm25.postgres import TABLES, PostgresStorage  # noqa: E402

CHUNKS_PER_DOC = 10
QUERY_BLOCK = 25
STORES = ("folder", "postgresql")


def storage_for(kind: str, where: str) -> Storage:
    return FolderStorage(Path(where)) if kind == "folder" else PostgresStorage(where.split("#")[0], where.split("#")[1])


def batches(chunks: list[str], window: int) -> list[list[tuple[str, str, list[str], list[str]]]]:
    out, batch = [], []
    for d in range(0, len(chunks), CHUNKS_PER_DOC):
        texts = chunks[d:d + CHUNKS_PER_DOC]
        doc = f"doc-{d // CHUNKS_PER_DOC}"
        batch.append((doc, f"sum-{doc}", [f"{doc}#{i}" for i in range(len(texts))], texts))
        if len(batch) * CHUNKS_PER_DOC >= window:
            out.append(batch)
            batch = []
    if batch:
        out.append(batch)
    return out


class TokenizeTimer:
    """Wraps the index's tokenizing step to add up its seconds, per store."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.real: Callable[..., Any] = index_module.segment_from_texts

    def __call__(self, *args: Any) -> Any:
        started = time.perf_counter()
        try:
            return self.real(*args)
        finally:
            self.seconds += time.perf_counter() - started


def write_both(writers: dict[str, Bm25Index], chunks: list[str], window: int) -> dict[str, dict[str, float]]:
    """Write every chunk into each store, batch by batch in alternation; seconds whole and tokenizing."""
    timer = TokenizeTimer()
    index_module.segment_from_texts = timer  # type: ignore[assignment]
    spent = {kind: {"write_s": 0.0, "tokenize_s": 0.0} for kind in writers}
    try:
        for b, batch in enumerate(batches(chunks, window)):
            for kind in (STORES if b % 2 == 0 else STORES[::-1]):
                timer.seconds = 0.0
                started = time.perf_counter()
                writers[kind].add_many(batch)
                spent[kind]["write_s"] += time.perf_counter() - started
                spent[kind]["tokenize_s"] += timer.seconds
    finally:
        index_module.segment_from_texts = timer.real  # type: ignore[assignment]
    return spent


def serve(kind: str, where: str, queries: list[str], top_k: int, commands: Any, results: Any) -> None:
    """A fresh process: open the index, then answer commands: time a block of queries, or wait for a term."""
    started = time.perf_counter()
    index = Bm25Index(storage_for(kind, where), refresh_seconds=1.0)
    open_s = time.perf_counter() - started
    for q in queries[:20]:  # warm the caches, as a warmed-up process would be
        index.search(q, top_k)
    results.put({"open_s": open_s, "chunks": len(index)})
    while True:
        command = commands.get()
        if command is None:
            return
        if command[0] == "queries":
            times = []
            for q in queries[command[1]:command[2]]:
                t = time.perf_counter()
                index.search(q, top_k)
                times.append((time.perf_counter() - t) * 1000)
            results.put(times)
        else:
            while not index.search(command[1], 1):
                time.sleep(0.005)  # a question every 5 ms: the reader notices at its next refresh
            results.put(time.time())


def measure(where: dict[str, str], chunks: list[str], queries: list[str], window: int, probes: int) -> dict[str, Any]:
    writers = {kind: Bm25Index(storage_for(kind, where[kind]), refresh_seconds=1.0) for kind in STORES}
    rows: dict[str, dict[str, Any]] = {kind: {"store": kind} for kind in STORES}
    for kind, spent in write_both(writers, chunks, window).items():
        rows[kind].update(write_s=round(spent["write_s"], 2), tokenize_s=round(spent["tokenize_s"], 2),
                          store_s=round(spent["write_s"] - spent["tokenize_s"], 2),
                          write_chunks_per_s=round(len(chunks) / spent["write_s"]))

    ctx = multiprocessing.get_context("spawn")
    channels = {kind: (ctx.Queue(), ctx.Queue()) for kind in STORES}
    readers = {}
    for kind in STORES:  # one at a time, so neither start-up competes with the other
        commands, results = channels[kind]
        readers[kind] = ctx.Process(target=serve, args=(kind, where[kind], queries, 10, commands, results))
        readers[kind].start()
        rows[kind].update({k: round(v, 2) if k == "open_s" else v for k, v in results.get(timeout=1800).items()})
    times: dict[str, list[float]] = {kind: [] for kind in STORES}
    for block, first in enumerate(range(0, len(queries), QUERY_BLOCK)):
        for kind in (STORES if block % 2 == 0 else STORES[::-1]):
            channels[kind][0].put(("queries", first, first + QUERY_BLOCK))
            times[kind].extend(channels[kind][1].get(timeout=600))
    visible: dict[str, list[float]] = {kind: [] for kind in STORES}
    for p in range(probes):
        for kind in STORES:
            term = f"zqprobe{uuid.uuid4().hex[:8]}"
            time.sleep(0.3 + (p % 4) * 0.25)  # commits land at different points of the reader's refresh cycle
            channels[kind][0].put(("wait", term))
            time.sleep(0.05)  # the reader is polling for it before the commit
            committed = time.time()
            writers[kind].add(f"probe-{p}", "p", [f"probe-{p}#0"], [f"{term} probe document"])
            visible[kind].append(channels[kind][1].get(timeout=60) - committed)
    for kind in STORES:
        channels[kind][0].put(None)
        readers[kind].join(60)
        q = times[kind]
        rows[kind].update(query_p50_ms=round(percentile(q, 50), 3), query_p95_ms=round(percentile(q, 95), 3),
                          visible_median_s=round(statistics.median(visible[kind]), 3),
                          visible_max_s=round(max(visible[kind]), 3))
    return rows


def web_startup(dsn: str, name: str, runs: int) -> list[dict[str, Any]]:
    """Cold starts of daphne whose keyword index is the PostgreSQL one just written."""
    import subprocess

    from startup import measure as start_and_time  # noqa: E402

    from tests.daphne_server import PYTHON, ROOT, Site, base_env  # noqa: E402

    out = []
    with tempfile.TemporaryDirectory(prefix="lorebot-keyword-startup-") as tmp:
        env = base_env(Path(tmp), DATABASE_URL=dsn, RAG_KEYWORD_STORE="postgresql", CHROMA_COLLECTION=name,
                       RAG_ORIGINALS_STORAGE="database")
        subprocess.run([PYTHON, str(ROOT / "manage.py"), "migrate", "--noinput", "-v", "0"], env=env, cwd=ROOT,
                       check=True)
        for _ in range(runs):
            out.append(start_and_time(Site(Path(tmp), env), timeout=600))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000, help="chunks")
    parser.add_argument("--dsn", required=True, help="a PostgreSQL database to write a temporary index into")
    parser.add_argument("--window", type=int, default=1000, help="chunks per commit (the ingest window)")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--probes", type=int, default=10, help="commits timed until another process sees them")
    parser.add_argument("--startup", type=int, default=0, metavar="RUNS",
                        help="also time this many cold starts of a web process to ready on the PostgreSQL index")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    chunks = list(make_chunks(args.n, 120, seed=1))
    queries = load_queries(args.queries)
    name = f"bench-{uuid.uuid4().hex[:8]}"
    try:
        with tempfile.TemporaryDirectory() as folder:
            rows = measure({"folder": folder, "postgresql": f"{args.dsn}#{name}"}, chunks, queries, args.window,
                           args.probes)
        starts = web_startup(args.dsn, name, args.startup) if args.startup else []
    finally:
        import psycopg

        with psycopg.connect(args.dsn, autocommit=True) as conn:
            for table in TABLES:
                conn.execute(f"DELETE FROM {table} WHERE index_name = %s", (name,))
    folder_row, pg_row = rows["folder"], rows["postgresql"]
    ratios = {
        "write_throughput_pg_vs_folder": round(folder_row["write_s"] / pg_row["write_s"], 2),
        "store_share_pg_vs_folder": round(folder_row["store_s"] / pg_row["store_s"], 2),
        "query_p50_pg_vs_folder": round(pg_row["query_p50_ms"] / folder_row["query_p50_ms"], 2),
        "query_p95_pg_vs_folder": round(pg_row["query_p95_ms"] / folder_row["query_p95_ms"], 2),
    }
    synthetic = ("synthetic text: each chunk a random run of real SciFact sentences (~120 words), 10 a document; "
                 "keyword index only (nothing embedded); queries are real SciFact claims")
    if args.json:
        print(json.dumps({"n": args.n, "window": args.window, "corpus": synthetic, "stores": [folder_row, pg_row],
                          "web_startup": starts, **ratios}, indent=2))
        return
    print(f"{args.n} chunks, {args.window} per commit, {len(queries)} queries, {args.probes} visibility probes")
    print(f"corpus: {synthetic}")
    print(f"{'store':<11} {'write s':>8} {'tokenize':>8} {'store s':>8} {'chunks/s':>9} {'open s':>7} {'p50 ms':>7} "
          f"{'p95 ms':>7} {'seen med s':>10} {'seen max s':>10}")
    for r in (folder_row, pg_row):
        print(f"{r['store']:<11} {r['write_s']:>8} {r['tokenize_s']:>8} {r['store_s']:>8} {r['write_chunks_per_s']:>9} "
              f"{r['open_s']:>7} {r['query_p50_ms']:>7} {r['query_p95_ms']:>7} {r['visible_median_s']:>10} "
              f"{r['visible_max_s']:>10}")
    print("write throughput = whole add_many as ingest pays it; store share = add_many minus tokenizing")
    print(", ".join(f"{k} {v}" for k, v in ratios.items()))
    for run in starts:
        print(f"web process on the PostgreSQL index ({pg_row['chunks']} chunks): live {run['live_s']} s, "
              f"ready {run['ready_s']} s, RSS {run['rss_mb']} MB, checks ms {run['checks_ms']}")


if __name__ == "__main__":
    main()

"""Retrieval quality on a BEIR-format folder: nDCG@10 and Recall@100 for bm25, dense and hybrid.

    python -m ragcore.eval ../shared/eval/scifact --split train [--json] [--limit N] [--sweep]

The corpus is indexed once into a cache folder keyed by the corpus, the model and the
chunking settings (re-runs only embed what changed). Chunks are scored as the engine
scores them; a document's score is its best chunk's.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ragcore.engine import Engine
from ragcore.fusion import fuse_convex, fuse_rrf
from ragcore.ingest import ParsedItem
from ragcore.logsetup import quiet_cli_logging
from ragcore.settings import RagSettings
from ragcore.types import ParsedDocument, Section

Ranking = list[tuple[str, float]]


@dataclass(frozen=True)
class BeirSet:
    corpus: dict[str, tuple[str, str]]  # id -> (title, text)
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]


def load_beir(folder: Path, split: str) -> BeirSet:
    """Reads corpus.jsonl, queries.jsonl and qrels/SPLIT.tsv; keeps only judged queries."""
    for name in ("corpus.jsonl", "queries.jsonl", f"qrels/{split}.tsv"):
        if not (folder / name).is_file():
            raise SystemExit(f"{folder}: missing {name} (expected a BEIR folder)")
    corpus: dict[str, tuple[str, str]] = {}
    with open(folder / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                corpus[str(row["_id"])] = (row.get("title") or "", row.get("text") or "")
    qrels: dict[str, dict[str, int]] = {}
    with open(folder / "qrels" / f"{split}.tsv", encoding="utf-8") as f:
        reader = csv.reader(f, delimiter="\t")
        for row in reader:
            if len(row) < 3 or not row[2].strip().lstrip("-").isdigit():
                continue  # the header line
            qrels.setdefault(row[0], {})[row[1]] = int(row[2])
    queries: dict[str, str] = {}
    with open(folder / "queries.jsonl", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                if str(row["_id"]) in qrels:
                    queries[str(row["_id"])] = row["text"]
    return BeirSet(corpus, queries, qrels)


def ndcg_at(ranked: Sequence[str], relevant: dict[str, int], k: int = 10) -> float:
    dcg = sum(relevant.get(doc, 0) / math.log2(i + 2) for i, doc in enumerate(ranked[:k]))
    ideal = sorted((g for g in relevant.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def recall_at(ranked: Sequence[str], relevant: dict[str, int], k: int = 100) -> float:
    wanted = {d for d, g in relevant.items() if g > 0}
    return len(wanted.intersection(ranked[:k])) / len(wanted) if wanted else 0.0


def documents_of(ranking: Ranking, k: int = 100) -> list[str]:
    """Chunk ranking → document ranking, each document at its best chunk's place."""
    seen: dict[str, None] = {}
    for chunk_id, _ in ranking:
        seen.setdefault(chunk_id.rsplit(":", 1)[0], None)
        if len(seen) == k:
            break
    return list(seen)


def _cache_dir(folder: Path, settings: RagSettings, model: str) -> Path:
    key = hashlib.sha256(
        f"{folder.resolve()}|{model}|{settings.chunk_tokens}|{settings.chunk_overlap_tokens}".encode()
    ).hexdigest()[:12]
    return Path(settings.data_dir) / ".cache" / "eval" / f"{folder.name}-{key}"


def index_corpus(engine: Engine, beir: BeirSet, *, progress: bool = True) -> None:
    items = [
        ParsedItem(doc_id, ParsedDocument(title, "text", (Section(text),)), doc_id,
                   hashlib.sha256(f"{title}\n{text}".encode()).hexdigest())
        for doc_id, (title, text) in beir.corpus.items()
    ]
    started = time.perf_counter()

    def on_progress(stage: str, done: int, total: int) -> None:
        if progress and stage == "indexing" and (done % 250 == 0 or done == total):
            print(f"  indexed {done}/{total} documents ({time.perf_counter() - started:.0f} s)", file=sys.stderr)

    results = engine.ingest_parsed(items, on_progress=on_progress)
    failed = [r for r in results if r.status == "failed"]
    if failed:
        print(f"  {len(failed)} documents failed, e.g. {failed[0].error}", file=sys.stderr)


def evaluate(engine: Engine, beir: BeirSet, *, limit: int | None = None, sweep: bool = False, candidates: int = 300) -> dict[str, dict[str, float]]:
    """Metrics per configuration; bm25 and dense rankings are computed once per query."""
    settings = engine.settings
    configs: dict[str, tuple[str, float] | None] = {"bm25": None, "dense": None, "hybrid": None}
    if sweep:
        for alpha in (0.3, 0.4, 0.5, 0.6, 0.7):
            configs[f"convex a={alpha}"] = ("convex", alpha)
        for alpha in (0.5, 0.6):
            configs[f"rrf k=60 a={alpha}"] = ("rrf", alpha)
    totals = {name: [0.0, 0.0] for name in configs}
    qids = list(beir.queries)[:limit] if limit else list(beir.queries)
    for qid in qids:
        query = beir.queries[qid]
        sparse, _ = engine.search(query, mode="bm25", candidates=candidates)
        dense, _ = engine.search(query, mode="dense", candidates=candidates)
        for name, config in configs.items():
            if name == "bm25":
                ranking = sparse
            elif name == "dense":
                ranking = dense
            else:
                fusion, alpha = config if config else (settings.fusion, settings.hybrid_alpha)
                if fusion == "rrf":
                    ranking = fuse_rrf([sparse, dense], k=settings.rrf_k, weights=[1 - alpha, alpha])
                else:
                    ranking = fuse_convex([sparse, dense], [1 - alpha, alpha])
            docs = documents_of(ranking)
            totals[name][0] += ndcg_at(docs, beir.qrels[qid])
            totals[name][1] += recall_at(docs, beir.qrels[qid])
    n = max(1, len(qids))
    return {name: {"ndcg@10": t[0] / n, "recall@100": t[1] / n, "queries": len(qids)} for name, t in totals.items()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ragcore.eval", description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path, help="a BEIR folder: corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv")
    parser.add_argument("--split", default="test")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--limit", type=int, help="evaluate only the first N judged queries")
    parser.add_argument("--sweep", action="store_true", help="also score other fusion methods and weights")
    parser.add_argument("--data-dir", type=Path, help="where the cached eval index lives (default: RAG_DATA_DIR)")
    parser.add_argument("--candidates", type=int, default=300,
                        help="chunks taken from each retriever before fusion (Recall@100 needs ~300)")
    args = parser.parse_args(argv)
    quiet_cli_logging()

    beir = load_beir(args.folder, args.split)
    settings = RagSettings.from_env()
    if args.data_dir:
        settings = settings.with_changes(data_dir=args.data_dir)
    engine = Engine(settings)
    cache = _cache_dir(args.folder, settings, engine.embedder.name)
    engine = Engine(settings.with_changes(data_dir=cache, chroma_url="", chroma_collection="eval"), embedder=engine.embedder)
    print(f"{args.folder.name}: {len(beir.corpus)} documents, {len(beir.queries)} judged {args.split} queries; index in {cache}", file=sys.stderr)
    started = time.perf_counter()
    index_corpus(engine, beir, progress=not args.json)
    indexed = time.perf_counter() - started
    started = time.perf_counter()
    results = evaluate(engine, beir, limit=args.limit, sweep=args.sweep, candidates=args.candidates)
    searched = time.perf_counter() - started
    if args.json:
        print(json.dumps({"dataset": args.folder.name, "split": args.split, "fusion": settings.fusion,
                          "hybrid_alpha": settings.hybrid_alpha, "index_seconds": round(indexed, 1),
                          "search_seconds": round(searched, 1), "results": results}))
        return 0
    print(f"\n{'mode':<18} {'nDCG@10':>8} {'Recall@100':>11}")
    for name, r in results.items():
        print(f"{name:<18} {r['ndcg@10']:>8.4f} {r['recall@100']:>11.4f}")
    print(f"\n({results['bm25']['queries']} queries; hybrid = {settings.fusion}, alpha {settings.hybrid_alpha}; "
          f"indexing {indexed:.0f} s, searching {searched:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

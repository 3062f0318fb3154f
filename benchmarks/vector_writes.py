"""The vector store's write path: building, its size on disk, deleting documents, fetching chunks.

    .venv/bin/python benchmarks/vector_writes.py [--n 20000] [--deletes 50]
    .venv/bin/python benchmarks/vector_writes.py --ragcore-from /tmp/before   # an older ragcore, for before/after

    (git archive COMMIT ragcore | tar -x -C /tmp/before   makes such a folder)

Chunks: ~120-word runs of SciFact sentences, 20 per document, written through the engine's two indexes
(`store.upsert` and `bm25.add`) as an ingest writes them; vectors are random unit vectors (the model's
time is not what is measured here). Reported: the Chroma build's CPU seconds (process_time: this
process does all of Chroma's work, and CPU time is steadier than wall time on a shared machine) and
wall seconds, Chroma's size on disk, one document delete through `Engine.delete_document` (both
indexes) and through the vector store alone, and `get_chunks` of 30 ids (what each retrieval fetches).
"""

from __future__ import annotations

import argparse
import inspect
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DOC_CHUNKS = 20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=20_000, help="chunks")
    parser.add_argument("--deletes", type=int, default=50, help="documents deleted (each way)")
    parser.add_argument("--ragcore-from", type=Path, help="a folder holding another ragcore package to measure")
    args = parser.parse_args()
    if args.ragcore_from:  # imported before `common` puts this checkout first on the path
        sys.path.insert(0, str(args.ragcore_from.resolve()))
        import ragcore.logsetup  # noqa: F401
    from common import dir_size_mb, make_chunks, percentile

    from ragcore import Engine, RagSettings
    from ragcore.types import Chunk

    print(f"ragcore from {Path(inspect.getfile(Engine)).parent}")
    folder = Path(tempfile.mkdtemp(prefix="lorebot-writes-"))
    try:
        engine = Engine(RagSettings(data_dir=folder, chroma_collection="writes", index_refresh_seconds=0.0),
                        embedder=_RandomEmbedder())
        texts = list(make_chunks(args.n, 120, seed=3))
        vectors = np.random.default_rng(3).normal(size=(args.n, 384)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        documents = []
        cpu = wall = 0.0
        for start in range(0, args.n, DOC_CHUNKS):
            doc = f"doc-{start // DOC_CHUNKS}"
            chunks = [Chunk(f"{doc}:{i}", doc, i, t, title=f"Title of {doc}", source=f"/docs/{doc}.md",
                            location="§ Section", checksum="c" * 64) for i, t in enumerate(texts[start : start + DOC_CHUNKS])]
            c0, w0 = time.process_time(), time.perf_counter()
            engine.store.upsert(chunks, vectors[start : start + DOC_CHUNKS])
            cpu += time.process_time() - c0
            wall += time.perf_counter() - w0
            engine.bm25.add(doc, "c" * 64, [c.chunk_id for c in chunks], [c.index_text for c in chunks])
            documents.append(doc)
        size = dir_size_mb(engine.settings.chroma_path)
        print(f"{args.n} chunks in {len(documents)} documents")
        print(f"chroma build: {cpu:.1f} s CPU, {wall:.1f} s wall; on disk {size:.0f} MB")

        rng = np.random.default_rng(5)
        fetch_ms = []
        for _ in range(200):
            ids = [f"doc-{i // DOC_CHUNKS}:{i % DOC_CHUNKS}" for i in rng.choice(len(documents) * DOC_CHUNKS, 30, replace=False)]
            w0 = time.perf_counter()
            engine.store.get_chunks(ids)
            fetch_ms.append((time.perf_counter() - w0) * 1000)
        print(f"get_chunks of 30 ids: p50 {percentile(fetch_ms, 50):.2f} ms, p95 {percentile(fetch_ms, 95):.2f} ms")

        victims = [documents[int(i)] for i in rng.choice(len(documents), 2 * args.deletes, replace=False)]
        both_ms, dense_ms, both_cpu, dense_cpu = [], [], [], []
        for doc in victims[: args.deletes]:
            c0, w0 = time.process_time(), time.perf_counter()
            engine.delete_document(doc)
            both_ms.append((time.perf_counter() - w0) * 1000)
            both_cpu.append((time.process_time() - c0) * 1000)
        takes_count = "chunks" in inspect.signature(engine.store.delete_document).parameters
        for doc in victims[args.deletes :]:
            known = {"chunks": DOC_CHUNKS} if takes_count else {}
            c0, w0 = time.process_time(), time.perf_counter()
            engine.store.delete_document(doc, **known)
            dense_ms.append((time.perf_counter() - w0) * 1000)
            dense_cpu.append((time.process_time() - c0) * 1000)
        for label, values, cpu_ms in (("delete a document, both indexes", both_ms, both_cpu),
                                      ("delete a document, vector store", dense_ms, dense_cpu)):
            print(f"{label}: p50 {percentile(values, 50):.1f} ms, p95 {percentile(values, 95):.1f} ms, "
                  f"CPU mean {statistics.mean(cpu_ms):.1f} ms")
        print(f"chunks left: {engine.store.count()} (expected {args.n - 2 * args.deletes * DOC_CHUNKS})")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class _RandomEmbedder:
    """The engine needs an embedder to open its indexes; nothing here is embedded."""

    name = "random-384"
    dimension = 384
    max_tokens = 254

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(t.split()) for t in texts]

    def embed(self, texts: list[str]) -> np.ndarray:
        return np.zeros((len(texts), self.dimension), dtype=np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        return np.zeros(self.dimension, dtype=np.float32)


if __name__ == "__main__":
    main()

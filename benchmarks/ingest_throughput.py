"""Ingest throughput: end-to-end chunks/s (parse, chunk, embed, write both indexes) vs bare encode.

    .venv/bin/python benchmarks/ingest_throughput.py [--docs 400]

Writes SciFact abstracts as Markdown files, ingests them through `Engine.ingest_files`
(exactly what `manage.py ingest` runs), then encodes the very same chunk texts with the
bare sentence-transformers model at the same batch size. Target: ratio ≥ 0.9.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from common import load_corpus

from ragcore import Engine, RagSettings
from ragcore.types import Chunk


def _chunks_of(engine: Engine, path: Path) -> list[Chunk]:
    """The chunks ingest makes of a file (parse + chunk, nothing written)."""
    from ragcore import loaders
    from ragcore.chunking import split_document

    parsed = loaders.load_file(path, max_bytes=engine.settings.max_file_bytes)
    return split_document(
        parsed, document_id="probe", source=str(path), checksum="", count_tokens=engine.embedder.count_tokens,
        max_tokens=min(engine.settings.chunk_tokens, engine.embedder.max_tokens),
        overlap_tokens=engine.settings.chunk_overlap_tokens,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=400)
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="lorebot-ingest-"))
    files = []
    for doc in load_corpus(args.docs):
        path = folder / "docs" / f"{doc['_id']}.md"
        path.parent.mkdir(exist_ok=True)
        path.write_text(f"# {doc['title']}\n\n{doc['text']}\n", encoding="utf-8")
        files.append(path)
    engine = Engine(RagSettings(data_dir=folder / "data"))
    engine.warmup()
    model = engine.embedder.model  # type: ignore[attr-defined]

    def bare(texts: list[str]) -> float:
        started = time.perf_counter()
        model.encode(texts, batch_size=engine.settings.embedding_batch_size, normalize_embeddings=True, show_progress_bar=False)
        return time.perf_counter() - started

    # The chunk texts exactly as ingest will embed them, from a throwaway dry run.
    texts = [c.index_text for p in files for c in _chunks_of(engine, p)]

    # Bare encode before and after the end-to-end run, averaged: the machine's load may drift.
    before = bare(texts)
    started = time.perf_counter()
    results = engine.ingest_files(files)
    end_to_end = time.perf_counter() - started
    after = bare(texts)
    chunks = sum(r.chunks for r in results)
    failed = [r for r in results if r.status == "failed"]
    bare_rate = len(texts) / ((before + after) / 2)

    print(f"{len(files)} files, {chunks} chunks ({len(texts)} in the bare run), {len(failed)} failed")
    print(f"end to end : {chunks / end_to_end:6.1f} chunks/s ({end_to_end:.1f} s)")
    print(f"bare encode: {bare_rate:6.1f} chunks/s ({before:.1f} s before, {after:.1f} s after)")
    print(f"ratio      : {(chunks / end_to_end) / bare_rate:.2f} (target ≥ 0.90)")
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()

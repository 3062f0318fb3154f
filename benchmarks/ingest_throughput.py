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

    started = time.perf_counter()
    results = engine.ingest_files(files)
    end_to_end = time.perf_counter() - started
    chunks = sum(r.chunks for r in results)
    failed = [r for r in results if r.status == "failed"]

    ids = engine.store._collection.get(include=[])["ids"]
    texts = [c.index_text for c in engine.store.get_chunks(ids).values()]
    model = engine.embedder.model  # type: ignore[attr-defined]
    started = time.perf_counter()
    model.encode(texts, batch_size=engine.settings.embedding_batch_size, normalize_embeddings=True, show_progress_bar=False)
    bare = time.perf_counter() - started

    print(f"{len(files)} files, {chunks} chunks, {len(failed)} failed")
    print(f"end to end : {chunks / end_to_end:6.1f} chunks/s ({end_to_end:.1f} s)")
    print(f"bare encode: {len(texts) / bare:6.1f} chunks/s ({bare:.1f} s)")
    print(f"ratio      : {(chunks / end_to_end) / (len(texts) / bare):.2f} (target ≥ 0.90)")
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()

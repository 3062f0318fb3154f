"""Ingest throughput: end-to-end chunks/s (parse, chunk, embed, write both indexes) vs bare encode.

    .venv/bin/python benchmarks/ingest_throughput.py [--docs 300] [--backend onnx-int8|onnx|torch]

Writes SciFact abstracts as Markdown files, ingests them through `Engine.ingest_files`
(exactly what `manage.py ingest` runs) on the chosen encoder backend, then encodes the very
same chunk texts with the bare sentence-transformers (torch) model at the same batch size.
Target: ratio ≥ 2.0 on the default onnx-int8 backend (≥ 0.9 on torch, where only Lorebot's own
overhead separates the two).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from common import load_corpus

from ragcore import Engine, RagSettings
from ragcore.embeddings import BACKENDS, shared_torch_embedder
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
    parser.add_argument("--docs", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backend", choices=BACKENDS, default="onnx-int8", help="the encoder Lorebot ingests with")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="lorebot-ingest-"))
    files = []
    for doc in load_corpus(args.docs):
        path = folder / "docs" / f"{doc['_id']}.md"
        path.parent.mkdir(exist_ok=True)
        path.write_text(f"# {doc['title']}\n\n{doc['text']}\n", encoding="utf-8")
        files.append(path)
    settings = RagSettings(data_dir=folder / "warmup", embedding_backend=args.backend)
    engine = Engine(settings)
    engine.warmup()
    if getattr(engine.embedder, "backend", args.backend) != args.backend:
        raise SystemExit(f"{args.backend} is unavailable: {engine.embedder.fallback_reason}")  # type: ignore[attr-defined]
    model = shared_torch_embedder().model  # the bare sentence-transformers model: the yardstick

    def bare(texts: list[str]) -> float:
        started = time.perf_counter()
        model.encode(texts, batch_size=engine.settings.embedding_batch_size, normalize_embeddings=True, show_progress_bar=False)
        return time.perf_counter() - started

    # The chunk texts exactly as ingest will embed them, from a throwaway dry run.
    texts = [c.index_text for p in files for c in _chunks_of(engine, p)]

    # Bare and end-to-end runs alternate, and each end-to-end run is compared with the bare
    # runs either side of it: this VM's speed drifts by 20% from minute to minute.
    bares = [bare(texts)]
    ratios = []
    for round_ in range(args.rounds):
        engine = Engine(settings.with_changes(data_dir=folder / f"data-{round_}"), embedder=engine.embedder)
        started = time.perf_counter()
        results = engine.ingest_files(files)
        end_to_end = time.perf_counter() - started
        bares.append(bare(texts))
        chunks = sum(r.chunks for r in results)
        failed = sum(r.status == "failed" for r in results)
        bare_rate = len(texts) / ((bares[-2] + bares[-1]) / 2)
        ratios.append((chunks / end_to_end) / bare_rate)
        print(f"round {round_ + 1}: {len(files)} files, {chunks} chunks, {failed} failed; "
              f"end to end ({args.backend}) {chunks / end_to_end:.1f} chunks/s, bare torch encode {bare_rate:.1f} chunks/s, "
              f"ratio {ratios[-1]:.2f}")
    target = "0.90" if args.backend == "torch" else "2.0"
    print(f"{args.backend}: median ratio {statistics.median(ratios):.2f} (target ≥ {target})")
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()

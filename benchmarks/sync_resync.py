"""Re-syncing a folder source: nothing changed (target ≤ 10 s, zero embeddings), then 1 % changed.

    .venv/bin/python benchmarks/sync_resync.py [--docs 1000] [--changed 0.01]

Builds a folder of SciFact abstracts (one Markdown file each) and a folder source on a throwaway SQLite
database and data folder, with the real offline model, and runs the same sync as the worker
(console.syncing.runs.run_sync): a first sync that indexes everything, a re-sync with nothing changed,
then a re-sync after editing `--changed` of the files. Prints each sync's duration, counts and the
chunks embedded (counted at the model, so nothing can hide an embedding), and the seconds spent embedding.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common import ROOT, load_corpus


class CountingEmbedder:
    """The real embedder, counting the texts it embeds and the seconds it spends."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.texts = 0
        self.seconds = 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def embed(self, texts: Sequence[str]) -> Any:
        started = time.perf_counter()
        try:
            return self.inner.embed(texts)
        finally:
            self.texts += len(texts)
            self.seconds += time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--changed", type=float, default=0.01, help="share of the files edited before the last sync")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="lorebot-sync-"))
    os.environ.update(RAG_DATA_DIR=str(work / "data"), DJANGO_SETTINGS_MODULE="console.settings", LOG_LEVEL="ERROR",
                      HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
                      WARMUP_ON_START="False")
    os.environ.pop("DATABASE_URL", None)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    from console.engine import rag_settings, set_engine
    from console.models import Source, SyncRun
    from console.syncing import service
    from console.syncing.runs import run_sync
    from ragcore import Engine
    from ragcore.embeddings import shared_embedder

    try:
        call_command("migrate", "--noinput", verbosity=0)
        folder = work / "abstracts"
        folder.mkdir()
        docs = load_corpus(args.docs)
        for doc in docs:
            (folder / f"{doc['_id']}.md").write_text(f"# {doc['title']}\n\n{doc['text']}\n")
        embedder = CountingEmbedder(shared_embedder())
        embedder.embed_query("load")
        set_engine(Engine(rag_settings(), embedder=embedder))
        source = service.save_source(Source(name="abstracts", kind="folder", config={"path": str(folder)}))

        def sync(label: str) -> None:
            texts, seconds = embedder.texts, embedder.seconds
            run = service.request_sync(source, enqueue=False)
            started = time.perf_counter()
            run_sync(run.pk)
            took = time.perf_counter() - started
            run = SyncRun.objects.get(pk=run.pk)
            print(f"{label:<28} {took:7.2f} s  {run.summary()}  embedded chunks: {embedder.texts - texts} "
                  f"(embedding {embedder.seconds - seconds:.2f} s)", flush=True)

        print(f"folder of {len(docs)} documents, real all-MiniLM-L6-v2 ({embedder.name})")
        sync("first sync (everything)")
        sync("re-sync, nothing changed")
        edited = max(1, round(len(docs) * args.changed))
        for doc in docs[:edited]:
            path = folder / f"{doc['_id']}.md"
            path.write_text(path.read_text() + "\nThis abstract was revised.\n")
        sync(f"re-sync, {edited} changed ({args.changed:.0%})")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

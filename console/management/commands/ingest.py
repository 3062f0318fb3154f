"""`manage.py ingest PATH ...`: index files and folders, with a progress bar and per-file results."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from console.engine import get_engine
from ragcore.ingest import IngestResult


def expand(paths: list[str]) -> list[Path]:
    """Files as given, folders walked recursively (hidden files and folders skipped), sorted."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            out.extend(
                sorted(
                    p for p in path.rglob("*")
                    if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
                )
            )
        else:
            out.append(path)  # a missing path is reported by the engine, with the others
    return out


class Command(BaseCommand):
    help = "Ingest files or folders into both indexes; unchanged files are skipped."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("paths", nargs="+", metavar="PATH")
        parser.add_argument("--force", action="store_true", help="re-embed files even when unchanged")
        parser.add_argument(
            "--reindex", action="store_true",
            help="drop both indexes first and rebuild them (after changing the embedding model)",
        )

    def handle(self, *args: Any, **options: Any) -> str:
        engine = get_engine()
        files = expand(options["paths"])
        if options["reindex"]:
            self.stderr.write("Dropping both indexes for a rebuild…")
            engine.reset_indexes()
        counts = {"indexed": 0, "unchanged": 0, "failed": 0}
        chunks = 0
        bar = tqdm(total=len(files), unit="file", file=sys.stderr, disable=None, desc="ingest")

        def on_result(result: IngestResult) -> None:
            nonlocal chunks
            counts[result.status] += 1
            chunks += result.chunks
            bar.update(1)
            if result.status == "indexed":
                line = f"indexed    {result.source}: {result.chunks} chunks written"
            elif result.status == "unchanged":
                line = f"unchanged  {result.source}: skipped, already indexed"
            else:
                line = self.style.ERROR(f"failed     {result.error}")
            tqdm.write(line, file=self.stdout._out)  # type: ignore[arg-type]  # the stream OutputWrapper wraps

        engine.ingest_files(files, force=options["force"] or options["reindex"], on_result=on_result)
        bar.close()
        summary = (
            f"{counts['indexed']} indexed ({chunks} chunks), "
            f"{counts['unchanged']} unchanged, {counts['failed']} failed"
        )
        if counts["failed"]:
            raise CommandError(summary)
        return summary

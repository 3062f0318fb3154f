"""`manage.py restore ARCHIVE`: bring back what `manage.py backup` wrote, checksums verified first."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from console.engine import set_engine
from console.ops.backup import BackupError, restore


class Command(BaseCommand):
    help = ("Restore an archive written by `manage.py backup` into the configured database, vector store, BM25 "
            "folder and data/raw/. Stop the web, worker and bot processes first.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("archive", type=Path)
        parser.add_argument("--force", action="store_true", help="replace a database or data folder that holds data")

    def handle(self, *args: Any, **options: Any) -> str:
        try:
            manifest = restore(options["archive"], force=options["force"])
        except BackupError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"restored the backup of {manifest['created_at']}: {manifest['database']['vendor']} database, "
                          f"{manifest['vectors']['count']} vectors, {manifest['bm25']['documents']} BM25 documents, "
                          f"{manifest['raw']['files']} originals")
        # A document written half-way while the backup ran shows up here; `reconcile` re-queues it.
        set_engine(None)  # the next engine opens the restored indexes
        report = io.StringIO()
        call_command("reconcile", "--dry-run", stdout=report)
        self.stdout.write(report.getvalue().rstrip())
        return "restore finished; if documents are broken above, run `manage.py reconcile` with a worker running"

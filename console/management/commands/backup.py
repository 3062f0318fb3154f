"""`manage.py backup DEST`: one consistent archive of the database, both indexes and the originals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from console.ops.backup import BackupError, backup


class Command(BaseCommand):
    help = ("Write one archive (tar.gz with a manifest of checksums) of the database, the vector store, the BM25 "
            "index and data/raw/, while the app runs. DEST is a file name or an existing folder.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("dest", type=Path, help="the archive to write, or a folder to write a dated one in")

    def handle(self, *args: Any, **options: Any) -> str:
        try:
            summary = backup(options["dest"])
        except BackupError as exc:
            raise CommandError(str(exc)) from exc
        return f"backup written: {summary.describe()}"

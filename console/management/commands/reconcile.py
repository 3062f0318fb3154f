"""`manage.py reconcile`: find indexed documents whose chunks are missing or stale and re-queue them."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from console.engine import get_engine
from console.ingest import jobs, storage
from console.models import Document
from ragcore.indexes import IndexedDocument


def find_broken(document: Document, status: IndexedDocument) -> str:
    """Why the indexes disagree with the row, or "" when both hold exactly this document."""
    problems = []
    if status.dense_checksum != document.checksum:
        problems.append("vector index: " + ("missing" if not status.dense_checksum else "another version"))
    elif status.dense_chunks != status.dense_expected:
        problems.append(f"vector index: {status.dense_chunks} of {status.dense_expected} chunks")
    if status.sparse_checksum != document.checksum:
        problems.append("BM25 index: " + ("missing" if not status.sparse_checksum else "another version"))
    elif status.sparse_chunks != status.dense_expected:
        problems.append(f"BM25 index: {status.sparse_chunks} chunks, vector index expects {status.dense_expected}")
    if not problems and document.chunk_count and status.sparse_chunks != document.chunk_count:
        problems.append(f"{status.sparse_chunks} chunks indexed, the database says {document.chunk_count}")
    return "; ".join(problems)


class Command(BaseCommand):
    help = "Compare every indexed document with both indexes (checksum and chunk counts) and re-queue the broken ones."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="report only; queue nothing")

    def handle(self, *args: Any, **options: Any) -> str:
        engine = get_engine()
        documents = list(Document.objects.filter(status=Document.Status.INDEXED).order_by("pk"))
        broken: list[Document] = []
        missing_raw: list[Document] = []
        for doc in documents:
            problem = find_broken(doc, engine.document_status(doc.engine_id))
            if not problem:
                continue
            if not doc.has_original():
                missing_raw.append(doc)
                self.stdout.write(self.style.ERROR(
                    f"broken     {doc.original_filename} (#{doc.pk}): {problem}; its original is not in the "
                    f"{storage.location()}, cannot re-ingest"
                ))
                continue
            broken.append(doc)
            self.stdout.write(f"broken     {doc.original_filename} (#{doc.pk}): {problem}")
        summary = f"{len(documents)} indexed documents checked, {len(broken) + len(missing_raw)} broken"
        if missing_raw:
            summary += f" ({len(missing_raw)} with a missing original)"
        if broken and not options["dry_run"]:
            job = jobs.requeue_documents(broken, None, "reconcile found missing chunks")
            summary += f"; job {job.pk} re-queues {len(broken)}"
        elif broken:
            summary += "; dry run, nothing queued"
        return summary

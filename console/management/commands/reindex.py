"""`manage.py reindex`: drop both indexes and rebuild them from the originals in data/raw/."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from console.engine import get_engine
from console.ingest import jobs, worker
from console.models import Document, IngestJob, IngestJobFile
from console.tasks import enqueue_job
from ragcore.indexes import IndexesUnavailable

_CURRENT = (Document.Status.INDEXED, Document.Status.FAILED, Document.Status.QUEUED, Document.Status.INDEXING)


class Command(BaseCommand):
    help = "Drop both indexes and re-queue every current document from data/raw/ (--now: rebuild here and wait)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--now", action="store_true", help="index in this process instead of the worker")

    def handle(self, *args: Any, **options: Any) -> str:
        documents = list(Document.objects.filter(status__in=_CURRENT).order_by("pk"))
        present = [d for d in documents if d.raw_path.exists()]
        self.stderr.write("Dropping both indexes…")
        try:
            # Both or neither: an index that cannot be reached stops it before anything is dropped, and
            # one that cannot be opened (garbage manifest, missing segment, damaged Chroma) is set aside.
            get_engine().reset_indexes()
        except IndexesUnavailable as exc:
            raise CommandError(f"{exc}. Bring it back, then run reindex again.") from exc
        for doc in documents:
            if doc not in present:
                self.stdout.write(self.style.ERROR(
                    f"missing    {doc.original_filename} (#{doc.pk}): original {doc.raw_path} not found; left out"
                ))
                # Its chunks were dropped: the row must not claim it is searchable.
                doc.mark_failed(f"original missing: {doc.raw_path}")
        if not present:
            return f"indexes dropped; nothing to re-index ({len(documents) - len(present)} originals missing)"
        job = jobs.requeue_documents(present, None, "reindex", enqueue=not options["now"])
        missing = len(documents) - len(present)
        if not options["now"]:
            return f"indexes dropped; job {job.pk} re-queues {len(present)} documents ({missing} originals missing)"
        worker.process_job(job.pk, requeue=enqueue_job)
        job.refresh_from_db()
        for f in job.files.all():
            line = f"{f.state:<10} {f.filename}: " + (f"{f.chunks} chunks" if not f.error_message else f.error_message)
            self.stdout.write(line)
        failed = job.files.filter(state=IngestJobFile.State.FAILED).count()
        summary = (f"job {job.pk} {job.get_state_display()}: {len(present) - failed} re-indexed, "
                   f"{failed} failed, {missing} originals missing")
        if job.state != IngestJob.State.SUCCEEDED:
            raise CommandError(summary)
        return summary

"""`manage.py reindex`: drop both indexes and rebuild them from the uploaded originals.

The indexes may be shared by every host (a Chroma server, the keyword index in PostgreSQL): dropping
them from a host that cannot read the originals would empty what every other host serves. So it refuses,
and says why, when any current document's original is not visible here or the indexes hold documents
this database has no original for; `--drop-missing` accepts losing exactly those.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from console.engine import get_engine
from console.ingest import jobs, storage, worker
from console.models import Document, IngestJob, IngestJobFile
from console.tasks import enqueue_job
from ragcore.bm25 import DAMAGED_INDEX_ERRORS
from ragcore.errors import KeywordIndexUnavailable
from ragcore.indexes import IndexesUnavailable, keyword_storage

_CURRENT = (Document.Status.INDEXED, Document.Status.FAILED, Document.Status.QUEUED, Document.Status.INDEXING)
SHOWN = 5  # names listed in a refusal


class Command(BaseCommand):
    help = ("Drop both indexes and re-queue every current document from its original (--now: rebuild here "
            "and wait). Refuses when originals are not visible from this host, unless --drop-missing.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--now", action="store_true", help="index in this process instead of the worker")
        parser.add_argument("--drop-missing", action="store_true",
                            help="go on although some documents cannot be rebuilt here; they are left out")

    def handle(self, *args: Any, **options: Any) -> str:
        documents = list(Document.objects.filter(status__in=_CURRENT).order_by("pk"))
        present = [d for d in documents if d.has_original()]
        missing = [d for d in documents if d not in present]
        engine = get_engine()
        known = {d.engine_id for d in present}
        try:
            orphans = sorted(set(engine.bm25.documents()) - known)
        except KeywordIndexUnavailable as exc:  # PostgreSQL down: dropping Chroma alone would empty every host
            raise CommandError(f"{exc}; nothing was dropped. Bring it back, then run reindex again.") from exc
        except DAMAGED_INDEX_ERRORS as exc:
            # Set aside below (kept, renamed) and rebuilt from the originals; what it held cannot be listed.
            self.stderr.write(self.style.WARNING(
                f"the BM25 index at {keyword_storage(engine.settings).location} cannot be opened "
                f"({type(exc).__name__}: {exc}); it is set aside and rebuilt, so documents it alone held "
                "(e.g. from `manage.py ingest`) are not checked and not rebuilt"
            ))
            orphans = []
        if (missing or orphans) and not options["drop_missing"]:
            raise CommandError(self._refusal(missing, orphans))
        self.stderr.write("Dropping both indexes…")
        try:
            # Both or neither: an index that cannot be reached stops it before anything is dropped, and
            # one that cannot be opened (garbage manifest, missing segment, damaged Chroma) is set aside.
            engine.reset_indexes()
        except IndexesUnavailable as exc:
            raise CommandError(f"{exc}. Bring it back, then run reindex again.") from exc
        for doc in missing:
            self.stdout.write(self.style.ERROR(
                f"missing    {doc.original_filename} (#{doc.pk}): original not in the {storage.location()}; left out"
            ))
            # Its chunks were dropped: the row must not claim it is searchable.
            doc.mark_failed(f"original missing from the {storage.location()}")
        if not present:
            return f"indexes dropped; nothing to re-index ({len(missing)} originals missing)"
        job = jobs.requeue_documents(present, None, "reindex", enqueue=not options["now"])
        if not options["now"]:
            return f"indexes dropped; job {job.pk} re-queues {len(present)} documents ({len(missing)} originals missing)"
        worker.process_job(job.pk, requeue=enqueue_job)
        job.refresh_from_db()
        for f in job.files.all():
            line = f"{f.state:<10} {f.filename}: " + (f"{f.chunks} chunks" if not f.error_message else f.error_message)
            self.stdout.write(line)
        failed = job.files.filter(state=IngestJobFile.State.FAILED).count()
        summary = (f"job {job.pk} {job.get_state_display()}: {len(present) - failed} re-indexed, "
                   f"{failed} failed, {len(missing)} originals missing")
        if job.state != IngestJob.State.SUCCEEDED:
            raise CommandError(summary)
        return summary

    def _refusal(self, missing: list[Document], orphans: list[str]) -> str:
        reasons = []
        if missing:
            names = ", ".join(f"{d.original_filename} (#{d.pk})" for d in missing[:SHOWN])
            more = f" and {len(missing) - SHOWN} more" if len(missing) > SHOWN else ""
            reasons.append(f"{len(missing)} documents have no original in the {storage.location()}: {names}{more}")
        if orphans:
            more = f" and {len(orphans) - SHOWN} more" if len(orphans) > SHOWN else ""
            reasons.append(f"the indexes hold {len(orphans)} documents with no original in this database "
                           f"(e.g. from `manage.py ingest`): {', '.join(orphans[:SHOWN])}{more}")
        return ("refusing to drop the indexes: they would be rebuilt without what this host cannot see, and "
                "every host sharing them would lose it. " + "; ".join(reasons) + ". Run reindex where the "
                "originals are (or set RAG_ORIGINALS_STORAGE to the storage that holds them), or pass "
                "--drop-missing to drop exactly those.")

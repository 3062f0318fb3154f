"""`manage.py reconcile`: repair what the database and the indexes disagree on, and re-queue what needs it.

Three passes: an index that cannot be opened (a garbage BM25 manifest, a missing segment, a damaged
Chroma directory) is set aside and rebuilt empty; every document the database calls indexed is
compared with both indexes (checksum and chunk counts); and a document left `queued` or `indexing`
past INGEST_STALE_SECONDS with no live job (its worker died, the disk filled) is picked up again.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Q
from django.utils import timezone

from console.engine import get_engine
from console.ingest import jobs, storage
from console.models import Document, IngestJob, IngestJobFile
from ragcore.indexes import IndexedDocument, IndexesUnavailable

_LABELS = {"vector_store": "vector index", "bm25_index": "BM25 index"}


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


def stuck_documents() -> list[Document]:
    """Documents `queued` or `indexing` for longer than the stale window that no live job is working on."""
    cutoff = timezone.now() - timedelta(seconds=settings.INGEST_STALE_SECONDS)
    live_jobs = Q(job__state=IngestJob.State.QUEUED) | Q(job__state=IngestJob.State.RUNNING, job__heartbeat_at__gte=cutoff)
    live_files = IngestJobFile.objects.filter(live_jobs, state__in=[IngestJobFile.State.QUEUED, IngestJobFile.State.RUNNING])
    return list(Document.objects.filter(status__in=[Document.Status.QUEUED, Document.Status.INDEXING], updated_at__lt=cutoff)
                .exclude(pk__in=live_files.values("document_id")).order_by("pk"))


class Command(BaseCommand):
    help = ("Rebuild an index that cannot be opened, compare every indexed document with both indexes, pick up "
            "documents stuck in queued/indexing, and re-queue what is broken.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="report only; change nothing, queue nothing")

    def handle(self, *args: Any, **options: Any) -> str:
        dry_run = options["dry_run"]
        engine = get_engine()
        states = engine.index_states()
        unusable = {name: s for name, s in states.items() if s.kind != "ok"}
        for state in unusable.values():
            if state.kind == "mismatch":
                raise CommandError(state.detail)  # another model built it: `reindex`, not a repair
        documents = list(Document.objects.filter(status=Document.Status.INDEXED).order_by("pk"))
        summary_head: list[str] = []
        if unusable and dry_run:
            for name, state in unusable.items():
                verb = "cannot be reached" if state.kind == "unavailable" else "cannot be opened"
                self.stdout.write(self.style.ERROR(f"{_LABELS[name]} {verb}: {state.detail}"))
            summary_head.append(f"{', '.join(_LABELS[n] for n in unusable)} unusable: would rebuild and re-queue all")
        elif unusable:
            try:
                for line in engine.repair_indexes():
                    self.stdout.write(self.style.WARNING(f"repaired   {line}"))
                summary_head.append(" and ".join(_LABELS[name] for name in unusable) + " rebuilt")
            except IndexesUnavailable as exc:
                raise CommandError(f"{exc}. Bring it back, then run reconcile again.") from exc

        broken: list[Document] = []
        missing_raw: list[Document] = []
        for doc in documents:
            problem = ("not checked: an index is unusable" if unusable and dry_run
                       else find_broken(doc, engine.document_status(doc.engine_id)))
            if problem:
                self._sort(doc, problem, broken, missing_raw)
        stuck = stuck_documents()
        for doc in stuck:
            self._sort(doc, f"{doc.status} since {doc.updated_at:%Y-%m-%d %H:%M:%S} with no live job", broken, missing_raw)

        summary = "; ".join([*summary_head, f"{len(documents)} indexed documents checked, "
                                            f"{len(broken) + len(missing_raw) - len(stuck)} broken, {len(stuck)} stuck"])
        if missing_raw:
            summary += f" ({len(missing_raw)} with a missing original)"
            if not dry_run:
                for doc in missing_raw:
                    if doc.status != Document.Status.FAILED:
                        doc.mark_failed(f"original missing from the {storage.location()}")  # it must not claim to be searchable
        if broken and not dry_run:
            job = jobs.requeue_documents(broken, None, "reconcile found missing chunks")
            summary += f"; job {job.pk} re-queues {len(broken)}"
        elif broken:
            summary += "; dry run, nothing queued"
        return summary

    def _sort(self, doc: Document, problem: str, broken: list[Document], missing_raw: list[Document]) -> None:
        if not doc.has_original():
            missing_raw.append(doc)
            self.stdout.write(self.style.ERROR(
                f"broken     {doc.original_filename} (#{doc.pk}): {problem}; its original is not in the "
                f"{storage.location()}, cannot re-ingest"
            ))
            return
        broken.append(doc)
        self.stdout.write(f"broken     {doc.original_filename} (#{doc.pk}): {problem}")

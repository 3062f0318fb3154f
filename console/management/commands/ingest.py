"""`manage.py ingest PATH ...`: files and folders become console documents, indexed here or by the worker.

The same path as a console upload (console.ingest.uploads): each file is checked, stored by checksum
and registered as a Document with versions; one job indexes them (run here, with a progress bar, or
queued for `db_worker` with --queue), and each shows up under Documents with its job and a Delete.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.urls import reverse
from tqdm import tqdm

from console.access import moves
from console.ingest import guide, jobs, local_files, uploads, worker
from console.management.output import logs_for_command
from console.models import Collection, Document, IngestJob, IngestJobFile
from console.tasks import enqueue_job
from ragcore import metrics

POLL_SECONDS = 0.5  # how often the progress bar reads the job's files


class Command(BaseCommand):
    help = "Ingest files or folders as console documents (folders recursively; non-documents and hidden files skipped)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("paths", nargs="+", metavar="PATH")
        parser.add_argument("--queue", action="store_true", help="hand the job to the worker (db_worker) instead of waiting")
        parser.add_argument("--force", action="store_true", help="re-embed files even when unchanged")
        parser.add_argument(
            "--reindex", action="store_true",
            help="first drop both indexes and rebuild them from every document's original (after changing the model)",
        )
        parser.add_argument("--collection", metavar="KEY", default="",
                            help="the collection the files go into (its key; default: the default collection); "
                                 "files already ingested elsewhere are moved there")
        parser.add_argument("--guide", action="store_true",
                            help="these are Lorebot's own guide (make run): marked as such, never re-added once removed")

    def handle(self, *args: Any, **options: Any) -> str:
        logs_for_command(options["verbosity"])
        if options["guide"] and (why := guide.why_guide_stays_out()):
            self.stdout.write(f"skipped: {why}")
            return ""
        options["collection"] = self._collection(options["collection"])
        if options["reindex"]:
            call_command("reindex", now=True, stdout=self.stdout, stderr=self.stderr, verbosity=options["verbosity"])
        found = local_files.collect(options["paths"])
        counts = {"indexed": 0, "unchanged": 0, "failed": 0, "queued": 0, "moved": 0, "skipped": len(found.skipped)}
        for name, why in found.skipped:
            self.stdout.write(f"skipped    {name}: {why}")
        for name in found.missing:
            counts["failed"] += 1
            # Counted like any bad file: no upload, no loader ever saw it.
            metrics.INGEST_DOCUMENTS.labels("failed").inc()
            metrics.PIPELINE_ERRORS.labels("loader").inc()
            self.stdout.write(self.style.ERROR(f"failed     {name}: file not found"))
        todo, unchanged = self._split_unchanged(found.files, force=options["force"])
        target = options["collection"]
        for f, doc in unchanged:
            also = f" as {doc.original_filename}" if doc.original_filename != f.relative else ""
            if doc.collection_id != target.pk and doc.source_id is None:
                # Asked for in another collection: re-labelled there, as the engine does, without re-embedding.
                moves.move_documents([doc], target)
                counts["moved"] += 1
                self.stdout.write(f"moved      {f.relative}: already indexed{also}, now in the collection {target.key}")
                continue
            counts["unchanged"] += 1
            where = f" (kept in {doc.collection.key}: source {doc.source} syncs it)" if doc.collection_id != target.pk else ""
            self.stdout.write(f"unchanged  {f.relative}: skipped, already indexed{also}{where}")
        batches = [todo[i:i + settings.UPLOAD_MAX_FILES] for i in range(0, len(todo), settings.UPLOAD_MAX_FILES)]
        for batch in batches:
            self._ingest(batch, options, counts)
        if options["force"] and (forced := self._forced(found.files)):
            moves.move_documents([d for d in forced if d.collection_id != target.pk and d.source_id is None], target)
            job = jobs.requeue_documents(forced, None, "re-ingest forced from the command line", enqueue=options["queue"])
            self._run_or_report(job, options["queue"], counts)
        return self._summary(counts, found.hidden)

    def _collection(self, key: str) -> Collection:
        if not key:
            return Collection.default()
        found = Collection.objects.filter(key=key).first()
        if found is None:
            Collection.default()  # listed even in a database whose rows were emptied by hand
            known = ", ".join(Collection.objects.order_by("key").values_list("key", flat=True))
            raise CommandError(f"no collection has the key {key!r} (known: {known}); add it in the console first")
        return found

    # -- which files need work ---------------------------------------------------------------

    def _split_unchanged(self, files: list[local_files.LocalFile], *,
                         force: bool) -> tuple[list[local_files.LocalFile], list[tuple[local_files.LocalFile, Document]]]:
        """Files to hand to the upload pipeline, and those whose exact content is indexed already (with its document)."""
        todo, unchanged = [], []
        for f in files:
            doc = self._indexed_as(f)
            if doc is None:
                todo.append(f)
            elif not force:
                unchanged.append((f, doc))
        return todo, unchanged

    def _indexed_as(self, f: local_files.LocalFile) -> Document | None:
        """The current document holding exactly this content (content is ingested once, whatever its name)."""
        try:
            checksum = f.checksum()
        except OSError:
            return None  # the pipeline names the file and the reason
        return Document.objects.filter(checksum=checksum, status=Document.Status.INDEXED).first()

    def _forced(self, files: list[local_files.LocalFile]) -> list[Document]:
        return [doc for f in files if (doc := self._indexed_as(f)) is not None]

    # -- one batch: the upload pipeline, then the job ------------------------------------------

    def _ingest(self, batch: list[local_files.LocalFile], options: dict[str, Any], counts: dict[str, int]) -> None:
        result = uploads.submit_uploads(batch, None, paths=[f.relative for f in batch], enqueue=options["queue"],
                                        event="ingested from the command line", collection=options["collection"])
        for outcome in result.refused:
            if outcome.code == "duplicate":  # the same content is in Lorebot already: nothing failed
                counts["unchanged"] += 1
                self.stdout.write(f"unchanged  {outcome.reason.replace(': duplicate, already', ': skipped, already')}")
                continue
            counts["failed"] += 1
            metrics.INGEST_DOCUMENTS.labels("failed").inc()  # never reached the engine, which counts the others
            self.stdout.write(self.style.ERROR(f"failed     {outcome.reason}"))
        if options["guide"]:
            for outcome in result.accepted:
                if outcome.document is not None:
                    outcome.document.mark_guide()
        if result.job is not None and result.accepted:
            self._run_or_report(result.job, options["queue"], counts)

    def _run_or_report(self, job: IngestJob, queue: bool, counts: dict[str, int]) -> None:
        if queue:
            files = job.files.exclude(state=IngestJobFile.State.REFUSED).count()
            counts["queued"] += files
            noun = "file" if files == 1 else "files"
            self.stdout.write(f"queued     job {job.pk}: {files} {noun} for the worker · {reverse('console:job', args=[job.pk])}")
            return
        self._run_here(job)
        for f in job.files.exclude(state=IngestJobFile.State.REFUSED).order_by("pk"):
            self._report(f, counts)

    def _run_here(self, job: IngestJob) -> None:
        """The job run in this process, as the worker would run it, with a progress bar over its files."""
        total = job.files.exclude(state=IngestJobFile.State.REFUSED).count()
        bar = tqdm(total=total, unit="file", file=sys.stderr, disable=None, desc="ingest")
        stop = threading.Event()

        def follow() -> None:
            from django.db import connection

            try:
                while not stop.wait(POLL_SECONDS):
                    done = IngestJobFile.objects.filter(job_id=job.pk, state__in=IngestJobFile.OUTCOMES).count()
                    bar.update(max(0, done - bar.n))
            finally:
                connection.close()  # this thread's own connection

        watcher = threading.Thread(target=follow, name=f"ingest-progress-{job.pk}", daemon=True)
        watcher.start()
        try:
            worker.process_job(job.pk, requeue=enqueue_job)
        finally:
            stop.set()
            watcher.join(timeout=5)
            bar.update(max(0, total - bar.n))
            bar.close()

    def _report(self, f: IngestJobFile, counts: dict[str, int]) -> None:
        if f.state in (IngestJobFile.State.INDEXED, IngestJobFile.State.UNCHANGED):
            counts["indexed" if f.state == IngestJobFile.State.INDEXED else "unchanged"] += 1
            verb = "indexed   " if f.state == IngestJobFile.State.INDEXED else "unchanged "
            self.stdout.write(f"{verb} {f.filename}: {f.chunks} chunks written" if f.state == IngestJobFile.State.INDEXED
                              else f"{verb} {f.filename}: skipped, already indexed")
        else:
            counts["failed"] += 1
            reason = f.error_message.removeprefix(f"{f.filename}: ") or f.get_state_display()
            self.stdout.write(self.style.ERROR(f"failed     {f.filename}: {reason}"))

    def _summary(self, counts: dict[str, int], hidden: int) -> str:
        parts = [f"{counts['indexed']} indexed", f"{counts['unchanged']} unchanged", f"{counts['skipped']} skipped"]
        if counts["moved"]:
            parts.insert(1, f"{counts['moved']} moved")
        if counts["queued"]:
            parts.insert(0, f"{counts['queued']} queued")
        if hidden:
            parts.append(f"{hidden} hidden left out")
        summary = ", ".join(parts) + f", {counts['failed']} failed"
        if counts["failed"]:
            raise CommandError(summary)
        return summary

"""`manage.py sync [SOURCE ...]`: syncs sources here, in the foreground, with a progress bar and a summary.

SOURCE is a source's name or id; without one, every due source (its schedule's time has come) is synced.
The run is the same as the worker's (console.syncing.runs) and is recorded on the source's page.
"""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from console.management.output import logs_for_command
from console.models import Source, SyncRun
from console.syncing import schedule, service
from console.syncing.runs import run_sync


class Command(BaseCommand):
    help = "Sync sources now (by name or id; without one, every due source), with a progress bar and a summary."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("sources", nargs="*", metavar="SOURCE", help="a source's name or id")

    def handle(self, *args: Any, **options: Any) -> str:
        logs_for_command(options["verbosity"])
        sources = [self._find(name) for name in options["sources"]] if options["sources"] else schedule.due_sources()
        if not sources:
            return "no source is due"
        failed = 0
        for source in sources:
            run = self._sync(source)
            if run is None:
                failed += 1
                continue
            line = f"{source.name}: {run.get_state_display().lower()} · {run.summary()}"
            if run.seconds is not None:
                line += f" · {run.seconds:.1f} s"
            if run.state == SyncRun.State.SUCCEEDED:
                self.stdout.write(line)
                continue
            failed += 1
            self.stdout.write(self.style.ERROR(line))
            if run.error:
                self.stdout.write(self.style.ERROR(f"  {run.error}"))
            for f in run.failures.order_by("pk"):
                self.stdout.write(self.style.ERROR(f"  failed  {f.message}"))
        summary = f"{len(sources) - failed} of {len(sources)} source{'s' if len(sources) != 1 else ''} synced"
        if failed:
            raise CommandError(f"{summary}; {failed} failed")
        return summary

    def _find(self, name: str) -> Source:
        source = Source.objects.filter(name=name).first()
        if source is None and name.isdigit():
            source = Source.objects.filter(pk=int(name)).first()
        if source is None:
            known = ", ".join(Source.objects.order_by("name").values_list("name", flat=True)) or "none yet"
            raise CommandError(f"no source named {name!r} (sources: {known})")
        return source

    def _sync(self, source: Source) -> SyncRun | None:
        try:
            run = service.request_sync(source, trigger=SyncRun.Trigger.COMMAND, enqueue=False)
        except service.SyncError as exc:
            self.stdout.write(self.style.ERROR(f"{source.name}: {exc}"))
            return None
        # On the command's stderr (call_command(stderr=...) redirects it too), shown only on a terminal
        # (disable=None): a cron job's log gets the summary lines, not carriage returns.
        bar = tqdm(total=0, unit="item", file=getattr(self.stderr, "_out", sys.stderr), disable=None,
                   desc=source.name)

        def progress(done: int, total: int) -> None:
            if bar.total != total:
                bar.total = total
                bar.refresh()
            bar.update(max(0, done - bar.n))

        try:
            run_sync(run.pk, on_progress=progress)
        finally:
            bar.close()
        run.refresh_from_db()
        return run

"""`manage.py db_worker`: django-tasks-db's worker, which first re-queues jobs whose worker died, and queues
the syncs of due sources (console.syncing.schedule) at start and every SYNC_CHECK_SECONDS.

console is listed before django_tasks_db in INSTALLED_APPS, so this command is the one that runs.
"""

from __future__ import annotations

import threading
from argparse import ArgumentParser
from typing import Any

import structlog
from django_tasks_db.management.commands.db_worker import Command as DbWorkerCommand

from console.engine import get_engine
from console.ingest import recovery
from console.syncing import schedule

log = structlog.get_logger(__name__, component="ingest_job")


class Command(DbWorkerCommand):
    help = ("Run the ingest worker; re-queues jobs left running by a dead worker and queues due source syncs, "
            "at start and periodically.")

    def add_arguments(self, parser: ArgumentParser) -> None:
        super().add_arguments(parser)
        # Polling an indexed table 4x a second is cheap, and it is most of enqueue-to-searchable latency.
        parser.set_defaults(interval=0.25)

    def handle(self, *args: Any, **options: Any) -> str:  # type: ignore[override]  # "": its summary is a log event
        recovered = recovery.recover_stale_jobs()
        if recovered:  # a log event, not a stdout line: every line a server process writes is JSON
            log.warning("worker.jobs_recovered", jobs=recovered)
        try:
            schedule.check()  # syncs due while no worker ran (a restart) start now
        except Exception as exc:  # the worker still runs ingest jobs; the next check tries again
            log.warning("worker.sync_check_failed", error=f"{type(exc).__name__}: {exc}"[:500])
        stop = threading.Event()
        watcher = None
        if not options.get("batch"):
            # Jobs can also go stale while this worker runs (another worker killed), so keep looking.
            watcher = threading.Thread(target=recovery.recovery_loop, args=(stop,), name="ingest-recovery", daemon=True)
            watcher.start()
            # Sources fall due while this worker runs: no scheduler process, the worker looks.
            threading.Thread(target=schedule.schedule_loop, args=(stop,), name="sync-schedule", daemon=True).start()
        # Load the model before the first job, not during it: enqueue-to-searchable stays short.
        try:
            get_engine().warmup()
        except Exception as exc:  # a damaged or unreachable index: each job then fails with its own error
            log.error("worker.warmup_failed", error=f"{type(exc).__name__}: {exc}"[:500],
                      hint="run `python manage.py reconcile` to repair a damaged index")
        try:
            super().handle(*args, **options)
        finally:
            stop.set()
        log.info("worker.stopped", recovered_at_start=len(recovered))
        return ""

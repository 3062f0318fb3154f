"""`manage.py db_worker`: django-tasks-db's worker, which first re-queues jobs whose worker died, and queues
the syncs of due sources (console.syncing.schedule) at start and every SYNC_CHECK_SECONDS.

console is listed before django_tasks_db in INSTALLED_APPS, so this command is the one that runs.
"""

from __future__ import annotations

import threading
import time
from argparse import ArgumentParser
from typing import Any

import structlog
from django.db import InterfaceError, OperationalError, connections
from django_tasks_db.management.commands.db_worker import Command as DbWorkerCommand

from console.engine import get_engine
from console.ingest import recovery
from console.syncing import schedule
from ragcore.metrics import PIPELINE_ERRORS

# How long to wait between attempts to reach a database that went away (a restart, a failover).
RECONNECT_SECONDS = (0.5, 1.0, 2.0, 5.0)

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
            while True:
                try:
                    super().handle(*args, **options)
                    break  # stopped by a signal, or a batch that ran dry
                except (OperationalError, InterfaceError) as exc:
                    # PostgreSQL restarted under the worker: the job in hand was recorded as crashed (or goes
                    # stale and is re-queued by recovery); this process waits for the server and carries on.
                    PIPELINE_ERRORS.labels("ingest_worker").inc()
                    log.error("worker.database_lost", error=f"{type(exc).__name__}: {exc}"[:500])
                    self._wait_for_database()
        finally:
            stop.set()
        log.info("worker.stopped", recovered_at_start=len(recovered))
        return ""

    def _wait_for_database(self) -> None:
        """Until the default database answers again, trying with growing pauses."""
        for attempt in range(1_000_000):
            connections.close_all()  # a broken connection is never reused
            try:
                connections["default"].ensure_connection()
            except (OperationalError, InterfaceError):
                time.sleep(RECONNECT_SECONDS[min(attempt, len(RECONNECT_SECONDS) - 1)])
                continue
            log.warning("worker.database_back", attempts=attempt + 1)
            return

from __future__ import annotations

import atexit

from django.apps import AppConfig
from django.conf import settings


class ConsoleConfig(AppConfig):
    name = "console"
    verbose_name = "Lorebot console"

    def ready(self) -> None:
        from console.ops.logs import configure_logging
        from console.ops.metrics import mark_process_dead

        configure_logging(settings.LOG_FORMAT, settings.LOG_LEVEL, log_content=settings.LOG_CONTENT)
        # Every process (web, worker, bots) loads this app; its live gauges leave the sums when it exits.
        atexit.register(mark_process_dead)

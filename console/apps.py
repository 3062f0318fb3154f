from __future__ import annotations

from django.apps import AppConfig
from django.conf import settings


class ConsoleConfig(AppConfig):
    name = "console"
    verbose_name = "Lorebot console"

    def ready(self) -> None:
        from console.logging import configure_logging

        configure_logging(settings.LOG_FORMAT, settings.LOG_LEVEL)

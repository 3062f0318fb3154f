"""Sleeps LOREBOT_TEST_INGEST_DELAY seconds each time a job's file or a sync's item starts, so a test can kill a
worker mid-file."""

from __future__ import annotations

import os
import time
from typing import Any

from django.apps import AppConfig


class SlowIngestConfig(AppConfig):
    name = "tests.slow_ingest"
    label = "slow_ingest"

    def ready(self) -> None:
        from console.models import IngestJobFile

        delay = float(os.environ.get("LOREBOT_TEST_INGEST_DELAY", "0") or 0)
        start = IngestJobFile.start

        def slow_start(self: IngestJobFile) -> None:
            start(self)  # the file is RUNNING, with its attempt counted, before the pause: as a worker dies mid-file
            time.sleep(delay)

        IngestJobFile.start = slow_start  # type: ignore[method-assign]

        from console.models import SyncItem

        begin = SyncItem.begin

        def slow_begin(self: SyncItem, *args: Any, **kwargs: Any) -> None:
            begin(self, *args, **kwargs)  # the item is pending, its document row made, before the pause
            time.sleep(delay)

        SyncItem.begin = slow_begin  # type: ignore[method-assign]

"""console.settings plus the test app that slows each ingested file down (see tests.slow_ingest)."""

from __future__ import annotations

from console.settings import *  # noqa: F403
from console.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "tests.slow_ingest.apps.SlowIngestConfig"]

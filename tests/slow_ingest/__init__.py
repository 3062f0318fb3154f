"""Test-only: ingest workers whose every file takes LOREBOT_TEST_INGEST_DELAY seconds longer.

A test that must SIGKILL a worker mid-job runs its processes with `slow_ingest_env(seconds)`; production
code knows nothing of it.
"""

from __future__ import annotations


def slow_ingest_env(seconds: float) -> dict[str, str]:
    """The environment of processes whose ingest worker sleeps `seconds` as each file starts."""
    return {"DJANGO_SETTINGS_MODULE": "tests.slow_ingest.settings", "LOREBOT_TEST_INGEST_DELAY": str(seconds)}

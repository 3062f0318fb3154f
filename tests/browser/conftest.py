"""A real headless Chromium (Debian's, from apt) driven by Playwright against pytest-django's live server.

CI installs both: `pip install playwright` and `apt-get install -y chromium`. Playwright's own
browser download is not reachable here, so the system binary is launched by path.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings
from playwright.sync_api import sync_playwright

from console.engine import set_engine
from tests.daphne_server import Daphne, Site, start_daphne

CHROMIUM = Path(os.getenv("CHROMIUM_PATH", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]


@pytest.fixture(scope="module")
def console_browser() -> Iterator[Any]:
    """One Chromium per test module: two live sync Playwright instances cannot share a thread."""
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install -y chromium, or set CHROMIUM_PATH)")
    # Playwright's sync API keeps an event loop running in this thread, which makes Django refuse
    # ORM calls from the test body; they are plain synchronous calls, so allow them while the browser runs.
    # https://docs.djangoproject.com/en/5.2/topics/async/#envvar-DJANGO_ALLOW_ASYNC_UNSAFE
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
            yield chromium
            chromium.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(console_browser: Any) -> Iterator[Any]:
    context = console_browser.new_context(viewport={"width": 1280, "height": 860})
    context.set_default_timeout(15_000)
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def data_dir(tmp_path: Path, real_embedder: object) -> Iterator[Path]:
    """The engine on a temporary data folder, and jobs run at once (no worker process needed).

    django-tasks' ImmediateBackend runs the ingest task inside the upload request, right after
    its transaction commits: the same task code a `db_worker` runs, without a second process
    that could not see the live server's in-memory SQLite database.
    """
    data = tmp_path / "data"
    immediate = {"default": {"BACKEND": "django_tasks.backends.immediate.ImmediateBackend"}}
    with override_settings(RAG_DATA_DIR=data, TASKS=immediate):
        set_engine(None)
        yield data
    set_engine(None)


@pytest.fixture(scope="module")
def server(site: Site) -> Iterator[Daphne]:
    """A daphne process serving the module's `site` (a module fixture of the test file)."""
    daphne = start_daphne(site)
    yield daphne
    daphne.stop()

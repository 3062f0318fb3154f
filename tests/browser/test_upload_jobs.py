"""In Chromium: an upload of good and bad files together gives one summary and the good ones go through; Cancel, then Retry."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from django.contrib.auth import get_user_model
from django.test import override_settings
from django_tasks_db.management.commands.db_worker import Worker

from console.engine import set_engine
from console.models import Document, IngestJob
from tests.support import make_engine

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

FILES = {
    "deploy-keys.md": b"# Deploy keys\n\nThe deploy key rotates every ninety days.\n",
    "on-call.md": b"# On-call\n\nThe on-call rota changes every Monday at nine.\n",
    "empty.md": b"",
    "setup.pdf": b"MZ\x90\x00\x03\x00\x00\x00" + bytes(200),
}


@pytest.fixture
def queued_jobs(tmp_path: Path) -> Iterator[Path]:
    """Jobs stay queued (the database backend, and no worker until the test runs one): time to cancel them."""
    data = tmp_path / "data"
    with override_settings(RAG_DATA_DIR=data):
        set_engine(make_engine(data))
        yield data
    set_engine(None)


def run_worker() -> None:
    with mock.patch("django_tasks_db.management.commands.db_worker.close_old_connections"):
        Worker(queue_names=["default"], interval=0, batch=True, backend_name="default", startup_delay=False,
               max_tasks=None, worker_id="browser-test-worker", excluded_queue_names=[]).run()


def test_good_and_bad_files_get_one_summary_then_cancel_and_retry(
    live_server: Any, queued_jobs: Path, page: Any, tmp_path: Path
) -> None:
    base = live_server.url
    get_user_model().objects.create_user("alice", password="s3cret-pw", is_staff=True)
    page.goto(f"{base}/accounts/login/?next=/console/documents/")
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", "s3cret-pw")
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/console/documents/")

    for name, data in FILES.items():
        (tmp_path / name).write_bytes(data)
    page.set_input_files("input[name=files]", [str(tmp_path / name) for name in FILES])
    page.click("text=Upload and index")
    page.wait_for_url(re.compile(r"/console/jobs/\d+/$"))

    # One message for the whole upload, naming each refused file with its reason.
    assert page.locator(".flash").count() == 1
    summary = page.locator(".flash").inner_text()
    assert "2 files accepted" in summary and "2 refused" in summary, summary
    assert "empty.md (empty file)" in summary and "setup.pdf (" in summary
    for name in ("empty.md", "setup.pdf"):
        assert page.locator("tr", has_text=name).locator('[data-file-field="state"]').inner_text().lower() == "refused"
    for name in ("deploy-keys.md", "on-call.md"):
        assert page.locator("tr", has_text=name).locator('[data-file-field="state"]').inner_text().lower() == "queued"

    page.on("dialog", lambda dialog: dialog.accept())
    page.click("button:text('Cancel')")
    page.locator('[data-job-live] [data-field="state"]', has_text="Cancelled").wait_for()
    assert "cancelled" in page.locator(".flash").inner_text()
    for name in ("deploy-keys.md", "on-call.md"):
        assert page.locator("tr", has_text=name).locator('[data-file-field="state"]').inner_text().lower() == "cancelled"
    assert page.locator("tr", has_text="empty.md").locator('[data-file-field="state"]').inner_text().lower() == "refused"
    assert not page.locator('[data-show-when="cancel"]').is_visible()

    page.click("button:text('Retry failed files')")
    page.locator(".flash", has_text="2 failed or cancelled files will be retried").wait_for()
    for name in ("deploy-keys.md", "on-call.md"):
        assert page.locator("tr", has_text=name).locator('[data-file-field="state"]').inner_text().lower() == "queued"
    assert page.locator("tr", has_text="setup.pdf").locator('[data-file-field="state"]').inner_text().lower() == "refused"

    run_worker()  # the page polls /status and follows the job to its end
    page.locator('[data-job-live] [data-field="state"]', has_text="succeeded").wait_for()
    for name in ("deploy-keys.md", "on-call.md"):
        page.locator("tr", has_text=name).locator('[data-file-field="state"]', has_text="indexed").wait_for()
    job = IngestJob.objects.get()
    assert job.state == IngestJob.State.SUCCEEDED
    assert set(Document.objects.values_list("original_filename", "status")) == {
        ("deploy-keys.md", "indexed"), ("on-call.md", "indexed")}

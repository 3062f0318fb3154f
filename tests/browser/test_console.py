"""The console in a real browser: log in, upload two files, watch the job, open a document and a conversation."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model

from console.models import Conversation, Document, IngestJob, IngestJobFile, Message

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

GOOD = b"# Deploy keys\n\nThe deploy key rotates every ninety days. Ask the platform team for a new one.\n"
CORRUPT = b"%PDF-1.4\n this is not really a pdf, its cross-reference table is missing\n"
SCREENSHOTS = os.getenv("BROWSER_SCREENSHOTS", "")  # a folder: save the dashboard and documents pages there


def log_in(page: Any, base: str) -> None:
    get_user_model().objects.create_user("alice", password="s3cret-pw", is_staff=True)
    page.goto(f"{base}/console/")
    assert "/accounts/login/" in page.url
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", "s3cret-pw")
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/console/")


def test_a_staff_member_uploads_watches_the_job_and_reads_a_conversation(
    live_server: Any, data_dir: Path, page: Any, tmp_path: Path
) -> None:
    base = live_server.url
    log_in(page, base)
    assert page.locator("h1").inner_text() == "Dashboard"

    page.click("nav >> text=Documents")
    (tmp_path / "deploy-keys.md").write_bytes(GOOD)
    (tmp_path / "broken.pdf").write_bytes(CORRUPT)
    page.set_input_files("input[name=files]", [str(tmp_path / "deploy-keys.md"), str(tmp_path / "broken.pdf")])
    assert page.locator("[data-file-list] li").all_inner_texts() == ["deploy-keys.md", "broken.pdf"]
    page.click("text=Upload and index")

    page.wait_for_url(re.compile(r"/console/jobs/\d+/$"))
    assert "2 files accepted" in page.locator(".flash").inner_text()
    live = page.locator("[data-job-live]")
    live.locator('[data-field="state"]', has_text="partially failed").wait_for(timeout=60_000)
    broken_row = page.locator("tr", has_text="broken.pdf")
    assert "Failed" in broken_row.locator('[data-file-field="state"]').inner_text()
    assert "pdf" in broken_row.locator('[data-file-field="error"]').inner_text().lower()
    assert "Indexed" in page.locator("tr", has_text="deploy-keys.md").locator('[data-file-field="state"]').inner_text()
    assert page.locator('[data-show-when="retry"]').is_visible()

    page.click("a:text('deploy-keys.md')")
    page.wait_for_url(re.compile(r"/console/documents/\d+/$"))
    doc = Document.objects.get(original_filename="deploy-keys.md")
    assert page.locator(".badge", has_text="Indexed").first.is_visible()
    assert "rotates every ninety days" in page.locator(".chunk").first.inner_text()

    conversation = Conversation.objects.create(surface="slack", external_key="T1:C1:99.1", user_key="U7", title="Deploy key question")
    Message.objects.create(conversation=conversation, role="user", text="When does the deploy key rotate? <b>now</b>")
    Message.objects.create(
        conversation=conversation, role="assistant", text="Every ninety days [1].", provider="extractive", model="extractive",
        latency_ms=412.0, citations=[{"n": 1, "document_id": doc.engine_id, "title": "Deploy keys", "source": "deploy-keys.md", "location": "", "snippet": "The deploy key rotates"}],
    )
    page.click("nav >> text=Conversations")
    page.click("text=Deploy key question")
    assert page.locator(".msg-user .msg-text").inner_text() == "When does the deploy key rotate? <b>now</b>"
    assert "412 ms" in page.locator(".msg-assistant").inner_text()
    page.click(".citations a")  # every citation opens the source viewer
    page.wait_for_url(re.compile(rf"/sources/{doc.pk}/"))

    if SCREENSHOTS:
        page.set_viewport_size({"width": 1280, "height": 900})
        page.goto(f"{base}/console/")
        page.screenshot(path=str(Path(SCREENSHOTS) / "dashboard.png"), full_page=True)
        page.goto(f"{base}/console/documents/")
        page.screenshot(path=str(Path(SCREENSHOTS) / "documents.png"), full_page=True)
        page.set_viewport_size({"width": 390, "height": 844})
        page.goto(f"{base}/console/")
        page.screenshot(path=str(Path(SCREENSHOTS) / "dashboard-phone.png"), full_page=True)


def test_the_job_page_follows_a_running_job_without_reloading(live_server: Any, data_dir: Path, page: Any) -> None:
    base = live_server.url
    log_in(page, base)
    job = IngestJob.objects.create(state="running", stage="embedding", progress_done=0, progress_total=2)
    good = IngestJobFile.objects.create(job=job, filename="a.md", state="running")
    doc = Document.objects.create(checksum="b" * 64, original_filename="b.pdf", status="indexing")
    bad = IngestJobFile.objects.create(job=job, document=doc, filename="b.pdf", state="queued")
    page.goto(f"{base}/console/jobs/{job.pk}/")
    page.evaluate("window.__sameDocument = true")
    assert page.locator('[data-show-when="cancel"]').is_visible()

    IngestJobFile.objects.filter(pk=good.pk).update(state="indexed", chunks=4)
    IngestJob.objects.filter(pk=job.pk).update(progress_done=1, stage="writing")
    page.locator('[data-field="stage"]', has_text="writing").wait_for()
    assert page.get_attribute('[data-field="progress"]', "aria-valuenow") == "50"

    IngestJobFile.objects.filter(pk=bad.pk).update(state="failed", error_type="LoaderError", error_message="b.pdf: corrupt <PDF>")
    IngestJob.objects.filter(pk=job.pk).update(state="partially_failed", stage="done", progress_done=2)
    page.locator('[data-field="state"]', has_text="partially failed").wait_for()
    assert page.locator("tr", has_text="b.pdf").locator('[data-file-field="error"]').inner_text() == "LoaderError: b.pdf: corrupt <PDF>"
    assert page.evaluate("window.__sameDocument") is True  # updated in place, never reloaded
    assert page.locator('[data-show-when="retry"]').is_visible()
    assert not page.locator('[data-show-when="cancel"]').is_visible()

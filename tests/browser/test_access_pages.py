"""The access pages in a real browser: add a group and a restricted collection, upload into it, move the document."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model

from console.models import Collection, Document
from tests.browser.test_console import log_in

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

PAYROLL = b"# Payroll\n\nPayroll runs on the twenty-fifth; the walrus bonus is paid in December.\n"
SCREENSHOTS = os.getenv("BROWSER_SCREENSHOTS", "")


def test_staff_restrict_a_collection_upload_into_it_and_move_the_document_out(
    live_server: Any, data_dir: Path, page: Any, tmp_path: Path
) -> None:
    base = live_server.url
    log_in(page, base)
    get_user_model().objects.create_user("bob", password="pw")

    page.click("nav >> text=Access")
    page.click("nav.tabs >> text=Groups")
    page.fill("input[name=name]", "People team")
    page.click("button:text('Add group')")
    page.wait_for_url(re.compile(r"/console/groups/\d+/$"))
    page.fill("input[name=username]", "bob")
    page.click("button:text('Add to People team')")
    assert "bob is now in People team." in page.locator(".flash").inner_text()

    page.click("nav.tabs >> text=Collections")
    page.fill("input[name=name]", "HR")
    page.check("input[name=visibility][value=groups]")
    page.check("label:has-text('People team') input[name=groups]")
    page.click("button:text('Add collection')")
    assert "visible to People team" in page.locator(".flash").inner_text()
    assert "People team" in page.locator("tr[data-collection=hr]").inner_text()
    if SCREENSHOTS:
        page.screenshot(path=str(Path(SCREENSHOTS) / "collections.png"), full_page=True)

    hr = Collection.objects.get(key="hr")
    page.click("nav >> text=Documents")
    (tmp_path / "payroll.md").write_bytes(PAYROLL)
    page.set_input_files("input[name=files]", [str(tmp_path / "payroll.md")])
    page.select_option("select[name=collection]", str(hr.pk))
    page.click("text=Upload and index")
    page.wait_for_url(re.compile(r"/console/jobs/\d+/$"))
    page.locator("[data-job-live] [data-field='state']", has_text="succeeded").wait_for(timeout=60_000)
    doc = Document.objects.get(original_filename="payroll.md")
    assert doc.collection == hr

    page.goto(f"{base}/console/documents/{doc.pk}/")
    assert "HR" in page.locator("dl.meta").inner_text()
    page.select_option("[data-move-form] select[name=collection]", label="Default")
    page.click("[data-move-form] button")
    assert "1 document moved to Default (1 chunk)." in page.locator(".flash").inner_text()
    doc.refresh_from_db()
    assert doc.collection == Collection.default()
    if SCREENSHOTS:
        page.screenshot(path=str(Path(SCREENSHOTS) / "document-moved.png"), full_page=True)

    page.click("nav >> text=Access")
    page.click("nav.tabs >> text=Channel scopes")
    page.select_option("select[name=platform]", "slack")
    page.fill("input[name=workspace]", "T024BE7LD")
    page.fill("input[name=channel]", "")
    page.click("button:text('Add scope')")
    assert "A Slack scope needs its channel id" in page.locator("[data-field-error=channel]").inner_text()
    page.fill("input[name=channel]", "C012AB3CD")
    page.fill("input[name=label]", "#people")
    page.check("label:has-text('HR') input[name=collections]")
    page.click("button:text('Add scope')")
    assert "answers from HR." in page.locator(".flash").inner_text()
    if SCREENSHOTS:
        page.screenshot(path=str(Path(SCREENSHOTS) / "channels.png"), full_page=True)

    page.click("nav.tabs >> text=Account links")
    page.select_option("select[name=platform]", "discord")
    page.fill("input[name=external_user]", "80351110224678912")
    page.fill("input[name=user]", "bob")
    page.click("button:text('Link')")
    assert "their direct messages search what bob may see" in page.locator(".flash").inner_text()
    if SCREENSHOTS:
        page.screenshot(path=str(Path(SCREENSHOTS) / "links.png"), full_page=True)

    # HR is empty now, but a channel answers from it: deleting it says so, then deletes it.
    page.goto(f"{base}/console/collections/{hr.pk}/delete")
    assert "One that answered only from it then answers from nothing" in page.locator("[data-scopes]").inner_text()
    page.click("button:text('Delete')")
    assert "Collection HR deleted." in page.locator(".flash").inner_text()

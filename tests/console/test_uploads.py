"""The upload page: each bad file is refused on its own, named, and recorded on the job; the good ones go through."""

from __future__ import annotations

import errno
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.contrib.messages import get_messages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client, override_settings
from django.urls import reverse

from console.ingest import storage
from console.models import Document, IngestJob, IngestJobFile
from ragcore.metrics import PIPELINE_ERRORS

pytestmark = pytest.mark.django_db

GOOD = b"# Deploy keys\n\nThe deploy key rotates every ninety days.\n"
OTHER = b"# On-call\n\nThe on-call rota changes every Monday at nine.\n"
EXE = b"MZ\x90\x00\x03\x00\x00\x00" + bytes(200)


@pytest.fixture(autouse=True)
def data(tmp_path: Path) -> Iterator[Path]:
    """Uploads are only stored and queued here (no worker runs): a data folder, and no embedding model."""
    with override_settings(RAG_DATA_DIR=tmp_path / "data"):
        yield tmp_path / "data"


@pytest.fixture
def staff_client(client: Client) -> Client:
    client.force_login(User.objects.create_user("ada", password="pw", is_staff=True))
    return client


def post(client: Client, *files: SimpleUploadedFile, paths: list[str] | None = None) -> Any:
    data: dict[str, Any] = {"files": list(files)}
    if paths is not None:
        data["paths"] = json.dumps(paths)
    response = client.post(reverse("console:documents"), data)
    client.get(reverse("console:documents"))  # shows, and so clears, the messages of this upload
    return response


def flashes(response: Any) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def refused_rows(job: IngestJob) -> dict[str, tuple[str, str]]:
    return {f.filename: (f.error_type, f.error_message) for f in job.files.filter(state=IngestJobFile.State.REFUSED)}


def test_bad_files_are_refused_by_name_and_the_good_ones_go_through_with_one_summary(staff_client: Client) -> None:
    refused_before = PIPELINE_ERRORS.labels("upload")._value.get()
    good = [SimpleUploadedFile(f"guide-{i}.md", GOOD + f"Page {i}.\n".encode()) for i in range(3)]
    response = post(staff_client, *good, SimpleUploadedFile("empty.md", b""), SimpleUploadedFile("setup.pdf", EXE))
    job = IngestJob.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("console:job", args=[job.pk])
    (summary,) = flashes(response)
    assert summary.startswith("3 files accepted, indexing in the background, 2 refused: "), summary
    assert "empty.md (empty file)" in summary and "setup.pdf (" in summary
    assert job.progress_total == 3 and job.state == IngestJob.State.QUEUED
    assert sorted(job.files.filter(state=IngestJobFile.State.QUEUED).values_list("filename", flat=True)) == [
        "guide-0.md", "guide-1.md", "guide-2.md"]
    rows = refused_rows(job)
    assert rows["empty.md"] == ("empty", "empty.md: empty file")
    assert rows["setup.pdf"][0] == "type" and "setup.pdf" in rows["setup.pdf"][1]
    assert Document.objects.count() == 3
    assert PIPELINE_ERRORS.labels("upload")._value.get() == refused_before + 2
    page = staff_client.get(response["Location"]).content.decode()
    assert "Refused" in page and "empty.md: empty file" in page
    listed = staff_client.get(reverse("console:jobs")).context["page"].object_list[0]
    assert (listed.files_total, listed.files_refused, listed.files_failed) == (5, 2, 0)


def test_an_upload_of_only_bad_files_is_a_finished_job_that_lists_them(staff_client: Client) -> None:
    response = post(staff_client, SimpleUploadedFile("empty.md", b""))
    job = IngestJob.objects.get()
    assert job.state == IngestJob.State.FAILED and job.is_finished and not job.task_id
    assert flashes(response) == ["0 files accepted, 1 refused: empty.md (empty file)."]
    assert list(refused_rows(job)) == ["empty.md"]


def test_a_duplicate_is_named_as_one_whether_it_is_in_this_upload_or_already_ingested(staff_client: Client) -> None:
    post(staff_client, SimpleUploadedFile("handbook.md", GOOD))
    response = post(staff_client, SimpleUploadedFile("copy-of-handbook.md", GOOD), SimpleUploadedFile("oncall.md", OTHER),
                    SimpleUploadedFile("oncall-again.md", OTHER))
    (summary,) = flashes(response)
    assert summary.startswith("1 file accepted"), summary
    assert "copy-of-handbook.md (duplicate, already ingested as handbook.md)" in summary
    assert "oncall-again.md (the same content as oncall.md in this upload)" in summary
    job = IngestJob.objects.order_by("-pk").first()
    assert job is not None and {code for code, _ in refused_rows(job).values()} == {"duplicate"}
    assert Document.objects.count() == 2


def test_same_named_files_in_different_folders_are_different_documents(staff_client: Client) -> None:
    response = post(staff_client, SimpleUploadedFile("README.md", GOOD), SimpleUploadedFile("README.md", OTHER),
                    paths=["team-a/README.md", "team-b/README.md"])
    assert flashes(response)[0].startswith("2 files accepted")
    docs = {d.original_filename: d for d in Document.objects.all()}
    assert set(docs) == {"team-a/README.md", "team-b/README.md"}
    assert storage.read_original(docs["team-a/README.md"].checksum) == GOOD and docs["team-b/README.md"].version == 1
    # The same path again with new content is that document's next version, and only that one's.
    post(staff_client, SimpleUploadedFile("README.md", GOOD + b"More.\n"), paths=["team-a/README.md"])
    newest = Document.objects.order_by("-pk").first()
    assert newest is not None and (newest.original_filename, newest.version) == ("team-a/README.md", 2)
    assert newest.previous == docs["team-a/README.md"]


def test_the_same_path_twice_in_one_upload_is_refused_not_silently_superseded(staff_client: Client) -> None:
    response = post(staff_client, SimpleUploadedFile("README.md", GOOD), SimpleUploadedFile("README.md", OTHER))
    (summary,) = flashes(response)
    assert "README.md (another file in this upload has the same path)" in summary
    assert Document.objects.count() == 1


def test_paths_that_climb_out_or_do_not_match_their_file_are_not_trusted(staff_client: Client) -> None:
    post(staff_client, SimpleUploadedFile("a.md", GOOD), SimpleUploadedFile("b.md", OTHER),
         paths=["../../etc/a.md", "somewhere/else.md"])
    assert set(Document.objects.values_list("original_filename", flat=True)) == {"etc/a.md", "b.md"}


def test_a_name_over_the_limit_is_refused_by_name(staff_client: Client) -> None:
    long_name = "a" * 300 + ".md"  # Django cuts it to 255 characters on arrival; the browser sends its whole path
    response = post(staff_client, SimpleUploadedFile(long_name, GOOD), SimpleUploadedFile("ok.md", OTHER),
                    paths=[f"docs/{long_name}", "ok.md"])
    (summary,) = flashes(response)
    assert summary.startswith("1 file accepted") and "308 characters, over the 200-character limit" in summary
    assert "docs/aaaa" in summary
    assert list(Document.objects.values_list("original_filename", flat=True)) == ["ok.md"]
    response = post(staff_client, SimpleUploadedFile(long_name, GOOD))  # and without the browser's paths
    assert "255 characters, over the 200-character limit" in flashes(response)[-1]


@override_settings(UPLOAD_MAX_FILES=2)
def test_files_past_the_count_limit_are_refused_by_name(staff_client: Client) -> None:
    files = [SimpleUploadedFile(f"page-{i}.md", GOOD + bytes([65 + i])) for i in range(3)]
    response = post(staff_client, *files)
    (summary,) = flashes(response)
    assert summary.startswith("2 files accepted") and "page-2.md (over the limit of 2 files per upload" in summary


def test_a_full_disk_refuses_the_upload_cleanly_and_says_so(staff_client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(*args: Any, **kwargs: Any) -> Any:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(storage.tempfile, "mkstemp", full)
    response = post(staff_client, SimpleUploadedFile("a.md", GOOD), SimpleUploadedFile("b.md", OTHER))
    (summary,) = flashes(response)
    assert summary.startswith("0 files accepted, 2 refused: a.md (the server's disk is full"), summary
    assert "b.md (the server's disk is full" in summary
    job = IngestJob.objects.get()
    assert {code for code, _ in refused_rows(job).values()} == {"disk_full"}
    assert not Document.objects.exists()


def test_an_upload_with_no_file_says_so(staff_client: Client) -> None:
    response = staff_client.post(reverse("console:documents"), {})
    assert flashes(response) == ["Choose at least one file to upload."]
    assert not IngestJob.objects.exists()


@override_settings(INGEST_MIN_FREE_MB=10**12)  # more than any disk has: this one counts as full
def test_an_upload_to_a_disk_under_the_free_space_floor_is_refused_by_name(staff_client: Client) -> None:
    response = post(staff_client, SimpleUploadedFile("a.md", GOOD))
    (summary,) = flashes(response)
    assert summary.startswith("0 files accepted, 1 refused: a.md (the disk holding "), summary
    assert "is full" in summary and "nothing was stored" in summary
    assert not Document.objects.exists() and not storage.raw_dir().exists()


@override_settings(UPLOAD_MAX_FILES=1, DATA_UPLOAD_MAX_NUMBER_FILES=2)
def test_a_request_with_more_files_than_django_reads_gets_a_message_not_a_bare_400(staff_client: Client) -> None:
    files = [SimpleUploadedFile(f"page-{i}.md", GOOD + bytes([65 + i])) for i in range(3)]
    response = staff_client.post(reverse("console:documents"), {"files": files}, follow=True)
    assert response.status_code == 200
    assert "Upload refused: more than 2 files in one upload; send at most 1 at a time (UPLOAD_MAX_FILES)." in [
        str(m) for m in response.context["messages"]]
    assert not Document.objects.exists() and not IngestJob.objects.exists()


def test_a_file_name_too_long_to_read_gets_a_message_naming_the_limit(staff_client: Client) -> None:
    # Written by hand: Django's test client (like its server side) would cut the name to 255 characters.
    body = (b"--BOUNDARY\r\nContent-Disposition: form-data; name=\"files\"; filename=\"" + b"a" * 5000 + b".md\"\r\n"
            b"Content-Type: text/markdown\r\n\r\n" + GOOD + b"\r\n--BOUNDARY--\r\n")
    response = staff_client.generic("POST", reverse("console:documents"), body,
                                    content_type="multipart/form-data; boundary=BOUNDARY")
    assert response.status_code == 302 and response["Location"] == reverse("console:documents")
    (shown,) = flashes(response)
    assert shown.startswith("Upload refused: a file name is too long to be read") and "200 characters" in shown
    assert not Document.objects.exists()


def test_without_the_csrf_token_an_upload_is_still_refused(client: Client) -> None:
    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.force_login(User.objects.create_user("eve", password="pw", is_staff=True))
    response = csrf_client.post(reverse("console:documents"), {"files": [SimpleUploadedFile("a.md", GOOD)]})
    assert response.status_code == 403 and not Document.objects.exists()

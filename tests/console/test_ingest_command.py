"""`manage.py ingest` as a user runs it: documents become console Documents; non-documents are skipped; exit codes; the guide."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.test import Client, override_settings

from console.engine import set_engine
from console.ingest import guide
from console.models import Document, IngestJob, IngestJobFile
from tests.support import make_engine, process_engine

# The job runs in this process and its progress is read from another thread: committed rows only.
pytestmark = pytest.mark.django_db(transaction=True)

PAGE = b"# Install\n\nInstall the agent with the package manager, then start the service.\n"
NESTED = b"# Zebras\n\nThe zebra migration finishes on Friday.\n"


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Any]:
    with process_engine(tmp_path / "data") as engine:
        yield engine


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    """A real docs folder: pages, a nested page, and what such folders also hold."""
    root = tmp_path / "site"
    (root / "guide").mkdir(parents=True)
    (root / "_static").mkdir()
    (root / "_templates").mkdir()
    (root / ".git").mkdir()
    (root / "index.md").write_bytes(PAGE)
    (root / "guide" / "zebras.md").write_bytes(NESTED)
    (root / "CNAME").write_text("docs.example.com\n")
    (root / "_static" / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    (root / "_static" / "site.css").write_text("body { color: red }\n")
    (root / "_templates" / "layout.jinja").write_text("{% block body %}{% endblock %}\n")
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (root / ".hidden.md").write_text("# Secret\n\nnot for the index\n")
    return root


def ingest(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("ingest", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_a_docs_folder_indexes_its_documents_skips_the_rest_and_exits_0(engine: Any, docs: Path) -> None:
    out, err = ingest(str(docs))
    lines = out.splitlines()
    assert "skipped    CNAME: not a document type" in lines
    assert "skipped    _static/logo.png: not a document type" in lines
    assert "skipped    _static/site.css: not a document type" in lines
    assert "skipped    _templates/layout.jinja: not a document type" in lines
    assert not any(".git" in line or ".hidden" in line for line in lines)
    assert "indexed    index.md: 1 chunks written" in lines
    assert "indexed    guide/zebras.md: 1 chunks written" in lines
    assert lines[-1:] != [""] and "failed" not in out.replace("0 failed", "")
    assert "{" not in out  # no log line in the human output
    # Console documents, named by their folder-relative path (never an absolute server path), with a job.
    names = sorted(Document.objects.values_list("original_filename", flat=True))
    assert names == ["guide/zebras.md", "index.md"]
    assert all(d.status == Document.Status.INDEXED for d in Document.objects.all())
    job = IngestJob.objects.get()
    assert job.state == IngestJob.State.SUCCEEDED and job.files.count() == 2
    zebras = Document.objects.get(original_filename="guide/zebras.md")
    assert engine.store.get_chunks([f"{zebras.engine_id}:0"])[f"{zebras.engine_id}:0"].source == "guide/zebras.md"


def test_a_second_run_writes_nothing_and_a_change_is_a_new_version(engine: Any, docs: Path) -> None:
    ingest(str(docs))
    out, _ = ingest(str(docs))
    assert "unchanged  index.md: skipped, already indexed" in out.splitlines()
    assert IngestJob.objects.count() == 1  # nothing to do: no job
    (docs / "index.md").write_bytes(PAGE + b"\nThen open the dashboard.\n")
    ingest(str(docs))
    versions = list(Document.objects.filter(original_filename="index.md").order_by("version"))
    assert [(d.version, d.status) for d in versions] == [(1, Document.Status.SUPERSEDED), (2, Document.Status.INDEXED)]


def test_a_failed_file_is_named_and_the_command_exits_1(engine: Any, docs: Path) -> None:
    (docs / "empty.md").write_bytes(b"")
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    out = io.StringIO()
    with pytest.raises(CommandError, match="2 failed"):
        call_command("ingest", str(docs), stdout=out, stderr=io.StringIO())
    text = out.getvalue()
    assert "failed     empty.md: empty file" in text.splitlines()
    assert any(line.startswith("failed     broken.pdf: ") for line in text.splitlines())
    assert "indexed    index.md" in text  # the good files still went in


def test_a_missing_path_fails_and_an_explicit_file_keeps_its_own_name(engine: Any, docs: Path, tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="1 failed"):
        call_command("ingest", str(tmp_path / "nope.md"), str(docs / "guide" / "zebras.md"),
                     stdout=(out := io.StringIO()), stderr=io.StringIO())
    assert f"failed     {tmp_path / 'nope.md'}: file not found" in out.getvalue()
    assert Document.objects.get().original_filename == "zebras.md"


def test_queue_hands_the_job_to_the_worker(engine: Any, docs: Path) -> None:
    out, _ = ingest("--queue", str(docs))
    job = IngestJob.objects.get()
    assert f"queued     job {job.pk}: 2 files for the worker · /console/jobs/{job.pk}/" in out.splitlines()
    assert job.state == IngestJob.State.QUEUED and job.task_id
    assert set(Document.objects.values_list("status", flat=True)) == {Document.Status.QUEUED}


def test_the_guide_is_marked_removed_in_one_action_and_never_comes_back(engine: Any, docs: Path) -> None:
    ingest("--guide", str(docs))
    assert set(Document.objects.values_list("is_guide", flat=True)) == {True}
    staff = Client()
    staff.force_login(User.objects.create_user("ada", password="pw", is_staff=True))
    page = staff.get("/console/documents/").content.decode()
    assert "Lorebot's guide is loaded" in page and "(2 documents" in page
    with override_settings(TASKS={"default": {"BACKEND": "django_tasks.backends.immediate.ImmediateBackend"}}):
        response = staff.post("/console/documents/guide/remove")
    job = IngestJob.objects.latest("pk")
    assert response["Location"] == f"/console/jobs/{job.pk}/"
    assert job.state == IngestJob.State.SUCCEEDED
    assert list(job.files.values_list("state", flat=True)) == [IngestJobFile.State.DELETED] * 2
    assert not Document.objects.exists()
    assert engine.retrieve("zebra migration", mode="dense").chunks == ()  # gone from answers
    assert engine.store.count() == len(engine.bm25) == 0
    out, _ = ingest("--guide", str(docs))  # what `make run` runs
    assert out.startswith("skipped: Lorebot's guide was removed in the console")
    assert not Document.objects.exists()
    assert "guide is loaded" not in staff.get("/console/documents/").content.decode()


def test_the_guide_can_be_turned_off_from_the_start(engine: Any, docs: Path) -> None:
    with override_settings(LOREBOT_GUIDE=False):
        out, _ = ingest("--guide", str(docs))
    assert out.strip() == "skipped: LOREBOT_GUIDE is off"
    assert not Document.objects.exists() and guide.why_guide_stays_out() == ""


def test_ask_says_why_it_fell_back_and_keeps_logs_out_of_stdout(engine: Any, docs: Path) -> None:
    ingest(str(docs))
    out, err = io.StringIO(), io.StringIO()
    # Groq configured at an address where nothing listens.
    set_engine(make_engine(Path(engine.settings.data_dir), groq_api_key="gsk-test", groq_base_url="http://127.0.0.1:9/",
                           groq_max_retries=0))
    call_command("ask", "When does the zebra migration finish?", stdout=out, stderr=err)
    call_command("ask", "When does the zebra migration finish?", "--json", stdout=(as_json := io.StringIO()),
                 stderr=io.StringIO())
    text = out.getvalue()
    assert "Extractive answer: Groq unreachable: Could not connect to Groq at http://127.0.0.1:9/" in text
    assert "{" not in text and err.getvalue() == ""
    answer = json.loads(as_json.getvalue())
    assert answer["fallback_reason"] == "llm_unavailable" and "Could not connect" in answer["fallback_detail"]

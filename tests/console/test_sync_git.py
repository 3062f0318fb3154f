"""A Git repository source through the whole pipeline, served over smart HTTP by `git http-backend` on 127.0.0.1:
each commit and a force-push in the next sync's counts, links to the file at the synced commit, and the bad cases
(a binary file, an encoding error, a wrong branch, an unreachable host, a repository needing credentials)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client

from console import chat
from console.models import Document, Source, SyncRun
from console.ops import warmup as warmups
from console.ops.logs import configure_logging
from console.ops.warmup import Warmup
from console.syncing import service
from console.syncing.runs import run_sync
from ragcore import Engine
from tests.console.conftest import CountingEmbedder, sync
from tests.fakes.git_http import PRIVATE_TOKEN, FakeGitHost, WorkRepo
from tests.support import ask_chat

pytestmark = pytest.mark.django_db

INSTALL = "# Install\n\nRun make install, then make run.\n"
KEEP = "# Style\n\nWrite short sentences in the docs.\n"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))


@pytest.fixture
def repo(tmp_path: Path) -> WorkRepo:
    work = WorkRepo(tmp_path / "work", tmp_path / "served" / "docs.git")
    work.commit({"README.md": "# Docs\n\nThe team's docs.\n", "guide/install.md": INSTALL, "guide/style.md": KEEP,
                 "img/logo.png": PNG, "Makefile": "all:\n\techo\n"}, "first")
    return work


@pytest.fixture
def host(tmp_path: Path) -> Iterator[FakeGitHost]:
    with FakeGitHost(tmp_path / "served") as fake:
        yield fake


def git_source(url: str, **config: Any) -> Source:
    return service.save_source(Source(name="docs", kind="git", config={"url": url, **config}))


def links(source: Source) -> dict[str, str]:
    return {name: url or "" for name, url in
            Document.objects.filter(source=source).values_list("original_filename", "origin_url")}


def test_each_commit_and_a_force_push_show_in_the_next_syncs_counts_and_links_follow_the_synced_commit(
    repo: WorkRepo, host: FakeGitHost, engine: Engine, embedder: CountingEmbedder
) -> None:
    source = git_source(f"{host.base_url}/docs.git", web="gitea")
    first = sync(source)
    # Only the document types Lorebot reads: the image and the Makefile are not even fetched.
    assert first.state == SyncRun.State.SUCCEEDED
    assert first.counts() == {"added": 3, "changed": 0, "removed": 0, "unchanged": 0, "failed": 0}
    head = repo.head()
    assert links(source) == {name: f"{host.base_url}/docs/src/commit/{head}/{name}"
                             for name in ("README.md", "guide/install.md", "guide/style.md")}
    assert head[:7] in first.description and "user:" not in first.description

    embedder.embedded = 0
    assert sync(source).counts() == {"added": 0, "changed": 0, "removed": 0, "unchanged": 3, "failed": 0}
    assert embedder.embedded == 0

    repo.commit({"guide/install.md": INSTALL + "\nOr use Docker.\n", "README.md": None, "faq.md": "# FAQ\n\nAsk.\n"})
    second = sync(source)
    assert second.counts() == {"added": 1, "changed": 1, "removed": 1, "unchanged": 1, "failed": 0}
    head = repo.head()
    # The unchanged file too links to the commit synced now, not to one the branch may have dropped.
    assert links(source) == {name: f"{host.base_url}/docs/src/commit/{head}/{name}"
                             for name in ("faq.md", "guide/install.md", "guide/style.md")}

    # A force-push: a new history holding the same style guide, a new page, and nothing else.
    head = repo.rewrite({"guide/style.md": KEEP, "guide/deploy.md": "# Deploy\n\nDeploys go out on Thursdays.\n"})
    embedder.embedded = 0
    pushed = sync(source)
    assert pushed.counts() == {"added": 1, "changed": 0, "removed": 2, "unchanged": 1, "failed": 0}
    assert links(source) == {name: f"{host.base_url}/docs/src/commit/{head}/{name}"
                             for name in ("guide/deploy.md", "guide/style.md")}
    assert embedder.embedded == pushed.embedded_chunks > 0  # only the new page was embedded
    assert set(engine.bm25.documents()) == {d.engine_id for d in Document.objects.filter(source=source)}
    assert engine.store.count() == len(engine.bm25)
    assert any("git-upload-pack" in request.path for request in host.requests)


@pytest.mark.django_db(transaction=True)
def test_a_question_is_answered_from_a_synced_file_linking_to_it_at_the_synced_commit(
    repo: WorkRepo, host: FakeGitHost, engine: Engine
) -> None:
    source = git_source(f"{host.base_url}/docs.git", web="gitea")
    sync(source)
    doc = Document.objects.get(source=source, original_filename="guide/install.md")
    events = ask_chat(surface="web", conversation_key="g1", user_key="u1", text="How do I install it with make?")
    cited = next(c for e in events if isinstance(e, chat.AnswerCitations) for c in e.items
                 if c.document_id == doc.engine_id)
    assert cited.origin_url == f"{host.base_url}/docs/src/commit/{repo.head()}/guide/install.md"
    assert doc.synced_at is not None and cited.synced_at == doc.synced_at.isoformat()


def test_a_binary_file_and_an_encoding_error_fail_alone_naming_the_file(
    repo: WorkRepo, host: FakeGitHost, engine: Engine
) -> None:
    repo.commit({"notes/latin.txt": b"\xef\xbb\xbfCaf\xe9 menu\n"})  # a UTF-8 BOM, then a Latin-1 byte
    source = git_source(f"{host.base_url}/docs.git", include=["*.md", "*.png", "*.txt"])
    run = sync(source)
    assert run.state == SyncRun.State.PARTIALLY_FAILED
    assert run.counts() == {"added": 3, "changed": 0, "removed": 0, "unchanged": 0, "failed": 2}
    failures = {f.key: f.message for f in run.failures.all()}
    assert failures["img/logo.png"] == "img/logo.png: unsupported file type: binary content (looks like a PNG image)"
    assert failures["notes/latin.txt"].startswith("notes/latin.txt: not valid UTF-8 text")


def test_a_wrong_branch_or_an_unreachable_host_fails_the_sync_naming_it_and_removes_nothing(
    repo: WorkRepo, host: FakeGitHost, engine: Engine
) -> None:
    source = git_source(f"{host.base_url}/docs.git")
    assert sync(source).counts()["added"] == 3
    source.config = {**source.config, "branch": "relase"}
    source.save()
    run = sync(source)
    assert run.state == SyncRun.State.FAILED and "no branch 'relase'" in run.error
    source.config = {"url": "http://127.0.0.1:9/docs.git", "timeout_seconds": 30}
    source.save()
    run = sync(source)
    assert run.state == SyncRun.State.FAILED and "http://127.0.0.1:9/docs.git" in run.error
    assert Document.objects.filter(source=source).count() == 3


def test_a_repository_needing_credentials_fails_with_a_hint_and_its_token_is_never_in_logs_or_pages(
    tmp_path: Path, host: FakeGitHost, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    private = WorkRepo(tmp_path / "work-private", tmp_path / "served" / "private" / "team.git")
    private.commit({"plans.md": "# Plans\n\nShip the sync.\n"})
    port = host.server.server_address[1]
    buffer = io.StringIO()
    configure_logging("json", "DEBUG", stream=buffer)
    try:
        source = git_source(f"http://127.0.0.1:{port}/private/team.git")
        run = sync(source)
        assert run.state == SyncRun.State.FAILED and "needs credentials" in run.error

        expired = f"{PRIVATE_TOKEN}-expired"
        source.config = {"url": f"http://user:{expired}@127.0.0.1:{port}/private/team.git"}
        source.save()
        run = sync(source)
        assert run.state == SyncRun.State.FAILED and "user:***@" in run.error

        source.config = {"url": f"http://user:{PRIVATE_TOKEN}@127.0.0.1:{port}/private/team.git"}
        source.save()
        run = sync(source)
        assert run.state == SyncRun.State.SUCCEEDED and run.added == 1
        source.config = {"url": f"http://user:{expired}@127.0.0.1:{port}/private/team.git"}  # failing, for the pages
        source.save()
        sync(source)
    finally:
        configure_logging(settings.LOG_FORMAT, settings.LOG_LEVEL)
    logged = buffer.getvalue()
    assert [json.loads(line)["event"] for line in logged.splitlines()].count("sync.failed") == 3

    staff = Client()
    staff.force_login(User.objects.create_superuser("root", "root@example.com", "pw"))
    fresh = Warmup()
    monkeypatch.setattr(warmups, "warmup", fresh)
    fresh.start()
    assert fresh.done.wait(30)
    ready = Client().get("/health/ready").content.decode()
    assert "failed syncs" in ready and "docs" in ready
    pages = [staff.get(url).content.decode() for url in (
        "/console/sources/", f"/console/sources/{source.pk}/", f"/console/sources/{source.pk}/edit", "/console/",
        f"/admin/console/source/{source.pk}/change/", "/admin/console/syncrun/",
        f"/admin/console/syncrun/{run.pk}/change/", "/admin/console/syncitem/")]
    assert "user:***@" in pages[1]  # the settings, and the failed run's error, masked
    for text in (logged, ready, *pages):
        assert PRIVATE_TOKEN not in text


def test_a_staff_user_adds_a_git_source_in_the_console_syncs_it_now_and_sees_its_counts(
    repo: WorkRepo, engine: Engine, django_capture_on_commit_callbacks: Any
) -> None:
    staff = Client()
    staff.force_login(User.objects.create_user("ada", is_staff=True))
    form = {"name": "docs", "kind": "git", "git-url": f"file://{repo.served}", "git-branch": "main",
            "git-exclude": "guide/style.md\n", "schedule": "every", "every": "30", "unit": "minutes"}
    response = staff.post("/console/sources/add", {**form, "git-url": str(repo.served)})  # a bare path is refused
    assert "file:///path/to/repo" in response.context["form"].errors["git-url"][0]
    response = staff.post("/console/sources/add", form)
    source = Source.objects.get(name="docs")
    assert response.status_code == 302 and source.every_minutes == 30 and source.next_sync_at is not None
    assert source.config == {"url": f"file://{repo.served}", "branch": "main", "exclude": ["guide/style.md"]}
    with django_capture_on_commit_callbacks(execute=True):
        staff.post(f"/console/sources/{source.pk}/sync")
    run_sync(SyncRun.objects.get(source=source).pk)
    page = staff.get(f"/console/sources/{source.pk}/").content.decode()
    assert f"git file://{repo.served} @ main ({repo.head()[:7]})" in page and "every 30 minutes" in page
    run = SyncRun.objects.get(source=source)
    assert run.counts() == {"added": 2, "changed": 0, "removed": 0, "unchanged": 0, "failed": 0}

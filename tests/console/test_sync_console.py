"""Sources in the console (staff only), `manage.py sync`, the dashboard's freshness and /health/ready's detail."""

from __future__ import annotations

from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from console.models import Document, Source, SyncRun
from console.ops import warmup as warmups
from console.ops.health import readiness
from console.ops.warmup import Warmup
from console.syncing.runs import run_sync

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client() -> Client:
    client = Client()
    client.force_login(User.objects.create_user("ada", password="pw", is_staff=True))
    return client


def add_folder(client: Client, name: str, path: Path, **extra: str) -> Any:
    data = {"name": name, "kind": "folder", "folder-path": str(path), "schedule": "manual", "every": "1",
            "unit": "hours", **extra}
    return client.post("/console/sources/add", data)


def test_the_pages_are_for_staff_only(client: Client, engine: Any) -> None:
    assert client.get("/console/sources/").status_code == 302  # to the login page
    User.objects.create_user("bob", password="pw")
    client.login(username="bob", password="pw")
    assert client.get("/console/sources/").status_code == 403
    assert client.post("/console/sources/add", {"name": "x"}).status_code == 403


def test_a_staff_user_adds_a_folder_syncs_it_and_sees_each_runs_counts_and_failures(
    staff_client: Client, folder: Path, engine: Any, django_capture_on_commit_callbacks: Any
) -> None:
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4 broken")
    response = add_folder(staff_client, "handbook", folder, **{"folder-exclude": "drafts/\n"})
    source = Source.objects.get(name="handbook")
    assert response.status_code == 302 and response["Location"] == f"/console/sources/{source.pk}/"
    assert source.config == {"path": str(folder), "exclude": ["drafts/"]} and source.every_minutes is None

    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(f"/console/sources/{source.pk}/sync", follow=True)
    assert "Sync of handbook queued" in response.content.decode()
    run = SyncRun.objects.get(source=source)
    again = staff_client.post(f"/console/sources/{source.pk}/sync", follow=True)  # still queued: refused
    assert "already syncing" in again.content.decode()
    run_sync(run.pk)

    page = staff_client.get(f"/console/sources/{source.pk}/").content.decode()
    assert "partially failed" in page
    assert "broken.pdf" in page and "3</td>" in page  # the failure's error, and three added
    listing = staff_client.get("/console/sources/").content.decode()
    assert "handbook" in listing and "ago" in listing and "3 added" in listing
    dashboard = staff_client.get("/console/").content.decode()
    assert "data-dashboard-sources" in dashboard and "⚠ partially failed" in dashboard


def test_bad_settings_are_shown_on_their_field_and_nothing_is_saved(staff_client: Client, engine: Any,
                                                                    tmp_path: Path) -> None:
    response = add_folder(staff_client, "nowhere", tmp_path / "missing")
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert "is not a folder on this server" in errors["folder-path"][0]
    response = add_folder(staff_client, "relative", Path("docs"))
    assert "must be an absolute path" in response.context["form"].errors["folder-path"][0]
    response = add_folder(staff_client, "", tmp_path, schedule="every", every="")
    assert set(response.context["form"].errors) >= {"name", "every"}
    assert not Source.objects.exists()


def test_edit_pause_resume_and_schedule(staff_client: Client, folder: Path, engine: Any) -> None:
    add_folder(staff_client, "handbook", folder)
    source = Source.objects.get()
    response = staff_client.post(f"/console/sources/{source.pk}/edit", {
        "name": "handbook", "kind": "folder", "folder-path": str(folder), "folder-include": "*.md",
        "schedule": "every", "every": "2", "unit": "hours"})
    assert response.status_code == 302
    source.refresh_from_db()
    assert source.every_minutes == 120 and source.config["include"] == ["*.md"] and source.next_sync_at is not None
    assert "every 2 hours" in staff_client.get(f"/console/sources/{source.pk}/").content.decode()
    staff_client.post(f"/console/sources/{source.pk}/pause")
    source.refresh_from_db()
    assert source.paused and source.next_sync_at is None
    staff_client.post(f"/console/sources/{source.pk}/resume")
    source.refresh_from_db()
    assert not source.paused and source.next_sync_at is not None


def test_a_git_token_in_the_url_is_never_shown_and_survives_an_edit(staff_client: Client, engine: Any) -> None:
    source = Source.objects.create(name="repo", kind="git", config={"url": "https://bot:s3cr3t-token@git.example/r.git"})
    for url in (f"/console/sources/{source.pk}/", f"/console/sources/{source.pk}/edit", "/console/sources/"):
        assert "s3cr3t-token" not in staff_client.get(url).content.decode()
    assert "bot:***@git.example" in staff_client.get(f"/console/sources/{source.pk}/edit").content.decode()
    from console.syncing.forms import SourceForm

    form = SourceForm({"name": "repo", "kind": "git", "git-url": "https://bot:***@git.example/r.git",
                       "schedule": "manual"}, instance=source)
    form.is_valid()
    assert form.cleaned_data["config"]["url"] == "https://bot:s3cr3t-token@git.example/r.git"


def test_a_token_typed_into_a_new_source_is_not_shown_again_when_the_form_has_an_error(
    staff_client: Client, engine: Any
) -> None:
    form = {"name": "repo", "kind": "git", "git-url": "https://bot:s3cr3t-token@git.example/r.git",
            "git-branch": "-x", "schedule": "manual"}
    response = staff_client.post("/console/sources/add", form)
    page = response.content.decode()
    assert response.status_code == 200 and "not a branch name" in page
    assert "s3cr3t-token" not in page and 'value="https://bot:***@git.example/r.git"' in page
    # Sent back as the page showed it: nothing stored to put back, so it asks for the token again.
    response = staff_client.post("/console/sources/add", {**form, "git-url": "https://bot:***@git.example/r.git",
                                                          "git-branch": "main"})
    assert "Type the token again" in response.context["form"].errors["git-url"][0]
    assert not Source.objects.exists()
    response = staff_client.post("/console/sources/add", {**form, "git-branch": "main"})
    assert response.status_code == 302
    assert Source.objects.get().config["url"] == "https://bot:s3cr3t-token@git.example/r.git"


def test_deleting_a_source_from_the_console_removes_its_documents(
    staff_client: Client, folder: Path, engine: Any, django_capture_on_commit_callbacks: Any
) -> None:
    add_folder(staff_client, "handbook", folder)
    source = Source.objects.get()
    run_sync(SyncRun.objects.create(source=source).pk)
    assert "3 documents" in staff_client.get(f"/console/sources/{source.pk}/delete").content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(f"/console/sources/{source.pk}/delete", follow=True)
    assert "being removed from both indexes" in response.content.decode()
    assert not Source.objects.exists()
    assert set(Document.objects.values_list("status", flat=True)) == {Document.Status.DELETING}


def test_the_sync_command_syncs_by_name_or_id_and_prints_a_summary(folder: Path, source: Source) -> None:
    out = StringIO()
    assert call_command("sync", "handbook", stdout=out) == "1 of 1 source synced"
    assert "handbook: succeeded · 3 added, 0 changed, 0 removed, 0 unchanged, 0 failed" in out.getvalue()
    (folder / "notes.txt").unlink()
    out = StringIO()
    call_command("sync", str(source.pk), stdout=out)
    assert "1 removed, 2 unchanged" in out.getvalue()
    assert SyncRun.objects.filter(trigger=SyncRun.Trigger.COMMAND).count() == 2
    with pytest.raises(CommandError, match="no source named 'nope'"):
        call_command("sync", "nope", stdout=StringIO())


def test_the_sync_command_without_a_source_syncs_the_due_ones_and_fails_loudly(folder: Path, source: Source) -> None:
    assert call_command("sync", stdout=StringIO()) == "no source is due"
    source.every_minutes = 60
    source.save()
    Source.objects.filter(pk=source.pk).update(next_sync_at=source.created_at)
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4 broken")
    out = StringIO()
    with pytest.raises(CommandError, match="0 of 1 source synced; 1 failed"):
        call_command("sync", stdout=out)
    assert "failed  broken.pdf:" in out.getvalue()
    source.refresh_from_db()
    assert source.next_sync_at is not None and source.next_sync_at > source.created_at


def test_readiness_names_a_failed_source_without_failing(folder: Path, source: Source, engine: Any,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    fresh = Warmup()
    monkeypatch.setattr(warmups, "warmup", fresh)
    fresh.start()
    assert fresh.done.wait(30)
    run_sync(SyncRun.objects.create(source=source).pk)
    assert readiness()[1]["checks"]["sources"]["status"] == "ok"
    folder.rename(folder.with_name("gone"))
    run_sync(SyncRun.objects.create(source=source).pk)
    response = Client().get("/health/ready")
    body = response.json()
    assert response.status_code == 200 and body["status"] == "ready"
    check = body["checks"]["sources"]
    assert check["status"] == "failed syncs"
    assert check["detail"]["failed"][0]["source"] == "handbook"
    assert "is not a folder" in check["detail"]["failed"][0]["error"]


def test_a_staff_user_adds_a_web_site_source_with_its_settings_checked_by_the_web_kind(
    staff_client: Client, engine: Any
) -> None:
    data = {"name": "site", "kind": "web", "web-start_url": "ftp://docs.example/", "web-delay_seconds": "0",
            "schedule": "every", "every": "6", "unit": "hours"}
    response = staff_client.post("/console/sources/add", data)
    assert response.status_code == 200
    assert "must be an http:// or https:// URL" in response.context["form"].errors["web-start_url"][0]
    assert not Source.objects.exists()

    response = staff_client.post("/console/sources/add", {**data, "web-start_url": "https://docs.example/",
                                                          "web-page_limit": "50", "web-max_page_bytes": "200000",
                                                          "web-timeout_seconds": "5"})
    source = Source.objects.get(name="site")
    assert response.status_code == 302 and source.kind == "web" and source.every_minutes == 360
    assert source.config["start_url"] == "https://docs.example/" and source.config["page_limit"] == 50
    # Every setting the README documents can be set from the console.
    assert source.config["max_page_bytes"] == 200000 and source.config["timeout_seconds"] == 5


class Terminal(StringIO):
    """What a person's terminal is to tqdm: a stream that says it is a TTY."""

    def isatty(self) -> bool:
        return True


def test_the_sync_command_shows_a_progress_bar_on_a_terminal_and_none_in_a_log(source: Source) -> None:
    terminal = Terminal()
    call_command("sync", "handbook", stdout=StringIO(), stderr=terminal)
    assert "handbook: 100%" in terminal.getvalue() and "3/3" in terminal.getvalue()
    log = StringIO()  # not a terminal: a cron job's log gets no carriage-return bars
    call_command("sync", "handbook", stdout=StringIO(), stderr=log)
    assert "%|" not in log.getvalue()


def test_a_source_page_shows_when_its_last_sync_ran_how_long_it_took_and_the_dashboard_its_freshness(
    staff_client: Client, source: Source
) -> None:
    run = SyncRun.objects.get(pk=run_sync(SyncRun.objects.create(source=source).pk)["run_id"])
    assert run.seconds is not None
    page = staff_client.get(f"/console/sources/{source.pk}/").content.decode()
    assert f'data-run="{run.pk}"' in page and f"{run.seconds:.1f} s" in page
    assert "(0\xa0minutes ago)" in page  # "Last synced", from the run that just finished
    dashboard = staff_client.get("/console/").content.decode()
    row = dashboard.split('data-source="handbook"', 1)[1].split("</tr>", 1)[0]
    assert "0\xa0minutes ago" in row and "succeeded" in row and "3 added" in row and "data-failed" not in row


def test_the_django_admin_lists_sources_syncs_with_their_failures_and_items_read_only(
    folder: Path, source: Source, engine: Any
) -> None:
    (folder / "empty.md").write_bytes(b"")
    run_sync(SyncRun.objects.create(source=source).pk)
    run = SyncRun.objects.get(source=source)
    repo = Source.objects.create(name="repo", kind="git", config={"url": "https://bot:s3cr3t-token@git.example/r.git"})
    admin = Client()
    admin.force_login(User.objects.create_superuser("root", "root@example.com", "pw"))
    sources = admin.get("/admin/console/source/").content.decode()
    assert "handbook" in sources and "repo" in sources
    assert "s3cr3t-token" not in admin.get(f"/admin/console/source/{repo.pk}/change/").content.decode()
    detail = admin.get(f"/admin/console/syncrun/{run.pk}/change/").content.decode()
    assert "empty.md: empty file" in detail  # the run's failure, inline
    items = admin.get("/admin/console/syncitem/").content.decode()
    assert "ops/rotation.md" in items and "deploy.md" in items
    for model in ("source", "syncrun", "syncitem", "syncfailure"):
        assert admin.get(f"/admin/console/{model}/add/").status_code in (403, 404), model


def test_metrics_count_sync_runs_items_per_outcome_and_sync_duration(folder: Path, source: Source) -> None:
    from tests.console.test_metrics import scrape, value

    before = scrape()
    run_sync(SyncRun.objects.create(source=source).pk)
    (folder / "notes.txt").unlink()
    (folder / "empty.md").write_bytes(b"")
    run_sync(SyncRun.objects.create(source=source).pk)
    after = scrape()

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("rag_sync_runs_total", kind="folder", outcome="succeeded") == 1
    assert grew("rag_sync_runs_total", kind="folder", outcome="partially_failed") == 1
    assert grew("rag_sync_items_total", kind="folder", outcome="added") == 3
    assert grew("rag_sync_items_total", kind="folder", outcome="unchanged") == 2
    assert grew("rag_sync_items_total", kind="folder", outcome="removed") == 1
    assert grew("rag_sync_items_total", kind="folder", outcome="failed") == 1
    assert grew("rag_sync_duration_seconds_count", kind="folder") == 2
    assert grew("rag_sync_duration_seconds_sum", kind="folder") > 0


def test_a_new_kind_is_one_module_and_one_line_in_kinds_and_the_console_asks_for_its_settings(
    staff_client: Client, engine: Any, monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    from ragcore import connectors

    monkeypatch.setitem(connectors.KINDS, "notes", "tests.console.sync_kind:NotesConnector")
    form = staff_client.get("/console/sources/add?kind=notes").content.decode()
    assert "Notes typed in" in form and 'name="notes-notes"' in form and "One per line: name = text." in form
    data = {"name": "notes", "kind": "notes", "schedule": "manual", "notes-notes": "no equals sign"}
    response = staff_client.post("/console/sources/add", data)  # its own check, shown on its own field
    assert response.context["form"].errors["notes-notes"] == ["each line is name = text"]
    response = staff_client.post("/console/sources/add", {**data, "notes-notes": "rota = The rota changes on Mondays."})
    source = Source.objects.get(name="notes")
    assert response.status_code == 302 and source.config == {"notes": ["rota = The rota changes on Mondays."]}
    with django_capture_on_commit_callbacks(execute=True):
        staff_client.post(f"/console/sources/{source.pk}/sync")
    run_sync(SyncRun.objects.get(source=source).pk)
    assert SyncRun.objects.get(source=source).counts()["added"] == 1
    page = staff_client.get(f"/console/sources/{source.pk}/").content.decode()
    assert "<dd>Notes typed in</dd>" in page and "1 notes" in page


def test_deleting_a_source_is_refused_while_it_syncs_and_drops_a_queued_sync(
    staff_client: Client, source: Source, django_capture_on_commit_callbacks: Any
) -> None:
    run = SyncRun.objects.create(source=source)
    run.start("task-1")
    response = staff_client.post(f"/console/sources/{source.pk}/delete", follow=True)
    assert "handbook is syncing now; delete it once the sync has finished" in response.content.decode()
    assert Source.objects.filter(pk=source.pk).exists()
    run.finish()
    queued = SyncRun.objects.create(source=source)
    with django_capture_on_commit_callbacks(execute=True):
        staff_client.post(f"/console/sources/{source.pk}/delete")
    assert not Source.objects.exists() and not SyncRun.objects.filter(pk=queued.pk).exists()
    assert run_sync(queued.pk)["state"] == "skipped"  # its task, if a worker takes it, does nothing

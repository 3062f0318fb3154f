"""`manage.py backup` and `manage.py restore`: the same answers after losing everything, and clear refusals.

The round trip runs real `manage.py` processes on SQLite, and again on PostgreSQL when DATABASE_URL is
set (a database of its own, created and dropped by the `site` fixture of the worker-crash test).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from tests.console.test_reconcile import FILES
from tests.console.test_worker_crash import REPO, Site, site  # noqa: F401  (site is a fixture)

# The refusal tests point DATABASES at a temporary file, which Django warns about; that is the point.
pytestmark = pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")

QUESTIONS = ["How often do I rotate the API key?", "How do rollbacks work?"]

SUBMIT = (  # one process migrates and uploads through the console's upload path
    "import json\n"
    "from django.core.management import call_command\n"
    "call_command('migrate', '--noinput', verbosity=0)\n"
    "from django.core.files.uploadedfile import SimpleUploadedFile\n"
    "from console.ingest import uploads\n"
    "files = {files!r}\n"
    "print('JOB', uploads.submit_uploads([SimpleUploadedFile(n, d) for n, d in files.items()], None).job.pk)\n"
)


def manage(site: Site, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=REPO, env=site.env, capture_output=True,
                          text=True, timeout=180)
    if ok:
        assert done.returncode == 0, done.stderr[-3000:]
    return done


ASK = (  # every question through the chat service in one process: the model loads once
    "import json, uuid\n"
    "from console import chat\n"
    "from tests.support import answer_text, ask_chat\n"
    "answers = []\n"
    "for question in {questions!r}:\n"
    "    events = ask_chat(surface='cli', conversation_key=uuid.uuid4().hex, user_key='ops', text=question)\n"
    "    done = next(e for e in events if isinstance(e, chat.AnswerDone))\n"
    "    citations = next(e.items for e in events if isinstance(e, chat.AnswerCitations))\n"
    "    answers.append({{'answer': answer_text(events), 'citations': [c.to_dict() for c in citations],\n"
    "                    'extractive': done.extractive}})\n"
    "print('ANSWERS', json.dumps(answers))\n"
)


def ask_all(site: Site) -> list[dict[str, Any]]:
    out = manage(site, "shell", "-c", ASK.format(questions=QUESTIONS)).stdout
    return json.loads(out.split("ANSWERS", 1)[1])


def recreate_database(site: Site) -> None:
    """PostgreSQL's "data folder": drop the database and create it empty."""
    import psycopg

    server, name = site.db_url.rsplit("/", 1)
    with psycopg.connect(server + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


@pytest.mark.slow
def test_a_restored_backup_answers_the_same_and_reconcile_heals_a_lost_index(site: Site, tmp_path: Path) -> None:
    site.env.update(DJANGO_SETTINGS_MODULE="console.settings")  # no slow files: nothing is killed here
    manage(site, "shell", "-c", SUBMIT.format(files=FILES))
    manage(site, "db_worker", "--batch", "--no-startup-delay")
    before = ask_all(site)
    assert all(a["citations"] for a in before)
    assert {c["title"] for a in before for c in a["citations"]} >= {"Handbook", "Deploy"}

    archive = tmp_path / "lorebot.tar.gz"
    assert "backup written" in manage(site, "backup", str(archive)).stdout
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        names = set(tar.getnames())
    assert manifest["format"] == "lorebot-backup" and manifest["database"]["vendor"] == ("postgresql" if site.db_url else "sqlite")
    assert manifest["vectors"]["count"] == manifest["bm25"]["chunks"] > 0 and manifest["bm25"]["documents"] == 3
    assert manifest["raw"]["files"] == 3 and names == {"manifest.json", *manifest["files"]}
    assert {f"raw/{hashlib.sha256(d).hexdigest()}" for d in FILES.values()} <= names

    # Lose everything: the data folder (and the PostgreSQL database), then restore into the void.
    shutil.rmtree(site.data)
    if site.db_url:
        recreate_database(site)
    restored = manage(site, "restore", str(archive)).stdout
    assert "3 indexed documents checked, 0 broken" in restored
    assert ask_all(site) == before

    refused = manage(site, "restore", str(archive), ok=False)
    assert refused.returncode == 1 and "refusing to overwrite existing data" in refused.stderr
    assert "use --force" in refused.stderr

    # Both indexes lost, the database and the originals kept: reconcile re-queues every document from raw/.
    shutil.rmtree(site.data / "chroma_store")
    shutil.rmtree(site.data / "bm25_index")
    assert "3 broken, 0 stuck; job" in manage(site, "reconcile").stdout
    manage(site, "db_worker", "--batch", "--no-startup-delay")
    assert ask_all(site) == before
    assert "0 broken" in manage(site, "reconcile", "--dry-run").stdout


# -- archives that must be refused, before anything is touched --------------------------------------


def _tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _manifest(files: dict[str, bytes], **overrides: Any) -> bytes:
    manifest = {"format": "lorebot-backup", "format_version": 1, "created_at": "2026-01-01T00:00:00+00:00",
                "database": {"vendor": "sqlite", "file": "database/lorebot.sqlite3"},
                "vectors": {"count": 0, "metadata": {}}, "bm25": {"documents": 0, "chunks": 0}, "raw": {"files": 0},
                "files": {n: {"sha256": hashlib.sha256(d).hexdigest(), "size": len(d)} for n, d in files.items()}}
    return json.dumps({**manifest, **overrides}).encode()


def restore_error(archive: Path) -> str:
    with pytest.raises(CommandError) as refused:
        call_command("restore", str(archive), stdout=io.StringIO())
    return str(refused.value)


@pytest.fixture
def empty_data(tmp_path: Path) -> Iterator[Path]:
    from django.test import override_settings

    data = tmp_path / "data"
    database = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": data / "lorebot.sqlite3"}}
    with override_settings(RAG_DATA_DIR=data, DATABASES=database):  # never the developer's own data
        yield data


def test_it_refuses_a_file_that_is_not_an_archive(empty_data: Path, tmp_path: Path) -> None:
    bogus = tmp_path / "notes.tar.gz"
    bogus.write_text("just some text")
    assert "is not a readable archive" in restore_error(bogus)
    assert "no such file" in restore_error(tmp_path / "missing.tar.gz")


def test_it_refuses_a_truncated_archive(empty_data: Path, tmp_path: Path) -> None:
    whole = _tar(tmp_path / "whole.tar.gz", {"manifest.json": _manifest({}), "raw/x": b"x" * 100_000})
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(whole.read_bytes()[:200])
    assert "is not a readable archive" in restore_error(cut)


def test_it_refuses_a_foreign_archive(empty_data: Path, tmp_path: Path) -> None:
    assert "it is not a Lorebot backup" in restore_error(_tar(tmp_path / "a.tar.gz", {"photo.jpg": b"\xff\xd8"}))
    other = _tar(tmp_path / "b.tar.gz", {"manifest.json": json.dumps({"format": "something-else"}).encode()})
    assert "is not a Lorebot backup" in restore_error(other)
    future = _tar(tmp_path / "c.tar.gz", {"manifest.json": _manifest({}, format_version=99)})
    assert "backup format 99" in restore_error(future)


def test_it_refuses_a_file_that_fails_its_checksum(empty_data: Path, tmp_path: Path) -> None:
    files = {"raw/abc": b"the original"}
    tampered = _tar(tmp_path / "t.tar.gz", {"manifest.json": _manifest(files), "raw/abc": b"the 0riginal"})
    assert "raw/abc fails its checksum; the archive is corrupt" in restore_error(tampered)
    short = _tar(tmp_path / "s.tar.gz", {"manifest.json": _manifest(files)})
    assert "does not match its manifest" in restore_error(short)
    assert not (empty_data / "raw").exists() and not (empty_data / "lorebot.sqlite3").exists()


def test_it_refuses_members_that_escape_the_folder(empty_data: Path, tmp_path: Path) -> None:
    escaping = _tar(tmp_path / "e.tar.gz", {"manifest.json": _manifest({}), "../../evil": b"x"})
    assert "is not a readable archive" in restore_error(escaping)
    assert not (tmp_path / "evil").exists()


def test_a_flipped_byte_anywhere_is_caught(empty_data: Path, tmp_path: Path) -> None:
    """gzip's CRC is only checked at the very end, which tar may never read: the manifest's checksums are."""
    files = {"raw/big": hashlib.sha256(b"seed").digest() * 4000}
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in {"manifest.json": _manifest(files), **files}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    packed = gzip.compress(raw.getvalue())
    for at in (len(packed) // 3, len(packed) // 2, 2 * len(packed) // 3):  # inside the compressed data
        broken = bytearray(packed)
        broken[at] ^= 0xFF
        archive = tmp_path / f"g{at}.tar.gz"
        archive.write_bytes(bytes(broken))
        assert re.search(r"is not a readable archive|fails its checksum|has no readable|does not match its manifest", restore_error(archive))
    assert not (empty_data / "raw").exists()

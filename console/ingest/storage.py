"""The originals of uploaded documents, named by their sha256 checksum, behind one seam.

Where they live is `RAG_ORIGINALS_STORAGE`: `folder` (data/raw/, one host), `database` (the
`console_original` table, so a worker on any host reads an upload any web host received), or the dotted
path of a Django storage class. Empty picks `database` when the deployment is shared (PostgreSQL and a
Chroma server), else `folder`. Every reader and writer goes through these functions, never a path.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import unicodedata
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings
from django.core.files import File
from django.core.files.storage import FileSystemStorage, Storage
from django.utils.module_loading import import_string

DATABASE_STORAGE = "console.ingest.dbstorage.DatabaseStorage"
MAX_NAME_CHARS = 200
_UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f/\\:]")  # control characters and path separators


class TooLarge(Exception):
    """The upload went past the size limit while it was being stored."""


def sanitize_filename(name: str) -> str:
    """A display-safe base name: no directories, control characters or separators; capped in length."""
    name = unicodedata.normalize("NFC", str(name or ""))
    name = re.split(r"[/\\]", name)[-1]  # the browser may send a full Windows or POSIX path
    name = _UNSAFE_NAME.sub("", name).strip().lstrip(".").strip()
    if not name:
        return "upload"
    if len(name) > MAX_NAME_CHARS:
        stem, dot, ext = name.rpartition(".")
        ext = ext if dot and len(ext) <= 10 else ""
        name = (stem if ext else name)[: MAX_NAME_CHARS - len(ext) - 1].rstrip() + (f".{ext}" if ext else "")
    return name


def sanitize_path(name: str) -> str:
    """A display-safe path within an upload ("team-a/README.md"): each folder and the name cleaned like
    `sanitize_filename` but not shortened, with no empty, "." or ".." parts and no drive letter."""
    name = unicodedata.normalize("NFC", str(name or ""))
    parts = [_UNSAFE_NAME.sub("", part).strip().lstrip(".").strip() for part in re.split(r"[/\\]", name)]
    if parts and re.fullmatch(r"[A-Za-z]:", re.split(r"[/\\]", name)[0].strip()):
        parts = parts[1:]  # "C:\\Users\\…" from an old browser: the drive is no part of the upload
    parts = [part for part in parts if part]
    return "/".join(parts) or "upload"


def free_bytes() -> int:
    """Free space on the disk that holds the data folder (originals, indexes, the SQLite database)."""
    folder = Path(settings.RAG_DATA_DIR)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return shutil.disk_usage(folder).free


def disk_full_reason() -> str:
    """Why the data folder's disk counts as full (under INGEST_MIN_FREE_MB free), or "" when it does not."""
    free = free_bytes()
    if free >= settings.INGEST_MIN_FREE_MB * 1024 * 1024:
        return ""
    return f"the disk holding {settings.RAG_DATA_DIR} is full: {free // (1024 * 1024)} MB free, under INGEST_MIN_FREE_MB ({settings.INGEST_MIN_FREE_MB} MB)"


def originals_kind() -> str:
    """"folder", "database", or the dotted path of the configured Django storage class."""
    chosen = settings.RAG_ORIGINALS_STORAGE
    if chosen:
        return str(chosen)
    shared = "postgresql" in settings.DATABASES["default"]["ENGINE"] and bool(settings.CHROMA_URL)
    return "database" if shared else "folder"


def originals() -> Storage:
    """The storage the originals live in (built per call: tests move RAG_DATA_DIR)."""
    kind = originals_kind()
    if kind == "folder":
        return FileSystemStorage(location=raw_dir())
    # Named by dotted path, as Django's STORAGES names backends: the backend imports the models, which
    # import this module.
    storage: Storage = import_string(DATABASE_STORAGE if kind == "database" else kind)()
    return storage


def location() -> str:
    """Where the originals are, for readiness and for messages that say what this host cannot see."""
    kind = originals_kind()
    if kind == "folder":
        return f"folder {raw_dir()}"
    if kind == "database":
        return "database table console_original"
    return f"storage {kind}"


def raw_dir() -> Path:
    return Path(settings.RAG_DATA_DIR) / "raw"


def _is_folder() -> bool:
    return originals_kind() == "folder"


def store_temp(pieces: Iterable[bytes], limit: int) -> tuple[Path, bytes, str]:
    """Streams the upload into a temp file (beside data/raw/ for the folder, so keeping it is a rename),
    stopping as soon as it passes the limit."""
    folder = raw_dir() if _is_folder() else Path(settings.RAG_DATA_DIR) / "tmp"
    folder.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(dir=folder, prefix=".upload-")
    temp = Path(temp_name)
    digest = hashlib.sha256()
    buffer = bytearray()
    try:
        with os.fdopen(fd, "wb") as out:
            for piece in pieces:
                buffer += piece
                if len(buffer) > limit:  # the declared size may lie; never keep more than the limit
                    raise TooLarge
                digest.update(piece)
                out.write(piece)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return temp, bytes(buffer), digest.hexdigest()


def keep_original(temp: Path, checksum: str) -> None:
    """Keeps the streamed upload as the original of `checksum` (once: the same name means the same bytes)."""
    if _is_folder():
        target = raw_dir() / checksum
        if not target.exists():
            os.replace(temp, target)  # atomic: readers never see half a file
        else:
            temp.unlink(missing_ok=True)
        return
    try:
        store = originals()
        if not store.exists(checksum):
            with temp.open("rb") as f:
                store.save(checksum, File(f, name=checksum))
    finally:
        temp.unlink(missing_ok=True)


def save_original(checksum: str, data: bytes) -> None:
    """Stores bytes as an original (a restore, a copy from another storage)."""
    store = originals()
    if store.exists(checksum):
        return
    if _is_folder():
        raw_dir().mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=raw_dir(), prefix=".restore-")
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(temp, raw_dir() / checksum)
        return
    from django.core.files.base import ContentFile

    store.save(checksum, ContentFile(data, name=checksum))


def has_original(checksum: str) -> bool:
    return bool(checksum) and originals().exists(checksum)


def read_original(checksum: str) -> bytes:
    with originals().open(checksum, "rb") as f:
        data: bytes = f.read()
    return data


def remove_original(checksum: str) -> None:
    originals().delete(checksum)


def list_originals() -> list[str]:
    """The checksums of every original kept (temp files of uploads still streaming in are not)."""
    if _is_folder() and not raw_dir().is_dir():
        return []
    _dirs, files = originals().listdir("")
    return sorted(name for name in files if not name.startswith("."))


@contextmanager
def named_original(checksum: str, filename: str) -> Iterator[Path]:
    """The original as a local file under its (sanitized) file name, so the loader gets the extension as
    a type hint and its messages name the file the user uploaded: a link into data/raw/ for the folder,
    a temporary copy for any other storage."""
    folder = Path(settings.RAG_DATA_DIR) / "tmp"
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix="ingest-") as where:
        local = Path(where) / sanitize_filename(filename)
        if not _is_folder():
            with originals().open(checksum, "rb") as src, local.open("wb") as out:
                shutil.copyfileobj(src, out)
            yield local
            return
        original = raw_dir() / checksum
        try:
            os.symlink(original.resolve(), local)
        except OSError:
            yield original
            return
        yield local

"""The originals of uploaded documents, kept in data/raw/ under their sha256 checksum."""

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


def raw_dir() -> Path:
    return Path(settings.RAG_DATA_DIR) / "raw"


def original_path(checksum: str) -> Path:
    """Where the original with this checksum lives (whether or not it is there)."""
    return raw_dir() / checksum


def store_temp(pieces: Iterable[bytes], limit: int) -> tuple[Path, bytes, str]:
    """Streams the upload into a temp file beside data/raw/, stopping as soon as it passes the limit."""
    folder = raw_dir()
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
    target = original_path(checksum)
    if not target.exists():
        os.replace(temp, target)  # atomic: readers never see half a file


def remove_original(checksum: str) -> None:
    original_path(checksum).unlink(missing_ok=True)


@contextmanager
def named_original(checksum: str, filename: str) -> Iterator[Path]:
    """The original under its (sanitized) file name: a link to data/raw/<checksum>, so the loader gets
    the extension as a type hint and its messages name the file the user uploaded."""
    folder = Path(settings.RAG_DATA_DIR) / "tmp"
    folder.mkdir(parents=True, exist_ok=True)
    original = original_path(checksum)
    with tempfile.TemporaryDirectory(dir=folder, prefix="ingest-") as where:
        link = Path(where) / sanitize_filename(filename)
        try:
            os.symlink(original.resolve(), link)
        except OSError:
            yield original
            return
        yield link

"""Files on this machine offered to the upload pipeline by `manage.py ingest`: which are documents, and their names.

A folder is walked recursively; hidden files and folders are left out, and so is anything whose
extension is not a document type Lorebot reads (images, stylesheets, templates, CNAME…): those are
reported as skipped, never as failures. Each file is known by its path relative to the folder it
was found in ("guide/install.md"), never by an absolute server path.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

# What the loaders read (ragcore.loaders): Markdown, reStructuredText, text, HTML, PDF, Word, CSV, JSON.
DOCUMENT_SUFFIXES = frozenset({
    ".md", ".markdown", ".mdown", ".mkd", ".rst", ".txt", ".text", ".html", ".htm", ".xhtml",
    ".pdf", ".docx", ".csv", ".tsv", ".json",
})
NOT_A_DOCUMENT = "not a document type"
READ_BYTES = 1 << 20


@dataclass(frozen=True)
class LocalFile:
    """A file to ingest, shaped like an upload (name, size, chunks()) for console.ingest.uploads."""

    path: Path
    relative: str  # the path shown and kept as the document's name: relative to the folder given

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def size(self) -> int:
        return self.path.stat().st_size

    def chunks(self, chunk_size: int | None = None) -> Iterator[bytes]:
        with self.path.open("rb") as f:
            while piece := f.read(chunk_size or READ_BYTES):
                yield piece

    def checksum(self) -> str:
        digest = hashlib.sha256()
        for piece in self.chunks():
            digest.update(piece)
        return digest.hexdigest()


@dataclass
class Collected:
    files: list[LocalFile] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (relative path, why)
    missing: list[str] = field(default_factory=list)  # paths given that do not exist
    hidden: int = 0  # hidden files and files inside hidden folders, left out without a line each


def collect(paths: list[str]) -> Collected:
    """The documents among `paths`: files as given (whatever their type), folders walked, sorted."""
    out = Collected()
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            _walk(path, out)
        elif path.is_file():
            out.files.append(LocalFile(path, path.name))
        else:
            out.missing.append(raw)
    return out


def _walk(folder: Path, out: Collected) -> None:
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        parts = path.relative_to(folder).parts
        if any(part.startswith(".") for part in parts):
            out.hidden += 1
        elif path.suffix.lower() not in DOCUMENT_SUFFIXES:
            out.skipped.append(("/".join(parts), NOT_A_DOCUMENT))
        else:
            out.files.append(LocalFile(path, "/".join(parts)))

"""Turn uploaded files into ParsedDocuments: sniff what the bytes really are, then one parser per format.

The chunk text format. Every parser writes its sections in one format, the chunker keeps it, and it is
exactly what a chunk holds, what an answer quotes and what the console's chunk preview shows:

- Paragraphs are separated by one blank line. A single line break is real: list items, table rows,
  lines of an address or a poem. Runs of spaces outside code are single spaces.
- Headings are not in the text; they give the section its location, "§ Install › Linux".
- Code blocks are fenced, and only ever with backticks: a line "```lang" (the language may be empty),
  the code verbatim (indentation kept, tabs as 4 spaces), a line "```". When the code itself holds a
  line of three or more backticks, the fence is one backtick longer than the longest such line. A fence
  always starts at the beginning of a line, is preceded and followed by a blank line (or the start or
  end of the chunk), and is always closed. A code block that fits in a chunk is never cut; a longer
  one is cut between lines, and each piece is fenced the same way.
- Inline code is in backticks: `timeout=5` (two backticks around code that holds one).
- Lists: one item per line, "- " for bullets, "3. " for numbers; nested items are indented two spaces
  per level, at most 8 levels deep (ragcore.loaders.outline.MAX_INDENT_LEVELS). A later paragraph of an item is indented like it.
- Tables: one row per line, the header row first, cells joined by " | ".
- Admonitions (`!!! note "Title"`, `.. note::`, `:::tip`, Sphinx's `<div class="admonition">`): a line
  "Note:" or "Warning: Title", then the body on the next line.
- Links are reduced to their text and images to their alt text; emphasis marks, raw HTML, comments,
  front matter and directives with nothing to quote (toctree, autodoc) are dropped.

Plain text, PDF, Word, CSV and JSON keep their own text as before (plain text files may hold fences
of their own: the chunker treats a line starting with ``` or ~~~ as one, and closes it if the file does not).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from ragcore.errors import (
    CorruptFile,
    FileMissing,
    FileTooLarge,
    LoaderError,
    NoExtractableText,
)
from ragcore.loaders.csvfile import parse_csv
from ragcore.loaders.jsonfile import parse_json
from ragcore.loaders.markdown import parse_markdown
from ragcore.loaders.outline import inline
from ragcore.loaders.pdf import parse_pdf
from ragcore.loaders.plaintext import parse_text
from ragcore.loaders.restructured import parse_rst
from ragcore.loaders.sniffing import reason, sniff
from ragcore.loaders.webpage import parse_html
from ragcore.loaders.word import parse_docx
from ragcore.types import ParsedDocument, Section

__all__ = ["detect_kind", "load_bytes", "load_file", "read_file"]

Parsed = tuple[str, tuple[Section, ...]]  # (title, sections); an empty title falls back to the file name

# One parser per kind that sniffing can return; binary kinds get the bytes, text kinds the decoded text.
_BINARY_PARSERS: dict[str, Callable[[bytes, str], Parsed]] = {"pdf": parse_pdf, "docx": parse_docx}
_TEXT_PARSERS: dict[str, Callable[[str, str], Parsed]] = {
    "html": parse_html,
    "markdown": parse_markdown,
    "rst": parse_rst,
    "text": parse_text,
    "csv": parse_csv,
    "json": parse_json,
}


def load_file(path: str | Path, *, max_bytes: int) -> ParsedDocument:
    """Read a file from disk and parse it; the size is checked before a byte is read."""
    return load_bytes(read_file(path, max_bytes=max_bytes), Path(path).name)


def read_file(path: str | Path, *, max_bytes: int) -> bytes:
    """The bytes of a file, refused by its size on disk before any is read."""
    path = Path(path)
    name = path.name
    if not path.exists():
        raise FileMissing(name, "file not found")
    if not path.is_file():
        raise FileMissing(name, "not a regular file")
    size = path.stat().st_size
    if size > max_bytes:
        raise FileTooLarge(name, f"{_human_size(size)} is over the {_human_size(max_bytes)} limit")
    try:
        with path.open("rb") as f:
            data = f.read(max_bytes + 1)  # the file may have grown since stat()
    except OSError as exc:
        raise FileMissing(name, f"cannot read the file ({exc.strerror or exc})") from exc
    if len(data) > max_bytes:
        raise FileTooLarge(name, f"over the {_human_size(max_bytes)} limit")
    return data


def load_bytes(data: bytes, name: str) -> ParsedDocument:
    """Parse the bytes of a file; `name` is used in messages, as a type hint and for the fallback title."""
    kind, text = sniff(data, name)
    try:
        title, sections = _BINARY_PARSERS[kind](data, name) if kind in _BINARY_PARSERS else _TEXT_PARSERS[kind](text, name)
    except LoaderError:
        raise
    except Exception as exc:  # a parser choking on odd input must still reach the uploader as a LoaderError
        raise CorruptFile(name, f"could not parse {kind}: {reason(exc)}") from exc
    if not sections:
        raise NoExtractableText(name, "no extractable text")
    return ParsedDocument(title=title or _stem_title(name), kind=kind, sections=sections)


def detect_kind(data: bytes, name: str) -> str:
    """What the bytes really are ("pdf", "docx", "html", "json", "csv", "markdown", "rst", "text"), or a LoaderError."""
    return sniff(data, name)[0]


def _stem_title(name: str) -> str:
    """ "getting-started.md" → "getting started": the fallback title when the document names none."""
    stem = PurePosixPath(name.replace("\\", "/")).stem
    return inline(re.sub(r"[_-]+", " ", stem)) or name


def _human_size(n: int) -> str:
    for unit, scale in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"

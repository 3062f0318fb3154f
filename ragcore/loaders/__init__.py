"""Turn uploaded files into ParsedDocuments: sniff what the bytes really are, then one parser per format."""

from __future__ import annotations

import codecs
import csv
import io
import json
import logging
import re
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import TypeVar

import docx
from bs4 import BeautifulSoup
from bs4.element import NavigableString, PageElement, PreformattedString, Tag
from docx.table import Table
from docx.text.paragraph import Paragraph
from pypdf import PdfReader

from ragcore.errors import (
    CorruptFile,
    EmptyFile,
    FileMissing,
    FileTooLarge,
    LoaderError,
    NoExtractableText,
    UnsupportedType,
)
from ragcore.types import ParsedDocument, Section

# pypdf logs every repair and fallback it makes ("EOF marker not found", "Advanced encoding … not
# implemented yet", at up to ERROR level); that is noise per broken file, and a PDF that truly cannot
# be read raises instead, which load_bytes reports as CorruptFile.
logging.getLogger("pypdf").setLevel(logging.CRITICAL)

_K = TypeVar("_K")

SECTION_CHARS = 1500  # csv and json sections are cut near this size; the chunker splits further
SNIFF_BYTES = 8192

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
_MAGIC = (
    *((magic, "a ZIP archive") for magic in _ZIP_MAGIC),
    (b"MZ", "a Windows executable"),
    (b"\x7fELF", "an ELF executable"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"\xd0\xcf\x11\xe0", "a legacy Office file (.doc, .xls or .ppt)"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"Rar!", "a RAR archive"),
    (b"7z\xbc\xaf", "a 7-Zip archive"),
)
_ZIP_KINDS = (("xl/workbook.xml", "an Excel workbook"), ("ppt/presentation.xml", "a PowerPoint file"))
_HTML_START = re.compile(r"\A\s*(?:<\?xml[^>]*>\s*)?(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html[\s>])", re.I | re.S)
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f\u200b\u00ad\ufeff]")
_SPACE = r"[ \t\u00a0\u2000-\u200a\u202f\u205f\u3000]"
_RUN = rf"(?: {_SPACE}|[^\S \n\r\f\v]){_SPACE}*"  # anything but a lone plain space, which needs no change


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
    kind, text = _sniff(data, name)
    try:
        if kind == "pdf":
            title, sections = _parse_pdf(data, name)
        elif kind == "docx":
            title, sections = _parse_docx(data, name)
        else:
            title, sections = _TEXT_PARSERS[kind](text, name)
    except LoaderError:
        raise
    except Exception as exc:  # a parser choking on odd input must still reach the uploader as a LoaderError
        raise CorruptFile(name, f"could not parse {kind}: {_reason(exc)}") from exc
    if not sections:
        raise NoExtractableText(name, "no extractable text")
    return ParsedDocument(title=title or _stem_title(name), kind=kind, sections=sections)


def detect_kind(data: bytes, name: str) -> str:
    """What the bytes really are ("pdf", "docx", "html", "json", "csv", "markdown", "rst", "text"), or a LoaderError."""
    return _sniff(data, name)[0]


# --- sniffing ---------------------------------------------------------------------------------------


def _sniff(data: bytes, name: str) -> tuple[str, str]:
    """The kind and, for text kinds, the decoded text; raises for empty, binary or undecodable input."""
    if not data.strip():
        raise EmptyFile(name, "empty file")
    ext = _ext(name)
    # readers accept junk before the header, but only a .pdf gets that benefit of the doubt: a text
    # file that merely mentions "%PDF-" near its start is still text
    if data[:1024].lstrip().startswith(b"%PDF-") or (ext == ".pdf" and b"%PDF-" in data[:1024]):
        return "pdf", ""
    if data.startswith(_ZIP_MAGIC):
        return _sniff_zip(data, name), ""
    if ext == ".pdf":
        raise UnsupportedType(name, f"not a PDF despite its .pdf name: {_describe(data)}")
    if ext == ".docx":
        raise UnsupportedType(name, f"not a Word document despite its .docx name: {_describe(data)}")
    text = _decode(data, name).replace("\r\n", "\n").replace("\r", "\n")  # parsers see only \n
    if not re.search(r"[^\s\ufeff\u200b]", text):  # a second BOM or zero-width space is still blank
        raise EmptyFile(name, "empty file")
    return _text_kind(text, ext), text


def _sniff_zip(data: bytes, name: str) -> str:
    """A .docx is a ZIP holding word/document.xml; every other ZIP is unsupported."""
    try:
        names = set(zipfile.ZipFile(io.BytesIO(data)).namelist())
    except Exception as exc:
        if _ext(name) == ".docx":
            raise CorruptFile(name, f"corrupt Word document: {_reason(exc)}") from exc
        names = set()
    if "word/document.xml" in names:
        return "docx"
    what = next((desc for part, desc in _ZIP_KINDS if part in names), "a ZIP archive")
    raise UnsupportedType(name, f"unsupported file type: binary content (looks like {what})")


def _describe(data: bytes) -> str:
    what = next((desc for magic, desc in _MAGIC if data.startswith(magic)), "")
    if what:
        return f"binary content (looks like {what})"
    sample = data[:SNIFF_BYTES].decode("utf-8", errors="replace")
    return "binary content, not text" if _looks_binary(sample) else "the content is text"


def _decode(data: bytes, name: str) -> str:
    """UTF-8 (with or without a BOM) or UTF-16 with a BOM; anything that looks binary is refused."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding, body, skipped = "utf-16", data, 0
    else:
        bom = data.startswith(codecs.BOM_UTF8)
        encoding, body, skipped = "utf-8", data[3:] if bom else data, 3 if bom else 0
    sample = body[:SNIFF_BYTES].decode(encoding, errors="replace")
    if _looks_binary(sample):
        raise UnsupportedType(name, f"unsupported file type: {_describe(data)}")
    try:
        return body.decode(encoding)
    except UnicodeDecodeError as exc:
        where = f"invalid byte 0x{body[exc.start]:02x} at offset {exc.start + skipped}"
        label = "UTF-8" if encoding == "utf-8" else "UTF-16"
        raise CorruptFile(name, f"not valid {label} text ({where}); save it as UTF-8 and upload again") from exc


def _looks_binary(sample: str) -> bool:
    """NULs, or more than a tenth of control or undecodable characters, mean this is not text."""
    if "\x00" in sample:
        return True
    odd = sum(1 for c in sample if (c < " " and c not in "\t\n\r\f\v\x1b") or c in "\x7f\ufffd")
    return odd > len(sample) / 10


def _text_kind(text: str, ext: str) -> str:
    # HTML is sniffed from content only when the document says so up front: a .txt or .md that merely
    # mentions a <tag> is prose about HTML, and stripping its tags would lose the very text it explains.
    if _HTML_START.match(text[:65536]):
        return "html"
    if ext in {".html", ".htm", ".xhtml"} and re.search(r"<[a-zA-Z!/]", text):
        return "html"
    if ext == ".json" or (text.lstrip()[:1] in ("{", "[") and _parses_as_json(text)):
        return "json"
    if ext in {".csv", ".tsv"}:
        return "csv"
    if ext in {".md", ".markdown", ".mdown", ".mkd"}:
        return "markdown"
    if ext == ".rst":
        return "rst"
    return "text"


def _parses_as_json(text: str) -> bool:
    try:
        return isinstance(json.loads(text), (dict, list))
    except (ValueError, RecursionError):
        return False


# --- binary formats ---------------------------------------------------------------------------------


def _parse_pdf(data: bytes, name: str) -> tuple[str, tuple[Section, ...]]:
    """One section per page with text, located "page N"."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reader = PdfReader(io.BytesIO(data))
            if reader.is_encrypted and not _decrypts_with_empty_password(reader):
                raise CorruptFile(name, "encrypted PDF; remove the password and upload again")
            pages = _pdf_page_texts(reader)
            meta_title = (reader.metadata.title if reader.metadata else None) or ""
    except LoaderError:
        raise
    except Exception as exc:
        raise CorruptFile(name, f"corrupt PDF: {_reason(exc)}") from exc
    sections = tuple(Section(text, f"page {n}") for n, text in enumerate(pages, 1) if text)
    if not sections:
        count = f"{len(pages)} page{'s' if len(pages) != 1 else ''}"
        raise NoExtractableText(name, f"no extractable text; scanned? ({count}, no text layer)")
    title = _inline(str(meta_title)).removeprefix("Microsoft Word - ")
    first_line = sections[0].text.split("\n", 1)[0]
    return title or (first_line if len(first_line) <= 80 else ""), sections


def _pdf_page_texts(reader: PdfReader) -> list[str]:
    """Each page's text; a page pypdf cannot read counts as blank, unless no page can be read at all."""
    texts: list[str] = []
    errors: list[Exception] = []
    for page in reader.pages:
        try:
            texts.append(_clean(page.extract_text() or ""))
        except Exception as exc:
            texts.append("")
            errors.append(exc)
    if errors and len(errors) == len(texts):
        raise errors[0]
    return texts


def _decrypts_with_empty_password(reader: PdfReader) -> bool:
    """PDFs locked only against editing open with an empty user password; those we can read."""
    try:
        return bool(reader.decrypt(""))
    except Exception:  # an unknown or unsupported cipher is as unreadable as a wrong password
        return False


def _parse_docx(data: bytes, name: str) -> tuple[str, tuple[Section, ...]]:
    """Sections cut at Title and Heading paragraphs; tables become "cell | cell" lines."""
    try:
        doc = docx.Document(io.BytesIO(data))
    except Exception as exc:
        raise CorruptFile(name, f"corrupt Word document: {_reason(exc)}") from exc
    outline = _Outline()
    first_heading = ""
    for block in doc.iter_inner_content():
        if isinstance(block, Table):
            outline.gap(2)
            outline.add(_docx_table(block))
            continue
        text, level = _inline(block.text), _docx_heading_level(block)
        if level is not None and text:
            first_heading = first_heading or (text if level <= 1 else "")
            outline.heading(level, text)
        elif text:
            lines = 1 if (block.style.name if block.style else "").startswith("List") else 2
            outline.gap(lines, "- " if lines == 1 else "")
            outline.add(text)
            outline.end_block(lines)
    title = _inline(doc.core_properties.title or "") or first_heading or outline.lead
    return title, outline.finish(title)


def _docx_heading_level(paragraph: Paragraph) -> int | None:
    """Title is level 0, "Heading N" is level N; other styles are body text."""
    style = paragraph.style.name if paragraph.style else ""
    if style == "Title":
        return 0
    if style.startswith("Heading"):
        digits = re.sub(r"\D", "", style)
        return int(digits) if digits else 1
    return None


def _docx_table(table: Table) -> str:
    lines: list[str] = []
    for row in table.rows:
        cells: list[str] = []
        previous: object = None
        for cell in row.cells:
            # a merged cell is handed back once per grid column it spans, all sharing one <w:tc>
            if cell._tc is not previous:
                cells.append(_inline(cell.text))
            previous = cell._tc
        lines.append(" | ".join(c for c in cells if c))
    return "\n".join(line for line in lines if line)


# --- markup -----------------------------------------------------------------------------------------

_HTML_DROP = ["script", "style", "noscript", "template", "nav", "footer", "head", "svg", "iframe"]
_HTML_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4}
_HTML_PARAGRAPHS = frozenset("p pre blockquote table ul ol dl figure section article main aside hr h5 h6".split())
_HTML_LINES = frozenset("div li dt dd tr header address details summary figcaption form fieldset".split())


def _parse_html(text: str, name: str) -> tuple[str, tuple[Section, ...]]:
    """Visible text only, one line per block, sections cut at h1–h4."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # bs4 warns about XML-looking or URL-looking markup; we parse it anyway
        soup = BeautifulSoup(text, "lxml")
    title = _inline(soup.title.get_text()) if soup.title else ""
    for tag in soup.find_all(_HTML_DROP):
        tag.decompose()
    h1 = soup.find("h1")
    outline = _Outline()
    _walk_html(soup.body or soup, outline)
    title = title or (_inline(h1.get_text(" ")) if h1 else "") or outline.lead
    return title, outline.finish(title)


def _walk_html(root: Tag, outline: _Outline) -> None:
    # a loop over an explicit stack, not recursion: generated pages can nest deeper than Python's stack
    todo: list[PageElement | int] = list(reversed(root.contents))  # an int closes a block of that gap
    while todo:
        node = todo.pop()
        if isinstance(node, int):
            outline.end_block(node)
        elif isinstance(node, Tag) and node.name in _HTML_HEADINGS:
            outline.heading(_HTML_HEADINGS[node.name], _inline(node.get_text(" ")))
        elif isinstance(node, Tag) and node.name == "br":
            outline.gap(1)
        elif isinstance(node, Tag) and node.name in ("tr", "pre"):
            lines = 1 if node.name == "tr" else 2
            outline.gap(lines)
            outline.add(_html_row(node) if node.name == "tr" else node.get_text())
            outline.end_block(lines)
        elif isinstance(node, Tag):
            if node.name in _HTML_PARAGRAPHS or node.name in _HTML_LINES:
                lines = 2 if node.name in _HTML_PARAGRAPHS else 1
                outline.gap(lines, "- " if node.name == "li" else "")
                todo.append(lines)
            todo.extend(reversed(node.contents))
        elif isinstance(node, NavigableString) and not isinstance(node, PreformattedString):
            outline.add(re.sub(r"\s+", " ", str(node)))  # comments and doctypes are PreformattedStrings


def _html_row(row: Tag) -> str:
    cells = (_inline(cell.get_text(" ")) for cell in row.find_all(["td", "th"], recursive=False))
    return " | ".join(cell for cell in cells if cell)


_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")
_ATX = re.compile(r" {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*")
_SETEXT = re.compile(r" {0,3}(=+|-+)[ \t]*")
_FRONT_MATTER = re.compile(r"\A(---|\+\+\+)[ \t]*\n.*?\n(?:---|\.\.\.|\+\+\+)[ \t]*(?:\n|\Z)", re.S)


def _parse_markdown(text: str, name: str) -> tuple[str, tuple[Section, ...]]:
    """Markdown source minus heading lines, sections cut at ATX and setext headings outside code fences."""
    front = _FRONT_MATTER.match(text)
    lines = text[front.end() if front else 0 :].splitlines()
    outline = _Outline(keep_indent=True)
    first_h1, fence, i = "", "", 0
    while i < len(lines):
        line, step = lines[i], 1
        opener = _FENCE.match(line)
        heading: tuple[int, str] | None = None
        if fence:
            fence = "" if _closes_fence(line, fence) else fence
        elif opener:
            fence = opener.group(1)
        elif atx := _ATX.fullmatch(line):
            heading = (len(atx.group(1)), atx.group(2) or "")
        elif i + 1 < len(lines) and _is_setext_text(line) and (under := _SETEXT.fullmatch(lines[i + 1])):
            heading, step = (1 if under.group(1)[0] == "=" else 2, line), 2
        if heading and _inline(heading[1]):
            first_h1 = first_h1 or (_inline(heading[1]) if heading[0] == 1 else "")
            outline.heading(heading[0], _inline(heading[1]))
        elif not heading:
            outline.add(line + "\n")
        i += step
    title = first_h1 or _front_matter_title(front.group(0) if front else "") or outline.lead
    return title, outline.finish(title)


def _closes_fence(line: str, fence: str) -> bool:
    """A fence closes with a bare run of its own character at least as long as the opener."""
    stripped = line.strip()
    return len(line) - len(line.lstrip(" ")) <= 3 and len(stripped) >= len(fence) and set(stripped) == {fence[0]}


def _is_setext_text(line: str) -> bool:
    """Only a plain paragraph line can be underlined into a heading; lists, quotes and code cannot."""
    stripped = line.strip()
    return bool(stripped) and not line.startswith("    ") and stripped[0] not in "-*+>|#" and not _FENCE.match(line)


def _front_matter_title(front: str) -> str:
    match = re.search(r"^title\s*[:=]\s*(.+)$", front, re.M)
    return match.group(1).strip().strip("\"'") if match else ""


_RST_ADORNMENT = re.compile(r"([=\-~^\"*+#])\1+")


def _parse_rst(text: str, name: str) -> tuple[str, tuple[Section, ...]]:
    """Sections cut at under- (and optionally over-) lined titles; levels follow first appearance."""
    lines = text.splitlines()
    outline = _Outline(keep_indent=True)
    styles: list[tuple[str, bool]] = []
    i = 0
    while i < len(lines):
        title, style, step = _rst_heading(lines, i)
        if title:
            if style not in styles:
                styles.append(style)
            outline.heading(styles.index(style) + 1, title)
        else:
            outline.add(lines[i] + "\n")
        i += step
    title = outline.headings[0][1] if outline.headings else ""
    return title, outline.finish(title)


def _rst_heading(lines: list[str], i: int) -> tuple[str, tuple[str, bool], int]:
    """The heading starting at line i, its adornment style and how many lines it spans, or ("", _, 1)."""
    line = lines[i].rstrip()
    nxt = lines[i + 1].rstrip() if i + 1 < len(lines) else ""
    after = lines[i + 2].rstrip() if i + 2 < len(lines) else ""
    over = _RST_ADORNMENT.fullmatch(line)
    if over and nxt.strip() and after == line and len(line) >= len(nxt.strip()):
        return _inline(nxt), (line[0], True), 3
    under = _RST_ADORNMENT.fullmatch(nxt)
    if line and not line[0].isspace() and not over and under and len(nxt) >= len(line):
        return _inline(line), (nxt[0], False), 2
    return "", ("", False), 1


# --- plain and structured text ----------------------------------------------------------------------


def _parse_text(text: str, name: str) -> tuple[str, tuple[Section, ...]]:
    """One section, or one per page when the text has form feeds (as pdftotext writes them)."""
    if "\f" not in text:
        body = _clean(text, keep_indent=True)
        return "", (Section(body),) if body else ()
    pages = (_clean(page, keep_indent=True) for page in text.split("\f"))
    return "", tuple(Section(page, f"page {n}") for n, page in enumerate(pages, 1) if page)


def _parse_csv(text: str, name: str) -> tuple[str, tuple[Section, ...]]:
    """Each row as "Header: value; …", grouped into sections located by spreadsheet row numbers."""
    delimiter = "\t" if _ext(name) == ".tsv" else _sniff_delimiter(text)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    rows: list[tuple[int, str]] = []
    header: list[str] = []
    try:
        for number, row in enumerate(reader, 1):
            if number == 1:
                header = [_inline(h) or f"column {n}" for n, h in enumerate(row, 1)]
            elif line := _csv_row(header, row):
                rows.append((number, line))
    except csv.Error as exc:
        raise CorruptFile(name, f"malformed CSV at line {reader.line_num}: {exc}") from exc
    if not rows:
        raise EmptyFile(name, "only a header row, no data rows")
    return "", tuple(Section("\n".join(lines), _row_span(numbers[0], numbers[-1])) for numbers, lines in _group(rows))


def _sniff_delimiter(text: str) -> str:
    sample = text[:SNIFF_BYTES].rsplit("\n", 1)[0] if len(text) > SNIFF_BYTES else text
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:  # a single column gives the sniffer nothing to go on
        return ","


def _csv_row(header: list[str], row: list[str]) -> str:
    names = header + [f"column {n}" for n in range(len(header) + 1, len(row) + 1)]
    return "; ".join(f"{key}: {value}" for key, value in zip(names, map(_inline, row)) if value)


def _row_span(first: int, last: int) -> str:
    return f"row {first}" if first == last else f"rows {first}–{last}"


def _parse_json(text: str, name: str) -> tuple[str, tuple[Section, ...]]:
    """Flattened "path: value" lines, one section per top-level key or array element."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise CorruptFile(name, f"invalid JSON: {_reason(exc)}") from exc
    title = ""
    if isinstance(value, dict):
        title = next((v for k, v in value.items() if k in ("title", "name") and isinstance(v, str)), "")
        # top-level scalars (title, version, …) are a line each, so they share one "$" section
        scalars = {k: v for k, v in value.items() if not isinstance(v, (dict, list))}
        parts = [("$", _flatten(scalars, ""))]
        parts += [(f"${_key(k, top=False)}", _flatten(v, _key(k))) for k, v in value.items() if k not in scalars]
    elif isinstance(value, list):
        parts = [(f"$[{n}]", _flatten(item, f"[{n}]")) for n, item in enumerate(value)]
    else:
        parts = [("", _flatten(value, ""))]
    sections = []
    for location, lines in parts:
        for _, group in _group([(location, line) for line in lines]):
            sections.append(Section("\n".join(group), location))
    return _inline(title), tuple(sections)


def _flatten(value: object, path: str) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _flatten(item, f"{path}{_key(key, top=not path)}")
    elif isinstance(value, list):
        for n, item in enumerate(value):
            yield from _flatten(item, f"{path}[{n}]")
    elif value is not None and value != "":  # nulls and empty strings say nothing a reader could ask about
        scalar = _inline(value) if isinstance(value, str) else json.dumps(value)
        yield f"{path}: {scalar}" if path else scalar


def _key(key: str, *, top: bool = True) -> str:
    """`name` at the top, `.name` below it, and `["odd key"]` for keys that are not identifiers."""
    if re.fullmatch(r"[A-Za-z_][\w-]*", key):
        return key if top else f".{key}"
    return f"[{json.dumps(key, ensure_ascii=False)}]"


# --- shared helpers ---------------------------------------------------------------------------------


class _Outline:
    """Collects text under the current heading path and cuts a section at every heading."""

    def __init__(self, *, keep_indent: bool = False) -> None:
        self.keep_indent = keep_indent
        self.headings: list[tuple[int, str]] = []  # (level, text) in document order
        self._stack: list[int] = []  # indexes into headings, outermost first
        self._parts: list[str] = []
        self._sections: list[tuple[str, tuple[int, ...]]] = []
        self._gap, self._prefix = 0, ""

    def add(self, text: str) -> None:
        """Append text, first writing any line breaks and list marker that blocks asked for."""
        if self._gap or self._prefix:
            if not text.strip():
                return
            if self._parts:
                self._parts.append("\n" * self._gap)
            self._parts.append(self._prefix)
            self._gap, self._prefix = 0, ""
        self._parts.append(text)

    def gap(self, lines: int, prefix: str = "") -> None:
        """Start the next text on a new line (1) or paragraph (2); blocks ask twice, it lands once."""
        self._gap = max(self._gap, lines)
        self._prefix = prefix or self._prefix

    def end_block(self, lines: int) -> None:
        """A block closed: later text starts afresh, and an unused list marker is dropped."""
        self.gap(lines)
        self._prefix = ""

    def heading(self, level: int, text: str) -> None:
        """Close the current section and open one under `text`, nested by `level`."""
        self._flush()
        while self._stack and self.headings[self._stack[-1]][0] >= level:
            self._stack.pop()
        self._stack.append(len(self.headings))
        self.headings.append((level, text))

    @property
    def lead(self) -> str:
        """The first heading when no other heading shares its top level: it names the document."""
        levels = [level for level, _ in self.headings]
        if levels and levels[0] == min(levels) and levels.count(levels[0]) == 1:
            return self.headings[0][1]
        return ""

    def finish(self, title: str) -> tuple[Section, ...]:
        """The sections, located "§ Parent › Child"; a lead heading the title already names is left out."""
        self._flush()
        if not self._sections and self.headings:  # an outline with no body: its headings are the text
            return (Section("\n".join(text for _, text in self.headings)),)
        lead = self.lead
        skip = 0 if lead and lead.casefold() in title.casefold() else -1
        sections = []
        for text, path in self._sections:
            names = " › ".join(self.headings[i][1] for i in path if i != skip)
            sections.append(Section(text, f"§ {names}" if names else ""))
        return tuple(sections)

    def _flush(self) -> None:
        body = _clean("".join(self._parts), keep_indent=self.keep_indent)
        if body:
            self._sections.append((body, tuple(self._stack)))
        self._parts, self._gap, self._prefix = [], 0, ""


def _group(items: list[tuple[_K, str]]) -> list[tuple[list[_K], list[str]]]:
    """Consecutive (key, line) items packed into groups of about SECTION_CHARS characters."""
    groups: list[tuple[list[_K], list[str]]] = []
    length = 0
    for key, line in items:
        if not groups or length + len(line) > SECTION_CHARS:
            groups.append(([], []))
            length = 0
        groups[-1][0].append(key)
        groups[-1][1].append(line)
        length += len(line) + 1
    return groups


def _clean(text: str, *, keep_indent: bool = False) -> str:
    """Drop control characters, collapse runs of spaces, trim lines, and keep at most one blank line."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\f", "\n").replace("\v", "\n")
    text = _CONTROL.sub("", text)
    if keep_indent:
        text = re.sub(rf"(?<=\S){_RUN}", " ", text)  # only runs after a non-space: indentation stays
        text = re.sub(rf"{_SPACE}+(?=\n)", "", text + "\n")[:-1]
    else:
        text = re.sub(_RUN, " ", text)
        text = re.sub(r" ?\n ?", "\n", text)
    text = re.sub(r"\n\n\n+", "\n\n", text)
    return text.strip("\n") if keep_indent else text.strip()


def _inline(text: str) -> str:
    return " ".join(text.split())


def _ext(name: str) -> str:
    return PurePosixPath(name.replace("\\", "/")).suffix.lower()


def _stem_title(name: str) -> str:
    """ "getting-started.md" → "getting started": the fallback title when the document names none."""
    stem = PurePosixPath(name.replace("\\", "/")).stem
    return _inline(re.sub(r"[_-]+", " ", stem)) or name


def _human_size(n: int) -> str:
    for unit, scale in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def _reason(exc: BaseException) -> str:
    """A short, single-line reason from a library exception."""
    text = _inline(str(exc)) or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."


_TEXT_PARSERS = {
    "html": _parse_html,
    "markdown": _parse_markdown,
    "rst": _parse_rst,
    "text": _parse_text,
    "csv": _parse_csv,
    "json": _parse_json,
}

"""What the bytes of an upload really are: the kind, and for text kinds the decoded text."""

from __future__ import annotations

import codecs
import io
import json
import re
import unicodedata
import zipfile
from pathlib import PurePosixPath

import charset_normalizer

from ragcore.errors import CorruptFile, EmptyFile, UnsupportedType

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
_SAMPLE_CHARS = 65536  # enough text to judge a code page by
_WORD_PUNCTUATION = "\u2019\u2010\u2011\u00b7"  # an apostrophe, hyphens and a middle dot do belong inside words


def sniff(data: bytes, name: str) -> tuple[str, str]:
    """The kind and, for text kinds, the decoded text; raises for empty, binary or undecodable input."""
    if not data.strip():
        raise EmptyFile(name, "empty file")
    ext = extension(name)
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
    return _text_kind(text, _source_extension(name) or ext), text


def extension(name: str) -> str:
    return PurePosixPath(name.replace("\\", "/")).suffix.lower()


def _source_extension(name: str) -> str:
    """The extension of the source a Sphinx build copied: its `_sources/` folder and Debian's `-doc` packages
    ship `guide.rst.txt` and `guide.md.txt` (MyST), which are reStructuredText and Markdown, not plain text."""
    path = PurePosixPath(name.replace("\\", "/"))
    inner = PurePosixPath(path.stem).suffix.lower()
    return inner if path.suffix.lower() == ".txt" and inner in {".rst", ".md"} else ""


def _sniff_zip(data: bytes, name: str) -> str:
    """A .docx is a ZIP holding word/document.xml; every other ZIP is unsupported."""
    try:
        names = set(zipfile.ZipFile(io.BytesIO(data)).namelist())
    except Exception as exc:
        if extension(name) == ".docx":
            raise CorruptFile(name, f"corrupt Word document: {reason(exc)}") from exc
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
    """UTF-16 with a BOM, UTF-8, or else the legacy encoding the bytes are in; binary is refused."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return _decode_strictly(data, "utf-16", 0, name)
    if data.startswith(codecs.BOM_UTF8):  # the BOM says UTF-8, so an invalid byte is an error, not a hint
        return _decode_strictly(data[3:], "utf-8", 3, name)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if b"\x00" in data[:SNIFF_BYTES]:  # no single-byte text has NULs; UTF-16 without a BOM is not sniffed
            raise UnsupportedType(name, f"unsupported file type: {_describe(data)}") from exc
        text = _decode_legacy(data, name, exc)
    if _looks_binary(text[:SNIFF_BYTES]):
        raise UnsupportedType(name, f"unsupported file type: {_describe(data)}")
    return text


def _decode_strictly(body: bytes, encoding: str, skipped: int, name: str) -> str:
    sample = body[:SNIFF_BYTES].decode(encoding, errors="replace")
    if _looks_binary(sample):
        raise UnsupportedType(name, f"unsupported file type: {_describe(body)}")
    try:
        return body.decode(encoding)
    except UnicodeDecodeError as exc:
        label = "UTF-8" if encoding == "utf-8" else "UTF-16"
        raise CorruptFile(name, f"not valid {label} text ({_where(body, exc, skipped)}); save it as UTF-8 and upload again") from exc


def _decode_legacy(data: bytes, name: str, error: UnicodeDecodeError) -> str:
    """Text that is not UTF-8: a Latin-1, cp1252, cp1251, Shift-JIS … file, as charset-normalizer reads it."""
    best = charset_normalizer.from_bytes(data).best()
    if best is None:
        if _looks_binary(data[:SNIFF_BYTES].decode("utf-8", errors="replace")):
            raise UnsupportedType(name, f"unsupported file type: {_describe(data)}") from error
        raise CorruptFile(
            name, f"not valid UTF-8 text ({_where(data, error, 0)}) nor any other text encoding; save it as UTF-8 and upload again"
        ) from error
    guess = str(best)
    # On short Western text charset-normalizer cannot tell the Latin code pages apart and often picks
    # a rare one (cp1257, cp775) that turns "è" into "č". When its guess is Latin script anyway, cp1252
    # (Windows' Western default, and Latin-1's printable range) wins unless it reads worse: more
    # symbols inside words, as Polish cp1250 text read as cp1252 would ("Za¿ó³æ").
    if _latin_script(guess[:_SAMPLE_CHARS]):
        try:
            western = data.decode("cp1252")
        except UnicodeDecodeError:
            return guess
        if _symbols_inside_words(western[:_SAMPLE_CHARS]) <= _symbols_inside_words(guess[:_SAMPLE_CHARS]):
            return western
    return guess


def _latin_script(text: str) -> bool:
    return all(unicodedata.name(c, "").startswith("LATIN") for c in set(text) if ord(c) > 127 and c.isalpha())


def _symbols_inside_words(text: str) -> int:
    """Non-ASCII characters that are not letters yet sit between two letters: the mark of a wrong code page."""
    return sum(
        1
        for before, c, after in zip(text, text[1:], text[2:])
        if ord(c) > 127 and not c.isalpha() and c not in _WORD_PUNCTUATION and before.isalpha() and after.isalpha()
    )


def _where(body: bytes, exc: UnicodeDecodeError, skipped: int) -> str:
    return f"invalid byte 0x{body[exc.start]:02x} at offset {exc.start + skipped}"


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


def reason(exc: BaseException) -> str:
    """A short, single-line reason from a library exception."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."

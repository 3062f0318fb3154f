"""PDF: one section per page with a text layer, located "page N"."""

from __future__ import annotations

import io
import logging
import warnings

from pypdf import PdfReader

from ragcore.errors import CorruptFile, LoaderError, NoExtractableText
from ragcore.loaders.outline import clean, inline
from ragcore.loaders.sniffing import reason
from ragcore.types import Section

# pypdf logs every repair and fallback it makes ("EOF marker not found", "Advanced encoding … not
# implemented yet", at up to ERROR level); that is noise per broken file, and a PDF that truly cannot
# be read raises instead, which load_bytes reports as CorruptFile.
logging.getLogger("pypdf").setLevel(logging.CRITICAL)


def parse_pdf(data: bytes, name: str) -> tuple[str, tuple[Section, ...]]:
    """One section per page with text, located "page N"."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reader = PdfReader(io.BytesIO(data))
            if reader.is_encrypted and not _decrypts_with_empty_password(reader):
                raise CorruptFile(name, "encrypted PDF; remove the password and upload again")
            pages = _page_texts(reader)
            meta_title = (reader.metadata.title if reader.metadata else None) or ""
    except LoaderError:
        raise
    except Exception as exc:
        raise CorruptFile(name, f"corrupt PDF: {reason(exc)}") from exc
    sections = tuple(Section(text, f"page {n}") for n, text in enumerate(pages, 1) if text)
    if not sections:
        count = f"{len(pages)} page{'s' if len(pages) != 1 else ''}"
        raise NoExtractableText(name, f"no extractable text; scanned? ({count}, no text layer)")
    title = inline(str(meta_title)).removeprefix("Microsoft Word - ")
    first_line = sections[0].text.split("\n", 1)[0]
    return title or (first_line if len(first_line) <= 80 else ""), sections


def _page_texts(reader: PdfReader) -> list[str]:
    """Each page's text; a page pypdf cannot read counts as blank, unless no page can be read at all."""
    texts: list[str] = []
    errors: list[Exception] = []
    for page in reader.pages:
        try:
            texts.append(clean(page.extract_text() or ""))
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

"""Plain text: one section, or one per page when the text has form feeds."""

from __future__ import annotations

from ragcore.loaders.outline import clean
from ragcore.types import Section


def parse_text(text: str, name: str) -> tuple[str, tuple[Section, ...]]:
    """One section, or one per page when the text has form feeds (as pdftotext writes them)."""
    if "\f" not in text:
        body = clean(text, keep_indent=True)
        return "", (Section(body),) if body else ()
    pages = (clean(page, keep_indent=True) for page in text.split("\f"))
    return "", tuple(Section(page, f"page {n}") for n, page in enumerate(pages, 1) if page)

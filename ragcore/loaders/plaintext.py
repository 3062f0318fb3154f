"""Plain text: one section, or one per page when the text has form feeds."""

from __future__ import annotations

import re

import structlog

from ragcore.loaders.outline import clean
from ragcore.types import Section

log = structlog.get_logger(__name__, component="loader")


def parse_text(text: str, name: str) -> tuple[str, tuple[Section, ...]]:
    """One section, or one per page when the text has form feeds (as pdftotext writes them)."""
    if "\f" not in text:
        body = clean(text, keep_indent=True)
        return "", (Section(body),) if body else ()
    pages = (clean(page, keep_indent=True) for page in text.split("\f"))
    return "", tuple(Section(page, f"page {n}") for n, page in enumerate(pages, 1) if page)


def read_as_plain_text(text: str, name: str, kind: str) -> tuple[str, tuple[Section, ...]]:
    """The fallback for markup nested deeper than its parser can follow: the source, as plain text."""
    log.warning("loader.read_as_plain_text", source=name, kind=kind, reason="nested too deeply to parse")
    return parse_text(text, name)


_QUOTE_MARKERS = re.compile(r"(?:>[ \t]?)+")


def nesting_depth(text: str) -> int:
    """How deep the blocks of a markup text nest: indentation levels, plus a line's leading `>` quote markers.

    A parser that recurses per level (docutils; markdown-it for quotes) is not asked to parse past
    its stack: a RecursionError half-way can strike a finalizer at that depth, where no except reaches.
    """
    indents = [0]
    deepest = 0
    for line in text.splitlines():
        stripped = line.lstrip()
        if not stripped:
            continue
        indent = len(line) - len(stripped)
        while indent < indents[-1]:
            indents.pop()
        if indent > indents[-1]:
            indents.append(indent)
        quotes = _QUOTE_MARKERS.match(stripped)
        deepest = max(deepest, len(indents) - 1 + (quotes.group().count(">") if quotes else 0))
    return deepest

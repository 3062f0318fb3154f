"""Platform-neutral text helpers: splitting long answers and naming their sources."""

from __future__ import annotations

import re

from console.chat import Citation, absolute_source_url

_FENCE = re.compile(r"^\s*```")


def split_message(text: str, limit: int) -> list[str]:
    """Splits `text` into pieces of at most `limit` characters.

    Cuts fall at a paragraph break, else a line break, else a space; never inside a code block
    when the block fits in one piece (a longer block is closed and reopened around the cut),
    and never inside a citation marker such as "[12]".
    """
    if limit < 20:
        raise ValueError("limit must be at least 20 characters")
    pieces: list[str] = []
    rest = text.strip()
    while len(rest) > limit:
        cut = _cut_point(rest, limit)
        fence = _open_fence(rest[:cut])
        if fence is not None:
            # A code block longer than a piece: close it at the cut and reopen it after.
            cut = _cut_point(rest, limit - 4, in_code=True)
            fence = _open_fence(rest[:cut])
        if fence is None:
            head, rest = rest[:cut].rstrip(), rest[cut:].lstrip("\n ")
        else:
            head, rest = rest[:cut].rstrip() + "\n```", f"{fence}\n{rest[cut:].lstrip(chr(10))}"
        pieces.append(head)
    if rest:
        pieces.append(rest)
    return pieces


def _cut_point(text: str, limit: int, in_code: bool = False) -> int:
    window = text[:limit]
    # Prefer to cut before a code block that would not fit rather than inside it.
    for separator in ("\n\n", "\n", " "):
        at = window.rfind(separator)
        while at > limit // 4:
            if (in_code or _open_fence(text[:at]) is None) and not _inside_marker(text, at):
                return at
            at = window.rfind(separator, 0, at)
    # No clean break: the last place that is not inside a citation marker.
    at = limit
    while at > 1 and _inside_marker(text, at):
        at -= 1
    return at


def _open_fence(text: str) -> str | None:
    """The opening line of a code block left open at the end of `text`, if any."""
    opened: str | None = None
    for line in text.split("\n"):
        if _FENCE.match(line):
            opened = None if opened is not None else line.strip()
    return opened


def _inside_marker(text: str, at: int) -> bool:
    """Whether position `at` falls inside a "[n]" citation marker."""
    start = text.rfind("[", max(0, at - 6), at)
    if start < 0:
        return False
    end = text.find("]", start)
    return end >= at and text[start + 1 : end].isdigit()


def citation_link(citation: Citation) -> str:
    """An http(s) address for a citation, or "" when it has none: a web source's own address, else the
    source viewer under LOREBOT_PUBLIC_URL (built by the chat service, as for the web chat)."""
    return absolute_source_url(citation)


def citation_label(citation: Citation) -> str:
    """"title, location" for a numbered source line."""
    name = citation.title or citation.source or citation.document_id or "source"
    return f"{name}, {citation.location}" if citation.location else name

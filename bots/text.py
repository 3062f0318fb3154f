"""Platform-neutral text helpers: splitting long answers and naming their sources."""

from __future__ import annotations

import re

from console.chat import Citation, absolute_source_url, synced_text

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


# Inline markup that must never be shown half-open; the longest first, so "**" is not read as two "*".
_INLINE = ("**", "__", "~~", "`", "*", "_")


def streamable(text: str) -> str:
    """The part of an answer still being written that is safe to show in a progress edit.

    It ends at a word boundary (the last word may be the first piece of a longer one) and has no
    markup opened and not yet closed: a bold, italic, strike or code span, or a link, that started
    is held back until it ends, so a reader never sees "*Extractive" or a dangling "[text](http".
    A fenced code block that is still open is shown closed, so long code can be followed as it comes.
    """
    cut = max(text.rfind(" "), text.rfind("\n"))
    head = text[:cut] if cut > 0 else ""
    fence = _open_fence(head)
    if fence is not None:
        return head.rstrip() + "\n```"
    held = _first_unclosed(head)
    return head[:held].rstrip() if held is not None else head.rstrip()


def _first_unclosed(text: str) -> int | None:
    """Where the earliest inline span (or link) left open in `text` begins; None when all are closed."""
    opened: dict[str, int] = {}  # marker -> where it was opened
    link: int | None = None  # where an unfinished "[text](url)" began
    in_fence = False
    offset = 0
    for line in text.split("\n"):
        if _FENCE.match(line):
            in_fence = not in_fence
        elif not in_fence:
            _scan_line(line, offset, opened)
            link = _open_link(line, offset) if link is None else link
        offset += len(line) + 1
    starts = [*opened.values(), *([link] if link is not None else [])]
    return min(starts) if starts else None


def _scan_line(line: str, offset: int, opened: dict[str, int]) -> None:
    i = 0
    while i < len(line):
        if "`" in opened and line[i] != "`":  # inside a code span nothing else is markup
            i += 1
            continue
        marker = next((m for m in _INLINE if line.startswith(m, i)), None)
        if marker is None:
            i += 1
            continue
        before = line[i - 1] if i else " "
        after = line[i + len(marker)] if i + len(marker) < len(line) else " "
        if marker in ("*", "_") and (before.isalnum() and after.isalnum() or after == " " and before == " "):
            i += len(marker)  # snake_case, 2*3, or a "* " bullet: not emphasis
            continue
        if marker in opened:
            del opened[marker]
        elif not after.isspace():
            opened[marker] = offset + i
        i += len(marker)


def _open_link(line: str, offset: int) -> int | None:
    """Where an unfinished Markdown link begins in `line` ("[text" or "[text](url" without its end)."""
    for match in re.finditer(r"\[[^\]\n]*(\]\([^)\s]*)?", line):
        done = line[match.end():match.end() + 1]
        if match.group(1) is not None and done != ")":
            return offset + match.start()  # "[text](http…" with no ")" yet
        if match.group(1) is None and not done:  # "[text" at the end of the line: a link or a [n] to come
            return offset + match.start()
    return None


def citation_link(citation: Citation) -> str:
    """An http(s) address for a citation, or "" when it has none: a web source's own address, else the
    source viewer under LOREBOT_PUBLIC_URL (built by the chat service, as for the web chat)."""
    return absolute_source_url(citation)


def citation_label(citation: Citation) -> str:
    """"title, location" for a numbered source line, and "(synced …)" for a synced document."""
    name = citation.title or citation.source or citation.document_id or "source"
    label = f"{name}, {citation.location}" if citation.location else name
    synced = synced_text(citation)
    return f"{label} ({synced})" if synced else label

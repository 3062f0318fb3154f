"""Inline citation markers ("[1]", "[1, 2]", "[1][3]"): reading them, renumbering them, resolving them.

The prompt numbers sources in retrieval order, but an answer may cite [3] first and never cite [1].
Readers see citations numbered 1..n in the order they first appear in the answer, with no gaps, on
every surface: `CitationFilter` rewrites the markers while the answer streams, so the surfaces only
render what they receive, and `build_citations` lists exactly the sources that were cited.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ragcore.types import Citation, ScoredChunk

SNIPPET_CHARS = 240
# The longest "[" + digits/commas/spaces held back while waiting for "]"; real markers are far shorter.
MAX_MARKER_CHARS = 32

_MARKER_RE = re.compile(r"\[\s*\d+(?:\s*,\s*\d+)*\s*\]")
_PARTIAL_RE = re.compile(r"\[[\d,\s]*\Z")
_NUMBER_RE = re.compile(r"\d+")


def cited_numbers(text: str) -> list[int]:
    """Every number cited in `text`, once each, in order of first appearance."""
    seen: dict[int, None] = {}
    for marker in _MARKER_RE.findall(text):
        for number in _NUMBER_RE.findall(marker):
            seen.setdefault(int(number), None)
    return list(seen)


class CitationFilter:
    """Passes streamed text through with its citations renumbered 1..n in order of first appearance.

    Citations of sources that do not exist (outside 1..valid_count) are dropped. `sources` lists the
    prompt's source numbers in their new order: the source shown as [k] is prompt source sources[k - 1].

    A marker may arrive split across deltas ("[", "9", "9]"), so a "[" followed only by digits, commas
    and spaces is held back until it closes or stops looking like a marker. Trailing spaces are held too,
    so that dropping " [99]" does not leave a stray space before the next punctuation.
    """

    def __init__(self, valid_count: int) -> None:
        self.valid_count = valid_count
        self.sources: list[int] = []
        self._pending = ""

    def feed(self, delta: str) -> str:
        """The text that can be shown now."""
        self._pending += delta
        return self._drain(final=False)

    def flush(self) -> str:
        """Whatever was held back; call once the stream has ended."""
        return self._drain(final=True)

    def _drain(self, *, final: bool) -> str:
        text, out, i = self._pending, "", 0
        self._pending = ""
        while True:
            j = text.find("[", i)
            if j < 0:
                tail = text[i:]
                kept = tail if final else tail.rstrip(" \t")
                self._pending = tail[len(kept):]
                return out + kept
            out += text[i:j]
            marker = _MARKER_RE.match(text, j)
            if marker:
                rewritten = self._rewrite(marker.group())
                out = out + rewritten if rewritten else out.rstrip(" \t")
                i = marker.end()
                continue
            rest = text[j:]
            if not final and len(rest) <= MAX_MARKER_CHARS and _PARTIAL_RE.match(rest):
                kept = out.rstrip(" \t")  # the spaces before it go if it turns out to be dropped
                self._pending = out[len(kept):] + rest
                return kept
            out += "["  # "[link]", "[x": not a citation, let it through
            i = j + 1

    def _rewrite(self, marker: str) -> str:
        numbers = [int(n) for n in _NUMBER_RE.findall(marker)]
        valid = list(dict.fromkeys(n for n in numbers if 1 <= n <= self.valid_count))
        shown = [self._shown_number(n) for n in valid]
        if shown == numbers:
            return marker  # keeps the marker's own spacing when nothing changes
        return f"[{', '.join(map(str, shown))}]" if shown else ""

    def _shown_number(self, source: int) -> int:
        if source not in self.sources:
            self.sources.append(source)
        return self.sources.index(source) + 1


def filter_citations(text: str, valid_count: int) -> str:
    """A whole text with citations outside 1..valid_count removed and the rest renumbered."""
    citation_filter = CitationFilter(valid_count)
    return citation_filter.feed(text) + citation_filter.flush()


def build_citations(sources: Sequence[int], chunks: Sequence[ScoredChunk]) -> tuple[Citation, ...]:
    """The cited sources as Citations numbered 1..n: `sources` is `CitationFilter.sources`, whose k-th
    entry is the prompt number (chunks[number - 1]) of the source shown as [k]."""
    citations = []
    for n, source in enumerate(sources, start=1):
        chunk = chunks[source - 1].chunk
        citations.append(Citation(
            n=n, document_id=chunk.document_id, title=chunk.title, source=chunk.source,
            location=chunk.location, snippet=make_snippet(chunk.text), chunk_id=chunk.chunk_id,
        ))
    return tuple(citations)


def numbering_gaps(text: str) -> bool:
    """Whether the citations of `text`, in order of first appearance, are anything but 1, 2, …, n."""
    numbers = cited_numbers(text)
    return numbers != list(range(1, len(numbers) + 1))


def make_snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    """The start of a chunk's text on one line, cut at a word boundary."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    cut = flat[:limit].rsplit(" ", 1)[0] or flat[:limit]
    return cut.rstrip(" ,;:") + "…"

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
_SPECIAL_RE = re.compile(r"[\[`\n]")
_TICKS_RE = re.compile(r"`+")
# Code, where "[0]" is an index and not a citation: fenced blocks, then inline spans.
_CODE_RE = re.compile(r"^[ \t]*(`{3,}).*?(?:^[ \t]*\1`*[ \t]*$|\Z)|(`+)[^\n]*?\2", re.M | re.S)


def cited_numbers(text: str) -> list[int]:
    """Every number cited in `text` (outside code), once each, in order of first appearance."""
    seen: dict[int, None] = {}
    for marker in _MARKER_RE.findall(_CODE_RE.sub("", text)):
        for number in _NUMBER_RE.findall(marker):
            seen.setdefault(int(number), None)
    return list(seen)


class CitationFilter:
    """Passes streamed text through with its citations renumbered 1..n in order of first appearance.

    Citations of sources that do not exist (outside 1..valid_count) are dropped. `sources` lists the
    prompt's source numbers in their new order: the source shown as [k] is prompt source sources[k - 1].

    A marker may arrive split across deltas ("[", "9", "9]"), so a "[" followed only by digits, commas
    and spaces is held back until it closes or stops looking like a marker. Trailing spaces are held too,
    so that dropping " [99]" does not leave a stray space before the next punctuation. Brackets inside
    code (`heap[0]`, a fenced block) are code, never citations: the filter follows spans and fences.
    """

    def __init__(self, valid_count: int) -> None:
        self.valid_count = valid_count
        self.sources: list[int] = []
        self._pending = ""
        self._span = 0  # backticks of the inline code span the text is in (0: none)
        self._fence = 0  # backticks of the fenced code block the text is in (0: none)
        self._at_line_start = True  # what was emitted so far ends a line

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
            j = _SPECIAL_RE.search(text, i)
            if j is None:
                tail = text[i:]
                kept = tail if final else tail.rstrip(" \t")
                self._pending = tail[len(kept):]
                return self._emit(out + kept)
            at = j.start()
            out += text[i:at]
            if text[at] == "`":
                run = _TICKS_RE.match(text, at)
                assert run is not None
                if not final and run.end() == len(text):
                    self._pending = text[at:]  # the run of backticks may go on in the next delta
                    return self._emit(out)
                self._code(run.group(), line_start=self._line_start(out))
                out += run.group()
                i = run.end()
                continue
            if text[at] == "\n":
                self._span = 0  # a code span the model left open ends with its line
                out += "\n"
                i = at + 1
                continue
            if self._span or self._fence:
                out += "["  # `heap[0]`, `items[1]`: code, not a citation
                i = at + 1
                continue
            marker = _MARKER_RE.match(text, at)
            if marker:
                rewritten = self._rewrite(marker.group())
                out = out + rewritten if rewritten else out.rstrip(" \t")
                i = marker.end()
                continue
            rest = text[at:]
            if not final and len(rest) <= MAX_MARKER_CHARS and _PARTIAL_RE.match(rest):
                kept = out.rstrip(" \t")  # the spaces before it go if it turns out to be dropped
                self._pending = out[len(kept):] + rest
                return self._emit(kept)
            out += "["  # "[link]", "[x": not a citation, let it through
            i = at + 1

    def _emit(self, text: str) -> str:
        if text:
            self._at_line_start = text.endswith("\n")
        return text

    def _line_start(self, out: str) -> bool:
        """Whether a backtick run at the end of `out` starts its line (only such a run opens or closes a fence)."""
        line = out.rsplit("\n", 1)
        if len(line) == 2:
            return not line[1].strip()
        return self._at_line_start and not out.strip()

    def _code(self, ticks: str, *, line_start: bool) -> None:
        """Follows code spans and fenced blocks, inside which brackets are code (CommonMark's rules, simplified)."""
        if self._fence:
            if line_start and len(ticks) >= self._fence:
                self._fence = 0
        elif line_start and len(ticks) >= 3:
            self._fence = len(ticks)
        elif self._span:
            if len(ticks) == self._span:
                self._span = 0
        else:
            self._span = len(ticks)

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

"""The builder every structured parser writes into: text under a heading path, cut into located sections."""

from __future__ import annotations

import re
from typing import TypeVar

from ragcore.types import Section

_K = TypeVar("_K")

SECTION_CHARS = 1500  # csv and json sections are cut near this size; the chunker splits further
MAX_INDENT_LEVELS = 8  # list items nested deeper are indented no further, so 200 levels stay readable

_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f\u200b\u00ad\ufeff]")
_SPACE = r"[ \t\u00a0\u2000-\u200a\u202f\u205f\u3000]"
_RUN = rf"(?: {_SPACE}|[^\S \n\r\f\v]){_SPACE}*"  # anything but a lone plain space, which needs no change
# A code block waits in the text as a slot until the section is cleaned: cleaning collapses spaces,
# and code must keep every space it has. Private-use characters, removed from the input first.
_SLOT = "\ue000{}\ue001"
_SLOT_RE = re.compile("\ue000(\\d+)\ue001")
_SLOT_CHARS = re.compile("[\ue000\ue001]")
_TICKS = re.compile(r"`+")
_ADMONITION_NAMES = {"seealso": "See also", "todo": "To do"}


def fence(code: str, lang: str = "") -> str:
    """A fenced code block in the chunk text format: ```lang, the code verbatim, ```."""
    lines = [line.rstrip() for line in code.expandtabs(4).split("\n")]
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    # the fence must be longer than any line of the code that could close it
    closers = [len(s) for s in (line.strip() for line in lines) if len(s) >= 3 and set(s) == {"`"}]
    marker = "`" * max(3, max(closers, default=0) + 1)
    lang = re.sub(r"[^\w+#.-]", "", lang.split()[0]) if lang.split() else ""
    return f"{marker}{lang}\n" + "\n".join(lines) + f"\n{marker}"


def code_span(text: str) -> str:
    """Inline code in backticks; more backticks than the code holds in a row, as CommonMark does."""
    text = inline(text)
    if not text:
        return ""
    ticks = "`" * (max((len(run) for run in _TICKS.findall(text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def admonition_header(kind: str, title: str) -> str:
    """ "Note:", or "Warning: Mind the gap" when the admonition has a title of its own."""
    kind, title = inline(kind), inline(title)
    label = _ADMONITION_NAMES.get(kind.casefold(), kind.capitalize())
    if not title or title.casefold() in (kind.casefold(), label.casefold()):
        return f"{label}:" if label else ""
    return f"{label}: {title}" if label else f"{title.rstrip(':')}:"


def list_marker(depth: int, marker: str) -> str:
    """The prefix of a list item at `depth` (1 = top level): two spaces per level, then "- " or "3. "."""
    return "  " * min(depth - 1, MAX_INDENT_LEVELS) + marker + " "


class Outline:
    """Collects text under the current heading path and cuts a section at every heading."""

    def __init__(self, *, keep_indent: bool = False) -> None:
        self.keep_indent = keep_indent
        self.headings: list[tuple[int, str]] = []  # (level, text) in document order
        self._stack: list[int] = []  # indexes into headings, outermost first
        self._parts: list[str] = []
        self._codes: list[str] = []
        self._sections: list[tuple[str, tuple[int, ...]]] = []
        self._gap, self._prefix, self._tight = 0, "", False

    def add(self, text: str) -> None:
        """Append text, first writing any line breaks and list marker that blocks asked for."""
        self._append(_SLOT_CHARS.sub("", text))

    def _append(self, text: str) -> None:
        if self._gap or self._prefix:
            if not text.strip():
                return
            if self._parts:
                self._parts.append("\n" * self._gap)
            self._parts.append(self._prefix)
            self._gap, self._prefix, self._tight = 0, "", False
            text = text.lstrip()  # a block starts at its marker or margin, not after stray spaces
        self._parts.append(text)

    def gap(self, lines: int, prefix: str = "") -> None:
        """Start the next text on a new line (1) or paragraph (2); blocks ask twice, it lands once."""
        self._gap = 1 if self._tight else max(self._gap, lines)
        self._prefix = prefix or self._prefix

    @property
    def has_prefix(self) -> bool:
        """Whether a list marker waits for the next text."""
        return bool(self._prefix)

    def end_block(self, lines: int) -> None:
        """A block closed: later text starts afresh, and an unused list marker is dropped."""
        self.gap(lines)
        self._prefix = ""

    def block(self, text: str, lines: int = 2, prefix: str = "") -> None:
        """A whole block of text: a paragraph (2) or a line (1)."""
        self.gap(lines, prefix)
        self.add(text)
        self.end_block(lines)

    def label(self, text: str) -> None:
        """A line that introduces what follows (an admonition's "Note:"): the next block starts right under it."""
        if text:
            self.block(text, 2)
            self._tight = True

    def code(self, text: str, lang: str = "") -> None:
        """A code block, fenced and kept verbatim; it always starts a paragraph of its own."""
        if not text.strip():
            return
        self._prefix = ""  # a list item that opens with code: the fence must start its line
        self.gap(2)
        self._codes.append(fence(text, lang))
        self._append(_SLOT.format(len(self._codes) - 1))
        self.end_block(2)

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

    @property
    def first_h1(self) -> str:
        return next((text for level, text in self.headings if level == 1), "")

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
        body = clean("".join(self._parts), keep_indent=self.keep_indent)
        body = _SLOT_RE.sub(lambda m: self._codes[int(m.group(1))], body)
        if body:
            self._sections.append((body, tuple(self._stack)))
        self._parts, self._gap, self._prefix, self._tight = [], 0, "", False


def group(items: list[tuple[_K, str]]) -> list[tuple[list[_K], list[str]]]:
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


def clean(text: str, *, keep_indent: bool = False) -> str:
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


def inline(text: str) -> str:
    """All whitespace runs, line breaks included, as single spaces."""
    return " ".join(text.split())

"""A parsed document as safe HTML, block by block, with the blocks of the cited passage marked.

The loaders turn every format into the same chunk text format (paragraphs, fenced code, lists,
tables as `cell | cell`), which is Markdown; console.markdown renders it with raw HTML off, so
nothing a document contains can become markup on the page.
"""

from __future__ import annotations

from dataclasses import dataclass

from console.markdown import render_markdown
from ragcore.chunking import split_blocks
from ragcore.types import ParsedDocument

# A chunk that starts or ends inside a long paragraph (cut at a sentence) is found by this many
# characters of its first or last words.
_EDGE_CHARS = 60


@dataclass(frozen=True)
class Block:
    html: str
    cited: bool
    first_cited: bool = False  # the viewer scrolls here (id="passage")


@dataclass(frozen=True)
class RenderedSection:
    location: str
    blocks: tuple[Block, ...]


def _flat(text: str) -> str:
    return " ".join(text.split())


def _overlaps(block: str, passage: str) -> bool:
    if not block:
        return False
    return block in passage or passage in block or passage[:_EDGE_CHARS] in block or passage[-_EDGE_CHARS:] in block


def _cited_span(blocks: list[str], passage: str) -> range:
    """The first run of consecutive blocks the passage covers (empty when it is not found)."""
    flat = [_flat(b) for b in blocks]
    start = next((i for i, b in enumerate(flat) if _overlaps(b, passage)), None)
    if start is None:
        return range(0)
    end = start + 1
    while end < len(flat) and _overlaps(flat[end], passage):
        end += 1
    return range(start, end)


def render_document(parsed: ParsedDocument, *, passage: str = "", location: str = "") -> tuple[list[RenderedSection], bool]:
    """Every section, rendered; and whether the passage (the cited chunk's text) was found and marked.

    The passage is looked for in the sections at its `location` first (a chunk never spans two
    sections), then anywhere, and only its first occurrence is marked.
    """
    wanted = _flat(passage)
    sections = [(s.location, split_blocks(s.text)) for s in parsed.sections]
    cited: tuple[int, range] | None = None
    if wanted:
        order = sorted(range(len(sections)), key=lambda i: sections[i][0] != location)
        for i in order:
            span = _cited_span(sections[i][1], wanted)
            if span:
                cited = (i, span)
                break
    rendered = []
    for i, (where, blocks) in enumerate(sections):
        marks = cited[1] if cited is not None and cited[0] == i else range(0)
        rendered.append(RenderedSection(where, tuple(
            Block(render_markdown(b), j in marks, bool(marks) and j == marks.start) for j, b in enumerate(blocks)
        )))
    return rendered, cited is not None

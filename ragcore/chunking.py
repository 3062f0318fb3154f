"""Splitting documents into overlapping chunks that fit the embedding model's window.

Sections (pages, headed parts) are never merged, so every chunk has one location.
Inside a section the text is read as blocks in the chunk text format (see ragcore.loaders):
paragraphs, and fenced code blocks, which stay whole even when they hold blank lines.
A block that fits is never cut. A longer paragraph is cut at lines, then sentences, and only
as a last resort at words; a longer code block is cut between its lines, each piece fenced
like the block. Consecutive pieces are packed up to the token budget, joined by what
separated them (a blank line, a line break or a space), and each new chunk repeats the last
pieces of the one before, up to the overlap budget. Token counts come from the model's own
tokenizer, so no chunk is silently truncated.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from ragcore.types import DEFAULT_COLLECTION, Chunk, ParsedDocument, chunk_id_for

TokenCounter = Callable[[Sequence[str]], list[int]]

_SENTENCE = re.compile(r"(?<=[.!?。])\s+(?=[\"'(\[A-Z0-9])")
_FENCE_OPEN = re.compile(r"(`{3,}|~{3,})")
# What joins the pieces of each split level: blocks, lines, sentences, words.
_SEPARATORS = ("\n\n", "\n", " ", " ")


@dataclass(frozen=True)
class _Piece:
    """A run of text that fits the budget, and what separated it from the piece before it."""

    text: str
    tokens: int
    sep: str


def _blocks(text: str) -> list[str]:
    """Paragraphs and fenced code blocks; a fence left open runs to the end and is closed here."""
    blocks: list[str] = []
    current: list[str] = []
    fence = ""
    for line in text.split("\n"):
        if fence:
            current.append(line)
            closer = line.strip()
            if len(closer) >= len(fence) and set(closer) == {fence[0]}:
                blocks.append("\n".join(current))
                current, fence = [], ""
        elif opener := _FENCE_OPEN.match(line):
            if current:
                blocks.append("\n".join(current))
            current, fence = [line], opener.group(1)
        elif not line.strip():
            if current:
                blocks.append("\n".join(current))
            current = []
        else:
            current.append(line)
    if current:
        blocks.append("\n".join(current) + (f"\n{fence}" if fence else ""))
    return [b.strip("\n") for b in blocks if b.strip()]


def split_blocks(text: str) -> list[str]:
    """The paragraphs and fenced code blocks of a section's text, as the chunker reads them."""
    return _blocks(text)


def _is_code(block: str) -> bool:
    return bool(_FENCE_OPEN.match(block))


def _split(text: str, level: int) -> list[str]:
    if level == 0:
        return _blocks(text)
    if level == 1:
        parts = text.split("\n")
    elif level == 2:
        parts = _SENTENCE.split(text)
    else:
        parts = text.split()
    # a line keeps its indentation (a nested list item); sentences and words need none
    return [p.rstrip() if level == 1 else p.strip() for p in parts if p.strip()]


def _pieces(text: str, budget: int, count: TokenCounter, level: int = 0) -> list[_Piece]:
    """Breaks text into pieces that each fit the budget, coarsest cuts first."""
    parts = _split(text, level)
    sizes = count(parts) if parts else []
    out: list[_Piece] = []
    for part, size in zip(parts, sizes):
        if size <= budget:
            cut = [_Piece(part, size, "")]
        elif level == 0 and _is_code(part):
            cut = _code_pieces(part, budget, count)
        elif level < 3:
            cut = _pieces(part, budget, count, level + 1)
        else:
            cut = _cut_word(part, budget, count)
        if cut:  # the first piece of a cut part is separated from the part before as the whole part was
            cut[0] = replace(cut[0], sep=_SEPARATORS[level])
        out.extend(cut)
    return out


def _code_pieces(block: str, budget: int, count: TokenCounter) -> list[_Piece]:
    """A code block longer than the budget: cut between lines, every piece fenced like the block."""
    lines = block.split("\n")
    opener, closer, body = lines[0], lines[-1], lines[1:-1]
    overhead = sum(count([opener, closer]))
    inner = max(8, budget - overhead)
    line_sizes = count(body) if body else []
    groups: list[tuple[list[str], int]] = []
    for line, size in zip(body, line_sizes):
        parts = [(line, size)] if size <= inner else [(p.text, p.tokens) for p in _pieces(line, inner, count, 2)]
        for part, part_size in parts:
            if not groups or groups[-1][1] + part_size > inner:
                groups.append(([], 0))
            groups[-1][0].append(part)
            groups[-1] = (groups[-1][0], groups[-1][1] + part_size)
    return [_Piece("\n".join([opener, *group, closer]), size + overhead, "\n\n") for group, size in groups]


def _cut_word(word: str, budget: int, count: TokenCounter) -> list[_Piece]:
    """A single 'word' longer than the window (a URL, a base64 blob): cut it by characters."""
    step = max(1, budget * 2)  # at least ~2 characters per token for such strings
    parts = [word[i : i + step] for i in range(0, len(word), step)]
    return [_Piece(part, size, "") for part, size in zip(parts, count(parts))]


def _join(pieces: Sequence[_Piece]) -> str:
    return "".join(p.sep + p.text if i else p.text for i, p in enumerate(pieces))


def _pack(pieces: list[_Piece], budget: int, overlap: int) -> list[str]:
    chunks: list[str] = []
    current: list[_Piece] = []
    size = 0
    for piece in pieces:
        if current and size + piece.tokens > budget:
            chunks.append(_join(current))
            carried: list[_Piece] = []
            carried_size = 0
            for prev in reversed(current):
                if carried_size + prev.tokens > overlap or carried_size + prev.tokens + piece.tokens > budget:
                    break
                carried.insert(0, prev)
                carried_size += prev.tokens
            current, size = carried, carried_size
        current.append(piece)
        size += piece.tokens
    if current:
        chunks.append(_join(current))
    return chunks


def split_document(
    parsed: ParsedDocument,
    *,
    document_id: str,
    source: str,
    checksum: str,
    count_tokens: TokenCounter,
    max_tokens: int,
    overlap_tokens: int,
    title: str | None = None,
    collection: str = DEFAULT_COLLECTION,
) -> list[Chunk]:
    """Chunks whose index text (title › location + text) fits in max_tokens model tokens."""
    title = parsed.title if title is None else title
    headers = [" › ".join(p for p in (title, s.location) if p) for s in parsed.sections]
    header_sizes = count_tokens(headers)
    texts: list[tuple[str, str]] = []
    for section, header_size in zip(parsed.sections, header_sizes):
        # One token joins the header to the text; keep at least a useful budget for text.
        budget = max(32, max_tokens - header_size - 1)
        for text in _pack(_pieces(section.text, budget, count_tokens), budget, min(overlap_tokens, budget // 2)):
            texts.append((text, section.location))
    return [
        Chunk(
            chunk_id=chunk_id_for(document_id, position),
            document_id=document_id,
            position=position,
            text=text,
            title=title,
            source=source,
            location=location,
            checksum=checksum,
            collection=collection,
        )
        for position, (text, location) in enumerate(texts)
    ]

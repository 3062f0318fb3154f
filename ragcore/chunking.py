"""Splitting documents into overlapping chunks that fit the embedding model's window.

Sections (pages, headed parts) are never merged, so every chunk has one location.
Inside a section the text is cut at paragraphs, then lines, then sentences, and only
as a last resort at words; consecutive pieces are packed up to the token budget and
each new chunk repeats the last pieces of the one before, up to the overlap budget.
Token counts come from the model's own tokenizer, so no chunk is silently truncated.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from ragcore.types import Chunk, ParsedDocument

TokenCounter = Callable[[Sequence[str]], list[int]]

_PARAGRAPH = re.compile(r"\n\s*\n")
_SENTENCE = re.compile(r"(?<=[.!?。])\s+(?=[\"'(\[A-Z0-9])")


def _split(text: str, level: int) -> list[str]:
    if level == 0:
        parts = _PARAGRAPH.split(text)
    elif level == 1:
        parts = text.split("\n")
    elif level == 2:
        parts = _SENTENCE.split(text)
    else:
        parts = text.split()
    return [p.strip() for p in parts if p.strip()]


def _pieces(text: str, budget: int, count: TokenCounter, level: int = 0) -> list[tuple[str, int]]:
    """Breaks text into (piece, tokens) with every piece within budget, coarsest cuts first."""
    parts = _split(text, level)
    sizes = count(parts) if parts else []
    out: list[tuple[str, int]] = []
    for part, size in zip(parts, sizes):
        if size <= budget:
            out.append((part, size))
        elif level < 3:
            out.extend(_pieces(part, budget, count, level + 1))
        else:
            out.extend(_cut_word(part, budget, count))
    return out


def _cut_word(word: str, budget: int, count: TokenCounter) -> list[tuple[str, int]]:
    """A single 'word' longer than the window (a URL, a base64 blob): cut it by characters."""
    step = max(1, budget * 2)  # at least ~2 characters per token for such strings
    parts = [word[i : i + step] for i in range(0, len(word), step)]
    return list(zip(parts, count(parts)))


def _pack(pieces: list[tuple[str, int]], budget: int, overlap: int) -> list[str]:
    chunks: list[str] = []
    current: list[tuple[str, int]] = []
    size = 0
    for piece, tokens in pieces:
        if current and size + tokens > budget:
            chunks.append(" ".join(p for p, _ in current))
            carried: list[tuple[str, int]] = []
            carried_size = 0
            for prev in reversed(current):
                if carried_size + prev[1] > overlap or carried_size + prev[1] + tokens > budget:
                    break
                carried.insert(0, prev)
                carried_size += prev[1]
            current, size = carried, carried_size
        current.append((piece, tokens))
        size += tokens
    if current:
        chunks.append(" ".join(p for p, _ in current))
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
            chunk_id=f"{document_id}:{position}",
            document_id=document_id,
            position=position,
            text=text,
            title=title,
            source=source,
            location=location,
            checksum=checksum,
        )
        for position, (text, location) in enumerate(texts)
    ]

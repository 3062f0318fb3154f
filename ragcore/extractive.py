"""The answer without an LLM: the passages' most relevant sentences, each with its citation."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from ragcore.tokenize import tokenize
from ragcore.types import ScoredChunk

NOTICE = "*Extractive answer: these are the most relevant passages from your documents, quoted without a language model.*"
NOTHING_FOUND = "I could not find anything in the documents that answers this."

_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
# A line break inside a paragraph is only wrapping, unless the next line starts a list item.
_SOFT_BREAK = re.compile(r"(?<!\n)\n(?!\n)(?![ \t]*(?:[-*•+]|\d+[.)])\s)")
_MAX_SENTENCES = 4
_MAX_SENTENCE_CHARS = 400


def _sentences(text: str) -> list[str]:
    out = []
    for s in _SENTENCE.split(_SOFT_BREAK.sub(" ", text)):
        s = s.strip(" -*#>\t")
        if len(s) >= 20:
            out.append(s if len(s) <= _MAX_SENTENCE_CHARS else s[:_MAX_SENTENCE_CHARS].rsplit(" ", 1)[0] + " …")
    return out


def select_sentences(question: str, chunks: Sequence[ScoredChunk], limit: int = _MAX_SENTENCES) -> list[tuple[str, int]]:
    """(sentence, source number) pairs, the most relevant first, at most one near-copy each."""
    terms = set(tokenize(question))
    candidates: list[tuple[float, int, int, str]] = []
    for n, scored in enumerate(chunks, start=1):
        # Earlier sources were ranked higher by retrieval; keep a gentle preference for them.
        rank_weight = 1.0 / math.sqrt(n)
        for i, sentence in enumerate(_sentences(scored.chunk.text)):
            words = tokenize(sentence)
            if not words:
                continue
            hits = len(terms.intersection(words))
            score = rank_weight * (hits + 0.1) / math.sqrt(len(words))
            candidates.append((score, n, i, sentence))
    candidates.sort(key=lambda c: c[0], reverse=True)
    chosen: list[tuple[int, int, str]] = []
    seen: list[set[str]] = []
    for _score, n, i, sentence in candidates:
        bag = set(tokenize(sentence))
        if any(len(bag & other) >= 0.8 * max(1, min(len(bag), len(other))) for other in seen):
            continue
        seen.append(bag)
        chosen.append((n, i, sentence))
        if len(chosen) == limit:
            break
    chosen.sort()  # read in source order, and in each source in reading order
    return [(sentence, n) for n, _i, sentence in chosen]


def compose(question: str, chunks: Sequence[ScoredChunk]) -> str:
    """The whole extractive answer as Markdown, citing sources as [n]."""
    picked = select_sentences(question, chunks)
    if not picked:
        return NOTHING_FOUND
    lines = [NOTICE, ""] + [f"- {sentence} [{n}]" for sentence, n in picked]
    return "\n".join(lines)

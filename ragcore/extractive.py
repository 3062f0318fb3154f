"""The answer without an LLM: the retrieved chunks' sentences that answer the question, each cited.

Chunk text is Markdown-ish (see ragcore.loaders): paragraphs, list items, ``` fenced code blocks with
their language. `split_units` cuts it into whole sentences and whole code blocks; `select_evidence`
scores every unit of the top chunks against the question with the embedding model (one batched
encode call) and keyword overlap, and `compose` writes the best few as Markdown bullets citing [n],
the chunk's number in retrieval order (the citation filter renumbers them as they stream).

Sentences are split with a small rule set rather than a library: the units are not plain prose (fences,
list items, hard-wrapped lines must be handled first anyway), and pysbd or syntok (unmaintained since
2021/2022) cost ~100x more per sentence on the answer path for no gain on documentation text.
"""

from __future__ import annotations

import math
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

from ragcore.tokenize import tokenize
from ragcore.types import ScoredChunk

NOTICE = "*Extractive answer: the sentences of your documents that answer this best, quoted without a language model.*"
NOTHING_FOUND = "I could not find anything in the documents that answers this."

Encode = Callable[[Sequence[str]], np.ndarray]  # texts -> L2-normalized rows, one model call

MAX_BULLETS = 4
# Units scored with the model per answer, chosen by keyword evidence and rank first: each costs a model
# call's share (~5-10 ms on one busy core), and this is on the answer path.
MAX_EMBEDDED = 16
MAX_UNIT_CHARS = 700  # a longer "sentence" is a table or a flattened list: split at its lines instead
MIN_UNIT_WORDS = 3
# Weights of the unit score. Dense similarity carries meaning ("how long until it gives up" ~ "timeout");
# keyword coverage carries the exact terms ("default"), which a 6-layer model blurs. Tuned on the
# python and lorebot answer sets, never on the held-out django set (benchmarks/answer_quality.py).
DENSE_WEIGHT = 0.55
KEYWORD_WEIGHT = 0.45
LONG_UNIT_TERMS = 30
RANK_DECAY = 0.03  # per retrieval rank: ties go to the chunk retrieval ranked higher
# A unit joins the answer if it scores at least this share of the best unit's score.
KEEP_RATIO = 0.7
# Code answers "how do I" questions well but is mostly examples; prose wins unless code is clearly better.
CODE_PENALTY = 0.08
CODE_CUES = frozenset(tokenize("example code snippet command run install configure write show usage syntax"))

_FENCE = re.compile(r"^[ \t]*(```+|~~~+)")
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[`*_]*[A-Z0-9])")
# Not a sentence end: "e.g. Foo", "Dr. Who", "v1. Then" is rare enough to accept.
_ABBREVIATION = re.compile(r"(?:\b(?:e\.g|i\.e|etc|vs|cf|Dr|Mr|Mrs|Ms|No|Fig|approx|incl)\.|\b[A-Z]\.)$")
_LIST_ITEM = re.compile(r"^[ \t]*(?:[-*+•]|\d+[.)])[ \t]+")
_HEADING = re.compile(r"^[ \t]*#{1,6}[ \t]")
_SOFT_BREAK = re.compile(r"(?<!\n)\n(?!\n)")
_ANAPHORA = re.compile(r"^(?:it|this|these|that|those|they|its|such|here|there)\b", re.I)
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class Unit:
    """A whole sentence, or a whole fenced code block, of one chunk, in reading order."""

    text: str
    code: bool = False
    paragraph: int = 0  # units of one paragraph share this number (neighbours are looked for there)


@dataclass(frozen=True)
class Evidence:
    """A unit chosen for the answer: its text as quoted, the source number it cites, its score."""

    text: str
    source: int
    score: float
    code: bool = False
    where: str = ""  # "title › location" of its chunk, to introduce a code block


def split_units(text: str) -> list[Unit]:
    """Sentences and code blocks of a chunk's text; a fenced block is one unit, never split."""
    units: list[Unit] = []
    paragraph = 0
    prose: list[str] = []

    def flush_prose() -> None:
        nonlocal paragraph
        for block in re.split(r"\n[ \t]*\n", "\n".join(prose)):
            for item in _items(block):
                paragraph += 1
                units.extend(Unit(s, paragraph=paragraph) for s in _sentences(item))
        prose.clear()

    lines = text.split("\n")
    i = 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        if not fence:
            prose.append(lines[i])
            i += 1
            continue
        flush_prose()
        marker = fence.group(1)
        end = i + 1
        while end < len(lines) and not lines[end].strip().startswith(marker[:3]):
            end += 1
        # An unterminated fence runs to the end of the chunk, and is closed here so it renders.
        body = lines[i : end + 1] if end < len(lines) else [*lines[i:], marker]
        paragraph += 1
        if any(line.strip() for line in body[1:-1]):
            units.append(Unit("\n".join(body).strip("\n"), code=True, paragraph=paragraph))
        i = end + 1
    flush_prose()
    return units


def _items(block: str) -> list[str]:
    """A paragraph, or each item of a list, with hard-wrapped lines joined; headings dropped."""
    items: list[str] = []
    for line in block.split("\n"):
        if _HEADING.match(line) or not line.strip():
            continue  # the chunk's location already names its section
        if _LIST_ITEM.match(line) or not items:
            items.append(_LIST_ITEM.sub("", line).strip())
        else:
            items[-1] += " " + line.strip()
    return [item.lstrip("> ").strip() for item in items if item.strip()]


def _sentences(item: str) -> list[str]:
    """Whole sentences of one paragraph or list item."""
    pieces: list[str] = []
    for part in _SENTENCE_END.split(_SOFT_BREAK.sub(" ", item)):
        if pieces and _ABBREVIATION.search(pieces[-1]):
            pieces[-1] += " " + part  # "e.g. Foo" did not end a sentence
        else:
            pieces.append(part)
    out: list[str] = []
    for piece in pieces:
        piece = _clean(piece)
        if len(_WORD.findall(piece)) < MIN_UNIT_WORDS or piece.endswith("?"):
            continue  # a question (an FAQ's, a heading's) restates what was asked rather than answering it
        if len(piece) <= MAX_UNIT_CHARS:
            out.append(piece)
    return out


def _clean(text: str) -> str:
    """One line of Markdown that renders on its own: no dangling bold or code markers."""
    text = " ".join(text.split())
    if text.count("`") % 2:
        text = text.replace("`", "")  # an inline code span the chunk boundary cut in half
    if text.count("**") % 2:
        text = text.replace("**", "")
    if text.count("__") % 2:
        text = text.replace("__", "")
    return text


def select_evidence(question: str, chunks: Sequence[ScoredChunk], encode: Encode,
                    limit: int = MAX_BULLETS) -> list[Evidence]:
    """The units that answer `question` best, most relevant first, at most `limit` of them."""
    candidates: list[tuple[int, int, Unit]] = []  # (source number, index in its chunk, unit)
    by_chunk: list[list[Unit]] = []
    seen: set[str] = set()
    for n, scored in enumerate(chunks, start=1):
        units = split_units(scored.chunk.text)
        by_chunk.append(units)
        for i, unit in enumerate(units):
            key = " ".join(tokenize(unit.text)) or unit.text
            if key in seen:
                continue  # the same sentence in the overlap of two chunks
            seen.add(key)
            candidates.append((n, i, unit))
    if not candidates:
        return []
    keyword = _keyword_scores(question, [u for _, _, u in candidates])
    # Only the likeliest units go to the model; the order keeps retrieval's ranking among equals.
    shortlist = sorted(range(len(candidates)), key=lambda j: keyword[j] - RANK_DECAY * candidates[j][0],
                       reverse=True)[:MAX_EMBEDDED]
    candidates = [candidates[j] for j in shortlist]
    keyword = [keyword[j] for j in shortlist]
    vectors = encode([question] + [u.text for _, _, u in candidates])
    dense = vectors[1:] @ vectors[0]
    wants_code = bool(CODE_CUES.intersection(tokenize(question)))
    scored_units: list[tuple[float, int, int, Unit]] = []
    for (n, i, unit), d, k in zip(candidates, dense, keyword):
        score = DENSE_WEIGHT * float(d) + KEYWORD_WEIGHT * k - RANK_DECAY * (n - 1)
        if unit.code and not wants_code:
            score -= CODE_PENALTY
        scored_units.append((score, n, i, unit))
    scored_units.sort(key=lambda s: s[0], reverse=True)
    best = scored_units[0][0]
    chosen: list[Evidence] = []
    used: dict[tuple[int, int], int] = {}  # (source, unit) -> the bullet that quotes it
    for score, n, i, unit in scored_units:
        if len(chosen) == limit or (chosen and score < KEEP_RATIO * best):
            break
        if (n, i) in used:
            continue
        text, parts = _with_neighbours(by_chunk[n - 1], i)
        quoted = [used[(n, j)] for j in parts if (n, j) in used]
        if quoted:
            # Its neighbour is already a bullet ("It …" after the sentence it leans on): the bullet goes on with it.
            bullet = chosen[quoted[0]]
            if not unit.code and not bullet.code:
                chosen[quoted[0]] = replace(bullet, text=f"{bullet.text} {unit.text}")
                used[(n, i)] = quoted[0]
            continue
        used.update({(n, j): len(chosen) for j in parts})
        chunk = chunks[n - 1].chunk
        where = " › ".join(p for p in (chunk.title, chunk.location) if p)
        chosen.append(Evidence(text, n, score, code=unit.code, where=where))
    return chosen


def _keyword_scores(question: str, units: Sequence[Unit]) -> list[float]:
    """Share of the question's terms each unit contains, each term weighted by its rarity among the units."""
    terms = set(tokenize(question))
    if not terms:
        return [0.0] * len(units)
    bags = [set(tokenize(u.text)) for u in units]
    count = len(bags)
    weight = {t: math.log(1 + count / (1 + sum(t in bag for bag in bags))) for t in terms}
    total = sum(weight.values()) or 1.0
    # Long units contain more terms by chance (a flattened list, a signature with every parameter):
    # past LONG_UNIT_TERMS their coverage counts less, as BM25 normalizes by length.
    return [sum(w for t, w in weight.items() if t in bag) / total * min(1.0, math.sqrt(LONG_UNIT_TERMS / max(len(bag), 1)))
            for bag in bags]


def _with_neighbours(units: Sequence[Unit], i: int) -> tuple[str, list[int]]:
    """The unit's text, with the sentence before it when it leans on it ("It …", "This …"), and the code
    block after it when it introduces one ("… run:")."""
    parts = [i]
    unit = units[i]
    if not unit.code and _ANAPHORA.match(unit.text) and i > 0 and units[i - 1].paragraph == unit.paragraph:
        parts.insert(0, i - 1)
    if not unit.code and unit.text.endswith(":") and i + 1 < len(units) and units[i + 1].code:
        parts.append(i + 1)
    prose = " ".join(units[j].text for j in parts if not units[j].code)
    code = [units[j].text for j in parts if units[j].code]
    return "\n".join([prose, *code] if prose else code), parts


class _Batcher(Protocol):
    def submit(self, text: str) -> Future[np.ndarray]: ...


class SentenceEncoder:
    """Sentence embeddings for `select_evidence`, through the engine's query batcher (its one-thread
    model calls keep a busy web process responsive), remembered: popular chunks come back often."""

    def __init__(self, batcher: _Batcher, size: int = 8192) -> None:
        self._batcher = batcher
        self._size = size  # 8192 vectors of 384 floats: 12 MB
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            known = {t: self._cache[t] for t in texts if t in self._cache}
            for t in known:
                self._cache.move_to_end(t)
        futures = {t: self._batcher.submit(t) for t in dict.fromkeys(texts) if t not in known}
        fresh = {t: f.result() for t, f in futures.items()}
        with self._lock:
            self._cache.update(fresh)
            while len(self._cache) > self._size:
                self._cache.popitem(last=False)
        return np.stack([known[t] if t in known else fresh[t] for t in texts])


def compose(question: str, chunks: Sequence[ScoredChunk], encode: Encode) -> str:
    """The whole extractive answer as Markdown, citing sources as [n]."""
    evidence = select_evidence(question, chunks, encode)
    if not evidence:
        return NOTHING_FOUND
    return "\n".join([NOTICE, "", *(render(e) for e in evidence)])


def render(evidence: Evidence) -> str:
    """One bullet; a code block follows its bullet whole, unindented, so every surface renders it as code."""
    if not evidence.code and "\n" not in evidence.text:
        return f"- {evidence.text} [{evidence.source}]"
    fence = next((i for i, line in enumerate(evidence.text.split("\n")) if _FENCE.match(line)), None)
    lines = evidence.text.split("\n")
    lead = " ".join(lines[:fence]) if fence is not None else evidence.text
    code = "\n".join(lines[fence:]) if fence is not None else ""
    if not lead:
        lead = f"In {_escape(evidence.where)}:" if evidence.where else "From the documents:"
    head = f"- {lead} [{evidence.source}]" if not lead.endswith(":") else f"- {lead[:-1]} [{evidence.source}]:"
    return f"{head}\n\n{code}\n" if code else head


def first_sentence(text: str) -> str:
    """The first whole sentence of a chunk's prose ("" when it has none), for "the closest passage is …"."""
    return next((u.text for u in split_units(text) if not u.code), "")


def where(scored: ScoredChunk, n: int) -> str:
    """"in Title › § Section [n]": a passage named and cited."""
    chunk = scored.chunk
    name = _escape(" › ".join(p for p in (chunk.title, chunk.location) if p))
    return f"in {name} [{n}]" if name else f"[{n}]"


def _escape(text: str) -> str:
    """A title as plain text on every surface: no emphasis, code or citation-like brackets of its own."""
    return re.sub(r"[*_`\[\]]", "", text)

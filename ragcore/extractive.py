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
from functools import partial
from typing import Protocol

import numpy as np

from ragcore.tokenize import tokenize
from ragcore.types import Chunk, ScoredChunk

NOTICE = "*Extractive answer: the sentences of your documents that answer this best, quoted without a language model.*"
NOTHING_FOUND = "I could not find anything in the documents that answers this."

Encode = Callable[[Sequence[str]], np.ndarray]  # texts -> L2-normalized rows, one model call
NextChunk = Callable[[Chunk], "Chunk | None"]  # the chunk after this one in its document, from the index

MAX_BULLETS = 4
# Units scored with the model per answer, chosen by keyword evidence and rank first: each costs a model
# call's share (~5-10 ms on one busy core), and this is on the answer path.
MAX_EMBEDDED = 16
MAX_UNIT_CHARS = 700  # a longer "sentence" is a table or a flattened list: split at its lines instead
MIN_UNIT_WORDS = 3
# Weights of the unit score. Dense similarity carries meaning ("how long until it gives up" ~ "timeout");
# keyword coverage carries the exact terms ("default"), which a 6-layer model blurs. 0.55/0.45 on the python
# and lorebot answer sets in the first round; 0.6/0.4 in the third, on all six (requests 24/27 from 23/27, none
# lower; 0.65/0.35 lost django's `EmptyPage`): a sentence that shares one rare word of the question by chance
# ("… send large streams or files without reading them into memory" for a question about downloading) must
# not outweigh the one that means what was asked (benchmarks/answer_quality.py).
DENSE_WEIGHT = 0.6
KEYWORD_WEIGHT = 0.4
LONG_UNIT_TERMS = 30
RANK_DECAY = 0.03  # per retrieval rank: ties go to the chunk retrieval ranked higher
# A unit joins the answer if it scores at least this share of the best unit's score. 0.7 on the python and
# lorebot sets in the first round; 0.6 in the second, on all five (click 23/26 from 20/26, python 24/25 from
# 23/25, none lower): the answer's fact is often the second-best sentence, and MAX_BULLETS still caps it.
KEEP_RATIO = 0.6
# Code answers "how do I" questions well but is mostly examples; prose wins unless code is clearly better.
CODE_PENALTY = 0.08
CODE_CUES = frozenset(tokenize("example code snippet command run install configure write show usage syntax"))
# "How do I …?" is answered by an instruction ("… , pass a unique identifier as `dispatch_uid`", "you can use …"),
# not by a description of the problem: such sentences get this much more.
INSTRUCTION_BONUS = 0.06
_HOW_TO = re.compile(r"^\W*(?:how (?:do|can|could|should|would|to)|what should i)\b", re.I)
_INSTRUCTION = re.compile(
    r"(?:^|[,;:]\s|\bthen\s)(?:use|pass|set|call|run|add|put|create|define|write|install|enable|disable|import|"
    r"specify|override|subclass|register|include|configure|provide|raise|return|open|wrap|decorate|replace|"
    r"consider|give|list|change|make)\b|\byou (?:can|could|may|might|should|need to|must|will need to)\b"
    r"|^(?:this|the following|the next) (?:example|code|snippet) (?:uses|shows|calls|adds|creates)\b", re.I)
# "See Running Commands with the CLI Runner for an overview of how to test …" repeats the question's words and
# sends the reader elsewhere: it answers only when nothing else does.
POINTER_PENALTY = 0.5  # below any sentence that answers at all
_POINTER = re.compile(r"^(?:see|refer to|consult)\b|^for (?:more|further|additional) (?:information|details)\b"
                      r"|^(?:more|further) (?:information|details) (?:can be found|is available)\b", re.I)

_FENCE = re.compile(r"^[ \t]*(```+|~~~+)")
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[`*_]*[A-Z0-9])")
# Not a sentence end: "e.g. Foo", "Dr. Who", "v1. Then" is rare enough to accept.
_ABBREVIATION = re.compile(r"(?:\b(?:e\.g|i\.e|etc|vs|cf|Dr|Mr|Mrs|Ms|No|Fig|approx|incl)\.|\b[A-Z]\.)$")
_LIST_ITEM = re.compile(r"^[ \t]*(?:[-*+•]|\d+[.)])[ \t]+")
_HEADING = re.compile(r"^[ \t]*#{1,6}[ \t]")
_SOFT_BREAK = re.compile(r"(?<!\n)\n(?!\n)")
# A sentence that leans on the one before it: a pronoun, or a connective that continues an argument.
_ANAPHORA = re.compile(
    r"^(?:(?:it|this|these|that|those|they|its|such|here|there|thus|therefore|hence|however|otherwise|instead|"
    r"consequently|likewise|similarly|additionally|furthermore|moreover|as a result|in addition|"
    r"to do (?:so|this|that)|in (?:this|that|these|those|such|which) \w+)\b"
    r"|(?:so|then|for example|for instance),"
    # "If it is set to `-1`, …": the condition's subject is what the sentence before named.
    r"|(?:if|when|once|unless|until|while) (?:it|this|these|they|that|those)\b(?! (?:is|are) (?:not )?(?:possible|necessary|needed|required)))",
    re.I)
# A paragraph that is only a term (a Sphinx signature, `send_mass_mail(datatuple, ...)`, "exception Foo"): the
# paragraph after it defines it, and its first sentence ("Return the n smallest …") is quoted with the term.
_SIGNATURE = re.compile(r"^(?:(?:class|exception|async|await|classmethod|staticmethod|method|function|property|"
                        r"attribute|data|decorator|coroutine|abstractmethod)\s+)*[A-Za-z_][\w.]*(?:\(.*\))?"
                        r"(?:\s*(?:->|→)\s*\S.*)?$")
_TERM_PREFIX = re.compile(r"^`[^`]+`: ")
_DEFAULT_FIELD = re.compile(r"^Default(?: value)?:\s+\S.{0,150}$")
MAX_TERM_CHARS = 160
MAX_LEAD_IN_WORDS = 6  # "Example:", "And on the command line:": a lead-in, not a sentence of its own
MAX_LEANING_BACK = 2  # sentences before a quoted one that it may bring because each leans on the one before
REMEDY_LOOKAHEAD = 3  # sentences after a how-to answer's problem statement searched for its remedy
MAX_LIST_ITEMS = 8  # a sentence that introduces a list ("… in this order:") brings at most this many items
_WORD = re.compile(r"\w+")
_CODE_SPAN = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)")


@dataclass(frozen=True)
class Unit:
    """A whole sentence, or a whole fenced code block, of one chunk, in reading order."""

    text: str
    code: bool = False
    paragraph: int = 0  # units of one paragraph share this number (neighbours are looked for there)
    listed: int = 0  # the items of one list share this number (0: not a list item)


@dataclass(frozen=True)
class Evidence:
    """A unit chosen for the answer: its text as quoted, the source number it cites, its score."""

    text: str
    source: int
    score: float
    code: bool = False
    where: str = ""  # "title › location" of its chunk, to introduce a code block
    items: tuple[str, ...] = ()  # the list the text introduces, item by item


def split_units(text: str) -> list[Unit]:
    """Sentences and code blocks of a chunk's text; a fenced block is one unit, never split."""
    units: list[Unit] = []
    paragraph = lists = 0
    prose: list[str] = []
    defined = -1  # the unit that opens the last definition ("`NAME`: The name of …"), for its "Default:" line

    def flush_prose() -> None:
        nonlocal paragraph, lists, defined
        term = ""
        in_list = False  # the block before was a list item
        for block in re.split(r"\n[ \t]*\n", "\n".join(prose)):
            items = _items(block)
            if len(items) == 1 and not items[0][1] and _is_term(items[0][0]):
                term = items[0][0]  # defined by the next paragraph
                continue
            if len(items) == 1 and _DEFAULT_FIELD.match(items[0][0]) and units and not term:
                # Sphinx reference pages end a definition with "Default: `'session'`": the value belongs to
                # what it is the default of, and is too short to be quoted alone.
                at = defined if defined >= 0 else len(units) - 1
                if not units[at].code:
                    units[at] = replace(units[at], text=f"{units[at].text} ({_clean(items[0][0])})")
                continue
            listed = 0
            if any(is_item for _, is_item in items):
                # The items of a loose list (a blank line between them, as HTML's <li><p>) are one list too.
                if not (in_list and items[0][1]):
                    lists += 1
                listed = lists
            in_list = bool(items) and items[-1][1]
            for item, is_item in items:
                paragraph += 1
                sentences = _sentences(item, short=is_item)
                if term and sentences:
                    sentences[0] = f"{_as_code(term)}: {sentences[0]}"
                    defined = len(units)
                elif term:
                    units.append(Unit(_as_code(term), paragraph=paragraph))
                term = ""
                units.extend(Unit(s, paragraph=paragraph, listed=listed if is_item else 0) for s in sentences)
        if term:
            units.append(Unit(_as_code(term), paragraph=paragraph + 1))
            paragraph += 1
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
        while end < len(lines) and not _closes(lines[end], marker):
            end += 1
        # An unterminated fence runs to the end of the chunk, and is closed here so it renders.
        body = lines[i : end + 1] if end < len(lines) else [*lines[i:], marker]
        paragraph += 1
        if any(line.strip() for line in body[1:-1]):
            units.append(Unit("\n".join(body).strip("\n"), code=True, paragraph=paragraph))
        i = end + 1
    flush_prose()
    return units


def _closes(line: str, marker: str) -> bool:
    """Whether `line` closes a block opened with `marker`: the same character, at least as many times, alone
    (a ```` fence holds ``` lines: a page about Markdown quotes its fences so)."""
    closer = line.strip()
    return len(closer) >= len(marker) and set(closer) == {marker[0]}


def _items(block: str) -> list[tuple[str, bool]]:
    """A paragraph, or each item of a list (True), with hard-wrapped lines joined; headings dropped."""
    items: list[tuple[str, bool]] = []
    for line in block.split("\n"):
        if _HEADING.match(line) or not line.strip():
            continue  # the chunk's location already names its section
        if _LIST_ITEM.match(line) or not items:
            items.append((_LIST_ITEM.sub("", line).strip(), bool(_LIST_ITEM.match(line))))
        else:
            items[-1] = (items[-1][0] + " " + line.strip(), items[-1][1])
    return [(item.lstrip("> ").strip(), is_item) for item, is_item in items if item.strip()]


def _is_term(line: str) -> bool:
    """Whether a one-line paragraph names what the next one defines (a signature, an identifier)."""
    line = line.strip()
    if len(line) > MAX_TERM_CHARS or line[-1] in ".!?:;,":
        return False
    bare = line[1:-1] if line.startswith("`") and line.endswith("`") and line.count("`") == 2 else line
    return "`" not in bare and bool(_SIGNATURE.match(bare)) and any(c in bare for c in "._(")


def _as_code(term: str) -> str:
    """The term as an inline code span (it is an identifier or a signature)."""
    return term if term.startswith("`") else f"`{term}`"


def _sentences(item: str, *, short: bool = False) -> list[str]:
    """Whole sentences of one paragraph or list item. With `short` (a list item), a piece of fewer than
    MIN_UNIT_WORDS words is kept: a list of names ("- Abbreviations", "- Tables") is quoted whole or not at all."""
    pieces: list[str] = []
    for part in _SENTENCE_END.split(_SOFT_BREAK.sub(" ", item)):
        if pieces and _ABBREVIATION.search(pieces[-1]):
            pieces[-1] += " " + part  # "e.g. Foo" did not end a sentence
        else:
            pieces.append(part)
    out: list[str] = []
    for piece in pieces:
        piece = _clean(piece)
        if not _WORD.search(piece) or (len(_WORD.findall(piece)) < MIN_UNIT_WORDS and not short) or piece.endswith("?"):
            continue  # a question (an FAQ's, a heading's) restates what was asked rather than answering it
        if len(piece) <= MAX_UNIT_CHARS:
            out.append(piece)
    return out


def _clean(text: str) -> str:
    """One line of Markdown that renders on its own: no dangling bold or code markers."""
    text = " ".join(text.split())
    if "`" in _CODE_SPAN.sub("", text):
        text = text.replace("`", "")  # an inline code span the chunk boundary cut in half
    for marker in ("**", "__"):
        if _CODE_SPAN.sub("", text).count(marker) % 2:  # `**` or `__init__` inside code is code, not emphasis
            text = _outside_code(text, partial(_drop, marker))
    return text


def _drop(marker: str, prose: str) -> str:
    return prose.replace(marker, "")


def _outside_code(text: str, change: Callable[[str], str]) -> str:
    """`text` with `change` applied to everything but its inline code spans."""
    out, last = [], 0
    for span in _CODE_SPAN.finditer(text):
        out += [change(text[last:span.start()]), span.group()]
        last = span.end()
    return "".join([*out, change(text[last:])])


def _shortlist(question: str, chunks: Sequence[ScoredChunk]) -> tuple[list[list[Unit]], list[tuple[int, int, Unit]], list[float]]:
    """The units of every chunk, and the likeliest of them (source number, index in its chunk, unit) with their
    keyword scores: only these go to the model."""
    candidates: list[tuple[int, int, Unit]] = []  # (source number, index in its chunk, unit)
    by_chunk: list[list[Unit]] = []
    seen: set[str] = set()
    for n, scored in enumerate(chunks, start=1):
        units = split_units(scored.chunk.text)
        by_chunk.append(units)
        for i, unit in enumerate(units):
            if _is_lead_in(units, i):
                continue  # "And on the command line:" says nothing alone; it comes with the block it introduces
            if unit.listed and len(_WORD.findall(unit.text)) < MIN_UNIT_WORDS:
                continue  # "- Tables": an item of a list of names comes with the list, never alone
            key = " ".join(tokenize(_TERM_PREFIX.sub("", unit.text))) or unit.text
            if key in seen:
                continue  # the same sentence in the overlap of two chunks (with or without its term)
            seen.add(key)
            candidates.append((n, i, unit))
    if not candidates:
        return by_chunk, [], []
    headings = [_heading_terms(chunks[n - 1].chunk.location) for n, _, _ in candidates]
    keyword = _keyword_scores(question, [u for _, _, u in candidates], headings)
    # The order keeps retrieval's ranking among equals.
    shortlist = sorted(range(len(candidates)), key=lambda j: keyword[j] - RANK_DECAY * candidates[j][0],
                       reverse=True)[:MAX_EMBEDDED]
    return by_chunk, [candidates[j] for j in shortlist], [keyword[j] for j in shortlist]


def select_evidence(question: str, chunks: Sequence[ScoredChunk], encode: Encode,
                    limit: int = MAX_BULLETS, next_chunk: NextChunk | None = None) -> list[Evidence]:
    """The units that answer `question` best, most relevant first, at most `limit` of them. `next_chunk` gives
    the chunk after a chunk in its document (None: the last), for a code block a chunk's last sentence introduces."""
    by_chunk, candidates, keyword = _shortlist(question, chunks)
    if not candidates:
        return []
    dense = _dense_scores(question, by_chunk, candidates, encode)
    how_to = bool(_HOW_TO.match(question))
    wants_code = how_to or bool(CODE_CUES.intersection(tokenize(question)))  # "how do I" is often answered by code
    scored_units: list[tuple[float, int, int, Unit]] = []
    for (n, i, unit), d, k in zip(candidates, dense, keyword):
        score = DENSE_WEIGHT * float(d) + KEYWORD_WEIGHT * k - RANK_DECAY * (n - 1)
        if unit.code and not wants_code:
            score -= CODE_PENALTY
        if how_to and not unit.code and _INSTRUCTION.search(unit.text):
            score += INSTRUCTION_BONUS
        if not unit.code and _POINTER.match(_TERM_PREFIX.sub("", unit.text)):
            score -= POINTER_PENALTY
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
        if unit.code and chosen and not wants_code:
            continue  # a code block on its own answers only a question asking for code, or when nothing else does
        intro = _list_intro(by_chunk[n - 1], i)
        if intro is not None and any((n, j) in used for j in intro):
            continue  # its list is already quoted whole
        text, parts = (_with_neighbours(by_chunk[n - 1], i, examples=how_to) if intro is None
                       else (" ".join(by_chunk[n - 1][j].text for j in intro), intro))
        follow = _continued_code(chunks, by_chunk, n, parts[-1], next_chunk)
        if follow is not None and follow[0] not in used:
            text += "\n" + follow[1]
            used[follow[0]] = len(chosen)
        quoted = [used[(n, j)] for j in parts if (n, j) in used]
        if quoted:
            # Its neighbour is already a bullet ("It …" after the sentence it leans on): the bullet goes on with it.
            bullet = chosen[quoted[0]]
            if not unit.code and not bullet.code and "\n" not in bullet.text and not bullet.items:
                # In reading order: "Python-Markdown's script takes advantage of the -m flag." goes between the
                # bullet's "Generally, …" and "… Therefore, … use the following format:", not after them.
                mine = sorted({j for (m, j), b in used.items() if m == n and b == quoted[0]} | {i})
                units = by_chunk[n - 1]
                joined = _prose(units, mine) if bullet.source == n and not any(units[j].code for j in mine) else ""
                chosen[quoted[0]] = replace(bullet, text=joined or f"{bullet.text} {unit.text}")
                used[(n, i)] = quoted[0]
                continue
            if unit.code or bullet.code:
                continue
            # That bullet ends with its code block, and nothing goes after a block: the sentence stands alone.
            text, parts = unit.text, [i]
        listed = [j for j in _introduced_list(by_chunk[n - 1], parts[-1]) if (n, j) not in used]
        used.update({(n, j): len(chosen) for j in [*parts, *listed]})
        chunk = chunks[n - 1].chunk
        where = " › ".join(p for p in (chunk.title, chunk.location) if p)
        items = _list_items(by_chunk[n - 1], listed)
        chosen.append(Evidence(text, n, score, code=unit.code, where=where, items=items))
    return chosen


def _leans(units: Sequence[Unit], i: int) -> bool:
    """Whether unit i means little without the sentence before it: it refers back ("To do so, subclass …",
    "Thus, …") or introduces what follows ("Specify a tuple if you would like to set the values separately:")."""
    unit = units[i]
    return (not unit.code and i > 0 and not units[i - 1].code and not units[i - 1].listed
            and (unit.text.endswith(":") or bool(_ANAPHORA.match(unit.text))))


def _dense_scores(question: str, by_chunk: Sequence[Sequence[Unit]], candidates: Sequence[tuple[int, int, Unit]],
                  encode: Encode) -> np.ndarray:
    """Each candidate's similarity to the question; a unit that leans on the sentence before it is also read with
    it, and the closer reading counts: "Specify a tuple if you would like to set the values separately:" is far
    from "How do I set the connect and read timeouts separately?" until it follows "The timeout value will be
    applied to both the `connect` and the `read` timeouts." (one encode call for both readings)."""
    leaning = [(k, f"{by_chunk[n - 1][i - 1].text} {u.text}") for k, (n, i, u) in enumerate(candidates)
               if _leans(by_chunk[n - 1], i)]
    vectors = encode([question] + [u.text for _, _, u in candidates] + [text for _, text in leaning])
    scores = vectors[1:] @ vectors[0]
    dense = scores[: len(candidates)].copy()
    for (k, _), read_with in zip(leaning, scores[len(candidates):]):
        dense[k] = max(dense[k], float(read_with))
    return dense


def best_sentence_similarity(question: str, chunks: Sequence[ScoredChunk], encode: Encode) -> float:
    """The dense similarity of the question to the closest of the units `select_evidence` would score
    (the same encode calls, so an answer that follows costs nothing more); 0.0 when there are none."""
    _, candidates, _ = _shortlist(question, chunks)
    if not candidates:
        return 0.0
    vectors = encode([question] + [u.text for _, _, u in candidates])
    return float(np.max(vectors[1:] @ vectors[0]))


def _heading_terms(location: str) -> frozenset[str]:
    """The terms of a chunk's own section heading ("§ Signals › Preventing duplicate signals": the last part)."""
    return frozenset(tokenize(location.rsplit("›", 1)[-1]))


def _keyword_scores(question: str, units: Sequence[Unit], headings: Sequence[frozenset[str]]) -> list[float]:
    """Share of the question's terms each unit contains, each term weighted by its rarity among the units.
    A unit's section heading counts as part of it: "Preventing duplicate signals" is what its sentences are about."""
    terms = set(tokenize(question))
    if not terms:
        return [0.0] * len(units)
    bags = [set(tokenize(u.text)) | heading for u, heading in zip(units, headings)]
    count = len(bags)
    weight = {t: math.log(1 + count / (1 + sum(t in bag for bag in bags))) for t in terms}
    total = sum(weight.values()) or 1.0
    # Long units contain more terms by chance (a flattened list, a signature with every parameter):
    # past LONG_UNIT_TERMS their coverage counts less, as BM25 normalizes by length.
    return [sum(w for t, w in weight.items() if t in bag) / total * min(1.0, math.sqrt(LONG_UNIT_TERMS / max(len(bag), 1)))
            for bag in bags]


def _with_neighbours(units: Sequence[Unit], i: int, *, examples: bool = False) -> tuple[str, list[int]]:
    """The unit's text, with the sentence before it when it leans on it ("It …", "This …"), and the code
    block after it when it introduces one ("… run:"), or the sentence after it that introduces a list.
    With `examples` (a how-to question), the code example that follows the paragraph comes along too,
    with its short lead-in ("Example:")."""
    parts = [i]
    unit = units[i]
    # "Additionally, … Therefore, the script has been named `markdown_py`": the sentence it leans on may lean in
    # turn, and the reason is two sentences back (MAX_LEANING_BACK at most).
    first = i
    while (first > 0 and i - first < MAX_LEANING_BACK and not units[first].code and _ANAPHORA.match(units[first].text)
           and units[first - 1].paragraph == unit.paragraph):
        first -= 1
        parts.insert(0, first)
    if examples and not unit.code and not _INSTRUCTION.search(unit.text):
        # A how-to question matched the problem ("… may run multiple times. This can cause your receiver to be
        # registered more than once"): the remedy that follows and leans on it ("If this behavior is problematic,
        # pass a unique identifier as `dispatch_uid`") is the answer.
        for j in range(i + 1, min(i + 1 + REMEDY_LOOKAHEAD, len(units))):
            if units[j].code:
                break
            if _ANAPHORA.match(units[j].text) and _INSTRUCTION.search(units[j].text):
                parts.append(j)
                if units[j].text.endswith(":") and j + 1 < len(units) and units[j + 1].code:
                    parts.append(j + 1)  # "Therefore, … use the following format:" and the format
                break
    end = i  # the paragraph's last sentence
    while end + 1 < len(units) and units[end + 1].paragraph == unit.paragraph:
        end += 1
    if examples and not unit.code and end > i and units[end].text.endswith(":") and (
            end + 1 < len(units) and units[end + 1].code or _is_lead_in(units, end + 1)):
        parts.append(end)  # "… recorded – not just the last one." … "This can be accomplished with the `multiple` flag:"
        i = end
    after = i + 1
    if (examples and not unit.code and after + 1 < len(units) and units[after].paragraph != unit.paragraph
            and units[after].text.endswith(":") and units[after + 1].code
            and (len(_WORD.findall(units[after].text)) <= MAX_LEAD_IN_WORDS or _ANAPHORA.match(units[after].text))):
        # "… multiple times." "Example:" and its block; "… the syntax of PHP Markdown Extra." "Thus, the following
        # text:" and its block
        parts.append(after)
        after += 1
    last = units[parts[-1]]
    if not unit.code and (last.text.endswith(":") or examples) and after < len(units) and units[after].code:
        parts.append(after)
    elif (not unit.code and i + 1 < len(units) and units[i + 1].paragraph == unit.paragraph
          and _introduced_list(units, i + 1)):
        parts.append(i + 1)  # "… to find one you can write to. The list is:" and the list
    parts = sorted(set(parts))
    prose = _prose(units, parts)
    code = [units[j].text for j in parts if units[j].code]
    return "\n".join([prose, *code] if prose else code), parts


def _prose(units: Sequence[Unit], parts: Sequence[int]) -> str:
    """The sentences among `parts` (sorted), in reading order; a sentence skipped between two quoted ones is
    marked, so they never read as one passage."""
    prose = ""
    for before, j in zip([None, *parts], parts):
        if not units[j].code:
            prose += (" … " if before is not None and j > before + 1 and prose else " " if prose else "") + units[j].text
    return prose


def _is_lead_in(units: Sequence[Unit], i: int) -> bool:
    """Whether unit i is a short paragraph of its own ("Example:") that introduces the code block after it."""
    if i >= len(units):
        return False
    unit = units[i]
    return (not unit.code and unit.text.endswith(":") and len(_WORD.findall(unit.text)) <= MAX_LEAD_IN_WORDS
            and i + 1 < len(units) and units[i + 1].code and (i == 0 or units[i - 1].paragraph != unit.paragraph))


def _continued_code(chunks: Sequence[ScoredChunk], by_chunk: Sequence[Sequence[Unit]], n: int, i: int,
                    next_chunk: NextChunk | None = None) -> tuple[tuple[int, int], str] | None:
    """((source, unit), text) of the code block that unit i of source n introduces ("… a large CSV file:") when
    the chunk ends there and the next chunk of the same document goes on with it: a retrieved one, or, with
    `next_chunk`, the one the index holds (keyed (0, unit): it is quoted under the lead-in's citation, the
    same document's next lines)."""
    units = by_chunk[n - 1]
    if i != len(units) - 1 or units[i].code or not units[i].text.endswith(":"):
        return None
    chunk = chunks[n - 1].chunk
    following = [(m, by_chunk[m - 1]) for m, scored in enumerate(chunks, start=1)
                 if scored.chunk.document_id == chunk.document_id and scored.chunk.position == chunk.position + 1]
    if not following and next_chunk is not None:
        fetched = next_chunk(chunk)
        following = [(0, split_units(fetched.text))] if fetched is not None else []
    for m, next_units in following:
        for j, unit in enumerate(next_units):
            if unit.code:
                return (m, j), unit.text
            if unit.text not in chunk.text:
                return None  # the next chunk goes on with prose: the block is not there
    return None


def _list_intro(units: Sequence[Unit], i: int) -> list[int] | None:
    """When unit i is an item of a short list that a sentence introduces ("The list is:"), that sentence, with the
    one before it when it is a short lead-in: the list is quoted whole, in its order, from its introduction. An
    item alone ("The directory named by the `TEMP` environment variable.") loses what the list is of and where
    it stands in it."""
    unit = units[i]
    if unit.code or not unit.listed:
        return None
    first = i
    while first > 0 and units[first - 1].listed == unit.listed:
        first -= 1
    intro = first - 1
    if intro < 0 or _introduced_list(units, intro)[-1:] != _list_end(units, first)[-1:] or i - first >= MAX_LIST_ITEMS:
        return None  # not introduced, or longer than a bullet can hold: the item stands alone
    parts = [intro]
    if (len(_WORD.findall(units[intro].text)) <= MAX_LEAD_IN_WORDS and intro > 0 and not units[intro - 1].code
            and units[intro - 1].paragraph == units[intro].paragraph):
        parts.insert(0, intro - 1)  # "The list is:" needs the sentence it ends
    return parts


def _list_end(units: Sequence[Unit], first: int) -> list[int]:
    """The indexes of the list that starts at unit `first`."""
    end = first
    while end < len(units) and units[end].listed == units[first].listed:
        end += 1
    return list(range(first, end))


def _list_items(units: Sequence[Unit], listed: Sequence[int]) -> tuple[str, ...]:
    """The items of a list as quoted: the sentences of one item ("`marker`: Text to find … Defaults to `[TOC]`.")
    stay one item."""
    items: list[tuple[int, str]] = []
    for j in listed:
        if items and items[-1][0] == units[j].paragraph:
            items[-1] = (units[j].paragraph, f"{items[-1][1]} {units[j].text}")
        else:
            items.append((units[j].paragraph, units[j].text))
    return tuple(text for _, text in items)


def _introduced_list(units: Sequence[Unit], i: int) -> list[int]:
    """The items of the list that unit i introduces ("The list is, in order:"), at most MAX_LIST_ITEMS."""
    unit = units[i]
    if unit.code or unit.listed or not unit.text.endswith(":") or i + 1 >= len(units) or not units[i + 1].listed:
        return []
    listed = units[i + 1].listed
    end = i + 1
    while end < len(units) and units[end].listed == listed and end - i <= MAX_LIST_ITEMS:
        end += 1
    return list(range(i + 1, end))


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


def compose(question: str, chunks: Sequence[ScoredChunk], encode: Encode, next_chunk: NextChunk | None = None) -> str:
    """The whole extractive answer as Markdown, citing sources as [n]."""
    evidence = select_evidence(question, chunks, encode, next_chunk=next_chunk)
    if not evidence:
        return NOTHING_FOUND
    return "\n".join([NOTICE, "", *(render(e) for e in evidence)])


def render(evidence: Evidence) -> str:
    """One bullet; a code block follows its bullet whole, unindented, so every surface renders it as code."""
    if evidence.items:
        lead = evidence.text[:-1] if evidence.text.endswith(":") else evidence.text
        return "\n".join([f"- {lead} [{evidence.source}]:", *(f"  - {item}" for item in evidence.items)])
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


def markup_problems(text: str) -> list[str]:
    """What would render broken on the web, in Slack or in Discord: a code block, code span or bold left open."""
    problems: list[str] = []
    fence = ""
    for number, line in enumerate(text.split("\n"), start=1):
        opener = _FENCE.match(line)
        if fence:
            if opener and set(line.strip()) == {fence[0]} and len(line.strip()) >= len(fence):
                fence = ""
            continue
        if opener:
            fence = opener.group(1)
            continue
        prose = _CODE_SPAN.sub("", line)
        if "`" in prose:
            problems.append(f"line {number}: a code span is not closed")
        if prose.count("**") % 2:
            problems.append(f"line {number}: bold is not closed")
    if fence:
        problems.append("a code block is not closed")
    return problems


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

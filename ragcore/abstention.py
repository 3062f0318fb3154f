"""Whether the documents cover a question: one calibrated decision from dense and keyword evidence.

Two signals, both in 0..1:
- dense: the best cosine similarity between the question and a chunk (all-MiniLM-L6-v2);
- keyword: how much of the question's distinctive wording one of the top chunks contains, each term
  weighted by its BM25 idf over the whole index, so that "httpx" (in every chunk) counts little and
  "price" or "enterprise" (in none) count a lot when they are missing. One chunk, the best of the top
  three, not their union: "price" in a code sample and "support" in another page do not add up to a
  passage about the price of support.

A third signal, once the top chunks' sentences are scored (`reconsider`): the best cosine similarity between
the question and one sentence of them. A chunk that is mostly a code sample or console output ("To enable
debug mode, use the `--debug` option." and 20 lines of log) is far from the question as a whole although one
of its sentences answers it; and a question the documents only brush against is as far from their closest
sentence as from their closest chunk.

The question is covered when `DENSE_WEIGHT * dense + SENTENCE_WEIGHT * sentence + KEYWORD_WEIGHT * keyword
>= threshold` (`RAG_ABSTAIN_THRESHOLD`, 0.5; lower declines less). Until the sentences are scored, the chunk
similarity stands in for the sentence one (`decide`). The weights and ABSENT_WEIGHT were chosen in the third
round on the lorebot, python, django, click, flask and requests answer sets, checked set by set (fitted on five,
tried on the sixth); the new pytest and markdown sets were run once, at the end (`benchmarks/answer_quality.py`).
A question with no searchable word at all ("q1", "??") is declined before any evidence.

A question most of whose distinctive wording (idf-weighted) is in no chunk of the index at all loses
`UNHELD_PENALTY` per share of it past `UNHELD_FREE` (fourth round, chosen on all eight sets; `structlog` was held out).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

from ragcore.tokenize import term_set, tokenize
from ragcore.types import ScoredChunk

DENSE_WEIGHT = 0.48
# The best of many short sentences is closer to any question than the best of a few chunks, covered or not
# (out-of-corpus questions reach 0.6 against one sentence, 0.45 against a chunk), so it weighs less; but it is
# what tells "How do I stop Requests from following redirects?" (0.65 against "… you can disable redirection
# handling with the `allow_redirects` parameter:") from a question that only shares the topic.
SENTENCE_WEIGHT = 0.27
KEYWORD_WEIGHT = 0.32
# A word of the question that no chunk holds ("argparse", "push" in "HTTP/2 server push", "enterprise") counts
# this many times as much as one that a single chunk holds: it is the strongest sign of a question the documents
# do not cover. Not more: one typo or one word the documents say otherwise must not outweigh the rest.
ABSENT_WEIGHT = 2.5
KEYWORD_CHUNKS = 3  # the keyword evidence looks at this many of the top chunks
# When most of a question's distinctive wording is in no document at all ("… code in a Jupyter notebook": "jupyter"
# and "notebook" in no chunk, 0.74 of its idf weight), the passage that comes closest answers another question,
# however close its topic ("syntax-highlight code"): past UNHELD_FREE of the weight, each share of it costs
# UNHELD_PENALTY. Chosen in the fourth round on all eight answer sets: answerable questions have at most 0.41 of
# their weight unheld (a word the documents say otherwise), so a typo or a paraphrase costs nothing.
UNHELD_FREE = 0.5
UNHELD_PENALTY = 0.3
_WORDS = re.compile(r"[^\W\d_]{2,}")  # two letters or more: "q1" and "42?" have none
_IDENTIFIER = re.compile(r"[^\W_]+(?:[_.-]+[^\W_]+)*")  # a word, or a name joined by "_", "." or "-"

NOT_COVERED = "Your documents don't cover this."
TOO_SHORT = "Please ask a whole question: there is nothing in it to search for."
# How a model's own decline starts (the system prompt asks for NOT_COVERED word for word); apostrophes vary.
_DECLINE = re.compile(r"^\W*your documents (?:don['’]t|do not) cover this", re.I)


@dataclass(frozen=True)
class Verdict:
    """The decision and the evidence it was made on."""

    covered: bool
    reason: str  # "covered", "too_short", "no_results" or "weak_evidence"
    score: float = 0.0
    dense: float | None = None  # None when dense search was not used (bm25 mode)
    keyword: float = 0.0
    sentence: float | None = None  # the best sentence similarity, when `reconsider` looked at it
    unheld: float = 0.0  # the share of the question's idf weight in words no chunk holds

    def needs_sentence(self, threshold: float) -> bool:
        """Whether the best sentence similarity (0..1) could decide this verdict either way: it is worth scoring
        the sentences (the extractive answer scores the same ones, so that costs it nothing more)."""
        if self.reason not in ("covered", "weak_evidence") or self.dense is None or self.sentence is not None:
            return False
        base = evidence(self.dense, 0.0, self.keyword, self.unheld)
        return base < threshold <= base + SENTENCE_WEIGHT


def assess(question: str, search_text: str, chunks: Sequence[ScoredChunk], *, best_dense: float | None,
           frequencies: Callable[[Collection[str]], tuple[int, dict[str, int]]], threshold: float) -> Verdict:
    """The verdict for a retrieval: `search_text` is what was searched (the question, or with its
    conversation folded in), `frequencies` the BM25 index's document frequencies."""
    n_chunks, document_frequency = frequencies(set(tokenize(search_text)))
    words = _words(search_text)
    weights = [_weight(terms, n_chunks, document_frequency) for terms in words]
    keyword = _keyword_evidence(words, weights, chunks, document_frequency)
    unheld = _unheld_share(words, weights, document_frequency)
    return decide(question, chunks, best_dense=best_dense, keyword=keyword, threshold=threshold, unheld=unheld)


def question_is_searchable(question: str) -> bool:
    """Whether the question has at least one word that could be searched for."""
    return bool(_WORDS.search(question)) and bool(tokenize(question))


def keyword_evidence(question: str, chunks: Sequence[ScoredChunk], n_chunks: int,
                     document_frequency: Mapping[str, int]) -> float:
    """Share of the question's words, weighted by idf, that the best of the top chunks contains."""
    words = _words(question)
    return _keyword_evidence(words, [_weight(terms, n_chunks, document_frequency) for terms in words], chunks,
                             document_frequency)


def _keyword_evidence(words: list[tuple[str, ...]], weights: list[float], chunks: Sequence[ScoredChunk],
                      document_frequency: Mapping[str, int]) -> float:
    # A word no chunk holds counts ABSENT_WEIGHT times one that a single chunk holds.
    weights = [w * (ABSENT_WEIGHT if _unheld(terms, document_frequency) else 1.0) for w, terms in zip(weights, words)]
    total = sum(weights)
    if not total:
        return 0.0
    present = [term_set(scored.chunk.index_text) for scored in chunks[:KEYWORD_CHUNKS]]
    return max((sum(w * sum(t in found for t in terms) / len(terms) for w, terms in zip(weights, words)) / total
                for found in present), default=0.0)


def unheld_share(question: str, n_chunks: int, document_frequency: Mapping[str, int]) -> float:
    """Share of the question's words, weighted by idf (not ABSENT_WEIGHT), that no chunk of the index holds."""
    words = _words(question)
    return _unheld_share(words, [_weight(terms, n_chunks, document_frequency) for terms in words], document_frequency)


def _unheld_share(words: list[tuple[str, ...]], weights: list[float], document_frequency: Mapping[str, int]) -> float:
    total = sum(weights)
    if not total:
        return 0.0
    return sum(w for w, terms in zip(weights, words) if _unheld(terms, document_frequency)) / total


def _weight(terms: tuple[str, ...], n_chunks: int, document_frequency: Mapping[str, int]) -> float:
    return max(_idf(n_chunks, max(1, document_frequency.get(t, 0))) for t in terms)


def _unheld(terms: tuple[str, ...], document_frequency: Mapping[str, int]) -> bool:
    return all(document_frequency.get(t, 0) == 0 for t in terms)


def _words(question: str) -> list[tuple[str, ...]]:
    """The question's words as index terms; an identifier (`FAULT_BROKEN`, `max_open`, `json.dumps`) is one
    word whose parts share its weight, so one unknown name counts once, not once per part."""
    words: dict[tuple[str, ...], None] = {}
    for word in _IDENTIFIER.findall(question):
        terms = tuple(dict.fromkeys(tokenize(word)))
        if terms:
            words[terms] = None
    return list(words)


def _idf(n: int, df: int) -> float:
    """BM25's idf, kept positive: a term in most chunks still counts a little."""
    return math.log(1 + (n - df + 0.5) / (df + 0.5))


def decide(question: str, chunks: Sequence[ScoredChunk], *, best_dense: float | None, keyword: float,
           threshold: float, unheld: float = 0.0) -> Verdict:
    """Covered or not, from the best dense similarity, the keyword evidence and the share of unheld words."""
    if not question_is_searchable(question):
        return Verdict(False, "too_short", dense=best_dense, keyword=keyword, unheld=unheld)
    if not chunks:
        return Verdict(False, "no_results", dense=best_dense, keyword=keyword, unheld=unheld)
    # In bm25 mode there is no dense score: the keyword evidence stands alone.
    score = keyword if best_dense is None else evidence(best_dense, best_dense, keyword, unheld)
    covered = score >= threshold
    return Verdict(covered, "covered" if covered else "weak_evidence", score, best_dense, keyword, unheld=unheld)


def evidence(dense: float, sentence: float, keyword: float, unheld: float = 0.0) -> float:
    """The evidence score the threshold is compared with."""
    return (DENSE_WEIGHT * dense + SENTENCE_WEIGHT * sentence + KEYWORD_WEIGHT * keyword
            - UNHELD_PENALTY * max(0.0, unheld - UNHELD_FREE))


def reconsider(verdict: Verdict, best_sentence: float, *, threshold: float) -> Verdict:
    """The verdict decided again with the best sentence similarity in place of the chunk one that stood in for it."""
    if verdict.reason not in ("covered", "weak_evidence") or verdict.dense is None:
        return verdict
    score = evidence(verdict.dense, best_sentence, verdict.keyword, verdict.unheld)
    covered = score >= threshold
    return Verdict(covered, "covered" if covered else "weak_evidence", score, verdict.dense, verdict.keyword,
                   best_sentence, verdict.unheld)


def is_decline(answer: str) -> bool:
    """Whether a model's answer says the documents do not cover the question."""
    return bool(_DECLINE.match(answer))


def decline_text(verdict: Verdict, closest: str, citation: str) -> str:
    """What the reader is told instead of an answer: that nothing covers it, and what came closest."""
    if verdict.reason == "too_short":
        return TOO_SHORT
    if not closest:
        return f"{NOT_COVERED} Nothing in them matches the question."
    return f"{NOT_COVERED} The closest passage is {citation}: “{closest}”"

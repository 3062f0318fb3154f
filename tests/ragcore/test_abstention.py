"""The coverage decision: dense and keyword evidence, questions with nothing to search, a model's decline."""

from __future__ import annotations

import pytest

from ragcore.abstention import NOT_COVERED, Verdict, decide, decline_text, is_decline, keyword_evidence
from ragcore.types import Chunk, ScoredChunk

CHUNKS = [ScoredChunk(Chunk("d:0", "d", 0, "httpx sends requests. The default timeout is five seconds.", "HTTPX"), 1.0)]
# 100 chunks in the index; "httpx" is in all of them, "timeout" in 3, "price" and "enterprise" in none.
DF = {"httpx": 100, "timeout": 3, "default": 20, "price": 0, "enterpris": 0, "licens": 2}


@pytest.mark.parametrize("question", ["q1", "??", "42", "  "])
def test_a_question_with_no_searchable_word_is_declined_as_too_short(question: str) -> None:
    verdict = decide(question, CHUNKS, best_dense=0.9, keyword=1.0, threshold=0.5)
    assert not verdict.covered and verdict.reason == "too_short"
    assert "nothing in it to search for" in decline_text(verdict, "", "")


def test_missing_rare_words_weigh_more_than_a_word_found_everywhere() -> None:
    covered = keyword_evidence("What is the default httpx timeout?", CHUNKS, 100, DF)
    priced = keyword_evidence("What is the price of an httpx enterprise license?", CHUNKS, 100, DF)
    assert covered == pytest.approx(1.0)
    assert priced < 0.2  # only "httpx" is there, and it counts little


def test_keyword_evidence_is_that_of_one_chunk_not_of_several_put_together() -> None:
    priced = [ScoredChunk(Chunk("a:0", "a", 0, "price = models.DecimalField()", "Models"), 1.0),
              ScoredChunk(Chunk("b:0", "b", 0, "Enterprise support for middleware.", "Middleware"), 0.9)]
    df = {"price": 1, "enterpris": 1, "support": 5}
    assert keyword_evidence("enterprise support price", priced, 100, df) < 0.7  # no chunk holds all three
    assert keyword_evidence("enterprise support", priced, 100, df) == pytest.approx(1.0)


def test_dense_and_keyword_evidence_are_combined_against_the_threshold() -> None:
    assert decide("default timeout?", CHUNKS, best_dense=0.6, keyword=0.6, threshold=0.5).covered
    weak = decide("enterprise price?", CHUNKS, best_dense=0.45, keyword=0.1, threshold=0.5)
    assert not weak.covered and weak.reason == "weak_evidence" and weak.score == pytest.approx(0.3275)
    assert not decide("anything here", [], best_dense=None, keyword=0.0, threshold=0.5).covered


def test_without_dense_search_the_keyword_evidence_decides_alone() -> None:
    assert decide("default timeout", CHUNKS, best_dense=None, keyword=0.8, threshold=0.5).covered
    assert not decide("default timeout", CHUNKS, best_dense=None, keyword=0.3, threshold=0.5).covered


def test_the_decline_names_the_closest_passage() -> None:
    text = decline_text(Verdict(False, "weak_evidence"), "The default timeout is five seconds.", "in HTTPX [1]")
    assert text == f"{NOT_COVERED} The closest passage is in HTTPX [1]: “The default timeout is five seconds.”"


@pytest.mark.parametrize(("answer", "declined"), [
    ("Your documents don't cover this.", True),
    ("your documents do not cover this; the closest source is about rollbacks [1].", True),
    ("**Your documents don’t cover this.**", True),
    ("The documents cover this: run the pipeline [1].", False),
])
def test_a_models_decline_is_recognised(answer: str, declined: bool) -> None:
    assert is_decline(answer) is declined

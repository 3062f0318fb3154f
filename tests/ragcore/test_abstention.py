"""The coverage decision: dense and keyword evidence, questions with nothing to search, a model's decline."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragcore import Engine, RagSettings
from ragcore.abstention import (
    NOT_COVERED,
    Verdict,
    decide,
    decline_text,
    is_decline,
    keyword_evidence,
    reconsider,
    unheld_share,
)
from ragcore.embeddings import Embedder
from ragcore.extractive import NOTICE
from ragcore.types import Chunk, ScoredChunk
from tests.support import DEPLOY

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
    assert not weak.covered and weak.reason == "weak_evidence" and weak.score == pytest.approx(0.3695)  # the chunk stands in for the sentence
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


def test_a_word_no_chunk_holds_counts_more_than_a_word_one_chunk_holds() -> None:
    # "How do I send an HTTP/2 request with server push?": "push" is nowhere in the documents, "server" is, once.
    chunks = [ScoredChunk(Chunk("h:0", "h", 0, "Requests sends HTTP/1.1 requests to a server.", "HTTP"), 1.0)]
    df = {"http": 5, "request": 5, "server": 1, "push": 0, "send": 5}
    nowhere = keyword_evidence("send an HTTP request with server push", chunks, 100, df)
    rare = keyword_evidence("send an HTTP request with server push", chunks, 100, {**df, "push": 1})
    assert nowhere < rare
    assert nowhere == pytest.approx(rare / (1 + (2.5 - 1) * (1 - rare)))  # the missing word's weight, 2.5 times


def test_an_unknown_name_counts_once_however_many_parts_it_has() -> None:
    chunks = [ScoredChunk(Chunk("r:0", "r", 0, "Releases go out every Tuesday.", "Releases"), 1.0)]
    df = {"releas": 1, "go": 1, "fault": 0, "broken": 0}
    one_name = keyword_evidence("When do releases go out? FAULT_BROKEN", chunks, 10, df)
    two_words = keyword_evidence("When do releases go out? fault broken", chunks, 10, df)
    assert one_name == pytest.approx(2 / 4.5)  # releases, go found; FAULT_BROKEN, one word, missing (x2.5)
    assert two_words == pytest.approx(2 / 7)


def test_a_weak_verdict_is_covered_when_one_sentence_is_close_to_the_question() -> None:
    weak = decide("How do I turn on debug mode?", CHUNKS, best_dense=0.45, keyword=0.48, threshold=0.5)
    assert not weak.covered and weak.needs_sentence(0.5)
    assert reconsider(weak, 0.85, threshold=0.5).covered  # "To enable debug mode, use the --debug option."
    assert not reconsider(weak, 0.45, threshold=0.5).covered  # a sentence no closer than the chunk: still weak


def test_a_question_that_only_shares_the_topic_is_declined_when_no_sentence_comes_close() -> None:
    # "How do I write a custom template filter?" against a page whose chunk is about templates: the chunk is as
    # close as covered questions' chunks get, no sentence of it is.
    topical = decide("How do I write a custom template filter?", CHUNKS, best_dense=0.5, keyword=0.5, threshold=0.5)
    assert topical.covered and topical.needs_sentence(0.5)  # provisionally: the chunk stands in for its sentences
    assert not reconsider(topical, 0.3, threshold=0.5).covered
    assert reconsider(topical, 0.6, threshold=0.5).covered
    assert reconsider(topical, 0.3, threshold=0.5).sentence == 0.3


def test_a_sentence_never_rescues_a_question_with_nothing_in_common_or_nothing_to_search() -> None:
    far = decide("Who painted the Mona Lisa?", CHUNKS, best_dense=0.05, keyword=0.0, threshold=0.5)
    assert not reconsider(far, 0.6, threshold=0.5).covered  # as close as out-of-corpus questions get to a sentence
    assert not decide("Who?", CHUNKS, best_dense=0.05, keyword=0.4, threshold=0.9).needs_sentence(0.9)
    too_short = decide("q1", CHUNKS, best_dense=0.9, keyword=1.0, threshold=0.5)
    assert reconsider(too_short, 1.0, threshold=0.5) is too_short


def test_a_question_whose_distinctive_words_no_document_holds_is_declined_however_close_its_topic() -> None:
    # "How do I syntax-highlight code in a Jupyter notebook?" against a page on syntax highlighting: the chunk
    # and its sentences are close, but "jupyter" and "notebook" are in no chunk of the index.
    df = {"syntax": 5, "highlight": 4, "code": 60, "jupyter": 0, "notebook": 0}
    question = "How do I syntax-highlight code in a Jupyter notebook?"
    share = unheld_share(question, 150, df)
    assert share > 0.6
    assert unheld_share("How do I syntax-highlight code?", 150, df) == 0.0
    close = decide(question, CHUNKS, best_dense=0.68, keyword=0.13, threshold=0.5)
    assert close.covered  # without the unheld share, a close topic passes
    verdict = decide(question, CHUNKS, best_dense=0.68, keyword=0.13, threshold=0.5, unheld=share)
    assert not reconsider(verdict, 0.62, threshold=0.5).covered
    # A paraphrase with one word the documents say otherwise ("feed input to a prompt") costs nothing.
    assert reconsider(decide("How do I feed input to a prompt in a test?", CHUNKS, best_dense=0.66, keyword=0.37,
                             threshold=0.5, unheld=0.41), 0.68, threshold=0.5).covered


# The calibrated threshold is MiniLM's: these go through the real model and the whole answer path.
DEBUG_PAGE = """# Debug Mode

In debug mode, the server reloads on changes and shows a debugger. To enable debug mode, use the `--debug` option.

```console
$ flask --app hello --debug run
 * Serving Flask app "hello"
 * Debug mode: on
 * Running on http://127.0.0.1:5000/ (Press CTRL+C to quit)
 * Restarting with inotify reloader
 * Debugger is active!
 * Debugger PIN: 223-456-919
```
"""


@pytest.fixture
def real_engine(tmp_path: Path, real_embedder: Embedder) -> Engine:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "deploy.md").write_text(DEPLOY)
    (docs / "debug.md").write_text(DEBUG_PAGE)
    engine = Engine(RagSettings(data_dir=tmp_path / "data", index_refresh_seconds=0.0), embedder=real_embedder)
    engine.ingest_files(sorted(docs.iterdir()))
    return engine


@pytest.mark.parametrize("question", ["When do releases go out? FAULT_BROKEN", "How do I roll back a release? FAULT_BROKEN"])
def test_an_on_topic_question_with_one_unknown_name_is_answered(real_engine: Engine, question: str) -> None:
    answer = real_engine.answer(question)
    assert not answer.not_covered and answer.text.startswith(NOTICE)


def test_a_question_one_sentence_answers_is_answered_though_its_chunk_is_mostly_console_output(real_engine: Engine) -> None:
    answer = real_engine.answer("How do I turn on debug mode?")
    assert not answer.not_covered and "--debug" in answer.text


@pytest.mark.parametrize("question", ["What is the price of an enterprise license?", "How do I roll back a database migration?",
                                      "What is the capital of France?"])
def test_questions_the_documents_do_not_cover_are_still_declined(real_engine: Engine, question: str) -> None:
    answer = real_engine.answer(question)
    assert answer.not_covered and answer.text.startswith(NOT_COVERED)

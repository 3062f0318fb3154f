"""The pieces both bots share: following an answer's stream, splitting long text, source links."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import pytest

from bots.answer import follow
from bots.text import citation_label, citation_link, split_message
from console.chat import AnswerCitations, AnswerDone, AnswerError, AnswerStarted, AnswerToken, ChatEvent, Usage
from tests.support import citation


async def _events(*items: ChatEvent) -> AsyncGenerator[ChatEvent, None]:
    for item in items:
        yield item


def _done(*, extractive: bool = False, fallback_reason: str = "") -> AnswerDone:
    return AnswerDone(message_id=7, usage=Usage(), latency_ms=1.0, retrieval_ms=1.0, generation_ms=1.0, mode="hybrid",
                      provider="extractive", model="extractive", extractive=extractive, fallback_reason=fallback_reason)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_follow_throttles_updates_to_the_interval_and_ends_with_the_whole_answer():
    clock = FakeClock()
    seen: list[tuple[str, bool]] = []

    async def update(snap):
        seen.append((snap.text, snap.finished))

    async def stream() -> AsyncGenerator[ChatEvent, None]:
        yield AnswerStarted(conversation_id=3, message_id=7, question_id=6)
        for i in range(10):
            clock.now += 0.3  # a token every 0.3 s, so an update every fourth token at 1 s
            yield AnswerToken(f"w{i} ")
        yield AnswerCitations((citation(1, "Deploy guide"),))
        yield _done(extractive=True, fallback_reason="timeout")

    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(round(seconds, 3))
        clock.now += seconds

    snap = await follow(stream(), update, interval=1.0, clock=clock, sleep=sleep)
    assert slept == [0.7]  # the last progress edit was at 2.7 s, the stream ended at 3.0 s
    # The first words at once, then one update per second, then the whole answer.
    assert [finished for _, finished in seen] == [False, False, False, True]
    assert [text.split()[-1] for text, _ in seen] == ["w0", "w4", "w8", "w9"]
    assert seen[-1][0] == "".join(f"w{i} " for i in range(10))
    assert (snap.message_id, snap.conversation_id, snap.updates) == (7, 3, 4)
    assert snap.citations == (citation(1, "Deploy guide"),)
    assert snap.extractive and snap.fallback_reason == "timeout" and not snap.failed


async def test_follow_reports_a_fatal_error_but_not_a_recovered_one():
    async def update(snap):
        pass

    snap = await follow(_events(
        AnswerStarted(conversation_id=1, message_id=1, question_id=0),
        AnswerToken("part"),
        AnswerError("llm_timeout", "stopped mid-answer", fatal=False),
        AnswerToken(" then the extract"),
        _done(extractive=True, fallback_reason="llm_timeout"),
    ), update, interval=1.0)
    assert not snap.failed and snap.text == "part then the extract"

    refused = await follow(_events(AnswerError("rate_limited", "Slow down")), update, interval=1.0)
    assert refused.failed and refused.error_code == "rate_limited" and refused.finished
    assert refused.message_id is None


def test_split_message_keeps_short_text_whole_and_cuts_long_text_at_paragraphs():
    assert split_message("short answer", 2000) == ["short answer"]
    paragraphs = [f"Paragraph {i} " + "word " * 60 for i in range(10)]
    text = "\n\n".join(p.strip() for p in paragraphs)
    pieces = split_message(text, 2000)
    assert len(pieces) == 2 and all(len(p) <= 2000 for p in pieces)
    assert pieces[1].startswith("Paragraph ")  # cut at a paragraph break
    assert "".join(pieces).replace("\n", "").replace(" ", "") == text.replace("\n", "").replace(" ", "")


def test_split_message_never_cuts_inside_a_code_block_that_fits():
    prose = "Intro " + "text " * 300
    code = "```python\n" + "\n".join(f"x_{i} = {i}" for i in range(60)) + "\n```"
    pieces = split_message(prose + "\n" + code + "\nAfter.", 2000)
    assert all(len(p) <= 2000 for p in pieces)
    assert any(p.startswith("```python") and p.count("```") == 2 for p in pieces)
    for piece in pieces:
        assert piece.count("```") % 2 == 0


def test_split_message_closes_and_reopens_a_code_block_longer_than_a_piece():
    code = "```\n" + "\n".join(f"line {i:04d}" for i in range(400)) + "\n```"
    pieces = split_message(code, 500)
    assert len(pieces) > 1 and all(len(p) <= 500 for p in pieces)
    assert all(p.startswith("```") and p.endswith("```") for p in pieces)
    body = [line for p in pieces for line in p.split("\n") if line.startswith("line ")]
    assert body == [f"line {i:04d}" for i in range(400)]


def test_split_message_never_cuts_inside_a_citation_marker():
    text = "a" * 1995 + "[12]" + " tail"
    assert split_message(text, 1997) == ["a" * 1995, "[12] tail"]


@pytest.mark.parametrize(("source", "document_id", "public_url", "expected"), [
    ("https://wiki.example.com/deploy", "doc-4", "", "https://wiki.example.com/deploy"),
    ("deploy.md", "doc-4", "https://lorebot.example.com/", "https://lorebot.example.com/sources/4/"),
    ("deploy.md", "doc-4", "", ""),
    ("javascript:alert(1)", "file-x", "https://lorebot.example.com", ""),
])
def test_citation_link_is_http_only(settings, source, document_id, public_url, expected):
    settings.LOREBOT_PUBLIC_URL = public_url
    assert citation_link(citation(1, source=source, document_id=document_id)) == expected


def test_citation_label_names_title_and_location():
    assert citation_label(citation(1, "Deploy guide", location="p. 3")) == "Deploy guide, p. 3"
    assert citation_label(citation(1, source="notes.txt")) == "notes.txt"

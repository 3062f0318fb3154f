"""Chunking: blocks stay whole when they fit, code is cut only between lines and always fenced, nothing exceeds the window."""

from __future__ import annotations

import re
from collections.abc import Sequence

import pytest

from ragcore.chunking import split_document
from ragcore.types import Chunk, ParsedDocument, Section


def count_words(texts: Sequence[str]) -> list[int]:
    """A stand-in for the model's tokenizer: one token per whitespace-separated word."""
    return [len(text.split()) for text in texts]


def chunks_of(text: str, *, max_tokens: int = 60, overlap: int = 8, location: str = "§ Guide") -> list[Chunk]:
    doc = ParsedDocument("Handbook", "markdown", (Section(text, location),))
    return split_document(doc, document_id="d", source="s.md", checksum="c", count_tokens=count_words,
                          max_tokens=max_tokens, overlap_tokens=overlap)  # fmt: skip


def code(lines: int, lang: str = "python", *, blank_every: int = 0) -> str:
    body = [("" if blank_every and n % blank_every == 0 else f"value_{n} = compute({n})") for n in range(1, lines + 1)]
    return f"```{lang}\n" + "\n".join(body) + "\n```"


def fences_balanced(text: str) -> bool:
    return len(re.findall(r"^```", text, re.M)) % 2 == 0


def test_a_code_block_that_fits_is_never_cut_even_with_blank_lines_inside() -> None:
    block = code(12, blank_every=4)  # 9 lines of 3 words: 27 tokens, plus the fences
    prose = "\n\n".join(f"Paragraph {n} says something about the service and its setup." for n in range(8))
    for budget in (40, 50, 60, 80):
        texts = [c.text for c in chunks_of(f"{prose}\n\n{block}\n\n{prose}", max_tokens=budget)]
        holding = [t for t in texts if "value_1 =" in t]
        assert len(holding) == 1 and block in holding[0], budget
        assert all(fences_balanced(t) for t in texts)


def test_a_code_block_longer_than_a_chunk_is_cut_between_lines_each_piece_fenced() -> None:
    block = code(100, "sh")
    chunks = chunks_of(block, max_tokens=60, overlap=0)
    assert len(chunks) > 3
    lines_seen: list[str] = []
    for chunk in chunks:
        lines = chunk.text.split("\n")
        assert lines[0] == "```sh" and lines[-1] == "```"
        assert count_words([chunk.index_text])[0] <= 60
        lines_seen += lines[1:-1]
    assert lines_seen == block.split("\n")[1:-1]  # every line whole, in order, none lost


def test_a_two_thousand_line_code_block_becomes_fenced_chunks_within_the_window() -> None:
    chunks = chunks_of("Intro.\n\n" + code(2000, "c") + "\n\nOutro.", max_tokens=200, overlap=32)
    code_chunks = [c for c in chunks if "value_" in c.text]
    assert len(code_chunks) >= 2000 * 3 // 200
    assert all(count_words([c.index_text])[0] <= 200 for c in chunks)
    piece = r"```c\n(?:value_\d+ = compute\(\d+\)\n)+```"
    assert all(re.fullmatch(rf"(?:Intro\.\n\n)?{piece}(?:\n\nOutro\.)?", c.text) for c in code_chunks)
    found = {int(n) for c in code_chunks for n in re.findall(r"value_(\d+) =", c.text)}
    assert found == set(range(1, 2001))


def test_paragraphs_stay_apart_and_list_lines_stay_lines() -> None:
    text = "First paragraph.\n\n- one\n- two\n  - nested\n\nLast paragraph."
    assert [c.text for c in chunks_of(text)] == [text]


def test_a_long_list_is_cut_at_its_lines() -> None:
    items = "\n".join(f"- item {n} has five words" for n in range(40))
    texts = [c.text for c in chunks_of(items, max_tokens=60, overlap=0)]
    assert len(texts) > 2
    assert all(all(line.startswith("- item ") for line in t.split("\n")) for t in texts)
    assert "\n".join(texts) == items


def test_an_unterminated_fence_is_closed_in_its_chunk() -> None:
    texts = [c.text for c in chunks_of("Run this:\n\n```python\nimport os\nprint(os.getcwd())")]
    assert texts == ["Run this:\n\n```python\nimport os\nprint(os.getcwd())\n```"]


def test_a_fence_needs_no_blank_line_before_it() -> None:
    texts = [c.text for c in chunks_of("Run this:\n```\nmake test\n```\nThen look.")]
    assert texts == ["Run this:\n\n```\nmake test\n```\n\nThen look."]


def test_a_longer_fence_holds_code_that_contains_a_shorter_one() -> None:
    block = "````md\n```python\nx = 1\n```\n````"
    assert [c.text for c in chunks_of(f"Example:\n\n{block}")] == [f"Example:\n\n{block}"]


@pytest.mark.parametrize("overlap", [0, 8, 30])
def test_plain_prose_is_cut_at_sentences_joined_by_spaces(overlap: int) -> None:
    text = " ".join(f"Sentence number {n} is here." for n in range(60))
    chunks = chunks_of(text, max_tokens=40, overlap=overlap)
    assert len(chunks) > 4
    assert all("\n" not in c.text and c.text.startswith("Sentence number") for c in chunks)
    assert all(count_words([c.index_text])[0] <= 40 for c in chunks)


def test_a_word_longer_than_the_window_is_cut_by_characters() -> None:
    blob = "x" * 500
    chunks = chunks_of(blob, max_tokens=40)
    assert "".join(c.text for c in chunks) == blob

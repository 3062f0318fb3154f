"""Citation markers: reading them, filtering them out of a stream, resolving them to chunks."""

from __future__ import annotations

import pytest

from ragcore.citations import (
    CitationFilter,
    build_citations,
    cited_numbers,
    filter_citations,
    make_snippet,
    numbering_gaps,
)
from ragcore.types import Chunk, ScoredChunk


def run_filter(deltas: list[str], valid_count: int = 2) -> tuple[list[str], str]:
    """What the filter emits after each delta, and the whole text including the flush."""
    citation_filter = CitationFilter(valid_count)
    emitted = [citation_filter.feed(d) for d in deltas]
    return emitted, "".join(emitted) + citation_filter.flush()


def chunk(n: int, text: str = "Some text.") -> ScoredChunk:
    return ScoredChunk(Chunk(f"doc{n}:0", f"doc{n}", 0, text, f"Title {n}", f"file{n}.md", f"page {n}"), 1.0 / n)


# -- cited_numbers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "numbers"),
    [
        ("No citations here.", []),
        ("One [1].", [1]),
        ("Both [1, 2] and again [2].", [1, 2]),
        ("Adjacent [3][1] then [2].", [3, 1, 2]),
        ("Spaced [ 4 ,5 ].", [4, 5]),
        ("Not citations: [link](x), [a1], [], [1-2].", []),
    ],
)
def test_cited_numbers_are_distinct_and_in_order_of_first_appearance(text: str, numbers: list[int]) -> None:
    assert cited_numbers(text) == numbers


# -- CitationFilter ----------------------------------------------------------------------------


def test_citations_already_in_order_pass_through_unchanged() -> None:
    _, text = run_filter(["Alpha [1]. Beta [1, 2]. Gamma [2][1]."])
    assert text == "Alpha [1]. Beta [1, 2]. Gamma [2][1]."


def test_citations_are_renumbered_in_order_of_first_appearance() -> None:
    citation_filter = CitationFilter(5)
    text = citation_filter.feed("Use the flag [3]. It is on by default [5, 3]. See also [1][5].") + citation_filter.flush()
    assert text == "Use the flag [1]. It is on by default [2, 1]. See also [3][2]."
    assert citation_filter.sources == [3, 5, 1]
    assert not numbering_gaps(text)


def test_a_marker_split_across_deltas_is_renumbered() -> None:
    citation_filter = CitationFilter(4)
    emitted = [citation_filter.feed(d) for d in ["Alpha [", "4", "]. Beta [", "2", "][4]."]]
    assert "".join(emitted) + citation_filter.flush() == "Alpha [1]. Beta [2][1]."
    assert citation_filter.sources == [4, 2]


def test_numbering_gaps_are_detected() -> None:
    assert numbering_gaps("A [2] B [3].")
    assert numbering_gaps("A [1] B [4].")
    assert numbering_gaps("A [2] B [1].")  # in order of first appearance, not merely present
    assert not numbering_gaps("A [1] B [2][1]. C [3].")
    assert not numbering_gaps("No markers.")


def test_a_citation_of_a_missing_source_is_dropped_with_its_leading_space() -> None:
    _, text = run_filter(["Alpha [99]. Beta [0] and [3] too."])
    assert text == "Alpha. Beta and too."


def test_a_multi_number_marker_keeps_only_the_valid_numbers() -> None:
    assert filter_citations("Alpha [1, 99].", 2) == "Alpha [1]."
    assert filter_citations("Alpha [1][99].", 2) == "Alpha [1]."
    assert filter_citations("Alpha [2, 2, 7, 1].", 2) == "Alpha [1, 2]."


def test_a_marker_split_across_deltas_is_filtered() -> None:
    emitted, text = run_filter(["Alpha", " [", "9", "9]", ". Beta", " [", "1", "]."])
    assert text == "Alpha. Beta [1]."
    assert emitted[1:4] == ["", "", ""]  # held while it could still be a marker


def test_a_split_valid_marker_is_emitted_once_it_closes() -> None:
    emitted, text = run_filter(["Alpha [", "1", ",", " 2", "]", " done"])
    assert emitted == ["Alpha", "", "", "", " [1, 2]", " done"]
    assert text == "Alpha [1, 2] done"


def test_text_that_is_not_a_citation_passes_promptly() -> None:
    emitted, text = run_filter(["See [link", "](http://x) and [x", "] or [", "a] [", "1-2]"])
    assert emitted[0] == "See [link"
    assert text == "See [link](http://x) and [x] or [a] [1-2]"


def test_an_overlong_bracket_of_digits_is_not_held_forever() -> None:
    digits = "[" + "1" * 40
    emitted, text = run_filter([digits, "]"])
    assert emitted[0] == digits
    assert text == digits + "]"


def test_an_unclosed_marker_is_released_by_flush() -> None:
    emitted, text = run_filter(["The end [1"])
    assert emitted == ["The end"]
    assert text == "The end [1"


def test_trailing_spaces_wait_for_the_next_delta_only() -> None:
    emitted, text = run_filter(["Alpha ", "beta ", "[99]", "."])
    assert emitted == ["Alpha", " beta", "", "."]
    assert text == "Alpha beta."


def test_with_no_sources_every_citation_is_dropped() -> None:
    assert filter_citations("Nothing [1] here [2].", 0) == "Nothing here."


# -- build_citations ---------------------------------------------------------------------------


def test_build_citations_lists_only_the_cited_sources_numbered_as_shown() -> None:
    chunks = [chunk(1), chunk(2), chunk(3)]
    citation_filter = CitationFilter(len(chunks))
    citation_filter.feed("B [3]. A [3, 2]. Missing [9].")
    citation_filter.flush()
    citations = build_citations(citation_filter.sources, chunks)
    assert [c.n for c in citations] == [1, 2]
    first = citations[0]
    assert (first.document_id, first.chunk_id, first.title, first.source, first.location) == (
        "doc3", "doc3:0", "Title 3", "file3.md", "page 3")
    assert citations[1].document_id == "doc2"  # source 1 was retrieved but never cited: not listed


def test_build_citations_returns_nothing_without_markers() -> None:
    assert build_citations([], [chunk(1)]) == ()


def test_the_snippet_collapses_whitespace_and_is_cut_at_a_word() -> None:
    [citation] = build_citations([1], [chunk(1, "Line one\n\n   line   two. " + "word " * 100)])
    assert citation.snippet.startswith("Line one line two. word")
    assert len(citation.snippet) <= 241
    assert citation.snippet.endswith("word…")
    assert make_snippet("short  text") == "short text"


def test_brackets_inside_code_are_not_citations() -> None:
    text = "Use `heap[0]` [2] to peek.\n\n```python\nfirst = heap[0]\nsecond = items[1]\n```\nSee [2]."
    assert filter_citations(text, 3) == (
        "Use `heap[0]` [1] to peek.\n\n```python\nfirst = heap[0]\nsecond = items[1]\n```\nSee [1].")
    assert cited_numbers(text) == [2]


def test_code_is_followed_across_deltas() -> None:
    citation_filter = CitationFilter(2)
    pieces = ["Peek with `", "heap[", "0]`", " [2", "] and ``", "x[1]", "``."]
    shown = "".join(citation_filter.feed(p) for p in pieces) + citation_filter.flush()
    assert shown == "Peek with `heap[0]` [1] and ``x[1]``."
    assert citation_filter.sources == [2]


def test_a_code_span_left_open_ends_with_its_line() -> None:
    assert filter_citations("Odd `tick here [3]\nThen [3].", 3) == "Odd `tick here [3]\nThen [1]."

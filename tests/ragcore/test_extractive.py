"""The extractive answer: whole sentences and whole code blocks, chosen for the question, rendered cleanly."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from ragcore.citations import filter_citations, numbering_gaps
from ragcore.extractive import MAX_BULLETS, NOTICE, compose, markup_problems, select_evidence, split_units
from ragcore.types import Chunk, ScoredChunk
from tests.support import HashingEmbedder

EMBEDDER = HashingEmbedder()

TIMEOUTS = """## Timeouts

HTTPX is careful to enforce timeouts everywhere by default. The default behavior is to raise a
TimeoutException after 5 seconds of network inactivity.

```pycon
>>> httpx.get('https://github.com/', timeout=10.0)
```

You can disable timeouts completely with `timeout=None`.
"""

CLIENT = """## Clients

A Client instance uses HTTP connection pooling. This can bring significant performance improvements.
It also reuses the underlying TCP connection.

To send a request with a client, use:

```python
with httpx.Client() as client:
    r = client.get('https://example.com')
```
"""


def encode(texts: Sequence[str]) -> np.ndarray:
    return EMBEDDER.embed(texts)


def chunk(text: str, n: int = 1, title: str = "HTTPX guide", location: str = "§ Timeouts") -> ScoredChunk:
    return ScoredChunk(Chunk(f"d{n}:0", f"d{n}", 0, text, title, f"doc{n}.md", location), 1.0 / n)


def test_a_fenced_code_block_is_one_unit_and_sentences_are_whole() -> None:
    units = split_units(TIMEOUTS)
    code = [u for u in units if u.code]
    assert [u.text for u in code] == ["```pycon\n>>> httpx.get('https://github.com/', timeout=10.0)\n```"]
    prose = [u.text for u in units if not u.code]
    assert prose == [
        "HTTPX is careful to enforce timeouts everywhere by default.",
        "The default behavior is to raise a TimeoutException after 5 seconds of network inactivity.",
        "You can disable timeouts completely with `timeout=None`.",
    ]  # hard-wrapped lines joined, the heading dropped


def test_an_unterminated_fence_runs_to_the_end_and_is_closed() -> None:
    units = split_units("Run this:\n\n```sh\nmake run\nmake test")
    assert units[-1].code and units[-1].text == "```sh\nmake run\nmake test\n```"


def test_abbreviations_and_questions_do_not_make_sentences() -> None:
    units = split_units("Q: Why is it slow?\nUse a cache, e.g. Redis for sessions. Then restart it.")
    assert [u.text for u in units] == ["Use a cache, e.g. Redis for sessions.", "Then restart it."]


def test_the_sentence_that_states_the_default_is_quoted_not_the_example_line() -> None:
    evidence = select_evidence("What is the default timeout?", [chunk(TIMEOUTS)], encode)
    assert any("after 5 seconds" in e.text for e in evidence)
    assert not any("timeout=10.0" in e.text for e in evidence)


def test_a_sentence_starting_with_it_keeps_the_one_before() -> None:
    evidence = select_evidence("Does it reuse the TCP connection?", [chunk(CLIENT, location="§ Clients")], encode)
    assert evidence[0].text == ("This can bring significant performance improvements. "
                                "It also reuses the underlying TCP connection.")


def test_a_code_block_introduced_by_a_sentence_is_included_whole() -> None:
    answer = compose("How do I send a request with a client? Show an example", [chunk(CLIENT, location="§ Clients")],
                     encode)
    assert "- To send a request with a client, use [1]:\n\n```python\nwith httpx.Client() as client:\n" in answer
    assert answer.count("```") % 2 == 0


def test_the_answer_is_a_handful_of_bullets_by_relevance_citing_each_source() -> None:
    chunks = [chunk(CLIENT, 1, location="§ Clients"), chunk(TIMEOUTS, 2)]
    answer = compose("What is the default timeout of a client?", chunks, encode)
    assert answer.startswith(NOTICE)
    bullets = [line for line in answer.split("\n") if line.startswith("- ")]
    assert 1 <= len(bullets) <= MAX_BULLETS
    assert "5 seconds" in bullets[0] and bullets[0].endswith("[2]")  # the best first, whatever its rank
    assert not numbering_gaps(filter_citations(answer, len(chunks)))  # renumbered as it streams: [2] shows as [1]


def test_broken_markup_from_a_chunk_boundary_is_cleaned() -> None:
    text = "The **default** pool size is 10 connections. The `limits` argument with a stray ` sets it."
    answer = compose("What is the default pool size limit?", [chunk(text)], encode)
    for line in answer.split("\n")[2:]:
        assert line.count("`") % 2 == 0 and line.count("**") % 2 == 0
    assert "The **default** pool size is 10 connections. [1]" in answer


def test_the_same_sentence_in_two_overlapping_chunks_is_quoted_once() -> None:
    shared = "The default behavior is to raise a TimeoutException after 5 seconds of network inactivity."
    answer = compose("What is the default timeout?", [chunk(shared, 1), chunk("Intro text here. " + shared, 2)], encode)
    assert answer.count("after 5 seconds") == 1


SIGNATURES = """## heapq

heapq.nsmallest(n, iterable, key=None)

Return a list with the n smallest elements from the dataset defined by iterable.

heapq.heappop(heap)

Pop and return the smallest item from the heap, maintaining the heap invariant.
"""

DIRECTORIES = """## tempfile

Python searches a standard list of directories to find one which the calling user can create files in. The list is:

1. The directory named by the `TMPDIR` environment variable.
2. The directory named by the `TEMP` environment variable.
3. The directory named by the `TMP` environment variable.

Otherwise, the current working directory is used.
"""


def test_a_definition_is_quoted_with_the_term_it_defines() -> None:
    evidence = select_evidence("Which function returns the n smallest elements?", [chunk(SIGNATURES)], encode)
    assert evidence[0].text == ("`heapq.nsmallest(n, iterable, key=None)`: Return a list with the n smallest "
                                "elements from the dataset defined by iterable.")


def test_a_sentence_that_introduces_a_list_brings_its_items() -> None:
    answer = compose("Which list of directories does Python search?", [chunk(DIRECTORIES)], encode)
    assert ("- Python searches a standard list of directories to find one which the calling user can create files"
            " in. The list is [1]:\n  - The directory named by the `TMPDIR` environment variable.\n"
            "  - The directory named by the `TEMP` environment variable.\n") in answer
    assert answer.count("TMPDIR") == 1  # an item the list brought is not quoted again


def test_a_sentence_starting_with_a_connective_keeps_the_one_before() -> None:
    text = "Django stores signal handlers as weak references by default. Thus, a local function may be collected."
    evidence = select_evidence("Why was the local function collected?", [chunk(text)], encode)
    assert evidence[0].text == text


def same_vector(texts: Sequence[str]) -> np.ndarray:
    return np.full((len(texts), 4), 0.5)  # every text alike: the dense evidence ties


def test_a_how_to_question_prefers_the_instruction_to_the_description() -> None:
    text = ("Duplicate receivers appear when the module that connects them is imported twice.\n\n"
            "For duplicate receivers, pass a unique `dispatch_uid` when connecting.")
    how = select_evidence("How do I avoid duplicate receivers?", [chunk(text)], same_vector)
    assert "dispatch_uid" in how[0].text
    what = select_evidence("Why are there duplicate receivers?", [chunk(text)], same_vector)
    assert "imported twice" in what[0].text  # not a how-to question: the description stays first


def test_a_code_block_cut_off_into_the_next_chunk_follows_the_sentence_that_introduces_it() -> None:
    first = ScoredChunk(Chunk("d:0", "d", 0, "Streaming keeps big exports from timing out. Stream a large CSV file like this:",
                              "CSV", "csv.md", "§ Streaming"), 1.0)
    second = ScoredChunk(Chunk("d:1", "d", 1, "```python\nreturn StreamingHttpResponse(rows)\n```\n\nThat is all.",
                               "CSV", "csv.md", "§ Streaming"), 0.5)
    answer = compose("How do I stream a large CSV file?", [first, second], encode)
    assert "Stream a large CSV file like this [1]:\n\n```python\nreturn StreamingHttpResponse(rows)\n```" in answer
    assert answer.count("StreamingHttpResponse") == 1


def test_for_example_keeps_the_claim_it_illustrates() -> None:
    text = "Use a streaming response for big files. For example, a slow export then never times out."
    evidence = select_evidence("Why does a slow export never time out?", [chunk(text)], encode)
    assert evidence[0].text == text


@pytest.mark.parametrize(("text", "problems"), [
    ("- `heap[0]` is the smallest item [1]\n\n```python\nx = a**2\n```", []),
    ("- **bold** and ``a ` b`` [1]", []),
    ("- a `span [1]", ["line 1: a code span is not closed"]),
    ("- **bold [1]\n\n```\ncode", ["line 1: bold is not closed", "a code block is not closed"]),
])
def test_markup_that_would_render_broken_is_found(text: str, problems: list[str]) -> None:
    assert markup_problems(text) == problems


def test_answers_with_terms_lists_and_code_render_cleanly() -> None:
    signature = "csv.DictWriter(f, fieldnames, *args, **kwds)\n\nCreate an object which maps dictionaries onto rows."
    chunks = [chunk(signature, 1), chunk(DIRECTORIES, 2), chunk(CLIENT, 3), chunk("A `limits` cut ` off **here.", 4),
              chunk("The pattern `**` matches any files and `__init__` modules, **recursively.", 5)]
    for question in ("How do I write rows from dictionaries?", "Which directories are searched, in order?",
                     "How do I send a request with a client? Show an example", "What limits are cut off?",
                     "Which pattern matches any files recursively?"):
        answer = compose(question, chunks, encode)
        assert markup_problems(answer) == [], answer


def test_emphasis_markers_inside_code_are_code() -> None:
    text = "The pattern `**` matches any files and `__init__` modules, **recursively."
    answer = compose("Which pattern matches any files recursively?", [chunk(text)], encode)
    assert "The pattern `**` matches any files and `__init__` modules, recursively. [1]" in answer


def test_a_code_block_on_its_own_is_quoted_only_for_a_question_that_asks_for_code() -> None:
    text = ("The DENY value blocks every frame.\n\n```python\n@xframe_options_deny\ndef view(request): ...\n```\n\n"
            "The SAMEORIGIN value allows frames from the same site.")
    what = compose("What does the DENY value of the frame option do?", [chunk(text)], same_vector)
    assert "```" not in what and "blocks every frame" in what
    show = compose("Show example code for the DENY frame option", [chunk(text)], same_vector)
    assert "@xframe_options_deny" in show
    how = compose("How do I use the DENY frame option?", [chunk(text)], same_vector)
    assert "@xframe_options_deny" in how  # "how do I" is often answered by code


def test_a_how_to_answer_brings_the_example_after_its_paragraph() -> None:
    text = ("Options can be given several times and every value is recorded.\n\nExample:\n\n"
            "```python\n@click.option('--message', '-m', multiple=True)\n```")
    how = compose("How can an option be given several times?", [chunk(text)], same_vector)
    assert "every value is recorded. [1]\n\n```python\n@click.option('--message', '-m', multiple=True)\n```" in how
    why = compose("Why is every value of an option recorded?", [chunk(text)], same_vector)
    assert "multiple=True" not in why


CONFIG_REFERENCE = """SESSION_COOKIE_NAME

The name of the session cookie. Can be changed in case you already have a cookie with the same name.

Default: `'session'`

SESSION_COOKIE_DOMAIN

The domain match rule that the session cookie will be valid for.

Default: `None`
"""


def test_a_definitions_default_is_quoted_with_it() -> None:
    answer = compose("What is the default name of the session cookie?", [chunk(CONFIG_REFERENCE)], encode)
    assert "- `SESSION_COOKIE_NAME`: The name of the session cookie. (Default: `'session'`) [1]" in answer
    assert "(Default: `None`)" not in answer.split("SESSION_COOKIE_NAME")[1].split("\n")[0]
    assert not markup_problems(answer)


def test_a_short_lead_in_is_never_a_bullet_of_its_own() -> None:
    text = ("Values of an option given several times are all recorded, not just the last one. For instance, "
            "`commit -m foo -m bar` records two lines. This can be accomplished with the `multiple` flag:\n\n"
            "```python\n@click.option('--message', '-m', multiple=True)\n```\n\nAnd on the command line:\n\n"
            "```\n$ commit -m foo -m bar\n```")
    answer = compose("How can an option be given several times on the command line?", [chunk(text)], encode)
    assert "- And on the command line" not in answer
    # The paragraph's last sentence introduces the example: it comes along, the sentence skipped between marked.
    assert ("all recorded, not just the last one. … This can be accomplished with the `multiple` flag [1]:\n\n"
            "```python\n@click.option('--message', '-m', multiple=True)\n```") in answer


def test_a_condition_on_it_keeps_the_sentence_that_names_it() -> None:
    text = ("Variadic arguments accept any number of values. This is controlled with the `nargs` parameter. "
            "If it is set to `-1`, then an unlimited number of arguments is accepted.")
    answer = compose("How do I accept an unlimited number of arguments?", [chunk(text)], encode)
    assert "`nargs` parameter. If it is set to `-1`, then an unlimited number of arguments is accepted. [1]" in answer


def test_a_sentence_is_never_appended_after_a_quoted_code_block() -> None:
    text = ("To ask for input, use the `prompt()` function. Any Unicode string is accepted by default. "
            "For instance, ask for an integer:\n\n"
            "```\nvalue = click.prompt('Please enter a valid integer', type=int)\n```")
    answer = compose("How do I ask for input? Is any Unicode string accepted by default?", [chunk(text)], same_vector)
    assert "``` To ask" not in answer and not markup_problems(answer)
    assert answer.endswith("```\n\n- To ask for input, use the `prompt()` function. [1]")  # a bullet of its own


def test_a_pointer_elsewhere_loses_to_the_sentence_that_answers() -> None:
    pointer = chunk("See Running Commands with the CLI Runner for an overview of how to test your custom commands.", 1)
    answer = chunk("Flask provides `test_cli_runner()` to create a runner, which runs CLI commands in isolation.", 2)
    evidence = select_evidence("How do I test a custom CLI command?", [pointer, answer], same_vector)
    assert "test_cli_runner" in evidence[0].text


def test_a_how_to_answer_that_finds_the_problem_brings_the_remedy_that_follows() -> None:
    text = ("In some circumstances, the code connecting receivers to signals may run multiple times. This can cause "
            "your receiver function to be registered more than once. For example, the `ready()` method may run twice "
            "during testing.\n\nIf this behavior is problematic, pass a unique identifier as the `dispatch_uid` argument.")
    answer = compose("How do I prevent a signal receiver from being registered more than once?", [chunk(text)], encode)
    assert "registered more than once. … If this behavior is problematic, pass a unique identifier as the `dispatch_uid` argument. [1]" in answer


LOOSE_LIST = """Python searches a standard list of directories to find one which the calling user can create files in. The list is:

1. The directory named by the `TMPDIR` environment variable.

2. The directory named by the `TEMP` environment variable.

3. As a last resort, the current working directory.

The result of this search is cached.
"""


def test_an_item_of_an_introduced_list_brings_the_whole_list_in_its_order() -> None:
    # "In which order …?" matches the items, not the sentence that says what they are: the items alone, by
    # relevance, would read TEMP before TMPDIR, and none would say it is a search order.
    answer = compose("Which environment variable names the directory, TEMP or TMPDIR?", [chunk(LOOSE_LIST)], encode)
    assert ("- Python searches a standard list of directories to find one which the calling user can create files"
            " in. The list is [1]:\n  - The directory named by the `TMPDIR` environment variable.\n"
            "  - The directory named by the `TEMP` environment variable.\n"
            "  - As a last resort, the current working directory.") in answer
    assert answer.count("TEMP`") == 1  # the items are quoted once, in the list
    assert not markup_problems(answer)


def test_an_item_of_a_list_nothing_introduces_stands_alone() -> None:
    text = "Notes on the variables.\n\n- `TMPDIR` names the directory.\n\n- `TEMP` is read on Windows."
    evidence = select_evidence("Which variable is read on Windows?", [chunk(text)], encode)
    assert evidence[0].text == "`TEMP` is read on Windows." and not evidence[0].items

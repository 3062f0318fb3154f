"""The extractive answer: whole sentences and whole code blocks, chosen for the question, rendered cleanly."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from ragcore.citations import filter_citations, numbering_gaps
from ragcore.embeddings import Embedder
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


def test_a_sentence_starting_with_it_keeps_the_one_before_and_the_one_that_one_leans_on() -> None:
    evidence = select_evidence("Does it reuse the TCP connection?", [chunk(CLIENT, location="§ Clients")], encode)
    # "It" leans on "This …", which leans on the sentence that names what "this" is.
    assert evidence[0].text == ("A Client instance uses HTTP connection pooling. This can bring significant "
                                "performance improvements. It also reuses the underlying TCP connection.")


def test_a_reason_two_sentences_back_comes_with_additionally_and_therefore() -> None:
    text = ("Unrelated setup notes come first.\n\nThe script is not called `markdown` because the Perl implementation "
            "took that name. Additionally, a script named `markdown.py` would import itself. Therefore, the script has "
            "been named `markdown_py` as a compromise.")
    evidence = select_evidence("Why has the script been named markdown_py as a compromise?", [chunk(text)], same_vector)
    assert evidence[0].text.startswith("The script is not called `markdown` because the Perl implementation")
    assert evidence[0].text.endswith("as a compromise.")


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


STREAMING = [
    ("Streaming Uploads", "Requests supports streaming uploads, which allow you to send large streams or files without "
                          "reading them into memory. To stream and upload, simply provide a file-like object for your body."),
    ("Body Content Workflow", "By default, when you make a request, the body of the response is downloaded immediately. "
                              "You can override this behaviour and defer downloading the response body until you access "
                              "the `Response.content` attribute with the `stream` parameter."),
]


def test_the_sentence_that_means_the_question_is_quoted_beside_one_that_shares_its_rare_words(real_embedder: Embedder) -> None:
    # The upload sentence has "large", "without", "reading" and "memory"; the one that answers says "downloaded".
    chunks = [ScoredChunk(Chunk(f"r{n}:0", f"r{n}", 0, text, "Advanced Usage", "advanced.html", f"§ {where}"), 1.0 / n)
              for n, (where, text) in enumerate(STREAMING, start=1)]
    evidence = select_evidence("How do I download a large response without reading it all into memory?", chunks,
                               real_embedder.embed)
    assert any("`stream` parameter" in e.text for e in evidence)


def test_a_block_that_quotes_fences_is_one_unit_closed_by_its_own_longer_fence() -> None:
    # A page about Markdown shows a fenced block inside a longer fence: the inner ``` lines are its content.
    text = "To include backticks within a code block, use more backticks for the fence:\n\n````\n```\na one-line code block\n```\n````\n\nThat is all."
    units = split_units(text)
    assert [u.code for u in units] == [False, True, False]
    assert units[1].text == "````\n```\na one-line code block\n```\n````"
    answer = compose("How do I include backticks within a code block?", [chunk(text)], encode)
    assert "````\n```\na one-line code block\n```\n````" in answer and not markup_problems(answer)


CLI_PAGE = ("Generally, you will want the library installed to run the command line script. See the installation "
            "instructions for details.\n\nThe command line script takes advantage of the `-m` flag of Python. Therefore, "
            "assuming Python is on your path, use the following format:\n\n```\npython -m markdown [options] [args]\n```\n\n"
            "That will run the module as a script.")


def test_a_remedy_that_introduces_a_code_block_brings_the_block() -> None:
    answer = compose("How do I run the command line script?", [chunk(CLI_PAGE)], encode)
    assert "use the following format [1]:\n\n```\npython -m markdown [options] [args]\n```" in answer
    assert not markup_problems(answer)


def test_sentences_joined_into_one_bullet_keep_their_reading_order() -> None:
    text = ("Generally, you will want the library installed to run the command line script. See the installation "
            "instructions for details.\n\nThe command line script takes advantage of the flag of Python. Therefore, "
            "assuming Python is on your path, use the flag of Python.")
    evidence = select_evidence("How do I run the command line script with the flag of Python?", [chunk(text)], encode)
    quoted = " ".join(e.text for e in evidence)
    assert quoted.count("Therefore") == 1
    assert quoted.index("Generally") < quoted.index("takes advantage") < quoted.index("Therefore")


def test_a_list_of_short_names_is_quoted_whole() -> None:
    text = ("A compilation of extensions.\n\nThe supported extensions include:\n\n- Abbreviations\n- Attribute Lists\n"
            "- Fenced Code Blocks\n- Footnotes\n- Tables\n\nSee each extension for its syntax.")
    answer = compose("Which extensions are supported?", [chunk(text)], encode)
    assert ("- The supported extensions include [1]:\n  - Abbreviations\n  - Attribute Lists\n  - Fenced Code Blocks\n"
            "  - Footnotes\n  - Tables") in answer
    units = split_units(text)
    assert all(select.text != "Tables" for select in select_evidence("Tables", [chunk(text)], encode))
    assert [u.text for u in units if u.listed][-1] == "Tables"  # kept for its list, never a bullet alone


def test_an_item_of_two_sentences_is_one_item_of_the_list() -> None:
    text = ("The following options are provided:\n\n- `marker`: Text to find and replace. Defaults to `[TOC]`.\n\n"
            "- `title`: Title to insert. Defaults to `None`.")
    answer = compose("Which options are provided?", [chunk(text)], encode)
    assert "  - `marker`: Text to find and replace. Defaults to `[TOC]`.\n  - `title`: Title to insert." in answer


TIMEOUT_TUPLE = ("The connect timeout is the number of seconds Requests will wait for your client to establish a "
                 "connection to a remote machine. It is a good practice to set connect timeouts to slightly larger than "
                 "a multiple of 3. Once your client has connected to the server and sent the HTTP request, the read "
                 "timeout is the number of seconds the client will wait for the server to send a response.\n\n"
                 "If you specify a single value for the timeout, like this:\n\n```\nr = requests.get(url, timeout=5)\n```\n\n"
                 "The timeout value will be applied to both the `connect` and the `read` timeouts. "
                 "Specify a tuple if you would like to set the values separately:")


def test_a_lead_in_is_read_with_the_sentence_it_leans_on(real_embedder: Embedder) -> None:
    # Alone, "Specify a tuple if you would like to set the values separately:" is far from the question (0.14);
    # after the sentence it leans on, it is what the question asks. Its block is the next chunk's beginning.
    first = ScoredChunk(Chunk("t:0", "t", 0, TIMEOUT_TUPLE, "Advanced", "advanced.html", "§ Timeouts"), 1.0)
    second = ScoredChunk(Chunk("t:1", "t", 1, "```\nr = requests.get(url, timeout=(3.05, 27))\n```\n\nThat is all.",
                               "Advanced", "advanced.html", "§ Timeouts"), 0.5)
    answer = compose("How do I set the connect and read timeouts separately?", [first, second], real_embedder.embed)
    assert "set the values separately [1]:\n\n```\nr = requests.get(url, timeout=(3.05, 27))" in answer


def test_a_how_to_answer_brings_the_example_a_thus_paragraph_introduces() -> None:
    text = ("Abbreviations are defined using the syntax of PHP Markdown Extra.\n\n"
            "Thus, the following text (taken from the PHP documentation):\n\n```\n*[HTML]: Hyper Text Markup Language\n```\n\n"
            "will be rendered as an abbr tag.")
    answer = compose("How do I define an abbreviation?", [chunk(text)], encode)
    assert "*[HTML]: Hyper Text Markup Language" in answer and not markup_problems(answer)

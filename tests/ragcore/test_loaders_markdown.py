"""Markdown loading: code, admonitions, raw HTML, images, front matter and tables in the chunk text format."""

from __future__ import annotations

import textwrap

from ragcore.loaders import load_bytes
from ragcore.types import ParsedDocument


def md(source: str, name: str = "page.md") -> ParsedDocument:
    return load_bytes(textwrap.dedent(source).encode(), name)


def sections(doc: ParsedDocument) -> list[tuple[str, str]]:
    return [(s.location, s.text) for s in doc.sections]


def test_code_blocks_stay_fenced_with_their_language() -> None:
    doc = md("""\
        # Client

        Send a request:

        ```pycon
        >>> import httpx
        >>> httpx.get("https://example.org", timeout=10.0)
        <Response [200 OK]>
        ```

            $ indented code
            has no language
        """)
    assert doc.sections[0].text == (
        "Send a request:\n\n"
        '```pycon\n>>> import httpx\n>>> httpx.get("https://example.org", timeout=10.0)\n<Response [200 OK]>\n```\n\n'
        "```\n$ indented code\nhas no language\n```"
    )


def test_code_keeps_its_indentation_and_blank_lines_verbatim() -> None:
    doc = md("""\
        ```python
        def f(x):
            if x:
                return   1


            return 2
        ```
        """)
    assert doc.text == "```python\ndef f(x):\n    if x:\n        return   1\n\n\n    return 2\n```"


def test_code_holding_a_fence_gets_a_longer_fence() -> None:
    doc = md("""\
        ````markdown
        ```python
        x = 1
        ```
        ````
        """)
    assert doc.text == "````markdown\n```python\nx = 1\n```\n````"


def test_inline_code_links_and_emphasis_read_as_plain_markdown() -> None:
    doc = md("Set `timeout=5` on the **[Client](https://example.org/client)** for *every* request, `` a`b ``.")
    assert doc.text == "Set `timeout=5` on the Client for every request, ``a`b``."


def test_mkdocs_admonitions_become_a_titled_line_and_their_body() -> None:
    doc = md("""\
        !!! note "Default timeouts"
            The default timeout is five seconds.

            Use `httpx.Timeout` to change it.

        !!! warning
            Never disable `verify` in production.

        ??? tip "Collapsed"
            Hidden until opened.
        """)
    assert doc.text == (
        "Note: Default timeouts\nThe default timeout is five seconds.\n\nUse `httpx.Timeout` to change it.\n\n"
        "Warning:\nNever disable `verify` in production.\n\n"
        "Tip: Collapsed\nHidden until opened."
    )
    assert "!!!" not in doc.text and "???" not in doc.text


def test_docusaurus_admonitions_are_read_too() -> None:
    doc = md("""\
        :::caution Breaking change
        The `v1` API is gone.
        :::
        """)
    assert doc.text == "Caution: Breaking change\nThe `v1` API is gone."


def test_raw_html_is_reduced_to_its_text_and_images_to_their_alt_text() -> None:
    doc = md("""\
        <p align="center"><img width="350" src="https://example.org/logo.png" alt="HTTPX logo"></p>

        <p align="center"><em>A next-generation HTTP client.</em> <a href="/x">Docs</a></p>

        Install it with <kbd>pip</kbd><br>and enjoy ![build status](https://ci/badge.svg) <img src="x" alt="inline">.

        ![](decorative.png)
        <!-- a comment nobody should read -->
        <script>alert("x")</script>
        """)
    assert doc.text == "HTTPX logo\n\nA next-generation HTTP client. Docs\n\nInstall it with pip\nand enjoy build status inline."
    for leaked in ("<", "src=", "comment", "alert", "decorative"):
        assert leaked not in doc.text


def test_front_matter_gives_the_title_and_is_never_content() -> None:
    doc = md("""\
        ---
        title: "Ops: the runbook"
        description: secret words
        tags: [a, b]
        ---
        ## Alerts

        Page the on-call.
        """)
    assert doc.title == "Ops: the runbook"
    assert sections(doc) == [("§ Alerts", "Page the on-call.")]


def test_toml_front_matter_gives_the_title_too() -> None:
    doc = md('+++\ntitle = "Hugo page"\ndraft = false\n+++\nBody text.\n')
    assert (doc.title, doc.text) == ("Hugo page", "Body text.")


def test_broken_front_matter_is_still_not_content() -> None:
    doc = md("---\ntitle: [unclosed\n---\n# Real title\n\nBody.\n")
    assert (doc.title, doc.text) == ("Real title", "Body.")


def test_tables_keep_one_row_per_line() -> None:
    doc = md("""\
        | Parameter | Default | Meaning |
        |-----------|:-------:|---------|
        | `timeout` | 5       | seconds per request |
        | `retries` | 0       | **none** by default |
        """)
    assert doc.text == "Parameter | Default | Meaning\n`timeout` | 5 | seconds per request\n`retries` | 0 | none by default"


def test_lists_keep_their_items_numbers_and_nesting() -> None:
    doc = md("""\
        3. Install
        4. Configure
           - set `A`
           - set `B`

             a second paragraph of B
        5. Run
        """)
    assert doc.text == "3. Install\n4. Configure\n  - set `A`\n  - set `B`\n    a second paragraph of B\n5. Run"


def test_headings_still_give_each_section_its_location() -> None:
    doc = md("""\
        # Guide

        Intro.

        ## Install `pkg`

        Steps.

        ### On Linux

        ```sh
        # not a heading
        apt install pkg
        ```
        """)
    assert doc.title == "Guide"
    assert sections(doc) == [
        ("", "Intro."),
        ("§ Install `pkg`", "Steps."),
        ("§ Install `pkg` › On Linux", "```sh\n# not a heading\napt install pkg\n```"),
    ]


def test_html_headings_inside_markdown_cut_sections_too() -> None:
    doc = md("""\
        <h1 align="center">Widget</h1>

        Intro.

        <h2>Setup</h2>

        Steps.
        """)
    assert doc.title == "Widget"
    assert sections(doc) == [("", "Intro."), ("§ Setup", "Steps.")]


def test_a_blockquote_and_a_rule_are_plain_paragraphs() -> None:
    assert md("> Quoted *words*\n> continue.\n\n---\n\nAfter.").text == "Quoted words continue.\n\nAfter."


def test_myst_roles_directives_and_definition_lists_read_as_sphinx_shows_them() -> None:
    # Sphinx's `_sources/*.md.txt` (and Jupyter Book) are MyST: what the rendered page says, not its markup.
    doc = md("""\
        (chains)=

        # Processors

        Call {func}`~structlog.get_logger`, see {doc}`the processors page <processors>` and {ref}`adapting`.

        Each processor receives three positional arguments:

        **logger**

        : Your wrapped logger object.

        **method_name**

        : The name of the wrapped method.

        :::{important}
        You may modify the `event_dict`.
        :::

        ```{toctree}
        :maxdepth: 2

        getting-started
        ```

        ```{code-block} python
        log.info("hi")
        ```
        % a comment nobody reads
        """, "processors.md.txt")
    assert doc.text == (
        "Call `structlog.get_logger`, see the processors page and adapting.\n\n"
        "Each processor receives three positional arguments:\n\n"
        "- logger:\n  Your wrapped logger object.\n- method_name:\n  The name of the wrapped method.\n\n"
        "Important:\nYou may modify the `event_dict`.\n\n"
        "```python\nlog.info(\"hi\")\n```"
    )


def test_plain_markdown_keeps_lines_that_only_look_like_myst() -> None:
    doc = md("% of users who asked: 40.\n\nterm\n: not a definition list in CommonMark\n")
    assert doc.text == "% of users who asked: 40.\n\nterm : not a definition list in CommonMark"

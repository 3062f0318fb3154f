"""Bad input: each odd document loads into sensible chunks or fails with an error naming it, and never stops an ingest."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

import pytest

from ragcore import Engine
from ragcore.chunking import split_document
from ragcore.extractive import MAX_BULLETS, compose, markup_problems
from ragcore.loaders import load_bytes
from ragcore.loaders.outline import MAX_INDENT_LEVELS
from ragcore.loaders.plaintext import nesting_depth
from ragcore.metrics import PIPELINE_ERRORS
from ragcore.types import Chunk, ParsedDocument, ScoredChunk
from tests.support import HashingEmbedder, make_engine

EMBEDDER = HashingEmbedder()


def chunk(doc: ParsedDocument, max_tokens: int = 200) -> list[Chunk]:
    return split_document(doc, document_id="d", source="s", checksum="c", count_tokens=EMBEDDER.count_tokens,
                          max_tokens=max_tokens, overlap_tokens=32)  # fmt: skip


def fenced_blocks(text: str) -> list[str]:
    return re.findall(r"^```[\w+#.-]*\n.*?\n```$", text, re.M | re.S)


def assert_fences_closed(chunks: list[Chunk]) -> None:
    for c in chunks:
        assert len(re.findall(r"^```", c.text, re.M)) % 2 == 0, c.text


MOSTLY_HTML = """<div align="center">
  <img src="https://example.org/logo.svg" alt="Widget" width="120">
  <h1>Widget</h1>
  <p><a href="https://ci.example.org"><img src="badge.svg" alt="build passing"></a>
  <a href="https://pypi.org/x"><img src="v.svg" alt="version 2.1"></a></p>
</div>

<h2>Install</h2>
<table>
  <tr><th>Platform</th><th>Command</th></tr>
  <tr><td>Linux</td><td><code>apt install widget</code></td></tr>
</table>

<details><summary>Advanced options</summary>

Set `WIDGET_HOME` to move the cache.

</details>

<p align="center">Made with <span style="color:red">love</span>.</p>
"""


def test_a_markdown_file_that_is_mostly_html_reads_as_its_text() -> None:
    doc = load_bytes(MOSTLY_HTML.encode(), "README.md")
    assert doc.title == "Widget"
    assert [(s.location, s.text) for s in doc.sections] == [
        ("", "Widget"),  # the logo's alt text, before the <h1>
        ("", "build passing version 2.1"),  # under the <h1>, which names the document, so no location
        ("§ Install", ("Platform | Command\nLinux | `apt install widget`\n\nAdvanced options\n\n"
                       "Set `WIDGET_HOME` to move the cache.\n\nMade with love.")),
    ]  # fmt: skip
    assert "<" not in doc.text and "align" not in doc.text


def notebook_markdown(cells: int) -> str:
    """What nbconvert --to markdown writes: short prose, then a code cell and its output, over and over."""
    parts = ["# Analysis notebook"]
    for n in range(cells):
        parts.append(f"Step {n}: load and plot the data.")
        parts.append(f"```python\nimport pandas as pd\ndf{n} = pd.read_csv('data_{n}.csv')\ndf{n}.describe()\n```")
        parts.append(f"```\n       value\ncount  {n * 10}.0\nmean   {n}.5\n```")
    return "\n\n".join(parts) + "\n"


def test_a_notebook_like_file_full_of_code_keeps_every_cell_whole() -> None:
    doc = load_bytes(notebook_markdown(60).encode(), "analysis.md")
    chunks = chunk(doc)
    assert len(chunks) > 5
    assert_fences_closed(chunks)
    for n in range(60):
        cell = f"```python\nimport pandas as pd\ndf{n} = pd.read_csv('data_{n}.csv')\ndf{n}.describe()\n```"
        assert any(cell in c.text for c in chunks), n  # a cell that fits in a chunk is never cut


def test_a_jupyter_notebook_file_loads_without_crashing() -> None:
    notebook = {"cells": [{"cell_type": "code", "source": ["import os\n", "os.getcwd()"], "outputs": []},
                          {"cell_type": "markdown", "source": ["# Notes\n", "Some words."]}],
                "metadata": {"kernelspec": {"name": "python3"}}, "nbformat": 4}  # fmt: skip
    doc = load_bytes(json.dumps(notebook).encode(), "analysis.ipynb")
    assert "os.getcwd()" in doc.text and chunk(doc)


def test_a_two_thousand_line_code_block_is_cut_between_lines_all_fenced() -> None:
    code = "\n".join(f"    call_{n}(argument, other_argument)" for n in range(2000))
    doc = load_bytes(f"# Generated\n\nThe whole table:\n\n```python\n{code}\n```\n\nThe end.\n".encode(), "generated.md")
    chunks = chunk(doc)
    assert all(EMBEDDER.count_tokens([c.index_text])[0] <= 200 for c in chunks)
    assert_fences_closed(chunks)
    assert chunks[0].text.startswith("The whole table:")
    code_chunks = [c for c in chunks if "call_" in c.text]
    assert all(len(fenced_blocks(c.text)) == 1 and "```python\n" in c.text for c in code_chunks)
    lines = [line for c in code_chunks for line in fenced_blocks(c.text)[0].split("\n")[1:-1]]
    assert sorted(set(lines), key=lines.index) == code.split("\n")  # each line whole, its indentation kept


def test_an_unterminated_fence_runs_to_the_end_and_is_closed() -> None:
    doc = load_bytes(b"# Setup\n\nRun:\n\n```sh\nmake install\n# Next steps\nmake run\n", "setup.md")
    assert [(s.location, s.text) for s in doc.sections] == [("", "Run:\n\n```sh\nmake install\n# Next steps\nmake run\n```")]
    assert_fences_closed(chunk(doc))


def test_an_unterminated_fence_in_a_text_file_is_closed_by_the_chunker() -> None:
    doc = load_bytes(b"Notes.\n\n```\ncode without an end", "notes.txt")
    assert [c.text for c in chunk(doc)] == ["Notes.\n\n```\ncode without an end\n```"]


def test_lists_nested_two_hundred_deep_keep_every_item_with_bounded_indentation() -> None:
    source = "\n".join("  " * depth + f"- level {depth}" for depth in range(200))
    doc = load_bytes(source.encode(), "deep.md")
    lines = doc.text.split("\n")
    assert [line.strip() for line in lines] == [f"- level {depth}" for depth in range(200)]
    assert max(len(line) - len(line.lstrip()) for line in lines) == 2 * MAX_INDENT_LEVELS
    assert chunk(doc)


@pytest.mark.parametrize(("name", "source"), [
    ("deeper.md", "\n".join("  " * depth + f"- level {depth}" for depth in range(550))),
    ("deeper.rst", "\n\n".join("  " * depth + f"- level {depth}" for depth in range(200))),
    ("quotes.md", "> " * 700 + "the deepest quote"),
])  # fmt: skip
def test_markup_nested_deeper_than_its_parser_reaches_is_read_as_plain_text(name: str, source: str) -> None:
    doc = load_bytes(source.encode(), name)
    assert doc.text.split("\n")[-1].endswith(("- level 549", "- level 199", "the deepest quote"))
    assert chunk(doc)


@pytest.mark.parametrize(("name", "source", "text"), [
    ("roadmap.md", "# Roadmap\n\n## Q1\n\n## Q2\n", "Roadmap\nQ1\nQ2"),
    ("roadmap.rst", "Roadmap\n=======\n\nQ1\n--\n\nQ2\n--\n", "Q1\nQ2"),
    ("roadmap.html", "<html><body><h1>Roadmap</h1><h2>Q1</h2><h2>Q2</h2></body></html>", "Roadmap\nQ1\nQ2"),
])  # fmt: skip
def test_a_heading_only_file_is_indexed_by_its_headings(name: str, source: str, text: str) -> None:
    doc = load_bytes(source.encode(), name)
    assert (doc.title, doc.text) == ("Roadmap", text)
    assert [c.text for c in chunk(doc)] == [text]


def test_no_bad_file_stops_an_ingest_and_each_failure_names_its_file(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    files: dict[str, str | bytes] = {
        "mostly-html.md": MOSTLY_HTML,
        "notebook.md": notebook_markdown(30),
        "generated.md": "```\n" + "\n".join(f"line {n}" for n in range(2000)) + "\n```\n",
        "unterminated.md": "Intro.\n\n~~~python\nprint('never closed')\n",
        "deep.md": "\n".join("  " * d + f"- level {d}" for d in range(200)),
        "deep.rst": "\n\n".join("  " * d + f"- level {d}" for d in range(200)),
        "headings.md": "# Only\n\n## Headings\n",
        "latin1.txt": "Le café crème.".encode("latin-1"),
        "blank.md": "   \n\n",
        "binary.md": bytes(range(256)) * 4,
        "good.md": "# Parking\n\nPark in the north lot after 9am.\n",
    }
    for name, data in files.items():
        (folder / name).write_bytes(data.encode() if isinstance(data, str) else data)
    engine: Engine = make_engine(tmp_path / "data")
    loader_errors = PIPELINE_ERRORS.labels("loader")
    before = loader_errors._value.get()
    results = {Path(r.source).name: r for r in engine.ingest_files(sorted(folder.iterdir()))}
    assert {name: r.status for name, r in results.items()} == {
        name: ("failed" if name in ("blank.md", "binary.md") else "indexed") for name in files
    }
    assert results["blank.md"].error == "blank.md: empty file"
    assert results["binary.md"].error.startswith("binary.md: unsupported file type: binary content")
    assert loader_errors._value.get() == before + 2
    assert engine.retrieve("north lot parking", mode="bm25").chunks[0].chunk.title == "Parking"


@pytest.mark.parametrize(("name", "source", "question"), [
    ("README.md", MOSTLY_HTML, "How do I move the widget cache?"),
    ("analysis.md", notebook_markdown(30), "How do I load and plot the data? Show the code"),
    ("generated.md", "# Generated\n\nThe whole table:\n\n```python\n"
     + "\n".join(f"    call_{n}(argument, **options)" for n in range(2000)) + "\n```\n", "Which calls are in the table?"),
    ("setup.md", "# Setup\n\nRun:\n\n```sh\nmake install\n# Next steps\nmake run\n", "How do I install it?"),
    ("deep.md", "\n".join("  " * d + f"- level {d} holds `item_{d}` and **note {d}**" for d in range(200)),
     "What does level 7 hold?"),
    ("headings.md", "# Only\n\n## Headings\n", "What are the headings?"),
])  # fmt: skip
def test_an_answer_quoting_a_bad_document_renders_cleanly(name: str, source: str, question: str) -> None:
    chunks = chunk(load_bytes(source.encode(), name))
    answer = compose(question, [ScoredChunk(c, 1.0 / n) for n, c in enumerate(chunks[:6], start=1)], EMBEDDER.embed)
    assert markup_problems(answer) == [], answer
    assert sum(line.startswith("- ") for line in answer.split("\n")) <= MAX_BULLETS


@pytest.mark.parametrize(("name", "module", "parse", "source", "depth"), [
    ("deeper.rst", "restructured", "publish_doctree", "\n\n".join("  " * d + f"- level {d}" for d in range(200)), 199),
    ("quotes.md", "markdown", "_parser", "> " * 700 + "the deepest quote", 700),
])  # fmt: skip
def test_markup_too_deep_for_its_parser_never_reaches_it(
    monkeypatch: pytest.MonkeyPatch, name: str, module: str, parse: str, source: str, depth: int
) -> None:
    """Hitting the recursion limit inside a parser can fail in a finalizer where no except reaches: never go there."""
    loader = importlib.import_module(f"ragcore.loaders.{module}")

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"the parser was asked to parse {depth} levels")

    monkeypatch.setattr(loader, parse, refuse)
    assert nesting_depth(source) == depth
    assert load_bytes(source.encode(), name).text.split("\n")[-1].endswith(("- level 199", "the deepest quote"))

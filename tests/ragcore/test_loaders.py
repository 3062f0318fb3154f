"""Loaders: content sniffing, one parser per format, and a clear LoaderError for every bad upload."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from ragcore.errors import (
    CorruptFile,
    EmptyFile,
    FileMissing,
    FileTooLarge,
    LoaderError,
    NoExtractableText,
    UnsupportedType,
)
from ragcore.loaders import detect_kind, load_bytes, load_file, read_file
from ragcore.types import ParsedDocument
from tests.ragcore.samples import (
    EXE_BYTES,
    PNG_BYTES,
    docx_bytes,
    encrypted_pdf_bytes,
    handbook,
    pdf_bytes,
    scanned_pdf_bytes,
    write,
    zip_bytes,
)

MB = 1024 * 1024


def locations(doc: ParsedDocument) -> list[str]:
    return [s.location for s in doc.sections]


def load(tmp_path: Path, name: str, data: bytes | str) -> ParsedDocument:
    return load_file(write(tmp_path, name, data), max_bytes=5 * MB)


def assert_every_section_has_text(doc: ParsedDocument) -> None:
    assert doc.sections
    assert all(s.text.strip() and s.text == s.text.strip("\n").rstrip() for s in doc.sections)


# --- reading files ----------------------------------------------------------------------------------


def test_it_loads_a_file_from_disk(tmp_path: Path) -> None:
    doc = load(tmp_path, "notes.txt", "Remember   the milk.\n\n\n\nAnd the  bread.  \n")
    assert doc == ParsedDocument("notes", "text", (doc.sections[0],))
    assert doc.sections[0].text == "Remember the milk.\n\nAnd the bread."
    assert doc.sections[0].location == ""


def test_it_reports_a_missing_path(tmp_path: Path) -> None:
    with pytest.raises(FileMissing) as caught:
        load_file(tmp_path / "gone.pdf", max_bytes=MB)
    assert caught.value.source == "gone.pdf"
    assert str(caught.value) == "gone.pdf: file not found"


def test_it_reports_a_directory_as_missing_file(tmp_path: Path) -> None:
    (tmp_path / "folder.txt").mkdir()
    with pytest.raises(FileMissing, match="not a regular file"):
        load_file(tmp_path / "folder.txt", max_bytes=MB)


def test_it_rejects_an_oversized_file_without_reading_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "huge.pdf"
    with path.open("wb") as f:
        f.truncate(12 * MB + 300 * 1024)  # sparse: instant to make, and reading it would be slow

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the loader read a file it should have refused by size")

    monkeypatch.setattr(Path, "open", refuse)
    monkeypatch.setattr(Path, "read_bytes", refuse)
    with pytest.raises(FileTooLarge) as caught:
        load_file(path, max_bytes=5 * MB)
    assert str(caught.value) == "huge.pdf: 12.3 MB is over the 5.0 MB limit"


def test_it_reads_a_file_exactly_at_the_limit(tmp_path: Path) -> None:
    path = write(tmp_path, "edge.txt", "x" * 100)
    assert read_file(path, max_bytes=100) == b"x" * 100
    with pytest.raises(FileTooLarge, match="100 bytes is over the 99 bytes limit"):
        read_file(path, max_bytes=99)


# --- errors for bad content ---------------------------------------------------------------------------


def test_it_reports_an_empty_file(tmp_path: Path) -> None:
    with pytest.raises(EmptyFile) as caught:
        load(tmp_path, "blank.md", b"")
    assert str(caught.value) == "blank.md: empty file"


@pytest.mark.parametrize("data", [b"  \n\t\r\n  ", b"\xef\xbb\xbf \n", "\ufeff  \n".encode("utf-16")])
def test_it_reports_a_whitespace_only_file_as_empty(tmp_path: Path, data: bytes) -> None:
    with pytest.raises(EmptyFile, match="empty file"):
        load(tmp_path, "spaces.txt", data)


def test_it_refuses_random_binary_junk_named_txt(tmp_path: Path) -> None:
    junk = random.Random(7).randbytes(4096)
    with pytest.raises(UnsupportedType) as caught:
        load(tmp_path, "junk.txt", junk)
    assert str(caught.value) == "junk.txt: unsupported file type: binary content, not text"


def test_it_refuses_binary_junk_even_without_nul_bytes() -> None:
    junk = bytes(b for b in random.Random(8).randbytes(4096) if b)
    with pytest.raises(UnsupportedType, match="binary content, not text"):
        load_bytes(junk, "junk.txt")


def test_it_refuses_an_exe_renamed_to_txt() -> None:
    with pytest.raises(UnsupportedType, match=r"binary content \(looks like a Windows executable\)"):
        load_bytes(EXE_BYTES, "readme.txt")


def test_it_refuses_an_exe_renamed_to_pdf_without_parsing_it_as_pdf(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedType) as caught:
        load(tmp_path, "x.pdf", EXE_BYTES)
    assert str(caught.value) == "x.pdf: not a PDF despite its .pdf name: binary content (looks like a Windows executable)"


def test_it_refuses_text_renamed_to_pdf() -> None:
    with pytest.raises(UnsupportedType, match="not a PDF despite its .pdf name: the content is text"):
        load_bytes(b"just some notes", "notes.pdf")


def test_it_refuses_a_png_image(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedType, match=r"^photo\.png: unsupported file type: binary content \(looks like a PNG image\)"):
        load(tmp_path, "photo.png", PNG_BYTES)


def test_it_names_a_legacy_word_file_when_refusing_it() -> None:
    with pytest.raises(UnsupportedType, match=r"looks like a legacy Office file \(\.doc, \.xls or \.ppt\)"):
        load_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 512, "minutes.doc")


def test_it_refuses_a_zip_archive() -> None:
    with pytest.raises(UnsupportedType) as caught:
        load_bytes(zip_bytes({"a.txt": "hello"}), "bundle.zip")
    assert str(caught.value) == "bundle.zip: unsupported file type: binary content (looks like a ZIP archive)"


def test_it_names_an_excel_workbook_when_refusing_it() -> None:
    with pytest.raises(UnsupportedType, match="looks like an Excel workbook"):
        load_bytes(zip_bytes({"xl/workbook.xml": "<workbook/>"}), "sheet.xlsx")


def test_it_counts_the_bom_in_the_offset_of_an_invalid_byte() -> None:
    with pytest.raises(CorruptFile, match="invalid byte 0xe9 at offset 6"):
        load_bytes(b"\xef\xbb\xbfcaf\xe9 au lait", "menu.txt")


def test_it_reads_utf8_with_a_bom_and_utf16_with_a_bom() -> None:
    assert load_bytes("\ufeffCafé".encode(), "a.txt").text == "Café"
    assert load_bytes("Café crème".encode("utf-16"), "b.txt").text == "Café crème"
    assert load_bytes(b"\xfe\xff" + "Café".encode("utf-16-be"), "c.txt").text == "Café"


def test_it_only_ever_raises_loader_errors_for_truncated_files() -> None:
    samples = {
        "a.pdf": pdf_bytes(["One page", "Two page"], title="T"),
        "a.docx": docx_bytes(handbook),
        "a.json": b'{"a": [1, 2, {"b": "c"}]}',
        "a.csv": b'h1,h2\n"a,b",c\n',
        "a.html": b"<html><body><h1>Hi</h1><p>there</p></body></html>",
    }
    for name, data in samples.items():
        for cut in range(1, len(data), max(1, len(data) // 40)):
            try:
                load_bytes(data[:cut], name)
            except LoaderError:
                pass


def test_its_error_messages_name_the_file() -> None:
    cases = [b"", EXE_BYTES, b"%PDF-1.4 nonsense", b"bad \xff", b"\x00\x01\x02"]
    for data in cases:
        with pytest.raises(LoaderError) as caught:
            load_bytes(data, "Quarterly report.pdf")
        assert caught.value.source == "Quarterly report.pdf"
        assert str(caught.value).startswith("Quarterly report.pdf: ")


# --- sniffing -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "data", "kind"),
    [
        ("scan.bin", pdf_bytes(["hello"]), "pdf"),
        ("letter.txt", docx_bytes(handbook), "docx"),
        ("page.txt", b"<!DOCTYPE html><html><body><p>Hi</p></body></html>", "html"),
        ("page.md", b"  <!-- generated -->\n<html lang='en'><p>Hi</p></html>", "html"),
        ("page.htm", b"<p>Hi</p>", "html"),
        ("page.html", b"no tags at all", "text"),
        ("about-html.txt", b"Use <b>bold</b> for emphasis.", "text"),
        ("data.txt", b'{"a": 1}', "json"),
        ("data", b"[1, 2, 3]", "json"),
        ("broken.json", b'{"a": ', "json"),
        ("links.md", b"[docs](https://example.com)", "markdown"),
        ("people.csv", b"name,age\nAna,3\n", "csv"),
        ("people.tsv", b"name\tage\nAna\t3\n", "csv"),
        ("guide.markdown", b"# Hi", "markdown"),
        ("guide.rst", b"Hi\n==", "rst"),
        ("README", b"plain words", "text"),
        ("pdf-spec.txt", b"A PDF starts with the bytes %PDF-1.7 and then...", "text"),
        ("PKI.txt", b"PKI is public key infrastructure", "text"),
    ],
)
def test_it_sniffs_the_kind_from_content_before_the_extension(name: str, data: bytes, kind: str) -> None:
    assert detect_kind(data, name) == kind


def test_sphinx_source_copies_are_read_in_their_own_format() -> None:
    # A Sphinx build's _sources/ (and Debian's -doc packages) hold guide.rst.txt and guide.md.txt.
    rst = load_bytes(b"Fixtures\n========\n\nUse ``autouse=True``.\n\n.. code-block:: python\n\n    x = 1\n", "how-to/fixtures.rst.txt")
    assert (rst.kind, rst.title) == ("rst", "Fixtures")
    assert "Use `autouse=True`." in rst.text and "```python\nx = 1\n```" in rst.text
    assert detect_kind(b"# Guide\n\nText.", "guide.md.txt") == "markdown"
    assert detect_kind(b"Release notes: rst.txt files", "notes.txt") == "text"


def test_it_treats_html_in_a_txt_file_as_text_unless_it_starts_like_a_page() -> None:
    # prose about HTML keeps its tags: stripping them would lose what the text is explaining
    doc = load_bytes(b"To make text bold, wrap it in <b> and </b>.", "tips.txt")
    assert (doc.kind, doc.text) == ("text", "To make text bold, wrap it in <b> and </b>.")


# --- pdf ----------------------------------------------------------------------------------------------


def test_it_loads_a_multi_page_pdf_with_one_section_per_page(tmp_path: Path) -> None:
    data = pdf_bytes(["Install the agent.\nThen restart.", "", "Troubleshooting   starts here."], title="Agent Guide")
    doc = load(tmp_path, "agent.pdf", data)
    assert (doc.title, doc.kind) == ("Agent Guide", "pdf")
    assert locations(doc) == ["page 1", "page 3"]  # the blank page 2 makes no empty section
    assert doc.sections[0].text == "Install the agent.\nThen restart."
    assert doc.sections[1].text == "Troubleshooting starts here."


def test_it_titles_an_untitled_pdf_by_its_first_short_line() -> None:
    doc = load_bytes(pdf_bytes(["Release Notes 4.2\nLots of details follow here."]), "rn.pdf")
    assert doc.title == "Release Notes 4.2"


def test_it_titles_a_pdf_by_its_file_stem_when_the_first_line_is_long() -> None:
    doc = load_bytes(pdf_bytes(["word " * 60]), "release_notes-4.2.pdf")
    assert doc.title == "release notes 4.2"


def test_it_reports_a_scanned_pdf_as_having_no_text(tmp_path: Path) -> None:
    with pytest.raises(NoExtractableText) as caught:
        load(tmp_path, "scan.pdf", scanned_pdf_bytes(pages=3))
    assert str(caught.value) == "scan.pdf: no extractable text; scanned? (3 pages, no text layer)"


def test_it_refuses_an_encrypted_pdf() -> None:
    with pytest.raises(CorruptFile) as caught:
        load_bytes(encrypted_pdf_bytes(user_password="hunter2"), "locked.pdf")
    assert str(caught.value) == "locked.pdf: encrypted PDF; remove the password and upload again"


def test_it_opens_a_pdf_encrypted_with_an_empty_user_password() -> None:
    doc = load_bytes(encrypted_pdf_bytes(user_password=""), "no-edit.pdf")
    assert doc.sections[0].text == "Top secret plans"


@pytest.mark.parametrize("data", [b"%PDF-1.4\nthis is not a pdf body", b"%PDF-", pdf_bytes(["Half a file"])[:300]])
def test_it_reports_corrupt_pdf_bytes(data: bytes) -> None:
    with pytest.raises(CorruptFile, match=r"^broken\.pdf: corrupt PDF: .+"):
        load_bytes(data, "broken.pdf")


def test_it_keeps_pypdf_quiet_about_repairs(capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(CorruptFile):
        load_bytes(b"%PDF-1.4\ngarbage", "broken.pdf")
    assert capsys.readouterr() == ("", "")
    assert not [r for r in caplog.records if r.name.startswith("pypdf")]


# --- docx ---------------------------------------------------------------------------------------------


def test_it_splits_a_word_document_at_its_headings(tmp_path: Path) -> None:
    doc = load(tmp_path, "handbook.docx", docx_bytes(handbook))
    assert (doc.title, doc.kind) == ("Employee Handbook", "docx")
    assert [(s.location, s.text) for s in doc.sections] == [
        ("", "Welcome to the company."),
        ("§ Leave", "Everyone gets 25 days of leave."),
        ("§ Leave › Sick leave", "Call your manager before 9am.\n\n- Rest\n- Drink water"),
        ("§ Contacts", "Team | Person | Phone\nHR | Ana | 555-0101\nIT | Bo (any time)"),
    ]


def test_it_prefers_the_core_properties_title_of_a_word_document() -> None:
    doc = load_bytes(docx_bytes(handbook, title="HR Handbook 2024"), "hb.docx")
    assert doc.title == "HR Handbook 2024"
    assert doc.sections[0].location == "§ Employee Handbook"  # no longer named by the title, so kept


def test_it_titles_a_word_document_without_headings_by_its_stem() -> None:
    doc = load_bytes(docx_bytes(lambda d: d.add_paragraph("Just a memo.")), "team_memo.docx")
    assert (doc.title, locations(doc)) == ("team memo", [""])


def test_it_reports_a_truncated_word_document_as_corrupt() -> None:
    with pytest.raises(CorruptFile, match=r"^hb\.docx: corrupt Word document: "):
        load_bytes(docx_bytes(handbook)[:2000], "hb.docx")


def test_it_reports_a_word_document_with_missing_parts_as_corrupt() -> None:
    with pytest.raises(CorruptFile, match="corrupt Word document"):
        load_bytes(zip_bytes({"word/document.xml": "<not really/>"}), "parts.docx")


def test_it_reports_a_word_document_with_no_text() -> None:
    with pytest.raises(NoExtractableText, match="no extractable text"):
        load_bytes(docx_bytes(lambda d: None), "blank.docx")


# --- html ---------------------------------------------------------------------------------------------

PAGE = """<!DOCTYPE html>
<html><head><title>Widget Docs</title><style>p { color: red }</style></head>
<body>
  <nav><a href="/">Home</a> | <a href="/docs">Docs</a></nav>
  <script>var tracking = "secret";</script>
  <h1>Widget Docs</h1>
  <p>Widgets   make
     things work.</p>
  <h2>Install</h2>
  <ul><li>Download it</li><li>Run <code>widget --install</code></li></ul>
  <h3>Linux</h3>
  <p>Use the <b>tarball</b>.<br>Or the package.</p>
  <table><tr><th>OS</th><th>Command</th></tr><tr><td>Debian</td><td>apt install widget</td></tr></table>
  <noscript>Enable JavaScript</noscript><template><p>hidden</p></template>
  <footer>© Widget Corp</footer>
</body></html>"""


def test_it_keeps_only_the_visible_text_of_a_web_page(tmp_path: Path) -> None:
    doc = load(tmp_path, "widget.html", PAGE)
    assert (doc.title, doc.kind) == ("Widget Docs", "html")
    assert [(s.location, s.text) for s in doc.sections] == [
        ("", "Widgets make things work."),
        ("§ Install", "- Download it\n- Run `widget --install`"),
        ("§ Install › Linux", "Use the tarball.\nOr the package.\n\nOS | Command\nDebian | apt install widget"),
    ]
    for hidden in ("tracking", "color", "Home", "Enable JavaScript", "hidden", "Widget Corp", "<"):
        assert hidden not in doc.text


def test_it_titles_a_web_page_by_its_first_h1_without_a_title_tag() -> None:
    doc = load_bytes(b"<html><body><h1>Release 2.0</h1><p>New stuff.</p><h1>Release 1.0</h1><p>Old.</p></body></html>", "r.html")
    assert doc.title == "Release 2.0"
    assert locations(doc) == ["§ Release 2.0", "§ Release 1.0"]  # two h1s: neither names the whole page


def test_it_reads_a_web_page_nested_deeper_than_pythons_stack() -> None:
    page = b"<html><body>" + b"<div>" * 3000 + b"deep text" + b"</div>" * 3000 + b"</body></html>"
    assert load_bytes(page, "generated.html").text == "deep text"


def test_it_reports_a_web_page_with_nothing_visible() -> None:
    with pytest.raises(NoExtractableText):
        load_bytes(b"<html><head><script>x()</script></head><body><nav>menu</nav></body></html>", "app.html")


# --- markdown -----------------------------------------------------------------------------------------

GUIDE = """---
title: Front matter title
tags: [a, b]
---
# Getting Started

Welcome  aboard.

## Install

Pick your platform.

### Linux

```sh
# this is a comment, not a heading
apt install widget
```

~~~
## still code
~~~

### macOS
Use brew.

Configuration
=============

Edit the file.

Advanced
--------

    indented code keeps its indent
"""


def test_it_splits_markdown_at_headings_outside_code_fences(tmp_path: Path) -> None:
    doc = load(tmp_path, "getting-started.md", GUIDE)
    assert (doc.title, doc.kind) == ("Front matter title", "markdown")  # front matter names the page first
    assert locations(doc) == [
        "§ Getting Started",
        "§ Getting Started › Install",
        "§ Getting Started › Install › Linux",
        "§ Getting Started › Install › macOS",
        "§ Configuration",  # a setext level-1 heading, so "Getting Started" is not the only top heading
        "§ Configuration › Advanced",
    ]
    assert doc.sections[2].text == "```sh\n# this is a comment, not a heading\napt install widget\n```\n\n```\n## still code\n```"
    assert doc.sections[5].text == "```\nindented code keeps its indent\n```"
    assert "title:" not in doc.text and "Getting Started" not in doc.text


def test_it_leaves_a_lone_title_heading_out_of_markdown_locations() -> None:
    doc = load_bytes(b"# Guide\n\nIntro.\n\n## Install\n\nSteps.\n\n### Linux  ###\n\napt.", "guide.md")
    assert doc.title == "Guide"
    assert [(s.location, s.text) for s in doc.sections] == [("", "Intro."), ("§ Install", "Steps."), ("§ Install › Linux", "apt.")]


def test_it_titles_markdown_without_an_h1_from_front_matter_then_the_stem() -> None:
    assert load_bytes(b"---\ntitle: 'Ops Runbook'\n---\n## Alerts\nPage someone.\n## Backups\nNightly.", "x.md").title == "Ops Runbook"
    assert load_bytes(b"## Alerts\nPage someone.\n## Backups\nNightly.", "ops_runbook.md").title == "ops runbook"


def test_it_does_not_take_a_hashtag_or_a_list_for_a_heading() -> None:
    doc = load_bytes(b"#hashtag is text\n\n- item\n---\n\nmore", "notes.md")
    assert locations(doc) == [""]


def test_it_keeps_the_headings_of_a_document_that_is_only_headings() -> None:
    doc = load_bytes(b"# Roadmap\n\n## Q1\n\n## Q2\n", "roadmap.md")
    assert (doc.title, [(s.location, s.text) for s in doc.sections]) == ("Roadmap", [("", "Roadmap\nQ1\nQ2")])


# --- rst ----------------------------------------------------------------------------------------------

RST = """==========
User Guide
==========

Intro text.

Setup
-----

Run setup.

Details
~~~~~~~

Fine print.

Usage
-----

Use it::

    ===
    not a heading
"""


def test_it_splits_restructured_text_by_adornment_order(tmp_path: Path) -> None:
    doc = load(tmp_path, "guide.rst", RST)
    assert (doc.title, doc.kind) == ("User Guide", "rst")
    assert [(s.location, s.text) for s in doc.sections] == [
        ("", "Intro text."),
        ("§ Setup", "Run setup."),
        ("§ Setup › Details", "Fine print."),
        ("§ Usage", "Use it:\n\n```\n===\nnot a heading\n```"),
    ]


def test_it_ignores_an_underline_shorter_than_its_title() -> None:
    doc = load_bytes(b"A long title\n===\n\nBody.", "short.rst")
    assert (doc.title, locations(doc)) == ("short", [""])


# --- plain text ---------------------------------------------------------------------------------------


def test_it_splits_text_with_form_feeds_into_pages() -> None:
    doc = load_bytes(b"First page.\n\x0cSecond   page.\n\x0c\n\x0cFourth page.\x0c", "dump.txt")
    assert [(s.location, s.text) for s in doc.sections] == [("page 1", "First page."), ("page 2", "Second page."), ("page 4", "Fourth page.")]


def test_it_keeps_indentation_but_drops_control_characters_in_text() -> None:
    doc = load_bytes(b"def f():\r\n    return 1\x07\r\n", "snippet.txt")
    assert doc.text == "def f():\n    return 1"


# --- csv ----------------------------------------------------------------------------------------------


def test_it_renders_csv_rows_as_header_value_pairs(tmp_path: Path) -> None:
    doc = load(tmp_path, "staff.csv", 'Name,Role,Notes\nAna,Engineer,"Likes ""tea"", and cake"\n,,\nBo,,On leave\n')
    assert (doc.title, doc.kind) == ("staff", "csv")
    assert [(s.location, s.text) for s in doc.sections] == [
        ("rows 2–4", 'Name: Ana; Role: Engineer; Notes: Likes "tea", and cake\nName: Bo; Notes: On leave'),
    ]


def test_it_groups_long_csv_files_into_sections_of_rows() -> None:
    rows = "\n".join(f"{n};{'x' * 90}" for n in range(1, 41))
    doc = load_bytes(f"id;payload\n{rows}\n".encode(), "big.csv")
    assert locations(doc) == ["rows 2–14", "rows 15–27", "rows 28–40", "row 41"]
    assert all(len(s.text) <= 1500 for s in doc.sections)
    assert sum(s.text.count("\n") + 1 for s in doc.sections) == 40


def test_it_locates_a_single_csv_row_as_row_n() -> None:
    doc = load_bytes(b"a\tb\n1\t2\n", "one.tsv")
    assert [(s.location, s.text) for s in doc.sections] == [("row 2", "a: 1; b: 2")]


def test_it_reports_malformed_csv() -> None:
    with pytest.raises(CorruptFile, match=r"^bad\.csv: malformed CSV at line 2: "):
        load_bytes(b'a,b\n1,"unterminated\n', "bad.csv")


def test_it_reports_a_csv_with_only_a_header() -> None:
    with pytest.raises(EmptyFile, match="only a header row"):
        load_bytes(b"a,b,c\n", "header.csv")


# --- json ---------------------------------------------------------------------------------------------


def test_it_flattens_json_into_sections_per_top_level_key(tmp_path: Path) -> None:
    data = {"name": "Lorebot config", "version": 3, "settings": {"chunk_tokens": 200, "hybrid": True, "unset": None},
            "items": [{"name": "a"}, {"name": "b", "tags": ["x", "y"]}], "odd key": {"a b": "c"}}
    doc = load(tmp_path, "config.json", json.dumps(data))
    assert (doc.title, doc.kind) == ("Lorebot config", "json")
    assert [(s.location, s.text) for s in doc.sections] == [
        ("$", "name: Lorebot config\nversion: 3"),
        ("$.settings", "settings.chunk_tokens: 200\nsettings.hybrid: true"),
        ("$.items", "items[0].name: a\nitems[1].name: b\nitems[1].tags[0]: x\nitems[1].tags[1]: y"),
        ('$["odd key"]', '["odd key"]["a b"]: c'),
    ]


def test_it_gives_each_element_of_a_top_level_json_array_its_own_section() -> None:
    doc = load_bytes(b'[{"q": "How?", "a": "Like so."}, {"q": "Why?"}]', "faq.json")
    assert [(s.location, s.text) for s in doc.sections] == [("$[0]", "[0].q: How?\n[0].a: Like so."), ("$[1]", "[1].q: Why?")]


def test_it_splits_a_large_json_section() -> None:
    doc = load_bytes(json.dumps({"log": [f"event {n} " + "z" * 80 for n in range(50)]}).encode(), "log.json")
    assert len(doc.sections) > 2
    assert {s.location for s in doc.sections} == {"$.log"}
    assert all(len(s.text) <= 1500 for s in doc.sections)


def test_it_reports_invalid_json_in_a_json_file() -> None:
    with pytest.raises(CorruptFile, match=r"^broken\.json: invalid JSON: Expecting"):
        load_bytes(b'{"a": 1,, }', "broken.json")


def test_it_reports_json_with_no_values() -> None:
    with pytest.raises(NoExtractableText):
        load_bytes(b'{"a": {}, "b": [], "c": null}', "empty.json")


# --- titles -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "title"),
    [("getting-started.md", "getting started"), ("Q3_Report--final.txt", "Q3 Report final"), ("dir/.env", ".env"), ("README", "README")],
)
def test_it_falls_back_to_the_file_stem_for_a_title(name: str, title: str) -> None:
    assert load_bytes(b"some text", name).title == title


def test_it_never_returns_an_empty_section(tmp_path: Path) -> None:
    docs = [
        load(tmp_path, "a.md", GUIDE),
        load(tmp_path, "a.html", PAGE),
        load(tmp_path, "a.rst", RST),
        load(tmp_path, "a.docx", docx_bytes(handbook)),
        load(tmp_path, "a.pdf", pdf_bytes(["one", " ", "three"])),
    ]
    for doc in docs:
        assert_every_section_has_text(doc)

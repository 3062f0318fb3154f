"""Markdown, parsed by markdown-it-py (CommonMark, tables, front matter, admonitions) into the chunk text format."""

from __future__ import annotations

import functools
import re
import tomllib
from collections.abc import Sequence

import yaml
from markdown_it import MarkdownIt
from markdown_it.token import Token
from mdit_py_plugins.admon import admon_plugin
from mdit_py_plugins.colon_fence import colon_fence_plugin
from mdit_py_plugins.container import container_plugin
from mdit_py_plugins.deflist import deflist_plugin
from mdit_py_plugins.front_matter import front_matter_plugin
from mdit_py_plugins.myst_blocks import myst_block_plugin
from mdit_py_plugins.myst_role import myst_role_plugin

from ragcore.loaders.outline import (
    MAX_INDENT_LEVELS,
    Outline,
    admonition_header,
    code_span,
    inline,
    list_marker,
)
from ragcore.loaders.plaintext import nesting_depth, read_as_plain_text
from ragcore.loaders.webpage import add_html_fragment, image_alt_text
from ragcore.types import Section

# markdown-it stops parsing, silently dropping the rest of the file, once blocks nest deeper than
# maxNesting (20 in CommonMark mode). Python's own stack is the real limit (lists or quotes nested
# ~500 deep); a file that runs into it is read as plain text rather than lose its text or fail.
_MAX_NESTING = 10_000
MAX_MARKDOWN_NESTING = 300  # levels: quotes ~450 deep exhaust the stack
# Docusaurus-style ":::note Title" blocks; MkDocs' "!!! note" comes from the admon plugin.
_CONTAINERS = ("note", "tip", "info", "important", "warning", "caution", "danger")


# MyST (Sphinx's Markdown: Jupyter Book, Sphinx `_sources/*.md.txt`): roles ({func}`name`), directives in
# ```{name} and :::{name} fences, definition lists, (label)= targets and % comments. Read with mdit-py-plugins'
# MyST plugins, only for a document that uses MyST syntax: "% 10 of users" starts a line of plain Markdown too.
_MYST = re.compile(r"\{[a-z][\w:-]*\}`|^[ \t]*(?:```+|:::+)[ \t]*\{[a-z]", re.M)
_LINK_ROLES = frozenset({"doc", "ref", "numref", "term", "download", "eq", "external"})  # their text is prose
_DROPPED_DIRECTIVES = frozenset({"toctree", "include", "literalinclude", "image", "contents", "mermaid", "raw",
                                 "only", "testsetup", "testcleanup", "autofunction", "autoclass", "automodule"})
_CODE_DIRECTIVES = frozenset({"code", "code-block", "sourcecode", "code-cell", "doctest"})
_DIRECTIVE_OPTION = re.compile(r"^:[\w-]+:.*$")
_ROLE_TARGET = re.compile(r"^(.*?)\s*<[^<>]+>$", re.S)  # "processors <processors>": the text before the target


@functools.cache
def _parser(myst: bool = False) -> MarkdownIt:
    md = MarkdownIt("commonmark", {"maxNesting": _MAX_NESTING}).enable(["table", "strikethrough"])
    md.use(front_matter_plugin).use(admon_plugin)
    if myst:
        md.use(myst_role_plugin).use(myst_block_plugin).use(colon_fence_plugin).use(deflist_plugin)
    for name in _CONTAINERS:
        md.use(container_plugin, name=name)
    return md


def parse_markdown(text: str, name: str) -> tuple[str, tuple[Section, ...]]:
    """Sections cut at headings; front matter gives the title and is never content."""
    toml_title, text = _split_toml_front_matter(text)
    if nesting_depth(text) > MAX_MARKDOWN_NESTING:  # markdown-it recurses per quote level (see nesting_depth)
        return read_as_plain_text(text, name, "markdown")
    myst = bool(_MYST.search(text))
    try:
        tokens = _parser(myst).parse(text)
    except RecursionError:  # deep nesting of another kind
        return read_as_plain_text(text, name, "markdown")
    outline = Outline(keep_indent=True)
    front_title = _MarkdownWriter(outline, myst=myst).write(tokens)
    title = toml_title or front_title or outline.first_h1 or outline.lead
    return title, outline.finish(title)


class _MarkdownWriter:
    """Walks markdown-it's flat token stream (no recursion, however deep the nesting) into an Outline."""

    def __init__(self, outline: Outline, *, myst: bool = False) -> None:
        self.outline = outline
        self.myst = myst
        self.term = False  # the next paragraph is a definition list's term: "logger:" and its definition
        self.lists: list[list[int]] = []  # per open list: [next number], or [] for a bullet list
        self.item_depth = 0  # the list depth of the item whose blocks are being written, 0 outside lists
        self.row: list[str] | None = None
        self.front_title = ""

    def write(self, tokens: Sequence[Token]) -> str:
        """Writes every block; returns the front matter's title, if it has one."""
        skip_inline = False
        pending_heading = 0
        for token in tokens:
            kind = token.type
            if kind == "inline":
                if pending_heading:
                    heading = inline(render_inline(token.children or []))
                    if heading:
                        self.outline.heading(pending_heading, heading)
                    pending_heading = 0
                elif skip_inline:
                    skip_inline = False
                elif self.row is not None:
                    self.row.append(inline(render_inline(token.children or [])))
                elif self.term:
                    self.term = False
                    self._paragraph(render_inline(token.children or []).rstrip(":") + ":")
                else:
                    self._paragraph(render_inline(token.children or []))
            elif kind == "heading_open":
                pending_heading = int(token.tag[1:])
            elif kind == "front_matter":
                self.front_title = _front_matter_title(token.content)
            elif kind == "fence" and self.myst and token.info.strip().startswith("{"):
                self._directive(token.info, token.content, fenced_code=True)
            elif kind == "colon_fence":
                self._directive(token.info, token.content, fenced_code=False)
            elif kind in ("fence", "code_block"):
                self.outline.code(token.content, token.info if kind == "fence" else "")
            elif kind == "html_block":
                self.outline.gap(2)
                add_html_fragment(token.content, self.outline)
                self.outline.end_block(2)
            elif kind in ("bullet_list_open", "ordered_list_open", "dl_open"):
                self.lists.append([int(token.attrs.get("start") or 1)] if kind == "ordered_list_open" else [])
            elif kind == "dt_open":  # a definition list reads as a list of "term: definition" items
                self._start_item()
                self.term = True
            elif kind in ("bullet_list_close", "ordered_list_close", "dl_close"):
                self.lists.pop()
                self.item_depth = len(self.lists)  # back in the item that held this list, if any
                self.outline.end_block(1 if self.lists else 2)
            elif kind == "list_item_open":
                self._start_item()
            elif kind == "list_item_close":
                self.item_depth = len(self.lists) - 1
            elif kind == "admonition_title_open":
                skip_inline = True  # the title paragraph: the admonition's header line already holds it
            elif kind == "tr_open":
                self.row = []
            elif kind == "tr_close":
                self.outline.block(" | ".join(cell for cell in self.row or [] if cell), 1)
                self.row = None
            elif kind in ("table_open", "table_close", "blockquote_open", "blockquote_close", "hr"):
                self.outline.end_block(2)
            elif kind == "admonition_open":
                self.outline.label(admonition_header(str(token.meta.get("tag", "")), token.content))
            elif kind.startswith("container_") and kind.endswith("_open"):
                kind_name, _, title = token.info.strip().partition(" ")
                self.outline.label(admonition_header(kind_name, title))
        return self.front_title

    def _directive(self, info: str, content: str, *, fenced_code: bool) -> None:
        """A MyST directive: an admonition or any other prose directive is its label and its content read as
        Markdown; a code directive is a code block; a table of contents, an image or an include is nothing."""
        name, _, argument = info.strip().partition("}")
        name = name.lstrip("{").strip().casefold()
        argument = argument.strip()
        lines = content.split("\n")
        while lines and _DIRECTIVE_OPTION.match(lines[0].strip()):
            lines.pop(0)  # ":maxdepth: 2", ":align: center"
        body = "\n".join(lines)
        if name in _DROPPED_DIRECTIVES or (not name and not fenced_code):
            return
        if name in _CODE_DIRECTIVES or name == "eval-rst" or (fenced_code and not name):
            self.outline.code(body, "rst" if name == "eval-rst" else argument.split(" ")[0])
            return
        self.outline.gap(2)
        header = admonition_header(name, argument)
        if header:
            self.outline.label(header)
        self.write(_parser(True).parse(body))
        self.outline.end_block(2)

    def _start_item(self) -> None:
        numbers = self.lists[-1]
        marker = "-" if not numbers else f"{numbers[0]}."
        if numbers:
            numbers[0] += 1
        self.item_depth = len(self.lists)
        self.outline.gap(1, list_marker(self.item_depth, marker))

    def _paragraph(self, text: str) -> None:
        text = "\n".join(line for line in map(inline, text.split("\n")) if line)  # hard breaks stay, nothing else
        if self.item_depth:
            # the item's first block takes its marker; later ones continue under it
            indent = "  " * min(self.item_depth, MAX_INDENT_LEVELS)
            self.outline.block(text, 1, "" if self.outline.has_prefix else indent)
        else:
            self.outline.block(text, 2)


def render_inline(children: Sequence[Token]) -> str:
    """A paragraph's inline tokens as text: code in backticks, links as their text, images as their alt text."""
    parts: list[str] = []
    for child in children:
        kind = child.type
        if kind == "text":
            parts.append(child.content)
        elif kind == "softbreak":
            parts.append(" ")
        elif kind == "hardbreak":
            parts.append("\n")
        elif kind == "code_inline":
            parts.append(code_span(child.content))
        elif kind == "myst_role":
            parts.append(_role_text(str(child.meta.get("name", "")), child.content))
        elif kind == "image":
            parts.append(render_inline(child.children or []))
        elif kind == "html_inline":
            parts.append(_inline_html(child.content))
    return "".join(parts)


def _role_text(name: str, content: str) -> str:
    """A MyST role as Sphinx shows it: a link role's text as prose ({doc}`processors <processors>`: "processors"),
    a name as a code span ({func}`~structlog.get_logger`: `structlog.get_logger`)."""
    titled = _ROLE_TARGET.match(content)
    text = titled.group(1) if titled and titled.group(1) else content
    if name in _LINK_ROLES:
        return text
    return code_span(text.lstrip("~!"))


def _inline_html(tag: str) -> str:
    """An inline tag stands for nothing but its alt text (<img>), a line break (<br>) or a code span's ticks."""
    lowered = tag.lower()
    if lowered.startswith("<img"):
        return image_alt_text(tag)
    if lowered.startswith("<br"):
        return "\n"
    if lowered in ("<code>", "</code>"):
        return "`"
    return ""


def _split_toml_front_matter(text: str) -> tuple[str, str]:
    """Hugo's "+++" TOML front matter, which markdown-it's plugin (YAML "---" only) does not know: (title, the rest)."""
    if not text.startswith("+++\n"):
        return "", text
    end = text.find("\n+++", 3)
    if end < 0 or text[end + 4 : end + 5] not in ("", "\n"):
        return "", text
    try:
        title = tomllib.loads(text[4:end]).get("title")
    except tomllib.TOMLDecodeError:
        title = None
    return (inline(title) if isinstance(title, str) else ""), text[end + 5 :]


def _front_matter_title(front: str) -> str:
    """The `title:` of YAML front matter; front matter that is not YAML has none."""
    try:
        meta = yaml.safe_load(front)
    except yaml.YAMLError:
        return ""
    title = meta.get("title") if isinstance(meta, dict) else None
    return inline(str(title)) if isinstance(title, (str, int, float)) else ""

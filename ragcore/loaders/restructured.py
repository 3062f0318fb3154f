"""reStructuredText, parsed by docutils into the chunk text format; Sphinx's everyday roles and directives are understood."""

from __future__ import annotations

import re
from typing import Any, ClassVar

from docutils import nodes, utils
from docutils.core import publish_doctree
from docutils.parsers.rst import Directive, directives, roles

from ragcore.loaders.outline import (
    MAX_INDENT_LEVELS,
    Outline,
    admonition_header,
    code_span,
    inline,
    list_marker,
)
from ragcore.loaders.plaintext import nesting_depth, read_as_plain_text
from ragcore.types import Section

_SETTINGS = {
    "file_insertion_enabled": False,  # `.. include:: /etc/passwd` would put the server's files in the index
    "raw_enabled": False,
    "_disable_config": True,  # never read a docutils.conf from the working directory
    "report_level": 5,  # problems become system_message nodes (skipped), never stderr or exceptions
    "halt_level": 5,
    "warning_stream": False,
    "input_encoding": "unicode",
    "syntax_highlight": "none",  # plain code text, no pygments pass
    "line_length_limit": 1_000_000,  # docutils drops longer lines; generated files can have them
}
_SKIPPED = (
    nodes.comment, nodes.target, nodes.substitution_definition, nodes.system_message, nodes.raw,
    nodes.pending, nodes.docinfo, nodes.decoration, nodes.meta, nodes.title, nodes.subtitle, nodes.label,
)  # fmt: skip
_ROLE = re.compile(r":[\w:.+-]+:`([^`]*)`|`([^`]*)`:[\w:.+-]+:")

# Sphinx roles docutils does not know. Without them `:func:`connect`` becomes an error node.
_CODE_ROLES = """func meth class mod attr data exc obj const envvar option program command file samp makevar
    py:func py:meth py:class py:mod py:attr py:data py:exc py:obj py:const c:func c:macro c:type c:data c:member
    cpp:func cpp:class cpp:member js:func js:class""".split()
_TEXT_ROLES = "ref doc term keyword guilabel menuselection download numref dfn abbr kbd".split()
_VERSION_NOTES = {
    "versionadded": "New in version",
    "versionchanged": "Changed in version",
    "versionremoved": "Removed in version",
    "deprecated": "Deprecated since version",
}
_IGNORED = """toctree automodule autoclass autofunction automethod autoattribute autodata autoexception autosummary
    currentmodule module index highlight literalinclude tabularcolumns sectionauthor moduleauthor codeauthor
    py:module py:currentmodule""".split()
_CONTAINERS = "only glossary hlist tab tabs tab-set tab-item".split()
_OBJECTS = """function class method attribute data exception decorator describe object
    py:function py:class py:method py:attribute py:data py:exception py:decorator""".split()


def parse_rst(text: str, name: str) -> tuple[str, tuple[Section, ...]]:
    """Sections cut at docutils' sections; the document title (a lone top heading) is the title."""
    # docutils nests a parser per indentation level, about six frames each (see nesting_depth)
    if nesting_depth(text) > MAX_RST_NESTING:
        return read_as_plain_text(text, name, "rst")
    try:
        document = publish_doctree(text, settings_overrides=_SETTINGS)
    except RecursionError:  # deep nesting of another kind than indentation
        return read_as_plain_text(text, name, "rst")
    outline = Outline(keep_indent=True)
    _walk(document, outline)
    title = inline(str(document.get("title", ""))) or outline.lead
    sections = outline.finish(title)
    return title, sections or ((Section(title),) if title else ())


MAX_RST_NESTING = 100  # levels: ~165 exhaust the stack


def _walk(root: nodes.Node, outline: Outline) -> None:
    # a loop over an explicit stack, not recursion, as for HTML: nesting depth costs no Python stack
    todo: list[nodes.Node | int] = list(reversed(root.children))
    while todo:
        node = todo.pop()
        if isinstance(node, int):
            outline.end_block(node)
        else:
            todo.extend(reversed(_visit(node, outline)))


def _visit(node: nodes.Node, outline: Outline) -> list[nodes.Node | int]:
    """Writes what `node` itself stands for; returns what is still to walk inside it (and its closing gap)."""
    if isinstance(node, _SKIPPED) or (isinstance(node, nodes.topic) and "contents" in node["classes"]):
        return []
    if isinstance(node, nodes.section):
        title = next((child for child in node.children if isinstance(child, nodes.title)), None)
        depth = sum(1 for parent in _parents(node) if isinstance(parent, nodes.section)) + 1
        outline.heading(depth, inline(_inline(title)) if title else "")
        return list(node.children)
    if isinstance(node, nodes.paragraph):
        _paragraph(node, outline)
    elif isinstance(node, nodes.literal_block):
        held: list[object] = list(node.get("classes", []))
        classes = [str(c) for c in held if c != "code"]
        outline.code(node.astext(), str(node.get("language") or (classes[0] if classes else "")))
    elif isinstance(node, nodes.doctest_block):
        outline.code(node.astext(), "pycon")
    elif isinstance(node, nodes.math_block):
        outline.code(node.astext(), "math")
    elif isinstance(node, (nodes.bullet_list, nodes.enumerated_list)):
        nested = any(isinstance(parent, nodes.list_item) for parent in _parents(node))
        return [*node.children, 1 if nested else 2]
    elif isinstance(node, nodes.list_item):
        outline.gap(1, _item_marker(node))
        return list(node.children)
    elif isinstance(node, nodes.Admonition):
        title = next((child for child in node.children if isinstance(child, nodes.title)), None)
        kind = "" if isinstance(node, nodes.admonition) else type(node).__name__  # nodes.note, nodes.warning, …
        outline.label(admonition_header(kind, _inline(title) if title else ""))
        return [*node.children, 2]
    elif isinstance(node, (nodes.term, nodes.rubric)):
        outline.label(inline(_inline(node)))
    elif isinstance(node, (nodes.field, nodes.option_list_item)):
        _field(node, outline)
    elif isinstance(node, nodes.row):
        outline.block(" | ".join(inline(_inline(entry)) for entry in node.children), 1)
    elif isinstance(node, (nodes.line, nodes.attribution)):
        outline.block(inline(_inline(node)), 1)
    elif isinstance(node, nodes.image):
        outline.block(inline(str(node.get("alt", ""))), 2)
    elif isinstance(node, nodes.transition):
        outline.end_block(2)
    elif isinstance(node, nodes.TextElement):
        outline.block(inline(_inline(node)), 2)
    elif isinstance(node, nodes.Element):
        return [*node.children, 2] if isinstance(node, nodes.Body) else list(node.children)
    return []


def _paragraph(node: nodes.paragraph, outline: Outline) -> None:
    text = inline(_inline(node))
    parent = node.parent
    if isinstance(parent, nodes.list_item) and parent.children[0] is not node:
        # a list item's later paragraphs continue under its first line
        depth = sum(1 for p in _parents(node) if isinstance(p, (nodes.bullet_list, nodes.enumerated_list)))
        outline.block(text, 1, "  " * min(depth, MAX_INDENT_LEVELS))
    elif isinstance(parent, nodes.list_item):
        outline.block(text, 1)
    else:
        outline.block(text, 2)


def _field(node: nodes.Element, outline: Outline) -> None:
    """ ":param timeout: seconds" → "param timeout: seconds"; an option list's "-v: verbose" alike."""
    name, body = node.children[0], node.children[-1]
    label = inline(_inline(name))
    paragraphs = body.children if isinstance(body, nodes.Element) else []
    if len(paragraphs) == 1 and isinstance(paragraphs[0], nodes.paragraph):
        outline.block(f"{label}: {inline(_inline(paragraphs[0]))}", 1)
    else:
        outline.label(f"{label}:")
        _walk(body, outline)


def _item_marker(item: nodes.list_item) -> str:
    lists = [p for p in _parents(item) if isinstance(p, (nodes.bullet_list, nodes.enumerated_list))]
    owner = lists[0] if lists else None
    if not isinstance(owner, nodes.enumerated_list):
        return list_marker(max(1, len(lists)), "-")
    number = int(owner.get("start", 1)) + owner.children.index(item)
    return list_marker(len(lists), f"{number}.")


def _parents(node: nodes.Node) -> list[nodes.Element]:
    out: list[nodes.Element] = []
    parent = node.parent
    while parent is not None:
        out.append(parent)
        parent = parent.parent
    return out


def _inline(node: nodes.Node | None) -> str:
    """A text element's content: literals in backticks, references as their text, images as their alt text."""
    if node is None:
        return ""
    if isinstance(node, nodes.Text):
        return str(node)
    if isinstance(node, nodes.literal):
        return code_span(node.astext())
    if isinstance(node, nodes.image):
        return str(node.get("alt", ""))
    if isinstance(node, (nodes.footnote_reference, nodes.citation_reference, nodes.system_message, nodes.raw)):
        return ""
    if isinstance(node, nodes.problematic):  # a role nobody registered: its text without the markup
        return _ROLE.sub(lambda m: m.group(1) if m.group(1) is not None else m.group(2), node.astext())
    return "".join(_inline(child) for child in node.children) if isinstance(node, nodes.Element) else ""


# --- Sphinx's roles and directives, as far as text is concerned ------------------------------------------


def _label(text: str) -> str:
    """What a Sphinx cross-reference shows: "Title <target>" → "Title", "~pkg.mod.func" → "func"."""
    text = utils.unescape(text).strip()
    if match := re.fullmatch(r"(.*?)\s*<([^<>]*)>", text, re.S):
        return match.group(1) or match.group(2)
    if text.startswith("~"):
        return text[1:].rsplit(".", 1)[-1]
    return text.lstrip("!")


def _code_role(name: str, rawtext: str, text: str, lineno: int, inliner: Any,
               options: dict[str, Any] | None = None, content: list[str] | None = None) -> tuple[list[nodes.Node], list[nodes.system_message]]:  # fmt: skip
    label = _label(text)
    return [nodes.literal(rawtext, label)], []


def _text_role(name: str, rawtext: str, text: str, lineno: int, inliner: Any,
               options: dict[str, Any] | None = None, content: list[str] | None = None) -> tuple[list[nodes.Node], list[nodes.system_message]]:  # fmt: skip
    return [nodes.Text(_label(text))], []


class _AnyOptions(dict[str, Any]):
    """Accepts every option a Sphinx directive may carry (:maxdepth:, :caption:, …) as plain text."""

    def __missing__(self, key: str) -> Any:
        return directives.unchanged


_ANY_OPTIONS = _AnyOptions(name=directives.unchanged)


class _Ignored(Directive):
    """Tables of contents and autodoc: nothing a reader could quote."""

    optional_arguments = 1
    final_argument_whitespace = True
    has_content = True
    option_spec: ClassVar[dict[str, Any]] = _ANY_OPTIONS

    def run(self) -> list[nodes.Node]:
        return []


class _Container(_Ignored):
    """`.. only::`, `.. glossary::`, tabs: their content, parsed as ordinary text."""

    def run(self) -> list[nodes.Node]:
        holder = nodes.container()
        self.state.nested_parse(self.content, self.content_offset, holder)
        return list(holder.children)


class _VersionNote(_Ignored):
    """`.. versionadded:: 2.1 The *spam* parameter.` → "New in version 2.1:" and the note."""

    required_arguments = 1
    optional_arguments = 0

    def run(self) -> list[nodes.Node]:
        version, *rest = self.arguments[0].split(None, 1)
        note = rest[0] if rest else ""
        header = f"{_VERSION_NOTES[self.name]} {version}"
        holder = nodes.admonition("", nodes.title(header, header))
        if note.strip():
            text, messages = self.state.inline_text(note.strip(), self.lineno)
            holder += nodes.paragraph(note, "", *text)
            holder += messages
        self.state.nested_parse(self.content, self.content_offset, holder)
        return [holder]


class _SeeAlso(_Ignored):
    def run(self) -> list[nodes.Node]:
        holder = nodes.admonition("", nodes.title("See also", "See also"))
        if self.arguments:
            text, messages = self.state.inline_text(self.arguments[0], self.lineno)
            holder += nodes.paragraph(self.arguments[0], "", *text)
            holder += messages
        self.state.nested_parse(self.content, self.content_offset, holder)
        return [holder]


class _Object(_Ignored):
    """`.. function:: connect(url, timeout=5)` → the signature in backticks, then its description."""

    def run(self) -> list[nodes.Node]:
        signature = " ".join(self.arguments[0].split()) if self.arguments else ""
        holder = nodes.container()
        if signature:
            holder += nodes.paragraph(signature, "", nodes.literal(signature, signature))
        self.state.nested_parse(self.content, self.content_offset, holder)
        return list(holder.children)


class _TestCode(_Ignored):
    """sphinx.ext.doctest's `.. testcode::` and `.. doctest::`: Python code blocks."""

    def run(self) -> list[nodes.Node]:
        code = "\n".join(self.content)
        return [nodes.literal_block(code, code, language="pycon" if self.name == "doctest" else "python")]


def _register() -> None:
    """docutils keeps roles and directives in process-wide tables; Lorebot is their only user here."""
    # types-docutils declares a role's nodes as `reference` only; any inline node is what docutils accepts
    for role in _CODE_ROLES:
        roles.register_local_role(role, _code_role)  # type: ignore[arg-type]
    for role in _TEXT_ROLES:
        roles.register_local_role(role, _text_role)  # type: ignore[arg-type]
    table: dict[str, type[Directive]] = dict.fromkeys(_IGNORED, _Ignored)
    table |= dict.fromkeys(_CONTAINERS, _Container)
    table |= dict.fromkeys(_VERSION_NOTES, _VersionNote)
    table |= dict.fromkeys(_OBJECTS, _Object)
    table |= {"seealso": _SeeAlso, "testcode": _TestCode, "doctest": _TestCode}
    for name, directive in table.items():
        directives.register_directive(name, directive)


_register()

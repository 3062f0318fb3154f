"""HTML: the visible text in the chunk text format, sections cut at h1–h4."""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass

from bs4 import BeautifulSoup
from bs4.element import NavigableString, PageElement, PreformattedString, Tag

from ragcore.loaders.outline import (
    Outline,
    admonition_header,
    code_span,
    inline,
    list_marker,
)
from ragcore.types import Section

_DROP = ["script", "style", "noscript", "template", "nav", "footer", "head", "svg", "iframe"]
# What documentation generators add around the content: Sphinx's ¶ links, sidebars and line numbers.
_DROP_SELECTED = "a.headerlink, [role=navigation], [role=search], div.sphinxsidebar, div.related, .linenos"
_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4}
_PARAGRAPHS = frozenset("p pre blockquote table ul ol dl figure section article main aside hr h5 h6".split())
_LINES = frozenset("div li dt dd tr header address details summary figcaption form fieldset".split())
_CODE_CLASS = re.compile(r"(?:language|lang|highlight)-([\w+#.-]+)")


def parse_html(text: str, name: str) -> tuple[str, tuple[Section, ...]]:
    """Visible text only, one line per block, sections cut at h1–h4."""
    soup = _soup(text)
    title = inline(soup.title.get_text()) if soup.title else ""
    _prepare(soup)
    h1 = soup.find("h1")
    outline = Outline(keep_indent=True)
    walk_html(soup.body or soup, outline)
    title = title or (inline(h1.get_text(" ")) if h1 else "") or outline.lead
    return title, outline.finish(title)


def add_html_fragment(html: str, outline: Outline) -> None:
    """Raw HTML met inside another format (a Markdown page's <p align="center">): its text, into `outline`."""
    soup = _soup(html)
    _prepare(soup)
    walk_html(soup.body or soup, outline)


def image_alt_text(tag: str) -> str:
    """The alt text of one <img ...> tag."""
    image = _soup(tag).find("img")
    return inline(str(image.get("alt") or "")) if isinstance(image, Tag) else ""


def _soup(text: str) -> BeautifulSoup:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # bs4 warns about XML-looking or URL-looking markup; we parse it anyway
        return BeautifulSoup(text, "lxml")


def _prepare(soup: BeautifulSoup) -> None:
    """Removes what is not content, and writes inline code as backticked text so every get_text() keeps it."""
    for tag in [*soup.find_all(_DROP), *soup.select(_DROP_SELECTED)]:
        tag.decompose()
    for code in soup.select("code:not(pre code)"):
        code.replace_with(code_span(code.get_text()))


def walk_html(root: Tag, outline: Outline) -> None:
    """Writes the blocks under `root` into `outline`, in the chunk text format."""
    # A loop over an explicit stack, not recursion: generated pages can nest deeper than Python's
    # stack. Each entry carries the list item marker it would take, so no node looks at its parents.
    todo: list[_Todo] = [_Todo(child) for child in reversed(root.contents)]
    while todo:
        entry = todo.pop()
        node = entry.node
        if node is None:
            outline.end_block(entry.gap)
        elif isinstance(node, Tag):
            todo.extend(reversed(_visit(node, entry, outline)))
        elif isinstance(node, NavigableString) and not isinstance(node, PreformattedString):
            outline.add(re.sub(r"\s+", " ", str(node)))  # comments and doctypes are PreformattedStrings


@dataclass(frozen=True)
class _Todo:
    """A node still to walk, how many lists hold it and the marker it takes as a list item; or (node None) a block's end."""

    node: PageElement | None
    lists: int = 0
    marker: str = "-"
    gap: int = 0


def _visit(node: Tag, entry: _Todo, outline: Outline) -> list[_Todo]:
    """Writes what `node` itself stands for; returns what is still to walk inside it (and its closing gap)."""
    name = node.name
    if name in _HEADINGS:
        outline.heading(_HEADINGS[name], inline(node.get_text(" ")))
    elif name == "br":
        outline.gap(1)
    elif name == "pre":
        outline.code(node.get_text(), _code_language(node))
    elif name == "img":
        outline.add(inline(str(node.get("alt") or "")))
    elif name == "tr":
        outline.block(_row(node), 1)
    elif "admonition-title" in _classes(node):
        outline.label(admonition_header(_admonition_kind(node), node.get_text(" ")))
    elif name in ("ul", "ol"):
        outline.gap(1 if entry.lists else 2)
        return [*_list_children(node, entry.lists + 1), _Todo(None, gap=1 if entry.lists else 2)]
    elif name in _PARAGRAPHS or name in _LINES:
        lines = 2 if name in _PARAGRAPHS else 1
        outline.gap(lines, list_marker(max(1, entry.lists), entry.marker) if name == "li" else "")
        return [*(_Todo(child, entry.lists) for child in node.contents), _Todo(None, gap=lines)]
    else:
        return [_Todo(child, entry.lists) for child in node.contents]
    return []


def _list_children(node: Tag, lists: int) -> list[_Todo]:
    """The children of a <ul> or <ol>, each <li> with its marker: "- ", or its number counted from start=."""
    start = str(node.get("start") or "1")
    number = int(start) if start.isdigit() else 1
    children = []
    for child in node.contents:
        marker = "-"
        if node.name == "ol" and isinstance(child, Tag) and child.name == "li":
            marker, number = f"{number}.", number + 1
        children.append(_Todo(child, lists, marker))
    return children


def _code_language(pre: Tag) -> str:
    """The language a code block is marked with: class="language-py" (Markdown, Prism), "highlight-py" (Sphinx), pandoc's "sourceCode py"."""
    code = pre.find("code", recursive=False)
    holders = [pre, code, pre.parent, pre.parent.parent if pre.parent else None]
    for holder in holders:
        if not isinstance(holder, Tag):
            continue
        for cls in _classes(holder):
            match = _CODE_CLASS.fullmatch(cls)
            if match and match.group(1) not in ("default", "none", "text"):
                return match.group(1)
    others = [cls for cls in _classes(pre) if cls != "sourceCode"]
    return others[0] if "sourceCode" in _classes(pre) and others else ""


def _admonition_kind(title: Tag) -> str:
    """The type of the admonition a title belongs to: <div class="admonition warning">."""
    classes = _classes(title.parent) if isinstance(title.parent, Tag) else []
    return next((cls for cls in classes if cls != "admonition" and not cls.startswith("admonition-")), "")


def _classes(tag: Tag) -> list[str]:
    value: object = tag.get("class") or []
    return value.split() if isinstance(value, str) else [str(v) for v in value] if isinstance(value, list) else []


def _row(row: Tag) -> str:
    cells = (inline(cell.get_text(" ")) for cell in row.find_all(["td", "th"], recursive=False))
    return " | ".join(cell for cell in cells if cell)

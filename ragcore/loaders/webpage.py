"""HTML: the visible text in the chunk text format, sections cut at h1–h4."""

from __future__ import annotations

import re
import warnings

from bs4 import BeautifulSoup
from bs4.element import NavigableString, PageElement, PreformattedString, Tag

from ragcore.loaders.outline import Outline, admonition_header, code_span, inline, list_marker
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
    _drop_chrome(soup)
    h1 = soup.find("h1")
    outline = Outline(keep_indent=True)
    walk_html(soup.body or soup, outline)
    title = title or (inline(h1.get_text(" ")) if h1 else "") or outline.lead
    return title, outline.finish(title)


def add_html_fragment(html: str, outline: Outline) -> None:
    """Raw HTML met inside another format (a Markdown page's <p align="center">): its text, into `outline`."""
    soup = _soup(html)
    _drop_chrome(soup)
    walk_html(soup.body or soup, outline)


def image_alt_text(tag: str) -> str:
    """The alt text of one <img ...> tag."""
    image = _soup(tag).find("img")
    return inline(str(image.get("alt") or "")) if isinstance(image, Tag) else ""


def _soup(text: str) -> BeautifulSoup:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # bs4 warns about XML-looking or URL-looking markup; we parse it anyway
        return BeautifulSoup(text, "lxml")


def _drop_chrome(soup: BeautifulSoup) -> None:
    for tag in [*soup.find_all(_DROP), *soup.select(_DROP_SELECTED)]:
        tag.decompose()


def walk_html(root: Tag, outline: Outline) -> None:
    """Writes the blocks under `root` into `outline`, in the chunk text format."""
    # a loop over an explicit stack, not recursion: generated pages can nest deeper than Python's stack
    todo: list[PageElement | int] = list(reversed(root.contents))  # an int closes a block of that gap
    while todo:
        node = todo.pop()
        if isinstance(node, int):
            outline.end_block(node)
        elif isinstance(node, Tag):
            todo.extend(reversed(_visit(node, outline)))
        elif isinstance(node, NavigableString) and not isinstance(node, PreformattedString):
            outline.add(re.sub(r"\s+", " ", str(node)))  # comments and doctypes are PreformattedStrings


def _visit(node: Tag, outline: Outline) -> list[PageElement | int]:
    """Writes what `node` itself stands for; returns what is still to walk inside it (and its closing gap)."""
    name = node.name
    if name in _HEADINGS:
        outline.heading(_HEADINGS[name], inline(node.get_text(" ")))
    elif name == "br":
        outline.gap(1)
    elif name == "pre":
        outline.code(node.get_text(), _code_language(node))
    elif name == "code":
        outline.add(code_span(node.get_text()))
    elif name == "img":
        outline.add(inline(str(node.get("alt") or "")))
    elif name == "tr":
        outline.block(_row(node), 1)
    elif "admonition-title" in _classes(node):
        outline.label(admonition_header(_admonition_kind(node), node.get_text(" ")))
    elif name in _PARAGRAPHS or name in _LINES:
        nested_list = name in ("ul", "ol") and node.find_parent("li") is not None
        lines = 2 if name in _PARAGRAPHS and not nested_list else 1
        outline.gap(lines, _item_marker(node) if name == "li" else "")
        return [*node.contents, lines]
    else:
        return list(node.contents)
    return []


def _item_marker(item: Tag) -> str:
    """ "- " in a <ul>, "3. " in an <ol>, indented by how many lists hold the item."""
    lists = [parent for parent in item.parents if parent.name in ("ul", "ol")]
    if not lists or lists[0].name == "ul":
        return list_marker(max(1, len(lists)), "-")
    start = str(lists[0].get("start") or "1")
    number = (int(start) if start.isdigit() else 1) + len(item.find_previous_siblings("li"))
    return list_marker(len(lists), f"{number}.")


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
    value = tag.get("class") or []
    return value.split() if isinstance(value, str) else list(value)


def _row(row: Tag) -> str:
    cells = (inline(cell.get_text(" ")) for cell in row.find_all(["td", "th"], recursive=False))
    return " | ".join(cell for cell in cells if cell)

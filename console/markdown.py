"""Markdown as safe HTML, server-side: documents in the source viewer, answers on the console's pages.

markdown-it-py (CommonMark, tables) with raw HTML off: anything a document or a model wrote that
looks like a tag is shown as text, and links keep only markdown-it's safe schemes (no `javascript:`).
The web chat renders answers in the browser (console/static/chat/markdown.js) to the same rules.
"""

from __future__ import annotations

import re

from markdown_it import MarkdownIt

_MARKDOWN = MarkdownIt("commonmark", {"html": False}).enable("table")
_CITE = re.compile(r"\[(\d{1,3})\]")
# Code is left as written: "[0]" inside a code span or block is an index, not a citation.
_CODE = re.compile(r"(<pre\b.*?</pre>|<code\b.*?</code>)", re.S)


def render_markdown(text: str) -> str:
    """Safe HTML for Markdown (raw HTML is shown as text)."""
    return _MARKDOWN.render(text)


def render_answer(text: str, cite_prefix: str) -> str:
    """An answer's HTML, each "[n]" outside code a link to `#{cite_prefix}{n}` (its numbered source)."""
    parts = _CODE.split(render_markdown(text))
    for i in range(0, len(parts), 2):  # even parts are outside code
        parts[i] = _CITE.sub(lambda m: f'<a class="cite" href="#{cite_prefix}{m.group(1)}">[{m.group(1)}]</a>', parts[i])
    return "".join(parts)

"""Word (.docx): sections cut at Title and Heading paragraphs; tables become "cell | cell" lines."""

from __future__ import annotations

import io
import re

import docx
from docx.table import Table
from docx.text.paragraph import Paragraph

from ragcore.errors import CorruptFile
from ragcore.loaders.outline import Outline, inline
from ragcore.loaders.sniffing import reason
from ragcore.types import Section


def parse_docx(data: bytes, name: str) -> tuple[str, tuple[Section, ...]]:
    """Sections cut at Title and Heading paragraphs; tables become "cell | cell" lines."""
    try:
        doc = docx.Document(io.BytesIO(data))
    except Exception as exc:
        raise CorruptFile(name, f"corrupt Word document: {reason(exc)}") from exc
    outline = Outline()
    first_heading = ""
    for block in doc.iter_inner_content():
        if isinstance(block, Table):
            outline.gap(2)
            outline.add(_table(block))
            continue
        text, level = inline(block.text), _heading_level(block)
        if level is not None and text:
            first_heading = first_heading or (text if level <= 1 else "")
            outline.heading(level, text)
        elif text:
            lines = 1 if (block.style.name if block.style else "").startswith("List") else 2
            outline.gap(lines, "- " if lines == 1 else "")
            outline.add(text)
            outline.end_block(lines)
    title = inline(doc.core_properties.title or "") or first_heading or outline.lead
    return title, outline.finish(title)


def _heading_level(paragraph: Paragraph) -> int | None:
    """Title is level 0, "Heading N" is level N; other styles are body text."""
    style = paragraph.style.name if paragraph.style else ""
    if style == "Title":
        return 0
    if style.startswith("Heading"):
        digits = re.sub(r"\D", "", style)
        return int(digits) if digits else 1
    return None


def _table(table: Table) -> str:
    lines: list[str] = []
    for row in table.rows:
        cells: list[str] = []
        previous: object = None
        for cell in row.cells:
            # a merged cell is handed back once per grid column it spans, all sharing one <w:tc>
            if cell._tc is not previous:
                cells.append(inline(cell.text))
            previous = cell._tc
        lines.append(" | ".join(c for c in cells if c))
    return "\n".join(line for line in lines if line)

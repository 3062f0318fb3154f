"""CSV and TSV: each row as "Header: value; …", grouped into sections located by row numbers."""

from __future__ import annotations

import csv
import io

from ragcore.errors import CorruptFile, EmptyFile
from ragcore.loaders.outline import group, inline
from ragcore.loaders.sniffing import SNIFF_BYTES, extension
from ragcore.types import Section


def parse_csv(text: str, name: str) -> tuple[str, tuple[Section, ...]]:
    """Each row as "Header: value; …", grouped into sections located by spreadsheet row numbers."""
    delimiter = "\t" if extension(name) == ".tsv" else _sniff_delimiter(text)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    rows: list[tuple[int, str]] = []
    header: list[str] = []
    try:
        for number, row in enumerate(reader, 1):
            if number == 1:
                header = [inline(h) or f"column {n}" for n, h in enumerate(row, 1)]
            elif line := _row(header, row):
                rows.append((number, line))
    except csv.Error as exc:
        raise CorruptFile(name, f"malformed CSV at line {reader.line_num}: {exc}") from exc
    if not rows:
        raise EmptyFile(name, "only a header row, no data rows")
    return "", tuple(Section("\n".join(lines), _row_span(numbers[0], numbers[-1])) for numbers, lines in group(rows))


def _sniff_delimiter(text: str) -> str:
    sample = text[:SNIFF_BYTES].rsplit("\n", 1)[0] if len(text) > SNIFF_BYTES else text
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:  # a single column gives the sniffer nothing to go on
        return ","


def _row(header: list[str], row: list[str]) -> str:
    names = header + [f"column {n}" for n in range(len(header) + 1, len(row) + 1)]
    return "; ".join(f"{key}: {value}" for key, value in zip(names, map(inline, row)) if value)


def _row_span(first: int, last: int) -> str:
    return f"row {first}" if first == last else f"rows {first}–{last}"

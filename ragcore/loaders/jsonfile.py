"""JSON: flattened "path: value" lines, one section per top-level key or array element."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

from ragcore.errors import CorruptFile
from ragcore.loaders.outline import group, inline
from ragcore.loaders.sniffing import reason
from ragcore.types import Section


def parse_json(text: str, name: str) -> tuple[str, tuple[Section, ...]]:
    """Flattened "path: value" lines, one section per top-level key or array element."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise CorruptFile(name, f"invalid JSON: {reason(exc)}") from exc
    title = ""
    if isinstance(value, dict):
        title = next((v for k, v in value.items() if k in ("title", "name") and isinstance(v, str)), "")
        # top-level scalars (title, version, …) are a line each, so they share one "$" section
        scalars = {k: v for k, v in value.items() if not isinstance(v, (dict, list))}
        parts = [("$", _flatten(scalars, ""))]
        parts += [(f"${_key(k, top=False)}", _flatten(v, _key(k))) for k, v in value.items() if k not in scalars]
    elif isinstance(value, list):
        parts = [(f"$[{n}]", _flatten(item, f"[{n}]")) for n, item in enumerate(value)]
    else:
        parts = [("", _flatten(value, ""))]
    sections = []
    for location, lines in parts:
        for _, lines_of_group in group([(location, line) for line in lines]):
            sections.append(Section("\n".join(lines_of_group), location))
    return inline(title), tuple(sections)


def _flatten(value: object, path: str) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _flatten(item, f"{path}{_key(key, top=not path)}")
    elif isinstance(value, list):
        for n, item in enumerate(value):
            yield from _flatten(item, f"{path}[{n}]")
    elif value is not None and value != "":  # nulls and empty strings say nothing a reader could ask about
        scalar = inline(value) if isinstance(value, str) else json.dumps(value)
        yield f"{path}: {scalar}" if path else scalar


def _key(key: str, *, top: bool = True) -> str:
    """`name` at the top, `.name` below it, and `["odd key"]` for keys that are not identifiers."""
    if re.fullmatch(r"[A-Za-z_][\w-]*", key):
        return key if top else f".{key}"
    return f"[{json.dumps(key, ensure_ascii=False)}]"

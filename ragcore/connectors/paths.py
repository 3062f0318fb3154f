"""Include/exclude path patterns of a source, with .gitignore's meaning ("*.md" anywhere, "docs/" a folder)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import pathspec

from ragcore.connectors.base import ConnectorConfigError

# What the loaders read (ragcore.loaders): what a folder or a repository syncs when no `include` is given,
# so a repository's images, archives and build files are neither fetched nor reported failed on every sync.
DOCUMENT_SUFFIXES = (
    ".md", ".markdown", ".mdown", ".mkd", ".rst", ".txt", ".text", ".html", ".htm", ".xhtml",
    ".pdf", ".docx", ".csv", ".tsv", ".json",
)
DEFAULT_INCLUDE = tuple(f"*{suffix}" for suffix in DOCUMENT_SUFFIXES)


def hidden(path: str) -> bool:
    """Whether a relative path ("a/.b/c.md") is a hidden file or inside a hidden folder: no source syncs those
    (a repository's `.github/` templates, an editor's `.obsidian/`, a folder's `.DS_Store`)."""
    return any(part.startswith(".") for part in path.split("/"))


class PathFilter:
    """Which relative paths a source keeps: any include pattern (or none given), and no exclude pattern."""

    def __init__(self, include: list[str], exclude: list[str]) -> None:
        # pathspec's "gitignore" is Git's own pattern language, which people already write for these.
        self.include = pathspec.PathSpec.from_lines("gitignore", include) if include else None
        self.exclude = pathspec.PathSpec.from_lines("gitignore", exclude)

    def keeps(self, path: str) -> bool:
        """Whether `path` (relative, with "/") is in the source."""
        if self.include is not None and not self.include.match_file(path):
            return False
        return not self.exclude.match_file(path)


def pattern_list(config: Mapping[str, Any], field: str) -> list[str]:
    """A setting that is a list of patterns (or one pattern, or nothing), checked so each compiles."""
    value = config.get(field) or []
    if isinstance(value, str):
        value = [line for line in value.splitlines() if line.strip()]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConnectorConfigError(field, "must be a list of glob patterns (one per line, as in .gitignore)")
    try:
        pathspec.PathSpec.from_lines("gitignore", value)
    except (ValueError, TypeError, re.error) as exc:
        raise ConnectorConfigError(field, f"not a valid pattern: {exc}") from None
    return [item.strip() for item in value]

"""Test-only kinds of source, each one module-level class as a new kind would be (registered in KINDS by a test).

`PagesConnector`: pages given in its settings, each with an address at a (fictional) origin. The folder kind
links to the source viewer; this one stands in for a kind whose items have their own URL (a web page, a file
on a Git host), so the citation path can be tested without the network.
`NotesConnector`: notes typed into its one setting, one per line: a kind added without touching the console.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

from ragcore.connectors import ConnectorConfigError, FetchedItem, Setting, SourceItem


class PagesConnector:
    kind: ClassVar[str] = "pages"
    label: ClassVar[str] = "Wiki pages"
    settings: ClassVar[tuple[Setting, ...]] = ()  # made in code only (a mapping the form cannot ask for)

    def __init__(self, base: str, pages: dict[str, str]) -> None:
        self.base, self.pages = base, pages

    @classmethod
    def from_config(cls, config: Mapping[str, Any], *, work_dir: Path) -> PagesConnector:
        pages = config.get("pages")
        if not isinstance(pages, dict):
            raise ConnectorConfigError("pages", "a mapping of page name to Markdown")
        return cls(str(config.get("base", "")), {str(k): str(v) for k, v in pages.items()})

    def list_items(self, known: Mapping[str, str]) -> Iterator[SourceItem]:
        for name, text in self.pages.items():
            yield SourceItem(key=name, version=hashlib.sha256(text.encode()).hexdigest(),
                             url=f"{self.base}/{name}", filename=f"{name}.md")

    def fetch(self, item: SourceItem) -> FetchedItem:
        return FetchedItem(self.pages[item.key].encode(), f"{item.key}.md")

    def describe(self) -> str:
        return f"pages at {self.base}"


class NotesConnector:
    kind: ClassVar[str] = "notes"
    label: ClassVar[str] = "Notes typed in"
    settings: ClassVar[tuple[Setting, ...]] = (
        Setting("notes", "Notes", "lines", "One per line: name = text.", required=True),
    )

    def __init__(self, notes: dict[str, str]) -> None:
        self.notes = notes

    @classmethod
    def from_config(cls, config: Mapping[str, Any], *, work_dir: Path) -> NotesConnector:
        lines = config.get("notes") or []
        if not isinstance(lines, list) or not all(isinstance(line, str) and "=" in line for line in lines):
            raise ConnectorConfigError("notes", "each line is name = text")
        return cls({name.strip(): text.strip() for name, _, text in (line.partition("=") for line in lines)})

    def list_items(self, known: Mapping[str, str]) -> Iterator[SourceItem]:
        for name, text in self.notes.items():
            yield SourceItem(key=name, version=hashlib.sha256(text.encode()).hexdigest(), filename=f"{name}.txt")

    def fetch(self, item: SourceItem) -> FetchedItem:
        return FetchedItem(self.notes[item.key].encode(), f"{item.key}.txt")

    def describe(self) -> str:
        return f"{len(self.notes)} notes"

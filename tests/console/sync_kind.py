"""A test-only kind of source: pages given in its settings, each with an address at a (fictional) origin.

The folder kind links to the source viewer; this one stands in for a kind whose items have their own
URL (a web page, a file on a Git host), so the citation path can be tested without the network.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

from ragcore.connectors import ConnectorConfigError, FetchedItem, SourceItem


class PagesConnector:
    kind: ClassVar[str] = "pages"

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

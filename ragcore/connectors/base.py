"""The small interface every kind of source implements: list items with a stable key and version, fetch one.

The pipeline compares each listed item's `version` with what it synced last time: the same version is not
fetched or embedded again; a new or changed one is fetched and replaces its chunks; a key no longer listed
is removed from both indexes. So `version` must change whenever the content may have changed (a Git blob
id, an ETag or Last-Modified, a content checksum, or size and mtime for a folder), and `key` must stay the
same for the same item across syncs (a relative path, a URL).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

from ragcore.errors import RagError


@dataclass(frozen=True)
class SourceItem:
    """One document at its origin, as listed: enough to decide whether it changed, without its bytes."""

    key: str  # stable within the source: a relative path, a URL
    version: str  # changes whenever the content may have: blob id, ETag, checksum, size+mtime
    url: str = ""  # the item at its origin (a page, a file on the Git host); "" means the source viewer
    title: str = ""  # a title known without parsing (a page's <title>); "" lets the loader decide
    filename: str = ""  # a name with an extension, for the loader; defaults to the key's last part
    # Why the origin could not serve the item this time (a 5xx, a timeout): the version synced before is
    # kept and the item reported as failed, so a bad minute at the origin never removes a document.
    unavailable: str = ""


@dataclass(frozen=True)
class FetchedItem:
    """One item's content, ready for the loaders."""

    data: bytes
    filename: str  # the name the loaders sniff by: "guide.md", "index.html"
    media_type: str = ""  # the origin's Content-Type, when it said one


class ConnectorError(RagError):
    """The source as a whole cannot be listed (unreachable host, missing folder, bad credentials)."""

    transient = True


class ConnectorConfigError(ConnectorError):
    """A source's settings are wrong; `field` names the setting so a form can show it there."""

    transient = False

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


class ItemFetchError(ConnectorError):
    """One item could not be fetched; the sync records it as failed and goes on with the others."""

    def __init__(self, key: str, reason: str, *, transient: bool = False) -> None:
        self.key = key
        self.reason = reason
        self.transient = transient
        super().__init__(f"{key}: {reason}")


@dataclass(frozen=True)
class Setting:
    """One setting of a kind, as the console's form asks for it (the kind's `from_config` still checks it)."""

    name: str  # the key in the source's settings
    label: str
    kind: str = "text"  # text, lines (a list, one per line), int, float
    help: str = ""
    required: bool = False


class Connector(Protocol):
    """A kind of source. Built from its settings (a JSON object) and a private working folder."""

    kind: ClassVar[str]  # "folder", "git", "web": the name stored on the source
    label: ClassVar[str]  # what the console calls it: "Git repository"
    settings: ClassVar[tuple[Setting, ...]]  # what the console's form asks for, in order

    @classmethod
    def from_config(cls, config: Mapping[str, Any], *, work_dir: Path) -> Connector:
        """Validate the settings and build the connector; raises ConnectorConfigError naming the field."""
        ...

    def list_items(self, known: Mapping[str, str]) -> Iterator[SourceItem]:
        """Every item at the origin now. `known` maps keys to the versions synced last time (for revalidation)."""
        ...

    def fetch(self, item: SourceItem) -> FetchedItem:
        """The item's bytes; raises ItemFetchError for this item alone."""
        ...

    def describe(self) -> str:
        """A short human description for the console: "git https://… @ main (3f2a1c9)"."""
        ...

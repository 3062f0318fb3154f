"""Where synced documents come from: one module per kind of source, each implementing `Connector`.

A kind is registered by name in `KINDS`; the sync pipeline (console.syncing) only ever sees this interface,
and the console's form asks for the settings the class declares (`label`, `settings`), so adding Confluence,
Google Drive or Notion is one new module and one line here.
"""

from __future__ import annotations

import importlib

from ragcore.connectors.base import (
    Connector,
    ConnectorConfigError,
    ConnectorError,
    FetchedItem,
    ItemFetchError,
    Setting,
    SourceItem,
)

# kind -> "module:Class". Imported on first use, so a kind's dependencies load only where it is used.
KINDS: dict[str, str] = {
    "folder": "ragcore.connectors.folder:FolderConnector",
    "git": "ragcore.connectors.git:GitConnector",
    "web": "ragcore.connectors.web:WebConnector",
}


def connector_class(kind: str) -> type[Connector]:
    """The class implementing a kind of source; ConnectorConfigError for a kind nobody registered."""
    try:
        module_name, _, class_name = KINDS[kind].partition(":")
    except KeyError:
        raise ConnectorConfigError("kind", f"unknown kind {kind!r}; known: {', '.join(sorted(KINDS))}") from None
    cls: type[Connector] = getattr(importlib.import_module(module_name), class_name)
    return cls


def available_kinds() -> dict[str, type[Connector]]:
    """Every registered kind whose module imports on this server, in registration order."""
    found: dict[str, type[Connector]] = {}
    for kind in KINDS:
        try:
            found[kind] = connector_class(kind)
        except ImportError:  # a kind whose dependencies are not installed here is not offered
            continue
    return found


__all__ = [
    "KINDS",
    "available_kinds",
    "connector_class",
    "Connector",
    "ConnectorConfigError",
    "ConnectorError",
    "FetchedItem",
    "ItemFetchError",
    "Setting",
    "SourceItem",
]

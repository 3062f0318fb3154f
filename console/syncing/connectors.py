"""A source's connector: its kind's class (ragcore.connectors) built from the stored settings."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from django.conf import settings

from ragcore.connectors import Connector, connector_class


def work_dir(source_id: int | None) -> Path:
    """The private working folder of a source's connector (a clone, a crawl's cache) under the data folder."""
    return Path(settings.RAG_DATA_DIR) / "sources" / (str(source_id) if source_id else "new")


def build_connector(kind: str, config: Mapping[str, Any], *, source_id: int | None = None) -> Connector:
    """The connector for these settings; ConnectorConfigError names the wrong setting."""
    return connector_class(kind).from_config(config, work_dir=work_dir(source_id))

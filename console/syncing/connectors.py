"""A source's connector: its kind's class (ragcore.connectors) built from the stored settings."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from django.conf import settings

from ragcore.connectors import Connector, connector_class

# The key under which a source's secret (a token, a password) reaches its connector; it is stored apart
# from the settings so that no page, log line or admin list ever shows it.
SECRET_KEY = "secret"


def work_dir(source_id: int | None) -> Path:
    """The private working folder of a source's connector (a clone, a crawl's cache) under the data folder."""
    return Path(settings.RAG_DATA_DIR) / "sources" / (str(source_id) if source_id else "new")


def build_connector(kind: str, config: Mapping[str, Any], *, secret: str = "", source_id: int | None = None) -> Connector:
    """The connector for these settings; ConnectorConfigError names the wrong setting."""
    cls = connector_class(kind)
    merged = {**config, SECRET_KEY: secret} if secret else dict(config)
    return cls.from_config(merged, work_dir=work_dir(source_id))

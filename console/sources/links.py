"""The one place a citation becomes an address: the source viewer's page, scrolled to its passage."""

from __future__ import annotations

import re
from urllib.parse import urlencode

from django.conf import settings
from django.urls import reverse

from ragcore.types import Citation

_CONSOLE_DOCUMENT = re.compile(r"doc-(\d+)")  # the engine id of a console Document (Document.engine_id)
_WEB_SOURCE = re.compile(r"^https?://", re.IGNORECASE)


def source_path(citation: Citation) -> str:
    """The viewer's path for a console document ("/sources/12/?passage=3#passage"), else ""."""
    match = _CONSOLE_DOCUMENT.fullmatch(citation.document_id or "")
    if match is None:
        return ""
    path = reverse("sources:document", args=[int(match.group(1))])
    doc_id, _, position = (citation.chunk_id or "").rpartition(":")
    if doc_id == citation.document_id and position.isdigit():
        return f"{path}?{urlencode({'passage': position})}#passage"
    return path


def source_url(citation: Citation) -> str:
    """Where a reader opens the citation from this site: a synced document's origin (its page, its file on the
    Git host), a web source's own address, or the viewer."""
    if _WEB_SOURCE.match(citation.origin_url or ""):
        return citation.origin_url
    if _WEB_SOURCE.match(citation.source or ""):
        return citation.source
    return source_path(citation)


def absolute_source_url(citation: Citation) -> str:
    """The same, absolute, for Slack and Discord: needs LOREBOT_PUBLIC_URL (else "" for a console document)."""
    url = source_url(citation)
    if not url.startswith("/"):
        return url
    public = settings.LOREBOT_PUBLIC_URL
    return f"{public.rstrip('/')}{url}" if public else ""

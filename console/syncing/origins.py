"""Where and when, for citations of synced documents: their origin's address and their last sync.

The engine cites document ids; the console knows which of its documents came from a source. So the chat
service looks them up once per answer (one query) and every surface shows the same: the citation links
to the origin when it has an address there, and says when the document was last synced.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from console.models import Document
from ragcore.types import Citation

_CONSOLE_DOCUMENT = re.compile(r"doc-(\d+)")  # Document.engine_id


def with_origins(citations: Sequence[Citation]) -> tuple[Citation, ...]:
    """The citations, those of synced documents with their origin url and synced time."""
    ids = {int(m.group(1)) for c in citations if (m := _CONSOLE_DOCUMENT.fullmatch(c.document_id or ""))}
    if not ids:
        return tuple(citations)
    found = {f"doc-{pk}": (url or "", at) for pk, url, at in Document.objects.filter(
        pk__in=ids, source__isnull=False).values_list("pk", "origin_url", "synced_at")}
    out = []
    for c in citations:
        origin = found.get(c.document_id)
        if origin is not None:
            url, at = origin
            c = replace(c, origin_url=url, synced_at=at.isoformat() if at else "")
        out.append(c)
    return tuple(out)


def synced_text(citation: Citation) -> str:
    """ "synced 2 Dec 2026, 11:40 UTC", or "" for a citation of an upload."""
    if not citation.synced_at:
        return ""
    try:
        at = datetime.fromisoformat(citation.synced_at)
    except ValueError:
        return ""
    return f"synced {at.day} {at:%b %Y, %H:%M} UTC"

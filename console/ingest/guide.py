"""Lorebot's guide: its own documentation (data/docs), ingested by `make run` so a fresh install can answer.

It is marked on its documents (`Document.is_guide`) and removed in one action from the console's
Documents page: one delete job for every version of it, and a `GuideRemoval` record, after which
`manage.py ingest --guide` (what `make run` runs) brings nothing back. LOREBOT_GUIDE=False keeps it
out from the start.
"""

from __future__ import annotations

from typing import Any

import structlog
from django.conf import settings
from django.db import transaction

from console.ingest.jobs import create_job, user_or_none
from console.models import Document, GuideRemoval, IngestJob, IngestJobFile

log = structlog.get_logger(__name__, component="ingest_service")


def guide_documents() -> Any:
    """The guide's current documents (not old versions, not those already on their way out)."""
    return Document.objects.filter(is_guide=True).exclude(status__in=Document.NOT_CURRENT)


def why_guide_stays_out() -> str:
    """Why `ingest --guide` ingests nothing ("" when it may)."""
    if not settings.LOREBOT_GUIDE:
        return "LOREBOT_GUIDE is off"
    if GuideRemoval.happened():
        return "Lorebot's guide was removed in the console, so it stays out"
    return ""


def remove_guide(user: Any) -> IngestJob | None:
    """Deletes every guide document in one job (None when there is none), and keeps the guide out for good."""
    with transaction.atomic():
        GuideRemoval.objects.create(removed_by=user_or_none(user))
        documents = list(guide_documents().select_for_update())
        for doc in documents:
            doc.mark_deleting()
        items = [(doc, doc.original_filename, IngestJobFile.Action.DELETE) for doc in documents]
        job = create_job(items, user, "guide removed") if items else None
    log.info("guide.removed", documents=len(documents), job_id=job.pk if job else None)
    return job

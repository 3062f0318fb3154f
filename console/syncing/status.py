"""How fresh each source is, for the dashboard, the sources page and /health/ready."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from console.models import Source, SyncRun


@dataclass(frozen=True)
class Freshness:
    source: Source
    last_synced_at: datetime | None  # the last sync that could read the origin
    last_run: SyncRun | None
    active: SyncRun | None  # queued or running now
    failed: bool  # the last finished sync failed, as a whole or for some items

    @property
    def summary(self) -> str:
        return self.last_run.summary() if self.last_run is not None else "never synced"


def freshness() -> list[Freshness]:
    """Every source with its last run and any run in progress (three queries whatever their number)."""
    sources = list(Source.objects.select_related("last_run").order_by("name"))
    active = {r.source_id: r for r in SyncRun.objects.filter(state__in=SyncRun.ACTIVE)}
    return [Freshness(s, s.last_synced_at, s.last_run, active.get(s.pk), s.last_failed) for s in sources]


def failed_sources() -> list[dict[str, str | None]]:
    """The sources whose last sync failed, named with why (for /health/ready's detail)."""
    out = []
    for s in Source.objects.select_related("last_run").filter(
            last_run__state__in=(SyncRun.State.FAILED, SyncRun.State.PARTIALLY_FAILED)).order_by("name"):
        run = s.last_run
        assert run is not None
        out.append({"source": s.name, "state": str(run.state), "error": run.error[:300] or f"{run.failed} items failed",
                    "finished_at": run.finished_at.isoformat() if run.finished_at else None})
    return out

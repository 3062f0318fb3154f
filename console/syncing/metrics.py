"""The Prometheus series of syncs (recorded by whichever process runs them; /metrics sums them all)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

# Syncs take seconds to many minutes: the buckets run to an hour.
SYNC_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)

# kind: folder, git, web. outcome: succeeded, partially_failed, failed, crashed.
SYNC_RUNS = Counter("rag_sync_runs", "Source syncs finished, by kind and outcome.", ["kind", "outcome"])
# outcome: added, changed, removed, unchanged, failed.
SYNC_ITEMS = Counter("rag_sync_items", "Items of synced sources, by kind and outcome.", ["kind", "outcome"])
SYNC_SECONDS = Histogram("rag_sync_duration_seconds", "Duration of a source's sync, by kind.", ["kind"],
                         buckets=SYNC_BUCKETS)

"""A persistent BM25 keyword index with rank_bm25 `BM25Okapi` scores, shared between processes and hosts.

The layers, each its own module:

- `scoring`: the snapshot of live statistics and BM25Okapi scores over it;
- `segments`: immutable segments, deletion masks, and Lucene-style merging;
- `storage`: the seam to where segments and the manifest live, and the local folder behind it;
- `postgres`: the same in PostgreSQL, for deployments that span hosts;
- `index`: `Bm25Index`, the façade the engine uses.
"""

from __future__ import annotations

from ragcore.bm25.index import Bm25Index, Freshness
from ragcore.bm25.segments import DocumentChunks
from ragcore.bm25.storage import DAMAGED_INDEX_ERRORS, LOCK, MANIFEST, FolderStorage, Storage

__all__ = ["DAMAGED_INDEX_ERRORS", "LOCK", "MANIFEST", "Bm25Index", "DocumentChunks", "FolderStorage", "Freshness", "Storage"]

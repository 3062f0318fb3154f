"""rank_bm25 `BM25Okapi` scores over a snapshot of live segments.

Scores equal `rank_bm25.BM25Okapi(corpus).get_scores(query)` over the live chunks, where every chunk is
`tokenize(text)`: idf = log(N - n + 0.5) - log(n + 0.5), a negative idf becomes epsilon times the mean raw
idf of the whole vocabulary, and a repeated query term counts once per repeat. Only statistics are stored,
never idf, so an add or delete changes a few segments and the next query sees the new N, df and avgdl.

Each loaded state is an immutable snapshot with the global document frequencies, average idf, avgdl and
each chunk's length norm. The df table is updated from the previous snapshot by subtracting the segments
and masks that left and adding those that came, so a reload costs the size of the change.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ragcore.bm25.segments import LiveSegment


@dataclass(frozen=True, eq=False)
class Snapshot:
    """Everything a query needs at one manifest version, computed once per version."""

    version: int
    parts: tuple[LiveSegment, ...]
    df: dict[str, int]  # live chunks per term, over every segment
    n: int
    avgdl: float
    average_idf: float
    offsets: np.ndarray  # first global row of each part, then the total
    norm: np.ndarray  # k1 * (1 - b + b * len / avgdl) per global row
    dead: np.ndarray  # global rows of deleted chunks
    cache: dict[str, Any] = field(default_factory=dict)


def _add_df(df: dict[str, int], part: LiveSegment) -> None:
    vocab = part.segment.vocab
    nonzero = np.flatnonzero(part.live_df)
    for j, count in zip(nonzero.tolist(), part.live_df[nonzero].tolist()):
        term = vocab[j]
        df[term] = df.get(term, 0) + count


def _remove_df(df: dict[str, int], part: LiveSegment) -> None:
    vocab = part.segment.vocab
    nonzero = np.flatnonzero(part.live_df)
    for j, count in zip(nonzero.tolist(), part.live_df[nonzero].tolist()):
        term = vocab[j]
        left = df[term] - count
        if left:
            df[term] = left
        else:
            del df[term]  # average_idf is over the live vocabulary only


def _apply_df_change(df: dict[str, int], old: LiveSegment, new: LiveSegment) -> None:
    """Update `df` for a segment whose deletion mask changed, touching only the terms that changed."""
    vocab = new.segment.vocab
    change = new.live_df - old.live_df
    changed = np.flatnonzero(change)
    for j, delta in zip(changed.tolist(), change[changed].tolist()):
        term = vocab[j]
        count = df.get(term, 0) + delta
        if count:
            df[term] = count
        else:
            del df[term]


def build_snapshot(
    version: int, parts: Sequence[LiveSegment], previous: Snapshot | None, k1: float, b: float
) -> Snapshot:
    df = dict(previous.df) if previous else {}
    before = {p.segment.name: p for p in previous.parts} if previous else {}
    after = {p.segment.name: p for p in parts}
    for name, part in before.items():
        if name not in after:
            _remove_df(df, part)
    for name, part in after.items():
        old = before.get(name)
        if old is None:
            _add_df(df, part)
        elif old.del_gen != part.del_gen:
            _apply_df_change(df, old, part)

    n = sum(p.live_rows for p in parts)
    avgdl = sum(p.live_length for p in parts) / n if n else 0.0
    average_idf = 0.0
    if df:
        counts = np.fromiter(df.values(), dtype=np.float64, count=len(df))
        average_idf = float(np.mean(np.log(n - counts + 0.5) - np.log(counts + 0.5)))
    offsets = np.cumsum([0] + [p.segment.rows for p in parts], dtype=np.int64)
    if avgdl > 0:
        # Same expression as rank_bm25, so the norms are bit-identical.
        norm = np.concatenate([k1 * (1 - b + b * p.segment.lengths / avgdl) for p in parts])
    else:
        norm = np.full(int(offsets[-1]), k1 * (1 - b))  # only empty chunks: no term can match
    dead_parts = [np.flatnonzero(~p.alive_rows) + off for p, off in zip(parts, offsets) if p.alive_rows is not None]
    dead = np.concatenate(dead_parts) if dead_parts else np.zeros(0, dtype=np.int64)
    return Snapshot(version, tuple(parts), df, n, avgdl, average_idf, offsets, norm, dead)


def empty_snapshot() -> Snapshot:
    return Snapshot(0, (), {}, 0, 0.0, 0.0, np.zeros(1, dtype=np.int64), np.zeros(0), np.zeros(0, dtype=np.int64))


def score_rows(snap: Snapshot, tokens: Sequence[str], k1: float, epsilon: float) -> np.ndarray | None:
    """BM25Okapi scores of every global row (deleted rows zeroed), or None when no term matches."""
    rows_parts: list[np.ndarray] = []
    tf_parts: list[np.ndarray] = []
    weights: list[float] = []
    sizes: list[int] = []
    eps_idf = epsilon * snap.average_idf
    for term, repeats in Counter(tokens).items():
        df = snap.df.get(term)
        if not df:
            continue  # unknown terms score 0, as in rank_bm25
        idf = math.log(snap.n - df + 0.5) - math.log(df + 0.5)
        if idf < 0:
            idf = eps_idf
        # rank_bm25 adds a term's score once per occurrence in the query.
        weight = repeats * idf
        for part, offset in zip(snap.parts, snap.offsets.tolist()):
            seg = part.segment
            col = seg.columns.get(term)
            if col is None:
                continue
            start, stop = int(seg.indptr[col]), int(seg.indptr[col + 1])
            rows_parts.append(seg.indices[start:stop] + offset)
            tf_parts.append(seg.data[start:stop])
            weights.append(weight)
            sizes.append(stop - start)
    if not rows_parts:
        return None
    rows = np.concatenate(rows_parts)
    tf = np.concatenate(tf_parts).astype(np.float64)
    contributions = np.repeat(weights, sizes) * (tf * (k1 + 1) / (tf + snap.norm[rows]))
    # bincount sums the contributions of different terms to the same chunk.
    scores = np.bincount(rows, weights=contributions, minlength=int(snap.offsets[-1]))
    if snap.dead.size:
        scores[snap.dead] = 0.0
    return scores


# --- collections: which rows a filter allows ---------------------------------------------------------
# A filter is applied to the scores, never to the statistics: idf and avgdl stay those of the whole index,
# so a chunk scores the same whoever asks, and the top k are then taken among the allowed rows only.

_FILTERS_CACHED = 64  # distinct collection sets remembered per snapshot (one per group/channel scope)


def _row_collections(snap: Snapshot) -> tuple[dict[str, int], np.ndarray]:
    """(collection → code, the code of every global row), computed once per snapshot."""
    cached = snap.cache.get("row_collections")
    if cached is None:
        codes: dict[str, int] = {}
        rows = []
        for part in snap.parts:
            seg = part.segment
            entry_codes = np.fromiter((codes.setdefault(c, len(codes)) for c in seg.doc_collections),
                                      dtype=np.int32, count=len(seg.doc_collections))
            rows.append(np.repeat(entry_codes, seg.doc_chunks))
        cached = (codes, np.concatenate(rows) if rows else np.zeros(0, dtype=np.int32))
        snap.cache["row_collections"] = cached
    return cached


def allowed_rows(snap: Snapshot, collections: Collection[str]) -> np.ndarray:
    """A bool per global row: live and in one of `collections`."""
    key = frozenset(collections)
    filters: dict[frozenset[str], np.ndarray] = snap.cache.setdefault("allowed", {})
    mask = filters.get(key)
    if mask is None:
        codes, rows = _row_collections(snap)
        wanted = [codes[c] for c in key if c in codes]
        mask = np.isin(rows, wanted) if wanted else np.zeros(rows.size, dtype=bool)
        if snap.dead.size:
            mask[snap.dead] = False
        if len(filters) >= _FILTERS_CACHED:
            filters.pop(next(iter(filters)), None)  # the oldest filter: dicts keep insertion order
        filters[key] = mask
    return mask


def allowed_chunk_ids(snap: Snapshot, collections: Collection[str] | None) -> tuple[list[str], list[str]]:
    """(the ids of the live chunks `collections` allows (None: every live chunk), in row order; the name of
    the segment each is in).

    A chunk's segment names the write it came from: a document written again (or merged, or moved) is in
    another segment, so an unchanged name means an unchanged chunk.
    """
    key = frozenset(_row_collections(snap)[0] if collections is None else collections)
    lists: dict[frozenset[str], tuple[list[str], list[str]]] = snap.cache.setdefault("allowed_ids", {})
    found = lists.get(key)
    if found is None:
        rows = np.flatnonzero(allowed_rows(snap, key))
        parts = np.searchsorted(snap.offsets, rows, side="right") - 1
        segments = [snap.parts[p].segment for p in parts.tolist()]
        ids = [seg.chunk_ids[row - int(snap.offsets[p])] for seg, p, row in zip(segments, parts.tolist(), rows.tolist())]
        found = ids, [seg.name for seg in segments]
        if len(lists) >= _FILTERS_CACHED:
            lists.pop(next(iter(lists)), None)
        lists[key] = found
    return found


def allowed_count(snap: Snapshot, collections: Collection[str]) -> int:
    """How many live chunks `collections` allows."""
    return int(np.count_nonzero(allowed_rows(snap, collections)))


def allowed_frequencies(snap: Snapshot, terms: Collection[str],
                        collections: Collection[str]) -> tuple[int, dict[str, int]]:
    """(allowed live chunks, how many of them hold each term): document frequencies of a filtered view."""
    mask = allowed_rows(snap, collections)
    df: dict[str, int] = {}
    for term in terms:
        count = 0
        if snap.df.get(term):
            for part, offset in zip(snap.parts, snap.offsets.tolist()):
                col = part.segment.columns.get(term)
                if col is not None:
                    seg = part.segment
                    count += int(np.count_nonzero(mask[seg.indices[int(seg.indptr[col]):int(seg.indptr[col + 1])] + offset]))
        df[term] = count
    return int(np.count_nonzero(mask)), df

"""A persistent BM25 keyword index with rank_bm25 `BM25Okapi` scores, safe to share between processes.

Scores equal `rank_bm25.BM25Okapi(corpus).get_scores(query)` over the live chunks, where every chunk is
`tokenize(text)`: idf = log(N - n + 0.5) - log(n + 0.5), a negative idf becomes epsilon times the mean raw
idf of the whole vocabulary, and a repeated query term counts once per repeat. Only statistics are stored,
never idf, so an add or delete changes a few files and the next query sees the new N, df and avgdl.

Design, after Lucene:

- Chunks live in immutable *segments*, one per `add` (or `add_many`). A segment is a chunks × terms CSC
  matrix of term frequencies, so a query term is one `indptr` slice per segment; plus chunk ids, chunk
  lengths and a table of the documents it holds (id, checksum, chunk count; a document's chunks are
  contiguous rows).
- A delete never rewrites a segment. It writes a new generation of that segment's deletion mask. The mask
  is over the segment's documents rather than its rows because every delete removes a whole document,
  and a document with no chunks can still be recorded with its checksum.
- Merging is amortized like Lucene's LogMergePolicy: a segment's level is log10 of its live chunk count
  (chunks below 100 count as 100). When ten segments share a level, they are merged into one at the next
  level, so each chunk is rewritten about log10(N / 100) times (a few more below 1,000 chunks, where
  merged segments stay in the lowest level), never once per add. That allows up to nine segments per
  level, so 100k chunks sit in at most a few dozen segments and usually far fewer (18 at worst when added
  1,000 at a time). A query pays only a dict lookup and two slices per segment, microseconds each.
  A segment whose deleted chunks pass 30% is rewritten without them. Merges copy matrices with remapped
  columns and never tokenize again.
- `manifest.json` lists the live segments with their deletion generations under a `version` that every
  write increments. It is replaced atomically (temp file, fsync, os.replace, fsync of the directory) and is
  the single commit point: files it does not reference are not part of the index.
- Writers take an exclusive `flock` on `lock`, re-read the manifest, apply their change to the newest
  state, commit, and collect garbage. Files that drop out of the manifest are listed in its `garbage` with
  a timestamp and deleted only after 60 s, so a reader that has just read an older manifest still finds
  them; any other unreferenced file (a crashed writer's leftovers) goes once it is 60 s old.
- Readers take no file lock. At most every `refresh_seconds` they stat the manifest, and when it changed
  they load only the new segments and deletion masks. A missing file means the manifest moved on while
  loading, so the reload is retried once.
- Each loaded state is an immutable snapshot with the global document frequencies, average idf, avgdl and
  each chunk's length norm. The df table is updated from the previous snapshot by subtracting the
  segments and masks that left and adding those that came, so a reload costs the size of the change.
  Searches read `self._snapshot` once and score without any lock.
"""

from __future__ import annotations

import fcntl
import json
import logging
import math
import os
import secrets
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import scipy.sparse as sp

from ragcore.tokenize import tokenize

log = logging.getLogger(__name__)

FORMAT = 1
MANIFEST = "manifest.json"
LOCK = "lock"
MERGE_FACTOR = 10
MIN_LEVEL_CHUNKS = 100  # smaller segments share the lowest level, so tiny adds merge early
MAX_DELETED_FRACTION = 0.3
GRACE_SECONDS = 60.0

T = TypeVar("T")
DocumentChunks = tuple[str, str, Sequence[str], Sequence[str]]  # (document_id, checksum, chunk_ids, texts)


@dataclass(frozen=True, eq=False)
class _Segment:
    """One immutable batch of chunks: a chunks × terms CSC matrix of term counts, and its labels."""

    name: str
    indptr: np.ndarray  # int64, one more than the vocabulary
    indices: np.ndarray  # int32 chunk rows, column after column
    data: np.ndarray  # unsigned term counts, aligned with indices
    lengths: np.ndarray  # int32 tokens per chunk
    vocab: list[str]
    chunk_ids: list[str]
    doc_ids: list[str]
    checksums: list[str]
    doc_chunks: np.ndarray  # int64 chunks per document, in row order
    columns: dict[str, int] = field(init=False)
    doc_index: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "columns", {t: j for j, t in enumerate(self.vocab)})
        object.__setattr__(self, "doc_index", {d: e for e, d in enumerate(self.doc_ids)})

    @property
    def rows(self) -> int:
        return len(self.chunk_ids)


@dataclass(frozen=True, eq=False)
class _LiveSegment:
    """A segment seen through one generation of its deletion mask."""

    segment: _Segment
    del_gen: int  # 0: nothing deleted
    deleted: np.ndarray | None  # bool per document entry
    alive_rows: np.ndarray | None  # bool per chunk; None when every chunk is live
    live_rows: int
    live_length: int
    live_df: np.ndarray  # live chunks per column

    @classmethod
    def of(cls, segment: _Segment, del_gen: int, deleted: np.ndarray | None) -> _LiveSegment:
        """Derive the live statistics of `segment` under the `deleted` document mask."""
        if deleted is None or not deleted.any():
            return cls(segment, del_gen, None, None, segment.rows, int(segment.lengths.sum()), np.diff(segment.indptr))
        alive_rows = np.repeat(~deleted, segment.doc_chunks)
        # Deleted chunks are the minority (merging keeps them under 30%): find their entries and
        # subtract them per column, rather than counting every live entry.
        dead_entries = np.flatnonzero(~alive_rows[segment.indices])
        dead_columns = np.searchsorted(segment.indptr, dead_entries, side="right") - 1
        live_df = np.diff(segment.indptr) - np.bincount(dead_columns, minlength=len(segment.vocab))
        live_length = int(segment.lengths[alive_rows].sum())
        return cls(segment, del_gen, deleted, alive_rows, int(alive_rows.sum()), live_length, live_df)

    @property
    def key(self) -> tuple[str, int]:
        return (self.segment.name, self.del_gen)

    @property
    def deleted_docs(self) -> int:
        return 0 if self.deleted is None else int(self.deleted.sum())

    def is_live(self, entry: int) -> bool:
        return self.deleted is None or not self.deleted[entry]


@dataclass(frozen=True, eq=False)
class _Snapshot:
    """Everything a query needs at one manifest version, computed once per version."""

    version: int
    parts: tuple[_LiveSegment, ...]
    df: dict[str, int]  # live chunks per term, over every segment
    n: int
    avgdl: float
    average_idf: float
    offsets: np.ndarray  # first global row of each part, then the total
    norm: np.ndarray  # k1 * (1 - b + b * len / avgdl) per global row
    dead: np.ndarray  # global rows of deleted chunks
    cache: dict[str, Any] = field(default_factory=dict)


def _add_df(df: dict[str, int], part: _LiveSegment) -> None:
    vocab = part.segment.vocab
    nonzero = np.flatnonzero(part.live_df)
    for j, count in zip(nonzero.tolist(), part.live_df[nonzero].tolist()):
        term = vocab[j]
        df[term] = df.get(term, 0) + count


def _remove_df(df: dict[str, int], part: _LiveSegment) -> None:
    vocab = part.segment.vocab
    nonzero = np.flatnonzero(part.live_df)
    for j, count in zip(nonzero.tolist(), part.live_df[nonzero].tolist()):
        term = vocab[j]
        left = df[term] - count
        if left:
            df[term] = left
        else:
            del df[term]  # average_idf is over the live vocabulary only


def _apply_df_change(df: dict[str, int], old: _LiveSegment, new: _LiveSegment) -> None:
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


def _build_snapshot(
    version: int, parts: Sequence[_LiveSegment], previous: _Snapshot | None, k1: float, b: float
) -> _Snapshot:
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
    return _Snapshot(version, tuple(parts), df, n, avgdl, average_idf, offsets, norm, dead)


def _empty_snapshot() -> _Snapshot:
    return _Snapshot(0, (), {}, 0, 0.0, 0.0, np.zeros(1, dtype=np.int64), np.zeros(0), np.zeros(0, dtype=np.int64))


def _segment_from_texts(name: str, documents: Sequence[DocumentChunks]) -> _Segment:
    """Tokenize the documents' chunks into a new segment."""
    columns: dict[str, int] = {}
    term_ids: list[int] = []
    lengths: list[int] = []
    chunk_ids: list[str] = []
    for _document_id, _checksum, ids, texts in documents:
        chunk_ids.extend(ids)
        for text in texts:
            tokens = tokenize(text)
            lengths.append(len(tokens))
            term_ids.extend([columns.setdefault(t, len(columns)) for t in tokens])
    rows = np.repeat(np.arange(len(lengths), dtype=np.int32), lengths)
    ones = np.ones(len(term_ids), dtype=np.int32)
    # COO to CSC sums the repeated (chunk, term) pairs into term frequencies.
    matrix = sp.coo_matrix((ones, (rows, np.asarray(term_ids, dtype=np.int32))), shape=(len(lengths), len(columns)))
    return _segment_from_matrix(
        name,
        matrix.tocsc(),
        list(columns),
        np.asarray(lengths, dtype=np.int32),
        chunk_ids,
        [d[0] for d in documents],
        [d[1] for d in documents],
        np.asarray([len(d[2]) for d in documents], dtype=np.int64),
    )


def _segment_from_matrix(
    name: str,
    matrix: sp.csc_matrix,
    vocab: list[str],
    lengths: np.ndarray,
    chunk_ids: list[str],
    doc_ids: list[str],
    checksums: list[str],
    doc_chunks: np.ndarray,
) -> _Segment:
    matrix.sum_duplicates()
    data = matrix.data
    dtype = np.uint16 if data.size == 0 or data.max() <= np.iinfo(np.uint16).max else np.uint32
    return _Segment(
        name=name,
        indptr=matrix.indptr.astype(np.int64),
        indices=matrix.indices.astype(np.int32),
        data=data.astype(dtype),
        lengths=lengths,
        vocab=vocab,
        chunk_ids=chunk_ids,
        doc_ids=doc_ids,
        checksums=checksums,
        doc_chunks=doc_chunks,
    )


def _merge(name: str, parts: Sequence[_LiveSegment]) -> _Segment:
    """One segment holding the live chunks of `parts`, built from their matrices without tokenizing."""
    vocab: dict[str, int] = {}
    rows_out: list[np.ndarray] = []
    cols_out: list[np.ndarray] = []
    data_out: list[np.ndarray] = []
    chunk_ids: list[str] = []
    doc_ids: list[str] = []
    checksums: list[str] = []
    doc_chunks: list[np.ndarray] = []
    lengths: list[np.ndarray] = []
    offset = 0
    for part in parts:
        seg = part.segment
        entries = np.arange(len(seg.doc_ids)) if part.deleted is None else np.flatnonzero(~part.deleted)
        doc_ids.extend(seg.doc_ids[e] for e in entries.tolist())
        checksums.extend(seg.checksums[e] for e in entries.tolist())
        doc_chunks.append(seg.doc_chunks[entries])

        colmap = np.full(len(seg.vocab), -1, dtype=np.int32)
        for j in np.flatnonzero(part.live_df).tolist():
            colmap[j] = vocab.setdefault(seg.vocab[j], len(vocab))
        rows = np.asarray(seg.indices)
        cols = np.repeat(np.arange(len(seg.vocab), dtype=np.int32), np.diff(seg.indptr))
        data = np.asarray(seg.data)
        if part.alive_rows is None:
            chunk_ids.extend(seg.chunk_ids)
            lengths.append(seg.lengths)
        else:
            alive = part.alive_rows
            chunk_ids.extend(c for c, live in zip(seg.chunk_ids, alive.tolist()) if live)
            lengths.append(seg.lengths[alive])
            kept = alive[rows]
            renumber = np.cumsum(alive, dtype=np.int64) - 1
            rows, cols, data = renumber[rows[kept]], cols[kept], data[kept]
        rows_out.append((rows + offset).astype(np.int32))  # int32 indices halve the merge's memory
        cols_out.append(colmap[cols])
        data_out.append(data.astype(np.uint32))
        offset += part.live_rows

    shape = (offset, len(vocab))
    matrix = sp.coo_matrix(
        (np.concatenate(data_out), (np.concatenate(rows_out), np.concatenate(cols_out))), shape=shape
    ).tocsc()
    return _segment_from_matrix(
        name,
        matrix,
        list(vocab),
        np.concatenate(lengths).astype(np.int32),
        chunk_ids,
        doc_ids,
        checksums,
        np.concatenate(doc_chunks).astype(np.int64),
    )


def _level(part: _LiveSegment) -> int:
    return int(math.log10(max(part.live_rows, MIN_LEVEL_CHUNKS)))


# --- files -------------------------------------------------------------------------------------------


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, array, allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())


def _load_npy(path: Path, mmap: bool = False) -> np.ndarray:
    array: np.ndarray = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    return array


def _write_segment(root: Path, seg: _Segment) -> None:
    # Written under a temporary name and renamed, so a segment directory is always complete.
    tmp = root / f"{seg.name}.tmp-{secrets.token_hex(4)}"
    tmp.mkdir()
    _save_npy(tmp / "indptr.npy", seg.indptr)
    _save_npy(tmp / "indices.npy", seg.indices)
    _save_npy(tmp / "tf.npy", seg.data)
    _save_npy(tmp / "lengths.npy", seg.lengths)
    meta = {
        "vocab": seg.vocab,
        "chunk_ids": seg.chunk_ids,
        "documents": [[d, c, int(n)] for d, c, n in zip(seg.doc_ids, seg.checksums, seg.doc_chunks.tolist())],
    }
    with open(tmp / "meta.json", "w", encoding="utf-8") as f:
        json.dump(meta, f, ensure_ascii=False, separators=(",", ":"))
        f.flush()
        os.fsync(f.fileno())
    _fsync_dir(tmp)
    os.rename(tmp, root / seg.name)


def _read_segment(root: Path, name: str) -> _Segment:
    folder = root / name
    with open(folder / "meta.json", encoding="utf-8") as f:
        meta = json.load(f)
    documents = meta["documents"]
    return _Segment(
        name=name,
        indptr=_load_npy(folder / "indptr.npy"),
        # The two big arrays are memory-mapped: the page cache holds them once for every process.
        indices=_load_npy(folder / "indices.npy", mmap=True),
        data=_load_npy(folder / "tf.npy", mmap=True),
        lengths=_load_npy(folder / "lengths.npy"),
        vocab=meta["vocab"],
        chunk_ids=meta["chunk_ids"],
        doc_ids=[d[0] for d in documents],
        checksums=[d[1] for d in documents],
        doc_chunks=np.asarray([d[2] for d in documents], dtype=np.int64),
    )


def _deletions_file(name: str, gen: int) -> str:
    return f"{name}/del-{gen}.npy"


def _empty_manifest() -> dict[str, Any]:
    return {"format": FORMAT, "version": 0, "segments": [], "garbage": []}


def _read_manifest(root: Path) -> dict[str, Any]:
    try:
        with open(root / MANIFEST, encoding="utf-8") as f:
            manifest: dict[str, Any] = json.load(f)
    except FileNotFoundError:
        return _empty_manifest()
    if manifest.get("format") != FORMAT:
        raise RuntimeError(f"{root / MANIFEST}: unsupported BM25 index format {manifest.get('format')!r}")
    return manifest


def _write_manifest(root: Path, manifest: dict[str, Any]) -> None:
    tmp = root / f"{MANIFEST}.tmp-{secrets.token_hex(4)}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, root / MANIFEST)
    _fsync_dir(root)


def _remove(path: Path) -> None:
    try:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:
        pass


class _Edit:
    """The segment list one write is building; `Bm25Index._write` commits it."""

    def __init__(self, parts: Sequence[_LiveSegment], version: int) -> None:
        self.parts = list(parts)
        self.version = version  # the version this write will commit, unique under the lock
        self.changed = False

    def new_name(self) -> str:
        return f"seg-{self.version:08d}-{secrets.token_hex(4)}"

    def delete(self, document_ids: Collection[str]) -> int:
        """Mark the documents' live chunks deleted; returns how many chunks that was."""
        removed = 0
        for i, part in enumerate(self.parts):
            index = part.segment.doc_index
            entries = [e for d in document_ids if (e := index.get(d)) is not None and part.is_live(e)]
            if not entries:
                continue
            deleted = np.zeros(len(index), dtype=bool) if part.deleted is None else part.deleted.copy()
            deleted[entries] = True
            removed += int(part.segment.doc_chunks[entries].sum())
            self.parts[i] = _LiveSegment.of(part.segment, self.version, deleted)
            self.changed = True
        return removed

    def append(self, segment: _Segment) -> None:
        self.parts.append(_LiveSegment.of(segment, 0, None))
        self.changed = True

    def clear(self) -> None:
        self.changed = bool(self.parts)
        self.parts = []

    def merge(self, positions: Sequence[int]) -> None:
        """Replace the parts at `positions` with one merged segment, at the first one's place."""
        chosen = sorted(positions)
        started = time.monotonic()
        merged = _merge(self.new_name(), [self.parts[i] for i in chosen])
        log.info("bm25.merged segments=%d chunks=%d seconds=%.2f", len(chosen), merged.rows, time.monotonic() - started)
        first, absorbed = chosen[0], set(chosen[1:])
        self.parts = [p for i, p in enumerate(self.parts) if i not in absorbed]
        self.parts[first] = _LiveSegment.of(merged, 0, None)
        self.changed = True

    def apply_merge_policy(self) -> None:
        """Drop empty segments, expunge heavily deleted ones, and merge full levels."""
        self.parts = [p for p in self.parts if p.deleted is None or not p.deleted.all()]
        for i, part in enumerate(self.parts):
            seg = part.segment
            deleted_rows = seg.rows - part.live_rows
            if deleted_rows > MAX_DELETED_FRACTION * seg.rows or part.deleted_docs > MAX_DELETED_FRACTION * len(
                seg.doc_ids
            ):
                self.merge([i])
        while True:
            by_level: dict[int, list[int]] = {}
            for i, part in enumerate(self.parts):
                by_level.setdefault(_level(part), []).append(i)
            full = [positions for _level_, positions in sorted(by_level.items()) if len(positions) >= MERGE_FACTOR]
            if not full:
                return
            smallest = sorted(full[0], key=lambda i: self.parts[i].live_rows)[:MERGE_FACTOR]
            self.merge(smallest)


class Bm25Index:
    """BM25 keyword index over chunks, grouped by document, with rank_bm25 `BM25Okapi` scores.

    Usage example::

        index = Bm25Index(Path("data/bm25_index"))
        index.add("doc-1", "sha256:…", ["doc-1#0", "doc-1#1"], ["First chunk text", "Second chunk text"])
        index.search("chunk text", top_k=5)  # [("doc-1#0", 0.42), ...]

    :param path: the index directory, shared by every process; None keeps the index in memory only.
    :param refresh_seconds: how stale a reader may be: it checks the manifest at most this often.
    """

    def __init__(
        self,
        path: Path | None,
        *,
        k1: float = 1.5,
        b: float = 0.75,
        epsilon: float = 0.25,
        refresh_seconds: float = 1.0,
    ) -> None:
        if k1 < 0 or not 0 <= b <= 1 or epsilon < 0 or refresh_seconds < 0:
            raise ValueError("Bm25Index needs k1 >= 0, 0 <= b <= 1, epsilon >= 0, refresh_seconds >= 0")
        self.path = Path(path) if path is not None else None
        self.k1 = k1
        self.b = b
        self.epsilon = epsilon
        self.refresh_seconds = refresh_seconds
        # Held by writers and by reloads; searches never wait on it (they use the current snapshot).
        self._lock = threading.Lock()
        self._snapshot = _empty_snapshot()
        self._signature: tuple[int, int, int] | None = None
        self._checked_at = -math.inf
        self.reload_if_changed(force=True)

    # --- reading ---------------------------------------------------------------------------------------

    def __len__(self) -> int:
        self.reload_if_changed()
        return self._snapshot.n

    def search(self, query: str, top_k: int) -> list[tuple[str, float]]:
        """The `top_k` best (chunk_id, score) pairs for `query`, best first, only scores above zero."""
        if top_k < 1:
            raise ValueError(f"top_k must be > 0, got {top_k!r}")
        self.reload_if_changed()
        snap = self._snapshot
        scores = self._scores(snap, tokenize(query))
        if scores is None:
            return []
        candidates = np.flatnonzero(scores > 0)
        if candidates.size > top_k:
            candidates = candidates[np.argpartition(-scores[candidates], top_k - 1)[:top_k]]
        candidates = candidates[np.lexsort((candidates, -scores[candidates]))]  # ties: older chunk first
        parts = np.searchsorted(snap.offsets, candidates, side="right") - 1
        return [
            (snap.parts[p].segment.chunk_ids[row - snap.offsets[p]], float(scores[row]))
            for p, row in zip(parts.tolist(), candidates.tolist())
        ]

    def document_frequencies(self, terms: Collection[str]) -> tuple[int, dict[str, int]]:
        """(live chunks, how many of them hold each term): how distinctive a question's words are."""
        self.reload_if_changed()
        snap = self._snapshot
        return snap.n, {term: snap.df.get(term, 0) for term in terms}

    def scores_for_tokens(self, tokens: list[str]) -> dict[str, float]:
        """The score of every live chunk for already tokenized query terms, zeros included."""
        self.reload_if_changed()
        snap = self._snapshot
        scores = self._scores(snap, tokens)
        if scores is None:
            scores = np.zeros(int(snap.offsets[-1]))
        out: dict[str, float] = {}
        for part, offset in zip(snap.parts, snap.offsets.tolist()):
            alive = [True] * part.segment.rows if part.alive_rows is None else part.alive_rows.tolist()
            for row, (chunk_id, live) in enumerate(zip(part.segment.chunk_ids, alive)):
                if live:
                    out[chunk_id] = float(scores[offset + row])
        return out

    def documents(self) -> dict[str, tuple[str, int]]:
        """Every indexed document: document_id → (checksum, live chunk count)."""
        self.reload_if_changed()
        snap = self._snapshot
        cached = snap.cache.get("documents")
        if cached is None:
            cached = {}
            for part in snap.parts:
                seg = part.segment
                for e, (doc_id, checksum, count) in enumerate(zip(seg.doc_ids, seg.checksums, seg.doc_chunks.tolist())):
                    if part.is_live(e):
                        cached[doc_id] = (checksum, count)
            snap.cache["documents"] = cached
        return dict(cached)

    def document_info(self, document_id: str) -> tuple[str, int] | None:
        """(checksum, live chunk count) of one document, or None when it is not indexed."""
        self.reload_if_changed()
        for part in self._snapshot.parts:
            entry = part.segment.doc_index.get(document_id)
            if entry is not None and part.is_live(entry):
                return part.segment.checksums[entry], int(part.segment.doc_chunks[entry])
        return None

    def reload_if_changed(self, force: bool = False) -> bool:
        """Load what other processes committed, checking at most every `refresh_seconds` unless forced."""
        if self.path is None:
            return False
        if not force and time.monotonic() - self._checked_at < self.refresh_seconds:
            return False
        # A reader that finds another thread reloading or writing keeps serving the current snapshot.
        if not self._lock.acquire(blocking=force):
            return False
        try:
            self._checked_at = time.monotonic()
            signature = self._stat_manifest()
            if signature == self._signature and not force:
                return False
            before = self._snapshot
            for attempt in range(2):
                try:
                    self._snapshot = self._load(_read_manifest(self.path))
                    break
                except FileNotFoundError:
                    # A writer collected files of the manifest we read; the newer manifest no longer needs them.
                    if attempt:
                        raise
            self._signature = signature
            return self._snapshot is not before
        finally:
            self._lock.release()

    def _stat_manifest(self) -> tuple[int, int, int] | None:
        assert self.path is not None
        try:
            st = os.stat(self.path / MANIFEST)
        except FileNotFoundError:
            return None
        # os.replace gives every manifest a new inode, so this changes even within one mtime tick.
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _load(self, manifest: dict[str, Any]) -> _Snapshot:
        """The snapshot for `manifest`, reusing the segments and masks already loaded."""
        assert self.path is not None
        current = self._snapshot
        if manifest["version"] == current.version:
            return current
        segments = {p.segment.name: p.segment for p in current.parts}
        loaded = {p.key: p for p in current.parts}
        parts = []
        for entry in manifest["segments"]:
            name, gen = entry["name"], entry["deletions"]
            part = loaded.get((name, gen))
            if part is None:
                segment = segments.get(name) or _read_segment(self.path, name)
                deleted = _load_npy(self.path / _deletions_file(name, gen)) if gen else None
                part = _LiveSegment.of(segment, gen, deleted)
            parts.append(part)
        return _build_snapshot(manifest["version"], parts, current, self.k1, self.b)

    def _scores(self, snap: _Snapshot, tokens: Sequence[str]) -> np.ndarray | None:
        """BM25Okapi scores of every global row (deleted rows zeroed), or None when no term matches."""
        rows_parts: list[np.ndarray] = []
        tf_parts: list[np.ndarray] = []
        weights: list[float] = []
        sizes: list[int] = []
        eps_idf = self.epsilon * snap.average_idf
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
        k1 = self.k1
        contributions = np.repeat(weights, sizes) * (tf * (k1 + 1) / (tf + snap.norm[rows]))
        # bincount sums the contributions of different terms to the same chunk.
        scores = np.bincount(rows, weights=contributions, minlength=int(snap.offsets[-1]))
        if snap.dead.size:
            scores[snap.dead] = 0.0
        return scores

    # --- writing ---------------------------------------------------------------------------------------

    def add(self, document_id: str, checksum: str, chunk_ids: Sequence[str], texts: Sequence[str]) -> None:
        """Index a document's chunks, replacing any chunks it had, in one atomic step."""
        self.add_many([(document_id, checksum, chunk_ids, texts)])

    def add_many(self, documents: Iterable[DocumentChunks]) -> None:
        """Index (document_id, checksum, chunk_ids, texts) tuples as one segment; each replaces its old chunks."""
        batch: dict[str, DocumentChunks] = {}
        for document_id, checksum, chunk_ids, texts in documents:
            if len(chunk_ids) != len(texts):
                raise ValueError(f"{document_id}: {len(chunk_ids)} chunk ids for {len(texts)} texts")
            batch.pop(document_id, None)  # the last copy of a document wins, in its own position
            batch[document_id] = (document_id, checksum, list(chunk_ids), list(texts))
        if not batch:
            return
        # Tokenizing is the slow part, so it happens before taking the lock.
        segment = _segment_from_texts("pending", list(batch.values()))

        def change(edit: _Edit) -> None:
            edit.delete(batch.keys())
            edit.append(replace(segment, name=edit.new_name()))

        self._write(change)

    def delete_document(self, document_id: str) -> int:
        """Remove a document's chunks; returns how many were removed (0 when it was not indexed)."""
        return self._write(lambda edit: edit.delete([document_id]))

    def clear(self) -> None:
        """Remove every document."""
        self._write(lambda edit: edit.clear())

    def force_merge(self) -> None:
        """Merge every segment into one without deleted chunks, e.g. after a full reindex."""

        def change(edit: _Edit) -> None:
            if len(edit.parts) > 1 or any(p.deleted is not None for p in edit.parts):
                edit.merge(range(len(edit.parts)))

        self._write(change)

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        with self._lock:
            if self.path is None:
                yield
                return
            self.path.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)  # released when the descriptor closes, even on a crash
                yield
            finally:
                os.close(fd)

    def _write(self, change: Callable[[_Edit], T]) -> T:
        """Apply `change` to the newest committed state and commit it, excluding every other writer."""
        with self._exclusive():
            if self.path is None:
                manifest = _empty_manifest()
                snap = self._snapshot
            else:
                # Another process may have committed since this one last looked: start from its state.
                signature = self._stat_manifest()
                manifest = _read_manifest(self.path)
                snap = self._snapshot = self._load(manifest)
                self._signature = signature
            edit = _Edit(snap.parts, max(snap.version, manifest["version"]) + 1)
            result = change(edit)
            if not edit.changed:
                return result
            edit.apply_merge_policy()
            if self.path is not None:
                self._commit(manifest, edit)
            self._snapshot = _build_snapshot(edit.version, edit.parts, snap, self.k1, self.b)
            if self.path is not None:
                self._signature = self._stat_manifest()
                self._checked_at = time.monotonic()
            return result

    def _commit(self, previous: dict[str, Any], edit: _Edit) -> None:
        """Write the edit's new files, then the manifest that makes them the index, then collect garbage."""
        assert self.path is not None
        root = self.path
        on_disk = {e["name"]: e for e in previous["segments"]}
        for part in edit.parts:
            if part.segment.name not in on_disk:
                _write_segment(root, part.segment)
            if part.del_gen == edit.version:
                assert part.deleted is not None
                _save_npy(root / _deletions_file(part.segment.name, part.del_gen), part.deleted)

        now = time.time()
        current = {p.segment.name: p for p in edit.parts}
        garbage = list(previous["garbage"])
        for name, entry in on_disk.items():
            kept = current.get(name)
            if kept is None:
                garbage.append({"path": name, "since": now})
            elif entry["deletions"] and entry["deletions"] != kept.del_gen:
                garbage.append({"path": _deletions_file(name, entry["deletions"]), "since": now})
        expired = [g for g in garbage if now - g["since"] >= GRACE_SECONDS]
        manifest = {
            "format": FORMAT,
            "version": edit.version,
            "segments": [
                {
                    "name": p.segment.name,
                    "deletions": p.del_gen,
                    "chunks": p.segment.rows,
                    "live_chunks": p.live_rows,
                    "documents": len(p.segment.doc_ids),
                    "deleted_documents": p.deleted_docs,
                }
                for p in edit.parts
            ],
            "garbage": [g for g in garbage if now - g["since"] < GRACE_SECONDS],
        }
        _write_manifest(root, manifest)
        for g in expired:
            _remove(root / g["path"])
        self._sweep(manifest, now)

    def _sweep(self, manifest: dict[str, Any], now: float) -> None:
        """Delete files no manifest refers to (a crashed writer's leftovers) once they are old enough."""
        assert self.path is not None
        pending = {g["path"] for g in manifest["garbage"]}
        live = {e["name"]: e["deletions"] for e in manifest["segments"]}
        for entry in os.scandir(self.path):
            # Only names this class creates: a misconfigured path must not lose someone else's files.
            ours = entry.name.startswith("seg-") or entry.name.startswith(f"{MANIFEST}.tmp-")
            if not ours or entry.name in pending:
                continue
            if entry.name in live:
                wanted = f"del-{live[entry.name]}.npy"
                for inner in os.scandir(entry.path):
                    stale = inner.name.startswith("del-") and inner.name != wanted
                    if stale and f"{entry.name}/{inner.name}" not in pending and _older(inner, now):
                        _remove(Path(inner.path))
            elif _older(entry, now):
                _remove(Path(entry.path))


def _older(entry: os.DirEntry[str], now: float) -> bool:
    try:
        return now - entry.stat(follow_symlinks=False).st_mtime >= GRACE_SECONDS
    except FileNotFoundError:
        return False

"""Immutable segments of chunks, their deletion masks, and the Lucene-style merge policy.

A segment is one batch of chunks (one `add_many`): a chunks × terms CSC matrix of term frequencies, so a
query term is one `indptr` slice per segment; plus chunk ids, chunk lengths and a table of the documents
it holds (id, checksum, chunk count, collection; a document's chunks are contiguous rows).

A segment may also keep each chunk's stored fields (position, text, title, source, location, checksum: one
JSON array per row in one byte array, with the end offset of each row), as Lucene keeps stored fields beside
its postings: the answer path then reads a retrieved chunk from a memory-mapped file in microseconds instead
of from the vector store (a Chroma `get` of 18 chunks took ~3 ms of CPU at 100k chunks). Merges and moves
copy the bytes without decoding them; a segment written without them (older indexes, bare `add` calls) has
none, and its chunks are read from the vector store as before.

A document's collection is a label of its table entry, so a search can keep only the rows of allowed
collections. Moving a document to another collection is a delete of its entry plus a new one-document
segment copied from the old rows (`Edit.move`): segments stay immutable, nothing is tokenized again.

A delete never rewrites a segment. It makes a new generation of that segment's deletion mask. The mask
is over the segment's documents rather than its rows because every delete removes a whole document, and
a document with no chunks can still be recorded with its checksum.

Merging is amortized like Lucene's LogMergePolicy: a segment's level is log10 of its live chunk count
(chunks below 100 count as 100). When ten segments share a level, they are merged into one at the next
level, so each chunk is rewritten about log10(N / 100) times (a few more below 1,000 chunks, where merged
segments stay in the lowest level), never once per add. That allows up to nine segments per level, so
100k chunks sit in at most a few dozen segments and usually far fewer (18 at worst when added 1,000 at a
time). A segment whose deleted chunks pass 30% is rewritten without them. Merges copy matrices with
remapped columns and never tokenize again.
"""

from __future__ import annotations

import json
import logging
import math
import secrets
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import scipy.sparse as sp

from ragcore.tokenize import tokenize
from ragcore.types import DEFAULT_COLLECTION, Chunk

log = logging.getLogger("ragcore.bm25")

MERGE_FACTOR = 10
MIN_LEVEL_CHUNKS = 100  # smaller segments share the lowest level, so tiny adds merge early
MAX_DELETED_FRACTION = 0.3

DocumentChunks = tuple[str, str, Sequence[str], Sequence[str]]  # (document_id, checksum, chunk_ids, texts)


def stored_fields(chunks: Sequence[Chunk]) -> tuple[np.ndarray, np.ndarray]:
    """(the bytes, the end offsets) of chunks' stored fields, in order: what `Segment.stored_chunk` reads."""
    rows = [json.dumps([c.position, c.text, c.title, c.source, c.location, c.checksum],
                       ensure_ascii=False, separators=(",", ":")).encode() for c in chunks]
    ends = np.cumsum([len(r) for r in rows], dtype=np.int64)
    return np.frombuffer(b"".join(rows), dtype=np.uint8), ends


@dataclass(frozen=True, eq=False)
class Segment:
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
    # The collection of each document entry; empty (a segment written before collections): all default.
    doc_collections: list[str] = field(default_factory=list)
    stored: np.ndarray | None = None  # uint8: each row's stored fields as UTF-8 JSON, row after row
    stored_ends: np.ndarray | None = None  # int64 end offset of each row's bytes in `stored`
    columns: dict[str, int] = field(init=False)
    doc_index: dict[str, int] = field(init=False)
    doc_starts: list[int] = field(init=False)  # the first row of each document entry

    def __post_init__(self) -> None:
        object.__setattr__(self, "columns", {t: j for j, t in enumerate(self.vocab)})
        object.__setattr__(self, "doc_index", {d: e for e, d in enumerate(self.doc_ids)})
        object.__setattr__(self, "doc_starts", (np.cumsum(self.doc_chunks) - self.doc_chunks).tolist())
        if (self.stored is None) != (self.stored_ends is None) or (
                self.stored_ends is not None and len(self.stored_ends) != len(self.chunk_ids)):
            raise ValueError(f"segment {self.name}: stored fields do not match its {len(self.chunk_ids)} chunks")
        if len(self.doc_collections) != len(self.doc_ids):
            if self.doc_collections:
                raise ValueError(f"segment {self.name}: {len(self.doc_collections)} collections for "
                                 f"{len(self.doc_ids)} documents")
            object.__setattr__(self, "doc_collections", [DEFAULT_COLLECTION] * len(self.doc_ids))

    @property
    def rows(self) -> int:
        return len(self.chunk_ids)

    def stored_chunk(self, entry: int, position: int) -> Chunk | None:
        """The stored chunk at `position` of document entry `entry`, or None when none is stored there."""
        if self.stored is None or self.stored_ends is None or not 0 <= position < self.doc_chunks[entry]:
            return None
        row = self.doc_starts[entry] + position
        start = int(self.stored_ends[row - 1]) if row else 0
        at, text, title, source, location, checksum = json.loads(self.stored[start:int(self.stored_ends[row])].tobytes())
        return Chunk(self.chunk_ids[row], self.doc_ids[entry], at, text, title=title, source=source,
                     location=location, checksum=checksum, collection=self.doc_collections[entry])


@dataclass(frozen=True, eq=False)
class LiveSegment:
    """A segment seen through one generation of its deletion mask."""

    segment: Segment
    del_gen: int  # 0: nothing deleted
    deleted: np.ndarray | None  # bool per document entry
    alive_rows: np.ndarray | None  # bool per chunk; None when every chunk is live
    live_rows: int
    live_length: int
    live_df: np.ndarray  # live chunks per column

    @classmethod
    def of(cls, segment: Segment, del_gen: int, deleted: np.ndarray | None) -> LiveSegment:
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


def segment_from_texts(name: str, documents: Sequence[DocumentChunks],
                       collections: Mapping[str, str] | None = None,
                       stored: Mapping[str, Sequence[Chunk]] | None = None) -> Segment:
    """Tokenize the documents' chunks into a new segment; `collections` maps document ids to their
    collection (default: DEFAULT_COLLECTION). With `stored` holding the chunks of every document, in the
    order of its chunk ids, the segment keeps their stored fields."""
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
    kept = None
    if stored is not None and all(d[0] in stored for d in documents):
        chunks = [c for d in documents for c in stored[d[0]]]
        if [c.chunk_id for c in chunks] != chunk_ids:
            raise ValueError("the stored chunks do not match the chunk ids")
        kept = stored_fields(chunks)
    return segment_from_matrix(
        name,
        matrix.tocsc(),
        list(columns),
        np.asarray(lengths, dtype=np.int32),
        chunk_ids,
        [d[0] for d in documents],
        [d[1] for d in documents],
        np.asarray([len(d[2]) for d in documents], dtype=np.int64),
        [(collections or {}).get(d[0], DEFAULT_COLLECTION) for d in documents],
        kept,
    )


def segment_from_matrix(
    name: str,
    matrix: sp.csc_matrix,
    vocab: list[str],
    lengths: np.ndarray,
    chunk_ids: list[str],
    doc_ids: list[str],
    checksums: list[str],
    doc_chunks: np.ndarray,
    doc_collections: list[str] | None = None,
    stored: tuple[np.ndarray, np.ndarray] | None = None,
) -> Segment:
    matrix.sum_duplicates()
    data = matrix.data
    dtype = np.uint16 if data.size == 0 or data.max() <= np.iinfo(np.uint16).max else np.uint32
    return Segment(
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
        doc_collections=doc_collections or [],
        stored=None if stored is None else stored[0],
        stored_ends=None if stored is None else stored[1],
    )


def merge_segments(name: str, parts: Sequence[LiveSegment]) -> Segment:
    """One segment holding the live chunks of `parts`, built from their matrices without tokenizing."""
    vocab: dict[str, int] = {}
    rows_out: list[np.ndarray] = []
    cols_out: list[np.ndarray] = []
    data_out: list[np.ndarray] = []
    chunk_ids: list[str] = []
    doc_ids: list[str] = []
    checksums: list[str] = []
    collections: list[str] = []
    doc_chunks: list[np.ndarray] = []
    lengths: list[np.ndarray] = []
    stored: list[tuple[np.ndarray, np.ndarray]] | None = [] if all(p.segment.stored is not None for p in parts) else None
    offset = 0
    for part in parts:
        seg = part.segment
        if stored is not None:
            stored.append(_live_stored(seg, part.alive_rows))
        entries = np.arange(len(seg.doc_ids)) if part.deleted is None else np.flatnonzero(~part.deleted)
        doc_ids.extend(seg.doc_ids[e] for e in entries.tolist())
        checksums.extend(seg.checksums[e] for e in entries.tolist())
        collections.extend(seg.doc_collections[e] for e in entries.tolist())
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
    return segment_from_matrix(
        name,
        matrix,
        list(vocab),
        np.concatenate(lengths).astype(np.int32),
        chunk_ids,
        doc_ids,
        checksums,
        np.concatenate(doc_chunks).astype(np.int64),
        collections,
        None if stored is None else _joined(stored),
    )


def _live_stored(seg: Segment, alive_rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(bytes, per-row byte counts) of the stored fields of a segment's live rows, copied undecoded."""
    assert seg.stored is not None and seg.stored_ends is not None
    sizes = np.diff(np.asarray(seg.stored_ends), prepend=0)
    if alive_rows is None:
        return np.asarray(seg.stored), sizes
    return np.asarray(seg.stored)[np.repeat(alive_rows, sizes)], sizes[alive_rows]


def _joined(parts: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    data = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, dtype=np.uint8)
    sizes = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, dtype=np.int64)
    return data.astype(np.uint8), np.cumsum(sizes, dtype=np.int64)


def level(part: LiveSegment) -> int:
    return int(math.log10(max(part.live_rows, MIN_LEVEL_CHUNKS)))


class Edit:
    """The segment list one write is building, from the newest committed state; the index commits it."""

    def __init__(self, parts: Sequence[LiveSegment], version: int) -> None:
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
            self.parts[i] = LiveSegment.of(part.segment, self.version, deleted)
            self.changed = True
        return removed

    def move(self, document_ids: Collection[str], collection: str) -> int:
        """Put the documents' live chunks in `collection`; returns how many chunks they have.

        Their rows are copied (no tokenizing) into one new segment labelled `collection`, and their old
        entries deleted: BM25 statistics stay the same, only the label changes. Documents already there
        are left alone.
        """
        wanted = set(document_ids)
        total = 0
        sources: list[LiveSegment] = []
        moving: list[str] = []
        for part in self.parts:
            seg = part.segment
            entries = [e for d in wanted if (e := seg.doc_index.get(d)) is not None and part.is_live(e)]
            total += int(seg.doc_chunks[entries].sum()) if entries else 0
            entries = [e for e in entries if seg.doc_collections[e] != collection]
            if not entries:
                continue
            not_copied = np.ones(len(seg.doc_ids), dtype=bool)  # a "deletion mask" that keeps only these
            not_copied[entries] = False
            sources.append(LiveSegment.of(seg, 1, not_copied))
            moving.extend(seg.doc_ids[e] for e in entries)
        if not sources:
            return total
        copied = merge_segments(self.new_name(), sources)
        self.delete(moving)
        self.append(replace(copied, doc_collections=[collection] * len(copied.doc_ids)))
        return total

    def append(self, segment: Segment) -> None:
        self.parts.append(LiveSegment.of(segment, 0, None))
        self.changed = True

    def clear(self) -> None:
        self.changed = bool(self.parts)
        self.parts = []

    def merge(self, positions: Sequence[int]) -> None:
        """Replace the parts at `positions` with one merged segment, at the first one's place."""
        chosen = sorted(positions)
        started = time.monotonic()
        merged = merge_segments(self.new_name(), [self.parts[i] for i in chosen])
        log.info("bm25.merged segments=%d chunks=%d seconds=%.2f", len(chosen), merged.rows, time.monotonic() - started)
        first, absorbed = chosen[0], set(chosen[1:])
        self.parts = [p for i, p in enumerate(self.parts) if i not in absorbed]
        self.parts[first] = LiveSegment.of(merged, 0, None)
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
                by_level.setdefault(level(part), []).append(i)
            full = [positions for _level_, positions in sorted(by_level.items()) if len(positions) >= MERGE_FACTOR]
            if not full:
                return
            smallest = sorted(full[0], key=lambda i: self.parts[i].live_rows)[:MERGE_FACTOR]
            self.merge(smallest)



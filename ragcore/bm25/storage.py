"""Where the keyword index's segments and manifest live: the seam, and the local folder behind it.

The manifest lists the live segments with their deletion generations under a `version` that every write
increments; it is the single commit point. A store gives three things: a cheap `poll()` readers call at
the refresh interval, a consistent `reading()` view of one manifest and its files, and an exclusive
`writing()` step that commits one manifest atomically. `ragcore.bm25.postgres` is the other store.

A segment's labels (vocabulary, chunk ids, documents with checksum, chunk count and collection) are one
JSON document; one written before collections lacks the collection and reads as DEFAULT_COLLECTION, so an
existing index needs no migration. A folder segment may also hold its chunks' stored fields (`stored.npy`,
`stored_ends.npy`, see `ragcore.bm25.segments`); one without them is read as before.

The folder (the embedded default): `manifest.json` is replaced atomically (temp file, fsync, os.replace,
fsync of the directory). Writers take an exclusive `flock` on `lock`, re-read the manifest, apply their
change to the newest state, commit, and collect garbage. Files that drop out of the manifest are listed in
its `garbage` with a timestamp and deleted only after 60 s, so a reader that has just read an older
manifest still finds them; any other unreferenced file (a crashed writer's leftovers) goes once it is
60 s old. Readers take no lock; a missing file means the manifest moved on while loading, so the index
retries the reload once.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import secrets
import shutil
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ragcore.bm25.segments import LiveSegment, Segment
from ragcore.types import DEFAULT_COLLECTION

# What loading a damaged stored index raises: a missing or unreadable file (OSError), garbage JSON or
# arrays (ValueError, EOFError), a format this code does not know or a segment the manifest names but
# the store lacks (RuntimeError), a manifest without its keys (KeyError). An unreachable PostgreSQL is
# not damage: that is KeywordIndexUnavailable.
DAMAGED_INDEX_ERRORS: tuple[type[Exception], ...] = (OSError, ValueError, EOFError, RuntimeError, KeyError)

FORMAT = 1
MANIFEST = "manifest.json"
LOCK = "lock"
GRACE_SECONDS = 60.0
ARRAYS = ("indptr", "indices", "tf", "lengths")  # a segment's arrays, stored as .npy
STORED = ("stored", "stored_ends")  # its stored fields, when it has them (a folder store only)


def empty_manifest() -> dict[str, Any]:
    return {"format": FORMAT, "version": 0, "segments": []}


def manifest_for(version: int, parts: Sequence[LiveSegment]) -> dict[str, Any]:
    """The manifest that commits `parts` as `version`."""
    return {
        "format": FORMAT,
        "version": version,
        "committed_at": time.time(),
        "segments": [
            {
                "name": p.segment.name,
                "deletions": p.del_gen,
                "chunks": p.segment.rows,
                "live_chunks": p.live_rows,
                "documents": len(p.segment.doc_ids),
                "deleted_documents": p.deleted_docs,
            }
            for p in parts
        ],
    }


def new_files(previous: dict[str, Any], parts: Sequence[LiveSegment]) -> tuple[list[Segment], list[LiveSegment]]:
    """What a commit must write: segments the previous manifest lacks, and deletion masks it lacks."""
    before = {e["name"]: e["deletions"] for e in previous["segments"]}
    segments = [p.segment for p in parts if p.segment.name not in before]
    masks = [p for p in parts if p.del_gen and before.get(p.segment.name) != p.del_gen]
    return segments, masks


def segment_meta(seg: Segment) -> bytes:
    meta = {
        "vocab": seg.vocab,
        "chunk_ids": seg.chunk_ids,
        # [id, checksum, chunks, collection]; a segment written before collections has no fourth field.
        "documents": [[d, c, int(n), k] for d, c, n, k in
                      zip(seg.doc_ids, seg.checksums, seg.doc_chunks.tolist(), seg.doc_collections)],
    }
    return json.dumps(meta, ensure_ascii=False, separators=(",", ":")).encode()


def segment_from_parts(name: str, arrays: dict[str, np.ndarray], meta: bytes | str) -> Segment:
    loaded = json.loads(meta)
    documents = loaded["documents"]
    return Segment(
        name=name,
        indptr=arrays["indptr"],
        indices=arrays["indices"],
        data=arrays["tf"],
        lengths=arrays["lengths"],
        vocab=loaded["vocab"],
        chunk_ids=loaded["chunk_ids"],
        doc_ids=[d[0] for d in documents],
        checksums=[d[1] for d in documents],
        doc_chunks=np.asarray([d[2] for d in documents], dtype=np.int64),
        doc_collections=[d[3] if len(d) > 3 else DEFAULT_COLLECTION for d in documents],
        stored=arrays.get("stored"),
        stored_ends=arrays.get("stored_ends"),
    )


def segment_arrays(seg: Segment) -> dict[str, np.ndarray]:
    return {"indptr": seg.indptr, "indices": seg.indices, "tf": seg.data, "lengths": seg.lengths}


def npy_bytes(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, np.asarray(array), allow_pickle=False)
    return out.getvalue()


def npy_from_bytes(data: bytes) -> np.ndarray:
    array: np.ndarray = np.load(io.BytesIO(data), allow_pickle=False)
    return array


class StorageReader(ABC):
    """One consistent view: a manifest and the files it names."""

    @abstractmethod
    def manifest(self) -> dict[str, Any]:
        """The committed manifest, with `age_seconds`: how long ago it was committed (None if never)."""

    @abstractmethod
    def segment(self, name: str) -> Segment: ...

    @abstractmethod
    def deletions(self, name: str, gen: int) -> np.ndarray: ...


class StorageWriter(StorageReader):
    """A reader that holds the writer lock and can commit a new manifest."""

    @abstractmethod
    def commit(self, previous: dict[str, Any], manifest: dict[str, Any], parts: Sequence[LiveSegment]) -> None:
        """Write the new segments and masks of `parts`, then `manifest`, atomically; drop what left."""


class Storage(ABC):
    """Where one keyword index lives. `kind` and `location` are what readiness reports."""

    kind: str
    location: str
    # Whether segments keep their chunks' stored fields: a folder maps them from disk at no memory cost,
    # while a database store would load every chunk's text into each process, so its chunks are read
    # from the vector store instead.
    keeps_stored_fields = False

    @abstractmethod
    def poll(self) -> object:
        """A cheap token that changes whenever a new manifest is committed."""

    @abstractmethod
    def newest(self) -> tuple[int, float | None]:
        """(the newest committed version, seconds since it was committed; None when nothing was)."""

    @abstractmethod
    def reading(self) -> Any:
        """A context manager giving a `StorageReader`."""

    @abstractmethod
    def writing(self) -> Any:
        """A context manager giving a `StorageWriter`; every other writer, in any process, waits."""

    @abstractmethod
    def writes_paused(self) -> Any:
        """A context manager during which no writer commits (a backup's consistent copy)."""

    def close(self) -> None:
        """Let go of connections; the store reopens them when used again."""
        return None  # a folder holds nothing open between calls


# --- the local folder --------------------------------------------------------------------------------


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


def write_segment(root: Path, seg: Segment) -> None:
    # Written under a temporary name and renamed, so a segment directory is always complete.
    tmp = root / f"{seg.name}.tmp-{secrets.token_hex(4)}"
    tmp.mkdir()
    for key, array in segment_arrays(seg).items():
        _save_npy(tmp / f"{key}.npy", array)
    if seg.stored is not None and seg.stored_ends is not None:
        _save_npy(tmp / "stored.npy", np.asarray(seg.stored))
        _save_npy(tmp / "stored_ends.npy", np.asarray(seg.stored_ends))
    with open(tmp / "meta.json", "wb") as f:
        f.write(segment_meta(seg))
        f.flush()
        os.fsync(f.fileno())
    _fsync_dir(tmp)
    os.rename(tmp, root / seg.name)


def read_segment(root: Path, name: str) -> Segment:
    folder = root / name
    with open(folder / "meta.json", "rb") as f:
        meta = f.read()
    # The two big arrays are memory-mapped: the page cache holds them once for every process.
    arrays = {key: _load_npy(folder / f"{key}.npy", mmap=key in ("indices", "tf")) for key in ARRAYS}
    if (folder / "stored_ends.npy").exists():  # absent: written before stored fields, or without them
        # Mapped too: a query reads a few rows' bytes, and the page cache keeps the rest out of every process.
        lengths = arrays["lengths"]
        arrays.update({key: _load_npy(folder / f"{key}.npy", mmap=len(lengths) > 0) for key in STORED})
    return segment_from_parts(name, arrays, meta)


def deletions_file(name: str, gen: int) -> str:
    return f"{name}/del-{gen}.npy"


def read_manifest(root: Path) -> dict[str, Any]:
    try:
        with open(root / MANIFEST, encoding="utf-8") as f:
            manifest: dict[str, Any] = json.load(f)
    except FileNotFoundError:
        return {**empty_manifest(), "garbage": [], "age_seconds": None}
    if manifest.get("format") != FORMAT:
        raise RuntimeError(f"{root / MANIFEST}: unsupported BM25 index format {manifest.get('format')!r}")
    manifest.setdefault("garbage", [])
    committed = manifest.get("committed_at")
    manifest["age_seconds"] = max(0.0, time.time() - committed) if committed else None
    return manifest


def _write_manifest(root: Path, manifest: dict[str, Any]) -> None:
    tmp = root / f"{MANIFEST}.tmp-{secrets.token_hex(4)}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({k: v for k, v in manifest.items() if k != "age_seconds"}, f, indent=1)
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


def _older(entry: os.DirEntry[str], now: float) -> bool:
    try:
        return now - entry.stat(follow_symlinks=False).st_mtime >= GRACE_SECONDS
    except FileNotFoundError:
        return False


class _FolderReader(StorageWriter):
    def __init__(self, root: Path) -> None:
        self.root = root

    def manifest(self) -> dict[str, Any]:
        return read_manifest(self.root)

    def segment(self, name: str) -> Segment:
        return read_segment(self.root, name)

    def deletions(self, name: str, gen: int) -> np.ndarray:
        return _load_npy(self.root / deletions_file(name, gen))

    def commit(self, previous: dict[str, Any], manifest: dict[str, Any], parts: Sequence[LiveSegment]) -> None:
        """Write the edit's new files, then the manifest that makes them the index, then collect garbage."""
        root = self.root
        segments, masks = new_files(previous, parts)
        for seg in segments:
            write_segment(root, seg)
        for part in masks:
            assert part.deleted is not None
            _save_npy(root / deletions_file(part.segment.name, part.del_gen), part.deleted)

        now = time.time()
        current = {p.segment.name: p for p in parts}
        garbage = list(previous.get("garbage", []))
        for entry in previous["segments"]:
            name = entry["name"]
            kept = current.get(name)
            if kept is None:
                garbage.append({"path": name, "since": now})
            elif entry["deletions"] and entry["deletions"] != kept.del_gen:
                garbage.append({"path": deletions_file(name, entry["deletions"]), "since": now})
        expired = [g for g in garbage if now - g["since"] >= GRACE_SECONDS]
        manifest = {**manifest, "garbage": [g for g in garbage if now - g["since"] < GRACE_SECONDS]}
        _write_manifest(root, manifest)
        for g in expired:
            _remove(root / g["path"])
        self._sweep(manifest, now)

    def _sweep(self, manifest: dict[str, Any], now: float) -> None:
        """Delete files no manifest refers to (a crashed writer's leftovers) once they are old enough."""
        pending = {g["path"] for g in manifest["garbage"]}
        live = {e["name"]: e["deletions"] for e in manifest["segments"]}
        for entry in os.scandir(self.root):
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


class FolderStorage(Storage):
    """The index as files in one folder, shared by the processes of one host."""

    kind = "folder"
    keeps_stored_fields = True

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.location = str(self.root)

    def poll(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.root / MANIFEST)
        except FileNotFoundError:
            return None
        # os.replace gives every manifest a new inode, so this changes even within one mtime tick.
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def newest(self) -> tuple[int, float | None]:
        manifest = read_manifest(self.root)
        return int(manifest["version"]), manifest["age_seconds"]

    @contextmanager
    def reading(self) -> Iterator[StorageReader]:
        yield _FolderReader(self.root)

    @contextmanager
    def writing(self) -> Iterator[StorageWriter]:
        with self.writes_paused():
            yield _FolderReader(self.root)

    @contextmanager
    def writes_paused(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # released when the descriptor closes, even on a crash
            yield
        finally:
            os.close(fd)

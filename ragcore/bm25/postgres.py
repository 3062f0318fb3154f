"""The keyword index in PostgreSQL, so that every process on every host shares one index.

Three tables, created on first use, keyed by the index name (the Chroma collection's):

    rag_bm25_manifest   one row per index: version, the manifest (jsonb), committed_at
    rag_bm25_segment    one row per segment: its four arrays as .npy bytes, its labels as JSON
    rag_bm25_deletions  one row per deletion-mask generation of a segment

A write is one transaction that first takes `pg_advisory_xact_lock` on the index, so writers on every
host take turns; the transaction commits the new segments, masks and manifest together or not at all
(a writer killed mid-commit leaves the previous version whole), and drops what left in the same step:
readers load inside a REPEATABLE READ transaction, so the manifest they read and its rows stay visible
to them even while a writer deletes. Readers poll `version` (one indexed row) at the refresh interval
and load only the segments and masks they do not hold; queries run in memory as with the folder.

The write path is what makes ingest with this store as fast as with the folder (benchmarks/
keyword_stores.py): the server's default TOAST compression (pglz) spent more time on a segment's
megabyte than the rest of the commit, so the bytea columns use lz4 where the server has it (about the
same size, a quarter of the time) and are stored uncompressed where it does not; values are sent in
binary (no hex escaping), and a commit's statements go in one pipeline, one round trip. COPY measured
no faster than a binary INSERT for the one or two rows a commit writes, so commits stay INSERTs.

Connections: one per index, opened lazily and reopened after a failure (a restarted server, say); a
failure surfaces as `KeywordIndexUnavailable` (transient), naming the server but never its password.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.types.json import Jsonb

from ragcore.bm25.segments import LiveSegment, Segment
from ragcore.bm25.storage import (
    ARRAYS,
    FORMAT,
    Storage,
    StorageReader,
    StorageWriter,
    empty_manifest,
    new_files,
    npy_bytes,
    npy_from_bytes,
    segment_arrays,
    segment_from_parts,
    segment_meta,
)
from ragcore.errors import KeywordIndexUnavailable

LOCK_CLASS = 0x6C6F7265  # "lore": the first key of every advisory lock this module takes
SCHEMA_LOCK = 0
CONNECT_TIMEOUT_SECONDS = 5

SCHEMA = """
CREATE TABLE IF NOT EXISTS rag_bm25_manifest (
    index_name text PRIMARY KEY,
    version bigint NOT NULL,
    manifest jsonb NOT NULL,
    committed_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS rag_bm25_segment (
    index_name text NOT NULL,
    name text NOT NULL,
    indptr bytea NOT NULL,
    indices bytea NOT NULL,
    tf bytea NOT NULL,
    lengths bytea NOT NULL,
    meta bytea NOT NULL,
    PRIMARY KEY (index_name, name)
);
CREATE TABLE IF NOT EXISTS rag_bm25_deletions (
    index_name text NOT NULL,
    segment text NOT NULL,
    generation bigint NOT NULL,
    mask bytea NOT NULL,
    PRIMARY KEY (index_name, segment, generation)
);
"""
TABLES = ("rag_bm25_manifest", "rag_bm25_segment", "rag_bm25_deletions")
BYTEA_COLUMNS = {"rag_bm25_segment": ("indptr", "indices", "tf", "lengths", "meta"), "rag_bm25_deletions": ("mask",)}

_MANIFEST_SQL = (
    "SELECT manifest, extract(epoch FROM clock_timestamp() - committed_at)::float8 "
    "FROM rag_bm25_manifest WHERE index_name = %s"
)


def describe_dsn(dsn: str) -> str:
    """user@host:port/dbname of a connection string, without its password."""
    try:
        info = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "PostgreSQL (unparsable DSN)"
    host = info.get("host") or "localhost"
    where = f"{host}:{info.get('port') or 5432}/{info.get('dbname') or ''}"
    return f"{info['user']}@{where}" if info.get("user") else where


def _fast_toast(conn: psycopg.Connection[Any]) -> None:
    """Give the bytea columns lz4 compression, or none where the server lacks lz4 (see the module doc).

    Only columns not set yet are altered: ALTER TABLE locks the table, and this runs on every connect.
    """
    for table, columns in BYTEA_COLUMNS.items():
        found = conn.execute(
            "SELECT attname, attcompression, attstorage FROM pg_attribute "
            "WHERE attrelid = %s::regclass AND attname = ANY(%s)", (table, list(columns))).fetchall()
        pending = [name for name, compression, storage in found if compression != "l" and storage != "e"]
        if not pending:
            continue
        try:
            with conn.transaction():
                conn.execute(f"ALTER TABLE {table} " + ", ".join(f"ALTER COLUMN {c} SET COMPRESSION lz4" for c in pending))
        except psycopg.errors.FeatureNotSupported:  # a server built without lz4
            conn.execute(f"ALTER TABLE {table} " + ", ".join(f"ALTER COLUMN {c} SET STORAGE EXTERNAL" for c in pending))


class _PgReader(StorageWriter):
    def __init__(self, conn: psycopg.Connection[Any], name: str) -> None:
        self.conn = conn
        self.name = name

    def manifest(self) -> dict[str, Any]:
        row = self.conn.execute(_MANIFEST_SQL, (self.name,)).fetchone()
        if row is None:
            return {**empty_manifest(), "age_seconds": None}
        manifest: dict[str, Any] = dict(row[0])
        if manifest.get("format") != FORMAT:
            raise RuntimeError(f"BM25 index {self.name!r}: unsupported format {manifest.get('format')!r}")
        manifest["age_seconds"] = max(0.0, float(row[1]))
        return manifest

    def segment(self, name: str) -> Segment:
        row = self.conn.execute(
            "SELECT indptr, indices, tf, lengths, meta FROM rag_bm25_segment WHERE index_name = %s AND name = %s",
            (self.name, name),
        ).fetchone()
        if row is None:
            raise RuntimeError(f"BM25 index {self.name!r}: segment {name} of the manifest is missing")
        arrays = {key: npy_from_bytes(value) for key, value in zip(ARRAYS, row[:4])}
        return segment_from_parts(name, arrays, bytes(row[4]))

    def deletions(self, name: str, gen: int) -> np.ndarray:
        row = self.conn.execute(
            "SELECT mask FROM rag_bm25_deletions WHERE index_name = %s AND segment = %s AND generation = %s",
            (self.name, name, gen),
        ).fetchone()
        if row is None:
            raise RuntimeError(f"BM25 index {self.name!r}: deletions {gen} of segment {name} are missing")
        return npy_from_bytes(row[0])

    def commit(self, previous: dict[str, Any], manifest: dict[str, Any], parts: Sequence[LiveSegment]) -> None:
        segments, masks = new_files(previous, parts)
        live = [p.segment.name for p in parts]
        stored = {k: v for k, v in manifest.items() if k != "age_seconds"}
        # One pipeline: the statements go out together and the server answers once, not per statement.
        with self.conn.pipeline(), self.conn.cursor() as cur:
            for seg in segments:
                cur.execute(
                    "INSERT INTO rag_bm25_segment (index_name, name, indptr, indices, tf, lengths, meta) "
                    "VALUES (%s, %s, %b, %b, %b, %b, %b)",
                    (self.name, seg.name, *(npy_bytes(a) for a in segment_arrays(seg).values()), segment_meta(seg)),
                )
            for p in masks:
                if p.deleted is not None:
                    cur.execute(
                        "INSERT INTO rag_bm25_deletions (index_name, segment, generation, mask) VALUES (%s, %s, %s, %b)",
                        (self.name, p.segment.name, p.del_gen, npy_bytes(p.deleted)),
                    )
            cur.execute("DELETE FROM rag_bm25_segment WHERE index_name = %s AND NOT (name = ANY(%s))", (self.name, live))
            cur.execute(
                "DELETE FROM rag_bm25_deletions d WHERE index_name = %s AND NOT EXISTS ("
                "SELECT 1 FROM unnest(%s::text[], %s::bigint[]) AS keep(segment, generation) "
                "WHERE keep.segment = d.segment AND keep.generation = d.generation)",
                (self.name, live, [p.del_gen for p in parts]),
            )
            cur.execute(
                "INSERT INTO rag_bm25_manifest (index_name, version, manifest, committed_at) "
                "VALUES (%s, %s, %s, clock_timestamp()) ON CONFLICT (index_name) DO UPDATE "
                "SET version = EXCLUDED.version, manifest = EXCLUDED.manifest, committed_at = EXCLUDED.committed_at",
                (self.name, manifest["version"], Jsonb(stored)),
            )


class PostgresStorage(Storage):
    """The index as rows in PostgreSQL: every host that reaches the database sees one index."""

    kind = "postgresql"

    def __init__(self, dsn: str, name: str) -> None:
        if not name:
            raise ValueError("PostgresStorage needs an index name")
        self.dsn = dsn
        self.name = name
        self.location = f"{describe_dsn(dsn)} (index {name!r})"
        self._conn: psycopg.Connection[Any] | None = None
        # One connection, used by one thread at a time (the index serializes its reloads and writes, but
        # readiness probes and backups come from other threads).
        self._conn_lock = threading.RLock()

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is not None and not self._conn.closed and not self._conn.broken:
            return self._conn
        self._drop()
        conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS,
                               application_name="lorebot-bm25")
        with conn.transaction():
            # Two processes creating the tables at once would collide on the catalog: take turns.
            conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (LOCK_CLASS, SCHEMA_LOCK))
            conn.execute(SCHEMA)
            _fast_toast(conn)
        self._conn = conn
        return conn

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg.Error:
                pass
            self._conn = None

    @contextmanager
    def _session(self) -> Iterator[psycopg.Connection[Any]]:
        """The connection, with connection failures turned into one transient error that names the server."""
        with self._conn_lock:
            try:
                yield self._connection()
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                self._drop()  # the next call reconnects
                first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise KeywordIndexUnavailable(f"keyword index at {self.location} unreachable: {first_line}") from exc

    def poll(self) -> int:
        with self._session() as conn:
            row = conn.execute("SELECT version FROM rag_bm25_manifest WHERE index_name = %s", (self.name,)).fetchone()
        return int(row[0]) if row else 0

    def newest(self) -> tuple[int, float | None]:
        with self._session() as conn:
            row = conn.execute(
                "SELECT version, extract(epoch FROM clock_timestamp() - committed_at)::float8 "
                "FROM rag_bm25_manifest WHERE index_name = %s", (self.name,)).fetchone()
        return (int(row[0]), max(0.0, float(row[1]))) if row else (0, None)

    @contextmanager
    def reading(self) -> Iterator[StorageReader]:
        with self._session() as conn, conn.transaction():
            # One snapshot for the manifest and every row it names, whatever writers do meanwhile.
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            yield _PgReader(conn, self.name)

    @contextmanager
    def writing(self) -> Iterator[StorageWriter]:
        with self._session() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (LOCK_CLASS, self.name))
            yield _PgReader(conn, self.name)

    @contextmanager
    def writes_paused(self) -> Iterator[None]:
        # A session lock on a connection of its own: it conflicts with the writers' transaction locks.
        try:
            conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS)
        except psycopg.OperationalError as exc:
            raise KeywordIndexUnavailable(f"keyword index at {self.location} unreachable: {exc}") from exc
        try:
            conn.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", (LOCK_CLASS, self.name))
            yield
        finally:
            conn.close()  # closing the session releases its lock

    def close(self) -> None:
        with self._conn_lock:
            self._drop()

"""One consistent archive of a Lorebot installation (`manage.py backup`), and its restore (`manage.py restore`).

An archive is a gzipped tar holding:

    manifest.json              what is inside: format, version, time, database kind, counts, sha256 of every file
    database/lorebot.sqlite3   SQLite, copied with the online backup API (readers and writers carry on)
    database/lorebot.pgdump    or PostgreSQL, `pg_dump --format=custom` (restored with `pg_restore`)
    vectors/records.jsonl      the Chroma collection: one line per chunk (id, text, metadata) ...
    vectors/embeddings.npy     ... and its vectors in the same order, exported through the chromadb client,
                               so the same archive restores into a local directory or a Chroma server
    bm25_index/...             the keyword index, as a folder index, wherever it lives (folder or PostgreSQL)
    raw/<sha256>               the uploaded originals, wherever they live (folder, database or a storage)

The index and the originals are asked for their copy through their own seams (`Bm25Index.copy_to`,
`console.ingest.storage`), never read as files, so the archive is the same whichever store a host uses;
pg_dump leaves out the keyword index's tables and the originals' bytes, which the archive holds already.

Consistency: the keyword index's writer lock (the flock on `bm25_index/lock`, or the PostgreSQL advisory
lock every writer on every host takes) is held from the first copy to the last. Ingest writers wait at
their write step meanwhile; questions are answered throughout. A writer that had already written its
Chroma half before the lock was taken can leave one batch of documents in the vectors but not in BM25;
`restore` ends with the same check `manage.py reconcile` makes, which names them, and
`manage.py reconcile` re-queues them from the originals.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, cast

import numpy as np
import structlog
from django.conf import settings

from console.engine import rag_settings
from console.ingest import storage
from ragcore.bm25 import Bm25Index
from ragcore.indexes import keyword_storage
from ragcore.settings import RagSettings
from ragcore.vectorstore import _client as chroma_client

log = structlog.get_logger(__name__, component="backup")

FORMAT = "lorebot-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SQLITE_FILE = "database/lorebot.sqlite3"
PG_FILE = "database/lorebot.pgdump"
RECORDS_FILE = "vectors/records.jsonl"
EMBEDDINGS_FILE = "vectors/embeddings.npy"
EXPORT_BATCH = 1000  # chunks per chromadb get/upsert call (servers cap the batch size)


class BackupError(Exception):
    """A backup or restore that cannot go on; the message says why and what to do."""


@dataclass(frozen=True)
class Summary:
    path: Path
    manifest: dict[str, Any]

    def describe(self) -> str:
        m = self.manifest
        return (f"{self.path}: database ({m['database']['vendor']}), {m['vectors']['count']} vectors, "
                f"{m['bm25']['documents']} BM25 documents, {m['raw']['files']} originals")


# -- where things are ----------------------------------------------------------------------------------


def _database() -> dict[str, Any]:
    return cast(dict[str, Any], settings.DATABASES["default"])


def _vendor(db: dict[str, Any]) -> str:
    engine = str(db["ENGINE"])
    if engine.endswith("sqlite3"):
        return "sqlite"
    if "postgresql" in engine:
        return "postgresql"
    raise BackupError(f"backups support SQLite and PostgreSQL only, not {engine}")


def _pg_env(db: dict[str, Any]) -> dict[str, str]:
    """libpq's environment for pg_dump/pg_restore: the password never appears on a command line."""
    env = dict(os.environ)
    for var, key in (("PGHOST", "HOST"), ("PGPORT", "PORT"), ("PGUSER", "USER"), ("PGPASSWORD", "PASSWORD"),
                     ("PGDATABASE", "NAME")):
        if db.get(key):
            env[var] = str(db[key])
    return env


def _pg_tool(name: str) -> str:
    path = shutil.which(name)
    if not path:
        raise BackupError(
            f"{name} is not installed: PostgreSQL backups need the client tools of the server's major version "
            f"(Debian/Ubuntu: apt-get install postgresql-client)"
        )
    return path


def _run(args: list[str], env: dict[str, str], what: str) -> None:
    done = subprocess.run(args, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip()[-2000:]
        raise BackupError(f"{what} failed (exit {done.returncode}): {detail}")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# -- backup ----------------------------------------------------------------------------------------------


def backup(dest: Path) -> Summary:
    """Writes one archive to `dest` (a file, or a folder to put a dated file in) while the app runs."""
    dest = Path(dest)
    if dest.is_dir():
        dest = dest / f"lorebot-{datetime.now(timezone.utc).strftime('%Y%m%d-%H%M%S')}.tar.gz"
    if not dest.parent.is_dir():
        raise BackupError(f"the folder {dest.parent} does not exist")
    rag = rag_settings()
    db = _database()
    vendor = _vendor(db)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=".lorebot-backup-", dir=dest.parent) as tmp:
        stage = Path(tmp)
        keywords = Bm25Index(keyword_storage(rag), refresh_seconds=0)
        with keywords.writes_paused():
            database = _dump_database(db, vendor, stage)
            vectors = _export_vectors(rag, stage)
            index = {**keywords.copy_to(stage / "bm25_index"), "store": keywords.freshness().kind}
            raw = _copy_raw(stage / "raw")
        files = {str(p.relative_to(stage)): {"sha256": _sha256(p), "size": p.stat().st_size}
                 for p in sorted(stage.rglob("*")) if p.is_file()}
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "lorebot_version": _lorebot_version(),
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "database": database,
            "vectors": vectors,
            "bm25": index,
            "raw": raw,
            "files": files,
        }
        (stage / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        partial = dest.with_name(dest.name + ".partial")
        with tarfile.open(partial, "w:gz") as tar:
            tar.add(stage / MANIFEST, arcname=MANIFEST)  # first, so a reader finds it without unpacking all
            for name in files:
                tar.add(stage / name, arcname=name)
        os.replace(partial, dest)  # a crash mid-write never leaves a truncated archive under the real name
    log.info("backup.written", path=str(dest), seconds=round(time.monotonic() - started, 2),
             vectors=vectors["count"], originals=raw["files"], size=dest.stat().st_size)
    return Summary(dest, manifest)


def _lorebot_version() -> str:
    try:
        return version("lorebot")
    except PackageNotFoundError:
        return "unknown"


def _dump_database(db: dict[str, Any], vendor: str, stage: Path) -> dict[str, Any]:
    target = stage / (SQLITE_FILE if vendor == "sqlite" else PG_FILE)
    target.parent.mkdir(parents=True)
    if vendor == "sqlite":
        source = Path(db["NAME"])
        if not source.exists():
            raise BackupError(f"the SQLite database {source} does not exist (run `manage.py migrate` first)")
        # The online backup API copies a consistent snapshot page by page while others keep writing.
        src = sqlite3.connect(source.resolve().as_uri() + "?mode=ro", uri=True, timeout=20)
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)
        finally:
            dst.close()
            src.close()
        return {"vendor": "sqlite", "file": SQLITE_FILE}
    # The keyword index and the originals' bytes are in the archive already, copied through their seams.
    _run([_pg_tool("pg_dump"), "--format=custom", "--no-owner", "--no-privileges", "--exclude-table=rag_bm25_*",
          "--exclude-table-data=console_original", "--file", str(target)], _pg_env(db), "pg_dump")
    return {"vendor": "postgresql", "file": PG_FILE, "name": str(db.get("NAME", ""))}


def _export_vectors(rag: RagSettings, stage: Path) -> dict[str, Any]:
    """Every chunk of the collection, through the client: the same code for a directory and a server."""
    (stage / "vectors").mkdir()
    where = rag.chroma_url or str(rag.chroma_path)
    try:
        client = chroma_client(rag)
        names = {getattr(c, "name", c) for c in client.list_collections()}
        collection = client.get_collection(rag.chroma_collection) if rag.chroma_collection in names else None
    except Exception as exc:  # chromadb raises many unrelated types for "cannot reach"
        raise BackupError(f"cannot read the vector store at {where}: {exc}") from exc
    info: dict[str, Any] = {"collection": rag.chroma_collection, "source": "server" if rag.chroma_url else "directory",
                            "metadata": dict(collection.metadata or {}) if collection else {}, "count": 0}
    if collection is None:
        np.save(stage / EMBEDDINGS_FILE, np.zeros((0, 0), dtype=np.float32))
        (stage / RECORDS_FILE).write_text("")
        return info
    # Ids first, then the rows by id: offsets would shift under a concurrent writer, ids do not.
    ids = collection.get(include=[])["ids"]
    vectors: list[np.ndarray] = []
    with (stage / RECORDS_FILE).open("w") as out:
        for start in range(0, len(ids), EXPORT_BATCH):
            got = collection.get(ids=ids[start:start + EXPORT_BATCH], include=["embeddings", "documents", "metadatas"])
            for cid, text, meta in zip(got["ids"], got["documents"], got["metadatas"]):
                out.write(json.dumps({"id": cid, "text": text, "metadata": meta}, ensure_ascii=False) + "\n")
            vectors.append(np.asarray(got["embeddings"], dtype=np.float32))
    matrix = np.concatenate(vectors) if vectors else np.zeros((0, 0), dtype=np.float32)
    np.save(stage / EMBEDDINGS_FILE, matrix)
    info["count"] = int(matrix.shape[0])
    return info


def _copy_raw(target: Path) -> dict[str, Any]:
    """Every original, through the storage seam. Folder originals are immutable and named by checksum:
    a hard link is a safe, free copy."""
    target.mkdir()
    checksums = storage.list_originals()
    for checksum in checksums:
        source = storage.raw_dir() / checksum
        if storage.originals_kind() == "folder":
            try:
                os.link(source, target / checksum)
                continue
            except OSError:
                pass
        (target / checksum).write_bytes(storage.read_original(checksum))
    return {"files": len(checksums), "storage": storage.originals_kind()}


# -- restore ---------------------------------------------------------------------------------------------


def read_manifest(archive: Path, into: Path) -> dict[str, Any]:
    """Unpacks `archive` into `into` and checks it is a whole Lorebot archive; returns its manifest."""
    if not archive.is_file():
        raise BackupError(f"{archive}: no such file")
    try:
        with tarfile.open(archive, "r:*") as tar:
            tar.extractall(into, filter="data")  # refuses absolute paths, .. and links out of `into`
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        raise BackupError(f"{archive} is not a readable archive ({type(exc).__name__}: {exc})") from exc
    try:
        manifest = json.loads((into / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise BackupError(f"{archive} has no readable {MANIFEST}: it is not a Lorebot backup") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"{archive} is not a Lorebot backup (its manifest has format {manifest.get('format')!r})"
                          if isinstance(manifest, dict) else f"{archive} is not a Lorebot backup")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BackupError(f"{archive} is backup format {manifest.get('format_version')}; "
                          f"this Lorebot reads format {FORMAT_VERSION}")
    found = {str(p.relative_to(into)) for p in into.rglob("*") if p.is_file()} - {MANIFEST}
    listed = set(manifest["files"])
    if found != listed:
        missing, extra = sorted(listed - found), sorted(found - listed)
        raise BackupError(f"{archive} does not match its manifest (missing: {missing[:5]}, unlisted: {extra[:5]})")
    for name, expected in manifest["files"].items():
        if _sha256(into / name) != expected["sha256"]:
            raise BackupError(f"{archive}: {name} fails its checksum; the archive is corrupt")
    return manifest


def restore(archive: Path, *, force: bool = False) -> dict[str, Any]:
    """Brings an archive back into the configured database, vector store, BM25 folder and data/raw/.

    Refuses to overwrite anything that holds data unless `force`. Stop the web, worker and bot
    processes first: they keep the old indexes open.
    """
    rag = rag_settings()
    db = _database()
    vendor = _vendor(db)
    data_dir = Path(settings.RAG_DATA_DIR)
    data_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".lorebot-restore-", dir=data_dir) as tmp:
        unpacked = Path(tmp)
        manifest = read_manifest(Path(archive), unpacked)
        if manifest["database"]["vendor"] != vendor:
            raise BackupError(
                f"{archive} holds a {manifest['database']['vendor']} database but this installation uses {vendor} "
                f"(DATABASE_URL); restore into the same kind of database"
            )
        busy = _occupied(rag, db, vendor)
        if busy and not force:
            raise BackupError("refusing to overwrite existing data (" + "; ".join(busy) + "); use --force to replace it")
        _restore_database(db, vendor, unpacked / manifest["database"]["file"])
        _restore_originals(unpacked / "raw")
        _restore_keyword_index(rag, unpacked / "bm25_index")
        _import_vectors(rag, manifest["vectors"], unpacked)
    log.info("backup.restored", archive=str(archive), vectors=manifest["vectors"]["count"],
             originals=manifest["raw"]["files"])
    return manifest


def _occupied(rag: RagSettings, db: dict[str, Any], vendor: str) -> list[str]:
    """What already holds data where the archive would go."""
    busy = []
    if vendor == "sqlite":
        if Path(db["NAME"]).exists() and Path(db["NAME"]).stat().st_size:
            busy.append(f"database {db['NAME']}")
    elif _pg_has_tables(db):
        busy.append(f"PostgreSQL database {db.get('NAME')} has tables")
    # Originals kept in the database are covered by the database's own check (and an empty database
    # has no table to ask).
    if storage.originals_kind() != "database" and storage.list_originals():
        busy.append(f"originals in the {storage.location()}")
    keywords = Bm25Index(keyword_storage(rag), refresh_seconds=0)
    if len(keywords):
        busy.append(f"keyword index in {keywords.freshness().location}")
    if rag.chroma_url:
        try:
            client = chroma_client(rag)
            if rag.chroma_collection in {getattr(c, "name", c) for c in client.list_collections()}:
                busy.append(f"collection {rag.chroma_collection} on {rag.chroma_url}")
        except Exception as exc:
            raise BackupError(f"cannot reach the Chroma server at {rag.chroma_url}: {exc}") from exc
    elif rag.chroma_path.is_dir() and any(rag.chroma_path.iterdir()):
        busy.append(f"vector store in {rag.chroma_path}")
    return busy


def _pg_has_tables(db: dict[str, Any]) -> bool:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'")
        (count,) = cursor.fetchone()
    return bool(count)


def _restore_database(db: dict[str, Any], vendor: str, dump: Path) -> None:
    from django.db import connections

    connections.close_all()  # nothing of ours may hold the database being replaced
    if vendor == "sqlite":
        target = Path(db["NAME"])
        target.parent.mkdir(parents=True, exist_ok=True)
        for suffix in ("-wal", "-shm"):  # a stale WAL would be replayed over the restored file
            Path(f"{target}{suffix}").unlink(missing_ok=True)
        partial = target.with_name(target.name + ".restoring")
        shutil.copyfile(dump, partial)
        os.replace(partial, target)
        return
    _run([_pg_tool("pg_restore"), "--clean", "--if-exists", "--no-owner", "--no-privileges", "--single-transaction",
          "--exit-on-error", "--dbname", str(db.get("NAME", "")), str(dump)], _pg_env(db), "pg_restore")


def _restore_originals(source: Path) -> None:
    source.mkdir(exist_ok=True)  # an archive without originals has no raw/ folder
    if storage.originals_kind() == "folder":
        _replace_dir(source, storage.raw_dir())
        return
    for checksum in storage.list_originals():  # --force: the archive's originals, and only those
        storage.remove_original(checksum)
    for path in sorted(source.iterdir()):
        storage.save_original(path.name, path.read_bytes())


def _restore_keyword_index(rag: RagSettings, source: Path) -> None:
    """The archive's index, committed as one new version of the configured store (readers follow)."""
    Bm25Index(keyword_storage(rag), refresh_seconds=0).replace_with(Bm25Index(source, refresh_seconds=0))


def _replace_dir(source: Path, target: Path) -> None:
    if target.exists():
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(source), str(target))


def _import_vectors(rag: RagSettings, info: dict[str, Any], unpacked: Path) -> None:
    """Recreates the collection with the metadata that names its model, then upserts every chunk."""
    from chromadb.api.shared_system_client import SharedSystemClient

    if not rag.chroma_url:
        if rag.chroma_path.exists():
            shutil.rmtree(rag.chroma_path)
        # chroma caches one system per directory in this process; the old one points at deleted files.
        SharedSystemClient.clear_system_cache()
    client = chroma_client(rag)
    if rag.chroma_collection in {getattr(c, "name", c) for c in client.list_collections()}:
        client.delete_collection(rag.chroma_collection)
    if not info["metadata"]:
        return  # the installation had no vector index yet
    collection = client.create_collection(
        rag.chroma_collection, configuration={"hnsw": {"space": "cosine"}}, metadata=info["metadata"],
        embedding_function=None,
    )
    embeddings = np.load(unpacked / EMBEDDINGS_FILE)
    with (unpacked / RECORDS_FILE).open() as f:
        records = [json.loads(line) for line in f]
    if len(records) != len(embeddings):
        raise BackupError(f"the archive holds {len(records)} chunks but {len(embeddings)} vectors")
    batch = min(EXPORT_BATCH, client.get_max_batch_size())
    for start in range(0, len(records), batch):
        part = records[start:start + batch]
        collection.upsert(ids=[r["id"] for r in part], embeddings=embeddings[start:start + batch],
                          documents=[r["text"] for r in part], metadatas=[r["metadata"] for r in part])
    if not rag.chroma_url:  # readers in running processes reopen the store when this marker moves
        (rag.chroma_path / "lorebot.changed").write_text(str(time.time_ns()))

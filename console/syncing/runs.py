"""One sync of a source: list the origin, index what is new or changed, remove what is gone.

Unchanged items (the same version as last time) are neither fetched nor embedded. A new or changed
item is fetched, stored by checksum and parsed in a child process like an upload (console.ingest),
then chunked, embedded and written through `Engine.ingest_parsed` under its document's engine id, so
its chunks replace the earlier version's. An item gone from the origin loses its chunks in both
indexes, then its rows.

Durability follows the ingest worker's: every item's outcome is committed (with the run's count) as
soon as it is known, a heartbeat says the run's worker is alive, and an item being synced is marked
`pending` on its SyncItem before anything reaches the indexes. A run whose worker died is queued again
(console.syncing.schedule) and carries on: items it already counted are skipped, a pending item is
finished with the same document (the engine's ingest is idempotent), so nothing is lost or doubled.
"""

from __future__ import annotations

import hashlib
import time
import traceback as tb
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import PurePosixPath
from typing import Any

import structlog
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from console.engine import get_engine
from console.ingest import parsing, storage
from console.ingest.worker import beating, parse_limits
from console.models import Document, Source, SyncFailure, SyncItem, SyncRun
from console.ops.logs import bound_context
from console.syncing.connectors import build_connector
from console.syncing.metrics import SYNC_ITEMS, SYNC_RUNS, SYNC_SECONDS
from ragcore.connectors import Connector, ConnectorConfigError, ConnectorError, FetchedItem, ItemFetchError, SourceItem
from ragcore.ingest import IngestResult, ParsedItem
from ragcore.metrics import PIPELINE_ERRORS
from ragcore.settings import MB
from ragcore.types import ParsedDocument

log = structlog.get_logger(__name__, component="sync")

# done, total: items with an outcome of those listed plus those gone (the command's progress bar).
Progress = Callable[[int, int], None]
_Result = dict[str, Any]
# Rows touched per statement when marking unchanged items (SQLite allows 999 parameters).
BATCH = 500
# New or changed items embedded and written together: one write per index for the batch.
BATCH_ITEMS = 32
NAME_CHARS = 255  # Document.original_filename


class _Stop(Exception):
    """The run is no longer this process's (taken over after a stale heartbeat, or its source was deleted)."""


class _ItemFailed(Exception):
    def __init__(self, error_type: str, message: str) -> None:
        self.error_type, self.message = error_type, message
        super().__init__(message)


def run_sync(run_id: int, *, task_id: str = "", on_progress: Progress | None = None) -> _Result:
    """Runs (or resumes) one sync; never raises past the run record."""
    with bound_context(sync_run_id=run_id, task_id=task_id):
        try:
            return _Sync(run_id, task_id, on_progress).run()
        except Exception as exc:  # the run record, not the task queue, is where failures are reported
            log.exception("sync.crashed", error=str(exc))
            PIPELINE_ERRORS.labels("sync").inc()
            _fail_after_crash(run_id, exc)
            return {"run_id": run_id, "state": SyncRun.State.FAILED, "error": f"{type(exc).__name__}: {exc}"}


def document_name(key: str, filename: str) -> str:
    """A synced document's name: its key without a URL scheme, ending in the fetched file's extension so the
    loaders (and a later reindex from the original) see its type; cut to the column's size, keeping the end."""
    name = key.split("://", 1)[1] if "://" in key else key
    suffix = PurePosixPath(filename).suffix
    if suffix and PurePosixPath(name).suffix.lower() != suffix.lower():
        name = f"{name.rstrip('/')}{suffix}"
    if len(name) > NAME_CHARS:
        name = f"{name[:150]}…{name[-(NAME_CHARS - 151):]}"
    return name


@dataclass(frozen=True)
class _Prepared:
    """A new or changed item, fetched, parsed and pending, waiting for its batch to be embedded."""

    item: SourceItem
    si: SyncItem
    doc: Document
    parsed: ParsedItem
    outcome: str
    old_checksum: str
    started: float


@dataclass
class _Plan:
    unchanged: list[SyncItem]
    todo: list[tuple[SourceItem, SyncItem | None]]
    gone: list[SyncItem]
    # Synced before, but the origin could not serve them this time: kept as they are, reported as failed.
    unavailable: list[tuple[SourceItem, SyncItem]] = field(default_factory=list)
    # Unchanged items whose address at the origin moved (a Git file's link names the new commit).
    moved: set[int] = field(default_factory=set)


class _Sync:
    def __init__(self, run_id: int, task_id: str, on_progress: Progress | None) -> None:
        self.run_id = run_id
        self.task_id = task_id
        self.on_progress = on_progress
        self.started = time.perf_counter()
        self.done = 0
        self.total = 0
        self.kind = ""

    # -- the run -------------------------------------------------------------------------------

    def run(self) -> _Result:
        started = self._start()
        if started is None:
            return {"run_id": self.run_id, "state": "skipped"}
        run, source = started
        self.kind = source.kind
        with _heartbeat(self.run_id):
            try:
                connector = build_connector(source.kind, source.config, source_id=source.pk)
                known = dict(SyncItem.objects.filter(source=source).exclude(version="").values_list("key", "version"))
                items = _unique(connector.list_items(known))
            except ConnectorError as exc:  # bad settings, unreachable origin: nothing is removed
                return self._fail(run, source, exc)
            run.listed_items(len(items), connector.describe())
            plan = self._plan(run, source, items)
            self.total = len(items) + len(plan.gone)
            self.done = len(items) - len(plan.unchanged) - len(plan.todo) - len(plan.unavailable)  # before a crash
            try:
                self._mark_unchanged(run, plan.unchanged, plan.moved)
                for item, si in plan.unavailable:
                    kept = f"; kept as synced {si.synced_at:%Y-%m-%d %H:%M} UTC" if si.synced_at else "; kept as synced"
                    self._failed(run, item.key, "Unavailable", f"{item.key}: {item.unavailable}{kept}")
                self._sync_items(run, source, connector, plan.todo)
                for gone in plan.gone:
                    self._check_ours()
                    self._remove(run, gone)
            except _Stop:
                log.info("sync.stopped", reason="no longer ours")
                return {"run_id": self.run_id, "state": "stopped"}
        return self._finish(run, source)

    def _start(self) -> tuple[SyncRun, Source] | None:
        source_id = SyncRun.objects.filter(pk=self.run_id).values_list("source_id", flat=True).first()
        if source_id is None:
            log.info("sync.skipped", reason="missing")
            return None
        with transaction.atomic():
            # The source first, as deleting it does: the two never wait on each other's rows.
            source = Source.objects.select_for_update().filter(pk=source_id).first()
            run = SyncRun.objects.select_for_update().filter(pk=self.run_id).first()
            if source is None or run is None or run.is_finished:
                log.info("sync.skipped", reason="missing" if run is None or source is None else run.state)
                return None
            if self.task_id and run.task_id and run.task_id != self.task_id:
                log.info("sync.skipped", reason="superseded task", owner=run.task_id)  # re-queued after a crash
                return None
            run.start(self.task_id)
        log.info("sync.started", source_id=source.pk, source=source.name, kind=source.kind, attempt=run.attempts)
        return run, source

    def _plan(self, run: SyncRun, source: Source, items: list[SourceItem]) -> _Plan:
        known = {si.key: si for si in SyncItem.objects.filter(source=source).select_related("document")}
        plan = _Plan([], [], [])
        for item in items:
            si = known.get(item.key)
            if si is not None and si.run_id == run.pk and not si.pending:
                continue  # this run counted it before its worker died
            doc = si.document if si is not None else None
            if (si is not None and doc is not None and not si.pending and si.version == item.version
                    and doc.status == Document.Status.INDEXED):
                if item.unavailable:
                    plan.unavailable.append((item, si))
                else:
                    if si.url != item.url:  # the same file at a newer commit: its link follows the synced one
                        si.url = doc.origin_url = item.url
                        plan.moved.add(si.pk)
                    plan.unchanged.append(si)
            else:
                plan.todo.append((item, si))
        listed = {item.key for item in items}
        plan.gone = [si for key, si in known.items() if key not in listed]
        return plan

    def _check_ours(self) -> None:
        """One small read per item: a run re-queued elsewhere, or whose source was deleted, stops here."""
        row = SyncRun.objects.filter(pk=self.run_id).values("state", "task_id").first()
        if row is None or row["state"] != SyncRun.State.RUNNING:
            raise _Stop
        if self.task_id and row["task_id"] and row["task_id"] != self.task_id:
            raise _Stop

    def _finish(self, run: SyncRun, source: Source) -> _Result:
        with transaction.atomic():
            locked = SyncRun.objects.select_for_update().filter(pk=self.run_id).first()
            if locked is None or locked.state != SyncRun.State.RUNNING:
                return {"run_id": self.run_id, "state": "stopped"}
            state = locked.finish()
            source.refresh_from_db()
            source.record_run(locked)
        self._record_metrics(state)
        log.info("sync.finished", source=source.name, state=state, **locked.counts(),
                 embedded_chunks=locked.embedded_chunks, seconds=round(time.perf_counter() - self.started, 3))
        return {"run_id": self.run_id, "state": state, **locked.counts()}

    def _fail(self, run: SyncRun, source: Source, exc: ConnectorError) -> _Result:
        error = str(exc)
        PIPELINE_ERRORS.labels("sync").inc()
        with transaction.atomic():
            locked = SyncRun.objects.select_for_update().get(pk=self.run_id)
            locked.fail(error)
            source.refresh_from_db()
            source.record_run(locked)
        self._record_metrics(SyncRun.State.FAILED)
        field = exc.field if isinstance(exc, ConnectorConfigError) else ""
        log.warning("sync.failed", source=source.name, error=error, field=field or None)
        return {"run_id": self.run_id, "state": SyncRun.State.FAILED, "error": error}

    def _record_metrics(self, state: str) -> None:
        SYNC_RUNS.labels(self.kind, state).inc()
        SYNC_SECONDS.labels(self.kind).observe(time.perf_counter() - self.started)

    def _progressed(self, n: int = 1) -> None:
        self.done += n
        if self.on_progress:
            self.on_progress(self.done, self.total)

    # -- unchanged -----------------------------------------------------------------------------

    def _mark_unchanged(self, run: SyncRun, items: list[SyncItem], moved: set[int]) -> None:
        """Seen at the origin as they were: only their synced time moves (one statement per batch, no fetch),
        and the address of those in `moved` (a row each, only when it changed)."""
        now = timezone.now()
        for start in range(0, len(items), BATCH):
            batch = items[start:start + BATCH]
            with transaction.atomic():
                n = SyncItem.objects.filter(pk__in=[si.pk for si in batch]).update(synced_at=now, run=run)
                Document.objects.filter(pk__in=[si.document_id for si in batch if si.document_id]).update(synced_at=now)
                relinked = [si for si in batch if si.pk in moved]
                if relinked:
                    SyncItem.objects.bulk_update(relinked, ["url"])
                    Document.objects.bulk_update([si.document for si in relinked if si.document], ["origin_url"])
                run.count("unchanged", n)
            SYNC_ITEMS.labels(self.kind, "unchanged").inc(n)
            self._progressed(n)

    # -- new or changed ------------------------------------------------------------------------

    def _sync_items(self, run: SyncRun, source: Source, connector: Connector,
                    todo: list[tuple[SourceItem, SyncItem | None]]) -> None:
        """New and changed items, BATCH_ITEMS at a time: each is fetched, parsed and marked pending on its own,
        then the batch is embedded and written with one call per index (a write per document would cost as
        much as embedding it), and each item's outcome is committed as the engine reports it."""
        for start in range(0, len(todo), BATCH_ITEMS):
            prepared: list[_Prepared] = []
            for item, si in todo[start:start + BATCH_ITEMS]:
                self._check_ours()
                ready = self._guarded(run, item, partial(self._prepare, run, source, connector, item, si))
                if ready is not None:
                    prepared.append(ready)
            if prepared:
                self._check_ours()  # the last moment before the indexes: a run taken over leaves them to its new owner
                self._index(run, source, prepared)

    def _guarded(self, run: SyncRun, item: SourceItem, step: Callable[[], _Prepared | None]) -> _Prepared | None:
        """One item's step; its failure is recorded on the run and the others go on."""
        try:
            return step()
        except _ItemFailed as exc:
            self._failed(run, item.key, exc.error_type, exc.message)
        except _Stop:
            raise
        except Exception as exc:  # anything else is this item's failure; the others keep syncing
            PIPELINE_ERRORS.labels("sync").inc()
            self._failed(run, item.key, type(exc).__name__, f"{item.key}: {type(exc).__name__}: {exc}",
                         trace=tb.format_exc())
        return None

    def _prepare(self, run: SyncRun, source: Source, connector: Connector, item: SourceItem,
                 si: SyncItem | None) -> _Prepared | None:
        """Fetches and parses one item and marks it pending with its document; None when its bytes are unchanged."""
        fetched = self._fetch(connector, item)
        data = fetched.data
        checksum = hashlib.sha256(data).hexdigest()
        doc = si.document if si is not None and si.document is not None else None
        if doc is not None and doc.status == Document.Status.DELETING:
            doc = None  # deleted from the Documents page meanwhile: the origin still has it, so it comes back
        pending = si is not None and bool(si.pending)
        outcome = si.pending if si is not None and si.pending else "changed" if doc is not None else "added"
        if doc is not None and not pending and doc.checksum == checksum and doc.status == Document.Status.INDEXED:
            # A new version with the same bytes (a touched file, a re-sent page): nothing to embed.
            assert si is not None
            now = timezone.now()
            with transaction.atomic():
                si.done(run, version=item.version, url=item.url, at=now)
                doc.mark_synced(source, url=item.url, at=now)
                run.count("unchanged")
            SYNC_ITEMS.labels(self.kind, "unchanged").inc()
            self._progressed()
            return None
        name = document_name(item.key, fetched.filename or item.filename or PurePosixPath(item.key).name)
        parsed = self._parse(item, data, checksum, name)
        if item.title:
            parsed = replace(parsed, title=item.title)
        with transaction.atomic():
            old_checksum = doc.checksum if doc is not None else ""
            if doc is None:
                doc = Document.create_synced(source, checksum=checksum, name=name, kind=parsed.kind, size=len(data),
                                             url=item.url)
            else:
                doc.checksum, doc.size, doc.original_filename = checksum, len(data), name
                doc.save(update_fields=["checksum", "size", "original_filename", "updated_at"])
                doc.mark_indexing()
            si = si or SyncItem(source=source, key=item.key)
            si.begin(run, outcome, doc)
        indexed = ParsedItem(doc.engine_id, parsed, name, checksum, collection=doc.collection.key)
        return _Prepared(item, si, doc, indexed, outcome, old_checksum,
                         time.perf_counter())

    def _index(self, run: SyncRun, source: Source, batch: list[_Prepared]) -> None:
        try:
            results = get_engine().ingest_parsed([p.parsed for p in batch])
        except Exception as exc:  # the engine reports bad documents as results; this is anything else
            PIPELINE_ERRORS.labels("sync").inc()
            for p in batch:
                p.doc.mark_failed(f"{p.item.key}: {type(exc).__name__}: {exc}")
                self._failed(run, p.item.key, type(exc).__name__, f"{p.item.key}: {type(exc).__name__}: {exc}",
                             trace=tb.format_exc())
            return
        for p, result in zip(batch, results, strict=True):
            self._guarded(run, p.item, partial(self._indexed, run, source, p, result))

    def _indexed(self, run: SyncRun, source: Source, p: _Prepared, result: IngestResult) -> None:
        if result.status == "failed":
            p.doc.mark_failed(result.error)
            raise _ItemFailed(result.error_type or "IngestFailed", result.error or f"{p.item.key}: indexing failed")
        chunks = result.chunks
        if result.status == "unchanged":  # both indexes held this version already (written just before a crash)
            chunks = get_engine().document_status(p.doc.engine_id).sparse_chunks
        now = timezone.now()
        with transaction.atomic():
            p.doc.mark_indexed(chunks=chunks, title=result.title or p.parsed.parsed.title,
                               kind=result.kind or p.parsed.parsed.kind)
            p.doc.mark_synced(source, url=p.item.url, at=now)
            p.si.done(run, version=p.item.version, url=p.item.url, at=now)
            run.count(p.outcome, chunks=result.chunks if result.status == "indexed" else 0)
            if SyncFailure.objects.filter(run=run, key=p.item.key).delete()[0]:  # it failed before a crash, not now
                run.count("failed", -1)
        if p.old_checksum and p.old_checksum != p.parsed.checksum:
            _forget_original(p.old_checksum)
        SYNC_ITEMS.labels(self.kind, p.outcome).inc()
        self._progressed()
        log.info("sync.item_synced", key=p.item.key, outcome=p.outcome, chunks=chunks,
                 seconds=round(time.perf_counter() - p.started, 3))

    def _fetch(self, connector: Connector, item: SourceItem) -> FetchedItem:
        try:
            fetched = connector.fetch(item)
        except ItemFetchError as exc:
            raise _ItemFailed("ItemFetchError", f"{exc.key}: {exc.reason}") from None
        except ConnectorError as exc:
            raise _ItemFailed(type(exc).__name__, f"{item.key}: {exc}") from None
        limit = settings.RAG_MAX_FILE_MB * MB
        if len(fetched.data) > limit:
            raise _ItemFailed("FileTooLarge", f"{item.key}: {len(fetched.data) / MB:.1f} MB is over the "
                                              f"{settings.RAG_MAX_FILE_MB} MB limit (RAG_MAX_FILE_MB)")
        if not fetched.data:
            raise _ItemFailed("EmptyFile", f"{item.key}: empty file")
        return fetched

    def _parse(self, item: SourceItem, data: bytes, checksum: str, name: str) -> ParsedDocument:
        """Parsed as an upload is: in a child process within the parse limits, from the stored original."""
        storage.save_original(checksum, data)
        try:
            with storage.named_original(checksum, name) as path:
                return parsing.parse_original(path, name, parse_limits(), should_stop=self._stopped)
        except parsing.ParseFailed as exc:
            PIPELINE_ERRORS.labels("loader").inc()
            _forget_original(checksum)
            message = exc.message if item.key in exc.message else f"{item.key}: {exc.message}"
            raise _ItemFailed(exc.error_type, message) from None
        except parsing.Stopped:
            raise _Stop from None

    def _stopped(self) -> bool:
        try:
            self._check_ours()
        except _Stop:
            return True
        return False

    def _failed(self, run: SyncRun, key: str, error_type: str, message: str, *, trace: str = "") -> None:
        """One item failed: named with its error on the run; it is tried again by the next sync."""
        with transaction.atomic():
            _, created = SyncFailure.objects.update_or_create(
                run=run, key=key[:1000], defaults={"error_type": error_type[:100], "message": message})
            if created:  # a resumed run retrying an item that failed before the crash counts it once
                run.count("failed")
        SYNC_ITEMS.labels(self.kind, "failed").inc()
        self._progressed()
        log.warning("sync.item_failed", key=key, error_type=error_type, error=message, traceback=trace or None)

    # -- gone ----------------------------------------------------------------------------------

    def _remove(self, run: SyncRun, si: SyncItem) -> None:
        """Gone from the origin: its chunks leave both indexes first, then its rows (a crash between repeats it)."""
        doc = si.document
        if doc is not None:
            get_engine().delete_document(doc.engine_id)
        with transaction.atomic():
            if doc is not None:
                Document.objects.filter(pk=doc.pk).delete()
            si.delete()
            if doc is not None:  # an item that never became a document was never added either
                run.count("removed")
        if doc is not None:
            _forget_original(doc.checksum)
            SYNC_ITEMS.labels(self.kind, "removed").inc()
            log.info("sync.item_removed", key=si.key, document_id=doc.pk)
        self._progressed()


def _unique(items: Iterator[SourceItem]) -> list[SourceItem]:
    """The listing, each key once (the first wins): a connector listing a key twice must not double it."""
    seen: dict[str, SourceItem] = {}
    for item in items:
        seen.setdefault(item.key, item)
    return list(seen.values())


def _forget_original(checksum: str) -> None:
    """Removes a stored original no document uses any more."""
    if not Document.objects.filter(checksum=checksum).exists():
        try:
            storage.remove_original(checksum)
        except OSError:
            log.warning("sync.original_not_removed", checksum=checksum)


def _fail_after_crash(run_id: int, exc: Exception) -> None:
    try:
        with transaction.atomic():
            run = SyncRun.objects.select_for_update().select_related("source").filter(pk=run_id).first()
            if run is None or run.is_finished:
                return
            run.fail(f"{type(exc).__name__}: {exc}")
            run.source.record_run(run)
        SYNC_RUNS.labels(run.source.kind, "crashed").inc()
    except Exception:
        log.exception("sync.record_failed", run_id=run_id)


def _heartbeat(run_id: int) -> AbstractContextManager[None]:
    alive = SyncRun.objects.filter(pk=run_id, state=SyncRun.State.RUNNING)
    return beating(f"sync-heartbeat-{run_id}", lambda: alive.update(heartbeat_at=timezone.now()),
                   failed_event="sync.heartbeat_failed", run_id=run_id)

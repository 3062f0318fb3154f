"""What the console stores: documents and their versions, ingest jobs, conversations, feedback."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import IntegrityError, models, transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.crypto import salted_hmac
from django.utils.text import slugify

from console import rows as sql
from console.ingest import storage
from ragcore.connectors import connector_class
from ragcore.errors import RagError

if TYPE_CHECKING:
    from ragcore.types import Answer


def default_collection_id() -> int:
    """The default collection's pk (created on first use): where a document goes when nobody chose one."""
    return Collection.default().pk


class Document(models.Model):
    """One version of an uploaded file; its original lives in data/raw/<checksum>."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        INDEXING = "indexing"
        INDEXED = "indexed"
        FAILED = "failed"
        DELETING = "deleting"  # its chunks are being removed by the worker
        SUPERSEDED = "superseded"  # an older version, its chunks replaced by a newer upload

    # Documents that are "current": every status but an old version or one on its way out.
    NOT_CURRENT = (Status.SUPERSEDED, Status.DELETING)

    checksum = models.CharField(max_length=64)
    title = models.CharField(max_length=300, blank=True)
    original_filename = models.CharField(max_length=255)
    kind = models.CharField(max_length=20, blank=True)  # what the loader detected: pdf, docx, markdown…
    size = models.BigIntegerField(default=0)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    chunk_count = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    version = models.PositiveIntegerField(default=1)
    previous = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="next_versions")
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    # Who may find it: every chunk carries this collection's key, and retrieval filters on it.
    # PROTECT: a collection is deleted only once empty (Collection.delete_if_empty).
    collection = models.ForeignKey("Collection", on_delete=models.PROTECT, related_name="documents",
                                   default=default_collection_id)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    indexed_at = models.DateTimeField(null=True, blank=True)
    # Lorebot's own guide (data/docs, ingested by `make run`): removable in one action (console.ingest.guide).
    is_guide = models.BooleanField(default=False)
    # A synced document (console.syncing): the source it comes from, its address there ("" for a folder:
    # the source viewer) and when a sync last found it at its origin. Uploads have none of these.
    source = models.ForeignKey("Source", null=True, blank=True, on_delete=models.SET_NULL, related_name="documents")
    origin_url = models.CharField(max_length=2000, null=True, blank=True)
    synced_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # The same content is uploaded once: a second upload is "already ingested". A synced document
            # follows its origin instead (changed, removed, linked there), so one with the same content as an
            # upload, or as another source's, is a document of its own.
            models.UniqueConstraint(fields=["checksum"], condition=~Q(status="superseded") & Q(source__isnull=True),
                                    name="document_checksum_current_unique"),
        ]
        indexes = [
            # The documents page filters by status and type and lists newest first.
            models.Index(fields=["status", "-created_at"]),
            models.Index(fields=["kind", "-created_at"]),
            models.Index(fields=["original_filename"]),
        ]

    def __str__(self) -> str:
        return self.title or self.original_filename

    @property
    def engine_id(self) -> str:
        """The id both indexes know this document by; stable across re-ingests of this row."""
        return f"doc-{self.pk}"

    def has_original(self) -> bool:
        """Whether this host can read the uploaded original (reindex and reconcile rebuild from it)."""
        return storage.has_original(self.checksum)

    # -- transitions: the only code that assigns a document's status ---------------------------

    def _set_status(self, status: str, *fields: str) -> None:
        self.status = status
        self.save(update_fields=["status", *fields, "updated_at"])

    def mark_queued(self, *, error: str = "") -> None:
        """Waiting for the worker (uploaded, re-ingested, retried); `error`: why the last try failed, if it is a retry."""
        self.error = error
        self._set_status(self.Status.QUEUED, "error")

    def mark_indexing(self) -> None:
        self.error = ""
        self._set_status(self.Status.INDEXING, "error")

    def mark_indexed(self, *, chunks: int, title: str, kind: str) -> None:
        """Searchable: both indexes hold its `chunks`; the loader's title and kind, where it found them."""
        self.chunk_count, self.error, self.indexed_at = chunks, "", timezone.now()
        self.title = title or self.title
        self.kind = kind or self.kind
        self._set_status(self.Status.INDEXED, "chunk_count", "error", "indexed_at", "title", "kind")

    def mark_failed(self, error: str) -> None:
        self.error = error
        self._set_status(self.Status.FAILED, "error")

    def mark_guide(self) -> None:
        """Part of Lorebot's own guide: listed as such, and removed with it."""
        self.is_guide = True
        self.save(update_fields=["is_guide", "updated_at"])

    @classmethod
    def create_synced(cls, source: Source, *, checksum: str, name: str, kind: str, size: int, url: str) -> Document:
        """A new document of `source`, being indexed by its sync (its row first: its engine id names the chunks)."""
        return cls.objects.create(checksum=checksum, original_filename=name, kind=kind, size=size,
                                  status=cls.Status.INDEXING, source=source, origin_url=url,
                                  collection_id=source.collection_id)

    def mark_synced(self, source: Source, *, url: str, at: datetime) -> None:
        """Found at its origin by a sync of `source` (`url`: its address there, "" for none)."""
        self.source, self.origin_url, self.synced_at = source, url, at
        self.save(update_fields=["source", "origin_url", "synced_at", "updated_at"])

    def move_to(self, collection: Collection) -> None:
        """In another collection (the caller re-labels its chunks: console.access.moves)."""
        self.collection = collection
        self.save(update_fields=["collection", "updated_at"])

    def mark_deleting(self) -> None:
        """On its way out: the worker removes its chunks, then its row."""
        self._set_status(self.Status.DELETING)

    def mark_superseded(self) -> None:
        """An older version: a newer upload of the same file replaced its chunks."""
        self._set_status(self.Status.SUPERSEDED)

    def restore_after_cancel(self, *, was_deleting: bool) -> None:
        """Back to what it was before a cancelled job touched it: indexed if it ever was, else failed."""
        if was_deleting:
            self._set_status(self.Status.INDEXED if self.chunk_count else self.Status.FAILED)
        elif self.status in (self.Status.QUEUED, self.Status.INDEXING):
            self.error = "" if self.indexed_at else "ingest cancelled"
            self._set_status(self.Status.INDEXED if self.indexed_at else self.Status.FAILED, "error")


class Original(models.Model):
    """An uploaded file's bytes, named by checksum, when originals are kept in the database
    (`RAG_ORIGINALS_STORAGE=database`; console.ingest.dbstorage reads and writes it)."""

    checksum = models.CharField(max_length=64, primary_key=True)
    data = models.BinaryField()
    size = models.BigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.checksum} ({self.size} bytes)"
class GuideRemoval(models.Model):
    """Lorebot's guide was removed from the console: `manage.py ingest --guide` (`make run`) never brings it back."""

    removed_at = models.DateTimeField(auto_now_add=True)
    removed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)

    def __str__(self) -> str:
        return f"guide removed {self.removed_at:%Y-%m-%d %H:%M}"

    @classmethod
    def happened(cls) -> bool:
        return cls.objects.exists()


class IngestJob(models.Model):
    """A batch of files to index, run by the `db_worker` process; survives worker crashes."""

    class State(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        PARTIALLY_FAILED = "partially_failed", "partially failed"
        CANCELLING = "cancelling"  # cancelled while a worker ran it: the worker stops its file, then it is CANCELLED
        CANCELLED = "cancelled"

    FINISHED = (State.SUCCEEDED, State.FAILED, State.PARTIALLY_FAILED, State.CANCELLED)

    state = models.CharField(max_length=20, choices=State.choices, default=State.QUEUED)
    stage = models.CharField(max_length=40, default="queued")
    progress_done = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(default=0)
    attempts = models.PositiveIntegerField(default=0)
    history = models.JSONField(default=list, blank=True)  # [{"at", "event", ...}]: retries, crashes
    task_id = models.CharField(max_length=64, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["state", "-created_at"])]

    def __str__(self) -> str:
        return f"job {self.pk} ({self.state})"

    @property
    def is_finished(self) -> bool:
        return self.state in self.FINISHED

    def add_event(self, event: str, **extra: Any) -> None:
        """Appends one entry to the job's history (saved with the job's next save)."""
        self.history = [*self.history, {"at": timezone.now().isoformat(), "event": event, **extra}]

    # -- transitions: the only code that assigns a job's state ---------------------------------

    def _set_state(self, state: str, stage: str, event: str, /, *fields: str, **extra: Any) -> None:
        self.state, self.stage = state, stage
        self.add_event(event, **extra)
        self.save(update_fields=["state", "stage", "history", *fields])

    def start(self) -> None:
        """A worker took it: one more attempt, and a fresh heartbeat."""
        now = timezone.now()
        self.attempts += 1
        self.started_at = self.started_at or now
        self.heartbeat_at = now
        self._set_state(self.State.RUNNING, "starting", "started", "attempts", "started_at", "heartbeat_at",
                        attempt=self.attempts)

    def wait_to_retry(self, delay_seconds: float) -> None:
        """A file failed for a reason that may pass: queued again, to run after `delay_seconds`."""
        self._set_state(self.State.QUEUED, "waiting to retry", "transient error; retrying",
                        attempt=self.attempts + 1, in_seconds=delay_seconds)

    def finish(self, *, files: int, failed: int, refused: int = 0) -> str:
        """Every file has an outcome; the job's final state follows from how many of its `files` failed, and is returned.

        Files refused at upload never ran: they count only when nothing else was there to run.
        """
        if not files:
            state = self.State.FAILED if refused else self.State.SUCCEEDED
        else:
            state = self.State.SUCCEEDED if not failed else self.State.FAILED if failed == files else self.State.PARTIALLY_FAILED
        self.finished_at = timezone.now()
        self.progress_done = files
        extra = {"refused": refused} if refused else {}
        self._set_state(state, "done", "finished", "finished_at", "progress_done", state=state, failed=failed, **extra)
        return state

    def retry(self, *, files: int, done: int) -> None:
        """A finished job queued again for its `files` failed or cancelled files (`done` others keep their outcome)."""
        self.finished_at = None
        self.progress_done = done
        self._set_state(self.State.QUEUED, "queued", "retry requested", "finished_at", "progress_done", files=files)

    def request_cancel(self) -> None:
        """Cancelled while a worker runs it: its queued files are cancelled now; the worker stops the running
        one at its next step and then calls `cancel()`."""
        self._cancel_files((IngestJobFile.State.QUEUED,))
        self._set_state(self.State.CANCELLING, "cancelling", "cancel requested")

    def cancel(self, *, reason: str = "") -> None:
        """Every file with no outcome yet is cancelled, its document back to what it was; then the job is finished.

        `reason`: what a file that was running is told (e.g. its worker died while stopping it).
        Called with the job locked, by whoever holds it: the cancel itself, the worker once it has
        stopped, or the recovery of a job whose worker died while cancelling.
        """
        self._cancel_files((IngestJobFile.State.QUEUED, IngestJobFile.State.RUNNING), reason=reason)
        self.finished_at = timezone.now()
        self._set_state(self.State.CANCELLED, "cancelled", "cancelled", "finished_at")

    def _cancel_files(self, states: tuple[str, ...], *, reason: str = "") -> None:
        for f in self.files.select_related("document").filter(state__in=states):
            f.cancel(reason=reason if f.state == IngestJobFile.State.RUNNING else "")
            if f.document is not None:
                f.document.restore_after_cancel(was_deleting=f.action == IngestJobFile.Action.DELETE)

    def crash(self, exc: BaseException) -> None:
        """Something outside any one file broke the run."""
        self.finished_at = timezone.now()
        self._set_state(self.State.FAILED, "failed", "crashed", "finished_at", error=f"{type(exc).__name__}: {exc}")

    def requeue_after_worker_died(self) -> None:
        """Its worker stopped beating (SIGKILL, OOM, power loss): queued for another worker."""
        self._set_state(self.State.QUEUED, "queued after worker died", "worker died; retrying",
                        attempt=self.attempts + 1)


class IngestJobFile(models.Model):
    """One file of a job, with its own outcome and, when it failed, the whole error."""

    class State(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        INDEXED = "indexed"
        UNCHANGED = "unchanged"
        FAILED = "failed"
        CANCELLED = "cancelled"
        DELETED = "deleted"  # a delete job removed this document's chunks
        REFUSED = "refused"  # refused at upload (empty, wrong type, too large, duplicate…): never queued

    class Action(models.TextChoices):
        INDEX = "index"  # index unless both indexes already hold this exact content
        REINDEX = "reindex"  # re-embed even when unchanged (re-ingest, reconcile, reindex)
        DELETE = "delete"  # remove the document's chunks, then its row

    RETRYABLE = (State.FAILED, State.CANCELLED)
    # Files the worker has to do nothing more for (REFUSED ones were never its to do).
    OUTCOMES = (State.INDEXED, State.UNCHANGED, State.FAILED, State.CANCELLED, State.DELETED)

    job = models.ForeignKey(IngestJob, on_delete=models.CASCADE, related_name="files")
    document = models.ForeignKey(Document, null=True, blank=True, on_delete=models.SET_NULL, related_name="job_files")
    filename = models.CharField(max_length=255)
    action = models.CharField(max_length=10, choices=Action.choices, default=Action.INDEX)
    state = models.CharField(max_length=20, choices=State.choices, default=State.QUEUED)
    chunks = models.PositiveIntegerField(default=0)
    attempts = models.PositiveIntegerField(default=0)
    error_type = models.CharField(max_length=100, blank=True)
    error_message = models.TextField(blank=True)
    traceback = models.TextField(blank=True)
    seconds = models.FloatField(default=0.0)
    # Progress inside the file while it runs: chunks embedded of its total (0 of 0 until it is chunked).
    chunks_embedded = models.PositiveIntegerField(default=0)
    chunks_total = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["pk"]

    def __str__(self) -> str:
        return f"{self.filename} ({self.state})"

    @classmethod
    def refused(cls, job: IngestJob, filename: str, code: str, reason: str) -> IngestJobFile:
        """The record of a file refused at upload (unsaved): `code` says why (empty, type, duplicate…), `reason` in words."""
        return cls(job=job, filename=filename[:255], state=cls.State.REFUSED, error_type=code[:100], error_message=reason)

    # -- transitions: the only code that assigns a file's state --------------------------------

    def start(self) -> None:
        self.state, self.attempts, self.started_at = self.State.RUNNING, self.attempts + 1, timezone.now()
        self.chunks_embedded = self.chunks_total = 0
        self.save(update_fields=["state", "attempts", "started_at", "chunks_embedded", "chunks_total"])

    def report_embedded(self, done: int, total: int) -> None:
        """`done` of its `total` chunks are embedded (progress, not state: the job page and its ETA read it)."""
        self.chunks_embedded, self.chunks_total = done, total
        self.save(update_fields=["chunks_embedded", "chunks_total"])

    def finish(self, state: str, *, chunks: int = 0, seconds: float = 0.0,
               error: tuple[str, str, str] = ("", "", "")) -> None:
        """Its outcome: indexed, unchanged, deleted, failed or cancelled (queued: to be tried again);
        `error` is (type, message, traceback)."""
        self.state, self.chunks, self.seconds = state, chunks, seconds
        self.error_type, self.error_message, self.traceback = error
        self.save(update_fields=["state", "chunks", "seconds", "error_type", "error_message", "traceback", "document"])

    def requeue(self) -> None:
        """To be tried again by a retried job, with fresh attempts."""
        self.state, self.attempts, self.error_type, self.error_message, self.traceback = self.State.QUEUED, 0, "", "", ""
        self.save(update_fields=["state", "attempts", "error_type", "error_message", "traceback"])

    def cancel(self, *, reason: str = "") -> None:
        """Will not run (queued) or stopped mid-way (running); `reason` says at which step, if it ran."""
        self.state = self.State.CANCELLED
        self.error_type, self.error_message = ("Cancelled", reason) if reason else (self.error_type, self.error_message)
        self.save(update_fields=["state", "error_type", "error_message"])

    def crash(self, exc: BaseException, trace: str) -> None:
        self.state, self.error_type, self.error_message = self.State.FAILED, type(exc).__name__, f"{self.filename}: {exc}"
        self.traceback = trace
        self.save(update_fields=["state", "error_type", "error_message", "traceback"])


class Conversation(models.Model):
    """One thread of questions on one surface: a web chat, a Slack thread, a Discord channel."""

    class Surface(models.TextChoices):
        WEB = "web"
        SLACK = "slack"
        DISCORD = "discord"
        CLI = "cli"

    surface = models.CharField(max_length=10, choices=Surface.choices)
    external_key = models.CharField(max_length=255)  # e.g. "T123:C456:1712345.678" for a Slack thread
    user_key = models.CharField(max_length=255, blank=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    title = models.CharField(max_length=200, blank=True)
    # The collection keys its first question could search (console.chat.access), kept for the whole
    # conversation: a thread started in a channel keeps that channel's scope. None: not limited
    # (staff, or a conversation older than collections); each question is further limited to what
    # its asker may search now, so a narrower grant applies at once.
    scope = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]
        constraints = [models.UniqueConstraint(fields=["surface", "external_key"], name="conversation_surface_key_unique")]
        indexes = [
            # The conversations page filters by surface and lists the most recent first.
            models.Index(fields=["surface", "-updated_at"]),
            models.Index(fields=["-updated_at"]),
            models.Index(fields=["user", "-updated_at"]),
        ]

    def __str__(self) -> str:
        return self.title or f"{self.surface}:{self.external_key}"

    @classmethod
    def find_or_start(cls, surface: str, external_key: str, *, defaults: dict[str, Any],
                      likely_new: bool = False) -> tuple[Conversation, bool]:
        """The conversation of this key, or a new one with `defaults`; and whether it is new.

        `likely_new`: the caller names new conversations by fresh keys (the web chat's uuids), so the
        row is inserted first and looked up only when the key was taken: one query fewer than
        get_or_create's look-up-then-insert, for every web question.
        """
        if not likely_new:
            return cls.objects.get_or_create(surface=surface, external_key=external_key, defaults=defaults)
        conversation = cls(surface=surface, external_key=external_key, **defaults)
        try:
            with transaction.atomic():  # a savepoint: on PostgreSQL a failed INSERT would end the transaction
                sql.insert([conversation])
            return conversation, True
        except IntegrityError:
            return cls.objects.get(surface=surface, external_key=external_key), False


class Message(models.Model):
    class Role(models.TextChoices):
        USER = "user"
        ASSISTANT = "assistant"

    IN_PROGRESS = "in_progress"  # the `error` of an answer still being written
    ORPHANED = "interrupted"  # the `error` of an answer whose process died while writing it

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=10, choices=Role.choices)
    text = models.TextField(blank=True)
    citations = models.JSONField(default=list, blank=True)
    retrieval_mode = models.CharField(max_length=10, blank=True)
    provider = models.CharField(max_length=40, blank=True)
    model = models.CharField(max_length=100, blank=True)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    latency_ms = models.FloatField(null=True, blank=True)
    error = models.CharField(max_length=200, blank=True)
    # The documents do not cover the question: Lorebot declined, or the model said so.
    not_covered = models.BooleanField(default=False)
    # The collection keys this answer searched (an audit record: what the asker could see then).
    collections = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # The process writing an answer in progress (console.ops.orphans.process_token) and when it last
    # said so: an answer whose process died is finished as ORPHANED by whoever notices first.
    owner = models.CharField(max_length=200, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "pk"]
        indexes = [
            models.Index(fields=["conversation", "created_at"]),
            # The dashboard counts and charts questions and latency by day.
            models.Index(fields=["role", "created_at"]),
            # The orphan sweep looks at answers in progress only: a handful among millions.
            models.Index(fields=["heartbeat_at"], condition=Q(error="in_progress"), name="message_in_progress"),
        ]

    def __str__(self) -> str:
        return f"{self.role}: {self.text[:60]}"

    @classmethod
    def open_exchange(cls, conversation: Conversation, question: str, *, owner: str,
                      collections: list[str] | None = None) -> tuple[Message, Message]:
        """The question and its answer in progress (owned by `owner`, searching `collections`), stored in one INSERT."""
        rows = [Message(conversation=conversation, role=cls.Role.USER, text=question),
                Message(conversation=conversation, role=cls.Role.ASSISTANT, error=cls.IN_PROGRESS, owner=owner,
                        heartbeat_at=timezone.now(), collections=collections or [])]
        # One statement rather than two saves: a round trip less per question (SQLite and PostgreSQL
        # both hand back the new ids, so the rows are whole), written as SQL (console.rows).
        sql.insert(rows)
        return rows[0], rows[1]

    def store_answer(self, answer: Answer, *, latency_ms: float) -> None:
        """The finished answer: its text, citations, provider and usage (`error`: the fallback reason, if any)."""
        self.text = answer.text
        self.citations = [c.to_dict() for c in answer.citations]
        self.retrieval_mode = answer.mode
        self.provider = answer.provider
        self.model = answer.model
        self.prompt_tokens = answer.usage.prompt_tokens
        self.completion_tokens = answer.usage.completion_tokens
        self.error = answer.fallback_reason
        self.not_covered = answer.not_covered
        self.latency_ms = latency_ms
        sql.update(self, ["text", "citations", "retrieval_mode", "provider", "model", "prompt_tokens",
                          "completion_tokens", "error", "not_covered", "latency_ms"])

    def store_partial(self, text: str, *, error: str, latency_ms: float) -> None:
        """What there was of an answer that did not finish (the client left, or it failed), and why."""
        self.text = text
        self.error = error
        self.latency_ms = latency_ms
        self.save()

    def beat(self, text: str) -> None:
        """The answer so far, stored while it is written, so a process that dies leaves it behind."""
        self.text = text
        self.heartbeat_at = timezone.now()
        Message.objects.filter(pk=self.pk, error=self.IN_PROGRESS).update(text=text, heartbeat_at=self.heartbeat_at)

    def mark_orphaned(self) -> bool:
        """Finishes an answer whose process died as failed, keeping the text it had stored; False if it finished meanwhile."""
        return bool(Message.objects.filter(pk=self.pk, error=self.IN_PROGRESS).update(error=self.ORPHANED))


class Feedback(models.Model):
    """👍 (+1) or 👎 (-1) on an assistant message, once per user per message."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="feedback")
    value = models.SmallIntegerField(choices=[(1, "👍"), (-1, "👎")])
    surface = models.CharField(max_length=10, choices=Conversation.Surface.choices)
    user_key = models.CharField(max_length=255)
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["message", "user_key"], name="feedback_once_per_user"),
            models.CheckConstraint(condition=Q(value__in=[1, -1]), name="feedback_value_is_vote"),
        ]
        indexes = [models.Index(fields=["-created_at"])]

    def __str__(self) -> str:
        return f"{self.value:+d} on message {self.message_id}"


# Synced sources ------------------------------------------------------------------------------------
# A source is a folder, a Git repository or a web site that Lorebot keeps in step with (console.syncing):
# each sync lists its items, fetches and indexes the new and changed ones, and removes the gone ones.


class Source(models.Model):
    """Where synced documents come from: a kind (ragcore.connectors.KINDS), its settings and a schedule."""

    class Kind(models.TextChoices):
        FOLDER = "folder", "Folder on the server"
        GIT = "git", "Git repository"
        WEB = "web", "Web site"

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    config = models.JSONField(default=dict, blank=True)  # the kind's settings, validated by Connector.from_config
    every_minutes = models.PositiveIntegerField(null=True, blank=True)  # None: synced only when asked
    paused = models.BooleanField(default=False)
    # When the worker next syncs it on its own (None: manual, or paused). Due-time rows, not timers:
    # they survive restarts, and any worker finds the due ones with one indexed query.
    next_sync_at = models.DateTimeField(null=True, blank=True)
    last_run = models.ForeignKey("SyncRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    last_synced_at = models.DateTimeField(null=True, blank=True)  # the last run that could list the origin finished
    # Where its documents go (their chunks carry its key); changing it moves them (console.access.moves).
    collection = models.ForeignKey("Collection", on_delete=models.PROTECT, related_name="sources",
                                   default=default_collection_id)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        indexes = [
            # The worker looks for due sources every few seconds.
            models.Index(fields=["next_sync_at"], condition=Q(paused=False), name="source_due"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_scheduled(self) -> bool:
        return bool(self.every_minutes)

    @property
    def kind_label(self) -> str:
        """What the console calls its kind: the connector's label ("Git repository"), for any registered kind."""
        try:
            return connector_class(self.kind).label
        except (ImportError, AttributeError, RagError):
            return self.get_kind_display()

    @property
    def last_failed(self) -> bool:
        """Whether the last finished sync failed (as a whole, or some of its items)."""
        run = self.last_run
        return run is not None and run.state in (SyncRun.State.FAILED, SyncRun.State.PARTIALLY_FAILED)

    def schedule_text(self) -> str:
        if not self.every_minutes:
            return "manual"
        minutes = self.every_minutes
        if minutes % 1440 == 0:
            return "every day" if minutes == 1440 else f"every {minutes // 1440} days"
        if minutes % 60 == 0:
            return "every hour" if minutes == 60 else f"every {minutes // 60} hours"
        return "every minute" if minutes == 1 else f"every {minutes} minutes"

    def is_due(self, now: datetime) -> bool:
        """A scheduled sync is due by `now` (console.syncing.schedule.due_sources asks the database the same)."""
        return not self.paused and self.next_sync_at is not None and self.next_sync_at <= now

    # -- transitions: the only code that assigns the schedule ------------------------------------------

    def reschedule(self, *, after: datetime | None = None) -> None:
        """The next due time: `every_minutes` after `after` (now), or none when manual or paused."""
        if self.every_minutes and not self.paused:
            self.next_sync_at = (after or timezone.now()) + timedelta(minutes=self.every_minutes)
        else:
            self.next_sync_at = None
        self.save(update_fields=["next_sync_at", "updated_at"])

    def pause(self) -> None:
        """No scheduled syncs until resumed (a sync now still runs)."""
        self.paused, self.next_sync_at = True, None
        self.save(update_fields=["paused", "next_sync_at", "updated_at"])

    def resume(self) -> None:
        """Scheduled again: due when the last sync's interval is up, which may be at once."""
        self.paused = False
        last = self.last_run.finished_at if self.last_run and self.last_run.finished_at else None
        if self.every_minutes:
            self.next_sync_at = last + timedelta(minutes=self.every_minutes) if last else timezone.now()
        self.save(update_fields=["paused", "next_sync_at", "updated_at"])

    def move_to(self, collection: Collection) -> None:
        """Its next syncs put documents in `collection` (the caller moves its current ones: console.access.moves)."""
        self.collection = collection
        self.save(update_fields=["collection", "updated_at"])

    def record_run(self, run: SyncRun) -> None:
        """`run` finished: it is the last run, the origin was seen (unless it failed as a whole), the next one is due."""
        self.last_run = run
        if run.state != SyncRun.State.FAILED:
            self.last_synced_at = run.finished_at
        self.save(update_fields=["last_run", "last_synced_at", "updated_at"])
        self.reschedule(after=run.finished_at)


class SyncRun(models.Model):
    """One sync of a source: run by the worker (or `manage.py sync`), with its counts and failures."""

    class State(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        PARTIALLY_FAILED = "partially_failed", "partially failed"
        FAILED = "failed"

    class Trigger(models.TextChoices):
        SCHEDULE = "schedule"
        MANUAL = "manual", "sync now"
        COMMAND = "command", "manage.py sync"

    ACTIVE = (State.QUEUED, State.RUNNING)
    FINISHED = (State.SUCCEEDED, State.PARTIALLY_FAILED, State.FAILED)
    OUTCOMES = ("added", "changed", "removed", "unchanged", "failed")

    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="runs")
    trigger = models.CharField(max_length=10, choices=Trigger.choices, default=Trigger.MANUAL)
    state = models.CharField(max_length=20, choices=State.choices, default=State.QUEUED)
    stage = models.CharField(max_length=40, default="queued")
    description = models.CharField(max_length=500, blank=True)  # what was synced: "git https://… @ main (3f2a1c9)"
    added = models.PositiveIntegerField(default=0)
    changed = models.PositiveIntegerField(default=0)
    removed = models.PositiveIntegerField(default=0)
    unchanged = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    listed = models.PositiveIntegerField(default=0)  # items at the origin
    embedded_chunks = models.PositiveIntegerField(default=0)  # chunks embedded: 0 when nothing changed
    error = models.TextField(blank=True)  # why the sync as a whole failed (unreachable origin, bad settings)
    attempts = models.PositiveIntegerField(default=0)
    task_id = models.CharField(max_length=64, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            # Two syncs of one source never run at once: at most one is queued or running.
            models.UniqueConstraint(fields=["source"], condition=Q(state__in=["queued", "running"]),
                                    name="syncrun_one_active_per_source"),
        ]
        indexes = [models.Index(fields=["source", "-created_at"]), models.Index(fields=["state", "heartbeat_at"])]

    def __str__(self) -> str:
        return f"sync {self.pk} of {self.source_id} ({self.state})"

    @property
    def is_finished(self) -> bool:
        return self.state in self.FINISHED

    @property
    def seconds(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None

    def counts(self) -> dict[str, int]:
        return {outcome: getattr(self, outcome) for outcome in self.OUTCOMES}

    def summary(self) -> str:
        """ "3 added, 1 changed, 0 removed, 40 unchanged, 0 failed" """
        return ", ".join(f"{n} {outcome}" for outcome, n in self.counts().items())

    # -- transitions: the only code that assigns a run's state ------------------------------------

    def start(self, task_id: str = "") -> None:
        """A worker (or the command) took it: one more attempt, and a fresh heartbeat."""
        now = timezone.now()
        self.state, self.stage = self.State.RUNNING, "listing"
        self.attempts += 1
        self.started_at = self.started_at or now
        self.heartbeat_at = now
        self.task_id = task_id or self.task_id
        self.save(update_fields=["state", "stage", "attempts", "started_at", "heartbeat_at", "task_id"])

    def listed_items(self, count: int, description: str) -> None:
        self.listed, self.description, self.stage = count, description[:500], "syncing"
        self.save(update_fields=["listed", "description", "stage"])

    def count(self, outcome: str, n: int = 1, *, chunks: int = 0) -> None:
        """`n` more items had `outcome`; committed with the item's own rows, so a resumed run never counts twice."""
        assert outcome in self.OUTCOMES, outcome
        SyncRun.objects.filter(pk=self.pk).update(**{outcome: F(outcome) + n},
                                                 embedded_chunks=F("embedded_chunks") + chunks,
                                                 heartbeat_at=timezone.now())
        setattr(self, outcome, getattr(self, outcome) + n)
        self.embedded_chunks += chunks

    def finish(self) -> str:
        """Every item has an outcome: succeeded, or partially failed when some item failed."""
        self.refresh_from_db(fields=[*self.OUTCOMES, "embedded_chunks"])
        self.state = self.State.PARTIALLY_FAILED if self.failed else self.State.SUCCEEDED
        self.stage, self.finished_at = "done", timezone.now()
        self.save(update_fields=["state", "stage", "finished_at"])
        return self.state

    def fail(self, error: str) -> None:
        """The sync as a whole failed (`error` names the setting or the origin); nothing was removed."""
        self.refresh_from_db(fields=[*self.OUTCOMES, "embedded_chunks"])
        self.state, self.stage, self.error, self.finished_at = self.State.FAILED, "failed", error, timezone.now()
        self.save(update_fields=["state", "stage", "error", "finished_at"])

    def requeue_after_worker_died(self) -> None:
        """Its worker stopped beating (SIGKILL, OOM, power loss): queued for another worker, which resumes it."""
        self.state, self.stage = self.State.QUEUED, "queued after worker died"
        self.save(update_fields=["state", "stage"])


class SyncFailure(models.Model):
    """One item a run could not sync, with the error that names it."""

    run = models.ForeignKey(SyncRun, on_delete=models.CASCADE, related_name="failures")
    key = models.CharField(max_length=1000)
    error_type = models.CharField(max_length=100)
    message = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["pk"]
        constraints = [models.UniqueConstraint(fields=["run", "key"], name="syncfailure_once_per_run")]

    def __str__(self) -> str:
        return f"{self.key}: {self.error_type}"


class SyncItem(models.Model):
    """What the last sync made of one item of a source: its version then, and the document holding it.

    A re-sync compares each listed item's version with `version` here: the same one is neither fetched
    nor embedded again. `pending` marks an item a run has started on (its document row exists, its
    chunks may not yet): a run resumed after a crash finishes it with the same document, never a second.
    """

    class Pending(models.TextChoices):
        NONE = "", "none"
        ADDED = "added"
        CHANGED = "changed"

    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="items")
    key = models.CharField(max_length=1000)
    version = models.CharField(max_length=300, blank=True)  # "" until its first sync succeeds
    document = models.ForeignKey(Document, null=True, blank=True, on_delete=models.SET_NULL, related_name="sync_items")
    url = models.CharField(max_length=2000, blank=True)
    synced_at = models.DateTimeField(null=True, blank=True)
    pending = models.CharField(max_length=10, choices=Pending.choices, blank=True, default=Pending.NONE)
    run = models.ForeignKey(SyncRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["key"]
        constraints = [models.UniqueConstraint(fields=["source", "key"], name="syncitem_key_once_per_source")]

    def __str__(self) -> str:
        return self.key

    def begin(self, run: SyncRun, outcome: str, document: Document) -> None:
        """`run` starts on this item (new or changed) with `document`; saved before anything reaches the indexes."""
        self.pending, self.run, self.document = outcome, run, document
        self.save()

    def done(self, run: SyncRun, *, version: str, url: str, at: datetime) -> None:
        """Synced at `version`: the next sync fetches it only if its version changes."""
        self.version, self.url, self.synced_at, self.pending, self.run = version, url, at, self.Pending.NONE, run
        self.save(update_fields=["version", "url", "synced_at", "pending", "run"])


# Collections and access --------------------------------------------------------------------------


class Collection(models.Model):
    """A set of documents and who may find them: everyone, or the members of chosen groups.

    `key` is what the engine knows (every chunk carries it) and never changes; the name may.
    """

    DEFAULT_KEY = "default"

    class Visibility(models.TextChoices):
        EVERYONE = "everyone"
        GROUPS = "groups", "chosen groups"

    key = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    visibility = models.CharField(max_length=10, choices=Visibility.choices, default=Visibility.EVERYONE)
    groups = models.ManyToManyField("auth.Group", blank=True, related_name="collections")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @classmethod
    def default(cls) -> Collection:
        """The collection every document is in until someone makes another (created on first use)."""
        found, _ = cls.objects.get_or_create(key=cls.DEFAULT_KEY, defaults={"name": "Default"})
        return found

    @classmethod
    def create(cls, name: str, *, description: str = "", visibility: str = Visibility.EVERYONE,
               groups: Any = ()) -> Collection:
        """A new collection with a key made from its name (a slug, made unique with a number); `groups`
        may see it when its visibility is "chosen groups"."""
        base = slugify(name)[:50] or "collection"
        key, n = base, 1
        while cls.objects.filter(key=key).exists():
            n += 1
            key = f"{base}-{n}"
        made = cls.objects.create(key=key, name=name, description=description, visibility=visibility)
        if groups and made.is_restricted:
            made.groups.set(groups)
        return made

    @property
    def is_default(self) -> bool:
        return self.key == self.DEFAULT_KEY

    @property
    def is_restricted(self) -> bool:
        return self.visibility == self.Visibility.GROUPS

    def describe_access(self) -> str:
        """Who may find its documents, in words ("everyone", "HR, Finance", "staff only")."""
        if not self.is_restricted:
            return "everyone"
        names = [g.name for g in self.groups.all()]
        return ", ".join(names) if names else "staff only"

    def edit(self, *, name: str, description: str, visibility: str, groups: Any) -> None:
        """Renames it and sets who may see it (its key, and so its chunks, stay as they are)."""
        self.name, self.description, self.visibility = name, description, visibility
        self.save(update_fields=["name", "description", "visibility", "updated_at"])
        self.groups.set(groups if visibility == self.Visibility.GROUPS else [])

    def why_not_deletable(self) -> str:
        """Why it cannot be deleted ("" when it can): the default one, or one still holding documents or sources."""
        if self.is_default:
            return "the default collection cannot be deleted"
        count = self.documents.count()
        if count:
            return f"it still holds {count} document{'s' if count != 1 else ''}; move them to another collection first"
        sources = list(self.sources.values_list("name", flat=True)[:3])
        if sources:
            return f"the source {', '.join(sources)} puts its documents here; give it another collection first"
        return ""

    def delete_if_empty(self) -> str:
        """Deletes it when it holds no document and is not the default; else says why not (nothing deleted)."""
        why = self.why_not_deletable()
        if not why:
            self.delete()
        return why


class ChannelScope(models.Model):
    """The collections one Slack channel, or one Discord server or channel, answers from.

    Discord: `channel` "" is the server-wide default, a channel's own row overrides it.
    Without a row a channel answers from the collections everyone may see.
    """

    class Platform(models.TextChoices):
        SLACK = "slack"
        DISCORD = "discord"

    platform = models.CharField(max_length=10, choices=Platform.choices)
    workspace = models.CharField(max_length=64)  # Slack team id, or Discord guild id
    channel = models.CharField(max_length=64, blank=True)  # "" only for a Discord server's default
    label = models.CharField(max_length=100, blank=True)  # "#support", for people reading the list
    collections = models.ManyToManyField(Collection, blank=True, related_name="channel_scopes")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["platform", "workspace", "channel"]
        constraints = [models.UniqueConstraint(fields=["platform", "workspace", "channel"], name="channel_scope_unique")]

    def __str__(self) -> str:
        where = self.channel or "whole server"
        return f"{self.platform} {self.workspace}/{where}" + (f" ({self.label})" if self.label else "")


class AccountLink(models.Model):
    """A Slack or Discord user known as a Lorebot user: their DMs search what that user may see.

    `external_user` is "TEAM:USER" for Slack (user ids are per workspace) and the user id for Discord.
    """

    platform = models.CharField(max_length=10, choices=ChannelScope.Platform.choices)
    external_user = models.CharField(max_length=100)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="account_links")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["platform", "external_user"]
        constraints = [models.UniqueConstraint(fields=["platform", "external_user"], name="account_link_unique")]

    def __str__(self) -> str:
        return f"{self.platform} {self.external_user} → {self.user}"

    @classmethod
    def link(cls, *, platform: str, external_user: str, user: Any, by: Any) -> AccountLink:
        """Links (or re-links to `user`) this platform account."""
        found, _ = cls.objects.update_or_create(platform=platform, external_user=external_user,
                                                defaults={"user": user, "created_by": by})
        return found


class LinkCode(models.Model):
    """A one-time code a user gets in the web chat and sends to the bot, to link their Slack or Discord account.

    Only a keyed hash of the code is stored (`digest`): the code itself is shown once, to the user who
    asked for it, and a copy of the database cannot be replayed to link someone else's account.
    """

    class Outcome(models.TextChoices):
        LINKED = "linked"
        WRONG = "wrong"  # no such code (mistyped, or never issued)
        EXPIRED = "expired"
        USED = "used"  # redeemed already, replaced by a newer code, or cancelled

    digest = models.CharField(max_length=64, unique=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"link code for {self.user} (until {self.expires_at:%H:%M})"

    @staticmethod
    def digest_of(code: str) -> str:
        """The stored form of a code: an HMAC under SECRET_KEY, of the code as the user may type it."""
        return salted_hmac("lorebot.link-code", normalized_code(code), algorithm="sha256").hexdigest()

    @classmethod
    def issue(cls, user: Any, *, minutes: int) -> tuple[LinkCode, str]:
        """A fresh code for `user`, valid `minutes`, and its text (never stored); earlier unused codes stop working."""
        now = timezone.now()
        cls.objects.filter(user=user, used_at__isnull=True).update(used_at=now)
        code = _fresh_code()
        return cls.objects.create(digest=cls.digest_of(code), user=user, expires_at=now + timedelta(minutes=minutes)), code

    @classmethod
    def redeem(cls, code: str, *, platform: str, external_user: str) -> tuple[str, AccountLink | None]:
        """Links the account to the code's user if the code is valid (once, before it expires).

        Returns the outcome (an `Outcome`) and the link made, if any. Run it in a transaction: the
        row is locked so that two redemptions of one code cannot both succeed.
        """
        now = timezone.now()
        found = cls.objects.select_for_update().select_related("user").filter(digest=cls.digest_of(code)).first()
        if found is None:
            return cls.Outcome.WRONG, None
        if found.used_at is not None:
            return cls.Outcome.USED, None
        if found.expires_at <= now or not found.user.is_active:
            return cls.Outcome.EXPIRED, None
        found.used_at = now
        found.save(update_fields=["used_at"])
        return cls.Outcome.LINKED, AccountLink.link(platform=platform, external_user=external_user, user=found.user,
                                                    by=found.user)

    @classmethod
    def cancel(cls, code: str) -> bool:
        """Makes a code unusable (it was posted where others could read it); whether it was still usable."""
        return bool(cls.objects.filter(digest=cls.digest_of(code), used_at__isnull=True).update(used_at=timezone.now()))


CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 8


def normalized_code(code: str) -> str:
    """A code as typed ("abcd-2345", " ABCD 2345 ") in its issued form ("ABCD2345")."""
    return "".join(c for c in code.upper() if c.isalnum())


def _fresh_code() -> str:
    # 8 characters of an alphabet without look-alikes (0/O, 1/I): 32^8 ≈ 10^12, short-lived and single-use.
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))

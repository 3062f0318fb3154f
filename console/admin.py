"""Django admin registrations, for auditing: everything searchable and filterable, nothing rewritable."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from console.models import (
    AccountLink,
    ChannelScope,
    Collection,
    Conversation,
    Document,
    Feedback,
    IngestJob,
    IngestJobFile,
    Message,
    Source,
    SyncFailure,
    SyncItem,
    SyncRun,
)


class _NoEditing:
    """Listed and shown, never added, changed or deleted through the admin."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ReadOnlyAdmin(_NoEditing, admin.ModelAdmin):
    """Audit records: conversations, messages, feedback, jobs."""


class ReadOnlyInline(_NoEditing, admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = False


@admin.register(Document)
class DocumentAdmin(admin.ModelAdmin):
    """Only the title is editable: everything else mirrors the indexes and goes through the console."""

    list_display = ("id", "__str__", "original_filename", "kind", "status", "chunk_count", "size", "version", "collection",
                    "uploaded_by", "created_at")
    list_filter = ("status", "kind", "collection", "created_at")
    search_fields = ("title", "original_filename", "checksum")
    date_hierarchy = "created_at"
    list_select_related = ("uploaded_by", "collection")
    # The collection too: a move re-labels the chunks in both indexes, so it goes through the console's Move.
    readonly_fields = (
        "checksum", "original_filename", "kind", "size", "status", "chunk_count", "error", "version", "collection",
        "previous", "uploaded_by", "created_at", "updated_at", "indexed_at", "source", "origin_url", "synced_at",
    )
    fields = ("title", *readonly_fields)
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # uploads go through the console, which stores the original and queues a job

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # deleting a row would orphan its chunks; the console's delete removes both


class IngestJobFileInline(ReadOnlyInline):
    model = IngestJobFile
    fields = ("filename", "action", "document", "state", "chunks", "attempts", "seconds", "error_type", "error_message")
    readonly_fields = fields


@admin.register(IngestJob)
class IngestJobAdmin(ReadOnlyAdmin):
    list_display = ("id", "state", "stage", "progress", "file_count", "attempts", "created_by", "created_at", "finished_at")
    list_filter = ("state", "stage", "created_at")
    search_fields = ("=id", "task_id", "files__filename", "created_by__username")
    date_hierarchy = "created_at"
    list_select_related = ("created_by",)
    inlines = [IngestJobFileInline]
    show_full_result_count = False

    def get_queryset(self, request: HttpRequest) -> QuerySet[IngestJob]:
        return super().get_queryset(request).annotate(_file_count=Count("files"))

    @admin.display(description="files", ordering="_file_count")
    def file_count(self, job: IngestJob) -> int:
        return job._file_count  # type: ignore[attr-defined]

    @admin.display(description="progress")
    def progress(self, job: IngestJob) -> str:
        return f"{job.progress_done}/{job.progress_total}"


@admin.register(IngestJobFile)
class IngestJobFileAdmin(ReadOnlyAdmin):
    list_display = ("id", "filename", "job", "action", "state", "chunks", "attempts", "error_type", "seconds")
    list_filter = ("state", "action", "error_type")
    search_fields = ("filename", "error_type", "error_message")
    list_select_related = ("job",)
    show_full_result_count = False


class MessageInline(ReadOnlyInline):
    model = Message
    fields = ("created_at", "role", "text", "provider", "model", "latency_ms")
    readonly_fields = fields


@admin.register(Conversation)
class ConversationAdmin(ReadOnlyAdmin):
    list_display = ("id", "__str__", "surface", "user_key", "user", "created_at", "updated_at")
    list_filter = ("surface", "updated_at")
    search_fields = ("title", "external_key", "user_key", "user__username")
    date_hierarchy = "updated_at"
    list_select_related = ("user",)
    inlines = [MessageInline]
    show_full_result_count = False


@admin.register(Message)
class MessageAdmin(ReadOnlyAdmin):
    list_display = ("id", "role", "short_text", "conversation_link", "provider", "model", "prompt_tokens", "completion_tokens", "latency_ms", "created_at")
    list_filter = ("role", "provider", "retrieval_mode", "conversation__surface", "created_at")
    search_fields = ("text", "model", "conversation__external_key", "conversation__title")
    date_hierarchy = "created_at"
    list_select_related = ("conversation",)
    show_full_result_count = False

    @admin.display(description="text")
    def short_text(self, message: Message) -> str:
        return message.text[:80]

    @admin.display(description="conversation")
    def conversation_link(self, message: Message) -> str:
        url = reverse("admin:console_conversation_change", args=[message.conversation_id])
        return format_html('<a href="{}">{}</a>', url, message.conversation)


@admin.register(Feedback)
class FeedbackAdmin(ReadOnlyAdmin):
    list_display = ("id", "value", "surface", "user_key", "message", "comment", "created_at")
    list_filter = ("value", "surface", "created_at")
    search_fields = ("user_key", "comment", "message__text")
    date_hierarchy = "created_at"
    list_select_related = ("message",)
    show_full_result_count = False


# -- synced sources: audited here, managed in the console (its pages validate settings and sync) ---------


@admin.register(Source)
class SourceAdmin(ReadOnlyAdmin):
    # `config` is left out: a Git URL may carry a token, and the console shows it masked.
    list_display = ("id", "name", "kind", "every_minutes", "paused", "next_sync_at", "last_synced_at", "last_run")
    list_filter = ("kind", "paused")
    search_fields = ("name",)
    fields = ("name", "kind", "collection", "every_minutes", "paused", "next_sync_at", "last_synced_at", "last_run",
              "created_by", "created_at", "updated_at")
    readonly_fields = fields


class SyncFailureInline(ReadOnlyInline):
    model = SyncFailure
    fields = ("key", "error_type", "message")
    readonly_fields = fields


@admin.register(SyncRun)
class SyncRunAdmin(ReadOnlyAdmin):
    list_display = ("id", "source", "trigger", "state", "added", "changed", "removed", "unchanged", "failed",
                    "started_at", "finished_at")
    list_filter = ("state", "trigger", "source")
    list_select_related = ("source",)
    inlines = [SyncFailureInline]


@admin.register(SyncItem)
class SyncItemAdmin(ReadOnlyAdmin):
    list_display = ("id", "source", "key", "version", "document", "synced_at", "pending")
    list_filter = ("source",)
    search_fields = ("key",)
    list_select_related = ("source", "document")


# Collections and access: staff manage them here (every change is a LogEntry, the admin's audit trail).


@admin.register(Collection)
class CollectionAdmin(admin.ModelAdmin):
    """Name, description and who may see it; the key is what the indexes know, so it is fixed once made."""

    list_display = ("name", "key", "visibility", "created_at")
    list_filter = ("visibility",)
    search_fields = ("name", "key")
    filter_horizontal = ("groups",)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return ("key",) if obj is not None else ()

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # PROTECT refuses a collection with documents anyway; the default one is never deleted.
        return obj is None or not obj.is_default


@admin.register(ChannelScope)
class ChannelScopeAdmin(admin.ModelAdmin):
    """Which collections a Slack channel, or a Discord server or channel ("" channel: the server's default), answers from."""

    list_display = ("platform", "workspace", "channel", "label")
    list_filter = ("platform",)
    search_fields = ("workspace", "channel", "label")
    filter_horizontal = ("collections",)


@admin.register(AccountLink)
class AccountLinkAdmin(admin.ModelAdmin):
    """A Slack ("TEAM:USER") or Discord (user id) account known as a Lorebot user: their DMs search what it may see."""

    list_display = ("platform", "external_user", "user", "created_by", "created_at")
    list_filter = ("platform",)
    search_fields = ("external_user", "user__username")
    readonly_fields = ("created_by", "created_at")

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        obj.created_by = obj.created_by or request.user
        super().save_model(request, obj, form, change)

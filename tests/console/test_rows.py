"""The question path's rows written as plain SQL read back exactly as the ORM would have written them."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.utils import timezone

from console import rows
from console.models import Conversation, Message
from ragcore.types import Answer, Citation, Usage

pytestmark = pytest.mark.django_db


def test_a_new_conversation_and_its_exchange_read_back_whole() -> None:
    user = get_user_model().objects.create_user("reader", password="pw-12345-long")
    before = timezone.now()
    conversation, created = Conversation.find_or_start(
        "web", "key-1", likely_new=True,
        defaults={"user_key": "u:1", "user": user, "title": "Où est «la» doc?", "scope": ["default", "team"]})
    question, answer = Message.open_exchange(conversation, "Où est «la» doc?", owner="host:1",
                                             collections=["default", "team"])
    after = timezone.now()

    assert created and conversation.pk and question.pk and answer.pk == question.pk + 1
    stored = Conversation.objects.get(pk=conversation.pk)
    assert (stored.surface, stored.external_key, stored.user_key, stored.user, stored.title, stored.scope) == (
        "web", "key-1", "u:1", user, "Où est «la» doc?", ["default", "team"])
    assert before <= stored.created_at <= after and stored.created_at == conversation.created_at
    rows = list(conversation.messages.order_by("pk"))
    assert [(m.role, m.text, m.error, m.owner, m.collections) for m in rows] == [
        ("user", "Où est «la» doc?", "", "", []),
        ("assistant", "", Message.IN_PROGRESS, "host:1", ["default", "team"])]
    assert rows[1].heartbeat_at == answer.heartbeat_at is not None
    assert all(before <= m.created_at <= after for m in rows)
    assert answer.heartbeat_at is not None and rows[1].heartbeat_at == answer.heartbeat_at

def test_a_taken_key_is_found_not_duplicated() -> None:
    first, _ = Conversation.find_or_start("web", "key-2", likely_new=True, defaults={"user_key": "u:1"})
    again, created = Conversation.find_or_start("web", "key-2", likely_new=True, defaults={"user_key": "u:1"})
    assert (again.pk, created) == (first.pk, False)
    assert Conversation.objects.filter(external_key="key-2").count() == 1
    with pytest.raises(IntegrityError), transaction.atomic():  # the plain SQL raises Django's own error
        rows.insert([Conversation(surface="web", external_key="key-2")])


def test_the_finished_answer_updates_only_its_own_fields() -> None:
    conversation, _ = Conversation.find_or_start("web", "key-3", likely_new=True, defaults={"user_key": "u:1"})
    question, answer = Message.open_exchange(conversation, "q", owner="host:1")
    citation = Citation(1, "doc-1", "Guide", "guide.md", "§ 2", "snippet ✓", "doc-1:0")
    answer.store_answer(Answer("It is [1].", (citation,), "groq", "llama", mode="bm25",
                               usage=Usage(12, 3), fallback_reason="", not_covered=True), latency_ms=41.5)
    stored = Message.objects.get(pk=answer.pk)
    assert (stored.text, stored.citations, stored.retrieval_mode, stored.provider, stored.model,
            stored.prompt_tokens, stored.completion_tokens, stored.error, stored.not_covered, stored.latency_ms) == (
        "It is [1].", [citation.to_dict()], "bm25", "groq", "llama", 12, 3, "", True, 41.5)
    assert (stored.owner, stored.heartbeat_at) == ("host:1", answer.heartbeat_at)  # untouched
    assert Message.objects.get(pk=question.pk).text == "q"  # the other row too

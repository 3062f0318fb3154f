"""Reading conversations back: the turns a question sees, a conversation as a surface shows it, the sidebar.

Each read has an async twin (`a…`) for the consumer and the bots, through the one seam in console.chat.orm.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from datetime import datetime
from typing import Any

from console.access.metrics import ACCESS_REFUSED
from console.access.visibility import visible_documents
from console.chat.events import ChatError
from console.chat.orm import in_thread_pool
from console.models import Conversation, Feedback, Message
from ragcore.types import Citation, Turn

_CITATION_FIELDS = {f.name for f in fields(Citation)}


@dataclass(frozen=True)
class StoredMessage:
    """One message of a conversation as stored; `pending` marks an answer still being written."""

    id: int
    role: str
    text: str
    citations: tuple[Citation, ...]
    error: str
    pending: bool
    extractive: bool
    not_covered: bool
    feedback: int | None  # the reader's own vote
    created_at: datetime


@dataclass(frozen=True)
class StoredConversation:
    id: int
    title: str
    messages: tuple[StoredMessage, ...]


@dataclass(frozen=True)
class ConversationSummary:
    id: int
    title: str
    updated_at: datetime


@dataclass(frozen=True)
class StoredAnswer:
    """A finished answer as stored, for a surface that shows it again (Slack's "Share in channel")."""

    message_id: int
    question: str
    text: str
    citations: tuple[Citation, ...]
    user_key: str  # who asked
    provider: str
    error: str  # the fallback reason of an extractive answer, or why it did not finish
    not_covered: bool = False


def citations_of(message: Message) -> tuple[Citation, ...]:
    """The message's stored citations (JSON, as Citation.to_dict wrote them) as Citations again."""
    items = message.citations if isinstance(message.citations, list) else []
    # Rows stored by an older Lorebot may lack fields added since (location, snippet, chunk_id): empty.
    return tuple(Citation(**{"location": "", "snippet": "", **{k: v for k, v in item.items() if k in _CITATION_FIELDS}})
                 for item in items if isinstance(item, dict) and {"n", "document_id", "title", "source"} <= item.keys())


def recent_turns(conversation: Conversation, limit: int) -> list[Turn]:
    """The conversation's last `limit` messages with text, oldest first."""
    if limit <= 0:
        return []
    earlier = list(conversation.messages.exclude(text="").order_by("-created_at", "-pk")[:limit])[::-1]
    return [Turn(m.role, m.text) for m in earlier]


HIDDEN_ANSWER = "This answer cited documents you can no longer see, so it is not shown."


def conversation_history(*, conversation_id: int, surface: str, user_key: str, user: Any = None) -> StoredConversation:
    """The conversation as a surface shows it; ChatError "not_found" or "forbidden" otherwise.

    An answer citing a document `user` may no longer see (its collection was moved or its grant
    removed since) is shown as HIDDEN_ANSWER, without its text or citations.
    """
    conversation = Conversation.objects.filter(pk=conversation_id, surface=surface).first()
    if conversation is None:
        raise ChatError("not_found", "No such conversation.")
    if conversation.user_key != user_key:
        raise ChatError("forbidden", "That conversation is not yours.")
    votes = dict(
        Feedback.objects.filter(message__conversation=conversation, user_key=user_key).values_list("message_id", "value")
    )
    messages = [_stored_message(m, votes.get(m.pk)) for m in conversation.messages.all()]
    visible = visible_documents(user, {c.document_id for m in messages for c in m.citations})
    for i, m in enumerate(messages):
        if any(c.document_id not in visible for c in m.citations):
            ACCESS_REFUSED.labels(surface, "citation").inc()
            messages[i] = replace(m, text=HIDDEN_ANSWER, citations=())
    return StoredConversation(conversation.pk, conversation.title, tuple(messages))


def _stored_message(message: Message, vote: int | None) -> StoredMessage:
    pending = message.error == Message.IN_PROGRESS
    return StoredMessage(
        id=message.pk, role=message.role, text=message.text, citations=citations_of(message),
        error="" if pending else message.error, pending=pending, extractive=message.provider == "extractive",
        not_covered=message.not_covered, feedback=vote, created_at=message.created_at,
    )


def recent_conversations(*, surface: str, user_key: str, limit: int) -> list[ConversationSummary]:
    """The user's most recent conversations on this surface, newest first."""
    rows = Conversation.objects.filter(surface=surface, user_key=user_key).order_by("-updated_at")[:limit]
    return [ConversationSummary(c.pk, c.title or "Untitled", c.updated_at) for c in rows]


def owns_answer(*, message_id: int, surface: str, user_key: str) -> bool:
    """Whether `message_id` is in one of this user's conversations on this surface."""
    return Message.objects.filter(
        pk=message_id, conversation__surface=surface, conversation__user_key=user_key
    ).exists()


def has_conversation(*, surface: str, conversation_key: str) -> bool:
    """Whether `conversation_key` already names a conversation, e.g. a Slack thread the bot answered in."""
    return Conversation.objects.filter(surface=surface, external_key=conversation_key).exists()


def stored_answer(*, message_id: int, surface: str) -> StoredAnswer | None:
    """The assistant message `message_id` of a `surface` conversation with its question, or None."""
    message = (Message.objects.select_related("conversation")
               .filter(pk=message_id, role=Message.Role.ASSISTANT, conversation__surface=surface).first())
    if message is None:
        return None
    question = (message.conversation.messages.filter(role=Message.Role.USER, pk__lt=message.pk)
                .order_by("-pk").values_list("text", flat=True).first())
    return StoredAnswer(message.pk, question or "", message.text, citations_of(message),
                        message.conversation.user_key, message.provider, message.error, message.not_covered)


aconversation_history = in_thread_pool(conversation_history)
arecent_conversations = in_thread_pool(recent_conversations)
aowns_answer = in_thread_pool(owns_answer)
ahas_conversation = in_thread_pool(has_conversation)
astored_answer = in_thread_pool(stored_answer)

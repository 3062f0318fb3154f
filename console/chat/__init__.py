"""The chat service every surface calls, and the web chat: the /ws/chat/ consumer and the chat page.

What the consumer, the bots and `manage.py ask` use is imported from here: the one async path
(`areply`) and its typed events, feedback, the reads of stored conversations, and the ORM seam.
"""

from __future__ import annotations

from console.chat.access import Asker
from console.chat.events import (
    AnswerCitations,
    AnswerDone,
    AnswerError,
    AnswerStarted,
    AnswerToken,
    ChatError,
    ChatEvent,
)
from console.chat.history import (
    ConversationSummary,
    StoredAnswer,
    StoredConversation,
    StoredMessage,
    aconversation_history,
    ahas_conversation,
    aowns_answer,
    arecent_conversations,
    astored_answer,
)
from console.chat.links import (
    IssuedCode,
    LinkResult,
    acancel_code,
    aissue_code,
    alinked_platforms,
    aredeem_code,
    link_code_in,
)
from console.chat.orm import in_thread_pool
from console.chat.service import aclose, arecord_feedback, areply, record_feedback, warm_up
from console.sources.links import absolute_source_url, source_url
from console.syncing.origins import synced_text
from ragcore.types import Citation, Usage

__all__ = [
    "Asker", "AnswerCitations", "AnswerDone", "AnswerError", "AnswerStarted", "AnswerToken", "ChatError", "ChatEvent",
    "Citation", "ConversationSummary", "absolute_source_url", "source_url", "StoredAnswer", "StoredConversation", "StoredMessage", "Usage",
    "aconversation_history", "ahas_conversation", "aowns_answer", "arecent_conversations", "areply",
    "aclose", "arecord_feedback", "astored_answer", "in_thread_pool", "record_feedback", "synced_text", "warm_up",
    "IssuedCode", "LinkResult", "acancel_code", "aissue_code", "alinked_platforms", "aredeem_code", "link_code_in",
]

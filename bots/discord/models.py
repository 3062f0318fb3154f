"""What the Discord bot keeps: which conversation each of its answer messages belongs to."""

from __future__ import annotations

from django.db import models


class AnswerMessage(models.Model):
    """A message the bot posted as (part of) an answer; a reply to it continues that conversation.

    Kept in the database rather than in memory so that replies still find their conversation after
    the bot restarts, and in any of several bot processes.
    """

    message_id = models.BigIntegerField(primary_key=True)  # the Discord message's snowflake
    conversation_key = models.CharField(max_length=255)  # the chat service's key, e.g. "GUILD:CHANNEL:ROOT"
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.message_id} → {self.conversation_key}"

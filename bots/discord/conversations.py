"""Which chat-service conversation a Discord message belongs to.

Keys: "dm:CHANNEL" for a direct-message channel, "GUILD:THREAD" for a thread, "GUILD:CHANNEL:ROOT"
for a question asked in a channel (ROOT is the message that asked it, or the /ask interaction).
A reply to one of the bot's answer messages continues that answer's conversation, found through
`AnswerMessage`.
"""

from __future__ import annotations

from typing import Any

import discord

from bots.discord.models import AnswerMessage
from console import chat
from console.chat import in_thread_pool


def dm_key(channel_id: int) -> str:
    return f"dm:{channel_id}"


def thread_key(guild_id: int, thread_id: int) -> str:
    return f"{guild_id}:{thread_id}"


def channel_key(guild_id: int, channel_id: int, root: int | str) -> str:
    return f"{guild_id}:{channel_id}:{root}"


def key_for(channel: discord.abc.Messageable, root: int | str) -> str:
    """The key of a new conversation started at `root` in `channel`."""
    if isinstance(channel, discord.Thread):
        return thread_key(channel.guild.id, channel.id)
    guild = getattr(channel, "guild", None)
    if guild is None:
        return dm_key(channel.id)  # type: ignore[attr-defined]
    return channel_key(guild.id, channel.id, root)  # type: ignore[attr-defined]


def asker_for(channel: Any, *, channel_id: int | None, guild_id: int | None, user_id: int) -> chat.Asker:
    """Who asks from where, as ids for the chat service (console.chat.access decides what that may search).

    A DM (no guild) is direct; in a server a thread counts as its parent channel, so a channel's scope
    covers the threads in it.
    """
    if guild_id is None:
        return chat.Asker(platform="discord", channel=str(channel_id or ""), external_user=str(user_id), direct=True)
    parent = getattr(channel, "parent_id", None) if isinstance(channel, discord.Thread) else None
    return chat.Asker(platform="discord", workspace=str(guild_id), channel=str(parent or channel_id or ""),
                      external_user=str(user_id))


def _remember(message_ids: list[int], conversation_key: str) -> None:
    """Records that these bot messages belong to the conversation `conversation_key`."""
    AnswerMessage.objects.bulk_create(
        [AnswerMessage(message_id=m, conversation_key=conversation_key) for m in message_ids], ignore_conflicts=True,
    )


def _conversation_of(message_id: int) -> str | None:
    """The conversation of a bot answer message, or None when it is not one."""
    return AnswerMessage.objects.filter(pk=message_id).values_list("conversation_key", flat=True).first()


remember = in_thread_pool(_remember)
conversation_of = in_thread_pool(_conversation_of)

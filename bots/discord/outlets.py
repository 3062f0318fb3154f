"""Where an answer is shown: a reply to a message (or a post in a thread), or an /ask response.

Both show a placeholder first, edit one message while the answer streams, and post any further
pieces after it. Every call passes `allowed_mentions` none, so no answer can ping anyone.
"""

from __future__ import annotations

from typing import Any, Protocol

import discord

NO_MENTIONS = discord.AllowedMentions.none()


class Outlet(Protocol):
    remembered: bool  # whether replies to these messages may continue the conversation
    channel_id: int  # the channel the answer is shown in, whose edit budget it shares

    async def open(self, placeholder: str) -> int | None:
        """Shows the placeholder; returns its message id when it has one."""

    async def edit(self, content: str, view: discord.ui.View | None = None) -> int | None:
        """Replaces the first message's content (and its buttons, when `view` is given)."""

    async def add(self, content: str, view: discord.ui.View | None = None) -> int | None:
        """Posts one more piece after the first message; returns its id."""


class ReplyOutlet:
    """Replies to `message` (or, with `reply=False`, posts in `channel`: a thread just opened for it)."""

    remembered = True

    def __init__(self, channel: discord.abc.Messageable, message: discord.Message | None) -> None:
        self.channel = channel
        self.message = message
        self.channel_id: int = getattr(channel, "id", 0)
        self.first: discord.Message | None = None
        self.last: discord.Message | None = None

    async def open(self, placeholder: str) -> int | None:
        if self.message is not None:
            self.first = await self.message.reply(placeholder, allowed_mentions=NO_MENTIONS, mention_author=False,
                                                  suppress_embeds=True)
        else:
            self.first = await self.channel.send(placeholder, allowed_mentions=NO_MENTIONS, suppress_embeds=True)
        self.last = self.first
        return self.first.id

    async def edit(self, content: str, view: discord.ui.View | None = None) -> int | None:
        assert self.first is not None
        if view is None:
            await self.first.edit(content=content, allowed_mentions=NO_MENTIONS, suppress=True)
        else:
            await self.first.edit(content=content, view=view, allowed_mentions=NO_MENTIONS, suppress=True)
        return self.first.id

    async def add(self, content: str, view: discord.ui.View | None = None) -> int | None:
        assert self.last is not None
        kwargs: dict[str, Any] = {"view": view} if view is not None else {}
        self.last = await self.last.reply(content, allowed_mentions=NO_MENTIONS, mention_author=False,
                                          suppress_embeds=True, **kwargs)
        return self.last.id


class InteractionOutlet:
    """An /ask answer: a deferred ("thinking…") response, edited as it streams, then followups."""

    def __init__(self, interaction: discord.Interaction, *, private: bool) -> None:
        self.interaction = interaction
        self.private = private
        self.channel_id = interaction.channel_id or 0
        self.remembered = not private  # nobody can reply to an ephemeral message

    async def open(self, placeholder: str) -> int | None:
        # The "thinking…" state is Discord's placeholder; an interaction must be answered within 3 s.
        await self.interaction.response.defer(ephemeral=self.private, thinking=True)
        return None

    async def edit(self, content: str, view: discord.ui.View | None = None) -> int | None:
        kwargs: dict[str, Any] = {"view": view} if view is not None else {}
        message = await self.interaction.edit_original_response(content=content, allowed_mentions=NO_MENTIONS,
                                                                **kwargs)
        return message.id

    async def add(self, content: str, view: discord.ui.View | None = None) -> int | None:
        kwargs: dict[str, Any] = {"view": view} if view is not None else {}
        message = await self.interaction.followup.send(content, ephemeral=self.private, allowed_mentions=NO_MENTIONS,
                                                       suppress_embeds=True, wait=True, **kwargs)
        return message.id

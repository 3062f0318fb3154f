"""👍/👎 buttons under an answer that keep working after the bot restarts."""

from __future__ import annotations

import re
from typing import Any

import discord
import structlog

from bots.metrics import BOT_EVENTS
from console import chat

log = structlog.get_logger(__name__, component="discord")

VOTES = {"up": (1, "👍"), "down": (-1, "👎")}


class FeedbackButton(
    discord.ui.DynamicItem[discord.ui.Button],
    template=r"lorebot:feedback:(?P<message_id>\d+):(?P<vote>up|down)",
):
    """A vote on one stored answer; the answer's id lives in the button's custom_id.

    A DynamicItem (registered with `Client.add_dynamic_items`) rather than a fixed persistent View:
    discord.py rebuilds it from any matching custom_id, so buttons of answers posted before a restart
    still work, whatever answer they belong to.
    """

    def __init__(self, message_id: int, vote: str) -> None:
        value, emoji = VOTES[vote]
        super().__init__(discord.ui.Button(
            style=discord.ButtonStyle.secondary, emoji=emoji, custom_id=f"lorebot:feedback:{message_id}:{vote}",
        ))
        self.message_id = message_id
        self.value = value

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any],
                             match: re.Match[str], /) -> FeedbackButton:
        return cls(int(match["message_id"]), match["vote"])

    async def callback(self, interaction: discord.Interaction) -> Any:
        try:
            _, created = await chat.arecord_feedback(
                message_id=self.message_id, value=self.value, surface="discord", user_key=str(interaction.user.id),
            )
        except chat.ChatError as exc:
            BOT_EVENTS.labels("discord", "feedback_refused").inc()
            await interaction.response.send_message(exc.message, ephemeral=True)
            return
        BOT_EVENTS.labels("discord", "feedback").inc()
        thanks = "Thanks for the feedback" if created else "Your vote is changed"
        await interaction.response.send_message(f"{thanks}: {VOTES['up' if self.value > 0 else 'down'][1]}",
                                                ephemeral=True)


def feedback_view(message_id: int) -> discord.ui.View:
    """The buttons for the stored answer `message_id`; timeout None, so they never expire."""
    view = discord.ui.View(timeout=None)
    view.add_item(FeedbackButton(message_id, "up"))
    view.add_item(FeedbackButton(message_id, "down"))
    return view

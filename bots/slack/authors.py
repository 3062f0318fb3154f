"""Who wrote a Slack event: a person, another bot, or Lorebot itself; and whether the bot answers them.

Two bots that answer each other's mentions loop forever, so a message written by any bot is ignored
unless SLACK_ALLOWED_BOTS names it, and Lorebot's own messages always are. Slack marks a bot's message
in several ways, not all on every event (https://docs.slack.dev/reference/events/message/bot_message):
`bot_id`, a `bot_profile`, or the `bot_message` subtype (the older integrations, which have no user).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings


def bot_ids(event: dict[str, Any]) -> set[str]:
    """Every id naming the bot that wrote `event` (bot id, app id, bot user id); empty when a person did."""
    profile = event.get("bot_profile") or {}
    if not (event.get("bot_id") or profile or event.get("subtype") == "bot_message"):
        return set()
    ids = {event.get("bot_id"), profile.get("id"), profile.get("app_id"), event.get("app_id"), event.get("user")}
    return {str(i) for i in ids if i} or {"unknown-bot"}


def is_own(event: dict[str, Any], *, bot_user_id: str | None, bot_id: str | None) -> bool:
    """Whether Lorebot itself wrote `event`."""
    return bool((bot_user_id and event.get("user") == bot_user_id)
                or (bot_id and bot_id in {event.get("bot_id"), (event.get("bot_profile") or {}).get("id")}))


def ignored_author(event: dict[str, Any], *, bot_user_id: str | None, bot_id: str | None) -> str:
    """Why the bot must not answer `event`'s author ("" when it may): itself, or a bot not allowed."""
    if is_own(event, bot_user_id=bot_user_id, bot_id=bot_id):
        return "own_message"
    ids = bot_ids(event)
    if ids and ids.isdisjoint(settings.SLACK_ALLOWED_BOTS):
        return "bot_message"
    return ""

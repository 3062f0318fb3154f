"""Which collections a question may search, from who asks and where: the one place the chat decides it.

Surfaces pass platform ids only (an `Asker`); the bots never decide access themselves.
- Web chat and `manage.py ask --as USER`: what that user may see (console.access.visibility).
- A Slack channel, a Discord channel or server: its ChannelScope, else the collections open to everyone.
  A Discord channel's own row overrides its server's default row.
- A DM (and /ask in a DM): what the linked Lorebot user may see (AccountLink), else only everyone's.
A conversation keeps the scope of its first question (Conversation.scope); each later question is
searched with that scope narrowed to what its asker may search now.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from console.access.visibility import everyone_keys, narrowed, visible_keys
from console.models import AccountLink, ChannelScope, Conversation

SLACK, DISCORD = ChannelScope.Platform.SLACK, ChannelScope.Platform.DISCORD


@dataclass(frozen=True)
class Asker:
    """Who asks and from where, as the surface knows them: ids, never a decision."""

    user: Any = None  # the logged-in Lorebot user (web chat, `ask --as`)
    platform: str = ""  # "slack" or "discord" for a bot; "" otherwise
    workspace: str = ""  # Slack team id, Discord guild id ("" in a Discord DM)
    channel: str = ""  # Slack channel id; Discord channel id (a thread: its parent channel)
    external_user: str = ""  # the platform's user id
    direct: bool = False  # a direct message to the bot

    @property
    def link_key(self) -> str:
        """The AccountLink.external_user of this platform user (Slack user ids are per workspace)."""
        return f"{self.workspace}:{self.external_user}" if self.platform == SLACK else self.external_user


def linked_user(platform: str, external_user: str) -> Any:
    link = AccountLink.objects.select_related("user").filter(platform=platform, external_user=external_user).first()
    return link.user if link is not None and link.user.is_active else None


def channel_keys(platform: str, workspace: str, channel: str) -> frozenset[str]:
    """The collections a channel answers from: its own row, (Discord) its server's, or everyone's."""
    candidates = [channel, ""] if platform == DISCORD else [channel]
    rows = {row.channel: row for row in ChannelScope.objects.filter(platform=platform, workspace=workspace,
                                                                    channel__in=candidates)}
    for name in candidates:
        if name in rows:
            return frozenset(rows[name].collections.values_list("key", flat=True))
    return everyone_keys()


def scope_for(asker: Asker) -> frozenset[str] | None:
    """The collection keys this asker may search here and now (None: all, for staff on the web or CLI)."""
    if not asker.platform:
        return visible_keys(asker.user)
    if asker.direct:
        user = linked_user(asker.platform, asker.link_key)
        return visible_keys(user) if user is not None else everyone_keys()
    return channel_keys(asker.platform, asker.workspace, asker.channel)


def stored_scope(scope: frozenset[str] | None) -> list[str] | None:
    """A scope as Conversation.scope keeps it."""
    return None if scope is None else sorted(scope)


def searchable(conversation: Conversation, now: frozenset[str] | None) -> frozenset[str] | None:
    """What a question in `conversation` searches: its kept scope, narrowed to what the asker may search `now`
    (scope_for)."""
    kept = None if conversation.scope is None else frozenset(conversation.scope)
    return narrowed(kept, now)

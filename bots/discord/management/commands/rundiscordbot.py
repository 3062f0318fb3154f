"""`manage.py rundiscordbot`: the Discord bot's gateway process, until SIGTERM or Ctrl-C."""

from __future__ import annotations

import asyncio
from typing import Any

import discord
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from bots.discord.client import run_bot
from console import chat


class Command(BaseCommand):
    help = "Run the Discord bot: answers mentions, DMs, replies and /ask (DISCORD_BOT_TOKEN)."

    def handle(self, *args: Any, **options: Any) -> str:
        token = settings.DISCORD_BOT_TOKEN
        if not token:
            raise CommandError("DISCORD_BOT_TOKEN is not set (the bot token from the Discord developer portal; "
                               "see the README's Discord section)")
        self.stdout.write("loading the engine…")
        chat.warm_up()  # the embedding model loads now, not on the first question
        self.stdout.write(f"connecting to {settings.DISCORD_GATEWAY_URL}")
        try:
            asyncio.run(run_bot(token))
        except discord.LoginFailure as exc:
            raise CommandError(f"Discord refused DISCORD_BOT_TOKEN: {exc}") from None
        except discord.PrivilegedIntentsRequired:
            raise CommandError("DISCORD_MESSAGE_CONTENT=True, but the Message Content intent is not enabled for this "
                               "application in the developer portal (Bot → Privileged Gateway Intents)") from None
        return "discord bot stopped"

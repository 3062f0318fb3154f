"""`manage.py runslackbot`: the Slack bot over Socket Mode (no public URL needed)."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from bots.slack.socket_mode import serve
from console import chat


class Command(BaseCommand):
    help = "Run the Slack bot over Socket Mode (needs SLACK_APP_TOKEN and SLACK_BOT_TOKEN)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--ping-interval", type=float, default=10.0, metavar="SECONDS",
                            help="how often the connection is checked; a silent one is replaced (default 10)")

    def handle(self, *args: Any, **options: Any) -> str:
        missing = [name for name in ("SLACK_APP_TOKEN", "SLACK_BOT_TOKEN") if not getattr(settings, name)]
        if missing:
            raise CommandError(f"{' and '.join(missing)} must be set for Socket Mode (see README, Slack).")
        if not settings.SLACK_APP_TOKEN.startswith("xapp-"):
            raise CommandError("SLACK_APP_TOKEN must be an app-level token (xapp-…) with connections:write.")
        if options["ping_interval"] <= 0:
            raise CommandError("--ping-interval must be more than 0 seconds.")
        self.stdout.write("Loading the engine…")
        chat.warm_up()  # the first question should not wait for the model
        asyncio.run(self._run(options["ping_interval"]))
        return "Slack bot stopped."

    async def _run(self, ping_interval: float) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        self.stdout.write(f"Connecting to Slack over Socket Mode ({settings.SLACK_API_URL})…")
        try:
            await serve(stop, ping_interval=ping_interval)
        finally:
            await chat.aclose()

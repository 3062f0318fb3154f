from __future__ import annotations

from django.apps import AppConfig


class DiscordBotConfig(AppConfig):
    name = "bots.discord"
    label = "discord_bot"  # not "discord": the app label must not read like the library
    verbose_name = "Discord bot"
    default_auto_field = "django.db.models.BigAutoField"

from __future__ import annotations

from django.apps import AppConfig


class SlackBotConfig(AppConfig):
    name = "bots.slack"
    label = "slack_bot"
    verbose_name = "Lorebot Slack bot"

from __future__ import annotations

from django.urls import path

from bots.slack import views

app_name = "slack_bot"

urlpatterns = [
    path("events", views.events, name="events"),
]

"""Mounted by console.urls as `path("chat/", include("console.chat_urls"))`."""

from __future__ import annotations

from django.urls import path

from console import chat_views

app_name = "chat"

urlpatterns = [
    path("", chat_views.chat_page, name="page"),
]

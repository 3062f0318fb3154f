"""Mounted by console.urls as `path("chat/", include("console.chat.urls"))`."""

from __future__ import annotations

from django.urls import path

from console.chat import views as chat_views

app_name = "chat"

urlpatterns = [
    path("", chat_views.chat_page, name="page"),
]

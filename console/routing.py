"""WebSocket routes, mounted by console.asgi."""

from __future__ import annotations

from django.urls import path

from console.chat.consumer import ChatConsumer

websocket_urlpatterns = [
    path("ws/chat/", ChatConsumer.as_asgi()),
]

"""The web chat page; the conversation itself travels over the `/ws/chat/` socket."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render, resolve_url
from django.urls import NoReverseMatch
from django.views.decorators.http import require_GET


@require_GET
def chat_page(request: HttpRequest) -> HttpResponse:
    """The chat page: logged-in users, or anyone with a session when CHAT_ALLOW_ANONYMOUS is on."""
    if not request.user.is_authenticated:
        if not settings.CHAT_ALLOW_ANONYMOUS:
            return redirect_to_login(request.get_full_path(), _login_url())
        if not request.session.session_key:
            # The socket knows an anonymous visitor only by the session cookie set here.
            request.session.save()
    config = {
        "socket_path": "/ws/chat/",
        "max_chars": settings.CHAT_MAX_QUESTION_CHARS,
        "login_url": _login_url(),
    }
    return render(request, "chat/chat.html", {"chat_config": config})


def _login_url() -> str:
    """settings.LOGIN_URL, or the admin's login page while no login view is mounted."""
    try:
        return resolve_url(settings.LOGIN_URL)
    except NoReverseMatch:
        return "/admin/login/"

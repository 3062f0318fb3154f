"""Where a user lands after logging in, and which `next` addresses they may be sent on to."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme

# Paths only staff may open: a member sent there by `next` would meet a 403 instead of the chat.
STAFF_PREFIXES = ("/console/", "/admin/", "/status/")


def is_staff(user: Any) -> bool:
    return bool(getattr(user, "is_authenticated", False) and user.is_active and user.is_staff)


def home_url(user: Any) -> str:
    """Staff start at the console's dashboard, members at the chat."""
    return reverse("console:dashboard") if is_staff(user) else reverse("chat:page")


def may_open(user: Any, path: str) -> bool:
    """Whether `user` may open the local `path` (members: anything outside the console and the admin)."""
    return is_staff(user) or not path.startswith(STAFF_PREFIXES)


def landing_url(request: HttpRequest, user: Any, next_url: str) -> str:
    """`next` when it is on this site and the user may open it; else the user's own start page."""
    safe = url_has_allowed_host_and_scheme(next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure())
    if next_url and safe and next_url.startswith("/") and may_open(user, next_url):
        return next_url
    return home_url(user)

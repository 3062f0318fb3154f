"""Login throttling: failed logins are counted per account and per client address in Django's cache.

After LOGIN_THROTTLE_ACCOUNT failures for one user name, or LOGIN_THROTTLE_ADDRESS from one address,
logins there are refused, without the password being checked, until the window that began with the
first failure ends. The backend is first in AUTHENTICATION_BACKENDS, so every login form (the
console's and the Django admin's) is covered; the forms say in words why a login was refused.

Chosen over django-axes, which brings four database tables written on every attempt, a backend that
refuses any authenticate() call made without a request (the test client's login(), scripts), a
middleware that rewrites responses and some forty AXES_* settings; this uses the cache that the
chat's rate limits already use, shared by every process when CACHE_URL is set.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import time
from dataclasses import dataclass
from typing import Any

import structlog
from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import user_logged_in, user_login_failed
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.views import LoginView
from django.core.cache import cache
from django.core.exceptions import PermissionDenied, ValidationError
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse

from console.ops.metrics import LOGIN_ATTEMPTS
from console.ops.middleware import client_ip_for
from ragcore.metrics import PIPELINE_ERRORS

log = structlog.get_logger(__name__, component="auth")


@dataclass(frozen=True)
class Throttle:
    """Why logins are refused: which limit was reached, and for how many more seconds."""

    scope: str  # "account" or "address"
    retry_after: int

    @property
    def message(self) -> str:
        """What the login page says."""
        who = "this account" if self.scope == "account" else "your network address"
        minutes = math.ceil(self.retry_after / 60)
        wait = f"{minutes} minute{'s' if minutes > 1 else ''}"
        return f"Too many failed logins for {who}. Logging in is paused for your safety: try again in {wait}."


@dataclass(frozen=True)
class _Counter:
    scope: str
    key: str  # the cache key's stem: a hash of the user name, or the address (an IPv6 /64)
    limit: int
    window: int

    @property
    def failures_key(self) -> str:
        return f"login-failures:{self.scope}:{self.key}"

    @property
    def since_key(self) -> str:
        return f"login-failures-since:{self.scope}:{self.key}"


def _rate(value: str) -> tuple[int, int]:
    limit, _, window = value.partition("/")
    return int(limit), int(window or 60)


def _address(request: HttpRequest) -> str:
    """The client's address; for IPv6 its /64, which one machine usually holds whole."""
    address = client_ip_for(request)
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    return str(ipaddress.ip_network(f"{ip}/64", strict=False)) if ip.version == 6 else str(ip)


def _counters(request: HttpRequest, username: str | None) -> list[_Counter]:
    counters = []
    if username:
        # Case-folded, so "Alice" and "alice" share one count; hashed, so no user name sits in the cache.
        digest = hashlib.sha256(username.casefold().encode()).hexdigest()[:32]
        counters.append(_Counter("account", digest, *_rate(settings.LOGIN_THROTTLE_ACCOUNT)))
    address = _address(request)
    if address:
        counters.append(_Counter("address", address, *_rate(settings.LOGIN_THROTTLE_ADDRESS)))
    return [c for c in counters if c.limit > 0]


def _cache_down(exc: Exception) -> None:
    # A shared cache (CACHE_URL) that is down: let people log in rather than lock everyone out.
    PIPELINE_ERRORS.labels("cache").inc()
    log.warning("login.throttle_unavailable", error=f"{type(exc).__name__}: {exc}")


def current_throttle(request: HttpRequest, username: str | None) -> Throttle | None:
    """The limit this login attempt is over, if any."""
    now = time.time()
    try:
        for counter in _counters(request, username):
            values = cache.get_many([counter.failures_key, counter.since_key])
            if values.get(counter.failures_key, 0) >= counter.limit:
                since = float(values.get(counter.since_key, now))
                return Throttle(counter.scope, max(1, math.ceil(since + counter.window - now)))
    except Exception as exc:
        _cache_down(exc)
    return None


def record_failure(request: HttpRequest, username: str | None) -> None:
    """One more failed login for the account and the address; each window starts at its first failure."""
    try:
        for counter in _counters(request, username):
            cache.add(counter.since_key, time.time(), timeout=counter.window)
            cache.add(counter.failures_key, 0, timeout=counter.window)
            try:
                cache.incr(counter.failures_key)
            except ValueError:  # expired between add and incr
                cache.set(counter.failures_key, 1, timeout=counter.window)
    except Exception as exc:
        _cache_down(exc)


def forget_failures(request: HttpRequest, username: str) -> None:
    """A successful login clears its account's count (not the address's: others may share it)."""
    try:
        for counter in _counters(request, username):
            if counter.scope == "account":
                cache.delete_many([counter.failures_key, counter.since_key])
    except Exception as exc:
        _cache_down(exc)


def throttle_of(request: HttpRequest | None) -> Throttle | None:
    """The throttle that refused this request's login, if one did."""
    return getattr(request, "login_throttle", None)


class LoginThrottleBackend:
    """Refuses a throttled login before any other backend checks its password."""

    def authenticate(self, request: HttpRequest | None, username: str | None = None, **credentials: Any) -> None:
        if request is None:
            return  # not a web login (a script, the test client's login()): nothing to guess through
        throttle = current_throttle(request, username)
        if throttle is not None:
            request.login_throttle = throttle  # type: ignore[attr-defined]
            raise PermissionDenied(throttle.message)  # stops authenticate() here; user_login_failed follows


@receiver(user_login_failed)
def _on_login_failed(sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any) -> None:
    if request is None:
        return
    throttle = throttle_of(request)
    if throttle is not None:
        LOGIN_ATTEMPTS.labels("throttled").inc()
        log.warning("login.throttled", scope=throttle.scope, retry_after=throttle.retry_after)
        return
    LOGIN_ATTEMPTS.labels("failed").inc()
    log.info("login.failed")  # never the user name: people type their password into it
    record_failure(request, credentials.get("username"))


@receiver(user_logged_in)
def _on_logged_in(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    LOGIN_ATTEMPTS.labels("succeeded").inc()
    if request is not None:
        forget_failures(request, user.get_username())


def _throttle_error(request: HttpRequest | None) -> ValidationError | None:
    throttle = throttle_of(request)
    return ValidationError(throttle.message, code="throttled") if throttle else None


class LoginForm(AuthenticationForm):
    """The console's login form: a throttled login says so instead of "wrong password"."""

    def get_invalid_login_error(self) -> ValidationError:
        return _throttle_error(self.request) or super().get_invalid_login_error()


class AdminLoginForm(AdminAuthenticationForm):
    """The Django admin's login form, saying the same."""

    def get_invalid_login_error(self) -> ValidationError:
        return _throttle_error(self.request) or super().get_invalid_login_error()


class ThrottledLoginView(LoginView):
    """The login page; a throttled attempt is answered 429 with Retry-After and the reason on the page."""

    template_name = "console/login.html"
    redirect_authenticated_user = True
    authentication_form = LoginForm

    def form_invalid(self, form: AuthenticationForm) -> HttpResponse:
        response = super().form_invalid(form)
        throttle = throttle_of(self.request)
        if throttle is not None:
            response.status_code = 429
            response["Retry-After"] = str(throttle.retry_after)
        return response

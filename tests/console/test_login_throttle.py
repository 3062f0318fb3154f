"""Login throttling: wrong passwords are counted per account and per address, then refused with a reason."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.test import Client, override_settings
from prometheus_client import REGISTRY

pytestmark = pytest.mark.django_db

LOGIN = "/accounts/login/"
ADMIN_LOGIN = "/admin/login/"
REDIS_URL = os.getenv("REDIS_URL", "")


@pytest.fixture(autouse=True)
def fresh_counts(settings: Any) -> Iterator[None]:
    # A fast hasher: each wrong password would otherwise cost a second of PBKDF2 on this machine.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    cache.clear()  # the default cache is this process's memory: counts would leak between tests
    yield
    cache.clear()


@pytest.fixture
def alice() -> None:
    get_user_model().objects.create_user("alice", password="right-pw", is_staff=True)


def attempts(outcome: str) -> float:
    return REGISTRY.get_sample_value("rag_login_attempts_total", {"outcome": outcome}) or 0.0


def log_in(client: Client, username: str, password: str, *, address: str = "203.0.113.7") -> int:
    """The status of one console login POST; a throttled one (429) always says why and for how long."""
    response = client.post(LOGIN, {"username": username, "password": password}, REMOTE_ADDR=address)
    assert ("Too many failed logins" in response.content.decode()) == (response.status_code == 429)
    if response.status_code == 429:
        assert response["Retry-After"].isdigit()
    return response.status_code


def test_forty_wrong_passwords_in_a_row_are_not_all_answered(alice: None) -> None:
    client = Client()
    throttled_before = attempts("throttled")
    statuses = [log_in(client, "alice", f"guess-{i}") for i in range(40)]
    assert statuses[:5] == [200] * 5, "the first five wrong passwords are simply wrong"
    assert statuses[5:] == [429] * 35, "the rest are refused without checking the password"
    assert attempts("throttled") - throttled_before == 35

    # Even the right password is refused now: a guess that happens to be right gains nothing.
    response = client.post(LOGIN, {"username": "alice", "password": "right-pw"}, REMOTE_ADDR="198.51.100.1")
    assert response.status_code == 429
    assert "Too many failed logins for this account" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_the_page_says_why_and_when_to_try_again(alice: None) -> None:
    client = Client()
    for i in range(5):
        log_in(client, "alice", f"guess-{i}")
    response = client.post(LOGIN, {"username": "alice", "password": "guess-5"}, REMOTE_ADDR="203.0.113.7")
    assert response.status_code == 429
    assert int(response["Retry-After"]) <= 300
    html = response.content.decode()
    assert '<li class="flash-error">Too many failed logins for this account. Logging in is paused for your safety: ' \
           "try again in 5 minutes.</li>" in html
    assert "Please enter a correct username" not in html


def test_the_account_count_ignores_the_case_of_the_user_name(alice: None) -> None:
    client = Client()
    for name in ("alice", "Alice", "ALICE", "aLiCe", "alicE"):
        assert log_in(client, name, "wrong") == 200
    assert log_in(client, "alice", "right-pw", address="198.51.100.2") == 429


def test_one_address_trying_many_accounts_is_throttled_and_others_are_not(alice: None) -> None:
    client = Client()
    statuses = [log_in(client, f"user{i}", "wrong") for i in range(20)]
    assert statuses == [200] * 20
    response = client.post(LOGIN, {"username": "alice", "password": "right-pw"}, REMOTE_ADDR="203.0.113.7")
    assert response.status_code == 429
    assert "Too many failed logins for your network address" in response.content.decode()
    # Alice from her own address is not held back by someone else's guessing.
    assert log_in(Client(), "alice", "right-pw", address="198.51.100.3") == 302


def test_an_ipv6_client_is_counted_by_its_64_network(alice: None) -> None:
    client = Client()
    for i in range(20):
        assert log_in(client, f"user{i}", "wrong", address=f"2001:db8:1:2::{i + 1:x}") == 200
    assert log_in(client, "alice", "right-pw", address="2001:db8:1:2:ffff::1") == 429
    assert log_in(Client(), "alice", "right-pw", address="2001:db8:1:3::1") == 302


@override_settings(LOGIN_THROTTLE_ACCOUNT="3/300")
def test_a_successful_login_clears_the_account_count(alice: None) -> None:
    client = Client()
    assert [log_in(client, "alice", "wrong") for _ in range(2)] == [200, 200]
    assert log_in(client, "alice", "right-pw") == 302
    client.post("/accounts/logout/")
    assert [log_in(client, "alice", "wrong") for _ in range(2)] == [200, 200], "counting starts again from zero"
    assert log_in(client, "alice", "right-pw") == 302


def test_logins_work_again_when_the_window_has_passed(alice: None, monkeypatch: pytest.MonkeyPatch) -> None:
    client = Client()
    for _ in range(6):
        log_in(client, "alice", "wrong")
    assert log_in(client, "alice", "right-pw") == 429
    later = time.time() + 301
    monkeypatch.setattr(time, "time", lambda: later)  # the cache's expiry reads the same clock
    assert log_in(client, "alice", "right-pw") == 302


def test_the_admin_login_is_throttled_too_and_says_so(alice: None) -> None:
    client = Client()
    for i in range(5):
        client.post(ADMIN_LOGIN, {"username": "alice", "password": f"guess-{i}"}, REMOTE_ADDR="203.0.113.9")
    response = client.post(ADMIN_LOGIN, {"username": "alice", "password": "right-pw"}, REMOTE_ADDR="203.0.113.9")
    assert "Too many failed logins for this account" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_failures_and_successes_are_counted(alice: None) -> None:
    failed, succeeded = attempts("failed"), attempts("succeeded")
    log_in(Client(), "alice", "wrong")
    log_in(Client(), "alice", "right-pw")
    assert attempts("failed") - failed == 1
    assert attempts("succeeded") - succeeded == 1


def test_login_still_works_when_the_shared_cache_is_down(alice: None) -> None:
    down = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://127.0.0.1:1/0",
                        "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5}}}
    errors = REGISTRY.get_sample_value("rag_pipeline_errors_total", {"component": "cache"}) or 0.0
    with override_settings(CACHES=down, SESSION_ENGINE="django.contrib.sessions.backends.db"):
        assert log_in(Client(), "alice", "right-pw") == 302
    assert (REGISTRY.get_sample_value("rag_pipeline_errors_total", {"component": "cache"}) or 0.0) > errors


@pytest.mark.skipif(not REDIS_URL, reason="REDIS_URL is not set: the shared-cache check needs Redis (CI sets it)")
def test_with_a_shared_cache_every_process_sees_the_same_counts(alice: None) -> None:
    import redis

    location = REDIS_URL.rsplit("/", 1)[0] + "/6"
    shared = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": location,
                          "KEY_PREFIX": "lorebot-test-throttle"}}
    with override_settings(CACHES=shared):
        cache.clear()
        for _ in range(5):
            log_in(Client(), "alice", "wrong")
        # What another process finds in Redis: the account's count, under a key with no user name in it.
        found = redis.Redis.from_url(location, decode_responses=True).keys("lorebot-test-throttle:*login-failures:*")
        keys = [str(k) for k in found]
        assert any(":account:" in k for k in keys) and any(":address:203.0.113.7" in k for k in keys)
        assert not any("alice" in k for k in keys)
        assert log_in(Client(), "alice", "right-pw", address="198.51.100.4") == 429
        cache.clear()

"""What the production environment makes of console/settings.py, read by a fresh process as systemd starts one."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
PRODUCTION = {
    "LOREBOT_PUBLIC_URL": "https://lorebot.example.com",
    "DJANGO_ALLOWED_HOSTS": "lorebot.example.com",
    "TRUSTED_PROXIES": "127.0.0.1",
}
_PRINT = ("import json, django; django.setup(); from django.conf import settings as s; print(json.dumps({n: getattr(s, n) "
          "for n in ('CSRF_TRUSTED_ORIGINS', 'SESSION_COOKIE_SECURE', 'CSRF_COOKIE_SECURE', 'SESSION_COOKIE_HTTPONLY', "
          "'CSRF_COOKIE_HTTPONLY', 'SECURE_PROXY_SSL_HEADER', 'SECURE_HSTS_SECONDS', 'LOREBOT_PUBLIC_ORIGIN')}))")


def _run(argv: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "console.settings", "RAG_DATA_DIR": str(tmp_path),
            "DJANGO_SECRET_KEY": "production-like-" + "k" * 50, "PYTHONPATH": str(REPO)}
    return subprocess.run(argv, env={**base, **env}, cwd=REPO, capture_output=True, text=True, timeout=120, check=False)


def settings_with(tmp_path: Path, **env: str) -> dict[str, Any]:
    done = _run([sys.executable, "-c", _PRINT], tmp_path, **env)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def test_the_production_environment_turns_on_csrf_origin_secure_cookies_hsts_and_the_proxy_header(tmp_path: Path) -> None:
    s = settings_with(tmp_path, **PRODUCTION)
    assert s["CSRF_TRUSTED_ORIGINS"] == ["https://lorebot.example.com"]
    assert s["SESSION_COOKIE_SECURE"] and s["CSRF_COOKIE_SECURE"]
    assert s["SESSION_COOKIE_HTTPONLY"] and s["CSRF_COOKIE_HTTPONLY"]
    assert s["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert s["SECURE_HSTS_SECONDS"] == 31536000


def test_without_tls_or_a_proxy_nothing_claims_https(tmp_path: Path) -> None:
    s = settings_with(tmp_path, LOREBOT_PUBLIC_URL="http://127.0.0.1:8000/")
    assert s["CSRF_TRUSTED_ORIGINS"] == ["http://127.0.0.1:8000"]
    assert not s["SESSION_COOKIE_SECURE"] and not s["CSRF_COOKIE_SECURE"], "a Secure cookie is never sent over http"
    assert s["SECURE_PROXY_SSL_HEADER"] is None, "no TRUSTED_PROXIES: no one may say the request was https"
    assert settings_with(tmp_path, DJANGO_HSTS_SECONDS="300")["SECURE_HSTS_SECONDS"] == 300


def test_a_malformed_public_url_or_hsts_age_stops_start_up_naming_the_variable(tmp_path: Path) -> None:
    for env, name in (({"LOREBOT_PUBLIC_URL": "lorebot.example.com"}, "LOREBOT_PUBLIC_URL"),
                      ({"LOREBOT_PUBLIC_URL": "https://lorebot.example.com:https"}, "LOREBOT_PUBLIC_URL"),
                      ({"DJANGO_HSTS_SECONDS": "a year"}, "DJANGO_HSTS_SECONDS"),
                      ({"LOGIN_THROTTLE_ACCOUNT": "5 per minute"}, "LOGIN_THROTTLE_ACCOUNT")):
        done = _run([sys.executable, "manage.py", "check"], tmp_path, **env)
        assert done.returncode != 0
        assert f"ImproperlyConfigured: {name} must" in done.stderr


def test_django_s_deployment_checks_pass_but_for_what_nginx_or_the_operator_decides(tmp_path: Path) -> None:
    done = _run([sys.executable, "manage.py", "check", "--deploy"], tmp_path, **PRODUCTION)
    warnings = set(re.findall(r"\(security\.(W\d+)\)", done.stdout + done.stderr))
    # W008: nginx redirects http to https (a Django redirect would also bounce the plain-http
    # /health and /metrics probes of each daphne process). W005 and W021: HSTS for every subdomain
    # and the browsers' preload list are commitments for the whole domain, the operator's to make.
    assert warnings == {"W005", "W008", "W021"}, done.stdout + done.stderr

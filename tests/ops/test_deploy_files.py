"""The deployment files in deploy/ name commands and routes that exist, so they cannot rot unseen."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from django.core.management import get_commands
from django.urls import resolve

from tests.daphne_server import BACKLOG, HANDSHAKE_FLAGS, free_port
from tests.nginx_server import NGINX, check_config, make_certificate, nginx_prefix, render_site, write_config

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def _exec_lines() -> dict[str, list[list[str]]]:
    units: dict[str, list[list[str]]] = {}
    for unit in sorted((DEPLOY / "systemd").glob("*.service")):
        lines = [line.split("=", 1)[1] for line in unit.read_text().splitlines() if line.startswith("ExecStart=")]
        units[unit.name] = [shlex.split(line) for line in lines]
    return units


def test_every_manage_py_command_in_the_systemd_units_exists() -> None:
    commands = get_commands()
    used = {argv[argv.index("manage.py") + 1] for lines in _exec_lines().values() for argv in lines if "manage.py" in argv}
    assert {"runslackbot", "rundiscordbot", "db_worker", "migrate"} <= used
    assert used <= set(commands), f"unknown commands: {used - set(commands)}"


def test_the_units_cover_web_worker_and_both_bots_and_read_the_env_file() -> None:
    units = _exec_lines()
    assert {"lorebot-web@.service", "lorebot-worker@.service", "lorebot-slack.service", "lorebot-discord.service"} <= set(units)
    web = units["lorebot-web@.service"][0]
    assert "console.asgi:application" in web and any("%i" in arg for arg in web)
    for name, lines in units.items():
        if any("manage.py" in argv or argv[0].endswith("/daphne") for argv in lines):
            assert "EnvironmentFile=/etc/lorebot/lorebot.env" in (DEPLOY / "systemd" / name).read_text(), name


def test_the_web_unit_runs_daphne_as_the_tests_and_benchmarks_do() -> None:
    """The backlog and handshake timeout that let a burst of sockets in are the deployment's, not only the benchmark's."""
    web = _exec_lines()["lorebot-web@.service"][0]
    assert "-e" in web and web[web.index("-e") + 1] == f"tcp:port=%i:interface=127.0.0.1:backlog={BACKLOG}"
    flag = HANDSHAKE_FLAGS[0]
    assert flag in web and tuple(web[web.index(flag): web.index(flag) + 2]) == HANDSHAKE_FLAGS


def _blocks(conf: str, opening: str) -> list[str]:
    """The text of every `opening … { … }` block (nginx's blocks nest, so braces are counted)."""
    blocks = []
    for match in re.finditer(rf"^\s*{opening}[^{{;]*{{", conf, re.MULTILINE):
        depth, i = 1, match.end()
        while depth:
            depth += {"{": 1, "}": -1}.get(conf[i], 0)
            i += 1
        blocks.append(conf[match.end(): i - 1])
    return blocks


def _directives(block: str) -> list[str]:
    return [" ".join(line.split("#", 1)[0].split()) for line in block.splitlines() if line.split("#", 1)[0].strip()]


def test_nginx_sets_every_forwarded_header_once_at_server_level() -> None:
    conf = (DEPLOY / "nginx" / "lorebot.conf").read_text()
    tls = next(b for b in _blocks(conf, "server") if "ssl" in b)
    # A location with a proxy_set_header (or add_header) of its own drops every inherited one:
    # Host, X-Forwarded-For and X-Forwarded-Proto would be lost there.
    for location in _blocks(tls, "location"):
        assert not [d for d in _directives(location) if d.startswith(("proxy_set_header", "add_header"))], location
    headers = [d for d in _directives(tls) if d.startswith("proxy_set_header")]
    assert "proxy_set_header Host $http_host;" in headers  # the port too: the origin checks compare it
    assert "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;" in headers  # appended, not replaced
    assert "proxy_set_header X-Forwarded-Proto $scheme;" in headers
    assert "proxy_set_header X-Request-ID $lorebot_request_id;" in headers
    assert "proxy_set_header Upgrade $http_upgrade;" in headers and "proxy_set_header Connection $lorebot_connection;" in headers
    assert len(re.findall(r"^\s*server 127\.0\.0\.1:\d+", conf, re.MULTILINE)) >= 2  # several daphne processes
    assert resolve("/health/ready").url_name == "health-ready"  # the upstream check the README names


def test_nginx_config_has_no_directive_newer_than_debian_12_s_nginx() -> None:
    conf = (DEPLOY / "nginx" / "lorebot.conf").read_text()
    assert not re.search(r"^\s*http2\s+on\s*;", conf, re.MULTILINE), "`http2 on;` needs nginx 1.25.1: use `listen … ssl http2;`"
    assert "listen 443 ssl http2;" in conf


@pytest.mark.skipif(not NGINX, reason="nginx is not installed (apt-get install -y nginx; CI installs it)")
def test_nginx_t_accepts_the_shipped_config() -> None:
    with nginx_prefix() as prefix:
        cert, key = make_certificate(prefix)
        site = render_site(prefix, cert=cert, key=key, https_port=free_port(), http_port=free_port(), loopback=False)
        done = check_config(prefix, write_config(prefix, site))
    assert done.returncode == 0, done.stdout
    assert "test is successful" in done.stdout


def test_nginx_accepts_uploads_as_large_as_lorebot_does(settings) -> None:
    conf = (DEPLOY / "nginx" / "lorebot.conf").read_text()
    match = re.search(r"client_max_body_size\s+(\d+)m;", conf)
    assert match and int(match.group(1)) >= settings.RAG_MAX_FILE_MB

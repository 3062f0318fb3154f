"""The deployment files in deploy/ name commands and routes that exist, so they cannot rot unseen."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from django.core.management import get_commands
from django.urls import resolve

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
    assert "console.asgi:application" in web and "%i" in web
    for name, lines in units.items():
        if any("manage.py" in argv or argv[0].endswith("/daphne") for argv in lines):
            assert "EnvironmentFile=/etc/lorebot/lorebot.env" in (DEPLOY / "systemd" / name).read_text(), name


def test_nginx_upgrades_websockets_and_forwards_client_and_request_ids() -> None:
    conf = (DEPLOY / "nginx" / "lorebot.conf").read_text()
    ws = conf[conf.index("location /ws/"):]
    ws = ws[: ws.index("}")]
    assert "proxy_set_header Upgrade $http_upgrade" in ws and "Connection" in ws
    assert "X-Forwarded-For $proxy_add_x_forwarded_for" in conf and "X-Request-ID" in conf
    assert len(re.findall(r"^\s*server 127\.0\.0\.1:\d+", conf, re.MULTILINE)) >= 2  # several daphne processes
    assert resolve("/health/ready").url_name == "health-ready"  # the upstream check the README names


def test_nginx_accepts_uploads_as_large_as_lorebot_does(settings) -> None:
    conf = (DEPLOY / "nginx" / "lorebot.conf").read_text()
    match = re.search(r"client_max_body_size\s+(\d+)m;", conf)
    assert match and int(match.group(1)) >= settings.RAG_MAX_FILE_MB

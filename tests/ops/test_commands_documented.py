"""The README's command list names every `manage.py` command of Lorebot's apps and every `make` target, and
nothing that does not exist."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def command_list() -> str:
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Commands"):]
    return section[: section.index("\n## ", 1)]


def lorebot_commands() -> set[str]:
    return {p.stem for app in ("console", "bots") for p in (REPO / app).glob("**/management/commands/*.py")
            if not p.name.startswith("_")}


def make_targets() -> set[str]:
    return set(re.findall(r"^([a-z][a-z-]*):", (REPO / "Makefile").read_text(), re.M))


def test_every_manage_py_command_is_in_the_command_list_and_only_those() -> None:
    listed = set(re.findall(r"^\| `python manage\.py ([a-z_]+)", command_list(), re.M))
    assert {"ingest", "reindex", "runslackbot"} <= lorebot_commands()
    assert listed == lorebot_commands(), (f"undocumented: {sorted(lorebot_commands() - listed)}; "
                                          f"documented but absent: {sorted(listed - lorebot_commands())}")


def test_every_make_target_is_in_the_command_list_and_only_those() -> None:
    listed = set(re.findall(r"^\| `make ([a-z-]+)`", command_list(), re.M))
    assert listed == make_targets(), (f"undocumented: {sorted(make_targets() - listed)}; "
                                      f"documented but absent: {sorted(listed - make_targets())}")

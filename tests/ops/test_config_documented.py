"""Every environment variable console/settings.py reads is in the env template and the README table,
and so is every one the engine's own `RagSettings.from_env()` reads; the table names nothing else.

Helpers are found, not listed: any function in settings.py that calls os.getenv counts, so a new
helper or a new setting cannot slip past. Other helpers add settings all the time; this is what
keeps deploy/lorebot.env.example and the README's Configuration table honest.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SETTINGS = REPO / "console" / "settings.py"
ENV_TEMPLATE = REPO / "deploy" / "lorebot.env.example"
MAKEFILE = REPO / "Makefile"
README = REPO / "README.md"


def _is_getenv(call: ast.Call) -> bool:
    f = call.func
    if isinstance(f, ast.Attribute) and f.attr == "getenv":
        return True  # os.getenv
    return (isinstance(f, ast.Attribute) and f.attr == "get" and isinstance(f.value, ast.Attribute)
            and f.value.attr == "environ")  # os.environ.get


def settings_variables() -> set[str]:
    tree = ast.parse(SETTINGS.read_text())
    helpers = {
        node.name for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef)
        and any(isinstance(c, ast.Call) and _is_getenv(c) for c in ast.walk(node))
        and node.args.args  # envbool(name, ...): the first parameter is the variable's name
    }
    names = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        first = node.args[0]
        if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
            continue  # os.getenv(name, ...) inside a helper: the callers name the variable
        called = node.func.id if isinstance(node.func, ast.Name) else None
        if _is_getenv(node) or called in helpers:
            names.add(first.value)
    return names


def template_variables() -> set[str]:
    """NAME=value lines, commented out or not (an optional setting is shown with its default)."""
    return set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", ENV_TEMPLATE.read_text(), re.M))


def readme_variables() -> set[str]:
    text = README.read_text()
    table = text[text.index("## Configuration"):]
    table = table[: table.index("\n## ", 1)]
    return set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)`", table, re.M))


def test_the_parser_finds_the_settings_read_through_every_helper() -> None:
    found = settings_variables()
    # One per way of reading: os.getenv, envbool, envint, envfloat, envrate, envsecret.
    assert {"DATABASE_URL", "DJANGO_DEBUG", "RAG_TOP_K", "RAG_HYBRID_ALPHA", "CHAT_RATE_LIMIT_USER",
            "GROQ_API_KEY"} <= found
    assert len(found) > 30


def test_every_setting_is_in_the_env_template() -> None:
    missing = sorted(settings_variables() - template_variables())
    assert not missing, f"add these to deploy/lorebot.env.example: {missing}"


def test_every_setting_is_in_the_readme_configuration_table() -> None:
    missing = sorted(settings_variables() - readme_variables())
    assert not missing, f"add these to the Configuration table in README.md: {missing}"


def engine_variables() -> set[str]:
    from ragcore.settings import RagSettings

    return {*RagSettings.env_variables().values(), "RAG_MAX_FILE_MB"}


def make_variables() -> set[str]:
    """`NAME ?= default` lines: variables `make` takes from the environment."""
    return set(re.findall(r"^([A-Z][A-Z0-9_]+)\s*\?=", MAKEFILE.read_text(), re.M))


def test_every_engine_variable_is_in_the_readme_configuration_table() -> None:
    missing = sorted(engine_variables() - readme_variables())
    assert not missing, f"add these to the Configuration table in README.md: {missing}"


def test_the_readme_table_names_no_setting_that_does_not_exist() -> None:
    extra = sorted(readme_variables() - settings_variables() - engine_variables() - make_variables())
    assert not extra, f"the README's Configuration table names variables nothing reads: {extra}"


def test_the_env_template_names_no_setting_that_does_not_exist() -> None:
    # PROMETHEUS_MULTIPROC_DIR and the *_FILE forms are read outside settings.py's helpers' first argument.
    extra = {n for n in template_variables() - settings_variables() if not n.endswith("_FILE")}
    assert not extra, f"deploy/lorebot.env.example names variables nothing reads: {sorted(extra)}"


def test_the_env_template_is_valid_for_systemd() -> None:
    """systemd's EnvironmentFile= keeps everything after `=`: a trailing comment would become the value."""
    for line in ENV_TEMPLATE.read_text().splitlines():
        if line and not line.startswith("#"):
            assert re.fullmatch(r"[A-Z][A-Z0-9_]*=\S*", line), f"not NAME=value: {line!r}"

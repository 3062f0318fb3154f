"""The house rules a reader relies on: no import cycle, every module importable, no module shadowing the
standard library, and statuses assigned only by the models' transitions."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ragcore", "console", "bots")


def _modules() -> dict[str, Path]:
    """Every module of the three packages by dotted name (a package by its own name)."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _runtime_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement that runs (inside functions too), but not those under `if TYPE_CHECKING:`."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(child) for stmt in node.body for child in ast.walk(stmt))
    return [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) and id(n) not in skipped]


def import_graph() -> dict[str, set[str]]:
    """module -> the modules of ours it imports by name (the implicit import of a parent package is not an edge)."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in _runtime_imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                assert node.level == 0, f"{path}: relative import"
                base = node.module or ""
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
            graph[name].update(t for t in targets if t in modules and t != name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_package_has_an_import_cycle() -> None:
    graph = import_graph()
    assert len(graph) > 50 and graph["console.tasks"] == {"console.ingest.worker", "console.syncing.runs", "console.models"}
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle_hidden_in_a_function() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_ragcore_imports_nothing_of_the_console_or_the_bots_and_the_bots_no_ragcore() -> None:
    graph = import_graph()
    for module, imported in graph.items():
        if module.startswith("ragcore"):
            assert not {m for m in imported if not m.startswith("ragcore")}, module
        if module.startswith("bots"):
            assert not {m for m in imported if m.startswith("ragcore")}, module


@pytest.mark.slow  # a subprocess that imports everything, the model library included
def test_every_module_imports() -> None:
    names = sorted(_modules())
    code = (
        "import django, importlib; django.setup()\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "console.settings", "WARMUP_ON_START": "False"}
    env.pop("DATABASE_URL", None)
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def test_no_console_or_bot_module_is_named_like_a_standard_library_one() -> None:
    shadowing = [name for name in _modules() if not name.startswith("ragcore")
                 and name.rsplit(".", 1)[-1] in sys.stdlib_module_names]
    assert shadowing == []


OUR_MODELS = {"Document", "IngestJob", "IngestJobFile", "Source", "SyncRun", "SyncItem"}


def _status_assignments(path: Path) -> list[str]:
    """Lines of `path` that assign a `status` or `state` attribute, or pass one to update()/create()."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        flat = [e for t in targets for e in (t.elts if isinstance(t, ast.Tuple) else [t])]
        if any(isinstance(e, ast.Attribute) and e.attr in ("status", "state") for e in flat):
            found.append(f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in (
                "update", "create", "bulk_create", "get_or_create", "update_or_create"):
            root = node.func.value
            while isinstance(root, (ast.Attribute, ast.Call)):
                root = root.value if isinstance(root, ast.Attribute) else root.func
            ours = isinstance(root, ast.Name) and root.id in OUR_MODELS  # not django_tasks_db's task rows
            if ours and any(k.arg in ("status", "state") for k in node.keywords):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_only_the_models_assign_a_status() -> None:
    models = ROOT / "console" / "models.py"
    paths = [p for package in ("console", "bots") for p in (ROOT / package).rglob("*.py")
             if p != models and "migrations" not in p.parts]
    assert [line for p in sorted(paths) for line in _status_assignments(p)] == []
    assert _status_assignments(models), "the check must see the transitions where they are"

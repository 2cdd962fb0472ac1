"""The package's import graph runs one way: no cycle, function-level imports included; no private
name taken from another module; no Python module over ~600 lines (issue #10's layering rules)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "tcpmemlib"
MAX_LINES = 600


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _extensions() -> set[str]:
    """C extension modules (built from a ``.c`` file of the package)."""
    return {_module_name(p.with_suffix(".py")) for p in PACKAGE.rglob("*.c")}


def _imports(path: Path, name: str, known: set[str]) -> list[tuple[str, str | None]]:
    """(imported tcpmemlib module, imported name or None) for every import anywhere in the file."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: list[tuple[str, str | None]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((a.name, None) for a in node.names if a.name.startswith("tcpmemlib"))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            if not base.startswith("tcpmemlib"):
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                out.append((sub, None) if sub in known else (base, alias.name))
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for target, _ in _imports(path, name, known):
            while target not in known and "." in target:
                target = target.rpartition(".")[0]
            if target != name and target != "tcpmemlib":
                graph[name].add(target)
    return graph


def test_no_import_cycle():
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = [*stack[stack.index(nxt) :], nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_no_private_name_from_another_module():
    modules = _modules()
    known = set(modules) | _extensions()
    taken = []
    for name, path in modules.items():
        for target, imported in _imports(path, name, known):
            if imported is not None and imported.startswith("_") and not imported.startswith("__"):
                taken.append(f"{name} takes {target}.{imported}")
    assert taken == []


def test_no_module_over_the_size_limit():
    long = {
        name: n
        for name, path in _modules().items()
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}

"""The package's modules import each other without cycles.

Every import counts, at module level or inside a function (a lazy import still ties two
layers together), except those under ``if TYPE_CHECKING:``. Importing ``a.b.c`` also
runs ``a/__init__`` and ``a/b/__init__``, so those count as imported too, except a
module's own ancestors: Python runs them before the module, so they close no cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = "livewidgets"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, module: str, is_package: bool, known: set[str]) -> set[str]:
    """The package modules that ``module``'s code imports (outside TYPE_CHECKING)."""
    found: set[str] = set()
    base = module.split(".") if is_package else module.split(".")[:-1]

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[: len(base) - (node.level - 1)]
                target = ".".join([*anchor, node.module] if node.module else anchor)
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    closed: set[str] = set()
    for name in found:
        parts = name.split(".")
        # a.b.c runs a, a.b and a.b.c: each package on the way counts
        closed.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    ancestors = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)}
    return {name for name in closed if name in known and name != module} - ancestors


def _graph() -> dict[str, set[str]]:
    paths = sorted((SRC / PACKAGE).rglob("*.py"))
    known = {_module_name(path) for path in paths}
    return {
        _module_name(path): _imports(
            ast.parse(path.read_text(), str(path)),
            _module_name(path),
            path.name == "__init__.py",
            known,
        )
        for path in paths
    }


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def test_no_import_cycles() -> None:
    """No group of livewidgets modules imports each other in a circle."""
    assert _cycles(_graph()) == []


def test_the_checker_sees_a_lazy_import_cycle() -> None:
    """The check counts imports inside functions and package __init__s on the way."""
    graph = {
        "p": set(),
        "p.a": _imports(ast.parse("def f():\n    from .b import g\n"), "p.a", False, {"p.b"}),
        "p.b": _imports(ast.parse("from p import a\n"), "p.b", False, {"p", "p.a"}),
    }
    assert graph["p.a"] == {"p.b"}
    assert graph["p.b"] == {"p.a"}  # p is p.b's own ancestor: it runs first
    assert _cycles(graph) == [["p.a", "p.b"]]


def test_type_checking_imports_do_not_count() -> None:
    """An import used only for annotations (under TYPE_CHECKING) ties nothing at run time."""
    source = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import B\n"
    assert _imports(ast.parse(source), "p.a", False, {"p.b"}) == set()

"""The package layout (issue 13): dependencies point one way, outputs <- contract <- model <- hw <- sim <- deploy;
no import cycle between the stage packages of hw/ (lower, compile, blocks, bitstream, ...); no production module
imports a test module. Read from the source with ast (every import, also the ones inside functions), nothing is
imported."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("outputs", "contract", "model", "hw", "sim", "deploy")
"""The top-level packages, lowest first: a module may import its own layer and the ones before it."""

KNOWN_UPWARD: set[tuple[str, str]] = set()
"""(importer, imported module) pairs against LAYERS, each to be fixed; none now."""
KNOWN_CYCLE_EDGES: set[tuple[str, str]] = set()
"""Imports that close a cycle between packages, each to be fixed; none now."""


def is_test(module: str) -> bool:
    leaf = module.rsplit(".", 1)[-1]
    return leaf.startswith("test_") or leaf == "conftest"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(("instabnn", *(parts[:-1] if parts[-1] == "__init__" else parts)))


@cache
def imports() -> dict[str, set[str]]:
    """Module -> the instabnn modules (or names in them) it imports, for every .py below the top-level packages."""
    found = {}
    for top in LAYERS:
        for path in sorted((ROOT / top).rglob("*.py")):
            module, package = module_name(path), path.name == "__init__.py"
            targets = set()
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    targets.update(a.name for a in node.names)
                elif isinstance(node, ast.ImportFrom):
                    base = node.module or ""
                    if node.level:
                        parent = module.split(".")[:len(module.split(".")) - node.level + package]
                        base = ".".join(parent + ([node.module] if node.module else []))
                    targets.add(base)
                    targets.update(f"{base}.{a.name}" for a in node.names)
            found[module] = {t for t in targets if t.startswith("instabnn.")}
    return found


def layer(module: str) -> int:
    return LAYERS.index(module.split(".")[1])


def unit(module: str) -> str:
    """The package a dependency cycle is checked between: a top-level package, or for hw/ each of its stages."""
    parts = module.split(".")
    return ".".join(parts[:3] if parts[1] == "hw" and len(parts) > 2 else parts[:2])


def production_edges() -> set[tuple[str, str]]:
    """(module, module it imports) for every module that is not a test (a bench may use any package; nothing
    imports it)."""
    found = imports()
    return {(m, t if t in found else t.rsplit(".", 1)[0]) for m, ts in found.items() if not is_test(m) for t in ts}


def test_dependencies_point_one_way():
    upward = {(m, t) for m, t in production_edges() if layer(t) > layer(m)}
    assert not upward - KNOWN_UPWARD, f"imports against {' <- '.join(LAYERS)}: {sorted(upward - KNOWN_UPWARD)}"
    assert not KNOWN_UPWARD - upward, f"fixed, so remove from KNOWN_UPWARD: {sorted(KNOWN_UPWARD - upward)}"


def test_no_import_cycle_between_packages():
    graph: dict[str, set[str]] = {}
    edges = production_edges()
    assert KNOWN_CYCLE_EDGES <= edges, f"gone, so remove from KNOWN_CYCLE_EDGES: {sorted(KNOWN_CYCLE_EDGES - edges)}"
    for m, t in edges - KNOWN_UPWARD - KNOWN_CYCLE_EDGES:
        if unit(m) != unit(t):
            graph.setdefault(unit(m), set()).add(unit(t))
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]):
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            assert state.get(nxt) != 1, f"import cycle: {' -> '.join(path[path.index(nxt):] + [nxt])}"
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


def test_no_production_module_imports_a_test_module():
    bad = sorted(f"{m} imports {t}" for m, ts in imports().items() if not is_test(m) for t in ts
                 if any(is_test(".".join(t.split(".")[:i])) for i in range(2, len(t.split(".")) + 1)))
    assert not bad, bad

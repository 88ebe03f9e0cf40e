"""The package's import graph, read from the source with ``ast`` (no module is imported).

The rules (docs/architecture.md gives the reasons):
- no import cycles between scalefit's modules (a package's ``__init__`` counts as a module);
- only ``scalefit.cluster.runner`` imports ray;
- torch is imported only by the proxy trainer (``scalefit.proxy``): never by the fitting engine, the
  laws, the store, prediction or the report;
- an import inside a function is allowed only for an optional dependency: a third-party package, or a
  scalefit module that needs the ``train`` (torch) or ``ray`` extra. Anything else would be a cycle
  dodged at run time.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "scalefit"
NO_TORCH = ("scalefit.fitting", "scalefit.laws", "scalefit.store", "scalefit.predict", "scalefit.report")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(node: ast.AST, known: set[str]) -> set[str]:
    """Names imported by ``node`` (an Import or ImportFrom): modules, and ``pkg.name`` for from-imports."""
    if isinstance(node, ast.Import):
        return {a.name for a in node.names}
    if isinstance(node, ast.ImportFrom) and node.module and not node.level:
        out = {node.module}
        out |= {f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in known}
        return out
    return set()


def _graph() -> tuple[dict[str, set[str]], dict[str, set[str]], dict[str, list[tuple[int, set[str]]]]]:
    """(scalefit edges, every import name, function-local imports with their line) per module."""
    trees = {_module_name(p): ast.parse(p.read_text(), str(p)) for p in PACKAGE.rglob("*.py")}
    known = set(trees)
    edges, names, local = {}, {}, {}
    for mod, tree in trees.items():
        every: set[str] = set()
        for node in ast.walk(tree):
            every |= _imports(node, known)
        names[mod] = every
        edges[mod] = {n for n in every if n in known and n != mod}
        local[mod] = []
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(fn):
                    if isinstance(node, (ast.Import, ast.ImportFrom)):
                        local[mod].append((node.lineno, _imports(node, known)))
    return edges, names, local


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def _needs_extra(edges: dict[str, set[str]], names: dict[str, set[str]]) -> set[str]:
    """Modules that import torch or ray, directly or through other scalefit modules."""
    heavy = {m for m, n in names.items() if any(x.split(".")[0] in ("torch", "ray") for x in n)}
    changed = True
    while changed:
        grown = {m for m, e in edges.items() if e & heavy} | heavy
        changed, heavy = grown != heavy, grown
    return heavy


def test_no_import_cycles() -> None:
    edges, _, _ = _graph()
    assert _cycles(edges) == []


def test_only_the_runner_imports_ray() -> None:
    _, names, _ = _graph()
    importers = sorted(m for m, n in names.items() if any(x.split(".")[0] == "ray" for x in n))
    assert importers == ["scalefit.cluster.runner"]


@pytest.mark.parametrize("part", NO_TORCH)
def test_no_torch_outside_the_trainer(part: str) -> None:
    edges, names, _ = _graph()
    heavy = _needs_extra(edges, names)
    offenders = sorted(m for m in names if (m == part or m.startswith(part + ".")) and m in heavy)
    assert offenders == [], f"{part} must import neither torch nor ray, even indirectly"


def test_function_local_imports_only_for_optional_dependencies() -> None:
    edges, names, local = _graph()
    heavy = _needs_extra(edges, names)
    dodged = [
        f"{mod}:{line} imports {target}"
        for mod, found in local.items()
        for line, targets in found
        for target in sorted(targets)
        if target.split(".")[0] == "scalefit" and target in edges and target not in heavy
    ]
    assert dodged == []

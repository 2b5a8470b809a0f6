"""The package's import graph: no cycle (counting imports inside functions too), no module importing
another module's private name, and the layers of docs/architecture.md."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "deflation"


def modules() -> dict[str, Path]:
    """``{dotted name: path}`` of every module of the package (a package is its ``__init__``)."""
    out = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _resolve(name: str, node: ast.ImportFrom | None, known: dict[str, Path]) -> str:
    """The absolute module a relative ``from`` import in module ``name`` refers to."""
    if node is None or node.level == 0:
        return node.module if node is not None else name
    is_package = known[name].name == "__init__.py"
    base = name.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(known: dict[str, Path]):
    """``(importer, imported module, names)`` for every import of a package module, anywhere in the file."""
    for name, path in known.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == PACKAGE:
                        yield name, alias.name, []
            elif isinstance(node, ast.ImportFrom):
                target = _resolve(name, node, known)
                if target.split(".")[0] != PACKAGE:
                    continue
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    if sub in known:  # ``from . import module``
                        yield name, sub, []
                    else:
                        yield name, target, [alias.name]


def graph() -> dict[str, set[str]]:
    known = modules()
    edges: dict[str, set[str]] = {m: set() for m in known}
    for importer, target, _ in imports(known):
        if target in known and target != importer:
            edges[importer].add(target)
    return edges


@pytest.mark.smoke
def test_there_is_no_import_cycle():
    edges = graph()
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node):
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt):] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert len(edges) > 20  # the walk saw the package


@pytest.mark.smoke
def test_no_module_imports_another_modules_private_name():
    known = modules()
    bad = [(importer, target, n) for importer, target, names in imports(known) for n in names
           if n.startswith("_") and not n.startswith("__") and target != importer]
    assert not bad, bad


def test_core_modules_do_not_import_the_layers_above_them():
    """The simulator core never imports studies, plots or the command line (so ``import deflation``
    pulls no matplotlib, xarray or zarr): the layers of docs/architecture.md."""
    edges = graph()
    core = ["deflation.target", "deflation.dense", "deflation.contract", "deflation.dynamics", "deflation.init",
            "deflation.definition1", "deflation.stepping", "deflation.integrate", "deflation.flow",
            "deflation.monitors", "deflation.algorithm", "deflation.partition", "deflation.theorem"]
    upper = ("deflation.montecarlo", "deflation.plots", "deflation.cli", "deflation.commands")
    reach: dict[str, set[str]] = {}

    def closure(node):
        if node not in reach:
            reach[node] = set()
            for nxt in edges[node]:
                reach[node] |= {nxt} | closure(nxt)
        return reach[node]

    for module in core:
        assert module in edges, module
        above = sorted(m for m in closure(module) if m.startswith(upper))
        assert not above, (module, above)

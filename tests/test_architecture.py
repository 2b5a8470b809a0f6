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


def module_aliases(name: str, tree: ast.AST, known: dict[str, Path]) -> set[str]:
    """The local names a module binds to package modules (``from . import store``, ``import
    deflation.plots as plots``), at any depth of the file."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == PACKAGE:
                    out.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(name, node, known)
            for alias in node.names:
                if f"{target}.{alias.name}" in known:
                    out.add(alias.asname or alias.name)
    return out


def private_attribute_uses(known: dict[str, Path]):
    """``(module, line, expression)`` for every ``mod._name`` where ``mod`` is a package module."""
    for name, path in known.items():
        tree = ast.parse(path.read_text(), str(path))
        aliases = module_aliases(name, tree, known)
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                    and isinstance(node.value, ast.Name) and node.value.id in aliases):
                yield name, node.lineno, ast.unparse(node)


@pytest.mark.smoke
def test_no_module_reads_another_modules_private_attribute():
    known = modules()
    bad = list(private_attribute_uses(known))
    assert not bad, bad


def test_the_private_attribute_scan_sees_function_level_imports(tmp_path):
    """The scan above can fail: a module that imports a sibling inside a function and reads its
    private name is reported."""
    pkg = tmp_path / PACKAGE
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def _hidden():\n    return 1\n")
    (pkg / "b.py").write_text("def f():\n    from . import a\n    return a._hidden()\n")
    known = {PACKAGE: pkg / "__init__.py", f"{PACKAGE}.a": pkg / "a.py", f"{PACKAGE}.b": pkg / "b.py"}
    assert list(private_attribute_uses(known)) == [(f"{PACKAGE}.b", 3, "a._hidden")]


def test_plots_take_data_and_montecarlo_does_not_reexport_them():
    """The figures never import the studies (they are drawn from tables and datasets), and the
    studies reach the figures only where they write them (summary.write_summary)."""
    edges = graph()
    assert not [m for m in edges["deflation.plots"] if m.startswith("deflation.montecarlo")]
    assert "deflation.plots" not in edges["deflation.montecarlo"]


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

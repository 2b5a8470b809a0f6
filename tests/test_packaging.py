"""TensorFlow-free import graph and dependency closure; the command line answers."""

import re
import subprocess
import sys
from importlib import metadata

import pytest


@pytest.mark.smoke
def test_import_does_not_pull_tensorflow():
    code = "import sys, deflation, deflation.cli, deflation.plots; deflation.cli.build_parser(); " \
           "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tensorboard', 'keras')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _closure(name, seen):
    key = re.sub(r"[-_.]+", "-", name).lower()
    if key in seen:
        return
    seen.add(key)
    try:
        reqs = metadata.requires(name) or []
    except metadata.PackageNotFoundError:
        return
    for req in reqs:
        if "extra ==" in req:
            continue
        dep = re.split(r"[\s;<>=!~\[(]", req, maxsplit=1)[0]
        _closure(dep, seen)


def test_dependency_closure_has_no_tensorflow():
    seen = set()
    _closure("deflation", seen)
    assert "jax" in seen and "diffrax" in seen
    assert not [d for d in seen if d.startswith("tensorflow") or d in ("tf-nightly", "keras", "tensorboard")]
    installed = {re.sub(r"[-_.]+", "-", d.metadata["Name"]).lower() for d in metadata.distributions()}
    assert not [d for d in installed if d.startswith("tensorflow") or d == "tf-nightly"]


@pytest.mark.smoke
def test_cli_help_lists_commands():
    out = subprocess.run([sys.executable, "-m", "deflation.cli", "--help"], capture_output=True, text=True, check=True)
    assert "figure1" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "deflation.cli", "figure1", "--seeds", "0"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "--seeds must be an integer >= 1" in bad.stderr


@pytest.mark.smoke
def test_ci_runs_exactly_the_readme_test_command():
    """``.ci/run`` ends with the README's set-up command number 2 (install, then the tests)."""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text()
    block = readme.split("## Set-up: two commands", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [line for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert len(commands) == 2, commands
    ci = [line for line in (root / ".ci" / "run").read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert ci[-1].strip() == commands[1].strip()
    # CI runs the default suite; the slow cases (-m "slow or not slow") are run before an issue is closed
    assert commands[1].rstrip().endswith("-m pytest")


def _marked(mark: str) -> dict[str, set[str]]:
    """``{test file: {test function, ...}}`` of the tests decorated with ``pytest.mark.<mark>``."""
    import ast
    from pathlib import Path

    found: dict[str, set[str]] = {}
    for path in sorted((Path(__file__).resolve().parent).glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                # on the function, or on some of its parameters (pytest.param(..., marks=...))
                if any(f"pytest.mark.{mark}" in ast.unparse(d) for d in node.decorator_list):
                    found.setdefault(path.stem, set()).add(node.name)
    return found


@pytest.mark.smoke
def test_the_smoke_subset_touches_every_layer_and_is_never_slow():
    """``-m smoke`` (README) covers the import graph, the target, the contractions against the dense
    tensor, a flow, a command, a study and its store; a smoke test is a quick one (never ``slow``)."""
    smoke, slow = _marked("smoke"), _marked("slow")
    for layer in ("test_architecture", "test_target", "test_contract", "test_flow", "test_packaging", "test_study",
                  "test_montecarlo"):
        assert layer in smoke, layer
    both = {f: smoke[f] & slow.get(f, set()) for f in smoke}
    assert not any(both.values()), both
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert ".venv/bin/python -m pytest -m smoke" in readme

"""TensorFlow-free import graph and dependency closure; the command line answers."""

import re
import subprocess
import sys
from importlib import metadata


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


def test_cli_help_lists_commands():
    out = subprocess.run([sys.executable, "-m", "deflation.cli", "--help"], capture_output=True, text=True, check=True)
    assert "figure1" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "deflation.cli", "figure1", "--seeds", "0"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--seeds must be an integer >= 1" in bad.stderr

"""The package passes the static type check (mypy, configured in pyproject.toml under
``[tool.mypy]``): its annotations agree with each other and with the types jax, equinox, diffrax
and numpy declare. Skipped where mypy is not installed (it is in the ``test`` extra)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(importlib.util.find_spec("mypy") is None, reason="needs mypy (pip install mypy)")
def test_the_package_passes_mypy():
    # the cache goes where git ignores it (.pytest_cache/); a cold check takes ~15 s on 2 cores
    proc = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(ROOT / ".pytest_cache" / "mypy")],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"mypy found problems:\n{proc.stdout}{proc.stderr}"
    assert "Success: no issues found" in proc.stdout, proc.stdout  # it checked something
